//! Decision latency: Cedar in-process, and `Authorize` round trips over
//! SPIFFE mTLS on loopback, next to a gRPC health check on the same
//! connection set-up as a do-nothing baseline.
//!
//! Run: `cargo bench --bench authorize`.

#![allow(missing_docs, reason = "criterion generates the entry point")]
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "benchmark set-up")]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use mandate::api::v1::{AuthorizeRequest, Resource};
use mandate::clock::SystemClock;
use mandate::credential::{KeyRotation, SigningKeys, TaskTokens, TokenSettings};
use mandate::decision::{AgentPattern, DEFAULT_AGENT_PATH_PREFIXES, Decider, DecisionRequest};
use mandate::graph::TaskGraph;
use mandate::identity::{IdentitySource, SpiffeId, TrustDomain, dev::DevTrustDomain};
use mandate::policy::{PolicyEngine, PolicyStore};
use mandate::registry::{Catalog, Registry, SensitivityScale};
use mandate::server::{ServerOptions, start};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn engine() -> PolicyEngine {
    PolicyEngine::load(
        &repo().join("policies"),
        &repo().join("schemas/mandate.cedarschema"),
    )
    .unwrap()
}

/// The example catalog's registry.
fn registry(engine: &PolicyEngine) -> Registry {
    Registry::new(
        Catalog::load(&repo().join("examples/catalog.toml"))
            .unwrap()
            .into_entries()
            .unwrap(),
        &cedar_policy::Entities::empty(),
        engine.schema(),
        SensitivityScale::default(),
        "mandate.local",
        Arc::default(),
    )
    .unwrap()
}

fn agents() -> AgentPattern {
    AgentPattern::new(
        DEFAULT_AGENT_PATH_PREFIXES.iter().map(|p| (*p).to_owned()),
        [TrustDomain::new("mandate.local").unwrap()],
    )
}

fn in_process(c: &mut Criterion) {
    let engine = engine();
    let registry = registry(&engine).snapshot();
    let decider = Decider::new(agents());
    let patcher = SpiffeId::new("spiffe://mandate.local/agents/patcher").unwrap();
    let request = DecisionRequest::new(
        &patcher,
        "read",
        "",
        "repo:acme/payments",
        serde_json::json!({ "purpose": "bench" }),
    );
    assert!(decider.decide(&engine, &registry, request.clone()).allowed);
    c.bench_function("decision/in_process_allow", |b| {
        b.iter(|| decider.decide(&engine, &registry, std::hint::black_box(request.clone())))
    });
}

fn over_mtls(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let trust_domain = TrustDomain::new("mandate.local").unwrap();
    let dev = DevTrustDomain::init(dir.path(), &trust_domain, &[]).unwrap();
    let sample = dev.samples.first().unwrap().clone();

    let (server, mut client, mut health) = runtime.block_on(async {
        let identity = IdentitySource::Dev {
            dir: dir.path().to_owned(),
            trust_domain,
        }
        .open()
        .await
        .unwrap();
        let engine = engine();
        let server = start(ServerOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            http_listen: "127.0.0.1:0".parse().unwrap(),
            registry: Arc::new(registry(&engine)),
            policies: Arc::new(PolicyStore::new(engine, None, 0)),
            graph: Arc::new(TaskGraph::default()),
            approvals: Arc::default(),
            revision: Arc::default(),
            tokens: Arc::new(TaskTokens::new(
                Arc::new(SigningKeys::ephemeral(
                    KeyRotation::default(),
                    Arc::new(SystemClock),
                )),
                TokenSettings::default(),
                Arc::new(SystemClock),
            )),
            clock: Arc::new(SystemClock),
            identity,
            agents: agents(),
            max_batch_size: 100,
            handshake_timeout: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(5),
            policy_poll: None,
            decision_log: None,
            decision_log_capacity: 1,
        })
        .await
        .unwrap();
        let identity =
            mandate::client::identity_from_files(&sample.cert, &sample.key, &dev.bundle, None)
                .unwrap();
        let addr = server.grpc_addr().to_string();
        let channel = mandate::client::channel(&addr, &identity, None)
            .await
            .unwrap();
        let client =
            mandate::api::v1::authorization_service_client::AuthorizationServiceClient::new(
                channel.clone(),
            );
        let health = tonic_health::pb::health_client::HealthClient::new(channel);
        (server, client, health)
    });

    let request = AuthorizeRequest {
        action: "read".into(),
        resource: Some(Resource {
            r#type: String::new(),
            id: "repo:acme/payments".into(),
        }),
        ..Default::default()
    };
    let mut group = c.benchmark_group("grpc_mtls_round_trip");
    // Each sample runs its calls inside one `block_on`, so the timing is
    // the gRPC round trip and not the cost of entering the runtime.
    group.bench_function("authorize", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    client.authorize(request.clone()).await.unwrap();
                }
                start.elapsed()
            })
        })
    });
    group.bench_function("health_check_baseline", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    health
                        .check(tonic_health::pb::HealthCheckRequest {
                            service: String::new(),
                        })
                        .await
                        .unwrap();
                }
                start.elapsed()
            })
        })
    });
    group.finish();
    runtime.block_on(server.shutdown()).unwrap();
}

criterion_group!(benches, in_process, over_mtls);
criterion_main!(benches);
