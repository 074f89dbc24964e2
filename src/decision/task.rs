//! A task chain as Cedar sees it: `Mandate::Task` entities (each `in` its
//! parent) and the context keys Mandate adds for a call with a task token.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::LazyLock;
use std::time::Duration;

use cedar_policy::{Entity, EntityId, EntityTypeName, EntityUid, RestrictedExpression};

use quick_cache::Equivalent;

use crate::cache::Bounded;
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
    "history",
    "history_root",
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

/// Most task entities kept; past it the coldest are dropped.
const TASK_ENTITY_CACHE_SIZE: usize = 50_000;
/// How long an entity is kept without being built again.
const TASK_ENTITY_MAX_AGE: Duration = Duration::from_secs(600);

/// Cedar entities of live tasks, by task id, version and chain state, so
/// the decision path does not rebuild them on every call.
///
/// INVARIANT: a task's fields change only by amendment, which bumps its
/// `version`; the version and the state are part of the key, so an entity
/// built once for (task, version, state) stays right.
#[derive(Debug)]
pub struct TaskEntityCache {
    entries: Bounded<EntityKey, Entity>,
}

impl Default for TaskEntityCache {
    fn default() -> Self {
        Self {
            entries: Bounded::new(TASK_ENTITY_CACHE_SIZE, TASK_ENTITY_MAX_AGE),
        }
    }
}

/// A task's id, version and chain state.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct EntityKey(crate::graph::TaskId, u32, TaskState);

/// [`EntityKey`] borrowed, so a lookup does not copy the id. Hashes as
/// the owned key does (a `str` hashes as its `String`).
#[derive(Hash)]
struct EntityKeyRef<'a>(&'a str, u32, TaskState);

impl Equivalent<EntityKey> for EntityKeyRef<'_> {
    fn equivalent(&self, key: &EntityKey) -> bool {
        self.0 == &*key.0 && self.1 == key.1 && self.2 == key.2
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
        if let Some(entity) = self
            .entries
            .get(&EntityKeyRef(&task.id, task.version, state))
        {
            return Ok(entity);
        }
        let built = entity(
            task,
            state,
            &type_name(&TASK_TYPE)?,
            &type_name(&RESOURCE_TYPE)?,
        )?;
        self.entries.insert(
            EntityKey(task.id.clone(), task.version, state),
            built.clone(),
        );
        Ok(built)
    }

    /// Drops entities past their age.
    pub fn sweep(&self) {
        self.entries.sweep();
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
            RestrictedExpression::new_set(task.actions.iter().map(&string)),
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
            delegator: id("/workloads/frontend").into(),
            delegatee: id("/agents/a").into(),
            originator: "alice".into(),
            parent: None,
            root: "t1".into(),
            depth: 0,
            actions: BTreeSet::from(["read".to_owned()]).into(),
            scope: BTreeSet::from(["repos".to_owned()]).into(),
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
        assert_eq!(cache.entries.len(), 1, "the second call is a hit");
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
