//! The catalog file: registry entries kept in git and loaded at start.
//!
//! ```toml
//! [[groups]]
//! id = "operators"
//!
//! [[agents]]
//! spiffe_id = "spiffe://acme.org/agents/patcher"
//! checksum = "sha256:..."
//! class = "coding"
//!
//! [[resources]]
//! id = "repo:acme/payments"
//! parent = "repos"
//! sensitivity = "confidential"
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::entry::{AgentEntry, Entry, GroupEntry, ResourceEntry, UserEntry, WorkloadEntry};

/// The catalog file's shape: one array per kind.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// Groups.
    #[serde(default)]
    pub groups: Vec<GroupEntry>,
    /// Users.
    #[serde(default)]
    pub users: Vec<UserEntry>,
    /// Workloads.
    #[serde(default)]
    pub workloads: Vec<WorkloadEntry>,
    /// Agents.
    #[serde(default)]
    pub agents: Vec<AgentEntry>,
    /// Resources.
    #[serde(default)]
    pub resources: Vec<ResourceEntry>,
}

impl Catalog {
    /// Reads and parses a catalog file; errors name the file (and, for
    /// syntax, the line and column).
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read catalog `{}`: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("catalog `{}`: {e}", path.display()))
    }

    /// The entries, refusing one id listed twice under the same kind.
    pub fn into_entries(self) -> Result<Vec<Entry>, Vec<String>> {
        let entries: Vec<Entry> = self
            .groups
            .into_iter()
            .map(Entry::Group)
            .chain(self.users.into_iter().map(Entry::User))
            .chain(self.workloads.into_iter().map(Entry::Workload))
            .chain(self.agents.into_iter().map(Entry::Agent))
            .chain(self.resources.into_iter().map(Entry::Resource))
            .collect();
        let mut seen = std::collections::HashSet::new();
        let problems: Vec<String> = entries
            .iter()
            .filter(|e| !seen.insert((e.kind(), e.id().to_owned())))
            .map(|e| format!("{} `{}` is listed twice", e.kind(), e.id()))
            .collect();
        if problems.is_empty() {
            Ok(entries)
        } else {
            Err(problems)
        }
    }
}
