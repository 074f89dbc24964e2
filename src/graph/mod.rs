//! The live graph of tasks: in memory, indexed for the decision path.
//!
//! Every write bumps a global revision. Writes take a short write lock and
//! are visible to every decision that starts after the write returns, which
//! is what makes a revoke effective on the very next call.

mod error;
pub mod invariants;
mod task;

use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use spiffe::SpiffeId;

use crate::revision::Revision;

pub use error::GraphError;
pub use invariants::ResourceHierarchy;
pub use task::{Amendment, Task, TaskId, TaskSpec, TaskState};

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
    pub root: Option<TaskId>,
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
}

/// The live task graph.
#[derive(Debug)]
pub struct TaskGraph {
    inner: RwLock<Inner>,
    max_depth: u32,
    revision: Arc<Revision>,
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

    /// Creates a root task delegated by `delegator` for `originator`.
    pub fn create_root(
        &self,
        id: TaskId,
        spec: TaskSpec,
        delegator: SpiffeId,
        originator: String,
        now: i64,
    ) -> Result<(Arc<Task>, u64), GraphError> {
        invariants::check_spec(&spec, now)?;
        if originator.is_empty() {
            return Err(GraphError::Invalid(
                "a root task needs the originating user".to_owned(),
            ));
        }
        let task = Task::new(id, spec, delegator, originator, None, now);
        let mut inner = self.write();
        let task = insert(&mut inner, task)?;
        Ok((task, self.revision.bump()))
    }

    /// Creates a child of `parent_id`, delegated by `caller`, who must be the
    /// parent's delegatee. Every invariant is checked under the write lock,
    /// against the parent's current state.
    pub fn delegate(
        &self,
        id: TaskId,
        parent_id: &str,
        caller: &SpiffeId,
        spec: TaskSpec,
        now: i64,
        hierarchy: &dyn ResourceHierarchy,
    ) -> Result<(Arc<Task>, u64), GraphError> {
        invariants::check_spec(&spec, now)?;
        let mut inner = self.write();
        let chain = chain_of(&inner, parent_id)
            .ok_or_else(|| GraphError::NotFound(parent_id.to_owned()))?;
        let parent = chain
            .first()
            .cloned()
            .ok_or_else(|| GraphError::NotFound(parent_id.to_owned()))?;
        if parent.delegatee != *caller {
            return Err(GraphError::violation(
                invariants::reason::NOT_DELEGATEE,
                format!(
                    "only `{}`, the delegatee of task `{parent_id}`, may delegate from it",
                    parent.delegatee
                ),
            ));
        }
        let state = chain_state(&chain, now);
        if state != TaskState::Active {
            return Err(GraphError::NotActive {
                id: parent_id.to_owned(),
                state: state.as_str(),
            });
        }
        let refs: Vec<&Task> = chain.iter().map(AsRef::as_ref).collect();
        invariants::check_child(&refs, &spec, self.max_depth, hierarchy)?;
        let task = Task::new(id, spec, caller.clone(), String::new(), Some(&parent), now);
        let task = insert(&mut inner, task)?;
        Ok((task, self.revision.bump()))
    }

    /// Changes an active task's bounds. Only its delegator may: the
    /// delegatee of the parent for a sub-task, the creating workload for a
    /// root task. The new bounds must stay within the parent's, and every
    /// child must stay within the new bounds (`narrower-than-child`).
    /// Approvals given under the old bounds stop counting, since the
    /// scope digest changes.
    pub fn amend(
        &self,
        id: &str,
        caller: &SpiffeId,
        amendment: Amendment,
        now: i64,
        hierarchy: &dyn ResourceHierarchy,
    ) -> Result<(Arc<Task>, u64), GraphError> {
        let mut inner = self.write();
        let chain = chain_of(&inner, id).ok_or_else(|| GraphError::NotFound(id.to_owned()))?;
        let current = chain
            .first()
            .cloned()
            .ok_or_else(|| GraphError::NotFound(id.to_owned()))?;
        if current.delegator != *caller {
            return Err(GraphError::violation(
                invariants::reason::NOT_DELEGATOR,
                format!(
                    "only `{}`, the delegator of task `{id}`, may amend it",
                    current.delegator
                ),
            ));
        }
        let state = chain_state(&chain, now);
        if state != TaskState::Active {
            return Err(GraphError::NotActive {
                id: id.to_owned(),
                state: state.as_str(),
            });
        }
        let mut amended = (*current).clone();
        amended.actions = amendment.actions;
        amended.scope = amendment.scope;
        amended.max_sensitivity = amendment.max_sensitivity;
        amended.expires_at = amendment.expires_at;
        amended.version = current.version.saturating_add(1);
        amended.scope_digest = amended.compute_scope_digest();
        invariants::check_spec(&amended.spec(), now)?;
        let ancestors: Vec<&Task> = chain.iter().skip(1).map(AsRef::as_ref).collect();
        if !ancestors.is_empty() {
            invariants::check_child(&ancestors, &amended.spec(), u32::MAX, hierarchy)?;
        }
        let with_amended: Vec<&Task> = std::iter::once(&amended)
            .chain(ancestors.iter().copied())
            .collect();
        for child in inner.children.get(id).into_iter().flatten() {
            let Some(child) = inner.tasks.get(child) else {
                continue;
            };
            if child.state_at(now) != TaskState::Active {
                continue;
            }
            invariants::check_child(&with_amended, &child.spec(), u32::MAX, hierarchy).map_err(
                |e| {
                    GraphError::violation(
                        invariants::reason::NARROWER_THAN_CHILD,
                        format!(
                            "child task `{}` would no longer fit: {e}; amend or revoke it first",
                            child.id
                        ),
                    )
                },
            )?;
        }
        let amended = Arc::new(amended);
        inner.tasks.insert(id.to_owned(), amended.clone());
        Ok((amended, self.revision.bump()))
    }

    /// Marks an active task completed. Its descendants then deny too, since
    /// a chain is active only while every task in it is.
    pub fn complete(&self, id: &str, now: i64) -> Result<u64, GraphError> {
        let mut inner = self.write();
        let task = inner
            .tasks
            .get(id)
            .cloned()
            .ok_or_else(|| GraphError::NotFound(id.to_owned()))?;
        let state = task.state_at(now);
        if state != TaskState::Active {
            return Err(GraphError::NotActive {
                id: id.to_owned(),
                state: state.as_str(),
            });
        }
        set_state(&mut inner, id, TaskState::Completed);
        Ok(self.revision.bump())
    }

    /// Revokes a task and every task below it. Returns the ids whose state
    /// changed and the new revision. Revoking a revoked task is a no-op that
    /// still answers with the current revision.
    pub fn revoke(&self, id: &str) -> Result<(Vec<TaskId>, u64), GraphError> {
        let mut inner = self.write();
        if !inner.tasks.contains_key(id) {
            return Err(GraphError::NotFound(id.to_owned()));
        }
        let revoked = revoke_subtree(&mut inner, id);
        let revision = if revoked.is_empty() {
            self.revision.current()
        } else {
            self.revision.bump()
        };
        Ok((revoked, revision))
    }

    /// Revokes every task delegated to `delegatee`, with their subtrees.
    pub fn revoke_agent(&self, delegatee: &SpiffeId) -> (Vec<TaskId>, u64) {
        let mut inner = self.write();
        let ids: Vec<TaskId> = inner
            .by_delegatee
            .get(&delegatee.to_string())
            .map(|ids| ids.iter().cloned().collect())
            .unwrap_or_default();
        let mut revoked = Vec::new();
        for id in ids {
            revoked.extend(revoke_subtree(&mut inner, &id));
        }
        let revision = if revoked.is_empty() {
            self.revision.current()
        } else {
            self.revision.bump()
        };
        (revoked, revision)
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
            .filter(|t| filter.root.as_ref().is_none_or(|r| &t.root == r))
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
    let mut chain = Vec::new();
    let mut next = Some(id.to_owned());
    while let Some(id) = next {
        let task = inner.tasks.get(&id)?.clone();
        next = task.parent.clone();
        chain.push(task);
    }
    Some(chain)
}

fn insert(inner: &mut Inner, task: Task) -> Result<Arc<Task>, GraphError> {
    if inner.tasks.contains_key(&task.id) {
        return Err(GraphError::Invalid(format!(
            "task `{}` already exists",
            task.id
        )));
    }
    let task = Arc::new(task);
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
    inner.tasks.insert(task.id.clone(), task.clone());
    Ok(task)
}

fn set_state(inner: &mut Inner, id: &str, state: TaskState) {
    if let Some(task) = inner.tasks.get_mut(id) {
        Arc::make_mut(task).state = state;
    }
}

/// Revokes `id` and its descendants that are still recorded active.
fn revoke_subtree(inner: &mut Inner, id: &str) -> Vec<TaskId> {
    let mut revoked = Vec::new();
    let mut pending = vec![id.to_owned()];
    while let Some(current) = pending.pop() {
        if inner
            .tasks
            .get(&current)
            .is_some_and(|t| t.state == TaskState::Active)
        {
            set_state(inner, &current, TaskState::Revoked);
            revoked.push(current.clone());
        }
        if let Some(children) = inner.children.get(&current) {
            pending.extend(children.iter().cloned());
        }
    }
    revoked
}

#[cfg(test)]
mod tests;
