//! A task chain as Cedar sees it: `Mandate::Task` entities (each `in` its
//! parent) and the context keys Mandate adds for a call with a task token.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::{LazyLock, RwLock};

use cedar_policy::{Entity, EntityId, EntityTypeName, EntityUid, RestrictedExpression};

use crate::graph::{Chain, Task, TaskState, chain_state};

/// Context keys only Mandate may set; a caller's context must not hold them.
pub const RESERVED_CONTEXT_KEYS: &[&str] = &[
    "task",
    "intent",
    "delegation_depth",
    "delegation_chain",
    "token_jti",
    "approval",
    "cross_trust_domain",
    "delegatee_class",
    "http",
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

/// Most tasks whose entities are kept; the cache is emptied when full.
const TASK_ENTITY_CACHE_SIZE: usize = 50_000;

/// Cedar entities of live tasks, by task id and chain state, so the
/// decision path does not rebuild them on every call.
///
/// INVARIANT: a task's fields change only by amendment, which bumps its
/// `version`; the version and the state are part of the key, so an entity
/// built once for (task, version, state) stays right.
#[derive(Debug, Default)]
pub struct TaskEntityCache {
    entries: RwLock<HashMap<String, Versioned>>,
}

/// A task's version and its entity for each state, built on demand.
type Versioned = (u32, [Option<Entity>; 4]);

fn slot(state: TaskState) -> usize {
    match state {
        TaskState::Active => 0,
        TaskState::Completed => 1,
        TaskState::Revoked => 2,
        TaskState::Expired => 3,
    }
}

impl TaskEntityCache {
    /// Like [`task_entities`], from the cache where it can.
    pub fn chain(&self, chain: &[std::sync::Arc<Task>], now: i64) -> Result<Vec<Entity>, String> {
        let mut out = Vec::with_capacity(chain.len());
        for (i, task) in chain.iter().enumerate() {
            let state = chain_state(chain.get(i..).unwrap_or_default(), now);
            out.push(self.entity(task, state)?);
        }
        Ok(out)
    }

    fn entity(&self, task: &Task, state: TaskState) -> Result<Entity, String> {
        let cached = self
            .entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&task.id)
            .filter(|(version, _)| *version == task.version)
            .and_then(|(_, slots)| slots.get(slot(state)).cloned().flatten());
        if let Some(entity) = cached {
            return Ok(entity);
        }
        let built = entity(
            task,
            state,
            &type_name(&TASK_TYPE)?,
            &type_name(&RESOURCE_TYPE)?,
        )?;
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= TASK_ENTITY_CACHE_SIZE {
            entries.clear();
        }
        let (version, slots) = entries.entry(task.id.clone()).or_default();
        if *version != task.version {
            *version = task.version;
            *slots = Default::default();
        }
        if let Some(place) = slots.get_mut(slot(state)) {
            *place = Some(built.clone());
        }
        Ok(built)
    }
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use cedar_policy::EvalResult;
    use spiffe::SpiffeId;

    use super::*;

    fn task(expires_at: i64) -> Arc<Task> {
        let id = |p: &str| SpiffeId::new(format!("spiffe://example.org{p}")).unwrap();
        Arc::new(Task {
            id: "t1".into(),
            intent: "x".into(),
            delegator: id("/workloads/frontend"),
            delegatee: id("/agents/a"),
            originator: "alice".into(),
            parent: None,
            root: "t1".into(),
            depth: 0,
            actions: BTreeSet::from(["read".to_owned()]),
            scope: BTreeSet::from(["repos".to_owned()]),
            max_sensitivity: 1,
            created_at: 0,
            expires_at,
            state: TaskState::Active,
            version: 0,
            scope_digest: String::new(),
        })
    }

    fn state(entities: &[Entity]) -> EvalResult {
        entities[0].attr("state").unwrap().unwrap()
    }

    #[test]
    fn cached_entities_follow_the_state_at_each_call() {
        let cache = TaskEntityCache::default();
        let chain = vec![task(100)];
        let active = cache.chain(&chain, 50).unwrap();
        assert_eq!(state(&active), EvalResult::String("active".into()));
        assert_eq!(cache.chain(&chain, 50).unwrap(), active);
        // Past the deadline the same task is built (and cached) as expired.
        let expired = cache.chain(&chain, 100).unwrap();
        assert_eq!(state(&expired), EvalResult::String("expired".into()));
        // And the same entities as without the cache.
        assert_eq!(task_entities(&chain, 100).unwrap(), expired);
        let mut revoked = (*chain[0]).clone();
        revoked.state = TaskState::Revoked;
        let revoked = cache.chain(&[Arc::new(revoked)], 50).unwrap();
        assert_eq!(state(&revoked), EvalResult::String("revoked".into()));
    }
}
