//! Terminal tasks leave memory. A task that ended (revoked, completed or
//! past its deadline) stays in the live graph for a retention period, so
//! `GetTask`, `ListTasks` and decisions see it exactly as before; then it
//! and its subtree (which ended with it: a task is only as alive as its
//! ancestors) are dropped. The store and the audit trail keep them.
//!
//! An evicted id is remembered for as long as a token of it could still
//! verify, so such a token is denied as `task-not-active`, not as a task
//! nobody knows; after that, every token of it has expired and is denied
//! as expired before the graph is asked.

use std::collections::HashMap;

use super::{Inner, TaskId, TaskState};

/// What the graph remembers about ended tasks.
#[derive(Debug, Default)]
pub(super) struct Archive {
    /// Revoked or completed tasks, with the first sweep that saw them so
    /// (their retention runs from then). Expired ones need no entry: their
    /// deadline says when they ended.
    ended_seen: HashMap<TaskId, i64>,
    /// Evicted ids, with when they were evicted.
    evicted: HashMap<TaskId, i64>,
}

/// How long ended tasks stay, and evicted ids are remembered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Seconds an ended task stays in the live graph.
    pub keep_ended: i64,
    /// Seconds an evicted id is remembered: at least the longest life of
    /// a task token, plus its leeway.
    pub remember_evicted: i64,
}

impl Archive {
    /// Whether `id` was evicted (and is still remembered).
    pub(super) fn was_evicted(&self, id: &str) -> bool {
        self.evicted.contains_key(id)
    }

    /// Whether some evicted id is due to be forgotten at `now`.
    pub(super) fn has_forgettable(&self, retention: Retention, now: i64) -> bool {
        let horizon = now.saturating_sub(retention.remember_evicted);
        self.evicted.values().any(|at| *at <= horizon)
    }
}

/// Tasks whose own state ended at least `keep_ended` before `now`, and the
/// revoked or completed ones no sweep has seen yet (stamped `now`).
pub(super) fn due(inner: &Inner, retention: Retention, now: i64) -> (Vec<TaskId>, Vec<TaskId>) {
    let mut due = Vec::new();
    let mut unseen = Vec::new();
    for (id, task) in &inner.tasks {
        let ended_at = match task.state_at(now) {
            TaskState::Active => continue,
            TaskState::Expired => Some(task.expires_at),
            TaskState::Revoked | TaskState::Completed => {
                let seen = inner.archive.ended_seen.get(id).copied();
                if seen.is_none() {
                    unseen.push(id.clone());
                }
                seen
            }
        };
        if ended_at.is_some_and(|at| at.saturating_add(retention.keep_ended) <= now) {
            due.push(id.clone());
        }
    }
    (due, unseen)
}

/// Stamps `unseen` as ended at `now`, drops `due` with their subtrees, and
/// forgets evicted ids older than `remember_evicted`. Returns the ids
/// dropped.
pub(super) fn evict(
    inner: &mut Inner,
    due: Vec<TaskId>,
    unseen: Vec<TaskId>,
    retention: Retention,
    now: i64,
) -> Vec<TaskId> {
    for id in unseen {
        inner.archive.ended_seen.entry(id).or_insert(now);
    }
    let mut dropped = Vec::new();
    for top in due {
        let Some(task) = inner.tasks.get(&top) else {
            continue; // went with an ancestor
        };
        if task.state_at(now) == TaskState::Active {
            continue; // cannot happen: no write revives a task
        }
        if let Some(parent) = task.parent.clone()
            && let Some(siblings) = inner.children.get_mut(&parent)
        {
            siblings.retain(|c| c != &top);
        }
        let mut stack = vec![top];
        while let Some(id) = stack.pop() {
            if let Some(children) = inner.children.remove(&id) {
                stack.extend(children);
            }
            if let Some(task) = inner.tasks.remove(&id) {
                let delegatee = task.delegatee.to_string();
                if let Some(ids) = inner.by_delegatee.get_mut(&delegatee) {
                    ids.remove(&id);
                    if ids.is_empty() {
                        inner.by_delegatee.remove(&delegatee);
                    }
                }
            }
            inner.order.remove(&id);
            inner.archive.ended_seen.remove(&id);
            inner.archive.evicted.insert(id.clone(), now);
            dropped.push(id);
        }
    }
    let horizon = now.saturating_sub(retention.remember_evicted);
    inner.archive.evicted.retain(|_, at| *at > horizon);
    dropped
}
