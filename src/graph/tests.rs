use std::collections::HashMap;

use super::invariants::reason;
use super::*;

const NOW: i64 = 1_800_000_000;

/// `repos` contains `repo:a` and `repo:b`.
struct Tree(HashMap<&'static str, &'static str>);

impl ResourceHierarchy for Tree {
    fn within(&self, resource: &str, root: &str) -> bool {
        let mut current = resource;
        loop {
            if current == root {
                return true;
            }
            match self.0.get(current) {
                Some(parent) => current = parent,
                None => return false,
            }
        }
    }
}

fn tree() -> Tree {
    Tree(HashMap::from([("repo:a", "repos"), ("repo:b", "repos")]))
}

fn id(path: &str) -> SpiffeId {
    SpiffeId::new(format!("spiffe://example.org{path}")).unwrap()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn spec(delegatee: &str, actions: &[&str], scope: &[&str], sensitivity: i64, ttl: i64) -> TaskSpec {
    TaskSpec {
        intent: "fix the build".into(),
        delegatee: id(delegatee),
        actions: set(actions),
        scope: set(scope),
        max_sensitivity: sensitivity,
        expires_at: NOW + ttl,
    }
}

/// root (planner) -> child (patcher) -> grandchild (tester)
fn three_deep(graph: &TaskGraph) -> (Arc<Task>, Arc<Task>, Arc<Task>) {
    let (root, _) = graph
        .create_root(
            "t1".into(),
            spec("/agents/planner", &["read", "write"], &["repos"], 2, 3600),
            id("/workloads/frontend"),
            "alice".into(),
            NOW,
        )
        .unwrap();
    let (child, _) = graph
        .delegate(
            "t2".into(),
            "t1",
            &id("/agents/planner"),
            spec("/agents/patcher", &["read", "write"], &["repo:a"], 1, 1800),
            NOW,
            &tree(),
        )
        .unwrap();
    let (grandchild, _) = graph
        .delegate(
            "t3".into(),
            "t2",
            &id("/agents/patcher"),
            spec("/agents/tester", &["read"], &["repo:a"], 1, 600),
            NOW,
            &tree(),
        )
        .unwrap();
    (root, child, grandchild)
}

#[test]
fn chains_record_depth_root_originator_and_revisions() {
    let graph = TaskGraph::default();
    let (root, child, grandchild) = three_deep(&graph);
    assert_eq!((root.depth, child.depth, grandchild.depth), (0, 1, 2));
    assert_eq!(&*grandchild.root, "t1");
    assert_eq!(grandchild.originator, "alice");
    assert_eq!(*grandchild.delegator, id("/agents/patcher"));
    assert_eq!(graph.revision(), 3);
    let chain: Vec<_> = graph
        .chain("t3")
        .unwrap()
        .iter()
        .map(|t| t.id.to_string())
        .collect();
    assert_eq!(chain, ["t3", "t2", "t1"]);
}

fn refused(graph: &TaskGraph, caller: &str, child: TaskSpec) -> GraphError {
    graph
        .delegate("x".into(), "t2", &id(caller), child, NOW, &tree())
        .unwrap_err()
}

#[test]
fn each_widened_field_is_refused_by_name() {
    let graph = TaskGraph::default();
    three_deep(&graph);
    let cases = [
        (
            spec("/agents/x", &["read", "delete"], &["repo:a"], 1, 60),
            reason::WIDENS_ACTIONS,
        ),
        (
            spec("/agents/x", &["read"], &["repo:b"], 1, 60),
            reason::WIDENS_SCOPE,
        ),
        (
            spec("/agents/x", &["read"], &["repos"], 1, 60),
            reason::WIDENS_SCOPE,
        ),
        (
            spec("/agents/x", &["read"], &["repo:a"], 2, 60),
            reason::WIDENS_SENSITIVITY,
        ),
        (
            spec("/agents/x", &["read"], &["repo:a"], 1, 1801),
            reason::OUTLIVES_PARENT,
        ),
    ];
    for (child, expected) in cases {
        let err = refused(&graph, "/agents/patcher", child);
        assert_eq!(err.reason(), expected, "{err}");
    }
    // Nothing was written by a refused delegation.
    assert_eq!(graph.len(), 3);
}

#[test]
fn narrowing_within_the_hierarchy_is_allowed() {
    let graph = TaskGraph::default();
    three_deep(&graph);
    // repo:b is inside the root's `repos`, so the root's delegatee may hand it on.
    let result = graph.delegate(
        "t4".into(),
        "t1",
        &id("/agents/planner"),
        spec("/agents/reviewer", &["read"], &["repo:b"], 0, 60),
        NOW,
        &tree(),
    );
    assert!(result.is_ok(), "{result:?}");
}

#[test]
fn only_the_parents_delegatee_may_delegate() {
    let graph = TaskGraph::default();
    three_deep(&graph);
    let err = refused(
        &graph,
        "/agents/planner",
        spec("/agents/x", &["read"], &["repo:a"], 1, 60),
    );
    assert_eq!(err.reason(), reason::NOT_DELEGATEE);
}

#[test]
fn depth_is_bounded() {
    let graph = TaskGraph::new(2);
    three_deep(&graph);
    let err = graph
        .delegate(
            "t4".into(),
            "t3",
            &id("/agents/tester"),
            spec("/agents/x", &["read"], &["repo:a"], 1, 60),
            NOW,
            &tree(),
        )
        .unwrap_err();
    assert_eq!(err.reason(), reason::DEPTH_EXCEEDED);
}

#[test]
fn delegating_back_up_the_chain_is_a_cycle() {
    let graph = TaskGraph::default();
    three_deep(&graph);
    let err = graph
        .delegate(
            "t4".into(),
            "t3",
            &id("/agents/tester"),
            spec("/agents/planner", &["read"], &["repo:a"], 1, 60),
            NOW,
            &tree(),
        )
        .unwrap_err();
    assert_eq!(err.reason(), reason::DELEGATION_CYCLE);
}

#[test]
fn revoking_a_task_revokes_its_whole_subtree() {
    let graph = TaskGraph::default();
    three_deep(&graph);
    let before = graph.revision();
    let (revoked, revision) = graph.revoke("t2").unwrap();
    assert_eq!(revoked.len(), 2);
    assert!(revision > before);
    let grandchild = graph.chain("t3").unwrap();
    assert_eq!(chain_state(&grandchild, NOW), TaskState::Revoked);
    assert_eq!(graph.get("t3").unwrap().state, TaskState::Revoked);
    assert_eq!(
        chain_state(&graph.chain("t1").unwrap(), NOW),
        TaskState::Active
    );
    // A revoked parent cannot delegate any more.
    let err = graph
        .delegate(
            "t9".into(),
            "t2",
            &id("/agents/patcher"),
            spec("/agents/x", &["read"], &["repo:a"], 1, 60),
            NOW,
            &tree(),
        )
        .unwrap_err();
    assert_eq!(err.reason(), "task-not-active");
}

#[test]
fn completing_a_task_ends_its_descendants_too() {
    let graph = TaskGraph::default();
    three_deep(&graph);
    graph.complete("t2", NOW).unwrap();
    assert_eq!(
        chain_state(&graph.chain("t3").unwrap(), NOW),
        TaskState::Completed
    );
    assert_eq!(
        graph.complete("t2", NOW).unwrap_err().reason(),
        "task-not-active"
    );
}

#[test]
fn tasks_expire_at_their_deadline_without_a_write() {
    let graph = TaskGraph::default();
    three_deep(&graph);
    let revision = graph.revision();
    let chain = graph.chain("t3").unwrap();
    assert_eq!(chain_state(&chain, NOW + 599), TaskState::Active);
    assert_eq!(chain_state(&chain, NOW + 600), TaskState::Expired);
    // The parent's deadline ends the child as well.
    assert_eq!(
        chain_state(&graph.chain("t2").unwrap(), NOW + 1800),
        TaskState::Expired
    );
    assert_eq!(graph.revision(), revision);
}

#[test]
fn revoking_an_agent_revokes_all_its_tasks() {
    let graph = TaskGraph::default();
    three_deep(&graph);
    let (revoked, _) = graph.revoke_agent(&id("/agents/patcher"));
    assert_eq!(revoked.len(), 2, "{revoked:?}");
    assert_eq!(graph.get("t1").unwrap().state, TaskState::Active);
}

#[test]
fn lists_filter_and_paginate() {
    let graph = TaskGraph::default();
    three_deep(&graph);
    graph.revoke("t3").unwrap();
    let all = |f: &TaskFilter| -> Vec<String> {
        graph
            .list(f, None, 10, NOW)
            .iter()
            .map(|t| t.id.to_string())
            .collect()
    };
    assert_eq!(all(&TaskFilter::default()), ["t1", "t2", "t3"]);
    let patcher = TaskFilter {
        delegatee: Some(id("/agents/patcher").to_string()),
        ..Default::default()
    };
    assert_eq!(all(&patcher), ["t2"]);
    let active = TaskFilter {
        state: Some(TaskState::Active),
        ..Default::default()
    };
    assert_eq!(all(&active), ["t1", "t2"]);
    let page: Vec<_> = graph
        .list(&TaskFilter::default(), Some("t1"), 1, NOW)
        .iter()
        .map(|t| t.id.to_string())
        .collect();
    assert_eq!(page, ["t2"]);
}

#[test]
fn oversized_tasks_are_refused() {
    let graph = TaskGraph::default();
    let mut big = spec("/agents/x", &["read"], &["repos"], 1, 60);
    big.intent = "x".repeat(2000);
    let err = graph
        .create_root(
            "t1".into(),
            big,
            id("/workloads/frontend"),
            "alice".into(),
            NOW,
        )
        .unwrap_err();
    assert_eq!(err.reason(), "invalid-task");
    let many: Vec<String> = (0..65).map(|i| format!("r{i}")).collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    let wide = spec("/agents/x", &["read"], &refs, 1, 60);
    let err = graph
        .create_root(
            "t1".into(),
            wide,
            id("/workloads/frontend"),
            "alice".into(),
            NOW,
        )
        .unwrap_err();
    assert_eq!(err.reason(), "invalid-task");
    assert!(graph.is_empty());
}

fn amendment(actions: &[&str], scope: &[&str], sensitivity: i64, ttl: i64) -> Amendment {
    Amendment {
        actions: set(actions),
        scope: set(scope),
        max_sensitivity: sensitivity,
        expires_at: NOW + ttl,
    }
}

#[test]
fn amendments_stay_between_parent_and_children_and_change_the_digest() {
    let graph = TaskGraph::default();
    let (_, child, _) = three_deep(&graph);
    let before = child.scope_digest.clone();
    assert_eq!(before, child.compute_scope_digest());

    // Only the delegator amends.
    let err = graph
        .amend(
            "t2",
            &id("/agents/patcher"),
            amendment(&["read"], &["repo:a"], 1, 900),
            NOW,
            &tree(),
        )
        .unwrap_err();
    assert_eq!(err.reason(), reason::NOT_DELEGATOR);
    // Not wider than the parent.
    let err = graph
        .amend(
            "t2",
            &id("/agents/planner"),
            amendment(&["read", "delete"], &["repo:a"], 1, 900),
            NOW,
            &tree(),
        )
        .unwrap_err();
    assert_eq!(err.reason(), reason::WIDENS_ACTIONS);
    // Not narrower than the live grandchild, which reads repo:a until +600.
    let err = graph
        .amend(
            "t2",
            &id("/agents/planner"),
            amendment(&["write"], &["repo:a"], 1, 900),
            NOW,
            &tree(),
        )
        .unwrap_err();
    assert_eq!(err.reason(), reason::NARROWER_THAN_CHILD);
    assert!(err.to_string().contains("t3"), "{err}");

    // Widening within the parent is fine and changes the digest.
    let revision = graph.revision();
    let (amended, new_revision) = graph
        .amend(
            "t2",
            &id("/agents/planner"),
            amendment(&["read", "write"], &["repo:a", "repo:b"], 2, 1800),
            NOW,
            &tree(),
        )
        .unwrap();
    assert!(new_revision > revision);
    assert_eq!(amended.version, 1);
    assert_ne!(amended.scope_digest, before);
    assert_eq!(amended.scope_digest, amended.compute_scope_digest());
    assert_eq!(
        graph.get("t2").unwrap().scope.to_set(),
        set(&["repo:a", "repo:b"])
    );
    // The chain below still hangs off it.
    assert_eq!(graph.chain("t3").unwrap().len(), 3);
}

const RETENTION: Retention = Retention {
    keep_ended: 60,
    remember_evicted: 3600,
};

/// Task ids as text, to compare with literals.
fn names(ids: &[TaskId]) -> Vec<&str> {
    ids.iter().map(|id| &**id).collect()
}

fn ids(tasks: &[Arc<Task>]) -> Vec<&str> {
    tasks.iter().map(|t| &*t.id).collect()
}

#[test]
fn a_revoked_subtree_stays_for_its_retention_then_leaves_whole() {
    let graph = TaskGraph::default();
    three_deep(&graph);
    graph.revoke("t2").unwrap();
    let revision = graph.revision();
    // The first sweep only notes when it saw the revoke.
    assert!(graph.evict_ended(RETENTION, NOW + 10).is_empty());
    assert!(graph.evict_ended(RETENTION, NOW + 69).is_empty());
    assert_eq!(graph.len(), 3, "kept for the retention period");
    let mut dropped = graph.evict_ended(RETENTION, NOW + 70);
    dropped.sort();
    assert_eq!(names(&dropped), ["t2", "t3"]);
    assert_eq!(graph.len(), 1);
    assert_eq!(graph.revision(), revision, "eviction is not a write");
    assert!(graph.chain("t3").is_none() && graph.was_evicted("t3"));
    assert!(!graph.was_evicted("t1") && !graph.was_evicted("never"));
    // A write on an evicted task is refused as on any ended one.
    assert_eq!(graph.revoke("t3").unwrap_err().reason(), "task-not-active");
    assert_eq!(graph.revoke("never").unwrap_err().reason(), "unknown-task");
    // The live parent no longer lists the evicted child, and listing by
    // delegatee finds nothing of it.
    let by_patcher = TaskFilter {
        delegatee: Some(id("/agents/patcher").to_string()),
        ..TaskFilter::default()
    };
    assert!(graph.list(&by_patcher, None, 10, NOW + 70).is_empty());
    assert_eq!(
        ids(&graph.list(&TaskFilter::default(), None, 10, NOW + 70)),
        ["t1"]
    );
    // Revoking the root now revokes what is left, and its own subtree
    // goes in turn.
    let (revoked, _) = graph.revoke("t1").unwrap();
    assert_eq!(names(&revoked), ["t1"]);
    graph.evict_ended(RETENTION, NOW + 80);
    assert_eq!(names(&graph.evict_ended(RETENTION, NOW + 140)), ["t1"]);
    assert!(graph.is_empty());
}

#[test]
fn a_completed_root_takes_its_live_looking_descendants_with_it() {
    let graph = TaskGraph::default();
    three_deep(&graph);
    graph.complete("t1", NOW).unwrap();
    graph.evict_ended(RETENTION, NOW + 1);
    let mut dropped = graph.evict_ended(RETENTION, NOW + 61);
    dropped.sort();
    assert_eq!(names(&dropped), ["t1", "t2", "t3"]);
    assert!(graph.is_empty() && graph.was_evicted("t3"));
}

#[test]
fn an_expired_task_leaves_after_its_deadline_and_retention_and_active_ones_stay() {
    let graph = TaskGraph::default();
    three_deep(&graph);
    // t3 expires at NOW + 600: retention runs from its deadline.
    assert!(graph.evict_ended(RETENTION, NOW + 659).is_empty());
    assert_eq!(names(&graph.evict_ended(RETENTION, NOW + 660)), ["t3"]);
    assert_eq!(graph.len(), 2);
    assert!(graph.chain("t2").is_some(), "its active parent stays");
}

#[test]
fn an_evicted_id_is_forgotten_after_tokens_of_it_have_expired_and_never_comes_back() {
    let graph = TaskGraph::default();
    three_deep(&graph);
    let (_, revision) = graph.revoke("t1").unwrap();
    let revoked: Vec<Arc<Task>> = ["t1", "t2", "t3"]
        .iter()
        .map(|id| graph.get(id).unwrap())
        .collect();
    graph.evict_ended(RETENTION, NOW);
    assert_eq!(graph.evict_ended(RETENTION, NOW + 60).len(), 3);
    // Another replica's late copy of the revoke does not bring them back.
    graph.apply(&revoked, revision + 1);
    assert!(graph.is_empty());
    assert!(graph.was_evicted("t1"));
    graph.evict_ended(RETENTION, NOW + 60 + 3600);
    assert!(
        !graph.was_evicted("t1"),
        "remembered only as long as a token lives"
    );
}

#[test]
fn histories_are_made_on_first_call_and_leave_with_their_tasks() {
    let graph = TaskGraph::default();
    let (_, child, grandchild) = three_deep(&graph);
    assert!(graph.ledgers().is_empty(), "no task called, no history");
    let chain = graph.chain(&grandchild.id).unwrap();
    graph
        .ledger(&chain)
        .unwrap()
        .lock()
        .record(crate::ledger::Outcome::Denied);
    assert_eq!(graph.history(&chain).unwrap().tree.denials, 1);
    assert!(graph.history(&graph.chain(&child.id).unwrap()).is_none());
    assert_eq!(graph.ledgers().len(), 2, "the grandchild's and the tree's");
    graph.complete("t1", NOW).unwrap();
    graph.evict_ended(RETENTION, NOW + 1);
    graph.evict_ended(RETENTION, NOW + 61);
    assert!(
        graph.ledgers().is_empty(),
        "the histories left with the tree"
    );
    // A task no longer held gets no history.
    assert!(graph.ledger(&chain).is_none());
    assert!(graph.ledgers().is_empty());
}
