//! `[audit]`: the audit file (`file`, `capacity`), the other sinks (stdout,
//! the store with its retention), rotation, the overflow policy,
//! redaction and the query window.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigErrors;
use super::reference::{Section, example, key};
use crate::audit::{
    AuditSettings, IndexLimits, Overflow, Redaction, Rotation, StoreSinkSettings,
    default_store_chain,
};

/// Longest retention accepted, days (a typo guard: 100 years).
const MAX_RETENTION_DAYS: u64 = 36_500;
/// Longest chain name, bytes.
const MAX_CHAIN_LEN: usize = 128;

/// The `[audit]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// The JSON-lines audit file, if any.
    pub file: Option<PathBuf>,
    /// Most records waiting to be written.
    pub capacity: usize,
    /// Also write every record to standard output.
    pub stdout: bool,
    /// `drop` (count and log) or `block` (the decision waits).
    pub overflow: String,
    /// Rotate the file at this size, bytes; 0: never.
    pub max_file_bytes: u64,
    /// Rotated files kept.
    pub max_files: usize,
    /// Request context keys whose values are never recorded.
    pub redact_context_keys: Vec<String>,
    /// Headers whose values are never recorded (besides `authorization`,
    /// `proxy-authorization`, `cookie` and the token header).
    pub redact_headers: Vec<String>,
    /// Query parameters whose values are never recorded (besides
    /// `access_token`, `token`, `password`, ...).
    pub redact_query: Vec<String>,
    /// Entries `AuditService` can answer from; 0 turns the index off.
    pub index_max_entries: usize,
    /// Oldest entry it keeps, seconds.
    pub index_max_age_secs: u64,
    /// Also write every record to the store's `audit_records` table.
    pub store: bool,
    /// Days the store keeps rows; 0: forever. Only with `store`.
    pub store_retention_days: Option<u64>,
    /// This replica's chain in the store [default: the host name].
    pub store_chain: Option<String>,
    /// How often retention prunes, seconds. Only with `store`.
    pub store_prune_interval_secs: Option<u64>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        let base = AuditSettings::default();
        Self {
            file: base.file,
            capacity: base.capacity,
            stdout: base.stdout,
            overflow: base.overflow.as_str().to_owned(),
            max_file_bytes: base.rotation.max_bytes.unwrap_or(0),
            max_files: base.rotation.keep,
            redact_context_keys: Vec::new(),
            redact_headers: Vec::new(),
            redact_query: Vec::new(),
            index_max_entries: base.index.max_entries,
            index_max_age_secs: u64::try_from(base.index.max_age_ms / 1000).unwrap_or(0),
            store: false,
            store_retention_days: None,
            store_chain: None,
            store_prune_interval_secs: None,
        }
    }
}

impl AuditConfig {
    /// Settings but the file and capacity, which the caller fills in.
    /// `token_header` (Envoy's) is never recorded either.
    pub(super) fn validate(&self, token_header: &str, errors: &mut ConfigErrors) -> AuditSettings {
        let base = AuditSettings::default();
        let overflow = Overflow::parse(&self.overflow).unwrap_or_else(|| {
            errors.bad("audit.overflow", &self.overflow, "is not `drop` or `block`");
            base.overflow
        });
        errors.at_least_one("audit.capacity", self.capacity as u64);
        errors.at_least_one("audit.max_files", self.max_files as u64);
        let headers = self
            .redact_headers
            .iter()
            .cloned()
            .chain(std::iter::once(token_header.to_owned()));
        AuditSettings {
            rotation: Rotation {
                max_bytes: (self.max_file_bytes > 0).then_some(self.max_file_bytes),
                keep: self.max_files,
            },
            stdout: self.stdout,
            overflow,
            redaction: Redaction::new(self.redact_context_keys.clone(), headers)
                .with_query_params(self.redact_query.clone()),
            index: IndexLimits {
                max_entries: self.index_max_entries,
                max_age_ms: i64::try_from(self.index_max_age_secs.saturating_mul(1000))
                    .unwrap_or(i64::MAX),
            },
            store: self.store_sink(errors),
            ..base
        }
    }

    /// The store sink's settings, when `store = true`; its keys without it
    /// are a mistake worth naming.
    fn store_sink(&self, errors: &mut ConfigErrors) -> Option<StoreSinkSettings> {
        if !self.store {
            for (key, set) in [
                (
                    "audit.store_retention_days",
                    self.store_retention_days.is_some(),
                ),
                ("audit.store_chain", self.store_chain.is_some()),
                (
                    "audit.store_prune_interval_secs",
                    self.store_prune_interval_secs.is_some(),
                ),
            ] {
                if set {
                    errors.key(
                        key,
                        "is set but the store sink is off; add `store = true` to `[audit]`",
                    );
                }
            }
            return None;
        }
        let chain = self.store_chain.clone().unwrap_or_else(default_store_chain);
        let base = StoreSinkSettings::new(&chain);
        let days = self.store_retention_days.unwrap_or_else(|| {
            base.retention
                .map_or(0, |retention| retention.as_secs() / (24 * 3600))
        });
        if days > MAX_RETENTION_DAYS {
            errors.bad(
                "audit.store_retention_days",
                days,
                format!("is more than {MAX_RETENTION_DAYS}; use 0 to keep rows forever"),
            );
        }
        let every = self
            .store_prune_interval_secs
            .unwrap_or(base.prune_every.as_secs());
        errors.at_least_one("audit.store_prune_interval_secs", every);
        if chain.is_empty()
            || chain.len() > MAX_CHAIN_LEN
            || !chain.chars().all(|c| c.is_ascii_graphic())
        {
            errors.bad(
                "audit.store_chain",
                &chain,
                format!("must be 1 to {MAX_CHAIN_LEN} printable ASCII characters without spaces"),
            );
        }
        Some(StoreSinkSettings {
            chain,
            retention: (days > 0).then(|| Duration::from_secs(days.saturating_mul(24 * 3600))),
            prune_every: Duration::from_secs(every.max(1)),
        })
    }
}

pub(super) const SECTION: Section = Section {
    name: "audit",
    doc: "The audit trail (docs/audit.md): one JSON line for every decision and task\nevent, in a SHA-256 hash chain (`mandate audit verify`), read by\n`mandate policy replay`.",
    optional: false,
    keys: &[
        example(
            "file",
            "The JSON-lines audit file (default: none).",
            "\"./data/decisions.jsonl\"",
        ),
        key(
            "capacity",
            "Audit records waiting to be written; past that, `overflow` decides.",
        ),
        key("stdout", "Also write every record to stdout."),
        key(
            "overflow",
            "Full queue: \"drop\" (counted) or \"block\" (decisions wait).",
        ),
        key("max_file_bytes", "Rotate the file at this size; 0: never."),
        key("max_files", "Rotated files kept (FILE.1 the newest)."),
        key(
            "redact_context_keys",
            "Request context keys never recorded.",
        ),
        key(
            "redact_headers",
            "Headers never recorded (authorization, cookie and the token header always\nare).",
        ),
        key(
            "redact_query",
            "Query parameters never recorded (access_token, token, password, ...\nalways are).",
        ),
        key(
            "index_max_entries",
            "What AuditService can answer from; 0: off.",
        ),
        key("index_max_age_secs", "The oldest entry the index keeps."),
        key(
            "store",
            "Also write every record as a row of the store's audit_records table, in a\nhash chain per replica (`mandate audit verify --store URL`); AuditService\nthen answers from the store.",
        ),
        example(
            "store_retention_days",
            "Rows older are pruned; 0: kept forever (only with store = true).",
            "30",
        ),
        example(
            "store_chain",
            "This replica's chain (default: the host name); one per replica.",
            "\"mandate-0\"",
        ),
        example(
            "store_prune_interval_secs",
            "How often retention runs (only with store = true).",
            "3600",
        ),
    ],
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_overflow_policy_is_named() {
        let mut problems = ConfigErrors::default();
        let raw = AuditConfig {
            overflow: "wait".into(),
            ..AuditConfig::default()
        };
        raw.validate("x-mandate-token", &mut problems);
        assert!(
            problems.lines().iter().any(|p| p.contains("`wait`")),
            "{problems}"
        );
    }

    #[test]
    fn the_store_sink_is_checked() {
        let mut problems = ConfigErrors::default();
        let on = AuditConfig {
            store: true,
            store_retention_days: Some(0),
            store_chain: Some("replica a".into()),
            ..AuditConfig::default()
        }
        .validate("x-mandate-token", &mut problems);
        let store = on
            .store
            .clone()
            .unwrap_or_else(|| StoreSinkSettings::new("x"));
        assert_eq!(store.retention, None, "0 days keeps rows forever");
        assert!(
            problems.lines().iter().any(|p| p.contains("`replica a`")),
            "{problems}"
        );
        let mut problems = ConfigErrors::default();
        let off = AuditConfig {
            store_retention_days: Some(7),
            ..AuditConfig::default()
        }
        .validate("x-mandate-token", &mut problems);
        assert_eq!(off.store, None);
        assert!(
            problems
                .lines()
                .iter()
                .any(|p| p.contains("`audit.store_retention_days`") && p.contains("store = true")),
            "{problems}"
        );
        let default = AuditConfig {
            store: true,
            ..AuditConfig::default()
        }
        .validate("x-mandate-token", &mut ConfigErrors::default());
        let retention = default.store.and_then(|s| s.retention);
        assert_eq!(retention, Some(Duration::from_secs(30 * 24 * 3600)));
    }

    #[test]
    fn the_token_header_is_always_redacted() {
        let settings =
            AuditConfig::default().validate("x-mandate-token", &mut ConfigErrors::default());
        assert!(settings.redaction.headers.contains("x-mandate-token"));
        assert!(settings.redaction.headers.contains("authorization"));
    }
}
