//! Registry entries: who and what Mandate knows about beyond certificates.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use spiffe::SpiffeId;

use super::sensitivity::Level;

/// The kinds of entry, each a Cedar entity type of the `Mandate` namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// `Mandate::Agent`, keyed by SPIFFE ID.
    Agent,
    /// `Mandate::Workload`, keyed by SPIFFE ID.
    Workload,
    /// `Mandate::User`, keyed by a stable user id.
    User,
    /// `Mandate::Group`.
    Group,
    /// `Mandate::Resource`.
    Resource,
}

impl Kind {
    /// Every kind, in catalog order.
    pub const ALL: [Kind; 5] = [
        Kind::Group,
        Kind::User,
        Kind::Workload,
        Kind::Agent,
        Kind::Resource,
    ];

    /// The Cedar entity type name.
    pub fn cedar_type(self) -> &'static str {
        match self {
            Self::Agent => "Mandate::Agent",
            Self::Workload => "Mandate::Workload",
            Self::User => "Mandate::User",
            Self::Group => "Mandate::Group",
            Self::Resource => "Mandate::Resource",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Agent => "agent",
            Self::Workload => "workload",
            Self::User => "user",
            Self::Group => "group",
            Self::Resource => "resource",
        })
    }
}

/// An AI agent: its registered checksum binds tokens to one build of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentEntry {
    /// The agent's SPIFFE ID.
    pub spiffe_id: String,
    /// `sha256:<hex>` over the canonical JSON of its prompt, tools and
    /// model configuration (see [`crate::integrity`]). When set, a token is
    /// issued only to an agent that proves this checksum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    /// The user responsible for the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// A class, such as `coding` or `support`, for policies about which
    /// agents may work together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// Groups the agent is in.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub groups: BTreeSet<String>,
}

/// A non-agent workload. Whether it may act for users or as an
/// enforcement point is decided by policy, usually through its groups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadEntry {
    /// The workload's SPIFFE ID.
    pub spiffe_id: String,
    /// Groups the workload is in.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub groups: BTreeSet<String>,
}

/// A human.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserEntry {
    /// A stable id, such as the identity provider's subject.
    pub id: String,
    /// A display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Groups the user is in.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub groups: BTreeSet<String>,
}

/// A set of principals; groups can nest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupEntry {
    /// The group id, such as `operators`.
    pub id: String,
    /// Groups this group is in.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub groups: BTreeSet<String>,
}

/// Something acted on. Sensitivity and trust domain, when unset, are
/// inherited from the nearest ancestor that has them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceEntry {
    /// The resource id, such as `repo:acme/payments`.
    pub id: String,
    /// The parent resource in the hierarchy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// A level of the configured scale, by name or number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensitivity: Option<Level>,
    /// Free-form labels, such as `pii`.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub labels: BTreeSet<String>,
    /// SPIFFE ID of the owning workload or id of the owning user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The trust domain the resource belongs to; Mandate's own when no
    /// ancestor names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_domain: Option<String>,
}

/// One registry entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Entry {
    /// An agent.
    Agent(AgentEntry),
    /// A workload.
    Workload(WorkloadEntry),
    /// A user.
    User(UserEntry),
    /// A group.
    Group(GroupEntry),
    /// A resource.
    Resource(ResourceEntry),
}

impl Entry {
    /// Its kind.
    pub fn kind(&self) -> Kind {
        match self {
            Self::Agent(_) => Kind::Agent,
            Self::Workload(_) => Kind::Workload,
            Self::User(_) => Kind::User,
            Self::Group(_) => Kind::Group,
            Self::Resource(_) => Kind::Resource,
        }
    }

    /// Its id: the SPIFFE ID of agents and workloads, else the id.
    pub fn id(&self) -> &str {
        match self {
            Self::Agent(a) => &a.spiffe_id,
            Self::Workload(w) => &w.spiffe_id,
            Self::User(u) => &u.id,
            Self::Group(g) => &g.id,
            Self::Resource(r) => &r.id,
        }
    }

    /// The groups it is in (none for resources).
    pub fn groups(&self) -> Option<&BTreeSet<String>> {
        match self {
            Self::Agent(a) => Some(&a.groups),
            Self::Workload(w) => Some(&w.groups),
            Self::User(u) => Some(&u.groups),
            Self::Group(g) => Some(&g.groups),
            Self::Resource(_) => None,
        }
    }

    /// Checks what can be checked on the entry alone.
    pub fn check(&self) -> Result<(), String> {
        let id = self.id();
        if id.is_empty() {
            return Err(format!("{} id is empty", self.kind()));
        }
        if id.len() > MAX_ID_LEN {
            return Err(format!(
                "{} id is {} bytes long; the limit is {MAX_ID_LEN}",
                self.kind(),
                id.len()
            ));
        }
        match self {
            Self::Agent(a) => {
                workload_id(&a.spiffe_id)?;
                if let Some(checksum) = &a.checksum {
                    crate::integrity::check_checksum_format(checksum)?;
                }
            }
            Self::Workload(w) => {
                workload_id(&w.spiffe_id)?;
            }
            Self::Resource(r) => {
                if let Some(td) = &r.trust_domain {
                    spiffe::TrustDomain::new(td)
                        .map_err(|e| format!("`{td}` is not a trust domain name: {e}"))?;
                }
                if r.parent.as_deref() == Some(r.id.as_str()) {
                    return Err(format!("resource `{}` is its own parent", r.id));
                }
            }
            Self::User(_) | Self::Group(_) => {}
        }
        Ok(())
    }
}

/// Longest id accepted.
pub const MAX_ID_LEN: usize = 1024;

fn workload_id(id: &str) -> Result<SpiffeId, String> {
    let parsed = SpiffeId::new(id).map_err(|e| format!("`{id}` is not a SPIFFE ID: {e}"))?;
    if parsed.path().is_empty() {
        return Err(format!("`{id}` names a trust domain, not a workload"));
    }
    Ok(parsed)
}
