//! The task trail through the real server over mTLS: a chain of agents'
//! delegations, tokens and calls read back in order through
//! `AuditService`, filtered queries, the tree `mandate audit trail` prints,
//! and answers read back from the decision log once the window is past.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

mod common;

use common::audit::*;
use common::cli;
use common::{Setup, TestServer};
use mandate::api::v1::{GetTaskTrailRequest, QueryDecisionsRequest, RevokeTaskRequest};
use mandate::audit::AuditSettings;
use tokio_stream::StreamExt;
use tonic::Code;

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
    let root = root_task(
        &server,
        PATCHER,
        scope(&["read", "write"], &["repos"], 1, 3600),
    )
    .await
    .id;
    let mut patcher = party(&server, "/agents/patcher").await;
    let t = token(&mut patcher, &root).await;
    let (d1, ok1) = call_payments(&mut patcher, &t, "read").await;
    let child = delegate(&mut patcher, &root, REVIEWER, &["read"]).await;
    let mut reviewer = party(&server, "/agents/reviewer").await;
    let t = token(&mut reviewer, &child).await;
    let (d2, ok2) = call_payments(&mut reviewer, &t, "read").await;
    let (d3, ok3) = call_payments(&mut reviewer, &t, "write").await;
    let grandchild = delegate(&mut reviewer, &child, TESTER, &["read"]).await;
    let mut tester = party(&server, "/agents/tester").await;
    let t = token(&mut tester, &grandchild).await;
    let (d4, ok4) = call_payments(&mut tester, &t, "read").await;
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
    let other = root_task(&server, PATCHER, scope(&["read"], &["repos"], 1, 3600))
        .await
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
        let mut admin = admin.clone();
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

/// Runs `mandate ARGS` as the operator workload against `server`.
async fn mandate_as_admin(server: &TestServer, args: &[&str]) -> (i32, String) {
    let admin = cli::ClientFiles::new(server, "/workloads/admin");
    let out = cli::run_as(&admin, &server.addr, args).await;
    (cli::code(&out), cli::text(&out))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_trail_prints_as_a_tree_from_the_command_line() {
    let server = TestServer::start().await;
    let root = root_task(
        &server,
        PATCHER,
        scope(&["read", "write"], &["repos"], 1, 3600),
    )
    .await
    .id;
    let mut patcher = party(&server, "/agents/patcher").await;
    let child = delegate(&mut patcher, &root, REVIEWER, &["read"]).await;
    let mut reviewer = party(&server, "/agents/reviewer").await;
    let t = token(&mut reviewer, &child).await;
    let (decision_id, allowed) = call_payments(&mut reviewer, &t, "read").await;
    assert!(allowed);
    let mut admin = party(&server, "/workloads/admin").await;
    eventually(|| {
        let mut admin = admin.clone();
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
        let root = root_task(server, PATCHER, scope(&["read"], &["repos"], 1, 3600))
            .await
            .id;
        let mut patcher = party(server, "/agents/patcher").await;
        let t = token(&mut patcher, &root).await;
        let (decision_id, _) = call_payments(&mut patcher, &t, "read").await;
        call_payments(&mut patcher, &t, "write").await;
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
