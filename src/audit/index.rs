//! The in-memory index `AuditService` answers from when the store sink is
//! off: the most recent audit entries, bounded by count and by age. Older
//! records are then only in the sinks' files.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use super::event::{AuditEntry, unix_ms};
use super::record::DecisionRecord;

/// How much the index keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexLimits {
    /// Most entries; 0 turns the index off.
    pub max_entries: usize,
    /// Oldest entry kept, milliseconds.
    pub max_age_ms: i64,
}

/// An entry and its place in the index (1, 2, ... in queue order).
#[derive(Debug, Clone)]
pub struct Indexed {
    /// Position, in the order entries were recorded.
    pub seq: u64,
    /// The entry.
    pub entry: Arc<AuditEntry>,
}

/// Which decisions a query wants; empty fields match everything.
#[derive(Debug, Clone, Default)]
pub struct DecisionFilter {
    /// Decisions made under this task (its token).
    pub task_id: Option<String>,
    /// Decisions anywhere in this root task's chain.
    pub root_task_id: Option<String>,
    /// The subject's (or, in PEP mode, the caller's) SPIFFE ID.
    pub subject: Option<String>,
    /// `allow`, `deny` or `needs_approval`.
    pub decision: Option<String>,
    /// Not before, Unix milliseconds.
    pub since_ms: Option<i64>,
    /// Before, Unix milliseconds.
    pub until_ms: Option<i64>,
    /// Decisions this policy determined.
    pub policy_id: Option<String>,
}

impl DecisionFilter {
    /// Whether `record` matches.
    pub fn matches(&self, record: &DecisionRecord) -> bool {
        let eq = |want: &Option<String>, have: Option<&str>| {
            want.as_deref().is_none_or(|w| Some(w) == have)
        };
        eq(&self.task_id, record.task_id.as_deref())
            && eq(&self.root_task_id, record.root_task_id.as_deref())
            && self
                .subject
                .as_deref()
                .is_none_or(|s| record.subject == s || record.caller == s)
            && eq(&self.decision, Some(&record.decision))
            && self.since_ms.is_none_or(|t| record.time_ms >= t)
            && self.until_ms.is_none_or(|t| record.time_ms < t)
            && self
                .policy_id
                .as_deref()
                .is_none_or(|p| record.determining_policies.iter().any(|d| d == p))
    }
}

/// Recent entries, oldest first.
#[derive(Debug)]
pub struct AuditIndex {
    limits: IndexLimits,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: VecDeque<Indexed>,
    next_seq: u64,
    /// Whether anything was evicted: answers may then be incomplete.
    evicted: bool,
}

impl AuditIndex {
    /// An empty index.
    pub fn new(limits: IndexLimits) -> Self {
        Self {
            limits,
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds an entry (the audit writer does, off the decision path).
    pub fn push(&self, entry: Arc<AuditEntry>) {
        if self.limits.max_entries == 0 {
            return;
        }
        let mut inner = self.lock();
        inner.next_seq = inner.next_seq.saturating_add(1);
        let seq = inner.next_seq;
        inner.entries.push_back(Indexed { seq, entry });
        self.evict(&mut inner);
    }

    fn evict(&self, inner: &mut Inner) {
        let oldest = unix_ms().saturating_sub(self.limits.max_age_ms);
        while inner.entries.len() > self.limits.max_entries
            || inner
                .entries
                .front()
                .is_some_and(|e| e.entry.time_ms() < oldest)
        {
            inner.entries.pop_front();
            inner.evicted = true;
        }
    }

    /// Decisions matching `filter`, oldest first, at most `limit`.
    pub fn decisions(&self, filter: &DecisionFilter, limit: usize) -> Vec<Indexed> {
        let mut inner = self.lock();
        self.evict(&mut inner);
        inner
            .entries
            .iter()
            .filter(|e| matches!(&*e.entry, AuditEntry::Decision(d) if filter.matches(d)))
            .take(limit)
            .cloned()
            .collect()
    }

    /// Every entry of `root_task_id`'s chain, in the order recorded; and
    /// the time of the oldest entry still held (the window's start), or
    /// `None` when nothing was ever evicted.
    pub fn trail(&self, root_task_id: &str) -> (Vec<Indexed>, Option<i64>) {
        let mut inner = self.lock();
        self.evict(&mut inner);
        let entries = inner
            .entries
            .iter()
            .filter(|e| e.entry.root_task_id() == Some(root_task_id))
            .cloned()
            .collect();
        let window = inner.evicted.then(|| {
            inner
                .entries
                .front()
                .map_or(unix_ms(), |e| e.entry.time_ms())
        });
        (entries, window)
    }

    /// The time of the oldest entry held once anything was evicted:
    /// questions about earlier times may have incomplete answers here.
    pub fn window_start(&self) -> Option<i64> {
        let mut inner = self.lock();
        self.evict(&mut inner);
        inner.evicted.then(|| {
            inner
                .entries
                .front()
                .map_or(unix_ms(), |e| e.entry.time_ms())
        })
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use crate::audit::event::{EventKind, TaskEvent};

    fn event(root: &str, age_ms: i64) -> Arc<AuditEntry> {
        let mut event = TaskEvent::new(EventKind::TaskCreated, "spiffe://a/b", root, root);
        event.time_ms -= age_ms;
        Arc::new(AuditEntry::Event(Box::new(event)))
    }

    #[test]
    fn the_window_is_bounded_by_count_and_age() {
        let index = AuditIndex::new(IndexLimits {
            max_entries: 3,
            max_age_ms: 60_000,
        });
        index.push(event("old", 120_000));
        assert!(index.is_empty());
        for root in ["a", "b", "a", "c"] {
            index.push(event(root, 0));
        }
        assert_eq!(index.len(), 3);
        let (trail, window) = index.trail("a");
        assert_eq!(trail.len(), 1);
        assert_eq!(trail.first().unwrap().seq, 4);
        assert!(window.is_some());
    }
}
