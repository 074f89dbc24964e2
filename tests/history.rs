//! The execution history through the real server over mTLS and the
//! shipped policies (`policies/history.cedar`): the exfiltration guard
//! over a delegation tree, a count limit at exactly N and N+1 with
//! identical (cacheable) calls, an order rule both ways, the history in
//! the trail, and what completing a task ends.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

mod common;

use common::audit::eventually;
use common::party::*;
use common::{Setup, TestServer};
use mandate::api::v1::{
    ApprovalState, CompleteTaskRequest, Decision, GetTaskTrailRequest, ListApprovalsRequest,
    trail_entry,
};
use tonic::Code;

const EXFILTRATION_GUARD: &str = "no-external-writes-after-sensitive-reads";

/// A root task of the patcher's with `scope`, and a token for it.
async fn task_and_token(
    server: &TestServer,
    patcher: &mut Party,
    scope: mandate::api::v1::TaskScope,
) -> (String, String) {
    let task = root_task(server, PATCHER, scope).await.id;
    let token = token(patcher, &task).await;
    (task, token)
}

/// Asks for `action` on `resource`, which needs an approval, and has alice
/// (the task's originator) grant it through the example front end.
async fn approved(
    patcher: &mut Party,
    server: &TestServer,
    token: &str,
    action: &str,
    resource: &str,
) {
    let asked = call(patcher, token, action, resource).await;
    assert_eq!(decision(&asked), Decision::NeedsApproval, "{asked:?}");
    let mut frontend = party(server, "/workloads/frontend").await;
    decide_approval(&mut frontend, &asked.approval_id, true, "alice", 0)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_tree_that_read_pii_may_not_post_to_an_external_tool() {
    let server = TestServer::start().await;
    let mut patcher = party(&server, "/agents/patcher").await;
    let research = scope(&["read", "invoke"], &["customer-db", "tool:paste"], 2, 3600);
    let (task, token) = task_and_token(&server, &mut patcher, research.clone()).await;
    let helper = delegate(
        &mut patcher,
        &task,
        REVIEWER,
        scope(&["invoke"], &["tool:paste"], 0, 600),
    )
    .await;
    let mut reviewer = party(&server, "/agents/reviewer").await;
    let helper_token = common::party::token(&mut reviewer, &helper.id).await;

    // Each call alone is allowed.
    assert_allowed(
        &call(&mut patcher, &token, "invoke", "tool:paste").await,
        "an external post before any sensitive read",
    );
    assert_allowed(
        &call(&mut reviewer, &helper_token, "invoke", "tool:paste").await,
        "the sub-task's post before any sensitive read",
    );
    assert_allowed(
        &call(&mut patcher, &token, "read", "customer-db").await,
        "reading pii within the task",
    );

    // The sequence is not, for the task that read and for its whole tree.
    let posted = call(&mut patcher, &token, "invoke", "tool:paste").await;
    assert_denied_by(
        &posted,
        EXFILTRATION_GUARD,
        "an external post after a pii read",
    );
    let posted = call(&mut reviewer, &helper_token, "invoke", "tool:paste").await;
    assert_denied_by(
        &posted,
        EXFILTRATION_GUARD,
        "the sub-task's post after its tree read pii",
    );

    // Another tree has read nothing.
    let (_, other) = task_and_token(&server, &mut patcher, research).await;
    assert_allowed(
        &call(&mut patcher, &other, "invoke", "tool:paste").await,
        "another tree's post",
    );
}

#[tokio::test]
async fn a_restricted_read_closes_external_sinks_too() {
    // docs/history.md's worked example.
    let server = TestServer::start().await;
    let mut patcher = party(&server, "/agents/patcher").await;
    let audit = scope(
        &["read", "invoke"],
        &["doc:acquisition-plan", "tool:paste"],
        3,
        3600,
    );
    let (_, token) = task_and_token(&server, &mut patcher, audit).await;
    assert_allowed(
        &call(&mut patcher, &token, "invoke", "tool:paste").await,
        "an external post before any sensitive read",
    );
    approved(
        &mut patcher,
        &server,
        &token,
        "read",
        "doc:acquisition-plan",
    )
    .await;
    assert_allowed(
        &call(&mut patcher, &token, "read", "doc:acquisition-plan").await,
        "an approved restricted read",
    );
    let posted = call(&mut patcher, &token, "invoke", "tool:paste").await;
    assert_denied_by(
        &posted,
        EXFILTRATION_GUARD,
        "an external post after a restricted read",
    );
}

#[tokio::test]
async fn a_count_limit_allows_exactly_n_identical_calls() {
    let server = TestServer::start().await;
    let mut patcher = party(&server, "/agents/patcher").await;
    let (task, token) = task_and_token(
        &server,
        &mut patcher,
        scope(&["delete"], &["repos"], 1, 3600),
    )
    .await;
    approved(
        &mut patcher,
        &server,
        &token,
        "delete",
        "repo:acme/payments",
    )
    .await;
    // Five identical calls within the same second: the answer cache must
    // not answer the sixth with what the first five were told.
    for n in 1..=5 {
        assert_allowed(
            &call(&mut patcher, &token, "delete", "repo:acme/payments").await,
            &format!("delete {n} of 5"),
        );
    }
    let sixth = call(&mut patcher, &token, "delete", "repo:acme/payments").await;
    assert_denied_by(&sixth, "at-most-five-deletes-per-task", "the sixth delete");

    let chain = server.graph.chain(&task).unwrap();
    let seen = server.graph.history(&chain).unwrap();
    assert_eq!(seen.task.calls.get("delete"), Some(&5), "{seen:?}");
    assert_eq!(
        seen.task.denials, 1,
        "the sixth is a denial; the 'needs approval' is not: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_count_limit_holds_for_concurrent_calls() {
    let server = TestServer::start().await;
    // One SVID on several connections: the token is bound to it.
    let leaf = server.ca.svid("/agents/patcher");
    let mut patcher = party_for(&server, &leaf).await;
    let (_, token) = task_and_token(
        &server,
        &mut patcher,
        scope(&["delete"], &["repos"], 1, 3600),
    )
    .await;
    approved(
        &mut patcher,
        &server,
        &token,
        "delete",
        "repo:acme/payments",
    )
    .await;
    let mut calls = Vec::new();
    for _ in 0..16 {
        let connection = party_for(&server, &leaf).await;
        for _ in 0..10 {
            let (mut patcher, token) = (connection.clone(), token.clone());
            calls.push(tokio::spawn(async move {
                allowed(&call(&mut patcher, &token, "delete", "repo:acme/payments").await)
            }));
        }
    }
    let mut allows = 0;
    for call in calls {
        allows += usize::from(call.await.unwrap());
    }
    assert_eq!(allows, 5, "exactly five of 160 concurrent deletes");
}

#[tokio::test]
async fn a_deploy_needs_an_invoke_before_it_in_the_tree() {
    let server = TestServer::start().await;
    let mut patcher = party(&server, "/agents/patcher").await;
    let (_, token) = task_and_token(
        &server,
        &mut patcher,
        scope(&["invoke", "deploy"], &["service:payments"], 1, 3600),
    )
    .await;
    // Before: denied outright (no approval is asked for, it would not help).
    let early = call(&mut patcher, &token, "deploy", "service:payments").await;
    assert_denied_by(
        &early,
        "deploy-after-an-invoke",
        "a deploy before any invoke",
    );
    assert!(early.approval_id.is_empty(), "{early:?}");
    // After: the approval policy is all that is left.
    assert_allowed(
        &call(&mut patcher, &token, "invoke", "service:payments").await,
        "running the checks",
    );
    approved(&mut patcher, &server, &token, "deploy", "service:payments").await;
    assert_allowed(
        &call(&mut patcher, &token, "deploy", "service:payments").await,
        "a deploy after an invoke",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_trail_shows_the_history_each_decision_saw_and_completing_ends_what_hangs_off_the_task()
{
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(Setup {
        decision_log: Some(dir.path().join("decisions.jsonl")),
        ..Setup::default()
    })
    .await;
    let mut patcher = party(&server, "/agents/patcher").await;
    let (task, token) = task_and_token(
        &server,
        &mut patcher,
        scope(
            &["read", "invoke", "delete"],
            &["customer-db", "tool:paste", "repos"],
            2,
            3600,
        ),
    )
    .await;
    let read = call(&mut patcher, &token, "read", "customer-db").await;
    assert_allowed(&read, "reading pii");
    let denied = call(&mut patcher, &token, "invoke", "tool:paste").await;
    assert_denied_by(
        &denied,
        EXFILTRATION_GUARD,
        "an external post after a pii read",
    );
    // A pending approval hangs off the task.
    let pending = call(&mut patcher, &token, "delete", "repo:acme/payments").await;
    assert_eq!(decision(&pending), Decision::NeedsApproval, "{pending:?}");

    patcher
        .tasks
        .complete_task(CompleteTaskRequest {
            task_id: task.clone(),
        })
        .await
        .unwrap();

    // Its token denies, its pending approval is revoked and can no longer
    // be decided.
    let after = call(&mut patcher, &token, "read", "customer-db").await;
    assert_denied_by(
        &after,
        "mandate.guard.task-not-active",
        "a call of a completed task",
    );
    let mut frontend = party(&server, "/workloads/frontend").await;
    let approvals = frontend
        .approvals
        .list_approvals(ListApprovalsRequest {
            task_id: task.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .approvals;
    assert_eq!(approvals.len(), 1, "{approvals:?}");
    assert_eq!(
        approvals[0].state,
        ApprovalState::Revoked as i32,
        "{approvals:?}"
    );
    let refused = decide_approval(&mut frontend, &pending.approval_id, true, "alice", 0).await;
    assert_refused(
        refused,
        Code::FailedPrecondition,
        "task-not-active",
        "deciding an approval of a completed task",
    );

    // The trail keeps what each decision saw, and what the task had done
    // when it completed.
    let mut admin = party(&server, "/workloads/admin").await;
    eventually(|| {
        let (mut admin, task) = (admin.clone(), task.clone());
        async move {
            let got = admin.audit.get_task_trail(GetTaskTrailRequest { root_task_id: task }).await.unwrap().into_inner().entries;
            got.iter().any(|e| matches!(&e.entry, Some(trail_entry::Entry::Event(e)) if e.event == "task_completed"))
        }
    })
    .await;
    let entries = admin
        .audit
        .get_task_trail(GetTaskTrailRequest {
            root_task_id: task.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    let decision_of = |id: &str| {
        entries.iter().find_map(|e| match &e.entry {
            Some(trail_entry::Entry::Decision(d)) if d.decision_id == id => Some(d.clone()),
            _ => None,
        })
    };
    // No shipped policy of `read` reads the history: its record keeps none.
    let read_record = decision_of(&read.decision_id).unwrap();
    assert!(
        read_record.history.is_none() && read_record.history_root.is_none(),
        "{read_record:?}"
    );
    let saw = decision_of(&denied.decision_id).unwrap();
    let tree = saw.history_root.unwrap();
    assert_eq!(tree.calls.get("read"), Some(&1), "{tree:?}");
    assert!(tree.labels_read.contains(&"pii".to_owned()), "{tree:?}");
    assert_eq!(tree.last_actions, ["read"], "{tree:?}");
    let completed = entries
        .iter()
        .find_map(|e| match &e.entry {
            Some(trail_entry::Entry::Event(e)) if e.event == "task_completed" => Some(e.clone()),
            _ => None,
        })
        .unwrap();
    let done = completed.history.unwrap();
    assert_eq!(done.calls.get("read"), Some(&1), "{done:?}");
    assert_eq!(done.denials, 1, "{done:?}");
    assert_eq!(done.sensitivity_read, 2, "{done:?}");
}
