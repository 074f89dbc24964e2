//! Policies: the schema and the policy set with the built-in guards,
//! loaded and strictly validated as one snapshot.

mod approval;
mod error;
mod evaluated;
pub mod guards;
mod history;
mod load;
pub mod store;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use cedar_policy::{Entities, Entity, EntityTypeName, EntityUid, PolicyId, PolicySet, Schema};

pub use approval::{APPROVAL_ANNOTATION, NEEDS_APPROVAL};

pub use error::{PolicyError, Problem};
pub use evaluated::Evaluated;
pub use history::{HISTORY_KEYS, reads_history};
pub use load::Sources;
pub use store::{PolicyPaths, PolicyStatus, PolicyStore, ReloadFailure};

/// What the sensitivity guard counts a resource without one as, on the
/// default scale (`restricted`).
pub const DEFAULT_UNKNOWN_SENSITIVITY: i64 = 3;

/// The namespace of Mandate's built-in vocabulary.
pub const NAMESPACE: &str = "Mandate";

/// Everything a decision needs from policy files, validated together.
///
/// Immutable: a reload builds a new engine and swaps it in whole.
#[derive(Debug)]
pub struct PolicyEngine {
    schema: Schema,
    policies: PolicySet,
    /// The user's policies without those an approval lifts, to ask
    /// whether an approval alone would turn a deny into an allow.
    without_approval: PolicySet,
    approval_policies: HashSet<PolicyId>,
    /// Actions on resources (not on Mandate itself), whose context is the
    /// schema's `RequestContext`.
    resource_operations: HashSet<String>,
    actions: HashMap<String, EntityUid>,
    action_entities: Entities,
    entity_types: HashSet<EntityTypeName>,
    sources: HashMap<PolicyId, load::PolicySource>,
    hash: Arc<str>,
    warnings: Vec<Problem>,
    schema_text: Arc<str>,
    /// For each action, the policies whose action scope can match it (and
    /// the same without the approval policies): Cedar evaluates every
    /// policy it is given, and most are about other actions.
    by_action: HashMap<EntityUid, (PolicySet, PolicySet)>,
    /// Actions some policy of theirs reads the execution history for
    /// (see [`reads_history`]).
    history_actions: HashSet<EntityUid>,
}

impl PolicyEngine {
    /// Loads every `*.cedar` under `policies_dir` and the schema, and
    /// validates them in strict mode, for the default sensitivity scale.
    pub fn load(policies_dir: &Path, schema_file: &Path) -> Result<Self, PolicyError> {
        Self::load_for_scale(policies_dir, schema_file, DEFAULT_UNKNOWN_SENSITIVITY)
    }

    /// Like [`PolicyEngine::load`]; the sensitivity guard counts a resource
    /// with no sensitivity as `unknown_sensitivity` (the scale's highest).
    pub fn load_for_scale(
        policies_dir: &Path,
        schema_file: &Path,
        unknown_sensitivity: i64,
    ) -> Result<Self, PolicyError> {
        Self::from_sources(
            &Sources::read(policies_dir, schema_file)?,
            unknown_sensitivity,
        )
    }

    /// Parses and validates a policy set from its text (files read from
    /// disk, or sent in a `Validate` request).
    pub fn from_sources(
        sources_in: &Sources,
        unknown_sensitivity: i64,
    ) -> Result<Self, PolicyError> {
        Self::from_sources_at_level(sources_in, unknown_sensitivity, None)
    }

    /// Like [`PolicyEngine::from_sources`], with Cedar's level-based
    /// validation at `level` when given.
    pub fn from_sources_at_level(
        sources_in: &Sources,
        unknown_sensitivity: i64,
        level: Option<u32>,
    ) -> Result<Self, PolicyError> {
        let schema_file = sources_in.schema_path.as_path();
        let schema = load::schema(schema_file, &sources_in.schema_text)?;
        let (mut policies, sources) = load::policies(&sources_in.dir, &sources_in.files)?;
        let actions: HashMap<String, EntityUid> = schema
            .actions()
            .filter(|uid| uid.type_name().to_string() == format!("{NAMESPACE}::Action"))
            .map(|uid| (uid.id().unescaped().to_owned(), uid.clone()))
            .collect();
        let (approval_policies, mut without_approval) = approval::split(&policies, &sources)?;
        let ops = guards::resource_operations(actions.keys());
        for guard in
            guards::policies(&ops, unknown_sensitivity).map_err(|message| PolicyError::Schema {
                path: schema_file.to_owned(),
                message,
            })?
        {
            policies
                .add(guard.clone())
                .map_err(|e| PolicyError::Schema {
                    path: schema_file.to_owned(),
                    message: e.to_string(),
                })?;
            without_approval
                .add(guard)
                .map_err(|e| PolicyError::Schema {
                    path: schema_file.to_owned(),
                    message: e.to_string(),
                })?;
        }
        let warnings = load::validate(&schema, &policies, &sources, level)?;
        let action_entities = schema.action_entities().map_err(|e| PolicyError::Schema {
            path: schema_file.to_owned(),
            message: e.to_string(),
        })?;
        let entity_types = schema.entity_types().cloned().collect();
        let by_action = by_action(&schema, &action_entities, &policies, &without_approval)
            .map_err(|message| PolicyError::Schema {
                path: schema_file.to_owned(),
                message,
            })?;
        let history_actions = history_actions(&policies, &by_action);
        Ok(Self {
            schema,
            policies,
            without_approval,
            approval_policies,
            resource_operations: ops.iter().cloned().collect(),
            actions,
            action_entities,
            entity_types,
            sources,
            hash: sources_in.hash(unknown_sensitivity).into(),
            warnings,
            schema_text: sources_in.schema_text.as_str().into(),
            by_action,
            history_actions,
        })
    }

    /// The validated schema.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The policy set, with stable ids.
    pub fn policies(&self) -> &PolicySet {
        &self.policies
    }

    /// Reads a Cedar entities JSON file (for types a user schema adds),
    /// checked against the schema; tasks and approvals are refused.
    pub fn load_entities(&self, path: &Path) -> Result<Entities, PolicyError> {
        load::entities(path, &self.schema)
    }

    /// Whether `action` operates on resources (its context is the
    /// schema's `RequestContext`), rather than on Mandate itself.
    pub fn is_resource_operation(&self, action: &str) -> bool {
        self.resource_operations.contains(action)
    }

    /// The policies that can apply to `action`, and the same without the
    /// approval policies; the whole sets for an action the schema does not
    /// declare (such a request is refused before evaluation anyway).
    pub fn policies_for(&self, action: &EntityUid) -> (&PolicySet, &PolicySet) {
        self.by_action.get(action).map_or(
            (&self.policies, &self.without_approval),
            |(all, without)| (all, without),
        )
    }

    /// Whether a policy that applies to `action` reads the execution
    /// history: only then does a decision of it get (and wait for) the
    /// task's ledger.
    pub fn reads_history(&self, action: &str) -> bool {
        self.actions
            .get(action)
            .is_some_and(|uid| self.history_actions.contains(uid))
    }

    /// The policy set without the policies an approval lifts.
    pub fn policies_without_approval(&self) -> &PolicySet {
        &self.without_approval
    }

    /// Whether `id` is a forbid marked `@mandate_outcome("needs_approval")`.
    pub fn lifted_by_approval(&self, id: &PolicyId) -> bool {
        self.approval_policies.contains(id)
    }

    /// The `Mandate::Action` with this id, if the schema declares it.
    pub fn action(&self, name: &str) -> Option<&EntityUid> {
        self.actions.get(name)
    }

    /// The ids of every `Mandate::Action` the schema declares.
    pub fn action_names(&self) -> impl Iterator<Item = &str> {
        self.actions.keys().map(String::as_str)
    }

    /// The action entity `action` and the action groups it is in, so
    /// `action in` works for schema-declared groups.
    pub fn action_slice(&self, action: &EntityUid) -> Vec<Entity> {
        std::iter::once(action)
            .chain(self.action_entities.ancestors(action).into_iter().flatten())
            .filter_map(|uid| self.action_entities.get(uid).cloned())
            .collect()
    }

    /// Whether the schema declares this entity type.
    pub fn has_entity_type(&self, name: &EntityTypeName) -> bool {
        self.entity_types.contains(name)
    }

    /// Number of policies loaded.
    pub fn len(&self) -> usize {
        self.policies.policies().count()
    }

    /// Whether no policy is loaded (every request is then denied).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The policy set's hash (`sha256:...` over the files and the
    /// schema); every decision reports the hash of the set it used.
    pub fn hash(&self) -> &Arc<str> {
        &self.hash
    }

    /// The schema's text, as loaded.
    pub fn schema_text(&self) -> &str {
        &self.schema_text
    }

    /// Validation warnings, such as a policy that can never apply.
    pub fn warnings(&self) -> &[Problem] {
        &self.warnings
    }

    /// The user's policies (not the built-in guards), with where each was
    /// written.
    pub fn user_policies(&self) -> impl Iterator<Item = (&cedar_policy::Policy, String)> {
        self.policies
            .policies()
            .filter(|p| !p.id().to_string().starts_with(guards::RESERVED_PREFIX))
            .map(|p| (p, self.source_of(p.id()).unwrap_or_default()))
    }

    /// Where a policy was written: `file:line`.
    pub fn source_of(&self, id: &PolicyId) -> Option<String> {
        if id.to_string().starts_with(guards::RESERVED_PREFIX) {
            return Some("<built-in>".to_owned());
        }
        self.sources
            .get(id)
            .map(|s| format!("{}:{}", s.file.display(), s.line))
    }
}

/// Splits the policy sets by action. A policy goes to an action when its
/// action scope is unconstrained, names the action, or names a group the
/// action is in (or has a form this code does not know: kept, never lost).
/// Leaving out a policy whose scope cannot match changes no decision: Cedar
/// neither satisfies nor evaluates such a policy.
fn by_action(
    schema: &Schema,
    action_entities: &Entities,
    policies: &PolicySet,
    without_approval: &PolicySet,
) -> Result<HashMap<EntityUid, (PolicySet, PolicySet)>, String> {
    let mut out = HashMap::new();
    for action in schema.actions() {
        let groups: HashSet<&EntityUid> = action_entities
            .ancestors(action)
            .into_iter()
            .flatten()
            .collect();
        let applies = |policy: &cedar_policy::Policy| match policy.action_constraint() {
            cedar_policy::ActionConstraint::Any => true,
            cedar_policy::ActionConstraint::Eq(uid) => uid == *action,
            cedar_policy::ActionConstraint::In(uids) => {
                uids.iter().any(|uid| uid == action || groups.contains(uid))
            }
            #[allow(
                unreachable_patterns,
                reason = "a form this code does not know is kept"
            )]
            _ => true,
        };
        let subset = |set: &PolicySet| -> Result<PolicySet, String> {
            let mut subset = PolicySet::new();
            for policy in set.policies().filter(|p| applies(p)) {
                let specialised = match policy.action_constraint() {
                    cedar_policy::ActionConstraint::Eq(_)
                    | cedar_policy::ActionConstraint::In(_) => any_action(policy),
                    _ => policy.clone(),
                };
                subset.add(specialised).map_err(|e| e.to_string())?;
            }
            Ok(subset)
        };
        out.insert(
            action.clone(),
            (subset(policies)?, subset(without_approval)?),
        );
    }
    Ok(out)
}

/// The actions whose policies read the execution history.
fn history_actions(
    policies: &PolicySet,
    by_action: &HashMap<EntityUid, (PolicySet, PolicySet)>,
) -> HashSet<EntityUid> {
    let readers: HashSet<&PolicyId> = policies
        .policies()
        .filter(|p| reads_history(p))
        .map(|p| p.id())
        .collect();
    by_action
        .iter()
        .filter(|(_, (set, _))| set.policies().any(|p| readers.contains(p.id())))
        .map(|(action, _)| action.clone())
        .collect()
}

/// `policy` with its action scope widened to any action, for the split set
/// of one action it applies to: every request that set decides has that
/// action, so the scope is true there, and Cedar would otherwise build the
/// set of an `action in [...]` scope on every evaluation. Same id,
/// annotations and conditions; the original is kept when the rewrite
/// fails.
fn any_action(policy: &cedar_policy::Policy) -> cedar_policy::Policy {
    let rewritten = policy.to_json().ok().and_then(|mut json| {
        *json.get_mut("action")? = serde_json::json!({ "op": "All" });
        cedar_policy::Policy::from_json(Some(policy.id().clone()), json).ok()
    });
    rewritten.unwrap_or_else(|| policy.clone())
}

#[cfg(test)]
mod tests;
