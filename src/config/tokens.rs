//! `[tokens]` (task token lifetimes and signing key rotation) and
//! `[tasks]` (delegation depth, how long ended tasks stay in memory).

use serde::{Deserialize, Serialize};

use super::ConfigErrors;
use super::reference::{Section, key};
use crate::credential::{KeyRotation, TokenSettings};
use crate::graph::Retention;

/// The `[tokens]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokensConfig {
    /// Task token lifetime when none is asked for, seconds.
    pub ttl_secs: i64,
    /// Longest task token lifetime, seconds.
    pub max_ttl_secs: i64,
    /// Signing key rotation period, seconds.
    pub key_rotation_secs: i64,
    /// How long a retired signing key still verifies, seconds.
    pub key_overlap_secs: i64,
}

impl Default for TokensConfig {
    fn default() -> Self {
        Self {
            ttl_secs: 300,
            max_ttl_secs: 3600,
            key_rotation_secs: 24 * 3600,
            key_overlap_secs: 2 * 3600,
        }
    }
}

impl TokensConfig {
    /// The lifetimes and the rotation; a retired key must outlive every
    /// token it signed.
    pub(super) fn validate(&self, errors: &mut ConfigErrors) -> (TokenSettings, KeyRotation) {
        let tokens = TokenSettings {
            default_ttl: self.ttl_secs,
            max_ttl: self.max_ttl_secs,
            ..TokenSettings::default()
        };
        if tokens.default_ttl < 1 {
            errors.bad("tokens.ttl_secs", tokens.default_ttl, "must be at least 1");
        }
        if tokens.max_ttl < tokens.default_ttl {
            errors.bad(
                "tokens.max_ttl_secs",
                tokens.max_ttl,
                format!(
                    "must be at least `tokens.ttl_secs` ({})",
                    tokens.default_ttl
                ),
            );
        }
        let rotation = KeyRotation {
            rotate_after: self.key_rotation_secs,
            overlap: self.key_overlap_secs,
        };
        if rotation.rotate_after < 60 {
            errors.bad(
                "tokens.key_rotation_secs",
                rotation.rotate_after,
                "must be at least 60",
            );
        }
        let longest = tokens.max_ttl.saturating_add(tokens.leeway);
        if rotation.overlap < longest {
            errors.bad(
                "tokens.key_overlap_secs",
                rotation.overlap,
                format!(
                    "must be at least the longest token lifetime plus leeway ({longest}: `tokens.max_ttl_secs` + {})",
                    tokens.leeway
                ),
            );
        }
        (tokens, rotation)
    }
}

/// The `[tasks]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TasksConfig {
    /// Longest delegation chain below a root task.
    pub max_delegation_depth: u32,
    /// How long an ended task stays in memory, seconds.
    pub retention_secs: i64,
}

impl Default for TasksConfig {
    fn default() -> Self {
        Self {
            max_delegation_depth: crate::graph::DEFAULT_MAX_DEPTH,
            retention_secs: 300,
        }
    }
}

impl TasksConfig {
    /// The retention; evicted ids are remembered as long as a token for
    /// them could still verify.
    pub(super) fn validate(&self, tokens: &TokenSettings, errors: &mut ConfigErrors) -> Retention {
        errors.at_least_one(
            "tasks.max_delegation_depth",
            u64::from(self.max_delegation_depth),
        );
        if self.retention_secs < 0 {
            errors.bad(
                "tasks.retention_secs",
                self.retention_secs,
                "must be 0 or more",
            );
        }
        Retention {
            keep_ended: self.retention_secs,
            remember_evicted: tokens.max_ttl.saturating_add(tokens.leeway),
        }
    }
}

pub(super) const TOKENS: Section = Section {
    name: "tokens",
    doc: "Task tokens and the Ed25519 keys that sign them (server.data_dir/keys,\nor the store with store.key_file).",
    optional: false,
    keys: &[
        key(
            "ttl_secs",
            "A token's lifetime when the agent asks for none.",
        ),
        key(
            "max_ttl_secs",
            "The longest token lifetime (a token never outlives its task either).",
        ),
        key(
            "key_rotation_secs",
            "A signing key signs for this long, then a new one takes over.",
        ),
        key(
            "key_overlap_secs",
            "A retired key still verifies this long: at least max_ttl_secs + 30.",
        ),
    ],
};

pub(super) const TASKS: Section = Section {
    name: "tasks",
    doc: "Tasks and delegation.",
    optional: false,
    keys: &[
        key(
            "max_delegation_depth",
            "The longest delegation chain below a root task.",
        ),
        key(
            "retention_secs",
            "A task that ended (revoked, completed, expired) stays in memory this long,\nthen only the store and the audit trail hold it: GetTask answers it from\nthe store (archived), ListTasks no longer lists it, and its tokens are\ndenied task-not-active.",
        ),
    ],
};
