//! Scope inflation: a delegation (or an amendment) that gives the next
//! agent more than the delegator has. Each widened field is refused with
//! PERMISSION_DENIED and a reason that names it, whatever the policies say.

use mandate::api::v1::{AmendTaskRequest, TaskScope};
use tonic::Code;

use crate::common::party::*;
use crate::common::{Setup, TestServer};

/// The patcher's task (read and write the repos, internal data, an hour)
/// and the patcher's party; a narrower delegation to the reviewer works,
/// so a refusal below is the widened field's.
async fn parent(server: &TestServer) -> (mandate::api::v1::Task, Party) {
    let task = patcher_task(server).await;
    let mut patcher = party(server, "/agents/patcher").await;
    delegate(
        &mut patcher,
        &task.id,
        REVIEWER,
        scope(&["read"], &["repo:acme/payments"], 0, 600),
    )
    .await;
    (task, patcher)
}

/// Delegating `widened` to the tester is refused, naming `reason`.
async fn assert_inflation_refused(server: &TestServer, widened: TaskScope, reason: &str) {
    let (task, mut patcher) = parent(server).await;
    assert_refused(
        try_delegate(&mut patcher, &task.id, TESTER, widened).await,
        Code::PermissionDenied,
        reason,
        &format!("a delegation that {reason}"),
    );
    assert!(
        server.graph.len() == 2,
        "nothing was created by the refused delegation"
    );
}

#[tokio::test]
async fn scope_inflation_of_actions_is_refused() {
    let server = TestServer::start().await;
    let widened = scope(&["read", "delete"], &["repo:acme/payments"], 1, 600);
    assert_inflation_refused(&server, widened, "widens-actions").await;
}

#[tokio::test]
async fn scope_inflation_of_resources_is_refused() {
    let server = TestServer::start().await;
    // A sibling of the parent's scope, and its parent (`repos` is in
    // scope, `customer-db` is not).
    let widened = scope(&["read"], &["repo:acme/payments", "customer-db"], 1, 600);
    assert_inflation_refused(&server, widened, "widens-scope").await;
}

#[tokio::test]
async fn scope_inflation_of_max_sensitivity_is_refused() {
    let server = TestServer::start().await;
    let widened = scope(&["read"], &["repo:acme/payments"], 2, 600);
    assert_inflation_refused(&server, widened, "widens-sensitivity").await;
}

#[tokio::test]
async fn scope_inflation_of_the_deadline_is_refused() {
    let server = TestServer::start().await;
    // By lifetime...
    let widened = scope(&["read"], &["repo:acme/payments"], 1, 2 * 3600);
    assert_inflation_refused(&server, widened, "outlives-parent").await;
    // ...and by an explicit deadline a second past the parent's.
    let server = TestServer::start().await;
    let (task, mut patcher) = parent(&server).await;
    let mut widened = scope(&["read"], &["repo:acme/payments"], 1, 0);
    widened.expires_at = task.expires_at + 1;
    assert_refused(
        try_delegate(&mut patcher, &task.id, TESTER, widened).await,
        Code::PermissionDenied,
        "outlives-parent",
        "a deadline past the parent's",
    );
}

#[tokio::test]
async fn scope_inflation_of_depth_beyond_the_limit_is_refused() {
    let server = TestServer::start_with(Setup {
        max_delegation_depth: 2,
        ..Setup::default()
    })
    .await;
    let root = patcher_task(&server).await;
    let narrow = || scope(&["read"], &["repos"], 1, 600);
    let mut patcher = party(&server, "/agents/patcher").await;
    let depth1 = delegate(&mut patcher, &root.id, REVIEWER, narrow()).await;
    let mut reviewer = party(&server, "/agents/reviewer").await;
    let depth2 = delegate(&mut reviewer, &depth1.id, TESTER, narrow()).await;
    assert_eq!(depth2.depth, 2);
    let mut tester = party(&server, "/agents/tester").await;
    assert_refused(
        try_delegate(&mut tester, &depth2.id, ANALYST, narrow()).await,
        Code::PermissionDenied,
        "depth-exceeded",
        "a third delegation with a limit of two",
    );
}

#[tokio::test]
async fn scope_inflation_by_amending_a_child_beyond_its_parent_is_refused() {
    let server = TestServer::start().await;
    let task = patcher_task(&server).await;
    let mut patcher = party(&server, "/agents/patcher").await;
    let child = delegate(
        &mut patcher,
        &task.id,
        REVIEWER,
        scope(&["read"], &["repo:acme/payments"], 1, 600),
    )
    .await;
    // The patcher is the child's delegator and may amend it, within its
    // own task only.
    for (widened, reason) in [
        (
            scope(&["read", "deploy"], &["repo:acme/payments"], 1, 600),
            "widens-actions",
        ),
        (scope(&["read"], &["payroll"], 1, 600), "widens-scope"),
        (
            scope(&["read"], &["repo:acme/payments"], 3, 600),
            "widens-sensitivity",
        ),
        (
            scope(&["read"], &["repo:acme/payments"], 1, 7200),
            "outlives-parent",
        ),
    ] {
        assert_refused(
            patcher
                .tasks
                .amend_task(AmendTaskRequest {
                    task_id: child.id.clone(),
                    scope: Some(widened),
                    ..Default::default()
                })
                .await,
            Code::PermissionDenied,
            reason,
            &format!("an amendment that {reason}"),
        );
    }
}
