//! The attenuation invariants of DESIGN §3.1: a sub-task never widens what
//! its parent allows. Enforced in code, whatever the policies say.

use super::{GraphError, Task, TaskSpec};

/// Reason codes for refused delegations.
pub mod reason {
    /// The child names an action the parent does not allow.
    pub const WIDENS_ACTIONS: &str = "widens-actions";
    /// The child's scope reaches outside the parent's.
    pub const WIDENS_SCOPE: &str = "widens-scope";
    /// The child allows more sensitive data than the parent.
    pub const WIDENS_SENSITIVITY: &str = "widens-sensitivity";
    /// The child's deadline is after the parent's.
    pub const OUTLIVES_PARENT: &str = "outlives-parent";
    /// The chain would be deeper than allowed.
    pub const DEPTH_EXCEEDED: &str = "depth-exceeded";
    /// The delegatee already works on a task of this chain.
    pub const DELEGATION_CYCLE: &str = "delegation-cycle";
    /// Only the parent's delegatee may delegate from it.
    pub const NOT_DELEGATEE: &str = "not-delegatee";
    /// Only a task's delegator may amend it.
    pub const NOT_DELEGATOR: &str = "not-delegator";
    /// An amendment would leave a live child wider than its parent.
    pub const NARROWER_THAN_CHILD: &str = "narrower-than-child";
    /// The deadline is not in the future.
    pub const DEADLINE_PASSED: &str = "deadline-passed";
}

/// Resource ancestry, for scope containment.
pub trait ResourceHierarchy {
    /// Whether `resource` is `root` or a descendant of it.
    fn within(&self, resource: &str, root: &str) -> bool;
}

/// Longest intent, in bytes.
pub const MAX_INTENT_BYTES: usize = 1024;
/// Most actions, and most resources, in one task.
pub const MAX_SCOPE_ITEMS: usize = 64;
/// Longest action or resource id, in bytes.
pub const MAX_ID_BYTES: usize = 256;

/// Checks a new task's own shape (any task, root or child), including the
/// size bounds that keep tasks, and the tokens that carry their intent,
/// small.
pub fn check_spec(spec: &TaskSpec, now: i64) -> Result<(), GraphError> {
    if spec.intent.len() > MAX_INTENT_BYTES {
        return Err(GraphError::Invalid(format!(
            "the intent is longer than {MAX_INTENT_BYTES} bytes"
        )));
    }
    for (what, items) in [("actions", &spec.actions), ("resources", &spec.scope)] {
        if items.len() > MAX_SCOPE_ITEMS {
            return Err(GraphError::Invalid(format!(
                "a task may name at most {MAX_SCOPE_ITEMS} {what}"
            )));
        }
        if let Some(long) = items
            .iter()
            .find(|i| i.len() > MAX_ID_BYTES || i.is_empty())
        {
            return Err(GraphError::Invalid(format!(
                "{what} must be 1 to {MAX_ID_BYTES} bytes long; `{}` is not",
                long.chars().take(40).collect::<String>()
            )));
        }
    }
    if spec.expires_at <= now {
        return Err(GraphError::violation(
            reason::DEADLINE_PASSED,
            format!("deadline {} is not after now ({now})", spec.expires_at),
        ));
    }
    if spec.actions.is_empty() {
        return Err(GraphError::Invalid(
            "a task needs at least one action".to_owned(),
        ));
    }
    if spec.scope.is_empty() {
        return Err(GraphError::Invalid(
            "a task needs at least one resource in scope".to_owned(),
        ));
    }
    if spec.delegatee.path().is_empty() {
        return Err(GraphError::Invalid(
            "the delegatee must be a workload SPIFFE ID, not a trust domain".to_owned(),
        ));
    }
    Ok(())
}

/// Checks that `spec` may become a child of `parent`, whose chain (parent
/// first, root last) is `chain`.
pub fn check_child(
    chain: &[&Task],
    spec: &TaskSpec,
    max_depth: u32,
    hierarchy: &dyn ResourceHierarchy,
) -> Result<(), GraphError> {
    let Some(parent) = chain.first() else {
        return Err(GraphError::Invalid(
            "a child task needs a parent".to_owned(),
        ));
    };
    let widened: Vec<&str> = spec
        .actions
        .iter()
        .filter(|a| !parent.actions.contains(a))
        .map(String::as_str)
        .collect();
    if !widened.is_empty() {
        return Err(GraphError::violation(
            reason::WIDENS_ACTIONS,
            format!(
                "actions {} are not allowed by parent task `{}`",
                quoted(&widened),
                parent.id
            ),
        ));
    }
    let outside: Vec<&str> = spec
        .scope
        .iter()
        .filter(|r| !parent.scope.iter().any(|root| hierarchy.within(r, root)))
        .map(String::as_str)
        .collect();
    if !outside.is_empty() {
        return Err(GraphError::violation(
            reason::WIDENS_SCOPE,
            format!(
                "resources {} are outside the scope of parent task `{}`",
                quoted(&outside),
                parent.id
            ),
        ));
    }
    if spec.max_sensitivity > parent.max_sensitivity {
        return Err(GraphError::violation(
            reason::WIDENS_SENSITIVITY,
            format!(
                "max sensitivity {} is above the parent's {}",
                spec.max_sensitivity, parent.max_sensitivity
            ),
        ));
    }
    if spec.expires_at > parent.expires_at {
        return Err(GraphError::violation(
            reason::OUTLIVES_PARENT,
            format!(
                "deadline {} is after the parent's {}",
                spec.expires_at, parent.expires_at
            ),
        ));
    }
    if parent.depth + 1 > max_depth {
        return Err(GraphError::violation(
            reason::DEPTH_EXCEEDED,
            format!("a chain may be at most {max_depth} delegations deep"),
        ));
    }
    if chain.iter().any(|t| *t.delegatee == spec.delegatee) {
        return Err(GraphError::violation(
            reason::DELEGATION_CYCLE,
            format!("`{}` already works on a task of this chain", spec.delegatee),
        ));
    }
    Ok(())
}

fn quoted(items: &[&str]) -> String {
    items
        .iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
