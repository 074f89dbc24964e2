//! The audit trail: decision records and task lifecycle events, written off
//! the decision path through one bounded queue to any combination of sinks
//! (a JSON-lines file rotated by size, stdout; the store later), each with
//! its own hash chain, and kept in a bounded in-memory index for
//! `AuditService`. The Cedar request of each decision is kept too, so it can
//! be replayed against another policy set (`mandate policy replay`).

mod chain;
mod event;
mod index;
mod log;
mod readback;
mod record;
mod redact;
mod settings;
mod sink;
mod verify;

pub use chain::{Chain, GENESIS, Sealed};
pub use event::{AuditEntry, EVENT_VERSION, EventKind, TaskEvent, is_event_line};
pub use index::{AuditIndex, DecisionFilter, IndexLimits, Indexed};
pub use log::{DecisionLog, DecisionLogWriter, QueueStats};
pub use readback::{read_entries, sink_files};
pub use record::{CedarRequest, DecisionRecord, RECORD_VERSION, REDACTED};
pub use redact::{ALWAYS_REDACTED_HEADERS, REDACTED_ERROR, Redaction};
pub use settings::{AuditSettings, Overflow, defaults};
pub use sink::{AuditSink, FileSink, Rotation, StdoutSink, rotated};
pub use verify::{BrokenLink, Verified, verify_files};
