//! Registry entries to and from their messages, for the service and the
//! CLI alike.

use std::collections::BTreeSet;

use super::v1::{self, entry};
use crate::registry::{
    AgentEntry, Entry, GroupEntry, Level, ResourceEntry, UserEntry, WorkloadEntry,
};

fn optional(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_owned())
}

fn set(values: &[String]) -> BTreeSet<String> {
    values.iter().cloned().collect()
}

/// A registry entry from its message (not checked: see [`Entry::check`]).
/// `Err` says what is missing, for an `INVALID_ARGUMENT`.
pub fn entry_from_proto(entry: Option<&v1::Entry>) -> Result<Entry, String> {
    let entry = entry
        .and_then(|e| e.entry.as_ref())
        .ok_or_else(|| "`entry` is required".to_owned())?;
    let entry = match entry {
        entry::Entry::Agent(a) => Entry::Agent(AgentEntry {
            spiffe_id: a.spiffe_id.clone(),
            checksum: optional(&a.checksum),
            owner: optional(&a.owner),
            class: optional(&a.class),
            groups: set(&a.groups),
        }),
        entry::Entry::Workload(w) => Entry::Workload(WorkloadEntry {
            spiffe_id: w.spiffe_id.clone(),
            groups: set(&w.groups),
        }),
        entry::Entry::User(u) => Entry::User(UserEntry {
            id: u.id.clone(),
            name: optional(&u.name),
            groups: set(&u.groups),
        }),
        entry::Entry::Group(g) => Entry::Group(GroupEntry {
            id: g.id.clone(),
            groups: set(&g.groups),
        }),
        entry::Entry::Resource(r) => Entry::Resource(ResourceEntry {
            id: r.id.clone(),
            parent: optional(&r.parent),
            sensitivity: optional(&r.sensitivity).map(|s| match s.parse::<i64>() {
                Ok(n) => Level::Number(n),
                Err(_) => Level::Name(s),
            }),
            labels: set(&r.labels),
            owner: optional(&r.owner),
            trust_domain: optional(&r.trust_domain),
        }),
    };
    Ok(entry)
}

/// The message of a registry entry.
pub fn entry_to_proto(entry: &Entry) -> v1::Entry {
    let list = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>();
    let text = |s: &Option<String>| s.clone().unwrap_or_default();
    let inner = match entry {
        Entry::Agent(a) => entry::Entry::Agent(v1::AgentEntry {
            spiffe_id: a.spiffe_id.clone(),
            checksum: text(&a.checksum),
            owner: text(&a.owner),
            class: text(&a.class),
            groups: list(&a.groups),
        }),
        Entry::Workload(w) => entry::Entry::Workload(v1::WorkloadEntry {
            spiffe_id: w.spiffe_id.clone(),
            groups: list(&w.groups),
        }),
        Entry::User(u) => entry::Entry::User(v1::UserEntry {
            id: u.id.clone(),
            name: text(&u.name),
            groups: list(&u.groups),
        }),
        Entry::Group(g) => entry::Entry::Group(v1::GroupEntry {
            id: g.id.clone(),
            groups: list(&g.groups),
        }),
        Entry::Resource(r) => entry::Entry::Resource(v1::ResourceEntry {
            id: r.id.clone(),
            parent: text(&r.parent),
            sensitivity: match &r.sensitivity {
                Some(Level::Name(n)) => n.clone(),
                Some(Level::Number(n)) => n.to_string(),
                None => String::new(),
            },
            labels: list(&r.labels),
            owner: text(&r.owner),
            trust_domain: text(&r.trust_domain),
        }),
    };
    v1::Entry { entry: Some(inner) }
}
