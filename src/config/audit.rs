//! The `[audit]` table of `mandate.toml`: sinks besides the decision log
//! file (stdout, the store with its retention), rotation, the overflow
//! policy, redaction and the query window.
//! The file sink itself is the top-level `decision_log` key and the queue
//! size `decision_log_capacity`, as before this table existed.

use serde::Deserialize;

use std::time::Duration;

use crate::audit::{
    AuditSettings, IndexLimits, Overflow, Redaction, Rotation, StoreSinkSettings,
    default_store_chain, defaults,
};

/// Longest retention accepted, days (a typo guard: 100 years).
const MAX_RETENTION_DAYS: u64 = 36_500;
/// Longest chain name, bytes.
const MAX_CHAIN_LEN: usize = 128;

/// The `[audit]` table.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    /// Also write every record to standard output.
    pub stdout: Option<bool>,
    /// `drop` (count and log) or `block` (the decision waits).
    pub overflow: Option<String>,
    /// Rotate the decision log file at this size, bytes; 0: never.
    pub max_file_bytes: Option<u64>,
    /// Rotated files kept.
    pub max_files: Option<usize>,
    /// Request context keys whose values are never recorded.
    pub redact_context_keys: Option<Vec<String>>,
    /// Headers whose values are never recorded (besides
    /// `authorization`, `proxy-authorization` and `cookie`).
    pub redact_headers: Option<Vec<String>>,
    /// Query parameters whose values are never recorded (besides
    /// `access_token`, `token`, `password`, ...).
    pub redact_query: Option<Vec<String>>,
    /// Entries `AuditService` can answer from; 0 turns the index off.
    pub index_max_entries: Option<usize>,
    /// Oldest entry it keeps, seconds.
    pub index_max_age_secs: Option<u64>,
    /// Also write every record to the store's `audit_records` table.
    pub store: Option<bool>,
    /// Days the store keeps rows; 0: forever.
    pub store_retention_days: Option<u64>,
    /// This replica's chain in the store [default: the host name].
    pub store_chain: Option<String>,
    /// How often retention prunes, seconds.
    pub store_prune_interval_secs: Option<u64>,
}

impl RawAudit {
    /// `self` with every unset key taken from `file`.
    pub fn or(self, file: Self) -> Self {
        Self {
            stdout: self.stdout.or(file.stdout),
            overflow: self.overflow.or(file.overflow),
            max_file_bytes: self.max_file_bytes.or(file.max_file_bytes),
            max_files: self.max_files.or(file.max_files),
            redact_context_keys: self.redact_context_keys.or(file.redact_context_keys),
            redact_headers: self.redact_headers.or(file.redact_headers),
            redact_query: self.redact_query.or(file.redact_query),
            index_max_entries: self.index_max_entries.or(file.index_max_entries),
            index_max_age_secs: self.index_max_age_secs.or(file.index_max_age_secs),
            store: self.store.or(file.store),
            store_retention_days: self.store_retention_days.or(file.store_retention_days),
            store_chain: self.store_chain.or(file.store_chain),
            store_prune_interval_secs: self
                .store_prune_interval_secs
                .or(file.store_prune_interval_secs),
        }
    }

    /// Settings with defaults applied; the file and capacity are filled in
    /// by the caller. `token_header` (Envoy's) is never recorded either.
    pub fn resolve(self, token_header: &str, problems: &mut Vec<String>) -> AuditSettings {
        let base = AuditSettings::default();
        let overflow = match self.overflow.as_deref() {
            None => base.overflow,
            Some(value) => Overflow::parse(value).unwrap_or_else(|| {
                problems.push(format!(
                    "`audit.overflow` `{value}` is not `drop` or `block`"
                ));
                base.overflow
            }),
        };
        let max_files = self.max_files.unwrap_or(defaults::MAX_FILES);
        if max_files == 0 {
            problems.push("`audit.max_files` must be at least 1".to_owned());
        }
        let max_age_secs = self
            .index_max_age_secs
            .unwrap_or(defaults::INDEX_MAX_AGE_SECS);
        let store = self.store_sink(problems);
        let headers = self
            .redact_headers
            .unwrap_or_default()
            .into_iter()
            .chain(std::iter::once(token_header.to_owned()));
        AuditSettings {
            rotation: Rotation {
                max_bytes: match self.max_file_bytes.unwrap_or(defaults::MAX_FILE_BYTES) {
                    0 => None,
                    n => Some(n),
                },
                keep: max_files,
            },
            stdout: self.stdout.unwrap_or(false),
            overflow,
            redaction: Redaction::new(self.redact_context_keys.unwrap_or_default(), headers)
                .with_query_params(self.redact_query.unwrap_or_default()),
            index: IndexLimits {
                max_entries: self
                    .index_max_entries
                    .unwrap_or(defaults::INDEX_MAX_ENTRIES),
                max_age_ms: i64::try_from(max_age_secs.saturating_mul(1000)).unwrap_or(i64::MAX),
            },
            store,
            ..base
        }
    }

    /// The store sink's settings, when `store = true`; its keys without it
    /// are a mistake worth naming.
    fn store_sink(&self, problems: &mut Vec<String>) -> Option<StoreSinkSettings> {
        if self.store != Some(true) {
            for (key, set) in [
                ("store_retention_days", self.store_retention_days.is_some()),
                ("store_chain", self.store_chain.is_some()),
                (
                    "store_prune_interval_secs",
                    self.store_prune_interval_secs.is_some(),
                ),
            ] {
                if set {
                    problems.push(format!(
                        "`audit.{key}` is set but the store sink is off; add `store = true` to `[audit]`"
                    ));
                }
            }
            return None;
        }
        let days = self
            .store_retention_days
            .unwrap_or(defaults::STORE_RETENTION_DAYS);
        if days > MAX_RETENTION_DAYS {
            problems.push(format!(
                "`audit.store_retention_days` {days} is more than {MAX_RETENTION_DAYS}; use 0 to keep rows forever"
            ));
        }
        let every = self
            .store_prune_interval_secs
            .unwrap_or(defaults::STORE_PRUNE_INTERVAL_SECS);
        if every == 0 {
            problems.push("`audit.store_prune_interval_secs` must be at least 1".to_owned());
        }
        let chain = self.store_chain.clone().unwrap_or_else(default_store_chain);
        if chain.is_empty()
            || chain.len() > MAX_CHAIN_LEN
            || !chain.chars().all(|c| c.is_ascii_graphic())
        {
            problems.push(format!(
                "`audit.store_chain` `{chain}` must be 1 to {MAX_CHAIN_LEN} printable ASCII characters without spaces"
            ));
        }
        Some(StoreSinkSettings {
            chain,
            retention: (days > 0).then(|| Duration::from_secs(days.saturating_mul(24 * 3600))),
            prune_every: Duration::from_secs(every.max(1)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_overflow_policy_is_named() {
        let mut problems = Vec::new();
        let raw = RawAudit {
            overflow: Some("wait".into()),
            ..RawAudit::default()
        };
        raw.resolve("x-mandate-token", &mut problems);
        assert!(
            problems.iter().any(|p| p.contains("`wait`")),
            "{problems:?}"
        );
    }

    #[test]
    fn the_store_sink_is_checked() {
        let mut problems = Vec::new();
        let on = RawAudit {
            store: Some(true),
            store_retention_days: Some(0),
            store_chain: Some("replica a".into()),
            ..RawAudit::default()
        }
        .resolve("x-mandate-token", &mut problems);
        let store = on
            .store
            .clone()
            .unwrap_or_else(|| StoreSinkSettings::new("x"));
        assert_eq!(store.retention, None, "0 days keeps rows forever");
        assert!(
            problems.iter().any(|p| p.contains("`replica a`")),
            "{problems:?}"
        );
        let mut problems = Vec::new();
        let off = RawAudit {
            store_retention_days: Some(7),
            ..RawAudit::default()
        }
        .resolve("x-mandate-token", &mut problems);
        assert_eq!(off.store, None);
        assert!(
            problems
                .iter()
                .any(|p| p.contains("`audit.store_retention_days`") && p.contains("store = true")),
            "{problems:?}"
        );
        let default = RawAudit {
            store: Some(true),
            ..RawAudit::default()
        }
        .resolve("x-mandate-token", &mut Vec::new());
        let retention = default.store.and_then(|s| s.retention);
        assert_eq!(retention, Some(Duration::from_secs(30 * 24 * 3600)));
    }

    #[test]
    fn the_token_header_is_always_redacted() {
        let settings = RawAudit::default().resolve("x-mandate-token", &mut Vec::new());
        assert!(settings.redaction.headers.contains("x-mandate-token"));
        assert!(settings.redaction.headers.contains("authorization"));
    }
}
