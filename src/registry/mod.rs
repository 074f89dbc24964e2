//! The registry: agents, workloads, users, groups and resources, from the
//! catalog file at start and from `RegistryService` writes after. Decisions
//! read an immutable [`Snapshot`]; each write builds and validates a new
//! one and swaps it in, bumping the shared revision.

mod catalog;
mod entry;
pub mod sensitivity;
mod snapshot;

use std::sync::{Arc, Mutex, RwLock};

use cedar_policy::{Entities, Entity, Schema};

pub use catalog::Catalog;
pub use entry::{
    AgentEntry, Entry, GroupEntry, Kind, MAX_ID_LEN, ResourceEntry, UserEntry, WorkloadEntry,
};
pub use sensitivity::{Level, SensitivityScale};
pub use snapshot::Snapshot;

use crate::revision::Revision;
pub use snapshot::uid as snapshot_uid;
use snapshot::{Entries, Inputs};

/// Why a registry write was refused.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Register of an id that exists.
    #[error("{kind} `{id}` is already registered; use update")]
    AlreadyExists {
        /// Kind.
        kind: Kind,
        /// Id.
        id: String,
    },
    /// Update or remove of an id that does not exist.
    #[error("{kind} `{id}` is not registered")]
    NotFound {
        /// Kind.
        kind: Kind,
        /// Id.
        id: String,
    },
    /// Remove of an entry others still name.
    #[error("{kind} `{id}` is still named by {}", .referents.join(", "))]
    InUse {
        /// Kind.
        kind: Kind,
        /// Id.
        id: String,
        /// The entries naming it.
        referents: Vec<String>,
    },
    /// The entity is defined in the read-only entities file.
    #[error("{kind} `{id}` is defined in the entities file; change it there")]
    Static {
        /// Kind.
        kind: Kind,
        /// Id.
        id: String,
    },
    /// The registry would not be valid after the write.
    #[error("{}", .0.join("; "))]
    Invalid(Vec<String>),
}

/// The live registry.
#[derive(Debug)]
pub struct Registry {
    current: RwLock<Arc<Snapshot>>,
    /// Serialises writers and holds the schema entries are validated
    /// against; a reload with a new schema replaces it under this lock, so
    /// no write can validate against a schema that is no longer in use.
    writer: Mutex<Schema>,
    static_entities: Vec<Entity>,
    scale: SensitivityScale,
    home_trust_domain: String,
    revision: Arc<Revision>,
}

impl Registry {
    /// A registry holding `entries` and the entities of an entities file,
    /// validated against `schema`. Every problem is reported.
    pub fn new(
        entries: Vec<Entry>,
        static_entities: &Entities,
        schema: &Schema,
        scale: SensitivityScale,
        home_trust_domain: &str,
        revision: Arc<Revision>,
    ) -> Result<Self, Vec<String>> {
        let static_entities: Vec<Entity> = static_entities.iter().cloned().collect();
        let mut map = Entries::new();
        for entry in entries {
            map.insert((entry.kind(), entry.id().to_owned()), entry);
        }
        let snapshot = Snapshot::build(
            map,
            &Inputs {
                schema,
                scale: &scale,
                home_trust_domain,
                static_entities: &static_entities,
            },
        )?;
        Ok(Self {
            current: RwLock::new(Arc::new(snapshot)),
            writer: Mutex::new(schema.clone()),
            static_entities,
            scale,
            home_trust_domain: home_trust_domain.to_owned(),
            revision,
        })
    }

    /// The current snapshot; cheap, never blocks on a writer for long.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The sensitivity scale.
    pub fn scale(&self) -> &SensitivityScale {
        &self.scale
    }

    /// Adds an entry that does not exist yet. `authorize` sees the
    /// registry as it would be, with the entry in it, and can refuse; it
    /// runs before the caller learns whether the entry exists.
    pub fn register<E: From<RegistryError>>(
        &self,
        entry: Entry,
        authorize: impl FnOnce(&Snapshot) -> Result<(), E>,
    ) -> Result<u64, E> {
        let (kind, id) = (entry.kind(), entry.id().to_owned());
        self.put(entry, authorize, |current| {
            if current.get(kind, &id).is_some() {
                return Err(RegistryError::AlreadyExists { kind, id }.into());
            }
            refuse_static(current, kind, &id)?;
            Ok(())
        })
    }

    /// Replaces an existing entry; `authorize` sees the registry as it
    /// would be, before the caller learns whether the entry exists.
    pub fn update<E: From<RegistryError>>(
        &self,
        entry: Entry,
        authorize: impl FnOnce(&Snapshot) -> Result<(), E>,
    ) -> Result<u64, E> {
        let (kind, id) = (entry.kind(), entry.id().to_owned());
        self.put(entry, authorize, |current| {
            if current.get(kind, &id).is_none() {
                refuse_static(current, kind, &id)?;
                return Err(RegistryError::NotFound { kind, id }.into());
            }
            Ok(())
        })
    }

    /// Removes an entry no other entry names; `authorize` sees the
    /// registry as it is, with the entry still in it, and runs first.
    pub fn remove<E: From<RegistryError>>(
        &self,
        kind: Kind,
        id: &str,
        authorize: impl FnOnce(&Snapshot) -> Result<(), E>,
    ) -> Result<u64, E> {
        let schema = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.snapshot();
        authorize(&current)?;
        let mut entries = current.entries().clone();
        if entries.remove(&(kind, id.to_owned())).is_none() {
            refuse_static(&current, kind, id)?;
            return Err(RegistryError::NotFound {
                kind,
                id: id.to_owned(),
            }
            .into());
        }
        let referents = current.referents(kind, id);
        if !referents.is_empty() {
            return Err(RegistryError::InUse {
                kind,
                id: id.to_owned(),
                referents,
            }
            .into());
        }
        let next = self.build(entries, &schema)?;
        Ok(self.swap(next))
    }

    /// Puts `entry` into a copy of the entries, validates the result, asks
    /// `authorize` about it, then `check` about the current registry, and
    /// swaps it in.
    fn put<E: From<RegistryError>>(
        &self,
        entry: Entry,
        authorize: impl FnOnce(&Snapshot) -> Result<(), E>,
        check: impl FnOnce(&Snapshot) -> Result<(), E>,
    ) -> Result<u64, E> {
        let schema = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.snapshot();
        let mut entries = current.entries().clone();
        entries.insert((entry.kind(), entry.id().to_owned()), entry);
        let next = self.build(entries, &schema)?;
        authorize(&next)?;
        check(&current)?;
        Ok(self.swap(next))
    }

    fn build<E: From<RegistryError>>(
        &self,
        entries: Entries,
        schema: &Schema,
    ) -> Result<Snapshot, E> {
        Snapshot::build(
            entries,
            &Inputs {
                schema,
                scale: &self.scale,
                home_trust_domain: &self.home_trust_domain,
                static_entities: &self.static_entities,
            },
        )
        .map_err(|problems| E::from(RegistryError::Invalid(problems)))
    }

    /// Rebuilds the registry against a new schema, under the writer lock;
    /// when it fits, swaps the rebuilt registry in, keeps the schema for
    /// later writes and runs `install` (which puts the new schema's policy
    /// set in use), so no write slips in between. The entries do not change, so the revision does not move.
    pub fn revalidate(&self, schema: &Schema, install: impl FnOnce()) -> Result<(), Vec<String>> {
        let mut writer_schema = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.snapshot();
        let next = Snapshot::build(
            current.entries().clone(),
            &Inputs {
                schema,
                scale: &self.scale,
                home_trust_domain: &self.home_trust_domain,
                static_entities: &self.static_entities,
            },
        )
        .map_err(|problems| {
            problems
                .into_iter()
                .map(|p| format!("the registry does not fit the new schema: {p}"))
                .collect::<Vec<_>>()
        })?;
        // The registry first, then the policies: a decision loads the
        // policies first, so one that sees the new policies sees the
        // registry built for their schema.
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(next);
        *writer_schema = schema.clone();
        install();
        Ok(())
    }

    /// Swaps `next` in and bumps the revision; the caller holds the writer
    /// lock, so the bump happens before another write (see [`Revision`]).
    fn swap(&self, next: Snapshot) -> u64 {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(next);
        self.revision.bump()
    }
}

fn refuse_static(snapshot: &Snapshot, kind: Kind, id: &str) -> Result<(), RegistryError> {
    let is_static = snapshot::uid(kind, id).is_ok_and(|uid| snapshot.is_static(&uid));
    if is_static {
        Err(RegistryError::Static {
            kind,
            id: id.to_owned(),
        })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
