//! What the API and the decision runner hold of the store: the writer, and
//! this replica's health and settings.

use std::sync::Arc;

use super::{Journal, ReplicaHealth, ReplicaSettings};

/// What the API holds of the store: the writer, and this replica's health
/// and settings for decisions.
#[derive(Debug, Clone)]
pub struct StoreHandle {
    /// Every write goes through it.
    journal: Arc<Journal>,
    /// Whether this replica is in contact with the store.
    health: ReplicaHealth,
    /// Bounds for waiting and staleness.
    settings: ReplicaSettings,
}

impl StoreHandle {
    /// The writer and how this replica follows the store.
    pub fn new(journal: Arc<Journal>, health: ReplicaHealth, settings: ReplicaSettings) -> Self {
        Self {
            journal,
            health,
            settings,
        }
    }

    /// The writer.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Whether this replica is in contact with the store.
    pub fn health(&self) -> &ReplicaHealth {
        &self.health
    }

    /// How long a decision may wait for a `min_revision`.
    pub fn min_revision_wait(&self) -> std::time::Duration {
        self.settings.min_revision_wait
    }

    /// Store health for `/readyz`: the backend, the revision memory is at,
    /// and for a replica how long ago it reached the store and how many
    /// revisions it is behind the newest it was told of.
    pub fn report(&self) -> serde_json::Value {
        let revision = self.journal.revision();
        serde_json::json!({
            "backend": self.journal.store().backend(),
            "revision": revision,
            "available": self.health.available(),
            "since_contact_ms": self.health.since_contact().map(|d| d.as_millis()),
            "lag_revisions": self.health.lag(revision),
        })
    }
}
