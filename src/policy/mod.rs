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
mod tests {
    use super::*;

    fn schema() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/mandate.cedarschema")
    }

    #[test]
    fn ids_come_from_annotations_else_file_and_position() {
        let dir = tempfile::tempdir().unwrap();
        let read = r#"permit (principal, action == Mandate::Action::"read", resource);"#;
        std::fs::write(
            dir.path().join("x.cedar"),
            format!("{read}\n\n@id(\"named\")\n{read}\n{read}\n"),
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("team")).unwrap();
        std::fs::write(
            dir.path().join("team/x.cedar"),
            format!("// team\n{read}\n"),
        )
        .unwrap();

        let engine = PolicyEngine::load(dir.path(), &schema(), None).unwrap();
        let mut ids: Vec<String> = engine
            .policies()
            .policies()
            .map(|p| p.id().to_string())
            .filter(|id| !id.starts_with(guards::RESERVED_PREFIX))
            .collect();
        ids.sort();
        assert_eq!(ids, ["named", "team/x.0", "x.0", "x.2"]);
        let x0 = engine.source_of(&PolicyId::new("x.0")).unwrap();
        assert!(x0.ends_with("x.cedar:1"), "{x0}");
        let named = engine.source_of(&PolicyId::new("named")).unwrap();
        assert!(named.ends_with("x.cedar:3"), "{named}");
        let x2 = engine.source_of(&PolicyId::new("x.2")).unwrap();
        assert!(x2.ends_with("x.cedar:5"), "{x2}");
        let team = engine.source_of(&PolicyId::new("team/x.0")).unwrap();
        assert!(team.ends_with("team/x.cedar:2"), "{team}");
    }

    #[test]
    fn guards_are_built_in_and_their_ids_reserved() {
        let dir = tempfile::tempdir().unwrap();
        let engine = PolicyEngine::load(dir.path(), &schema(), None).unwrap();
        let ids: Vec<String> = engine
            .policies()
            .policies()
            .map(|p| p.id().to_string())
            .collect();
        assert!(
            ids.contains(&"mandate.guard.task-not-active".to_owned()),
            "{ids:?}"
        );
        assert!(
            ids.contains(&"mandate.guard.action-not-in-task.read".to_owned()),
            "{ids:?}"
        );
        assert!(
            !ids.iter()
                .any(|id| id.ends_with(".check") || id.ends_with(".delegate"))
        );
        assert_eq!(
            engine
                .source_of(&PolicyId::new("mandate.guard.task-not-active"))
                .as_deref(),
            Some("<built-in>")
        );

        std::fs::write(
            dir.path().join("sneaky.cedar"),
            r#"@id("mandate.guard.task-not-active") permit (principal, action, resource);"#,
        )
        .unwrap();
        let err = PolicyEngine::load(dir.path(), &schema(), None).unwrap_err();
        assert!(err.to_string().contains("is reserved"), "{err}");
    }

    #[test]
    fn duplicate_ids_are_refused_with_both_places() {
        let dir = tempfile::tempdir().unwrap();
        let named = r#"@id("same") permit (principal, action, resource);"#;
        std::fs::write(dir.path().join("a.cedar"), named).unwrap();
        std::fs::write(dir.path().join("b.cedar"), format!("\n{named}")).unwrap();
        let err = PolicyEngine::load(dir.path(), &schema(), None).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("b.cedar:2:1: policy id `same` is already used at"),
            "{message}"
        );
        assert!(message.contains("a.cedar:1"), "{message}");
    }

    #[test]
    fn tasks_cannot_be_declared_in_the_static_entities() {
        let dir = tempfile::tempdir().unwrap();
        let entities = dir.path().join("entities.json");
        std::fs::write(
            &entities,
            r#"[{"uid": {"type": "Mandate::Task", "id": "t1"}, "attrs": {
                "intent": "x", "delegator": "a", "delegatee": "b", "originator": "c",
                "depth": 0, "actions": [], "scope": [], "max_sensitivity": 0,
                "expires_at": 0, "state": "active"}, "parents": []}]"#,
        )
        .unwrap();
        let err = PolicyEngine::load(dir.path(), &schema(), Some(&entities)).unwrap_err();
        assert!(err.to_string().contains("live state only"), "{err}");
    }

    #[test]
    fn the_shipped_policies_validate() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let engine = PolicyEngine::load(
            &root.join("policies"),
            &schema(),
            Some(&root.join("examples/entities.json")),
        )
        .unwrap();
        assert!(!engine.is_empty());
        assert!(engine.action("check").is_some());
        assert!(engine.action("no-such-action").is_none());
    }
}
