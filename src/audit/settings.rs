//! What the audit pipeline is told by the configuration: its sinks, its
//! queue and overflow policy, redaction and the query window.

use std::path::PathBuf;

use super::index::IndexLimits;
use super::redact::Redaction;
use super::sink::Rotation;

/// What happens to a record when the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    /// The record is dropped and counted (`mandate_audit_dropped_total`,
    /// a warning at every power of two); the decision never waits.
    #[default]
    Drop,
    /// The decision waits for room: nothing is lost, and a slow sink slows
    /// decisions down.
    Block,
}

impl Overflow {
    /// `drop` or `block`.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "drop" => Some(Self::Drop),
            "block" => Some(Self::Block),
            _ => None,
        }
    }

    /// The configuration name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Drop => "drop",
            Self::Block => "block",
        }
    }
}

/// The audit pipeline's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSettings {
    /// The JSON-lines file sink, if any.
    pub file: Option<PathBuf>,
    /// How the file rotates.
    pub rotation: Rotation,
    /// Also write every record to standard output.
    pub stdout: bool,
    /// Records waiting to be written at most.
    pub capacity: usize,
    /// What a full queue does.
    pub overflow: Overflow,
    /// What records never hold.
    pub redaction: Redaction,
    /// The window `AuditService` answers from.
    pub index: IndexLimits,
}

/// Defaults, in one place (`config::defaults` refers to these).
pub mod defaults {
    /// Records waiting to be written.
    pub const CAPACITY: usize = 10_000;
    /// File size that triggers a rotation, bytes (100 MiB).
    pub const MAX_FILE_BYTES: u64 = 100 * 1024 * 1024;
    /// Rotated files kept.
    pub const MAX_FILES: usize = 10;
    /// Entries the query index keeps.
    pub const INDEX_MAX_ENTRIES: usize = 100_000;
    /// Oldest entry the query index keeps, seconds.
    pub const INDEX_MAX_AGE_SECS: u64 = 24 * 3600;
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            file: None,
            rotation: Rotation {
                max_bytes: Some(defaults::MAX_FILE_BYTES),
                keep: defaults::MAX_FILES,
            },
            stdout: false,
            capacity: defaults::CAPACITY,
            overflow: Overflow::Drop,
            redaction: Redaction::new([], []),
            index: IndexLimits {
                max_entries: defaults::INDEX_MAX_ENTRIES,
                max_age_ms: i64::try_from(defaults::INDEX_MAX_AGE_SECS * 1000).unwrap_or(i64::MAX),
            },
        }
    }
}

impl AuditSettings {
    /// No sinks and no index: nothing is recorded (benchmarks of the bare
    /// decision path).
    pub fn off() -> Self {
        Self {
            index: IndexLimits {
                max_entries: 0,
                max_age_ms: 0,
            },
            ..Self::default()
        }
    }

    /// Whether any record needs the pipeline: a sink or the index.
    pub fn enabled(&self) -> bool {
        self.file.is_some() || self.stdout || self.index.max_entries > 0
    }
}
