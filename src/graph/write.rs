//! Writes to the graph, in two steps: a plan checks every invariant against
//! the current state and returns the tasks as they will be, without
//! changing anything; [`super::TaskGraph::apply`] puts them in. The durable path
//! ([`crate::journal::Journal`]) commits a plan to the store between the two,
//! so nothing reaches memory before it is on disk.

use std::sync::Arc;

use spiffe::SpiffeId;

use super::{
    Amendment, GraphError, Inner, ResourceHierarchy, Task, TaskId, TaskSpec, TaskState, chain_of,
    chain_state, invariants,
};

pub(super) fn plan_root(
    inner: &Inner,
    id: TaskId,
    spec: TaskSpec,
    delegator: SpiffeId,
    originator: String,
    now: i64,
) -> Result<Arc<Task>, GraphError> {
    invariants::check_spec(&spec, now)?;
    if originator.is_empty() {
        return Err(GraphError::Invalid(
            "a root task needs the originating user".to_owned(),
        ));
    }
    refuse_existing(inner, &id)?;
    Ok(Arc::new(Task::new(
        id, spec, delegator, originator, None, now,
    )))
}

#[expect(
    clippy::too_many_arguments,
    reason = "the graph's state plus the arguments of `TaskGraph::delegate`"
)]
pub(super) fn plan_delegate(
    inner: &Inner,
    max_depth: u32,
    id: TaskId,
    parent_id: &str,
    caller: &SpiffeId,
    spec: TaskSpec,
    now: i64,
    hierarchy: &dyn ResourceHierarchy,
) -> Result<Arc<Task>, GraphError> {
    invariants::check_spec(&spec, now)?;
    let chain = chain_of(inner, parent_id).ok_or_else(|| missing(inner, parent_id))?;
    let parent = chain
        .first()
        .cloned()
        .ok_or_else(|| missing(inner, parent_id))?;
    if *parent.delegatee != *caller {
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
    invariants::check_child(&refs, &spec, max_depth, hierarchy)?;
    refuse_existing(inner, &id)?;
    Ok(Arc::new(Task::new(
        id,
        spec,
        caller.clone(),
        String::new(),
        Some(&parent),
        now,
    )))
}

/// Only its delegator may amend a task: the delegatee of the parent for a
/// sub-task, the creating workload for a root task. The new bounds must
/// stay within the parent's, and every child must stay within the new
/// bounds (`narrower-than-child`). Approvals given under the old bounds
/// stop counting, since the scope digest changes.
pub(super) fn plan_amend(
    inner: &Inner,
    id: &str,
    caller: &SpiffeId,
    amendment: Amendment,
    now: i64,
    hierarchy: &dyn ResourceHierarchy,
) -> Result<Arc<Task>, GraphError> {
    let chain = chain_of(inner, id).ok_or_else(|| missing(inner, id))?;
    let current = chain.first().cloned().ok_or_else(|| missing(inner, id))?;
    if *current.delegator != *caller {
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
    amended.actions = amendment.actions.into();
    amended.scope = amendment.scope.into();
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
    Ok(Arc::new(amended))
}

pub(super) fn plan_complete(inner: &Inner, id: &str, now: i64) -> Result<Arc<Task>, GraphError> {
    let task = inner.tasks.get(id).ok_or_else(|| missing(inner, id))?;
    let state = task.state_at(now);
    if state != TaskState::Active {
        return Err(GraphError::NotActive {
            id: id.to_owned(),
            state: state.as_str(),
        });
    }
    Ok(with_state(task, TaskState::Completed))
}

pub(super) fn plan_revoke(inner: &Inner, id: &str) -> Result<Vec<Arc<Task>>, GraphError> {
    if !inner.tasks.contains_key(id) {
        return Err(missing(inner, id));
    }
    Ok(revoke_subtree(inner, id))
}

pub(super) fn plan_revoke_agent(inner: &Inner, delegatee: &SpiffeId) -> Vec<Arc<Task>> {
    let mut revoked: Vec<Arc<Task>> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for id in inner
        .by_delegatee
        .get(&delegatee.to_string())
        .into_iter()
        .flatten()
    {
        for task in revoke_subtree(inner, id) {
            // Subtrees of two tasks of one agent can overlap.
            if seen.insert(task.id.clone()) {
                revoked.push(task);
            }
        }
    }
    revoked
}

fn refuse_existing(inner: &Inner, id: &str) -> Result<(), GraphError> {
    if inner.tasks.contains_key(id) {
        return Err(GraphError::Invalid(format!("task `{id}` already exists")));
    }
    Ok(())
}

fn with_state(task: &Task, state: TaskState) -> Arc<Task> {
    let mut task = task.clone();
    task.state = state;
    Arc::new(task)
}

/// `id` and its descendants that are still recorded active, revoked.
fn revoke_subtree(inner: &Inner, id: &str) -> Vec<Arc<Task>> {
    let mut revoked = Vec::new();
    let mut pending: Vec<&str> = vec![id];
    while let Some(current) = pending.pop() {
        if let Some(task) = inner.tasks.get(current)
            && task.state == TaskState::Active
        {
            revoked.push(with_state(task, TaskState::Revoked));
        }
        if let Some(children) = inner.children.get(current) {
            pending.extend(children.iter().map(|c| &**c));
        }
    }
    revoked
}

/// Why `id` is not in the graph: it ended and was evicted after its
/// retention (a write on it is refused as on any ended task), or no task
/// has that id.
fn missing(inner: &Inner, id: &str) -> GraphError {
    if inner.archive.was_evicted(id) {
        GraphError::NotActive {
            id: id.to_owned(),
            state: "archived (it ended and left memory)",
        }
    } else {
        GraphError::NotFound(id.to_owned())
    }
}
