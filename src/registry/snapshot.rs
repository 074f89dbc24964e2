//! One consistent view of the registry as Cedar entities. Built whole on
//! every registry write (writes are rare, reads are every decision) and
//! swapped in, so the decision path never waits for a writer.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;

use cedar_policy::{
    Entities, Entity, EntityId, EntityTypeName, EntityUid, RestrictedExpression, Schema,
};
use spiffe::SpiffeId;

use super::entry::{AgentEntry, Entry, Kind, ResourceEntry};
use super::sensitivity::SensitivityScale;

/// Entries by kind and id.
pub(super) type Entries = BTreeMap<(Kind, String), Entry>;

/// The registry at one revision.
#[derive(Debug)]
pub struct Snapshot {
    entries: Entries,
    entities: Entities,
    static_uids: HashSet<EntityUid>,
}

/// Where the snapshot's Cedar entities come from besides the entries.
#[derive(Debug)]
pub(super) struct Inputs<'a> {
    pub schema: &'a Schema,
    pub scale: &'a SensitivityScale,
    /// Mandate's own trust domain: resources belong to it unless told.
    pub home_trust_domain: &'a str,
    /// Entities from a Cedar entities file (read-only, for types a user
    /// schema adds).
    pub static_entities: &'a [Entity],
}

/// The Cedar uid of an entry.
pub fn uid(kind: Kind, id: &str) -> Result<EntityUid, String> {
    let type_name = EntityTypeName::from_str(kind.cedar_type()).map_err(|e| e.to_string())?;
    Ok(EntityUid::from_type_name_and_id(
        type_name,
        EntityId::new(id),
    ))
}

impl Snapshot {
    /// An empty registry.
    pub fn empty() -> Self {
        Self {
            entries: Entries::new(),
            entities: Entities::empty(),
            static_uids: HashSet::new(),
        }
    }

    /// Builds and validates a snapshot; every problem is reported.
    pub(super) fn build(entries: Entries, inputs: &Inputs<'_>) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        let mut entities = Vec::with_capacity(entries.len() + inputs.static_entities.len());
        let static_uids: HashSet<EntityUid> =
            inputs.static_entities.iter().map(Entity::uid).collect();
        for ((kind, id), entry) in &entries {
            let name = format!("{kind} `{id}`");
            if let Err(e) = entry.check() {
                problems.push(format!("{name}: {e}"));
                continue;
            }
            for group in entry.groups().into_iter().flatten() {
                if !entries.contains_key(&(Kind::Group, group.clone())) {
                    problems.push(format!("{name}: group `{group}` is not registered"));
                }
            }
            let other = match kind {
                Kind::Agent => Some(Kind::Workload),
                Kind::Workload => Some(Kind::Agent),
                _ => None,
            };
            if let Some(other) = other
                && entries.contains_key(&(other, id.clone()))
            {
                problems.push(format!("{name} is also registered as a {other}"));
            }
            match build_entity(entry, &entries, inputs) {
                Ok(entity) => {
                    if static_uids.contains(&entity.uid()) {
                        problems.push(format!(
                            "{name} is also in the entities file; keep it in one place"
                        ));
                    }
                    entities.push(entity);
                }
                Err(e) => problems.push(format!("{name}: {e}")),
            }
        }
        problems.extend(cycles(&entries));
        if !problems.is_empty() {
            return Err(problems);
        }
        entities.extend(inputs.static_entities.iter().cloned());
        let entities = Entities::from_entities(entities, Some(inputs.schema))
            .map_err(|e| vec![format!("the registry does not fit the schema: {e}")])?;
        Ok(Self {
            entries,
            entities,
            static_uids,
        })
    }

    pub(super) fn entries(&self) -> &Entries {
        &self.entries
    }

    /// The registry and static entities as Cedar sees them, with groups
    /// and resource parents as ancestors.
    pub fn entities(&self) -> &Entities {
        &self.entities
    }

    /// One entry.
    pub fn get(&self, kind: Kind, id: &str) -> Option<&Entry> {
        self.entries.get(&(kind, id.to_owned()))
    }

    /// A registered agent.
    pub fn agent(&self, spiffe_id: &str) -> Option<&AgentEntry> {
        match self.get(Kind::Agent, spiffe_id) {
            Some(Entry::Agent(agent)) => Some(agent),
            _ => None,
        }
    }

    /// The entity of an entry and its ancestors (groups, parent
    /// resources), as policy sees it.
    pub fn entity_with_ancestors(&self, kind: Kind, id: &str) -> Vec<Entity> {
        let Ok(uid) = uid(kind, id) else {
            return Vec::new();
        };
        std::iter::once(&uid)
            .chain(self.entities.ancestors(&uid).into_iter().flatten())
            .filter_map(|u| self.entities.get(u).cloned())
            .collect()
    }

    /// Whether the entities file (not the registry) defines this entity.
    pub fn is_static(&self, uid: &EntityUid) -> bool {
        self.static_uids.contains(uid)
    }

    /// Entries of one kind with ids after `after`, at most `limit`.
    pub fn list(&self, kind: Kind, after: Option<&str>, limit: usize) -> Vec<&Entry> {
        let start = (kind, after.unwrap_or_default().to_owned());
        self.entries
            .range(start..)
            .take_while(|((k, _), _)| *k == kind)
            .filter(|((_, id), _)| after.is_none_or(|a| id.as_str() > a))
            .take(limit)
            .map(|(_, entry)| entry)
            .collect()
    }

    /// Entries that name `kind`/`id` as a group or parent.
    pub(super) fn referents(&self, kind: Kind, id: &str) -> Vec<String> {
        self.entries
            .iter()
            .filter(|(_, entry)| match (kind, entry) {
                (Kind::Group, entry) => entry.groups().is_some_and(|g| g.contains(id)),
                (Kind::Resource, Entry::Resource(r)) => r.parent.as_deref() == Some(id),
                _ => false,
            })
            .map(|((k, i), _)| format!("{k} `{i}`"))
            .collect()
    }
}

impl crate::graph::ResourceHierarchy for Snapshot {
    /// `resource` is `root` or below it among registered resources (and
    /// the `Mandate::Resource` entities of the entities file).
    fn within(&self, resource: &str, root: &str) -> bool {
        if resource == root {
            return true;
        }
        let (Ok(resource), Ok(root)) = (uid(Kind::Resource, resource), uid(Kind::Resource, root))
        else {
            return false;
        };
        self.entities
            .ancestors(&resource)
            .is_some_and(|mut ancestors| ancestors.any(|a| *a == root))
    }
}

fn string(s: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(s.to_owned())
}

fn build_entity(entry: &Entry, entries: &Entries, inputs: &Inputs<'_>) -> Result<Entity, String> {
    let kind = entry.kind();
    let mut attrs: HashMap<String, RestrictedExpression> = HashMap::new();
    let mut parents: HashSet<EntityUid> = entry
        .groups()
        .into_iter()
        .flatten()
        .map(|g| uid(Kind::Group, g))
        .collect::<Result<_, _>>()?;
    match entry {
        Entry::Agent(agent) => {
            spiffe_attrs(&mut attrs, &agent.spiffe_id)?;
            for (key, value) in [
                ("owner", &agent.owner),
                ("checksum", &agent.checksum),
                ("class", &agent.class),
            ] {
                if let Some(value) = value {
                    attrs.insert(key.to_owned(), string(value));
                }
            }
        }
        Entry::Workload(workload) => spiffe_attrs(&mut attrs, &workload.spiffe_id)?,
        Entry::User(user) => {
            if let Some(name) = &user.name {
                attrs.insert("name".to_owned(), string(name));
            }
        }
        Entry::Group(_) => {}
        Entry::Resource(resource) => {
            if let Some(parent) = &resource.parent {
                if !entries.contains_key(&(Kind::Resource, parent.clone())) {
                    return Err(format!("parent `{parent}` is not registered"));
                }
                parents.insert(uid(Kind::Resource, parent)?);
            }
            let (sensitivity, trust_domain) = inherited(resource, entries, inputs)?;
            if let Some(level) = sensitivity {
                attrs.insert(
                    "sensitivity".to_owned(),
                    RestrictedExpression::new_long(level),
                );
            }
            attrs.insert("trust_domain".to_owned(), string(&trust_domain));
            attrs.insert(
                "labels".to_owned(),
                RestrictedExpression::new_set(resource.labels.iter().map(|l| string(l))),
            );
            if let Some(owner) = &resource.owner {
                attrs.insert("owner".to_owned(), string(owner));
            }
        }
    }
    Entity::new(uid(kind, entry.id())?, attrs, parents).map_err(|e| e.to_string())
}

fn spiffe_attrs(
    attrs: &mut HashMap<String, RestrictedExpression>,
    spiffe_id: &str,
) -> Result<(), String> {
    let id = SpiffeId::new(spiffe_id).map_err(|e| e.to_string())?;
    attrs.insert("spiffe_id".to_owned(), string(&id.to_string()));
    attrs.insert("trust_domain".to_owned(), string(id.trust_domain_name()));
    attrs.insert("path".to_owned(), string(id.path()));
    Ok(())
}

/// The resource's own sensitivity and trust domain, else the nearest
/// ancestor's; the trust domain defaults to Mandate's own.
fn inherited(
    resource: &ResourceEntry,
    entries: &Entries,
    inputs: &Inputs<'_>,
) -> Result<(Option<i64>, String), String> {
    let mut sensitivity = None;
    let mut trust_domain = None;
    let mut current = Some(resource);
    // Bounded by the number of resources, so a cycle (reported elsewhere)
    // cannot loop forever.
    for _ in 0..=entries.len() {
        let Some(r) = current else { break };
        if sensitivity.is_none()
            && let Some(level) = &r.sensitivity
        {
            sensitivity = Some(
                inputs
                    .scale
                    .resolve(level)
                    .map_err(|e| format!("resource `{}`: {e}", r.id))?,
            );
        }
        if trust_domain.is_none() {
            trust_domain.clone_from(&r.trust_domain);
        }
        current = r
            .parent
            .as_ref()
            .and_then(|p| match entries.get(&(Kind::Resource, p.clone())) {
                Some(Entry::Resource(parent)) => Some(parent),
                _ => None,
            });
    }
    Ok((
        sensitivity,
        trust_domain.unwrap_or_else(|| inputs.home_trust_domain.to_owned()),
    ))
}

/// Cycles among resource parents and among nested groups.
fn cycles(entries: &Entries) -> Vec<String> {
    let mut problems = Vec::new();
    for kind in [Kind::Resource, Kind::Group] {
        let edges: BTreeMap<&str, Vec<&str>> = entries
            .iter()
            .filter(|((k, _), _)| *k == kind)
            .map(|((_, id), entry)| {
                let next: Vec<&str> = match entry {
                    Entry::Resource(r) => r.parent.iter().map(String::as_str).collect(),
                    other => other
                        .groups()
                        .into_iter()
                        .flatten()
                        .map(String::as_str)
                        .collect(),
                };
                (id.as_str(), next)
            })
            .collect();
        problems.extend(
            find_cycles(&edges)
                .into_iter()
                .map(|c| format!("{kind} cycle: {c}")),
        );
    }
    problems
}

/// Every cycle of a graph where each node has a few successors, found with
/// an iterative depth-first walk (no recursion, so a deep hierarchy cannot
/// overflow the stack). Each cycle is reported once, as `a -> b -> a`.
fn find_cycles<'a>(edges: &BTreeMap<&'a str, Vec<&'a str>>) -> Vec<String> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        OnPath,
        Done,
    }
    let mut marks: HashMap<&str, Mark> = HashMap::new();
    let mut cycles = Vec::new();
    for start in edges.keys() {
        if marks.contains_key(start) {
            continue;
        }
        // The path from `start`, each node with the index of its next
        // successor to visit.
        let mut path: Vec<(&str, usize)> = vec![(start, 0)];
        marks.insert(start, Mark::OnPath);
        while let Some((node, next)) = path.last().copied() {
            let successor = edges.get(node).and_then(|s| s.get(next)).copied();
            if let Some(top) = path.last_mut() {
                top.1 += 1;
            }
            match successor {
                None => {
                    marks.insert(node, Mark::Done);
                    path.pop();
                }
                Some(succ) => match marks.get(succ) {
                    Some(Mark::Done) => {}
                    Some(Mark::OnPath) => {
                        let from = path.iter().position(|(n, _)| *n == succ).unwrap_or(0);
                        let mut cycle: Vec<&str> =
                            path.iter().skip(from).map(|(n, _)| *n).collect();
                        cycle.push(succ);
                        cycles.push(cycle.join(" -> "));
                    }
                    None => {
                        marks.insert(succ, Mark::OnPath);
                        path.push((succ, 0));
                    }
                },
            }
        }
    }
    cycles
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycles_are_found_once_each_and_deep_chains_do_not_overflow() {
        // a -> b -> a and b -> c -> b share `b`; d -> d stands alone.
        let edges: BTreeMap<&str, Vec<&str>> = BTreeMap::from([
            ("a", vec!["b"]),
            ("b", vec!["a", "c"]),
            ("c", vec!["b"]),
            ("d", vec!["d"]),
            ("e", vec!["a"]),
        ]);
        let cycles = find_cycles(&edges);
        assert_eq!(cycles, ["a -> b -> a", "b -> c -> b", "d -> d"]);

        let names: Vec<String> = (0..200_000).map(|i| format!("n{i}")).collect();
        let mut deep: BTreeMap<&str, Vec<&str>> = names
            .windows(2)
            .map(|w| (w[0].as_str(), vec![w[1].as_str()]))
            .collect();
        assert!(find_cycles(&deep).is_empty());
        deep.insert(names[199_999].as_str(), vec![names[0].as_str()]);
        assert_eq!(find_cycles(&deep).len(), 1);
    }
}
