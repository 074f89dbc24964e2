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

impl RegistryError {
    /// The stable reason code clients match on.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::AlreadyExists { .. } => "already-registered",
            Self::NotFound { .. } => "not-registered",
            Self::InUse { .. } => "entry-in-use",
            Self::Static { .. } => "static-entry",
            Self::Invalid(_) => "invalid-entry",
        }
    }
}

/// One committed registry write: `entry` put under (`kind`, `id`), or
/// removed when `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryChange {
    /// Kind of the entry.
    pub kind: Kind,
    /// Its id.
    pub id: String,
    /// The entry, or `None` for a removal.
    pub entry: Option<Entry>,
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
    /// runs before the caller learns whether the entry exists. In memory
    /// only: a server writes through [`crate::journal::Journal`].
    pub fn register<E: From<RegistryError>>(
        &self,
        entry: Entry,
        authorize: impl FnOnce(&Snapshot) -> Result<(), E>,
    ) -> Result<u64, E> {
        let schema = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let (next, _) = self.plan_put_locked(&schema, entry, authorize, false)?;
        Ok(self.swap(next))
    }

    /// Replaces an existing entry; `authorize` sees the registry as it
    /// would be, before the caller learns whether the entry exists. In
    /// memory only.
    pub fn update<E: From<RegistryError>>(
        &self,
        entry: Entry,
        authorize: impl FnOnce(&Snapshot) -> Result<(), E>,
    ) -> Result<u64, E> {
        let schema = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let (next, _) = self.plan_put_locked(&schema, entry, authorize, true)?;
        Ok(self.swap(next))
    }

    /// Removes an entry no other entry names; `authorize` sees the
    /// registry as it is, with the entry still in it, and runs first. In
    /// memory only.
    pub fn remove<E: From<RegistryError>>(
        &self,
        kind: Kind,
        id: &str,
        authorize: impl FnOnce(&Snapshot) -> Result<(), E>,
    ) -> Result<u64, E> {
        let schema = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let (next, _) = self.plan_remove_locked(&schema, kind, id, authorize)?;
        Ok(self.swap(next))
    }

    /// Plans [`Registry::register`] (`update` false) or
    /// [`Registry::update`]: the change, validated and authorized, not
    /// applied.
    pub fn plan_put<E: From<RegistryError>>(
        &self,
        entry: Entry,
        authorize: impl FnOnce(&Snapshot) -> Result<(), E>,
        update: bool,
    ) -> Result<RegistryChange, E> {
        let schema = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        Ok(self.plan_put_locked(&schema, entry, authorize, update)?.1)
    }

    /// Plans [`Registry::remove`].
    pub fn plan_remove<E: From<RegistryError>>(
        &self,
        kind: Kind,
        id: &str,
        authorize: impl FnOnce(&Snapshot) -> Result<(), E>,
    ) -> Result<RegistryChange, E> {
        let schema = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        Ok(self.plan_remove_locked(&schema, kind, id, authorize)?.1)
    }

    /// Applies a committed change: rebuilds the registry with it against
    /// the schema in use and moves the revision to `revision`. A change
    /// was validated when planned; rebuilding can only fail if the schema
    /// changed since, and then the registry and the revision stay as they
    /// were (memory never claims a revision whose write it lacks) and the
    /// problems are returned.
    pub fn apply(&self, change: &RegistryChange, revision: u64) -> Result<(), Vec<String>> {
        let schema = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut entries = self.snapshot().entries().clone();
        let key = (change.kind, change.id.clone());
        match &change.entry {
            Some(entry) => entries.insert(key, entry.clone()),
            None => entries.remove(&key),
        };
        let next = self
            .build::<RegistryError>(entries, &schema)
            .map_err(|e| vec![e.to_string()])?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(next);
        self.revision.advance_to(revision);
        Ok(())
    }

    fn plan_remove_locked<E: From<RegistryError>>(
        &self,
        schema: &Schema,
        kind: Kind,
        id: &str,
        authorize: impl FnOnce(&Snapshot) -> Result<(), E>,
    ) -> Result<(Snapshot, RegistryChange), E> {
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
        let next = self.build(entries, schema)?;
        let change = RegistryChange {
            kind,
            id: id.to_owned(),
            entry: None,
        };
        Ok((next, change))
    }

    /// Puts `entry` into a copy of the entries, validates the result, asks
    /// `authorize` about it, then checks the current registry: the entry
    /// must exist for an update and must not for a register.
    fn plan_put_locked<E: From<RegistryError>>(
        &self,
        schema: &Schema,
        entry: Entry,
        authorize: impl FnOnce(&Snapshot) -> Result<(), E>,
        update: bool,
    ) -> Result<(Snapshot, RegistryChange), E> {
        let (kind, id) = (entry.kind(), entry.id().to_owned());
        let current = self.snapshot();
        let mut entries = current.entries().clone();
        entries.insert((kind, id.clone()), entry.clone());
        let next = self.build(entries, schema)?;
        authorize(&next)?;
        let exists = current.get(kind, &id).is_some();
        if update && !exists {
            refuse_static(&current, kind, &id)?;
            return Err(RegistryError::NotFound { kind, id }.into());
        }
        if !update {
            if exists {
                return Err(RegistryError::AlreadyExists { kind, id }.into());
            }
            refuse_static(&current, kind, &id)?;
        }
        let change = RegistryChange {
            kind,
            id,
            entry: Some(entry),
        };
        Ok((next, change))
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
