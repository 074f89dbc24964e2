//! Workflow step bypass: the agent takes a step that needs a human's
//! approval without one, with someone else's, or with one given for a task
//! that has changed since.

use mandate::api::v1::{AmendTaskRequest, DecideApprovalRequest, Decision};
use tonic::Code;

use crate::common::TestServer;
use crate::common::party::*;

/// A task whose `delete` on the repos needs approval (the shipped
/// `destructive-actions-need-approval`), with the patcher's token.
async fn destructive_task(server: &TestServer) -> (String, Party, String) {
    let task = root_task(
        server,
        PATCHER,
        scope(&["read", "delete"], &["repos"], 1, 3600),
    )
    .await;
    let mut patcher = party(server, "/agents/patcher").await;
    let t = token(&mut patcher, &task.id).await;
    (task.id, patcher, t)
}

async fn decide(
    decider: &mut Party,
    approval: &str,
    approver: &str,
) -> Result<mandate::api::v1::ApprovalResponse, tonic::Status> {
    decider
        .approvals
        .decide_approval(DecideApprovalRequest {
            approval_id: approval.into(),
            approve: true,
            valid_for_seconds: 600,
            approver: approver.into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

/// Asks for the step; it must need approval (not be allowed); returns the
/// pending approval's id.
#[track_caller]
fn assert_needs_approval(r: &mandate::api::v1::AuthorizeResponse, what: &str) -> String {
    assert_eq!(
        decision(r),
        Decision::NeedsApproval,
        "{what} must need approval: {r:?}"
    );
    assert!(
        r.reasons.iter().any(|x| x == "needs-approval"),
        "{what}: {r:?}"
    );
    assert!(!r.approval_id.is_empty(), "{what}: {r:?}");
    r.approval_id.clone()
}

#[tokio::test]
async fn a_step_that_needs_approval_is_not_allowed_without_one() {
    let server = TestServer::start().await;
    let (_, mut patcher, t) = destructive_task(&server).await;
    // The task allows `delete`; policy still wants a human first.
    let r = call(&mut patcher, &t, "delete", "repo:acme/web").await;
    let pending = assert_needs_approval(&r, "a delete without approval");
    // Asking again does not wear it down.
    let again = call(&mut patcher, &t, "delete", "repo:acme/web").await;
    assert_eq!(assert_needs_approval(&again, "the second ask"), pending);
    // The control: once a human approves, the step is allowed.
    let mut frontend = party(&server, "/workloads/frontend").await;
    decide(&mut frontend, &pending, "alice").await.unwrap();
    assert_allowed(
        &call(&mut patcher, &t, "delete", "repo:acme/web").await,
        "the approved step",
    );
}

#[tokio::test]
async fn a_step_with_a_stale_approval_needs_a_new_one() {
    let server = TestServer::start().await;
    let (task, mut patcher, t) = destructive_task(&server).await;
    let r = call(&mut patcher, &t, "delete", "repo:acme/web").await;
    let approved = assert_needs_approval(&r, "a delete without approval");
    let mut frontend = party(&server, "/workloads/frontend").await;
    decide(&mut frontend, &approved, "alice").await.unwrap();
    assert_allowed(
        &call(&mut patcher, &t, "delete", "repo:acme/web").await,
        "the approved step",
    );
    // The task is amended after the approval (here it gains the customer
    // database): alice approved a delete within other bounds.
    frontend
        .tasks
        .amend_task(AmendTaskRequest {
            task_id: task,
            scope: Some(scope(
                &["read", "delete"],
                &["repos", "customer-db"],
                2,
                3600,
            )),
            ..Default::default()
        })
        .await
        .unwrap();
    let r = call(&mut patcher, &t, "delete", "repo:acme/web").await;
    let fresh = assert_needs_approval(&r, "the step after the amendment");
    assert_ne!(fresh, approved, "a new approval is asked for");
}

#[tokio::test]
async fn a_step_approved_for_another_resource_or_by_the_wrong_party_is_not_allowed() {
    let server = TestServer::start().await;
    let (_, mut patcher, t) = destructive_task(&server).await;
    let web = assert_needs_approval(
        &call(&mut patcher, &t, "delete", "repo:acme/web").await,
        "deleting web",
    );
    // The agent approves its own step: refused (the schema makes `approve`
    // an action of workloads, the approval front ends relaying a human).
    assert_refused(
        decide(&mut patcher, &web, "alice").await,
        Code::PermissionDenied,
        "invalid-request",
        "the agent approving its own step",
    );
    // An approval of one resource does not carry over to another.
    let mut frontend = party(&server, "/workloads/frontend").await;
    decide(&mut frontend, &web, "alice").await.unwrap();
    assert_allowed(
        &call(&mut patcher, &t, "delete", "repo:acme/web").await,
        "the approved resource",
    );
    assert_needs_approval(
        &call(&mut patcher, &t, "delete", "repo:acme/payments").await,
        "another resource than the approved one",
    );
}
