//! Which Cedar entity a SPIFFE ID becomes.

use std::collections::HashMap;
use std::str::FromStr;

use cedar_policy::{Entity, EntityId, EntityTypeName, EntityUid, RestrictedExpression};
use spiffe::{SpiffeId, TrustDomain};

use crate::registry::Snapshot;

/// Path prefixes that make an unregistered SPIFFE ID a `Mandate::Agent`.
pub const DEFAULT_AGENT_PATH_PREFIXES: &[&str] = &["/agent/", "/agents/"];

/// Decides whether a SPIFFE ID is an agent or another workload.
#[derive(Debug, Clone)]
pub struct AgentPattern {
    path_prefixes: Vec<String>,
    trust_domains: Vec<TrustDomain>,
    agent_type: EntityTypeName,
    workload_type: EntityTypeName,
}

fn type_name(name: &str) -> EntityTypeName {
    #[expect(clippy::expect_used, reason = "a constant, valid type name")]
    EntityTypeName::from_str(name).expect("valid entity type name")
}

fn uid(type_name: &EntityTypeName, id: &SpiffeId) -> EntityUid {
    EntityUid::from_type_name_and_id(type_name.clone(), EntityId::new(id.to_string()))
}

impl AgentPattern {
    /// SPIFFE IDs in one of `trust_domains` whose path starts with one of
    /// `path_prefixes` are agents. Other trust domains' IDs are agents only
    /// when registered as such: a federated partner does not get our agents'
    /// permissions by naming its workloads `/agents/...`.
    pub fn new(
        path_prefixes: impl IntoIterator<Item = String>,
        trust_domains: impl IntoIterator<Item = TrustDomain>,
    ) -> Self {
        Self {
            path_prefixes: path_prefixes.into_iter().collect(),
            trust_domains: trust_domains.into_iter().collect(),
            agent_type: type_name("Mandate::Agent"),
            workload_type: type_name("Mandate::Workload"),
        }
    }

    /// Whether `id` is an agent by the pattern alone (registered or not).
    pub fn matches(&self, id: &SpiffeId) -> bool {
        self.trust_domains.contains(id.trust_domain())
            && self
                .path_prefixes
                .iter()
                .any(|prefix| id.path().starts_with(prefix.as_str()))
    }

    /// The principal entity for `id`: `Mandate::Agent` when registered as
    /// an agent or matching the pattern, otherwise `Mandate::Workload`
    /// (DESIGN §2). Registering an ID as a workload never takes it out of
    /// the agent policies: such registrations are refused. Registered
    /// attributes and groups are kept; `spiffe_id`, `trust_domain` and
    /// `path` always come from the verified ID.
    pub fn entity(&self, registry: &Snapshot, id: &SpiffeId) -> Result<Entity, String> {
        let store = registry.entities();
        let agent = uid(&self.agent_type, id);
        let uid = if store.get(&agent).is_some() || self.matches(id) {
            agent
        } else {
            uid(&self.workload_type, id)
        };
        let (mut attrs, parents) = match store.get(&uid) {
            Some(registered) => {
                let (_, attrs, parents) = registered.clone().into_inner();
                (attrs, parents)
            }
            None => (HashMap::new(), Default::default()),
        };
        attrs.insert(
            "spiffe_id".to_owned(),
            RestrictedExpression::new_string(id.to_string()),
        );
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
