//! The task decision path (DESIGN §8): token mint and verify, and one
//! decision with a task token (token verify + live chain lookup + Cedar)
//! with 100,000 tasks in the graph and a delegation chain of depth 5.
//!
//! Run: `cargo bench --bench tasks`.

#![allow(missing_docs, reason = "criterion generates the entry point")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "benchmark set-up"
)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use mandate::approval::ApprovalBook;
use mandate::clock::{Clock, SystemClock};
use mandate::credential::{KeyRotation, SigningKeys, TaskTokens, TokenSettings, thumbprint};
use mandate::decision::{
    AgentPattern, Caller, DEFAULT_AGENT_PATH_PREFIXES, Evaluator, Pipeline, Request, View,
};
use mandate::graph::{TaskGraph, TaskSpec};
use mandate::identity::{IdentitySource, SpiffeId, TrustDomain, dev::DevTrustDomain};
use mandate::policy::{PolicyEngine, PolicyStore};
use mandate::registry::{Catalog, Registry, SensitivityScale, Snapshot};
use mandate::revision::Revision;

const TASKS: usize = 100_000;
/// Delegations below the root; a chain holds DEPTH + 1 tasks.
const DEPTH: usize = 5;

fn agent(n: usize) -> SpiffeId {
    SpiffeId::new(format!("spiffe://mandate.local/agents/a{n}")).unwrap()
}

fn spec(delegatee: SpiffeId, resource: &str, now: i64, ttl: i64) -> TaskSpec {
    TaskSpec {
        intent: "benchmark".into(),
        delegatee,
        actions: BTreeSet::from(["read".to_owned(), "write".to_owned()]),
        scope: BTreeSet::from([resource.to_owned()]),
        max_sensitivity: 1,
        expires_at: now + ttl,
    }
}

/// Chains of DEPTH + 1 tasks until the graph holds TASKS; returns the
/// deepest task of the last chain.
fn fill(graph: &TaskGraph, registry: &Snapshot, now: i64) -> String {
    let frontend = SpiffeId::new("spiffe://mandate.local/workloads/frontend").unwrap();
    let mut leaf = String::new();
    let mut n = 0;
    while graph.len() < TASKS {
        let (root, _) = graph
            .create_root(
                format!("r{n}").into(),
                spec(agent(0), "repos", now, 3600),
                frontend.clone(),
                "alice".into(),
                now,
            )
            .unwrap();
        let mut parent = root.id.clone();
        for level in 1..=DEPTH {
            let resource = if level == 1 {
                "repos"
            } else {
                "repo:acme/payments"
            };
            let (child, _) = graph
                .delegate(
                    format!("r{n}.{level}").into(),
                    &parent,
                    &agent(level - 1),
                    spec(agent(level), resource, now, 3600 - level as i64),
                    now,
                    registry,
                )
                .unwrap();
            parent = child.id.clone();
        }
        leaf = parent.to_string();
        n += 1;
    }
    leaf
}

fn benches(c: &mut Criterion) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let engine = Arc::new(
        PolicyEngine::load(
            &root.join("policies"),
            &root.join("schemas/mandate.cedarschema"),
        )
        .unwrap(),
    );
    let revision = Arc::new(Revision::default());
    let registry = Arc::new(
        Registry::new(
            Catalog::load(&root.join("examples/catalog.toml"))
                .unwrap()
                .into_entries()
                .unwrap(),
            &cedar_policy::Entities::empty(),
            engine.schema(),
            SensitivityScale::default(),
            "mandate.local",
            revision.clone(),
        )
        .unwrap(),
    );
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let now = clock.now();
    let graph = Arc::new(TaskGraph::with_revision(
        mandate::graph::DEFAULT_MAX_DEPTH,
        revision.clone(),
    ));
    let leaf = fill(&graph, &registry.snapshot(), now);
    let chain = graph.chain(&leaf).unwrap();
    assert_eq!(chain.len(), DEPTH + 1);

    let keys = Arc::new(SigningKeys::ephemeral(
        KeyRotation::default(),
        clock.clone(),
    ));
    let tokens = Arc::new(TaskTokens::new(
        keys.clone(),
        TokenSettings::default(),
        clock.clone(),
    ));
    let dir = tempfile::tempdir().unwrap();
    let trust_domain = TrustDomain::new("mandate.local").unwrap();
    let dev = DevTrustDomain::init(dir.path(), &trust_domain, &[]).unwrap();
    let certificate = mandate::identity::load_certs(&dev.samples[0].cert)
        .unwrap()
        .remove(0);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let identity = runtime
        .block_on(
            IdentitySource::Dev {
                dir: dir.path().to_owned(),
                trust_domain: trust_domain.clone(),
            }
            .open(),
        )
        .unwrap();

    let mut group = c.benchmark_group("task_token");
    group.bench_function("mint", |b| {
        b.iter(|| {
            tokens
                .mint(&chain, certificate.as_ref(), None, None)
                .unwrap()
        })
    });
    let (token, _) = tokens
        .mint(&chain, certificate.as_ref(), None, None)
        .unwrap();
    let subject = agent(DEPTH);
    // Agents present one token for its whole life: after the first call
    // the signature check is cached, the other checks are not.
    group.bench_function("verify_repeated", |b| {
        b.iter(|| {
            tokens
                .verify(&token, &subject, Some(certificate.as_ref()))
                .unwrap()
        })
    });
    // A token seen for the first time: full signature verification.
    group.bench_function("verify_first_use", |b| {
        b.iter_batched(
            || TaskTokens::new(keys.clone(), TokenSettings::default(), clock.clone()),
            |fresh| {
                fresh
                    .verify(&token, &subject, Some(certificate.as_ref()))
                    .unwrap()
            },
            criterion::BatchSize::SmallInput,
        )
    });
    group.finish();

    let approvals = Arc::new(ApprovalBook::new(revision.clone()));
    let policies = PolicyStore::new(Arc::try_unwrap(engine).unwrap(), None, 0);
    let pipeline = Pipeline::new(
        Arc::new(Evaluator::new(AgentPattern::new(
            DEFAULT_AGENT_PATH_PREFIXES.iter().map(|p| (*p).to_owned()),
            [trust_domain],
        ))),
        tokens,
        graph.clone(),
        approvals,
    );
    // What the runner reads for every decision: the view of the state.
    let view = || View {
        revision: revision.current(),
        engine: policies.current(),
        registry: registry.snapshot(),
        bundles: identity.borrow().bundles.clone(),
        now: clock.now(),
    };
    let mut request = Request {
        token: Some(token.clone()),
        ..Request::new(
            Caller {
                spiffe_id: subject.clone(),
                thumbprint: None,
            },
            "read",
            mandate::decision::Resource {
                type_name: String::new(),
                id: "repo:acme/payments".into(),
            },
        )
    };
    request.caller.thumbprint = Some(thumbprint(certificate.as_ref()));
    let decided = pipeline.decide(&view(), &request);
    assert!(decided.decision.is_allowed(), "{:?}", decided.decision);
    // The certificate's thumbprint is taken on every call, as the
    // `Authorize` adapter does. The same call again within a second is
    // answered from the answer cache after the token, agent proof and
    // chain checks.
    c.bench_function("decision/task_token_depth5_100k_tasks", |b| {
        b.iter(|| {
            request.caller.thumbprint = Some(thumbprint(certificate.as_ref()));
            pipeline.decide(&view(), &request)
        })
    });
    // The same decision when Cedar's answer cannot be reused: every
    // iteration at a revision of its own, as after a write (the answer
    // cache's key holds the revision). This is the cost of a first call.
    let fresh = std::sync::atomic::AtomicU64::new(u64::MAX / 2);
    c.bench_function("decision/task_token_depth5_100k_tasks_uncached", |b| {
        b.iter(|| {
            request.caller.thumbprint = Some(thumbprint(certificate.as_ref()));
            let view = View {
                revision: fresh.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                ..view()
            };
            pipeline.decide(&view, &request)
        })
    });
    // A `write`, which the shipped exfiltration guard reads the execution
    // history for: the task's and the tree's ledgers are held through the
    // decision, and its answer is never cached (every call moves them).
    let mut write = request.clone();
    write.action = "write".into();
    assert!(view().engine.reads_history("write"));
    assert!(pipeline.decide(&view(), &write).decision.is_allowed());
    c.bench_function("decision/task_token_depth5_100k_tasks_reads_history", |b| {
        b.iter(|| {
            write.caller.thumbprint = Some(thumbprint(certificate.as_ref()));
            pipeline.decide(&view(), &write)
        })
    });
    c.bench_function("graph/chain_lookup_depth5_100k_tasks", |b| {
        b.iter(|| graph.chain(&leaf).unwrap())
    });
}

criterion_group!(tasks, benches);
criterion_main!(tasks);
