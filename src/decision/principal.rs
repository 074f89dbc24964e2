//! Which Cedar entity a SPIFFE ID becomes.

use std::collections::HashMap;
use std::str::FromStr;

use cedar_policy::{Entity, EntityId, EntityTypeName, EntityUid, RestrictedExpression};
use spiffe::SpiffeId;

use crate::policy::PolicyEngine;

/// Path prefixes that make an unregistered SPIFFE ID a `Mandate::Agent`.
pub const DEFAULT_AGENT_PATH_PREFIXES: &[&str] = &["/agent/", "/agents/"];

/// Decides whether a SPIFFE ID is an agent or another workload.
#[derive(Debug, Clone)]
pub struct AgentPattern {
    path_prefixes: Vec<String>,
    agent_type: EntityTypeName,
    workload_type: EntityTypeName,
}

impl Default for AgentPattern {
    fn default() -> Self {
        Self::new(DEFAULT_AGENT_PATH_PREFIXES.iter().map(|p| (*p).to_owned()))
    }
}

fn type_name(name: &str) -> EntityTypeName {
    #[expect(clippy::expect_used, reason = "a constant, valid type name")]
    EntityTypeName::from_str(name).expect("valid entity type name")
}

fn uid(type_name: &EntityTypeName, id: &SpiffeId) -> EntityUid {
    EntityUid::from_type_name_and_id(type_name.clone(), EntityId::new(id.to_string()))
}

impl AgentPattern {
    /// SPIFFE IDs whose path starts with one of `path_prefixes` are agents.
    pub fn new(path_prefixes: impl IntoIterator<Item = String>) -> Self {
        Self {
            path_prefixes: path_prefixes.into_iter().collect(),
            agent_type: type_name("Mandate::Agent"),
            workload_type: type_name("Mandate::Workload"),
        }
    }

    /// The principal entity for `id`: `Mandate::Agent` when registered as an
    /// agent in the static entities or matching the path pattern, otherwise
    /// `Mandate::Workload`. Registered attributes and groups are kept;
    /// `trust_domain` and `path` always come from the verified ID.
    pub fn entity(&self, engine: &PolicyEngine, id: &SpiffeId) -> Result<Entity, String> {
        let agent = uid(&self.agent_type, id);
        let registered_agent = engine.entities().get(&agent).is_some();
        let is_agent = registered_agent
            || self
                .path_prefixes
                .iter()
                .any(|prefix| id.path().starts_with(prefix.as_str()));
        let uid = if is_agent {
            agent
        } else {
            uid(&self.workload_type, id)
        };
        let (mut attrs, parents) = match engine.entities().get(&uid) {
            Some(registered) => {
                let (_, attrs, parents) = registered.clone().into_inner();
                (attrs, parents)
            }
            None => (HashMap::new(), Default::default()),
        };
        attrs.insert(
            "trust_domain".to_owned(),
            RestrictedExpression::new_string(id.trust_domain_name().to_owned()),
        );
        attrs.insert(
            "path".to_owned(),
            RestrictedExpression::new_string(id.path().to_owned()),
        );
        Entity::new(uid, attrs, parents).map_err(|e| e.to_string())
    }
}
