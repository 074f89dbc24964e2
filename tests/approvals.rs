//! Human approvals through the real server over mTLS: the third outcome,
//! the approval life cycle, and approvals that go stale when the task's
//! scope changes, expire or are revoked.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

mod common;

use common::TestServer;
use common::party::*;
use mandate::api::v1::{
    AmendTaskRequest, ApprovalResource, ApprovalState, Decision, ListApprovalsRequest,
    RequestApprovalRequest, RevokeApprovalRequest, TaskScope,
};
use tonic::Code;

/// The frontend starts a task for alice with the patcher as delegatee; the
/// patcher gets a token for it. Returns (task id, token).
async fn task_and_token(
    server: &TestServer,
    frontend: &mut Party,
    patcher: &mut Party,
    scope: TaskScope,
) -> (String, String) {
    let task = create_root(frontend, PATCHER, scope).await.id;
    let _ = server;
    let token = token(patcher, &task).await;
    (task, token)
}

/// Asks for `delete` on `repo:acme/payments` until it needs approval;
/// returns the approval id.
async fn needs_approval(patcher: &mut Party, token: &str) -> String {
    let r = call(patcher, token, "delete", "repo:acme/payments").await;
    assert_eq!(decision(&r), Decision::NeedsApproval, "{r:?}");
    assert_eq!(r.reasons, ["forbidden-by-policy", "needs-approval"]);
    assert_eq!(
        r.determining_policies,
        ["destructive-actions-need-approval"]
    );
    assert!(!r.approval_id.is_empty());
    r.approval_id
}

#[tokio::test]
async fn an_approval_lifts_the_forbid_for_its_task_action_and_resource() {
    let server = TestServer::start().await;
    let mut frontend = party(&server, "/workloads/frontend").await;
    let mut patcher = party(&server, "/agents/patcher").await;
    let (task, token) = task_and_token(
        &server,
        &mut frontend,
        &mut patcher,
        scope(&["read", "delete"], &["repos"], 1, 3600),
    )
    .await;

    let approval_id = needs_approval(&mut patcher, &token).await;
    // Asking again names the same pending approval: one per subject.
    assert_eq!(needs_approval(&mut patcher, &token).await, approval_id);
    let pending = frontend
        .approvals
        .list_approvals(ListApprovalsRequest {
            state: ApprovalState::Pending as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .approvals;
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].id, approval_id);
    assert_eq!(pending[0].task_id, task);
    assert_eq!(pending[0].requested_by, PATCHER);
    assert!(!pending[0].current);

    let approved = decide_approval(&mut frontend, &approval_id, true, "alice", 600)
        .await
        .unwrap();
    assert_eq!(approved.state, ApprovalState::Approved as i32);
    assert_eq!(approved.approver, "alice");
    assert!(approved.current);

    let r = call(&mut patcher, &token, "delete", "repo:acme/payments").await;
    assert_eq!(decision(&r), Decision::Allow, "{r:?}");
    assert_eq!(r.determining_policies, ["agents-act-within-their-task"]);
    // The approval is for this resource only.
    let other = call(&mut patcher, &token, "delete", "repo:acme/web").await;
    assert_eq!(decision(&other), Decision::NeedsApproval, "{other:?}");
    assert_ne!(other.approval_id, approval_id);

    // Revoked, it no longer counts: a new approval is needed.
    frontend
        .approvals
        .revoke_approval(RevokeApprovalRequest {
            approval_id: approval_id.clone(),
            reason: "changed my mind".into(),
        })
        .await
        .unwrap();
    let again = needs_approval(&mut patcher, &token).await;
    assert_ne!(again, approval_id);
}

#[tokio::test]
async fn an_approval_goes_stale_when_the_task_scope_changes() {
    let server = TestServer::start().await;
    let mut frontend = party(&server, "/workloads/frontend").await;
    let mut patcher = party(&server, "/agents/patcher").await;
    let (task, token) = task_and_token(
        &server,
        &mut frontend,
        &mut patcher,
        scope(&["read", "delete"], &["repo:acme/payments"], 1, 3600),
    )
    .await;
    let approval_id = needs_approval(&mut patcher, &token).await;
    let approved = decide_approval(&mut frontend, &approval_id, true, "alice", 600)
        .await
        .unwrap();
    let r = call(&mut patcher, &token, "delete", "repo:acme/payments").await;
    assert_eq!(decision(&r), Decision::Allow, "{r:?}");

    // The front end widens the task: what alice approved is not what the
    // task is any more.
    let amended = frontend
        .tasks
        .amend_task(AmendTaskRequest {
            task_id: task.clone(),
            scope: Some(scope(
                &["read", "delete"],
                &["repo:acme/payments", "repo:acme/web"],
                1,
                3600,
            )),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    assert_ne!(amended.scope_digest, approved.scope_digest);
    assert_eq!(amended.version, 1);

    let fresh = needs_approval(&mut patcher, &token).await;
    assert_ne!(fresh, approval_id);
    let old = frontend
        .approvals
        .list_approvals(ListApprovalsRequest {
            task_id: task,
            state: ApprovalState::Approved as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .approvals;
    assert_eq!(old.len(), 1);
    assert!(!old[0].current, "approved for another scope: {old:?}");
}

#[tokio::test]
async fn an_approval_expires_and_a_denial_is_a_deny() {
    let server = TestServer::start().await;
    let mut frontend = party(&server, "/workloads/frontend").await;
    let mut patcher = party(&server, "/agents/patcher").await;
    let (_, token) = task_and_token(
        &server,
        &mut frontend,
        &mut patcher,
        scope(&["read", "delete"], &["repos"], 1, 3600),
    )
    .await;
    let approval_id = needs_approval(&mut patcher, &token).await;
    decide_approval(&mut frontend, &approval_id, true, "alice", 60)
        .await
        .unwrap();
    let r = call(&mut patcher, &token, "delete", "repo:acme/payments").await;
    assert_eq!(decision(&r), Decision::Allow, "{r:?}");
    server.clock.advance(60);
    let expired = needs_approval(&mut patcher, &token).await;
    assert_ne!(expired, approval_id);

    // Alice says no: a deny that names the denial, and no new request.
    decide_approval(&mut frontend, &expired, false, "alice", 600)
        .await
        .unwrap();
    let r = call(&mut patcher, &token, "delete", "repo:acme/payments").await;
    assert_eq!(decision(&r), Decision::Deny, "{r:?}");
    assert!(r.reasons.contains(&"approval-denied".to_owned()), "{r:?}");
    assert!(r.approval_id.is_empty());
    // Deciding twice is refused.
    let status = decide_approval(&mut frontend, &expired, true, "alice", 600)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
}

#[tokio::test]
async fn only_allowed_approvers_decide() {
    let server = TestServer::start().await;
    let mut frontend = party(&server, "/workloads/frontend").await;
    let mut patcher = party(&server, "/agents/patcher").await;
    let (_, token) = task_and_token(
        &server,
        &mut frontend,
        &mut patcher,
        scope(&["read", "delete"], &["repos"], 1, 3600),
    )
    .await;
    let approval_id = needs_approval(&mut patcher, &token).await;

    // bob neither started the task nor is an approver.
    assert_refused(
        decide_approval(&mut frontend, &approval_id, true, "bob", 600).await,
        Code::PermissionDenied,
        "no-permit",
        "bob deciding an approval he may not decide",
    );
    // The admin workload is not an approval front end, even for alice.
    let mut admin = party(&server, "/workloads/admin").await;
    let status = decide_approval(&mut admin, &approval_id, true, "alice", 600)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    // The agent cannot approve its own request: `approve` is for workloads.
    let status = decide_approval(&mut patcher, &approval_id, true, "alice", 600)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    // Nothing was decided by the refused calls.
    let still = needs_approval(&mut patcher, &token).await;
    assert_eq!(still, approval_id);

    // carol is in `approvers`: her decision counts although the task is
    // alice's.
    let approved = decide_approval(&mut frontend, &approval_id, true, "carol", 600)
        .await
        .unwrap();
    assert_eq!(approved.approver, "carol");
    let r = call(&mut patcher, &token, "delete", "repo:acme/payments").await;
    assert_eq!(decision(&r), Decision::Allow, "{r:?}");
}

#[tokio::test]
async fn needs_approval_only_when_the_approval_policy_is_the_sole_reason() {
    let server = TestServer::start().await;
    let mut frontend = party(&server, "/workloads/frontend").await;
    let mut patcher = party(&server, "/agents/patcher").await;
    // The task does not allow `delete`: the guard denies too, so no
    // approval could help.
    let (_, token) = task_and_token(
        &server,
        &mut frontend,
        &mut patcher,
        scope(&["read"], &["repos"], 1, 3600),
    )
    .await;
    let r = call(&mut patcher, &token, "delete", "repo:acme/payments").await;
    assert_eq!(decision(&r), Decision::Deny, "{r:?}");
    assert!(r.approval_id.is_empty());
    assert!(
        r.determining_policies
            .contains(&"mandate.guard.action-not-in-task.delete".to_owned()),
        "{r:?}"
    );
    assert!(!r.reasons.contains(&"needs-approval".to_owned()));

    // Without a token nothing permits an agent's delete at all.
    let r = call(&mut patcher, "", "delete", "repo:acme/payments").await;
    assert_eq!(decision(&r), Decision::Deny, "{r:?}");
    assert!(r.approval_id.is_empty());

    // Nothing was asked of a human by these calls.
    let all = frontend
        .approvals
        .list_approvals(ListApprovalsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .approvals;
    assert!(all.is_empty(), "{all:?}");
}

#[tokio::test]
async fn agents_ask_for_approvals_of_their_own_tasks_only() {
    let server = TestServer::start().await;
    let mut frontend = party(&server, "/workloads/frontend").await;
    let mut patcher = party(&server, "/agents/patcher").await;
    let (task, _) = task_and_token(
        &server,
        &mut frontend,
        &mut patcher,
        scope(&["read", "delete"], &["repos"], 1, 3600),
    )
    .await;
    let request = |action: &str| RequestApprovalRequest {
        task_id: task.clone(),
        action: action.into(),
        resource: Some(ApprovalResource {
            r#type: String::new(),
            id: "repo:acme/web".into(),
        }),
        justification: "the repo is archived".into(),
        ..Default::default()
    };
    let asked = patcher
        .approvals
        .request_approval(request("delete"))
        .await
        .unwrap()
        .into_inner()
        .approval
        .unwrap();
    assert_eq!(asked.state, ApprovalState::Pending as i32);
    assert_eq!(asked.justification, "the repo is archived");
    assert_eq!(asked.resource.unwrap().r#type, "Mandate::Resource");

    let mut reviewer = party(&server, "/agents/reviewer").await;
    assert_refused(
        reviewer.approvals.request_approval(request("delete")).await,
        Code::PermissionDenied,
        "not-delegatee",
        "the reviewer asking for an approval of the patcher's task",
    );
    // The reviewer is no party of the task: it cannot see the approval.
    let seen = reviewer
        .approvals
        .list_approvals(ListApprovalsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .approvals;
    assert!(seen.is_empty(), "{seen:?}");
    let status = patcher
        .approvals
        .request_approval(request("no-such-action"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    // The task does not allow `write`: no human is asked for it.
    assert_refused(
        patcher.approvals.request_approval(request("write")).await,
        Code::FailedPrecondition,
        "outside-task",
        "an approval for an action the task does not allow",
    );
}

/// A policy set where an agent may delete `repo:acme/web` without a task,
/// so the approval policy is the only reason for a deny, but there is no
/// task to hold an approval.
#[tokio::test]
async fn needs_approval_without_a_task_is_a_plain_deny() {
    let dir = common::policies_with(&[(
        "extra.cedar",
        r#"@id("agents-delete-web")
permit (principal is Mandate::Agent, action == Mandate::Action::"delete",
        resource == Mandate::Resource::"repo:acme/web");"#,
    )]);
    let server = TestServer::start_with(common::Setup {
        policies: dir.path().to_owned(),
        ..Default::default()
    })
    .await;
    let mut patcher = party(&server, "/agents/patcher").await;
    let r = call(&mut patcher, "", "delete", "repo:acme/web").await;
    assert_eq!(decision(&r), Decision::Deny, "{r:?}");
    assert_eq!(r.reasons, ["forbidden-by-policy", "approval-needs-task"]);
    assert!(r.approval_id.is_empty());
}

#[tokio::test]
async fn withdrawing_a_newer_decision_never_brings_an_older_approval_back() {
    let server = TestServer::start().await;
    let mut frontend = party(&server, "/workloads/frontend").await;
    let mut patcher = party(&server, "/agents/patcher").await;
    let (task, token) = task_and_token(
        &server,
        &mut frontend,
        &mut patcher,
        scope(&["read", "delete"], &["repos"], 1, 3600),
    )
    .await;
    let first = needs_approval(&mut patcher, &token).await;
    decide_approval(&mut frontend, &first, true, "alice", 30 * 24 * 3600)
        .await
        .unwrap();
    // While the first approval counts, the agent asks again...
    let second = patcher
        .approvals
        .request_approval(RequestApprovalRequest {
            task_id: task.clone(),
            action: "delete".into(),
            resource: Some(ApprovalResource {
                r#type: String::new(),
                id: "repo:acme/payments".into(),
            }),
            justification: "once more".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .approval
        .unwrap()
        .id;
    // ...and alice says no this time.
    decide_approval(&mut frontend, &second, false, "alice", 600)
        .await
        .unwrap();
    let r = call(&mut patcher, &token, "delete", "repo:acme/payments").await;
    assert_eq!(decision(&r), Decision::Deny, "{r:?}");
    // The agent cannot withdraw a human's decision...
    let status = patcher
        .approvals
        .revoke_approval(RevokeApprovalRequest {
            approval_id: second.clone(),
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    // ...and when the front end does, the older approval stays spent.
    frontend
        .approvals
        .revoke_approval(RevokeApprovalRequest {
            approval_id: second.clone(),
            reason: String::new(),
        })
        .await
        .unwrap();
    let again = needs_approval(&mut patcher, &token).await;
    assert_ne!(again, first);
    assert_ne!(again, second);
}
