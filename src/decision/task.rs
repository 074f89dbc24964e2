//! A task chain as Cedar sees it: `Mandate::Task` entities (each `in` its
//! parent) and the context keys Mandate adds for a call with a task token.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::LazyLock;

use cedar_policy::{Entity, EntityId, EntityTypeName, EntityUid, RestrictedExpression};

use crate::graph::{Chain, Task, TaskState, chain_state};

/// Context keys only Mandate may set; a caller's context must not hold them.
pub const RESERVED_CONTEXT_KEYS: &[&str] = &[
    "task",
    "intent",
    "delegation_depth",
    "delegation_chain",
    "token_jti",
];

/// A verified task token and the live chain it names.
#[derive(Debug, Clone)]
pub struct TaskFacts {
    /// The task first, the root last, as read from the graph.
    pub chain: Chain,
    /// The time the chain's state is judged at (Unix seconds).
    pub now: i64,
    /// The token's id.
    pub token_jti: String,
}

impl TaskFacts {
    /// The state of the whole chain.
    pub fn state(&self) -> TaskState {
        chain_state(&self.chain, self.now)
    }
}

/// Parsed once: parsing a type name on every decision showed in profiles.
static TASK_TYPE: LazyLock<Result<EntityTypeName, String>> =
    LazyLock::new(|| EntityTypeName::from_str("Mandate::Task").map_err(|e| e.to_string()));
static RESOURCE_TYPE: LazyLock<Result<EntityTypeName, String>> =
    LazyLock::new(|| EntityTypeName::from_str("Mandate::Resource").map_err(|e| e.to_string()));

fn type_name(parsed: &LazyLock<Result<EntityTypeName, String>>) -> Result<EntityTypeName, String> {
    LazyLock::force(parsed).clone()
}

fn task_uid(task_type: &EntityTypeName, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(task_type.clone(), EntityId::new(id))
}

/// One entity per task of `chain` (task first, root last). A task's
/// `state` is the state of the chain from it to the root at `now`, so a
/// revoked ancestor shows on every task below it.
pub fn task_entities(chain: &[std::sync::Arc<Task>], now: i64) -> Result<Vec<Entity>, String> {
    let task_type = type_name(&TASK_TYPE)?;
    let resource_type = type_name(&RESOURCE_TYPE)?;
    let mut out = Vec::with_capacity(chain.len());
    for (i, task) in chain.iter().enumerate() {
        let from_here = chain.get(i..).unwrap_or_default();
        out.push(entity(
            task,
            chain_state(from_here, now),
            &task_type,
            &resource_type,
        )?);
    }
    Ok(out)
}

fn entity(
    task: &Task,
    state: TaskState,
    task_type: &EntityTypeName,
    resource_type: &EntityTypeName,
) -> Result<Entity, String> {
    let string = |s: &str| RestrictedExpression::new_string(s.to_owned());
    let attrs = HashMap::from([
        ("intent".to_owned(), string(&task.intent)),
        ("delegator".to_owned(), string(&task.delegator.to_string())),
        ("delegatee".to_owned(), string(&task.delegatee.to_string())),
        ("originator".to_owned(), string(&task.originator)),
        (
            "depth".to_owned(),
            RestrictedExpression::new_long(i64::from(task.depth)),
        ),
        (
            "actions".to_owned(),
            RestrictedExpression::new_set(task.actions.iter().map(|a| string(a))),
        ),
        (
            "scope".to_owned(),
            RestrictedExpression::new_set(task.scope.iter().map(|r| {
                RestrictedExpression::new_entity_uid(EntityUid::from_type_name_and_id(
                    resource_type.clone(),
                    EntityId::new(r),
                ))
            })),
        ),
        (
            "max_sensitivity".to_owned(),
            RestrictedExpression::new_long(task.max_sensitivity),
        ),
        (
            "expires_at".to_owned(),
            RestrictedExpression::new_long(task.expires_at),
        ),
        ("state".to_owned(), string(state.as_str())),
    ]);
    let parents: HashSet<EntityUid> = task.parent.iter().map(|p| task_uid(task_type, p)).collect();
    Entity::new(task_uid(task_type, &task.id), attrs, parents).map_err(|e| e.to_string())
}

/// The context keys Mandate adds for a call with a task token, built as
/// Cedar values directly (parsing them as JSON against the schema cost
/// more than the policy evaluation).
pub(super) fn context_pairs(
    facts: &TaskFacts,
) -> Result<Vec<(String, RestrictedExpression)>, String> {
    let Some(task) = facts.chain.first() else {
        return Ok(Vec::new());
    };
    let task_type = type_name(&TASK_TYPE)?;
    Ok(vec![
        (
            "task".to_owned(),
            RestrictedExpression::new_entity_uid(task_uid(&task_type, &task.id)),
        ),
        (
            "intent".to_owned(),
            RestrictedExpression::new_string(task.intent.clone()),
        ),
        (
            "delegation_depth".to_owned(),
            RestrictedExpression::new_long(i64::from(task.depth)),
        ),
        (
            "delegation_chain".to_owned(),
            RestrictedExpression::new_set(
                facts
                    .chain
                    .iter()
                    .map(|t| RestrictedExpression::new_string(t.delegatee.to_string())),
            ),
        ),
        (
            "token_jti".to_owned(),
            RestrictedExpression::new_string(facts.token_jti.clone()),
        ),
    ])
}
