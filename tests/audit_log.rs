//! The decision log file through the real server over mTLS: its hash chain
//! checked by `mandate audit verify`, redaction of context keys, headers
//! and tokens, and the overflow policies (`drop` counts, `block` loses
//! nothing).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

mod common;

use std::path::Path;

use common::audit::*;
use common::{Setup, TestServer};
use mandate::api::v1::task_service_client::TaskServiceClient;
use mandate::api::v1::{AuthorizeRequest, BatchAuthorizeRequest, IssueTaskTokenRequest, Resource};
use mandate::audit::{AuditSettings, Overflow, Redaction};

/// Runs `mandate audit verify FILE`; returns the exit code and stdout.
fn verify(file: &Path) -> (i32, String) {
    let out = common::cli::mandate()
        .args(["audit", "verify"])
        .arg(file)
        .output()
        .unwrap();
    (common::cli::code(&out), common::cli::stdout(&out))
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
    let task = root_task(&server, PATCHER, scope(&["read"], &["repos"], 1, 3600))
        .await
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
    let task = root_task(&server, PATCHER, scope(&["read"], &["repos"], 1, 3600))
        .await
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
