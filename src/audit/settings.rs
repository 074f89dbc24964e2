//! What the audit pipeline is told by the configuration: its sinks, its
//! queue and overflow policy, redaction and the query window.

use std::path::PathBuf;
use std::time::Duration;

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
    /// The window `AuditService` answers from (unless the store sink is
    /// on: then it answers from the store).
    pub index: IndexLimits,
    /// The store sink, if on.
    pub store: Option<StoreSinkSettings>,
}

/// The store sink: rows in the store's `audit_records` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSinkSettings {
    /// This writer's chain; replicas sharing a store need different ones.
    pub chain: String,
    /// Rows older than this are pruned; `None`: kept forever.
    pub retention: Option<Duration>,
    /// How often retention runs.
    pub prune_every: Duration,
}

/// The store chain's name when the host has none to give.
const FALLBACK_STORE_CHAIN: &str = "mandate";

/// The defaults of `[audit]` (`config::AuditConfig` starts from these).
impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            file: None,
            rotation: Rotation {
                max_bytes: Some(100 * 1024 * 1024),
                keep: 10,
            },
            stdout: false,
            capacity: 10_000,
            overflow: Overflow::Drop,
            redaction: Redaction::new([], []),
            index: IndexLimits {
                max_entries: 100_000,
                max_age_ms: 24 * 3600 * 1000,
            },
            store: None,
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
        self.file.is_some() || self.stdout || self.store.is_some() || self.index.max_entries > 0
    }
}

impl StoreSinkSettings {
    /// A sink writing chain `chain`, with the default retention.
    pub fn new(chain: &str) -> Self {
        Self {
            chain: chain.to_owned(),
            retention: Some(Duration::from_secs(30 * 24 * 3600)),
            prune_every: Duration::from_secs(3600),
        }
    }
}

/// The default chain name: this host's name (stable across restarts of a
/// VM or a StatefulSet pod, different per replica), else
/// `mandate`.
pub fn default_store_chain() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| FALLBACK_STORE_CHAIN.to_owned())
}
