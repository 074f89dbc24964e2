//! `[store]`: where tasks, revocations, approvals and registry writes are
//! kept, and how a replica follows the store.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigErrors;
use super::reference::{Section, example, key};
use crate::journal::ReplicaSettings;

/// The SQLite file of the default store, under the data dir.
pub const STORE_FILE: &str = "mandate.db";

/// The `[store]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite://PATH` or `postgres://...`; `None`: SQLite under the data
    /// dir.
    pub url: Option<String>,
    /// The key (32 bytes, base64) sealing signing keys in the store.
    pub key_file: Option<PathBuf>,
    /// Out of contact with the store for longer, deny everything, ms.
    pub stale_after_ms: u64,
    /// Longest wait of a decision for its `min_revision`, ms.
    pub min_revision_wait_ms: u64,
    /// Catch up at least this often without a notification, ms.
    pub poll_ms: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        let replica = ReplicaSettings::default();
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Self {
            url: None,
            key_file: None,
            stale_after_ms: ms(replica.stale_after),
            min_revision_wait_ms: ms(replica.min_revision_wait),
            poll_ms: ms(replica.poll),
        }
    }
}

impl StoreConfig {
    /// The store URL (defaulted under `data_dir`) and the replica bounds.
    pub(super) fn validate(
        &self,
        data_dir: &Path,
        errors: &mut ConfigErrors,
    ) -> (String, ReplicaSettings) {
        let url = self
            .url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join(STORE_FILE).display()));
        let known = ["sqlite://", "postgres://", "postgresql://"];
        if !known.iter().any(|scheme| url.starts_with(scheme)) || url.len() <= "sqlite://".len() {
            errors.bad(
                "store.url",
                crate::store::redact(&url),
                "must be `sqlite://PATH` or `postgres://...`",
            );
        }
        errors.at_least_one("store.stale_after_ms", self.stale_after_ms);
        errors.at_least_one("store.min_revision_wait_ms", self.min_revision_wait_ms);
        errors.at_least_one("store.poll_ms", self.poll_ms);
        // On a quiet cluster the poll is the only contact: polling no more
        // often than the stale bound would flap the replica into deny-all.
        if self.poll_ms >= self.stale_after_ms {
            errors.bad(
                "store.poll_ms",
                self.poll_ms,
                format!(
                    "must be less than `store.stale_after_ms` ({})",
                    self.stale_after_ms
                ),
            );
        }
        let replica = ReplicaSettings {
            stale_after: Duration::from_millis(self.stale_after_ms),
            min_revision_wait: Duration::from_millis(self.min_revision_wait_ms),
            poll: Duration::from_millis(self.poll_ms),
        };
        (url, replica)
    }
}

pub(super) const SECTION: Section = Section {
    name: "store",
    doc: "The store: tasks, revocations, approvals, registry writes and (with a\nsealing key) signing keys (docs/store.md).",
    optional: false,
    keys: &[
        example(
            "url",
            "sqlite://PATH (WAL mode, synchronous=FULL) or postgres://... for several\nreplicas sharing one state (default: SQLite at server.data_dir/mandate.db).",
            "\"postgres://mandate@db.internal:5432/mandate\"",
        ),
        example(
            "key_file",
            "Keep signing keys in the store, sealed with this key (32 bytes, base64;\nor set MANDATE_STORE_KEY). Without it, they are files under data_dir/keys.",
            "\"/run/secrets/mandate-store.key\"",
        ),
        key(
            "stale_after_ms",
            "A replica out of contact with the store for longer denies everything\n(state-unavailable).",
        ),
        key(
            "min_revision_wait_ms",
            "How long a decision waits for its min_revision (stale-state after).",
        ),
        key(
            "poll_ms",
            "A replica catches up at least this often, notified or not; less than\nstale_after_ms.",
        ),
    ],
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poll_as_slow_as_the_stale_bound_is_refused() {
        let mut errors = ConfigErrors::default();
        StoreConfig {
            stale_after_ms: 1000,
            poll_ms: 1000,
            ..StoreConfig::default()
        }
        .validate(Path::new("d"), &mut errors);
        assert!(
            errors
                .lines()
                .iter()
                .any(|p| p.starts_with("`store.poll_ms` `1000`")),
            "{errors}"
        );
        let mut errors = ConfigErrors::default();
        let (url, _) = StoreConfig::default().validate(Path::new("d"), &mut errors);
        assert!(errors.is_empty(), "{errors}");
        assert_eq!(url, "sqlite://d/mandate.db");
    }
}
