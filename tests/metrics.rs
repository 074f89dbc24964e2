//! `/metrics` through the real server: decisions, latency, tokens,
//! revocations, the revision and TLS handshake failures move the series.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

mod common;

use common::TestServer;
use common::audit::*;
use mandate::api::v1::RevokeTaskRequest;

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
    let task = root_task(&server, PATCHER, scope(&["read"], &["repos"], 1, 3600))
        .await
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
    // Our SVID's expiry is in the future; this single replica trusts its
    // state and lags nothing.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(metric(&server, "mandate_svid_expiry_timestamp_seconds").await > now);
    assert_eq!(metric(&server, "mandate_store_available").await, 1.0);
    assert_eq!(
        metric(&server, "mandate_store_replica_lag_revisions").await,
        0.0
    );
    let text = scrape(&server).await;
    for name in [
        "mandate_svid_rotations_total",
        "mandate_identity_refused_updates_total",
        "mandate_approvals_pending",
        "mandate_policy_reloads_total",
        "mandate_policy_reload_failures_total",
        "mandate_audit_queue_depth",
    ] {
        assert!(text.contains(name), "{name} missing:\n{text}");
    }
}
