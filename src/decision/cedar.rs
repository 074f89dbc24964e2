//! Cedar over one question: builds the request and its entity slice from
//! the registry and what the pipeline read from live state, and evaluates
//! it. Never fails: every problem is a deny with a reason.

use std::collections::HashSet;
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Effect, Entities, Entity, EntityId, EntityTypeName, EntityUid, Request,
    RequestValidationError, RestrictedExpression,
};
use spiffe::SpiffeId;

use super::history::{self, HistoryQuery};
use super::principal::AgentPattern;
use super::task::{self, RESERVED_CONTEXT_KEYS, TaskEntityCache, TaskFacts};
use super::{DEFAULT_RESOURCE_TYPE, Decision, Grounds, Reason};
use crate::policy::{Evaluated, PolicyEngine};
use crate::registry::Snapshot;

/// Who a question is about.
#[derive(Debug, Clone, Copy)]
pub enum Principal<'a> {
    /// A workload or agent by its verified SPIFFE ID: `Mandate::Agent` or
    /// `Mandate::Workload` (see [`AgentPattern`]).
    Workload(&'a SpiffeId),
    /// An entity of the schema (a `Mandate::User`, or a type a user schema
    /// declares), as the registry holds it.
    Entity(&'a EntityUid),
}

impl<'a> From<&'a SpiffeId> for Principal<'a> {
    fn from(id: &'a SpiffeId) -> Self {
        Self::Workload(id)
    }
}

impl std::fmt::Display for Principal<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Workload(id) => id.fmt(f),
            Self::Entity(uid) => uid.fmt(f),
        }
    }
}

/// One question to Cedar: may `principal` do `action` on the resource?
#[derive(Debug, Clone)]
pub struct Query<'a> {
    /// The authenticated subject.
    pub principal: Principal<'a>,
    /// Action id within `Mandate::Action`, such as `read`.
    pub action: &'a str,
    /// Resource entity type; empty means [`DEFAULT_RESOURCE_TYPE`].
    pub resource_type: &'a str,
    /// Resource entity id.
    pub resource_id: &'a str,
    /// Context as JSON (an object).
    pub context: serde_json::Value,
    /// The task of a verified task token, if the call presented one.
    pub task: Option<&'a TaskFacts>,
    /// Entities the resource needs beyond the registry's, such as a task
    /// and its chain when the resource is a task.
    pub entities: Vec<Entity>,
    /// The current approval for (task, action, resource), if any.
    pub approval: Option<ApprovalView>,
    /// Extra context Mandate adds for this action (such as
    /// `delegatee_class` for `delegate`), beyond the caller's.
    pub mandate_context: Vec<(String, RestrictedExpression)>,
    /// Entities the caller described, for a principal or resource the
    /// registry does not hold (see [`super::DoorContext::described`]).
    pub described: Vec<Entity>,
    /// The task's and its tree's execution history, when the policies of
    /// the action read it.
    pub history: Option<HistoryQuery<'a>>,
}

/// A current approval as policies see it in `context.approval`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalView {
    /// Whether the approver said yes.
    pub granted: bool,
    /// The user who decided.
    pub approver: String,
    /// Seconds since the decision.
    pub age_seconds: i64,
}

impl<'a> Query<'a> {
    /// A request with no task, approval or extra entities.
    pub fn new(
        principal: impl Into<Principal<'a>>,
        action: &'a str,
        resource_type: &'a str,
        resource_id: &'a str,
        context: serde_json::Value,
    ) -> Self {
        Self {
            principal: principal.into(),
            action,
            resource_type,
            resource_id,
            context,
            task: None,
            entities: Vec::new(),
            approval: None,
            mandate_context: Vec::new(),
            described: Vec::new(),
            history: None,
        }
    }
}

/// Evaluates questions against a [`PolicyEngine`].
#[derive(Debug)]
pub struct Evaluator {
    authorizer: Authorizer,
    agents: AgentPattern,
    tasks: TaskEntityCache,
}

impl Evaluator {
    /// An evaluator that treats SPIFFE IDs matching `agents` as `Mandate::Agent`.
    pub fn new(agents: AgentPattern) -> Self {
        Self {
            authorizer: Authorizer::new(),
            agents,
            tasks: TaskEntityCache::default(),
        }
    }

    /// Drops cached task entities past their age.
    pub fn sweep(&self) {
        self.tasks.sweep();
    }

    /// Which SPIFFE IDs are agents.
    pub fn agents(&self) -> &AgentPattern {
        &self.agents
    }

    /// Decides one question, and returns the Cedar request and entity
    /// slice it was evaluated over (none when it never reached the
    /// policies), for `mandate policy explain` and decision records.
    pub fn evaluate(
        &self,
        engine: &PolicyEngine,
        registry: &Snapshot,
        request: Query<'_>,
    ) -> (Decision, Option<Evaluated>) {
        let outcome = |d: Decision| (d, None);
        let Some(action) = engine.action(request.action) else {
            return outcome(Decision::deny(
                Reason::UnknownAction,
                format!("action `{}` is not declared in the schema", request.action),
            ));
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
                return outcome(Decision::deny(
                    Reason::UnknownResourceType,
                    format!("resource type `{resource_type}` is not declared in the schema"),
                ));
            }
        };
        let fields = match request.context {
            serde_json::Value::Object(map) => map,
            _ => {
                return outcome(Decision::deny(
                    Reason::InvalidContext,
                    "context must be an object",
                ));
            }
        };
        if let Some(key) = RESERVED_CONTEXT_KEYS
            .iter()
            .find(|k| fields.contains_key(**k))
        {
            return outcome(Decision::deny(
                Reason::InvalidContext,
                format!("context key `{key}` is set by Mandate, not by callers"),
            ));
        }
        // An empty caller context needs no parsing; what Mandate adds may
        // be required by the schema, and `Request::new` below checks the
        // whole context either way.
        let parsed = if fields.is_empty() {
            Ok(Context::empty())
        } else {
            Context::from_json_value(
                serde_json::Value::Object(fields),
                Some((engine.schema(), action)),
            )
        };
        let mut context = match parsed {
            Ok(context) => context,
            Err(e) => return outcome(Decision::deny(Reason::InvalidContext, e.to_string())),
        };
        let mut pairs = request.mandate_context;
        if let Some(facts) = request.task {
            match task::context_pairs(facts) {
                Ok(more) => pairs.extend(more),
                Err(e) => return outcome(Decision::deny(Reason::InternalError, e)),
            }
        }
        if let Some(approval) = &request.approval {
            pairs.push(("approval".to_owned(), approval_record(approval)));
        }
        let mut histories = Vec::new();
        if let Some(query) = &request.history {
            match history::context(query) {
                Ok((more, entities)) => {
                    pairs.extend(more);
                    histories = entities;
                }
                Err(e) => return outcome(Decision::deny(Reason::InternalError, e)),
            }
        }
        if engine.is_resource_operation(request.action)
            && let Principal::Workload(id) = request.principal
            && let Some(cross) = cross_trust_domain(registry, &resource, id)
        {
            pairs.push((
                "cross_trust_domain".to_owned(),
                RestrictedExpression::new_bool(cross),
            ));
        }
        if !pairs.is_empty() {
            context = match context.merge(pairs) {
                Ok(context) => context,
                Err(e) => return outcome(Decision::deny(Reason::InternalError, e.to_string())),
            };
        }
        let mut described = request.described;
        let principal = match request.principal {
            Principal::Workload(id) => match self.agents.entity(registry, id) {
                Ok(principal) => principal,
                Err(e) => return outcome(Decision::deny(Reason::InternalError, e)),
            },
            Principal::Entity(uid) => entity_principal(registry, uid, &mut described),
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
            ) => return outcome(Decision::deny(Reason::InvalidContext, e.to_string())),
            Err(e) => return outcome(Decision::deny(Reason::InvalidRequest, e.to_string())),
        };
        let mut extra = request.entities;
        extra.extend(histories);
        if let Some(facts) = request.task {
            match self.tasks.chain(&facts.chain, facts.now) {
                Ok(tasks) => extra.extend(tasks),
                Err(e) => return outcome(Decision::deny(Reason::InternalError, e)),
            }
        }
        let slice = Slice {
            principal,
            extra,
            described,
        };
        let entities = match entity_slice(engine, registry, slice, action, &resource) {
            Ok(entities) => entities,
            Err(e) => return outcome(Decision::deny(Reason::InternalError, e.to_string())),
        };

        let decision = judge(&self.authorizer, engine, &cedar_request, &entities);
        (
            decision,
            Some(Evaluated {
                request: cedar_request,
                entities,
            }),
        )
    }
}

/// Evaluates a built request against `engine`'s policies: the decision,
/// the determining policies, evaluation errors (a deny: DESIGN §3.6) and
/// whether an approval alone would lift the deny.
pub fn judge(
    authorizer: &Authorizer,
    engine: &PolicyEngine,
    cedar_request: &Request,
    entities: &Entities,
) -> Decision {
    let (policies, without_approval) = match cedar_request.action() {
        Some(action) => engine.policies_for(action),
        None => (engine.policies(), engine.policies_without_approval()),
    };
    let response = authorizer.is_authorized(cedar_request, policies, entities);
    let diagnostics = response.diagnostics();
    let determining_policies: Vec<String> = diagnostics.reason().map(ToString::to_string).collect();
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
        reasons.push(Reason::EvaluationError);
    }
    let allowed = errors.is_empty() && response.decision() == cedar_policy::Decision::Allow;
    if !allowed && response.decision() == cedar_policy::Decision::Deny {
        reasons.push(if forbidden {
            Reason::ForbiddenByPolicy
        } else {
            Reason::NoPermit
        });
    }
    // "Needs approval" only when every forbid that matched is one an
    // approval lifts and the rest of the policies would allow: an
    // approval must never be asked for what would be denied anyway.
    let needs_approval = !allowed
        && errors.is_empty()
        && forbidden
        && diagnostics.reason().all(|id| engine.lifted_by_approval(id))
        && {
            let without = authorizer.is_authorized(cedar_request, without_approval, entities);
            without.decision() == cedar_policy::Decision::Allow
                && without.diagnostics().errors().next().is_none()
        };
    if needs_approval {
        reasons.push(Reason::NeedsApproval);
    }
    let grounds = Grounds {
        determining_policies,
        errors,
        reasons,
    };
    if allowed {
        Decision::Allow(grounds)
    } else if needs_approval {
        Decision::NeedsApproval(grounds)
    } else {
        Decision::Deny(grounds)
    }
}

/// A non-workload principal: the registry's entity when it holds one,
/// else the one the caller described, else the bare entity (policies can
/// still decide on its type and id).
fn entity_principal(registry: &Snapshot, uid: &EntityUid, described: &mut Vec<Entity>) -> Entity {
    if let Some(registered) = registry.entities().get(uid) {
        return registered.clone();
    }
    match described.iter().position(|e| e.uid() == *uid) {
        Some(at) => described.swap_remove(at),
        None => Entity::with_uid(uid.clone()),
    }
}

/// What an entity slice is made of beyond the registry.
struct Slice {
    /// The principal, built already.
    principal: Entity,
    /// Live entities (tasks), which shadow the registry's.
    extra: Vec<Entity>,
    /// Entities the caller described, which the registry's shadow.
    described: Vec<Entity>,
}

/// The entities one request needs: the principal, the live entities the
/// request brings (tasks), the resource and the ancestors of both from the
/// registry, what the caller described of entities the registry does not
/// hold, and the action with its groups. Never the whole entity store.
fn entity_slice(
    engine: &PolicyEngine,
    registry: &Snapshot,
    slice_of: Slice,
    action: &EntityUid,
    resource: &EntityUid,
) -> Result<Entities, Box<cedar_policy::entities_errors::EntitiesError>> {
    let Slice {
        principal,
        extra,
        described,
    } = slice_of;
    let store = registry.entities();
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
    // INVARIANT: what a caller describes never shadows the registry or
    // live state: it only fills in entities neither holds.
    for entity in described {
        if seen.insert(entity.uid()) {
            slice.push(entity);
        }
    }
    slice.extend(engine.action_slice(action));
    Entities::from_entities(slice, None).map_err(Box::new)
}

/// `context.approval`: a record of the schema's `ApprovalContext`.
fn approval_record(approval: &ApprovalView) -> RestrictedExpression {
    RestrictedExpression::new_record([
        (
            "granted".to_owned(),
            RestrictedExpression::new_bool(approval.granted),
        ),
        (
            "approver".to_owned(),
            RestrictedExpression::new_string(approval.approver.clone()),
        ),
        (
            "age_seconds".to_owned(),
            RestrictedExpression::new_long(approval.age_seconds),
        ),
    ])
    .unwrap_or_else(|_| RestrictedExpression::new_bool(false))
}

/// Whether the principal's trust domain differs from the registered
/// resource's; unknown for a resource nobody registered.
fn cross_trust_domain(
    registry: &Snapshot,
    resource: &EntityUid,
    principal: &SpiffeId,
) -> Option<bool> {
    let entity = registry.entities().get(resource)?;
    match entity.attr("trust_domain") {
        Some(Ok(cedar_policy::EvalResult::String(td))) => Some(td != principal.trust_domain_name()),
        _ => None,
    }
}
