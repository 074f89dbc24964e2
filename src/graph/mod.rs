//! The live graph of tasks: in memory, indexed for the decision path.
//!
//! Every write bumps a global revision. Writes take a short write lock and
//! are visible to every decision that starts after the write returns, which
//! is what makes a revoke effective on the very next call.

mod archive;
mod error;
pub mod invariants;
mod task;
mod write;

use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use spiffe::SpiffeId;

use crate::ledger::{Ledgers, Pair};
use crate::revision::Revision;

pub use archive::Retention;
pub use error::GraphError;
pub use invariants::ResourceHierarchy;
pub use task::{AgentId, Amendment, Names, Task, TaskId, TaskSpec, TaskState};

/// Default limit on delegation depth (DESIGN §3.1).
pub const DEFAULT_MAX_DEPTH: u32 = 8;

/// A task together with its ancestors: the task first, the root last.
pub type Chain = Vec<Arc<Task>>;

/// Which tasks to list.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    /// Only tasks delegated to this SPIFFE ID.
    pub delegatee: Option<String>,
    /// Only tasks of this chain.
    pub root: Option<String>,
    /// Only tasks in this state (at the time of listing).
    pub state: Option<TaskState>,
}

#[derive(Debug, Default)]
struct Inner {
    tasks: HashMap<TaskId, Arc<Task>>,
    /// Every id, in order (UUIDv7 ids sort by creation), for listing.
    order: BTreeSet<TaskId>,
    children: HashMap<TaskId, Vec<TaskId>>,
    by_delegatee: HashMap<String, BTreeSet<TaskId>>,
    archive: archive::Archive,
}

/// The live task graph.
#[derive(Debug)]
pub struct TaskGraph {
    inner: RwLock<Inner>,
    max_depth: u32,
    revision: Arc<Revision>,
    /// What the tasks have done; kept beside the graph so a task's history
    /// leaves memory with it.
    ledgers: Ledgers,
}

impl Default for TaskGraph {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_DEPTH)
    }
}

impl TaskGraph {
    /// An empty graph allowing chains `max_depth` delegations deep.
    pub fn new(max_depth: u32) -> Self {
        Self::with_revision(max_depth, Arc::default())
    }

    /// An empty graph whose writes bump `revision`, shared with the other
    /// live stores.
    pub fn with_revision(max_depth: u32, revision: Arc<Revision>) -> Self {
        Self {
            inner: RwLock::new(Inner::default()),
            max_depth,
            revision,
            ledgers: Ledgers::default(),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        // A poisoned lock means a writer panicked mid-update; the data is
        // still the last consistent write, since writes are applied whole.
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The current revision.
    pub fn revision(&self) -> u64 {
        self.revision.current()
    }

    /// Number of tasks held.
    pub fn len(&self) -> usize {
        self.read().tasks.len()
    }

    /// Whether the graph holds no task.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One task.
    pub fn get(&self, id: &str) -> Option<Arc<Task>> {
        self.read().tasks.get(id).cloned()
    }

    /// A task and its ancestors, the task first.
    pub fn chain(&self, id: &str) -> Option<Chain> {
        chain_of(&self.read(), id)
    }

    /// The histories of the task at the head of `chain` and of its tree,
    /// made on first use; `None` when the task has left memory.
    // INVARIANT: a history is made under the graph's read lock and only
    // for a task the graph holds, and eviction forgets histories after it
    // removed the tasks: a history never outlives its task.
    pub fn ledger(&self, chain: &[Arc<Task>]) -> Option<Pair> {
        let (task, root) = (chain.first()?, chain.last()?);
        let inner = self.read();
        inner
            .tasks
            .contains_key(&task.id)
            .then(|| self.ledgers.pair(&task.id, &root.id))
    }

    /// What the task at the head of `chain` and its tree have done, if it
    /// was ever called; makes no history.
    pub fn history(&self, chain: &[Arc<Task>]) -> Option<crate::ledger::Seen> {
        let (task, root) = (chain.first()?, chain.last()?);
        self.ledgers.peek(&task.id, &root.id)
    }

    /// `id` and every task below it, as held now.
    pub fn subtree(&self, id: &str) -> Vec<TaskId> {
        let inner = self.read();
        let mut out = Vec::new();
        let mut next: Vec<&str> = vec![id];
        while let Some(current) = next.pop() {
            if let Some(task) = inner.tasks.get(current) {
                out.push(task.id.clone());
            }
            if let Some(children) = inner.children.get(current) {
                next.extend(children.iter().map(|c| &**c));
            }
        }
        out
    }

    /// The histories held, for memory accounting and tests.
    pub fn ledgers(&self) -> &Ledgers {
        &self.ledgers
    }

    /// Whether `id` ended and was evicted after its retention (see
    /// [`archive`]); such a task is in the store, not here.
    pub fn was_evicted(&self, id: &str) -> bool {
        self.read().archive.was_evicted(id)
    }

    /// Drops tasks that ended more than `retention.keep_ended` seconds
    /// before `now`, with their subtrees; returns the ids dropped. The
    /// scan runs under the read lock, the removal under a short write
    /// lock; no revision is bumped, since nothing a decision can see
    /// changes (the tasks were not active). Their histories go with them.
    pub fn evict_ended(&self, retention: Retention, now: i64) -> Vec<TaskId> {
        let (due, unseen, forget) = {
            let inner = self.read();
            let (due, unseen) = archive::due(&inner, retention, now);
            (due, unseen, inner.archive.has_forgettable(retention, now))
        };
        if due.is_empty() && unseen.is_empty() && !forget {
            return Vec::new();
        }
        let dropped = archive::evict(&mut self.write(), due, unseen, retention, now);
        self.ledgers.forget(&dropped);
        dropped
    }

    /// Creates a root task delegated by `delegator` for `originator`.
    /// In memory only: a server writes through [`crate::journal::Journal`].
    pub fn create_root(
        &self,
        id: TaskId,
        spec: TaskSpec,
        delegator: SpiffeId,
        originator: String,
        now: i64,
    ) -> Result<(Arc<Task>, u64), GraphError> {
        let mut inner = self.write();
        let task = write::plan_root(&inner, id, spec, delegator, originator, now)?;
        Ok((task.clone(), self.apply_locked(&mut inner, vec![task])))
    }

    /// Creates a child of `parent_id`, delegated by `caller`, who must be the
    /// parent's delegatee. Every invariant is checked under the write lock,
    /// against the parent's current state. In memory only.
    pub fn delegate(
        &self,
        id: TaskId,
        parent_id: &str,
        caller: &SpiffeId,
        spec: TaskSpec,
        now: i64,
        hierarchy: &dyn ResourceHierarchy,
    ) -> Result<(Arc<Task>, u64), GraphError> {
        let mut inner = self.write();
        let task = write::plan_delegate(
            &inner,
            self.max_depth,
            id,
            parent_id,
            caller,
            spec,
            now,
            hierarchy,
        )?;
        Ok((task.clone(), self.apply_locked(&mut inner, vec![task])))
    }

    /// Changes an active task's bounds; see [`write::plan_amend`]. In
    /// memory only.
    pub fn amend(
        &self,
        id: &str,
        caller: &SpiffeId,
        amendment: Amendment,
        now: i64,
        hierarchy: &dyn ResourceHierarchy,
    ) -> Result<(Arc<Task>, u64), GraphError> {
        let mut inner = self.write();
        let task = write::plan_amend(&inner, id, caller, amendment, now, hierarchy)?;
        Ok((task.clone(), self.apply_locked(&mut inner, vec![task])))
    }

    /// Marks an active task completed. Its descendants then deny too, since
    /// a chain is active only while every task in it is. In memory only.
    pub fn complete(&self, id: &str, now: i64) -> Result<u64, GraphError> {
        let mut inner = self.write();
        let task = write::plan_complete(&inner, id, now)?;
        Ok(self.apply_locked(&mut inner, vec![task]))
    }

    /// Revokes a task and every task below it. Returns the ids whose state
    /// changed and the new revision. Revoking a revoked task is a no-op that
    /// still answers with the current revision. In memory only.
    pub fn revoke(&self, id: &str) -> Result<(Vec<TaskId>, u64), GraphError> {
        let mut inner = self.write();
        let tasks = write::plan_revoke(&inner, id)?;
        let ids = tasks.iter().map(|t| t.id.clone()).collect();
        Ok((ids, self.apply_locked(&mut inner, tasks)))
    }

    /// Revokes every task delegated to `delegatee`, with their subtrees. In
    /// memory only.
    pub fn revoke_agent(&self, delegatee: &SpiffeId) -> (Vec<TaskId>, u64) {
        let mut inner = self.write();
        let tasks = write::plan_revoke_agent(&inner, delegatee);
        let ids = tasks.iter().map(|t| t.id.clone()).collect();
        (ids, self.apply_locked(&mut inner, tasks))
    }

    /// Puts `tasks` in (new or replacing) and bumps the revision, unless
    /// there is nothing to put.
    fn apply_locked(&self, inner: &mut Inner, tasks: Vec<Arc<Task>>) -> u64 {
        if tasks.is_empty() {
            return self.revision.current();
        }
        for task in tasks {
            upsert(inner, task);
        }
        self.revision.bump()
    }

    /// Tasks matching `filter`, ordered by id (creation time), starting
    /// after `after` (the last id of the previous page), at most `limit`.
    pub fn list(
        &self,
        filter: &TaskFilter,
        after: Option<&str>,
        limit: usize,
        now: i64,
    ) -> Vec<Arc<Task>> {
        let inner = self.read();
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        let ids: Box<dyn Iterator<Item = &TaskId>> = match &filter.delegatee {
            Some(d) => match inner.by_delegatee.get(d) {
                Some(ids) => Box::new(ids.range::<str, _>((start, Bound::Unbounded))),
                None => Box::new(std::iter::empty()),
            },
            None => Box::new(inner.order.range::<str, _>((start, Bound::Unbounded))),
        };
        ids.filter_map(|id| inner.tasks.get(id))
            .filter(|t| filter.root.as_ref().is_none_or(|r| *t.root == **r))
            .filter(|t| {
                filter.state.is_none_or(|s| {
                    chain_of(&inner, &t.id).is_some_and(|c| chain_state(&c, now) == s)
                })
            })
            .take(limit)
            .cloned()
            .collect()
    }
}

/// The state of a chain: the first non-active state from the root down,
/// else active. A task is only as alive as all of its ancestors.
pub fn chain_state(chain: &[Arc<Task>], now: i64) -> TaskState {
    chain
        .iter()
        .rev()
        .map(|t| t.state_at(now))
        .find(|s| *s != TaskState::Active)
        .unwrap_or(TaskState::Active)
}

fn chain_of(inner: &Inner, id: &str) -> Option<Chain> {
    let mut task = inner.tasks.get(id)?;
    let mut chain = vec![task.clone()];
    while let Some(parent) = &task.parent {
        task = inner.tasks.get(parent)?;
        chain.push(task.clone());
    }
    Some(chain)
}

/// Puts a new task in, or replaces a task with the same id (whose parent
/// and delegatee never change, so the indexes stay right).
fn upsert(inner: &mut Inner, task: Arc<Task>) {
    if let Some(current) = inner.tasks.get_mut(&task.id) {
        *current = task;
        return;
    }
    if let Some(parent) = &task.parent {
        inner
            .children
            .entry(parent.clone())
            .or_default()
            .push(task.id.clone());
    }
    inner
        .by_delegatee
        .entry(task.delegatee.to_string())
        .or_default()
        .insert(task.id.clone());
    inner.order.insert(task.id.clone());
    inner.tasks.insert(task.id.clone(), task);
}

/// Writes in two steps (see [`write`]): plans that change nothing, and
/// applying what the store committed.
impl TaskGraph {
    /// Plans a root task; see [`TaskGraph::create_root`].
    pub fn plan_root(
        &self,
        id: TaskId,
        spec: TaskSpec,
        delegator: SpiffeId,
        originator: String,
        now: i64,
    ) -> Result<Arc<Task>, GraphError> {
        write::plan_root(&self.read(), id, spec, delegator, originator, now)
    }

    /// Plans a sub-task; see [`TaskGraph::delegate`].
    pub fn plan_delegate(
        &self,
        id: TaskId,
        parent_id: &str,
        caller: &SpiffeId,
        spec: TaskSpec,
        now: i64,
        hierarchy: &dyn ResourceHierarchy,
    ) -> Result<Arc<Task>, GraphError> {
        write::plan_delegate(
            &self.read(),
            self.max_depth,
            id,
            parent_id,
            caller,
            spec,
            now,
            hierarchy,
        )
    }

    /// Plans an amendment; see [`TaskGraph::amend`].
    pub fn plan_amend(
        &self,
        id: &str,
        caller: &SpiffeId,
        amendment: Amendment,
        now: i64,
        hierarchy: &dyn ResourceHierarchy,
    ) -> Result<Arc<Task>, GraphError> {
        write::plan_amend(&self.read(), id, caller, amendment, now, hierarchy)
    }

    /// Plans a completion; see [`TaskGraph::complete`].
    pub fn plan_complete(&self, id: &str, now: i64) -> Result<Arc<Task>, GraphError> {
        write::plan_complete(&self.read(), id, now)
    }

    /// Plans a revocation: the tasks of the subtree that change, revoked.
    /// Empty when all of them already are.
    pub fn plan_revoke(&self, id: &str) -> Result<Vec<Arc<Task>>, GraphError> {
        write::plan_revoke(&self.read(), id)
    }

    /// Plans revoking every task delegated to `delegatee`.
    pub fn plan_revoke_agent(&self, delegatee: &SpiffeId) -> Vec<Arc<Task>> {
        write::plan_revoke_agent(&self.read(), delegatee)
    }

    /// Puts committed `tasks` in (new or replacing) and moves the revision
    /// to `revision`, under the write lock (see [`crate::revision::Revision`]).
    pub fn apply(&self, tasks: &[Arc<Task>], revision: u64) {
        let mut inner = self.write();
        for task in tasks {
            // A change to a task evicted here (another replica revoking
            // what already ended) would bring back half a chain.
            if inner.archive.was_evicted(&task.id) {
                continue;
            }
            upsert(&mut inner, task.clone());
        }
        self.revision.advance_to(revision);
    }
}

#[cfg(test)]
mod tests;
