//! `Pipeline::decide` as a table: state + request → decision + reason, one
//! row at least for every [`Reason`] the pipeline itself gives (tokens,
//! subjects, tasks, approvals, agent proofs), no sockets. The reasons that
//! policy evaluation alone gives are cases of the shipped policy suite
//! (`policies/tests/*.json`, run by `mandate policy test`); the reasons
//! given around the pipeline (the runner's gate and limits, the Envoy
//! door's mapping) are listed with the tests that cover them. A new variant
//! in none of these places fails `every_reason_has_a_row`.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use spiffe::{SpiffeId, TrustDomain};

use super::*;
use crate::approval::{ApprovalBook, Subject as ApprovalSubject};
use crate::clock::{Clock, ManualClock};
use crate::credential::{KeyRotation, SigningKeys, TaskTokens, TokenSettings, thumbprint};
use crate::graph::{Task, TaskGraph, TaskSpec};
use crate::identity::TrustBundles;
use crate::identity::dev::DevTrustDomain;
use crate::policy::PolicyEngine;
use crate::registry::{Catalog, Registry, SensitivityScale};
use crate::revision::Revision;

const NOW: i64 = 1_900_000_000;
const CERT: &[u8] = b"the caller's DER certificate";
const OTHER_CERT: &[u8] = b"another DER certificate";
const SEALED_CHECKSUM: &str =
    "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

/// Policies that make every reason reachable (the shipped schema; the
/// built-in guards hold calls with a token to their task).
const POLICIES: &str = r#"
@id("anyone-reads-handbook")
permit (principal, action == Mandate::Action::"read", resource == Mandate::Resource::"handbook");

@id("agents-act-in-their-task")
permit (
  principal is Mandate::Agent,
  action in [Mandate::Action::"read", Mandate::Action::"write", Mandate::Action::"delete"],
  resource is Mandate::Resource
)
when { context has task };

@id("helpdesk-deletes-handbook")
permit (principal is Mandate::Agent, action == Mandate::Action::"delete", resource == Mandate::Resource::"handbook");

@id("deletes-need-approval")
@mandate_outcome("needs_approval")
forbid (principal is Mandate::Agent, action == Mandate::Action::"delete", resource is Mandate::Resource)
unless { context has approval && context.approval.granted };

@id("overflowing")
permit (principal, action == Mandate::Action::"invoke", resource == Mandate::Resource::"service:payments")
when { 9223372036854775807 + 1 > 0 };

@id("enforcement-points-check")
permit (principal in Mandate::Group::"enforcement-points", action == Mandate::Action::"check", resource);

@id("delegatee-asks-but-not-for-web")
permit (principal, action == Mandate::Action::"request_approval", resource is Mandate::Approval)
when { resource.task.delegatee == principal.spiffe_id && resource.resource_id != "repo:acme/web" };
"#;

fn id(path: &str) -> SpiffeId {
    SpiffeId::new(format!("spiffe://mandate.local{path}")).unwrap()
}

struct World {
    pipeline: Pipeline,
    view: View,
    keys: Arc<SigningKeys>,
    tokens: Arc<TaskTokens>,
    /// The patcher's task, in the graph.
    task: Vec<Arc<Task>>,
    /// The sealed agent's task, in the graph.
    sealed_task: Vec<Arc<Task>>,
    /// A patcher's task that was revoked and has left memory.
    archived_task: Vec<Arc<Task>>,
    /// The live state under the pipeline, for writes between decisions.
    graph: Arc<TaskGraph>,
    registry: Registry,
    revision: Arc<Revision>,
    /// The patcher's dev SVID: PEM and DER.
    patcher_pem: String,
    patcher_der: Vec<u8>,
    _dir: tempfile::TempDir,
}

fn spec(delegatee: SpiffeId) -> TaskSpec {
    TaskSpec {
        intent: "fix the build".into(),
        delegatee,
        actions: BTreeSet::from(["read".into(), "write".into(), "delete".into()]),
        scope: BTreeSet::from(["repos".into()]),
        max_sensitivity: 1,
        expires_at: NOW + 3600,
    }
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("policies/rows.cedar"), POLICIES).unwrap();
    let engine = Arc::new(
        PolicyEngine::load(
            &dir.path().join("policies"),
            &root.join("schemas/mandate.cedarschema"),
        )
        .unwrap(),
    );
    let mut catalog_text = std::fs::read_to_string(root.join("examples/catalog.toml")).unwrap();
    catalog_text.push_str(&format!(
        "\n[[agents]]\nspiffe_id = \"spiffe://mandate.local/agents/sealed\"\nchecksum = \"{SEALED_CHECKSUM}\"\n"
    ));
    let catalog: Catalog = toml::from_str(&catalog_text).unwrap();
    let revision = Arc::new(Revision::default());
    let registry = Registry::new(
        catalog.into_entries().unwrap(),
        &cedar_policy::Entities::empty(),
        engine.schema(),
        SensitivityScale::default(),
        "mandate.local",
        revision.clone(),
    )
    .unwrap();

    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(NOW));
    let graph = Arc::new(TaskGraph::with_revision(
        crate::graph::DEFAULT_MAX_DEPTH,
        revision.clone(),
    ));
    let frontend = id("/workloads/frontend");
    let root_task = |n: &str, delegatee: SpiffeId| {
        graph
            .create_root(
                n.into(),
                spec(delegatee),
                frontend.clone(),
                "alice".into(),
                NOW,
            )
            .unwrap();
        graph.chain(n).unwrap()
    };
    let task = root_task("t-patcher", id("/agents/patcher"));
    let sealed_task = root_task("t-sealed", id("/agents/sealed"));
    let archived_task = root_task("t-archived", id("/agents/patcher"));
    graph.revoke("t-archived").unwrap();
    let retention = crate::graph::Retention {
        keep_ended: 0,
        remember_evicted: 3600,
    };
    graph.evict_ended(retention, NOW);
    assert_eq!(
        graph.evict_ended(retention, NOW),
        [crate::graph::TaskId::from("t-archived")]
    );

    let approvals = Arc::new(ApprovalBook::new(revision.clone()));
    // A human said no to the patcher deleting the payments repository.
    let subject = ApprovalSubject {
        task_id: "t-patcher".into(),
        action: "delete".into(),
        resource_type: DEFAULT_RESOURCE_TYPE.into(),
        resource_id: "repo:acme/payments".into(),
    };
    let digest = task[0].scope_digest.clone();
    let (asked, _, _) = approvals
        .request(
            subject,
            "",
            "spiffe://mandate.local/agents/patcher",
            &digest,
            NOW,
        )
        .unwrap();
    approvals
        .decide(
            &asked.id,
            false,
            "alice",
            "spiffe://mandate.local/workloads/frontend",
            600,
            &digest,
            NOW,
        )
        .unwrap();

    let keys = Arc::new(SigningKeys::ephemeral(
        KeyRotation::default(),
        clock.clone(),
    ));
    let tokens = Arc::new(TaskTokens::new(
        keys.clone(),
        TokenSettings::default(),
        clock.clone(),
    ));

    let trust_domain = TrustDomain::new("mandate.local").unwrap();
    let dev = DevTrustDomain::init(&dir.path().join("dev"), &trust_domain, &[]).unwrap();
    let mut bundles = TrustBundles::default();
    bundles
        .add(
            trust_domain.clone(),
            &crate::identity::load_certs(&dev.bundle).unwrap(),
        )
        .unwrap();
    let patcher = dev
        .samples
        .iter()
        .find(|s| s.spiffe_id.ends_with("/agents/patcher"))
        .unwrap();
    let patcher_pem = std::fs::read_to_string(&patcher.cert).unwrap();
    let patcher_der = crate::identity::load_certs(&patcher.cert).unwrap()[0].to_vec();

    let pipeline = Pipeline::new(
        Arc::new(Evaluator::new(AgentPattern::new(
            DEFAULT_AGENT_PATH_PREFIXES.iter().map(|p| (*p).to_owned()),
            [trust_domain],
        ))),
        tokens.clone(),
        graph.clone(),
        approvals,
    );
    let view = View {
        revision: revision.current(),
        engine,
        registry: registry.snapshot(),
        bundles: Arc::new(bundles),
        now: NOW,
    };
    World {
        pipeline,
        view,
        keys,
        tokens,
        task,
        sealed_task,
        archived_task,
        graph,
        registry,
        revision,
        patcher_pem,
        patcher_der,
        _dir: dir,
    }
}

impl World {
    fn token(&self) -> String {
        self.tokens.mint(&self.task, CERT, None, None).unwrap().0
    }

    /// A token for the patcher's task minted by other token machinery:
    /// another clock, other settings or other keys.
    fn token_from(
        &self,
        now: i64,
        settings: TokenSettings,
        keys: Option<Arc<SigningKeys>>,
    ) -> String {
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(now));
        let keys = keys.unwrap_or_else(|| self.keys.clone());
        TaskTokens::new(keys, settings, clock)
            .mint(&self.task, CERT, None, None)
            .unwrap()
            .0
    }

    /// The patcher's token with its header replaced by `header`.
    fn token_with_header(&self, header: serde_json::Value) -> String {
        let token = self.token();
        let (_, rest) = token.split_once('.').unwrap();
        format!("{}.{rest}", URL_SAFE_NO_PAD.encode(header.to_string()))
    }

    fn kid(&self) -> String {
        let token = self.token();
        jsonwebtoken::decode_header(&token).unwrap().kid.unwrap()
    }
}

/// A request by `caller` (its certificate [`CERT`]).
fn ask(caller: &str, action: &str, resource: &str) -> Request {
    Request::new(
        Caller {
            spiffe_id: id(caller),
            thumbprint: Some(thumbprint(CERT)),
        },
        action,
        Resource {
            type_name: String::new(),
            id: resource.into(),
        },
    )
}

fn with_token(request: Request, token: String) -> Request {
    Request {
        token: Some(token),
        ..request
    }
}

fn for_user(request: Request, user: &str) -> Request {
    Request {
        on_behalf_of: Some(Subject::Entity(
            format!(r#"Mandate::User::"{user}""#).parse().unwrap(),
        )),
        ..request
    }
}

fn on_behalf(request: Request, subject: SpiffeId, pem: Option<String>) -> Request {
    Request {
        on_behalf_of: Some(Subject::Workload(OnBehalfOf {
            spiffe_id: subject,
            certificate_pem: pem,
            forwarded_thumbprint: None,
        })),
        ..request
    }
}

/// One row: what is asked, and the decision and reason it must get.
struct Row {
    name: &'static str,
    request: Request,
    decision: &'static str,
    reason: Option<Reason>,
}

fn rows(w: &World) -> Vec<Row> {
    let row = |name, request, decision, reason| Row {
        name,
        request,
        decision,
        reason,
    };
    let patcher = "/agents/patcher";
    let token = w.token();
    let other_keys = Arc::new(SigningKeys::ephemeral(
        KeyRotation::default(),
        Arc::new(ManualClock::new(NOW)),
    ));
    // The same claims signed again: another signature under this header.
    let forged = {
        let other = w.token_from(NOW, TokenSettings::default(), Some(other_keys.clone()));
        let (head, _) = token.rsplit_once('.').unwrap();
        let (_, signature) = other.rsplit_once('.').unwrap();
        format!("{head}.{signature}")
    };
    let mut doubled = with_token(ask(patcher, "read", "repo:acme/payments"), token.clone());
    doubled.door.pairs.push((
        "task".into(),
        cedar_policy::RestrictedExpression::new_bool(true),
    ));
    let sealed_token = w.tokens.mint(&w.sealed_task, CERT, None, None).unwrap().0;
    let ghost = {
        let mut task = (*w.task[0]).clone();
        task.id = "t-ghost".into();
        task.root = "t-ghost".into();
        w.tokens
            .mint(&[Arc::new(task)], CERT, None, None)
            .unwrap()
            .0
    };
    let archived = w.tokens.mint(&w.archived_task, CERT, None, None).unwrap().0;
    let mut unbound = with_token(ask(patcher, "read", "repo:acme/payments"), token.clone());
    unbound.caller.thumbprint = Some(thumbprint(OTHER_CERT));
    let bound_to_svid = w
        .tokens
        .mint(&w.task, &w.patcher_der, None, None)
        .unwrap()
        .0;
    vec![
        row(
            "an agent acts within its task",
            with_token(ask(patcher, "read", "repo:acme/payments"), token.clone()),
            "allow",
            None,
        ),
        row(
            "an enforcement point asks for a subject whose certificate it forwarded",
            on_behalf(
                with_token(
                    ask("/workloads/envoy", "read", "repo:acme/payments"),
                    bound_to_svid,
                ),
                id(patcher),
                Some(w.patcher_pem.clone()),
            ),
            "allow",
            None,
        ),
        row(
            "a guard forbids what is outside the task",
            with_token(ask(patcher, "read", "customer-db"), token.clone()),
            "deny",
            Some(Reason::ForbiddenByPolicy),
        ),
        row(
            "a policy that cannot be evaluated denies",
            ask("/workloads/frontend", "invoke", "service:payments"),
            "deny",
            Some(Reason::EvaluationError),
        ),
        row(
            "an agent may not ask for another",
            on_behalf(
                ask(patcher, "read", "handbook"),
                id("/agents/reviewer"),
                None,
            ),
            "deny",
            Some(Reason::NotAnEnforcementPoint),
        ),
        row(
            "an agent may not ask for a user",
            for_user(ask(patcher, "read", "handbook"), "alice"),
            "deny",
            Some(Reason::NotAnEnforcementPoint),
        ),
        row(
            "an enforcement point asks for a user, whom the schema does not let read",
            for_user(ask("/workloads/envoy", "read", "handbook"), "alice"),
            "deny",
            Some(Reason::InvalidRequest),
        ),
        row(
            "a user has no SVID a task token could bind to",
            for_user(
                with_token(ask("/workloads/envoy", "read", "handbook"), w.token()),
                "alice",
            ),
            "deny",
            Some(Reason::InvalidRequest),
        ),
        row(
            "a subject from a trust domain we do not trust",
            on_behalf(
                ask("/workloads/envoy", "read", "handbook"),
                SpiffeId::new("spiffe://elsewhere.example/agents/x").unwrap(),
                None,
            ),
            "deny",
            Some(Reason::UntrustedSubject),
        ),
        row(
            "a forwarded certificate that does not verify",
            on_behalf(
                ask("/workloads/envoy", "read", "handbook"),
                id("/agents/reviewer"),
                Some("not a certificate".into()),
            ),
            "deny",
            Some(Reason::SubjectCertificateInvalid),
        ),
        row(
            "a door adding a context key Mandate adds too is a bug",
            doubled,
            "deny",
            Some(Reason::InternalError),
        ),
        row(
            "a token for a task the graph does not hold",
            with_token(ask(patcher, "read", "repo:acme/payments"), ghost),
            "deny",
            Some(Reason::UnknownTask),
        ),
        row(
            "a token for a task that ended and left memory",
            with_token(ask(patcher, "read", "repo:acme/payments"), archived),
            "deny",
            Some(Reason::TaskNotActive),
        ),
        row(
            "deleting needs a human",
            with_token(ask(patcher, "delete", "repos"), token.clone()),
            "needs_approval",
            Some(Reason::NeedsApproval),
        ),
        row(
            "an agent with a checksum calls without the token that proves it",
            ask("/agents/sealed", "read", "handbook"),
            "deny",
            Some(Reason::AgentProofRequired),
        ),
        row(
            "the human said no",
            with_token(ask(patcher, "delete", "repo:acme/payments"), token.clone()),
            "deny",
            Some(Reason::ApprovalDenied),
        ),
        row(
            "an approval would lift the deny, but there is no task to hold it",
            ask("/agents/helpdesk", "delete", "handbook"),
            "deny",
            Some(Reason::ApprovalNeedsTask),
        ),
        row(
            "the token proved another checksum than the registered one",
            with_token(
                ask("/agents/sealed", "read", "repo:acme/payments"),
                sealed_token,
            ),
            "deny",
            Some(Reason::AgentChecksumMismatch),
        ),
        row(
            "policy refuses asking for this approval",
            with_token(ask(patcher, "delete", "repo:acme/web"), token.clone()),
            "deny",
            Some(Reason::ApprovalNotRequested),
        ),
        row(
            "a token that is not a JWS",
            with_token(ask(patcher, "read", "repos"), "not a token".into()),
            "deny",
            Some(Reason::TokenMalformed),
        ),
        row(
            "a token whose type is not ours",
            with_token(
                ask(patcher, "read", "repos"),
                w.token_with_header(
                    serde_json::json!({"alg": "EdDSA", "typ": "JWT", "kid": w.kid()}),
                ),
            ),
            "deny",
            Some(Reason::TokenWrongType),
        ),
        row(
            "a token signed with another algorithm",
            with_token(
                ask(patcher, "read", "repos"),
                w.token_with_header(serde_json::json!({"alg": "HS256", "typ": "mandate-task+jwt"})),
            ),
            "deny",
            Some(Reason::TokenWrongAlgorithm),
        ),
        row(
            "a token signed with a key we do not hold",
            with_token(
                ask(patcher, "read", "repos"),
                w.token_from(NOW, TokenSettings::default(), Some(other_keys)),
            ),
            "deny",
            Some(Reason::TokenUnknownKey),
        ),
        row(
            "a token whose signature is not its own",
            with_token(ask(patcher, "read", "repos"), forged),
            "deny",
            Some(Reason::TokenBadSignature),
        ),
        row(
            "a token past its expiry",
            with_token(
                ask(patcher, "read", "repos"),
                w.token_from(NOW - 10_000, TokenSettings::default(), None),
            ),
            "deny",
            Some(Reason::TokenExpired),
        ),
        row(
            "a token before its validity",
            with_token(
                ask(patcher, "read", "repos"),
                w.token_from(NOW + 3_000, TokenSettings::default(), None),
            ),
            "deny",
            Some(Reason::TokenNotYetValid),
        ),
        row(
            "a token for another audience",
            with_token(
                ask(patcher, "read", "repos"),
                w.token_from(
                    NOW,
                    TokenSettings {
                        audience: "someone-else".into(),
                        ..TokenSettings::default()
                    },
                    None,
                ),
            ),
            "deny",
            Some(Reason::TokenWrongAudience),
        ),
        row(
            "another agent's token",
            with_token(ask("/agents/reviewer", "read", "repos"), token.clone()),
            "deny",
            Some(Reason::TokenSubjectMismatch),
        ),
        row(
            "a token presented with another certificate",
            unbound,
            "deny",
            Some(Reason::TokenNotBound),
        ),
    ]
}

/// Reasons given around the pipeline, and where each is tested.
const AROUND_THE_PIPELINE: &[(Reason, &str)] = &[
    (
        Reason::StaleState,
        "runner gate: tests/replicas.rs, tests/envoy.rs",
    ),
    (Reason::StateUnavailable, "runner gate: tests/replicas.rs"),
    (
        Reason::LimitExceeded,
        "decision::limits::tests, tests/limits.rs",
    ),
    (Reason::NoRoute, "envoy::request::tests"),
    (Reason::NoSubject, "envoy::request::tests"),
    (Reason::SubjectCertificateRequired, "tests/envoy.rs"),
    (Reason::TokenRequired, "envoy::request::tests"),
    (Reason::InvalidPath, "envoy::request::tests"),
    (Reason::InvalidCheckRequest, "envoy::request::tests"),
    (Reason::UnknownSubjectType, "api::authzen::mapping::tests"),
    (Reason::InvalidProperties, "api::authzen::mapping::tests"),
];

#[test]
fn every_row_decides_as_expected() {
    let w = world();
    let mut failures = Vec::new();
    for row in rows(&w) {
        let decided = w.pipeline.decide(&w.view, &row.request);
        let decision = &decided.decision;
        let reason_ok = row.reason.is_none_or(|r| decision.reasons().contains(&r));
        if decision.name() != row.decision || !reason_ok {
            failures.push(format!(
                "{}: expected {} {:?}, got {decision:?}",
                row.name, row.decision, row.reason
            ));
        }
        // An ask comes with, and only with, a "needs approval".
        if decided.ask.is_some() != (decision.name() == "needs_approval") {
            failures.push(format!(
                "{}: ask {:?} with {decision:?}",
                row.name, decided.ask
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The reasons the cases of `policies/tests/*.json` expect.
fn reasons_of_the_policy_suite() -> Vec<Reason> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/tests");
    let mut reasons = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let suite: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let cases = suite["cases"].as_array().unwrap();
        for code in cases
            .iter()
            .filter_map(|c| c["reasons"].as_array())
            .flatten()
        {
            let code = code.as_str().unwrap();
            let reason = Reason::ALL.iter().find(|r| r.as_str() == code);
            reasons.push(*reason.unwrap_or_else(|| panic!("{path:?}: unknown reason `{code}`")));
        }
    }
    reasons
}

#[test]
fn every_reason_has_a_row() {
    let w = world();
    let mut covered: HashSet<Reason> = rows(&w).iter().filter_map(|r| r.reason).collect();
    covered.extend(AROUND_THE_PIPELINE.iter().map(|(r, _)| *r));
    covered.extend(reasons_of_the_policy_suite());
    let missing: Vec<&str> = Reason::ALL
        .iter()
        .filter(|r| !covered.contains(r))
        .map(|r| r.as_str())
        .collect();
    assert!(missing.is_empty(), "reasons without a row: {missing:?}");
}

#[test]
fn a_needs_approval_asks_for_the_task_action_and_resource() {
    let w = world();
    let request = with_token(ask("/agents/patcher", "delete", "repos"), w.token());
    let decided = w.pipeline.decide(&w.view, &request);
    let ask = decided.ask.expect("an ask");
    assert_eq!(ask.subject.task_id, "t-patcher");
    assert_eq!(ask.subject.action, "delete");
    assert_eq!(ask.subject.resource_id, "repos");
    assert_eq!(ask.requested_by, "spiffe://mandate.local/agents/patcher");
    assert_eq!(decided.chain.len(), 1);
    assert!(decided.token_jti.is_some());
}

/// The answer cache (`answer_cache.rs`) never outlives what it was
/// computed from: each write or reload below is seen by the very next
/// call, after the same call was answered from the cache.
#[test]
fn a_remembered_answer_is_never_reused_after_a_write_or_a_reload() {
    let w = world();
    let request = with_token(
        ask("/agents/patcher", "read", "repo:acme/payments"),
        w.token(),
    );
    let view = |engine: &Arc<PolicyEngine>| View {
        revision: w.revision.current(),
        engine: engine.clone(),
        registry: w.registry.snapshot(),
        ..w.view.clone()
    };
    let decide = |view: &View| w.pipeline.decide(view, &request);
    let remembered = |view: &View| {
        let first = decide(view);
        let second = decide(view);
        assert_eq!(first.decision, second.decision);
        let (Some(a), Some(b)) = (&first.evaluated, &second.evaluated) else {
            panic!("both calls reach the policies");
        };
        assert!(
            Arc::ptr_eq(a, b),
            "the second call is answered from the cache"
        );
        first.decision
    };
    let engine = w.view.engine.clone();
    assert!(remembered(&view(&engine)).is_allowed());

    // A policy reload: a new engine, same revision.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rows.cedar"),
        format!(
            "{POLICIES}\n@id(\"no-reads-today\")\nforbid (principal, action == Mandate::Action::\"read\", resource);"
        ),
    )
    .unwrap();
    let schema =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemas/mandate.cedarschema");
    let reloaded = Arc::new(PolicyEngine::load(dir.path(), &schema).unwrap());
    let denied = decide(&view(&reloaded));
    assert!(!denied.decision.is_allowed(), "{:?}", denied.decision);
    assert!(
        remembered(&view(&engine)).is_allowed(),
        "the old set still allows"
    );

    // A registry write: the resource is now restricted, above the task's
    // maximum.
    let restricted: crate::registry::ResourceEntry = toml::from_str(
        "id = \"repo:acme/payments\"\nparent = \"repos\"\nsensitivity = \"restricted\"",
    )
    .unwrap();
    w.registry
        .update(crate::registry::Entry::Resource(restricted), |_| {
            Ok::<(), crate::registry::RegistryError>(())
        })
        .unwrap();
    let denied = remembered(&view(&engine));
    assert!(
        denied
            .grounds()
            .determining_policies
            .iter()
            .any(|p| p == "mandate.guard.sensitivity-above-max"),
        "{denied:?}"
    );

    // An amendment, then a revoke: the same call on the same second.
    let request = with_token(ask("/agents/patcher", "read", "repos"), w.token());
    let decide = |view: &View| w.pipeline.decide(view, &request).decision;
    assert!(decide(&view(&engine)).is_allowed());
    let frontend = id("/workloads/frontend");
    let patcher_task = w.graph.get("t-patcher").unwrap();
    w.graph
        .amend(
            "t-patcher",
            &frontend,
            crate::graph::Amendment {
                actions: BTreeSet::from(["write".into()]),
                scope: patcher_task.scope.to_set(),
                max_sensitivity: patcher_task.max_sensitivity,
                expires_at: patcher_task.expires_at,
            },
            NOW,
            w.registry.snapshot().as_ref(),
        )
        .unwrap();
    assert!(!decide(&view(&engine)).is_allowed(), "read left the task");
    w.graph.revoke("t-patcher").unwrap();
    let write = with_token(ask("/agents/patcher", "write", "repos"), w.token());
    assert!(
        !w.pipeline
            .decide(&view(&engine), &write)
            .decision
            .is_allowed()
    );
}
