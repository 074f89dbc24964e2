//! Policies: the schema, the policy set and static entities, loaded and
//! strictly validated as one snapshot.

mod error;
pub mod guards;
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
    action_entities: Entities,
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
        let (mut policies, sources) = load::policies(policies_dir)?;
        let actions: HashMap<String, EntityUid> = schema
            .actions()
            .filter(|uid| uid.type_name().to_string() == format!("{NAMESPACE}::Action"))
            .map(|uid| (uid.id().unescaped().to_owned(), uid.clone()))
            .collect();
        let ops = guards::resource_operations(actions.keys());
        for guard in guards::policies(&ops).map_err(|message| PolicyError::Schema {
            path: schema_file.to_owned(),
            message,
        })? {
            policies.add(guard).map_err(|e| PolicyError::Schema {
                path: schema_file.to_owned(),
                message: e.to_string(),
            })?;
        }
        load::validate(&schema, &policies, &sources)?;
        let entities = match entities_file {
            Some(path) => load::entities(path, &schema)?,
            None => Entities::empty(),
        };
        let action_entities = schema.action_entities().map_err(|e| PolicyError::Schema {
            path: schema_file.to_owned(),
            message: e.to_string(),
        })?;
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

impl crate::graph::ResourceHierarchy for PolicyEngine {
    /// Resource ancestry comes from the static entities (`Mandate::Resource`
    /// parents).
    fn within(&self, resource: &str, root: &str) -> bool {
        if resource == root {
            return true;
        }
        let Ok(type_name) = <EntityTypeName as std::str::FromStr>::from_str("Mandate::Resource")
        else {
            return false;
        };
        let uid = |id: &str| {
            EntityUid::from_type_name_and_id(type_name.clone(), cedar_policy::EntityId::new(id))
        };
        let root = uid(root);
        self.entities
            .ancestors(&uid(resource))
            .is_some_and(|mut ancestors| ancestors.any(|a| *a == root))
    }
}

#[cfg(test)]
mod tests;
