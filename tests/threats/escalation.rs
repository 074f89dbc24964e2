//! Cross-agent privilege escalation: a parent agent reaching for what it
//! delegated to a child, a child reaching for its parent's wider task.

use tonic::Code;

use crate::common::TestServer;
use crate::common::party::*;

/// The patcher's task (read and write the repos) and, below it, the
/// reviewer's (read the payments repository); each with its token.
struct Family {
    patcher: Party,
    reviewer: Party,
    parent: String,
    child: String,
    parent_token: String,
    child_token: String,
}

async fn family(server: &TestServer) -> Family {
    let parent = patcher_task(server).await.id;
    let mut patcher = party(server, "/agents/patcher").await;
    let child = delegate(
        &mut patcher,
        &parent,
        REVIEWER,
        scope(&["read"], &["repo:acme/payments"], 1, 600),
    )
    .await
    .id;
    let mut reviewer = party(server, "/agents/reviewer").await;
    let parent_token = token(&mut patcher, &parent).await;
    let child_token = token(&mut reviewer, &child).await;
    assert_allowed(
        &call(&mut patcher, &parent_token, "write", "repo:acme/payments").await,
        "the parent within its task",
    );
    assert_allowed(
        &call(&mut reviewer, &child_token, "read", "repo:acme/payments").await,
        "the child within its task",
    );
    Family {
        patcher,
        reviewer,
        parent,
        child,
        parent_token,
        child_token,
    }
}

#[tokio::test]
async fn a_parent_cannot_use_its_childs_token() {
    let server = TestServer::start().await;
    let mut f = family(&server).await;
    let r = call(&mut f.patcher, &f.child_token, "read", "repo:acme/payments").await;
    assert_denied(
        &r,
        "token-subject-mismatch",
        "the parent presenting the child's token",
    );
}

#[tokio::test]
async fn a_parent_cannot_get_a_token_for_its_childs_task() {
    let server = TestServer::start().await;
    let mut f = family(&server).await;
    assert_refused(
        try_token(&mut f.patcher, &f.child).await,
        Code::PermissionDenied,
        "not-delegatee",
        "the parent asking for a token of the child's task",
    );
}

#[tokio::test]
async fn a_child_cannot_use_its_parents_token() {
    let server = TestServer::start().await;
    let mut f = family(&server).await;
    let r = call(
        &mut f.reviewer,
        &f.parent_token,
        "write",
        "repo:acme/payments",
    )
    .await;
    assert_denied(
        &r,
        "token-subject-mismatch",
        "the child presenting the parent's token",
    );
}

#[tokio::test]
async fn a_child_cannot_get_a_token_for_its_parents_task() {
    let server = TestServer::start().await;
    let mut f = family(&server).await;
    assert_refused(
        try_token(&mut f.reviewer, &f.parent).await,
        Code::PermissionDenied,
        "not-delegatee",
        "the child asking for a token of the parent's task",
    );
}

#[tokio::test]
async fn a_childs_token_does_not_reach_its_parents_wider_scope() {
    let server = TestServer::start().await;
    let mut f = family(&server).await;
    // The parent may write, the child only reads.
    let r = call(
        &mut f.reviewer,
        &f.child_token,
        "write",
        "repo:acme/payments",
    )
    .await;
    assert_denied_by(
        &r,
        "mandate.guard.action-not-in-task.write",
        "the child writing with its own token",
    );
    // The parent's scope is all the repos, the child's one of them.
    let r = call(&mut f.reviewer, &f.child_token, "read", "repo:acme/web").await;
    assert_denied_by(
        &r,
        "mandate.guard.resource-outside-scope",
        "the child reading a repository only the parent covers",
    );
}

#[tokio::test]
async fn a_child_cannot_widen_or_revoke_its_parents_task() {
    let server = TestServer::start().await;
    let mut f = family(&server).await;
    // Amending the parent is its delegator's (the front end's) business;
    // policy refuses first, the graph's `not-delegator` check stands behind
    // it (see `workflow.rs`).
    assert_refused(
        f.reviewer
            .tasks
            .amend_task(mandate::api::v1::AmendTaskRequest {
                task_id: f.parent.clone(),
                scope: Some(scope(&["read", "write", "delete"], &["repos"], 3, 3600)),
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        "no-permit",
        "the child amending the parent's task",
    );
    // Revoking it (to take over, or to disrupt) is refused by policy.
    assert_refused(
        f.reviewer
            .tasks
            .revoke_task(mandate::api::v1::RevokeTaskRequest {
                task_id: f.parent.clone(),
                reason: String::new(),
            })
            .await,
        Code::PermissionDenied,
        "no-permit",
        "the child revoking the parent's task",
    );
    assert_allowed(
        &call(
            &mut f.patcher,
            &f.parent_token,
            "write",
            "repo:acme/payments",
        )
        .await,
        "the parent after the child's attempts",
    );
}
