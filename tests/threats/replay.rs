//! Token replay: a task token used after it should have stopped working, or
//! by someone it was not minted for.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mandate::api::v1::{IssueTaskTokenRequest, RevokeTaskRequest};

use crate::common::TestServer;
use crate::common::party::*;

#[tokio::test]
async fn replaying_an_expired_token_is_denied() {
    let server = TestServer::start().await;
    // The task lives an hour; the token a minute.
    let task = patcher_task(&server).await;
    let mut patcher = party(&server, "/agents/patcher").await;
    let short = patcher
        .tasks
        .issue_task_token(IssueTaskTokenRequest {
            task_id: task.id.clone(),
            ttl_seconds: 60,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_allowed(
        &call(&mut patcher, &short.token, "read", "repo:acme/payments").await,
        "a fresh token",
    );
    // Past `exp` and the 30 s leeway, with the task still active.
    server.clock.advance(60 + 31);
    let r = call(&mut patcher, &short.token, "read", "repo:acme/payments").await;
    assert_denied(&r, "token-expired", "a token past its expiry");
    // The agent may get a new one while its task lives: expiry limits a
    // stolen token's use, not the agent's work.
    let fresh = token(&mut patcher, &task.id).await;
    assert_allowed(
        &call(&mut patcher, &fresh, "read", "repo:acme/payments").await,
        "a new token for the same task",
    );
}

#[tokio::test]
async fn replaying_a_token_over_another_agents_connection_is_denied() {
    let server = TestServer::start().await;
    let task = patcher_task(&server).await;
    let mut patcher = party(&server, "/agents/patcher").await;
    let captured = token(&mut patcher, &task.id).await;
    for path in [
        "/agents/reviewer",
        "/workloads/frontend",
        "/workloads/admin",
    ] {
        let mut other = party(&server, path).await;
        let r = call(&mut other, &captured, "read", "repo:acme/payments").await;
        assert_denied(
            &r,
            "token-subject-mismatch",
            &format!("{path} replaying the patcher's token"),
        );
    }
}

#[tokio::test]
async fn replaying_a_token_with_another_certificate_of_the_same_id_is_denied() {
    let server = TestServer::start().await;
    let task = patcher_task(&server).await;
    let bound = server.ca.svid("/agents/patcher");
    let mut patcher = party_for(&server, &bound).await;
    let captured = token(&mut patcher, &task.id).await;
    // The same certificate over a second connection is the same holder.
    let mut again = party_for(&server, &bound).await;
    assert_allowed(
        &call(&mut again, &captured, "read", "repo:acme/payments").await,
        "the bound certificate over a new connection",
    );
    // A second SVID for the patcher's ID (another key pair, as after a
    // rotation, or a copy of the workload elsewhere): not the bound one.
    let twin = server.ca.svid("/agents/patcher");
    let mut twin = party_for(&server, &twin).await;
    let r = call(&mut twin, &captured, "read", "repo:acme/payments").await;
    assert_denied(
        &r,
        "token-not-bound",
        "the patcher's ID with another certificate",
    );
}

#[tokio::test]
async fn replaying_a_token_after_its_task_was_revoked_is_denied_when_revoke_returns() {
    let server = TestServer::start().await;
    let task = patcher_task(&server).await;
    let bound = server.ca.svid("/agents/patcher");
    let mut patcher = party_for(&server, &bound).await;
    let captured = token(&mut patcher, &task.id).await;
    // Warm every cache on the way: the verified-token cache, the task
    // entities, the connection.
    for _ in 0..3 {
        assert_allowed(
            &call(&mut patcher, &captured, "write", "repo:acme/payments").await,
            "before the revoke",
        );
    }
    let mut frontend = party(&server, "/workloads/frontend").await;
    let revoked = frontend
        .tasks
        .revoke_task(RevokeTaskRequest {
            task_id: task.id.clone(),
            reason: "the user cancelled".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(revoked.revoked_task_ids, std::slice::from_ref(&task.id));
    // The very next call, on the warm connection and on a new one.
    let r = call(&mut patcher, &captured, "write", "repo:acme/payments").await;
    assert_denied_by(
        &r,
        "mandate.guard.task-not-active",
        "the token right after the revoke",
    );
    assert!(r.revision >= revoked.revision, "{r:?}");
    let mut fresh = party_for(&server, &bound).await;
    let r = call(&mut fresh, &captured, "write", "repo:acme/payments").await;
    assert_denied_by(
        &r,
        "mandate.guard.task-not-active",
        "the token on a new connection",
    );
    // No new token for it either.
    assert_refused(
        try_token(&mut patcher, &task.id).await,
        tonic::Code::FailedPrecondition,
        "task-not-active",
        "a new token for a revoked task",
    );
}

#[tokio::test]
async fn replaying_a_token_with_edited_claims_is_denied() {
    let server = TestServer::start().await;
    let narrow = root_task(
        &server,
        PATCHER,
        scope(&["read"], &["repo:acme/web"], 1, 3600),
    )
    .await;
    let wide = patcher_task(&server).await;
    let mut patcher = party(&server, "/agents/patcher").await;
    let genuine = token(&mut patcher, &narrow.id).await;
    // Point the token at the wider task, keeping the signature.
    let mut parts = genuine.split('.');
    let (header, payload, signature) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let mut claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    claims["task"] = wide.id.clone().into();
    let edited = format!(
        "{header}.{}.{signature}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap())
    );
    let r = call(&mut patcher, &edited, "write", "repo:acme/payments").await;
    assert_denied(
        &r,
        "token-bad-signature",
        "a token edited to name another task",
    );
    // Unsigned (`alg: none`) is not accepted either.
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"mandate-task+jwt"}"#),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap())
    );
    let r = call(&mut patcher, &none, "write", "repo:acme/payments").await;
    assert_denied(&r, "token-wrong-algorithm", "an unsigned token");
}
