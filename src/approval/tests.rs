use super::*;

fn subject() -> Subject {
    Subject {
        task_id: "t1".into(),
        action: "delete".into(),
        resource_type: "Mandate::Resource".into(),
        resource_id: "repo:x".into(),
    }
}

#[test]
fn one_pending_approval_per_subject_until_it_is_decided() {
    let book = ApprovalBook::default();
    let (first, created, r1) = book
        .request(subject(), "why", "spiffe://x/agents/a", 10)
        .unwrap();
    assert!(created);
    let (again, created, r2) = book
        .request(subject(), "again", "spiffe://x/agents/a", 11)
        .unwrap();
    assert!(!created);
    assert_eq!(again.id, first.id);
    assert_eq!(r1, r2, "no write, no new revision");
    book.decide(&first.id, true, "alice", "spiffe://x/fe", 60, "d1", 20)
        .unwrap();
    let (next, created, _) = book
        .request(subject(), "later", "spiffe://x/agents/a", 30)
        .unwrap();
    assert!(created);
    assert_ne!(next.id, first.id);
}

#[test]
fn a_decision_counts_only_while_current() {
    let book = ApprovalBook::default();
    let (a, _, _) = book
        .request(subject(), "", "spiffe://x/agents/a", 0)
        .unwrap();
    assert!(
        book.current(&subject(), "d1", 1).is_none(),
        "pending is not a decision"
    );
    let err = book.decide(&a.id, true, "alice", "spiffe://x/fe", 0, "d1", 1);
    assert!(matches!(err, Err(ApprovalError::Invalid(_))));
    book.decide(&a.id, true, "alice", "spiffe://x/fe", 100, "d1", 10)
        .unwrap();
    assert_eq!(book.current(&subject(), "d1", 50).unwrap().id, a.id);
    // The scope changed: stale.
    assert!(book.current(&subject(), "d2", 50).is_none());
    // Expired at decided_at + valid_for.
    assert!(book.current(&subject(), "d1", 110).is_none());
    // Deciding twice is refused.
    assert!(matches!(
        book.decide(&a.id, false, "alice", "spiffe://x/fe", 100, "d1", 20),
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
fn lists_filter_by_state_task_and_approver() {
    let book = ApprovalBook::default();
    let (a, _, _) = book
        .request(subject(), "", "spiffe://x/agents/a", 0)
        .unwrap();
    let other = Subject {
        task_id: "t2".into(),
        ..subject()
    };
    let (b, _, _) = book.request(other, "", "spiffe://x/agents/a", 0).unwrap();
    book.decide(&b.id, false, "carol", "spiffe://x/fe", 100, "d", 1)
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
