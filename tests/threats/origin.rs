//! Intent origin forgery: a task claims a human originator the delegator
//! cannot act for, so the work (and its approvals) look like that human's.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mandate::api::v1::{CreateTaskRequest, DecideApprovalRequest, Decision};
use tonic::Code;

use crate::common::party::*;
use crate::common::{Setup, TestServer, policies_with};

/// What a deployment writes to tie front ends to the users they serve: the
/// HR portal acts for alice and carol only. Task creation is judged on the
/// task as it would be, `originator` included.
const FRONT_END_USERS: &str = r#"
@id("hr-portal-acts-for-its-users")
forbid (
  principal == Mandate::Workload::"spiffe://mandate.local/workloads/hr-portal",
  action == Mandate::Action::"delegate",
  resource is Mandate::Task
)
when { resource.depth == 0 }
unless { ["alice", "carol"].contains(resource.originator) };

@id("hr-portal-starts-tasks")
permit (
  principal == Mandate::Workload::"spiffe://mandate.local/workloads/hr-portal",
  action == Mandate::Action::"delegate",
  resource is Mandate::Task
)
when { resource.depth == 0 };
"#;

async fn create_for(front_end: &mut Party, user: &str) -> Result<String, tonic::Status> {
    front_end
        .tasks
        .create_task(CreateTaskRequest {
            intent: "update the payroll notes".into(),
            delegatee: PATCHER.into(),
            on_behalf_of: user.into(),
            scope: Some(scope(&["read"], &["repos"], 1, 3600)),
        })
        .await
        .map(|r| r.into_inner().task.unwrap().id)
}

#[tokio::test]
async fn origin_forgery_by_a_front_end_acting_for_another_user_is_refused() {
    let policies = policies_with(&[("front-end-users.cedar", FRONT_END_USERS)]);
    let server = TestServer::start_with(Setup {
        policies: policies.path().to_owned(),
        ..Setup::default()
    })
    .await;
    let mut portal = party(&server, "/workloads/hr-portal").await;
    create_for(&mut portal, "alice")
        .await
        .expect("the portal acts for alice");
    let refused = create_for(&mut portal, "mallory").await;
    // The message names the policy that refused it.
    assert!(
        format!("{refused:?}").contains("hr-portal-acts-for-its-users"),
        "{refused:?}"
    );
    assert_refused(
        refused,
        Code::PermissionDenied,
        "forbidden-by-policy",
        "the portal claiming a user it does not serve",
    );
    assert_eq!(server.graph.len(), 1, "only alice's task exists");
}

#[tokio::test]
async fn origin_forgery_by_an_agent_starting_a_task_is_refused() {
    let server = TestServer::start().await;
    let mut patcher = party(&server, "/agents/patcher").await;
    assert_refused(
        create_for(&mut patcher, "alice").await,
        Code::PermissionDenied,
        "no-permit",
        "an agent claiming to act for alice",
    );
}

#[tokio::test]
async fn origin_forgery_along_a_delegation_is_impossible() {
    let server = TestServer::start().await;
    let root = patcher_task(&server).await;
    assert_eq!(root.originator, "alice");
    // A delegation names no originator: the child inherits the root's.
    let mut patcher = party(&server, "/agents/patcher").await;
    let child = delegate(
        &mut patcher,
        &root.id,
        REVIEWER,
        scope(&["read"], &["repos"], 1, 600),
    )
    .await;
    assert_eq!(child.originator, "alice");
    // The child's token carries the chain down to alice, signed.
    let mut reviewer = party(&server, "/agents/reviewer").await;
    let t = token(&mut reviewer, &child.id).await;
    let payload = t.split('.').nth(1).unwrap();
    let claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    assert_eq!(claims["act"]["sub"], PATCHER, "{claims}");
    assert_eq!(
        claims["act"]["act"]["sub"], "spiffe://mandate.local/workloads/frontend",
        "{claims}"
    );
    assert_eq!(claims["act"]["act"]["act"]["sub"], "user:alice", "{claims}");
}

#[tokio::test]
async fn origin_forgery_in_an_approval_is_refused() {
    let server = TestServer::start().await;
    let task = root_task(
        &server,
        PATCHER,
        scope(&["read", "delete"], &["repos"], 1, 3600),
    )
    .await;
    let mut patcher = party(&server, "/agents/patcher").await;
    let t = token(&mut patcher, &task.id).await;
    let r = call(&mut patcher, &t, "delete", "repo:acme/web").await;
    assert_eq!(decision(&r), Decision::NeedsApproval, "{r:?}");
    // The front end relays "bob approves" for alice's task: bob is neither
    // the originator nor in `approvers`.
    let mut frontend = party(&server, "/workloads/frontend").await;
    assert_refused(
        frontend
            .approvals
            .decide_approval(DecideApprovalRequest {
                approval_id: r.approval_id.clone(),
                approve: true,
                valid_for_seconds: 600,
                approver: "bob".into(),
            })
            .await,
        Code::PermissionDenied,
        "no-permit",
        "an approval in the name of someone who cannot give it",
    );
    let still = call(&mut patcher, &t, "delete", "repo:acme/web").await;
    assert_eq!(decision(&still), Decision::NeedsApproval, "{still:?}");
}
