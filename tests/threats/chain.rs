//! Delegation chain integrity: a task in the middle of a chain is revoked
//! (its agent misbehaved); what it delegated must stop with it, and only
//! that.
//!
//! ```text
//! root (patcher) ── middle (reviewer) ── grandchild (tester)
//!                └─ sibling (analyst) ── nephew (linter)
//! ```

use mandate::api::v1::{GetTaskRequest, RevokeTaskRequest, TaskState};
use tonic::Code;

use crate::common::TestServer;
use crate::common::party::*;

#[tokio::test]
async fn a_chain_broken_by_a_revoked_middle_task_denies_below_it_only() {
    let server = TestServer::start().await;
    let root = patcher_task(&server).await;
    let narrow = |ttl| scope(&["read"], &["repos"], 1, ttl);
    let mut patcher = party(&server, "/agents/patcher").await;
    let middle = delegate(&mut patcher, &root.id, REVIEWER, narrow(1800)).await;
    let sibling = delegate(&mut patcher, &root.id, ANALYST, narrow(1800)).await;
    let mut reviewer = party(&server, "/agents/reviewer").await;
    let grandchild = delegate(&mut reviewer, &middle.id, TESTER, narrow(600)).await;
    let mut analyst = party(&server, "/agents/analyst").await;
    let nephew = delegate(&mut analyst, &sibling.id, LINTER, narrow(600)).await;
    let mut tester = party(&server, "/agents/tester").await;
    let mut linter = party(&server, "/agents/linter").await;

    // Every agent holds a working token.
    let mut holders = [
        ("root", token(&mut patcher, &root.id).await, &mut patcher),
        (
            "middle",
            token(&mut reviewer, &middle.id).await,
            &mut reviewer,
        ),
        (
            "grandchild",
            token(&mut tester, &grandchild.id).await,
            &mut tester,
        ),
        (
            "sibling",
            token(&mut analyst, &sibling.id).await,
            &mut analyst,
        ),
        ("nephew", token(&mut linter, &nephew.id).await, &mut linter),
    ];
    for (name, t, holder) in &mut holders {
        assert_allowed(
            &call(holder, t, "read", "repo:acme/payments").await,
            &format!("the {name} before the revoke"),
        );
    }

    // The patcher, the middle task's delegator, revokes it.
    let [root_h, middle_h, grandchild_h, sibling_h, nephew_h] = holders;
    let revoked = root_h
        .2
        .tasks
        .revoke_task(RevokeTaskRequest {
            task_id: middle.id.clone(),
            reason: "the reviewer misbehaved".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut ids = revoked.revoked_task_ids.clone();
    ids.sort();
    let mut expected = vec![middle.id.clone(), grandchild.id.clone()];
    expected.sort();
    assert_eq!(
        ids, expected,
        "the middle task and its subtree, nothing else"
    );

    for (name, t, holder) in [middle_h, grandchild_h] {
        let r = call(holder, &t, "read", "repo:acme/payments").await;
        assert_denied_by(
            &r,
            "mandate.guard.task-not-active",
            &format!("the {name} after the middle task was revoked"),
        );
    }
    for (name, t, holder) in [root_h, sibling_h, nephew_h] {
        assert_allowed(
            &call(holder, &t, "read", "repo:acme/payments").await,
            &format!("the {name}, outside the revoked subtree"),
        );
    }
}

#[tokio::test]
async fn a_broken_chain_cannot_be_extended_or_renewed() {
    let server = TestServer::start().await;
    let root = patcher_task(&server).await;
    let mut patcher = party(&server, "/agents/patcher").await;
    let middle = delegate(
        &mut patcher,
        &root.id,
        REVIEWER,
        scope(&["read"], &["repos"], 1, 1800),
    )
    .await;
    let mut reviewer = party(&server, "/agents/reviewer").await;
    let grandchild = delegate(
        &mut reviewer,
        &middle.id,
        TESTER,
        scope(&["read"], &["repos"], 1, 600),
    )
    .await;
    patcher
        .tasks
        .revoke_task(RevokeTaskRequest {
            task_id: middle.id.clone(),
            reason: String::new(),
        })
        .await
        .unwrap();
    // The revoked subtree shows as revoked...
    let mut tester = party(&server, "/agents/tester").await;
    let state = tester
        .tasks
        .get_task(GetTaskRequest {
            task_id: grandchild.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .state;
    assert_eq!(state, TaskState::Revoked as i32, "the grandchild's state");
    // ...gets no new token...
    assert_refused(
        try_token(&mut tester, &grandchild.id).await,
        Code::FailedPrecondition,
        "task-not-active",
        "a new token below the revoked task",
    );
    // ...and cannot be extended below the break.
    assert_refused(
        try_delegate(
            &mut tester,
            &grandchild.id,
            LINTER,
            scope(&["read"], &["repos"], 1, 300),
        )
        .await,
        Code::FailedPrecondition,
        "task-not-active",
        "a delegation below the revoked task",
    );
    assert_refused(
        try_delegate(
            &mut reviewer,
            &middle.id,
            ANALYST,
            scope(&["read"], &["repos"], 1, 300),
        )
        .await,
        Code::FailedPrecondition,
        "task-not-active",
        "a delegation from the revoked task itself",
    );
}
