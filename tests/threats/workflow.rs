//! An agent rewriting its workflow: it hands itself a task wider than the
//! one it was given, directly or through another agent, or starts a new
//! workflow of its own.

use mandate::api::v1::{AmendTaskRequest, CreateTaskRequest};
use tonic::Code;

use crate::common::party::*;
use crate::common::{Setup, TestServer, policies_with};

#[tokio::test]
async fn self_delegation_is_refused() {
    let server = TestServer::start().await;
    let task = patcher_task(&server).await;
    let mut patcher = party(&server, "/agents/patcher").await;
    // Even a narrower copy for itself: a sub-task of its own gains the
    // agent nothing but a second token, so the chain refuses it.
    assert_refused(
        try_delegate(
            &mut patcher,
            &task.id,
            PATCHER,
            scope(&["read"], &["repo:acme/payments"], 1, 600),
        )
        .await,
        Code::PermissionDenied,
        "delegation-cycle",
        "the patcher delegating to itself",
    );
}

#[tokio::test]
async fn self_delegation_of_a_wider_task_is_refused() {
    let server = TestServer::start().await;
    let task = patcher_task(&server).await;
    let mut patcher = party(&server, "/agents/patcher").await;
    let refused = try_delegate(
        &mut patcher,
        &task.id,
        PATCHER,
        scope(&["read", "write", "delete"], &["repos", "payroll"], 3, 7200),
    )
    .await
    .expect_err("a wider task for itself must be refused");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    // Refused for widening, whatever else is wrong with it.
    assert!(
        crate::common::error_reason(&refused).starts_with("widens-"),
        "{refused:?}"
    );
}

#[tokio::test]
async fn self_delegation_through_another_agent_is_refused() {
    let server = TestServer::start().await;
    let task = patcher_task(&server).await;
    let mut patcher = party(&server, "/agents/patcher").await;
    let child = delegate(
        &mut patcher,
        &task.id,
        REVIEWER,
        scope(&["read"], &["repos"], 1, 600),
    )
    .await;
    // The reviewer (colluding, or injected too) hands the work back.
    let mut reviewer = party(&server, "/agents/reviewer").await;
    assert_refused(
        try_delegate(
            &mut reviewer,
            &child.id,
            PATCHER,
            scope(&["read"], &["repos"], 1, 300),
        )
        .await,
        Code::PermissionDenied,
        "delegation-cycle",
        "the work handed back to the patcher",
    );
}

/// The patcher asks to widen its own task by amending it.
async fn widen_own_task(patcher: &mut Party, task: &str) -> Result<(), tonic::Status> {
    patcher
        .tasks
        .amend_task(AmendTaskRequest {
            task_id: task.into(),
            scope: Some(scope(&["read", "write", "delete"], &["repos"], 3, 3600)),
            ..Default::default()
        })
        .await
        .map(|_| ())
}

#[tokio::test]
async fn an_agent_cannot_widen_its_own_task_by_amendment() {
    let server = TestServer::start().await;
    let task = patcher_task(&server).await;
    let mut patcher = party(&server, "/agents/patcher").await;
    // Only the delegator (here the front end) may change a task's bounds:
    // the shipped policies permit no agent to amend a root task.
    assert_refused(
        widen_own_task(&mut patcher, &task.id).await,
        Code::PermissionDenied,
        "no-permit",
        "the patcher amending its own task",
    );
    let t = token(&mut patcher, &task.id).await;
    let r = call(&mut patcher, &t, "delete", "repo:acme/payments").await;
    assert_denied_by(
        &r,
        "mandate.guard.action-not-in-task.delete",
        "`delete` after the refused amendment",
    );
}

#[tokio::test]
async fn an_agent_cannot_widen_its_own_task_even_when_a_policy_would_let_it() {
    // A careless policy lets every agent `delegate` (and so amend) any
    // task: the graph still refuses, by name.
    let policies = policies_with(&[(
        "careless.cedar",
        r#"@id("careless-anyone-delegates")
permit (principal, action == Mandate::Action::"delegate", resource is Mandate::Task);"#,
    )]);
    let server = TestServer::start_with(Setup {
        policies: policies.path().to_owned(),
        ..Setup::default()
    })
    .await;
    let task = patcher_task(&server).await;
    let mut patcher = party(&server, "/agents/patcher").await;
    assert_refused(
        widen_own_task(&mut patcher, &task.id).await,
        Code::PermissionDenied,
        "not-delegator",
        "the patcher amending its own task under a careless policy",
    );
    assert_refused(
        try_delegate(
            &mut patcher,
            &task.id,
            PATCHER,
            scope(&["read"], &["repos"], 1, 600),
        )
        .await,
        Code::PermissionDenied,
        "delegation-cycle",
        "the patcher delegating to itself under a careless policy",
    );
}

#[tokio::test]
async fn an_agent_cannot_start_a_workflow_of_its_own() {
    let server = TestServer::start().await;
    let mut patcher = party(&server, "/agents/patcher").await;
    // A root task needs a task creator (a front end acting for a human).
    assert_refused(
        patcher
            .tasks
            .create_task(CreateTaskRequest {
                intent: "anything I like".into(),
                delegatee: PATCHER.into(),
                on_behalf_of: "alice".into(),
                scope: Some(scope(&["read", "write", "delete"], &["repos"], 3, 3600)),
            })
            .await,
        Code::PermissionDenied,
        "no-permit",
        "the patcher creating a root task for itself",
    );
    assert!(server.graph.is_empty(), "no task was created");
}
