//! The audit trail through the real server over mTLS: a chain of agents'
//! delegations, tokens and calls read back in order through
//! `AuditService`, the decision log's hash chain checked by `mandate audit
//! verify`, redaction, the overflow policies and `/metrics`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Setup, TestServer};
use mandate::api::v1::audit_service_client::AuditServiceClient;
use mandate::api::v1::authorization_service_client::AuthorizationServiceClient;
use mandate::api::v1::task_service_client::TaskServiceClient;
use mandate::api::v1::{
    AuthorizeRequest, BatchAuthorizeRequest, CreateTaskRequest, DelegateTaskRequest,
    GetTaskTrailRequest, IssueTaskTokenRequest, QueryDecisionsRequest, Resource, RevokeTaskRequest,
    TaskScope, trail_entry::Entry,
};
use mandate::audit::{AuditSettings, Overflow, Redaction};
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::transport::Channel;

const PATCHER: &str = "spiffe://mandate.local/agents/patcher";
const REVIEWER: &str = "spiffe://mandate.local/agents/reviewer";
const TESTER: &str = "spiffe://mandate.local/agents/tester";

struct Party {
    tasks: TaskServiceClient<Channel>,
    authz: AuthorizationServiceClient<Channel>,
    audit: AuditServiceClient<Channel>,
}

async fn party(server: &TestServer, path: &str) -> Party {
    let channel = server.channel(path).await;
    Party {
        tasks: TaskServiceClient::new(channel.clone()),
        authz: AuthorizationServiceClient::new(channel.clone()),
        audit: AuditServiceClient::new(channel),
    }
}

fn scope(actions: &[&str], resources: &[&str]) -> TaskScope {
    TaskScope {
        actions: actions.iter().map(|s| (*s).to_owned()).collect(),
        resources: resources.iter().map(|s| (*s).to_owned()).collect(),
        max_sensitivity: 1,
        expires_at: 0,
        ttl_seconds: 3600,
    }
}

async fn delegate(party: &mut Party, parent: &str, delegatee: &str, actions: &[&str]) -> String {
    party
        .tasks
        .delegate_task(DelegateTaskRequest {
            parent_id: parent.into(),
            intent: format!("help with {parent}"),
            delegatee: delegatee.into(),
            scope: Some(scope(actions, &["repos"])),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap()
        .id
}

async fn token(party: &mut Party, task: &str) -> String {
    party
        .tasks
        .issue_task_token(IssueTaskTokenRequest {
            task_id: task.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .token
}

/// One call; returns its decision id and whether it was allowed.
async fn call(party: &mut Party, token: &str, action: &str) -> (String, bool) {
    let r = common::call(&mut party.authz, token, action, "repo:acme/payments").await;
    (
        r.decision_id,
        r.decision == mandate::api::v1::Decision::Allow as i32,
    )
}

/// `(kind, task id, decision id)` of a trail: kind is the event name or
/// `allow`/`deny`.
type Step = (String, String, String);

async fn trail(admin: &mut Party, root: &str) -> Vec<Step> {
    let response = admin
        .audit
        .get_task_trail(GetTaskTrailRequest {
            root_task_id: root.into(),
        })
        .await
        .unwrap()
        .into_inner();
    response
        .entries
        .into_iter()
        .filter_map(|e| e.entry)
        .map(|e| match e {
            Entry::Event(e) => (e.event, e.task_id, String::new()),
            Entry::Decision(d) => (d.decision, d.task_id, d.decision_id),
        })
        .collect()
}

/// Waits until `check` holds (the writer thread indexes asynchronously).
async fn eventually<F: std::future::Future<Output = bool>>(mut check: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "condition not met in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_three_level_chain_reads_back_as_its_trail_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("decisions.jsonl");
    let server = TestServer::start_with(Setup {
        decision_log: Some(log.clone()),
        ..Setup::default()
    })
    .await;
    let mut frontend = party(&server, "/workloads/frontend").await;
    let root = frontend
        .tasks
        .create_task(CreateTaskRequest {
            intent: "fix the payments build".into(),
            delegatee: PATCHER.into(),
            on_behalf_of: "alice".into(),
            scope: Some(scope(&["read", "write"], &["repos"])),
        })
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap()
        .id;
    let mut patcher = party(&server, "/agents/patcher").await;
    let t = token(&mut patcher, &root).await;
    let (d1, ok1) = call(&mut patcher, &t, "read").await;
    let child = delegate(&mut patcher, &root, REVIEWER, &["read"]).await;
    let mut reviewer = party(&server, "/agents/reviewer").await;
    let t = token(&mut reviewer, &child).await;
    let (d2, ok2) = call(&mut reviewer, &t, "read").await;
    let (d3, ok3) = call(&mut reviewer, &t, "write").await;
    let grandchild = delegate(&mut reviewer, &child, TESTER, &["read"]).await;
    let mut tester = party(&server, "/agents/tester").await;
    let t = token(&mut tester, &grandchild).await;
    let (d4, ok4) = call(&mut tester, &t, "read").await;
    assert_eq!((ok1, ok2, ok3, ok4), (true, true, false, true));
    frontend
        .tasks
        .revoke_task(RevokeTaskRequest {
            task_id: root.clone(),
            reason: "done".into(),
        })
        .await
        .unwrap();
    // Another chain's entries stay out of this trail.
    let other = frontend
        .tasks
        .create_task(CreateTaskRequest {
            intent: "something else".into(),
            delegatee: PATCHER.into(),
            on_behalf_of: "alice".into(),
            scope: Some(scope(&["read"], &["repos"])),
        })
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap()
        .id;

    let step = |kind: &str, task: &str, decision: &str| {
        (kind.to_owned(), task.to_owned(), decision.to_owned())
    };
    let expected = vec![
        step("task_created", &root, ""),
        step("token_issued", &root, ""),
        step("allow", &root, &d1),
        step("task_delegated", &child, ""),
        step("token_issued", &child, ""),
        step("allow", &child, &d2),
        step("deny", &child, &d3),
        step("task_delegated", &grandchild, ""),
        step("token_issued", &grandchild, ""),
        step("allow", &grandchild, &d4),
        step("task_revoked", &root, ""),
    ];
    let mut admin = party(&server, "/workloads/admin").await;
    eventually(|| {
        let mut admin = party_clone(&admin);
        let root = root.clone();
        async move { trail(&mut admin, &root).await.len() >= 11 }
    })
    .await;
    assert_eq!(trail(&mut admin, &root).await, expected);
    assert_eq!(trail(&mut admin, &other).await.len(), 1);

    // The whole chain's decisions by root task, and filters that narrow it.
    let query = |r: QueryDecisionsRequest| {
        let mut audit = admin.audit.clone();
        async move {
            let mut stream = audit.query_decisions(r).await.unwrap().into_inner();
            let mut ids = Vec::new();
            while let Some(d) = stream.next().await {
                ids.push(d.unwrap().decision_id);
            }
            ids
        }
    };
    let by_root = query(QueryDecisionsRequest {
        root_task_id: root.clone(),
        ..Default::default()
    })
    .await;
    assert_eq!(
        by_root,
        vec![d1.clone(), d2.clone(), d3.clone(), d4.clone()]
    );
    let denied = query(QueryDecisionsRequest {
        root_task_id: root.clone(),
        decision: "deny".into(),
        ..Default::default()
    })
    .await;
    assert_eq!(denied, vec![d3.clone()]);
    let by_subject = query(QueryDecisionsRequest {
        subject: REVIEWER.into(),
        ..Default::default()
    })
    .await;
    assert_eq!(by_subject, vec![d2, d3]);
    let by_task = query(QueryDecisionsRequest {
        task_id: grandchild.clone(),
        since_ms: 1,
        until_ms: i64::MAX,
        ..Default::default()
    })
    .await;
    assert_eq!(by_task, vec![d4]);

    // Cedar decides who reads the trail: not the agents.
    let refused = patcher
        .audit
        .get_task_trail(GetTaskTrailRequest {
            root_task_id: root.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");

    // The file holds the same trail, with an intact hash chain.
    server.server.shutdown().await.unwrap();
    let verified = mandate::audit::verify_files(std::slice::from_ref(&log)).unwrap();
    assert_eq!(verified.lines, 12);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("\"event\":\"task_delegated\""), "{text}");
}

/// The same connection's clients, for a closure.
fn party_clone(party: &Party) -> Party {
    Party {
        tasks: party.tasks.clone(),
        authz: party.authz.clone(),
        audit: party.audit.clone(),
    }
}

/// Runs `mandate audit verify FILE`; returns the exit code and stdout.
fn verify(file: &Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mandate"))
        .args(["audit", "verify"])
        .arg(file)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_hash_chain_detects_an_edited_a_deleted_and_a_reordered_line() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("decisions.jsonl");
    let server = TestServer::start_with(Setup {
        decision_log: Some(log.clone()),
        ..Setup::default()
    })
    .await;
    let mut client = server.client("/workloads/envoy").await;
    for _ in 0..5 {
        common::call(&mut client, "", "read", "handbook").await;
    }
    server.server.shutdown().await.unwrap();
    let (code, out) = verify(&log);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("5 records"), "{out}");

    let lines: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let write = |name: &str, lines: &[String]| {
        let path = dir.path().join(name);
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        path
    };
    let mut edited = lines.clone();
    edited[1] = edited[1].replace("\"read\"", "\"delete\"");
    assert_ne!(edited[1], lines[1]);
    let (code, out) = verify(&write("edited.jsonl", &edited));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("edited.jsonl:3:"), "{out}");

    let mut deleted = lines.clone();
    deleted.remove(2);
    let (code, out) = verify(&write("deleted.jsonl", &deleted));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("deleted.jsonl:3:"), "{out}");

    let mut reordered = lines.clone();
    reordered.swap(2, 3);
    let (code, out) = verify(&write("reordered.jsonl", &reordered));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("reordered.jsonl:3:"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn redacted_context_keys_and_tokens_never_reach_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("decisions.jsonl");
    let server = TestServer::start_with(Setup {
        decision_log: Some(log.clone()),
        audit: AuditSettings {
            redaction: Redaction::new(["ticket".to_owned()], []),
            ..AuditSettings::default()
        },
        ..Setup::default()
    })
    .await;
    let mut frontend = party(&server, "/workloads/frontend").await;
    let task = frontend
        .tasks
        .create_task(CreateTaskRequest {
            intent: "fix".into(),
            delegatee: PATCHER.into(),
            on_behalf_of: "alice".into(),
            scope: Some(scope(&["read"], &["repos"])),
        })
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap()
        .id;
    let mut patcher = party(&server, "/agents/patcher").await;
    let t = token(&mut patcher, &task).await;
    let mut context = prost_types::Struct::default();
    context.fields.insert(
        "ticket".into(),
        prost_types::Value {
            kind: Some(prost_types::value::Kind::StringValue(
                "SECRET-TICKET-42".into(),
            )),
        },
    );
    context.fields.insert(
        "purpose".into(),
        prost_types::Value {
            kind: Some(prost_types::value::Kind::StringValue("kept purpose".into())),
        },
    );
    let r = patcher
        .authz
        .authorize(AuthorizeRequest {
            action: "read".into(),
            resource: Some(Resource {
                r#type: String::new(),
                id: "repo:acme/payments".into(),
            }),
            token: t.clone(),
            context: Some(context),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.errors.is_empty(), "{r:?}");
    server.server.shutdown().await.unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("kept purpose"),
        "the context is recorded: {text}"
    );
    assert!(text.contains("(redacted)"), "{text}");
    assert!(!text.contains("SECRET-TICKET-42"), "{text}");
    // Tokens never: neither the whole token nor its signature.
    let signature = t.rsplit('.').next().unwrap();
    assert!(!text.contains(&t) && !text.contains(signature), "{text}");
    assert!(text.contains("\"token_jti\""), "{text}");
}

/// `total` decisions in batches of 100 from four clients at once.
async fn flood(server: &TestServer, total: usize) {
    let mut handles = Vec::new();
    for _ in 0..4 {
        let mut client = server.client("/workloads/envoy").await;
        let batches = total / 400;
        handles.push(tokio::spawn(async move {
            for _ in 0..batches {
                let requests = (0..100)
                    .map(|_| AuthorizeRequest {
                        action: "read".into(),
                        resource: Some(Resource {
                            r#type: String::new(),
                            id: "handbook".into(),
                        }),
                        ..Default::default()
                    })
                    .collect();
                client
                    .batch_authorize(BatchAuthorizeRequest { requests })
                    .await
                    .unwrap();
            }
        }));
    }
    for handle in handles {
        handle.await.unwrap();
    }
}

fn overflow_setup(log: &Path, overflow: Overflow) -> Setup {
    Setup {
        decision_log: Some(log.to_owned()),
        decision_log_capacity: 1,
        max_batch_size: 100,
        audit: AuditSettings {
            overflow,
            ..AuditSettings::default()
        },
        ..Setup::default()
    }
}

fn lines(path: &Path) -> u64 {
    std::fs::read_to_string(path).unwrap().lines().count() as u64
}

#[tokio::test(flavor = "multi_thread")]
async fn the_drop_policy_counts_what_it_loses() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("decisions.jsonl");
    let server = TestServer::start_with(overflow_setup(&log, Overflow::Drop)).await;
    // A queue of one fills as soon as decisions outpace the writer; go on
    // until some are dropped.
    let mut total = 0;
    let mut dropped = 0;
    for _ in 0..10 {
        flood(&server, 1600).await;
        total += 1600;
        dropped = metric(&server, "mandate_audit_dropped_total").await as u64;
        if dropped > 0 {
            break;
        }
    }
    assert!(dropped > 0, "no record dropped with a queue of one");
    let (_, ready) = common::readyz(&server).await;
    assert_eq!(ready["decision_log"]["dropped"], dropped);
    server.server.shutdown().await.unwrap();
    assert_eq!(
        lines(&log) + dropped,
        total,
        "every record written or counted"
    );
    assert_eq!(
        mandate::audit::verify_files(&[log]).unwrap().lines,
        total - dropped
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_block_policy_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("decisions.jsonl");
    let server = TestServer::start_with(overflow_setup(&log, Overflow::Block)).await;
    flood(&server, 1600).await;
    assert_eq!(metric(&server, "mandate_audit_dropped_total").await, 0.0);
    server.server.shutdown().await.unwrap();
    assert_eq!(lines(&log), 1600);
    assert_eq!(mandate::audit::verify_files(&[log]).unwrap().lines, 1600);
}

/// `GET /metrics`.
async fn scrape(server: &TestServer) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(server.server.http_addr())
        .await
        .unwrap();
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_owned())
}

/// The value of the sample named exactly `series` (with its labels), 0
/// when absent.
async fn metric(server: &TestServer, series: &str) -> f64 {
    let text = scrape(server).await;
    text.lines()
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().unwrap())
        })
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_move_when_decisions_are_made() {
    let server = TestServer::start().await;
    let allow = r#"mandate_decisions_total{decision="allow",reason="none"}"#;
    let latency = "mandate_decision_latency_seconds_count";
    let before = (metric(&server, allow).await, metric(&server, latency).await);
    let mut client = server.client("/workloads/envoy").await;
    for _ in 0..3 {
        common::call(&mut client, "", "read", "handbook").await;
    }
    let denied = common::call(&mut client, "", "delete", "handbook").await;
    let deny = format!(
        r#"mandate_decisions_total{{decision="deny",reason="{}"}}"#,
        denied.reasons[0]
    );
    assert_eq!(metric(&server, allow).await, before.0 + 3.0);
    assert_eq!(metric(&server, latency).await, before.1 + 4.0);
    assert_eq!(metric(&server, &deny).await, 1.0);

    // Tokens, revocations and the revision follow the task API.
    let revision = metric(&server, "mandate_state_revision").await;
    let mut frontend = party(&server, "/workloads/frontend").await;
    let task = frontend
        .tasks
        .create_task(CreateTaskRequest {
            intent: "fix".into(),
            delegatee: PATCHER.into(),
            on_behalf_of: "alice".into(),
            scope: Some(scope(&["read"], &["repos"])),
        })
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap()
        .id;
    let mut patcher = party(&server, "/agents/patcher").await;
    token(&mut patcher, &task).await;
    frontend
        .tasks
        .revoke_task(RevokeTaskRequest {
            task_id: task,
            reason: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(metric(&server, "mandate_tokens_issued_total").await, 1.0);
    assert_eq!(
        metric(&server, r#"mandate_revocations_total{kind="task"}"#).await,
        1.0
    );
    assert!(metric(&server, "mandate_state_revision").await > revision);

    // A client without a certificate fails the handshake, by reason.
    let _ = server.raw_channel(None).await;
    eventually(|| async {
        metric(
            &server,
            r#"mandate_tls_handshake_failures_total{reason="no_client_certificate"}"#,
        )
        .await
            >= 1.0
    })
    .await;
    let text = scrape(&server).await;
    for name in [
        "mandate_approvals_pending",
        "mandate_policy_reloads_total",
        "mandate_policy_reload_failures_total",
        "mandate_audit_queue_depth",
    ] {
        assert!(text.contains(name), "{name} missing:\n{text}");
    }
}

/// Runs `mandate ARGS` as the operator workload against `server`.
async fn mandate_as_admin(server: &TestServer, args: &[&str]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = server.ca.svid("/workloads/admin").write(dir.path(), "svid");
    let ca = dir.path().join("bundle.pem");
    std::fs::write(&ca, &server.ca.pem).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_mandate"));
    command.args(args).arg("--server").arg(&server.addr);
    command.arg("--cert").arg(cert).arg("--key").arg(key);
    command.arg("--ca").arg(ca);
    let out = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    drop(dir);
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_trail_prints_as_a_tree_from_the_command_line() {
    let server = TestServer::start().await;
    let mut frontend = party(&server, "/workloads/frontend").await;
    let root = frontend
        .tasks
        .create_task(CreateTaskRequest {
            intent: "fix the payments build".into(),
            delegatee: PATCHER.into(),
            on_behalf_of: "alice".into(),
            scope: Some(scope(&["read", "write"], &["repos"])),
        })
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap()
        .id;
    let mut patcher = party(&server, "/agents/patcher").await;
    let child = delegate(&mut patcher, &root, REVIEWER, &["read"]).await;
    let mut reviewer = party(&server, "/agents/reviewer").await;
    let t = token(&mut reviewer, &child).await;
    let (decision_id, allowed) = call(&mut reviewer, &t, "read").await;
    assert!(allowed);
    let mut admin = party(&server, "/workloads/admin").await;
    eventually(|| {
        let mut admin = party_clone(&admin);
        let root = root.clone();
        async move { trail(&mut admin, &root).await.len() >= 4 }
    })
    .await;
    let _ = &mut admin;

    let (code, out) = mandate_as_admin(&server, &["audit", "trail", &root]).await;
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with(&format!(
            "task {root} created by spiffe://mandate.local/workloads/frontend for alice to {PATCHER}"
        )),
        "{out}"
    );
    assert!(
        lines[1].starts_with(&format!(
            "  task {child} delegated by {PATCHER} to {REVIEWER}"
        )),
        "{out}"
    );
    assert!(lines[2].contains("token issued to"), "{out}");
    assert!(
        lines[3].contains(&format!("allow read repo:acme/payments by {REVIEWER}")),
        "{out}"
    );

    let (code, out) = mandate_as_admin(&server, &["audit", "trail", &root, "--json"]).await;
    assert_eq!(code, 0, "{out}");
    let entries: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(entries.len(), 4, "{out}");
    assert_eq!(entries[3]["decision_id"], decision_id);

    let (code, out) = mandate_as_admin(
        &server,
        &[
            "audit",
            "query",
            "--root-task",
            &root,
            "--decision",
            "allow",
            "--since",
            "1h",
            "--json",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains(&decision_id), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn redacted_headers_never_reach_the_file() {
    use envoy_types::pb::envoy::service::auth::v3::attribute_context::{
        HttpRequest, Peer, Request,
    };
    use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
    use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("decisions.jsonl");
    let server = TestServer::start_with(Setup {
        decision_log: Some(log.clone()),
        envoy: mandate::envoy::EnvoySettings {
            context_headers: vec!["x-env".into(), "x-secret".into(), "cookie".into()],
            ..Default::default()
        },
        route_map: Some(common::repo().join("examples/envoy/routes.toml")),
        audit: AuditSettings {
            redaction: Redaction::new([], ["X-Secret".to_owned()]),
            ..AuditSettings::default()
        },
        ..Setup::default()
    })
    .await;
    let mut frontend = party(&server, "/workloads/frontend").await;
    let task = frontend
        .tasks
        .create_task(CreateTaskRequest {
            intent: "fix".into(),
            delegatee: PATCHER.into(),
            on_behalf_of: "alice".into(),
            scope: Some(scope(&["read"], &["repos"])),
        })
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap()
        .id;
    let leaf = server.ca.svid("/agents/patcher");
    let mut agent = TaskServiceClient::new(server.channel_for(&leaf).await);
    let token = agent
        .issue_task_token(IssueTaskTokenRequest {
            task_id: task,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .token;
    let headers = [
        ("x-mandate-token", token.as_str()),
        ("x-env", "staging"),
        ("x-secret", "HEADER-SECRET-7"),
        ("cookie", "session=COOKIE-9"),
    ];
    let request = CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(Peer {
                principal: PATCHER.into(),
                certificate: utf8_percent_encode(&leaf.cert_pem, NON_ALPHANUMERIC).to_string(),
                ..Default::default()
            }),
            request: Some(Request {
                http: Some(HttpRequest {
                    method: "GET".into(),
                    host: "tools.acme.internal:8443".into(),
                    path: "/repos/acme/payments".into(),
                    headers: headers
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    };
    let mut envoy = AuthorizationClient::new(server.channel("/workloads/envoy").await);
    let response = envoy.check(request).await.unwrap().into_inner();
    assert_eq!(response.status.unwrap().code, 0, "the request is allowed");
    server.server.shutdown().await.unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("staging"), "the headers are recorded: {text}");
    assert!(!text.contains("HEADER-SECRET-7"), "{text}");
    assert!(!text.contains("COOKIE-9"), "{text}");
    assert!(!text.contains(&token), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trail_older_than_the_window_is_read_back_from_the_file() {
    let small_window = AuditSettings {
        index: mandate::audit::IndexLimits {
            max_entries: 2,
            max_age_ms: 3_600_000,
        },
        ..AuditSettings::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let with_file = TestServer::start_with(Setup {
        decision_log: Some(dir.path().join("decisions.jsonl")),
        audit: small_window.clone(),
        ..Setup::default()
    })
    .await;
    let without_file = TestServer::start_with(Setup {
        audit: small_window,
        ..Setup::default()
    })
    .await;
    for server in [&with_file, &without_file] {
        let mut frontend = party(server, "/workloads/frontend").await;
        let root = frontend
            .tasks
            .create_task(CreateTaskRequest {
                intent: "fix".into(),
                delegatee: PATCHER.into(),
                on_behalf_of: "alice".into(),
                scope: Some(scope(&["read"], &["repos"])),
            })
            .await
            .unwrap()
            .into_inner()
            .task
            .unwrap()
            .id;
        let mut patcher = party(server, "/agents/patcher").await;
        let t = token(&mut patcher, &root).await;
        let (decision_id, _) = call(&mut patcher, &t, "read").await;
        call(&mut patcher, &t, "write").await;
        let admin = party(server, "/workloads/admin").await;
        let ask = || {
            let mut audit = admin.audit.clone();
            let root = root.clone();
            async move {
                audit
                    .get_task_trail(GetTaskTrailRequest { root_task_id: root })
                    .await
                    .unwrap()
                    .into_inner()
            }
        };
        if std::ptr::eq(server, &with_file) {
            // Four entries, two in the window: the file has all of them.
            eventually(|| async { ask().await.entries.len() == 4 }).await;
            let trail = ask().await;
            assert_eq!(trail.window_start_ms, 0);
            let query = admin
                .audit
                .clone()
                .query_decisions(QueryDecisionsRequest {
                    root_task_id: root.clone(),
                    decision: "allow".into(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .collect::<Vec<_>>()
                .await;
            assert_eq!(query.len(), 1);
            assert_eq!(query[0].as_ref().unwrap().decision_id, decision_id);
        } else {
            // Only the window, and the answer says where it starts.
            eventually(|| async { ask().await.window_start_ms != 0 }).await;
            assert_eq!(ask().await.entries.len(), 2);
        }
    }
}
