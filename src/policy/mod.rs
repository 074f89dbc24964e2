//! Policies: the schema, the policy set and static entities, loaded and
//! strictly validated as one snapshot.

mod error;
mod load;

use std::collections::{HashMap, HashSet};
use std::path::Path;

use cedar_policy::{Entities, Entity, EntityTypeName, EntityUid, PolicyId, PolicySet, Schema};

pub use error::{PolicyError, Problem};

/// The namespace of Mandate's built-in vocabulary.
pub const NAMESPACE: &str = "Mandate";

/// Everything a decision needs from policy files, validated together.
///
/// Immutable: a reload builds a new engine and swaps it in whole.
#[derive(Debug)]
pub struct PolicyEngine {
    schema: Schema,
    policies: PolicySet,
    entities: Entities,
    actions: HashMap<String, EntityUid>,
    action_entities: Vec<Entity>,
    entity_types: HashSet<EntityTypeName>,
    sources: HashMap<PolicyId, load::PolicySource>,
}

impl PolicyEngine {
    /// Loads every `*.cedar` under `policies_dir`, the schema and, when given,
    /// a Cedar entities JSON file, and validates them in strict mode.
    pub fn load(
        policies_dir: &Path,
        schema_file: &Path,
        entities_file: Option<&Path>,
    ) -> Result<Self, PolicyError> {
        let schema = load::schema(schema_file)?;
        let (policies, sources) = load::policies(policies_dir)?;
        load::validate(&schema, &policies, &sources)?;
        let entities = match entities_file {
            Some(path) => load::entities(path, &schema)?,
            None => Entities::empty(),
        };
        let action_entities: Vec<Entity> = schema
            .action_entities()
            .map_err(|e| PolicyError::Schema {
                path: schema_file.to_owned(),
                message: e.to_string(),
            })?
            .into_iter()
            .collect();
        let actions = schema
            .actions()
            .filter(|uid| uid.type_name().to_string() == format!("{NAMESPACE}::Action"))
            .map(|uid| (uid.id().unescaped().to_owned(), uid.clone()))
            .collect();
        let entity_types = schema.entity_types().cloned().collect();
        Ok(Self {
            schema,
            policies,
            entities,
            actions,
            action_entities,
            entity_types,
            sources,
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

    /// Static entities from the entities file.
    pub fn entities(&self) -> &Entities {
        &self.entities
    }

    /// The `Mandate::Action` with this id, if the schema declares it.
    pub fn action(&self, name: &str) -> Option<&EntityUid> {
        self.actions.get(name)
    }

    /// Action entities of the schema (so `action in` groups work).
    pub fn action_entities(&self) -> &[Entity] {
        &self.action_entities
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

    /// Where a policy was written: `file:line`.
    pub fn source_of(&self, id: &PolicyId) -> Option<String> {
        self.sources
            .get(id)
            .map(|s| format!("{}:{}", s.file.display(), s.line))
    }
}
