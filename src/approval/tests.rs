use super::*;

fn subject() -> Subject {
    Subject {
        task_id: "t1".into(),
        action: "delete".into(),
        resource_type: "Mandate::Resource".into(),
        resource_id: "repo:x".into(),
    }
}

const AGENT: &str = "spiffe://x/agents/a";
const FRONTEND: &str = "spiffe://x/fe";

fn ask(book: &ApprovalBook, digest: &str, now: i64) -> (Approval, bool) {
    let (a, created, _) = book.request(subject(), "why", AGENT, digest, now).unwrap();
    (a, created)
}

#[test]
fn one_pending_approval_per_subject_until_it_is_decided() {
    let book = ApprovalBook::default();
    let (first, created, r1) = book.request(subject(), "why", AGENT, "d1", 10).unwrap();
    assert!(created);
    let (again, created, r2) = book.request(subject(), "again", AGENT, "d1", 11).unwrap();
    assert!(!created);
    assert_eq!(again.id, first.id);
    assert_eq!(r1, r2, "no write, no new revision");
    book.decide(&first.id, true, "alice", FRONTEND, 60, "d1", 20)
        .unwrap();
    let (next, created) = ask(&book, "d1", 30);
    assert!(created);
    assert_ne!(next.id, first.id);
}

#[test]
fn a_decision_counts_only_while_current() {
    let book = ApprovalBook::default();
    let (a, _) = ask(&book, "d1", 0);
    assert!(
        book.current(&subject(), "d1", 1).is_none(),
        "pending is not a decision"
    );
    let err = book.decide(&a.id, true, "alice", FRONTEND, 0, "d1", 1);
    assert!(matches!(err, Err(ApprovalError::Invalid(_))));
    book.decide(&a.id, true, "alice", FRONTEND, 100, "d1", 10)
        .unwrap();
    assert_eq!(book.current(&subject(), "d1", 50).unwrap().id, a.id);
    // The scope changed: stale.
    assert!(book.current(&subject(), "d2", 50).is_none());
    // Expired at decided_at + valid_for.
    assert!(book.current(&subject(), "d1", 110).is_none());
    // Deciding twice is refused.
    assert!(matches!(
        book.decide(&a.id, false, "alice", FRONTEND, 100, "d1", 20),
        Err(ApprovalError::NotPending { .. })
    ));
    book.revoke(&a.id).unwrap();
    assert!(book.current(&subject(), "d1", 50).is_none());
    assert!(matches!(
        book.revoke(&a.id),
        Err(ApprovalError::AlreadyRevoked(_))
    ));
}

#[test]
fn an_older_approval_never_counts_again_after_a_newer_decision() {
    let book = ApprovalBook::default();
    let (a1, _) = ask(&book, "d", 0);
    book.decide(&a1.id, true, "alice", FRONTEND, 10_000, "d", 1)
        .unwrap();
    // While A1 counts, the agent asks again, and a human says no.
    let (a2, _) = ask(&book, "d", 2);
    book.decide(&a2.id, false, "alice", FRONTEND, 60, "d", 3)
        .unwrap();
    assert_eq!(book.current(&subject(), "d", 4).unwrap().id, a2.id);
    // Revoked or expired, the denial does not bring A1 back.
    assert!(
        book.current(&subject(), "d", 100).is_none(),
        "expired denial"
    );
    book.revoke(&a2.id).unwrap();
    assert!(book.current(&subject(), "d", 4).is_none(), "revoked denial");
}

#[test]
fn a_decision_is_on_the_bounds_the_agent_asked_under() {
    let book = ApprovalBook::default();
    let (a, _) = ask(&book, "before", 0);
    // The task was amended between the request and the decision.
    assert!(matches!(
        book.decide(&a.id, true, "alice", FRONTEND, 60, "after", 1),
        Err(ApprovalError::TaskChanged(_))
    ));
    // Asking under the new bounds replaces the stale pending request.
    let (b, created) = ask(&book, "after", 2);
    assert!(created);
    assert_eq!(book.get(&a.id).unwrap().state, ApprovalState::Revoked);
    book.decide(&b.id, true, "alice", FRONTEND, 60, "after", 3)
        .unwrap();
    assert!(book.current(&subject(), "after", 4).is_some());
}

#[test]
fn pending_approvals_per_task_are_bounded() {
    let book = ApprovalBook::default();
    for n in 0..MAX_PENDING_PER_TASK {
        let subject = Subject {
            resource_id: format!("r{n}"),
            ..subject()
        };
        book.request(subject, "", AGENT, "d", 0).unwrap();
    }
    let one_more = Subject {
        resource_id: "one-more".into(),
        ..subject()
    };
    assert!(matches!(
        book.request(one_more.clone(), "", AGENT, "d", 0),
        Err(ApprovalError::TooManyPending(_))
    ));
    // Deciding one makes room.
    let first = book.list(&ApprovalFilter::default(), None, 1).remove(0);
    book.decide(&first.id, false, "alice", FRONTEND, 60, "d", 1)
        .unwrap();
    book.request(one_more, "", AGENT, "d", 2).unwrap();
}

#[test]
fn lists_filter_by_state_task_and_approver() {
    let book = ApprovalBook::default();
    let (a, _) = ask(&book, "d", 0);
    let other = Subject {
        task_id: "t2".into(),
        ..subject()
    };
    let (b, _, _) = book.request(other, "", AGENT, "d", 0).unwrap();
    book.decide(&b.id, false, "carol", FRONTEND, 100, "d", 1)
        .unwrap();
    let ids = |f: ApprovalFilter| -> Vec<String> {
        book.list(&f, None, 10).into_iter().map(|a| a.id).collect()
    };
    assert_eq!(
        ids(ApprovalFilter {
            state: Some(ApprovalState::Pending),
            ..Default::default()
        }),
        std::slice::from_ref(&a.id)
    );
    assert_eq!(
        ids(ApprovalFilter {
            approver: Some("carol".into()),
            ..Default::default()
        }),
        std::slice::from_ref(&b.id)
    );
    assert_eq!(
        ids(ApprovalFilter {
            task_id: Some("t1".into()),
            ..Default::default()
        }),
        std::slice::from_ref(&a.id)
    );
    assert_eq!(
        book.list(&ApprovalFilter::default(), Some(&a.id), 10).len(),
        1
    );
}

#[test]
fn a_reloaded_book_never_brings_an_older_decision_back() {
    // Live: the older approval is decided, a newer one is decided, then
    // the newer one is revoked. Nothing counts.
    let live = ApprovalBook::default();
    let (older, _) = ask(&live, "d", 0);
    live.decide(&older.id, true, "alice", FRONTEND, 600, "d", 1)
        .unwrap();
    let (newer, _) = ask(&live, "d", 2);
    live.decide(&newer.id, true, "alice", FRONTEND, 600, "d", 3)
        .unwrap();
    live.revoke(&newer.id).unwrap();
    assert!(live.current(&subject(), "d", 4).is_none());
    // A start-up applies the final rows in any order (here: newest
    // first, then by id); the answer must be the same.
    let rows: Vec<Approval> = live.list(&ApprovalFilter::default(), None, 10);
    for order in [rows.clone(), rows.iter().rev().cloned().collect()] {
        let loaded = ApprovalBook::default();
        loaded.apply(&order, 9);
        assert!(loaded.current(&subject(), "d", 4).is_none(), "{order:?}");
        assert!(loaded.pending(&subject()).is_none());
    }
}
