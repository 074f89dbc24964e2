//! The audit trail: decision records and task lifecycle events, written off
//! the decision path through one bounded queue to any combination of sinks
//! (a JSON-lines file rotated by size, stdout, the store's `audit_records`
//! table with retention), each with its own hash chain, and kept in a
//! bounded in-memory index; `AuditService` answers from the store when its
//! sink is on, else from the index and the file. The Cedar request of each decision is kept too, so it can
//! be replayed against another policy set (`mandate policy replay`).

mod chain;
mod event;
mod index;
mod log;
mod readback;
mod record;
mod redact;
mod retention;
mod settings;
mod sink;
mod stats;
mod store_sink;
mod store_verify;
mod table;
mod verify;

pub use chain::{Chain, GENESIS, Sealed};
pub(crate) use event::unix_ms;
pub use event::{AuditEntry, EVENT_VERSION, EventKind, TaskEvent, is_event_line};
pub use index::{AuditIndex, DecisionFilter, IndexLimits, Indexed};
pub use log::{DecisionLog, DecisionLogWriter};
pub use readback::{read_entries, sink_files};
pub use record::{CedarRequest, DecisionRecord, HistoryRecord, RECORD_VERSION, REDACTED};
pub use redact::{ALWAYS_REDACTED_HEADERS, REDACTED_ERROR, Redaction};
pub use retention::{PRUNE_BATCH, prune_every, prune_once};
pub use settings::{AuditSettings, Overflow, StoreSinkSettings, default_store_chain};
pub use sink::{AuditSink, FileSink, Rotation, StdoutSink, rotated};
pub use stats::{QueueStats, StoreSinkCounts};
pub use store_sink::{BATCH, StoreSink};
pub use store_verify::{BrokenRow, VerifiedChain, verify_table};
pub use table::{AuditTable, Pruned, StoredRow, indexed};
pub use verify::{BrokenLink, Verified, verify_files};
