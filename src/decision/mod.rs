//! The decision path: from an authenticated principal and a request to a
//! Cedar decision with reasons. Fail closed: every error is a deny.

mod principal;
pub mod reason;
mod task;

use std::collections::HashSet;
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Decision, Effect, Entities, Entity, EntityId, EntityTypeName, EntityUid,
    Request, RequestValidationError,
};
use spiffe::SpiffeId;

use crate::policy::PolicyEngine;
pub use principal::{AgentPattern, DEFAULT_AGENT_PATH_PREFIXES};
pub use task::{RESERVED_CONTEXT_KEYS, TaskEntityCache, TaskFacts, task_entities};

/// The resource type used when a request names none.
pub const DEFAULT_RESOURCE_TYPE: &str = "Mandate::Resource";

/// One question: may `principal` do `action` on the resource?
#[derive(Debug, Clone)]
pub struct DecisionRequest<'a> {
    /// The authenticated subject.
    pub principal: &'a SpiffeId,
    /// Action id within `Mandate::Action`, such as `read`.
    pub action: &'a str,
    /// Resource entity type; empty means [`DEFAULT_RESOURCE_TYPE`].
    pub resource_type: &'a str,
    /// Resource entity id.
    pub resource_id: &'a str,
    /// Context as JSON (an object).
    pub context: serde_json::Value,
    /// The task of a verified task token, if the call presented one.
    pub task: Option<TaskFacts>,
    /// Entities the resource needs beyond the static ones, such as a task
    /// and its chain when the resource is a task.
    pub entities: Vec<Entity>,
}

/// What was decided and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Whether the request is allowed.
    pub allowed: bool,
    /// Ids of the policies that determined the decision.
    pub determining_policies: Vec<String>,
    /// Human-readable evaluation or request errors.
    pub errors: Vec<String>,
    /// Reason codes from [`reason`].
    pub reasons: Vec<&'static str>,
}

impl Outcome {
    /// A deny that never reached policy evaluation.
    pub fn deny(reason: &'static str, error: impl Into<String>) -> Self {
        Self {
            allowed: false,
            determining_policies: Vec::new(),
            errors: vec![error.into()],
            reasons: vec![reason],
        }
    }
}

/// Decides requests against a [`PolicyEngine`].
#[derive(Debug)]
pub struct Decider {
    authorizer: Authorizer,
    agents: AgentPattern,
    tasks: TaskEntityCache,
}

impl Decider {
    /// A decider that treats SPIFFE IDs matching `agents` as `Mandate::Agent`.
    pub fn new(agents: AgentPattern) -> Self {
        Self {
            authorizer: Authorizer::new(),
            agents,
            tasks: TaskEntityCache::default(),
        }
    }

    /// Which SPIFFE IDs are agents.
    pub fn agents(&self) -> &AgentPattern {
        &self.agents
    }

    /// Decides one request. Never fails: every problem is a deny with a reason.
    pub fn decide(&self, engine: &PolicyEngine, request: DecisionRequest<'_>) -> Outcome {
        let Some(action) = engine.action(request.action) else {
            return Outcome::deny(
                reason::UNKNOWN_ACTION,
                format!("action `{}` is not declared in the schema", request.action),
            );
        };
        let resource_type = if request.resource_type.is_empty() {
            DEFAULT_RESOURCE_TYPE
        } else {
            request.resource_type
        };
        let resource = match EntityTypeName::from_str(resource_type) {
            Ok(type_name) if engine.has_entity_type(&type_name) => {
                EntityUid::from_type_name_and_id(type_name, EntityId::new(request.resource_id))
            }
            _ => {
                return Outcome::deny(
                    reason::UNKNOWN_RESOURCE_TYPE,
                    format!("resource type `{resource_type}` is not declared in the schema"),
                );
            }
        };
        let fields = match request.context {
            serde_json::Value::Object(map) => map,
            _ => {
                return Outcome::deny(reason::INVALID_CONTEXT, "context must be an object");
            }
        };
        if let Some(key) = RESERVED_CONTEXT_KEYS
            .iter()
            .find(|k| fields.contains_key(**k))
        {
            return Outcome::deny(
                reason::INVALID_CONTEXT,
                format!(
                    "context key `{key}` is set by Mandate from the task token, not by callers"
                ),
            );
        }
        let mut context = match Context::from_json_value(
            serde_json::Value::Object(fields),
            Some((engine.schema(), action)),
        ) {
            Ok(context) => context,
            Err(e) => return Outcome::deny(reason::INVALID_CONTEXT, e.to_string()),
        };
        if let Some(facts) = &request.task {
            let merged = task::context_pairs(facts)
                .and_then(|pairs| context.merge(pairs).map_err(|e| e.to_string()));
            context = match merged {
                Ok(context) => context,
                Err(e) => return Outcome::deny(reason::INTERNAL_ERROR, e),
            };
        }
        let principal = match self.agents.entity(engine, request.principal) {
            Ok(principal) => principal,
            Err(e) => return Outcome::deny(reason::INTERNAL_ERROR, e),
        };
        let principal_uid = principal.uid();
        let cedar_request = match Request::new(
            principal_uid.clone(),
            action.clone(),
            resource.clone(),
            context,
            Some(engine.schema()),
        ) {
            Ok(r) => r,
            Err(
                e @ (RequestValidationError::InvalidContext(_)
                | RequestValidationError::TypeOfContext(_)),
            ) => return Outcome::deny(reason::INVALID_CONTEXT, e.to_string()),
            Err(e) => return Outcome::deny(reason::INVALID_REQUEST, e.to_string()),
        };
        let mut extra = request.entities;
        if let Some(facts) = &request.task {
            match self.tasks.chain(&facts.chain, facts.now) {
                Ok(tasks) => extra.extend(tasks),
                Err(e) => return Outcome::deny(reason::INTERNAL_ERROR, e),
            }
        }
        let entities = match entity_slice(engine, principal, action, &resource, extra) {
            Ok(entities) => entities,
            Err(e) => return Outcome::deny(reason::INTERNAL_ERROR, e.to_string()),
        };

        let response = self
            .authorizer
            .is_authorized(&cedar_request, engine.policies(), &entities);
        let diagnostics = response.diagnostics();
        let determining_policies: Vec<String> =
            diagnostics.reason().map(ToString::to_string).collect();
        let errors: Vec<String> = diagnostics.errors().map(ToString::to_string).collect();
        let forbidden = diagnostics.reason().any(|id| {
            engine
                .policies()
                .policy(id)
                .is_some_and(|p| p.effect() == Effect::Forbid)
        });

        let mut reasons = Vec::new();
        // INVARIANT: an evaluation error denies even when the remaining
        // policies would allow (DESIGN §3.6); Cedar alone would skip the
        // erroring policy.
        if !errors.is_empty() {
            reasons.push(reason::EVALUATION_ERROR);
        }
        let allowed = errors.is_empty() && response.decision() == Decision::Allow;
        if !allowed && response.decision() == Decision::Deny {
            reasons.push(if forbidden {
                reason::FORBIDDEN_BY_POLICY
            } else {
                reason::NO_PERMIT
            });
        }
        Outcome {
            allowed,
            determining_policies,
            errors,
            reasons,
        }
    }
}

/// The entities one request needs: the principal, the live entities the
/// request brings (tasks), the resource and the ancestors of both from the
/// static entities, and the action with its groups. Never the whole entity
/// store.
fn entity_slice(
    engine: &PolicyEngine,
    principal: Entity,
    action: &EntityUid,
    resource: &EntityUid,
    extra: Vec<Entity>,
) -> Result<Entities, Box<cedar_policy::entities_errors::EntitiesError>> {
    let store = engine.entities();
    let mut seen: HashSet<EntityUid> = HashSet::new();
    let mut slice = Vec::new();
    let principal_uid = principal.uid();
    seen.insert(principal_uid.clone());
    slice.push(principal);
    // INVARIANT: live state wins. A task in the static entities file can
    // never shadow the task the graph holds, so it is added first.
    for entity in extra {
        if seen.insert(entity.uid()) {
            slice.push(entity);
        }
    }
    let related = store
        .ancestors(&principal_uid)
        .into_iter()
        .flatten()
        .chain(std::iter::once(resource))
        .chain(store.ancestors(resource).into_iter().flatten());
    for uid in related {
        if let Some(entity) = store.get(uid)
            && seen.insert(uid.clone())
        {
            slice.push(entity.clone());
        }
    }
    slice.extend(engine.action_slice(action));
    Entities::from_entities(slice, None).map_err(Box::new)
}
