//! What each task has done so far, and what its whole delegation tree has
//! done: the execution history policies read as `context.history` and
//! `context.history_root` (see `docs/history.md`).
//!
//! Per replica, in memory: a restart or another replica starts from an
//! empty history. A ledger is made on a task's first decided call, so a
//! task never called costs nothing here, and it leaves with its task when
//! ended tasks leave memory ([`crate::graph::TaskGraph::evict_ended`]).
//!
//! What counts: an allowed call adds one to its action's count, puts its
//! action last in the recent actions, and marks its resource's sensitivity
//! and labels as read. Every allowed call counts as a read, whatever its
//! action: Mandate cannot tell which calls bring data back (an `invoke`
//! of a tool often does), so it assumes all of them may. A denied call
//! adds one to the denials. A "needs approval" is neither: it waits for a
//! human, the agent did nothing wrong.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use serde::{Deserialize, Serialize};

use crate::graph::TaskId;

/// How many recent actions a history keeps.
pub const RECENT_ACTIONS: usize = 8;

/// What a task, or a tree of tasks, has done.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// Allowed calls, by action.
    pub calls: BTreeMap<String, u64>,
    /// Denied calls.
    pub denials: u64,
    /// The highest sensitivity of a resource read; 0 when nothing was.
    pub sensitivity_read: i64,
    /// The labels of the resources read.
    pub labels_read: BTreeSet<String>,
    /// The actions of the last allowed calls, the oldest first.
    pub last_actions: VecDeque<String>,
}

/// The resource of an allowed call, as the decision saw it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Touched<'a> {
    /// Its sensitivity, when it has one.
    pub sensitivity: Option<i64>,
    /// Its labels.
    pub labels: &'a [String],
}

/// How a decided call ended, as far as the history cares.
#[derive(Debug, Clone, Copy)]
pub enum Outcome<'a> {
    /// Allowed: `action` was done on a resource.
    Allowed {
        /// The action.
        action: &'a str,
        /// Its resource.
        resource: Touched<'a>,
    },
    /// Denied.
    Denied,
    /// Waiting for a human; not counted.
    Pending,
}

impl History {
    fn record(&mut self, outcome: Outcome<'_>) {
        match outcome {
            Outcome::Allowed { action, resource } => {
                match self.calls.get_mut(action) {
                    Some(n) => *n = n.saturating_add(1),
                    None => {
                        self.calls.insert(action.to_owned(), 1);
                    }
                }
                if self.last_actions.len() == RECENT_ACTIONS {
                    self.last_actions.pop_front();
                }
                self.last_actions.push_back(action.to_owned());
                if let Some(level) = resource.sensitivity {
                    self.sensitivity_read = self.sensitivity_read.max(level);
                }
                for label in resource.labels {
                    if !self.labels_read.contains(label) {
                        self.labels_read.insert(label.clone());
                    }
                }
            }
            Outcome::Denied => self.denials = self.denials.saturating_add(1),
            Outcome::Pending => {}
        }
    }
}

/// One history, shared by the decisions that read and update it.
#[derive(Debug, Default)]
struct Ledger(Mutex<Arc<History>>);

impl Ledger {
    fn lock(&self) -> MutexGuard<'_, Arc<History>> {
        // A poisoned lock means a decision panicked mid-update; a history
        // update is a few counter steps, so the data is still usable.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The histories of this replica: one per task that was called, and one
/// per tree (keyed by its root) that was.
#[derive(Debug, Default)]
pub struct Ledgers {
    tasks: RwLock<HashMap<TaskId, Arc<Ledger>>>,
    trees: RwLock<HashMap<TaskId, Arc<Ledger>>>,
}

/// The two histories one call reads and updates: its task's and its
/// tree's.
#[derive(Debug, Clone)]
pub struct Pair {
    task: Arc<Ledger>,
    tree: Arc<Ledger>,
}

/// The histories of a call as the decision saw them, before its own
/// outcome: cheap to keep (shared, copied only when next updated).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    /// The task's own calls.
    pub task: Arc<History>,
    /// The calls of every task of its tree, the root's included.
    pub tree: Arc<History>,
}

/// Both histories of a call, locked: decisions of the same tree that read
/// history wait for each other, so each sees every outcome before it (a
/// count limit holds exactly, also for concurrent calls).
pub struct Locked<'a> {
    // INVARIANT: the tree is locked before the task, by every caller, so
    // two calls never wait for each other's second lock.
    tree: MutexGuard<'a, Arc<History>>,
    task: MutexGuard<'a, Arc<History>>,
}

impl Ledgers {
    /// The histories of `task` in the tree rooted at `root`, made empty on
    /// first use.
    pub fn pair(&self, task: &TaskId, root: &TaskId) -> Pair {
        Pair {
            task: of(&self.tasks, task),
            tree: of(&self.trees, root),
        }
    }

    /// The histories of `task` in the tree rooted at `root` as they are
    /// now, if the task was ever called.
    pub fn peek(&self, task: &TaskId, root: &TaskId) -> Option<Seen> {
        let get = |map: &RwLock<HashMap<TaskId, Arc<Ledger>>>, id: &TaskId| {
            map.read()
                .unwrap_or_else(|e| e.into_inner())
                .get(id)
                .cloned()
        };
        let task = get(&self.tasks, task)?;
        let tree = get(&self.trees, root).unwrap_or_default();
        Some(Pair { task, tree }.lock().seen())
    }

    /// Forgets the histories of tasks that left memory (and of the trees
    /// they were the roots of).
    pub fn forget(&self, ids: &[TaskId]) {
        if ids.is_empty() {
            return;
        }
        for map in [&self.tasks, &self.trees] {
            let mut map = map.write().unwrap_or_else(|e| e.into_inner());
            for id in ids {
                map.remove(id);
            }
        }
    }

    /// How many histories are held, tasks' and trees'.
    pub fn len(&self) -> usize {
        let count = |map: &RwLock<HashMap<TaskId, Arc<Ledger>>>| {
            map.read().unwrap_or_else(|e| e.into_inner()).len()
        };
        count(&self.tasks) + count(&self.trees)
    }

    /// Whether no history is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn of(map: &RwLock<HashMap<TaskId, Arc<Ledger>>>, id: &TaskId) -> Arc<Ledger> {
    if let Some(ledger) = map.read().unwrap_or_else(|e| e.into_inner()).get(id) {
        return ledger.clone();
    }
    map.write()
        .unwrap_or_else(|e| e.into_inner())
        .entry(id.clone())
        .or_default()
        .clone()
}

impl Pair {
    /// Locks both histories, for a decision that reads them.
    pub fn lock(&self) -> Locked<'_> {
        let tree = self.tree.lock();
        let task = self.task.lock();
        Locked { tree, task }
    }
}

impl Locked<'_> {
    /// The histories as they are now.
    pub fn seen(&self) -> Seen {
        Seen {
            task: Arc::clone(&self.task),
            tree: Arc::clone(&self.tree),
        }
    }

    /// Adds a call's outcome to both histories.
    pub fn record(&mut self, outcome: Outcome<'_>) {
        Arc::make_mut(&mut self.task).record(outcome);
        Arc::make_mut(&mut self.tree).record(outcome);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed<'a>(action: &'a str, sensitivity: i64, labels: &'a [String]) -> Outcome<'a> {
        Outcome::Allowed {
            action,
            resource: Touched {
                sensitivity: Some(sensitivity),
                labels,
            },
        }
    }

    #[test]
    fn a_task_and_its_tree_add_up_what_was_done() {
        let ledgers = Ledgers::default();
        let (root, child): (TaskId, TaskId) = ("root".into(), "child".into());
        let pii = ["pii".to_owned()];
        ledgers
            .pair(&root, &root)
            .lock()
            .record(allowed("read", 1, &[]));
        let child_pair = ledgers.pair(&child, &root);
        child_pair.lock().record(allowed("read", 3, &pii));
        child_pair.lock().record(Outcome::Denied);
        child_pair.lock().record(Outcome::Pending);

        let seen = child_pair.lock().seen();
        assert_eq!(seen.task.calls.get("read"), Some(&1));
        assert_eq!(seen.task.denials, 1);
        assert_eq!(seen.tree.calls.get("read"), Some(&2));
        assert_eq!(seen.tree.sensitivity_read, 3);
        assert!(seen.tree.labels_read.contains("pii"));
        let root_seen = ledgers.pair(&root, &root).lock().seen();
        assert_eq!(root_seen.task.calls.get("read"), Some(&1));
        assert_eq!(root_seen.task.sensitivity_read, 1);
        assert_eq!(root_seen.tree, seen.tree);
    }

    #[test]
    fn recent_actions_are_bounded_and_in_order() {
        let ledgers = Ledgers::default();
        let id: TaskId = "t".into();
        let pair = ledgers.pair(&id, &id);
        for i in 0..RECENT_ACTIONS + 2 {
            pair.lock().record(allowed(&format!("a{i}"), 0, &[]));
        }
        let seen = pair.lock().seen();
        assert_eq!(seen.task.last_actions.len(), RECENT_ACTIONS);
        assert_eq!(
            seen.task.last_actions.front().map(String::as_str),
            Some("a2")
        );
        assert_eq!(
            seen.task.last_actions.back().map(String::as_str),
            Some(&*format!("a{}", RECENT_ACTIONS + 1))
        );
    }

    #[test]
    fn what_a_decision_saw_stays_as_it_saw_it() {
        let ledgers = Ledgers::default();
        let id: TaskId = "t".into();
        let pair = ledgers.pair(&id, &id);
        let before = pair.lock().seen();
        pair.lock().record(allowed("read", 0, &[]));
        assert!(before.task.calls.is_empty());
        assert_eq!(pair.lock().seen().task.calls.get("read"), Some(&1));
    }

    #[test]
    fn concurrent_calls_lose_no_count() {
        let ledgers = Arc::new(Ledgers::default());
        let (root, a, b): (TaskId, TaskId, TaskId) = ("r".into(), "a".into(), "b".into());
        std::thread::scope(|s| {
            for task in [&a, &b, &a, &b] {
                let (ledgers, root) = (&ledgers, &root);
                s.spawn(move || {
                    for _ in 0..1000 {
                        ledgers
                            .pair(task, root)
                            .lock()
                            .record(allowed("write", 0, &[]));
                    }
                });
            }
        });
        let seen = ledgers.pair(&a, &root).lock().seen();
        assert_eq!(seen.task.calls.get("write"), Some(&2000));
        assert_eq!(seen.tree.calls.get("write"), Some(&4000));
    }

    #[test]
    fn forgotten_tasks_leave_nothing_behind() {
        let ledgers = Ledgers::default();
        let (root, child): (TaskId, TaskId) = ("root".into(), "child".into());
        ledgers.pair(&child, &root).lock().record(Outcome::Denied);
        assert_eq!(ledgers.len(), 2);
        ledgers.forget(&[root, child]);
        assert!(ledgers.is_empty());
    }
}
