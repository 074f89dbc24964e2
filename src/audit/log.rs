//! The audit pipeline: decision records and task events go through one
//! bounded queue to a writer thread that completes them (the Cedar request
//! as JSON, redaction), appends them to every sink's hash chain and to the
//! query index. The decision path never touches a sink. When the queue is
//! full the overflow policy decides: `drop` counts and logs, `block` waits.
//! The writer runs on its own thread, not the async runtime, so `block`
//! cannot starve it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::time::Duration;

use super::event::{AuditEntry, TaskEvent};
use super::index::AuditIndex;
use super::record::{CedarRequest, DecisionRecord};
use super::redact::Redaction;
use super::settings::{AuditSettings, Overflow};
use super::sink::{AuditSink, FileSink, StdoutSink};
use super::stats::QueueStats;
use super::store_sink::StoreSink;
use super::table::AuditTable;
use crate::policy::Evaluated;

/// An entry waiting to be written; the Cedar request is turned into JSON
/// by the writer, off the decision path.
#[derive(Debug)]
struct Pending {
    entry: AuditEntry,
    evaluated: Option<std::sync::Arc<Evaluated>>,
}

/// The handle decisions and lifecycle events are recorded through.
#[derive(Debug, Clone)]
pub struct DecisionLog {
    sender: SyncSender<Pending>,
    overflow: Overflow,
    stats: Arc<QueueStats>,
    index: Option<Arc<AuditIndex>>,
    /// The file sink's path and rotated files kept, for reading back.
    file: Option<(std::path::PathBuf, usize)>,
    /// What records never hold, for what must be done before queueing.
    redaction: Arc<Redaction>,
    /// The store sink's table, which `AuditService` then answers from.
    table: Option<Arc<dyn AuditTable>>,
}

/// The writer thread; [`DecisionLogWriter::finish`] flushes it.
#[derive(Debug)]
pub struct DecisionLogWriter {
    thread: std::thread::JoinHandle<()>,
    /// Tells the writer to end once its queue is empty, even while some
    /// task still holds a [`DecisionLog`] handle.
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl DecisionLog {
    /// Opens the sinks `settings` names and starts the writer; the store
    /// sink writes to `table` (the store's), which it needs when on. Call
    /// within a Tokio runtime when the store sink is on.
    pub fn start(
        settings: &AuditSettings,
        table: Option<Arc<dyn AuditTable>>,
    ) -> std::io::Result<(Self, DecisionLogWriter)> {
        let stats = Arc::new(QueueStats::default());
        let mut sinks: Vec<Box<dyn AuditSink>> = Vec::new();
        if let Some(path) = &settings.file {
            sinks.push(Box::new(FileSink::open(path, settings.rotation.clone())?));
        }
        if settings.stdout {
            sinks.push(Box::new(StdoutSink::default()));
        }
        let table = match (&settings.store, table) {
            (Some(store), Some(table)) => {
                sinks.push(Box::new(StoreSink::new(
                    table.clone(),
                    &store.chain,
                    settings.capacity,
                    settings.overflow,
                    stats.clone(),
                )?));
                Some(table)
            }
            (Some(_), None) => {
                return Err(std::io::Error::other(
                    "the audit store sink is on but no store was given",
                ));
            }
            (None, _) => None,
        };
        Self::spawn(settings, sinks, stats, table)
    }

    /// Starts the writer over `sinks`.
    pub fn with_sinks(
        settings: &AuditSettings,
        sinks: Vec<Box<dyn AuditSink>>,
    ) -> std::io::Result<(Self, DecisionLogWriter)> {
        Self::spawn(settings, sinks, Arc::default(), None)
    }

    fn spawn(
        settings: &AuditSettings,
        sinks: Vec<Box<dyn AuditSink>>,
        stats: Arc<QueueStats>,
        table: Option<Arc<dyn AuditTable>>,
    ) -> std::io::Result<(Self, DecisionLogWriter)> {
        let (sender, receiver) = sync_channel(settings.capacity.max(1));
        let index =
            (settings.index.max_entries > 0).then(|| Arc::new(AuditIndex::new(settings.index)));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = Writer {
            stop: stop.clone(),
            sinks,
            index: index.clone(),
            redaction: settings.redaction.clone(),
            stats: stats.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("mandate-audit".to_owned())
            .spawn(move || writer.run(receiver))?;
        Ok((
            Self {
                sender,
                overflow: settings.overflow,
                stats,
                index,
                file: settings
                    .file
                    .clone()
                    .map(|path| (path, settings.rotation.keep)),
                redaction: Arc::new(settings.redaction.clone()),
                table,
            },
            DecisionLogWriter { thread, stop },
        ))
    }

    /// Queues a decision; see [`Overflow`] for a full queue.
    pub fn record(&self, record: DecisionRecord, evaluated: Option<std::sync::Arc<Evaluated>>) {
        self.send(Pending {
            entry: AuditEntry::Decision(Box::new(record)),
            evaluated,
        });
    }

    /// Queues the decision on a request whose caller context held
    /// `context_keys`: errors that may quote a redacted value are replaced
    /// first (see [`Redaction::scrub_errors`]).
    pub fn record_request<'a>(
        &self,
        mut record: DecisionRecord,
        evaluated: Option<std::sync::Arc<Evaluated>>,
        context_keys: impl IntoIterator<Item = &'a str>,
    ) {
        self.redaction
            .scrub_errors(&mut record.errors, context_keys);
        self.record(record, evaluated);
    }

    /// Queues a task lifecycle event, in order with the decisions.
    pub fn event(&self, event: TaskEvent) {
        self.send(Pending {
            entry: AuditEntry::Event(Box::new(event)),
            evaluated: None,
        });
    }

    fn send(&self, pending: Pending) {
        // INVARIANT: `depth` counts an entry before it can be received and
        // the writer uncounts it after, so the depth never wraps below zero
        // and "0" means the queue is empty (the writer flushes then).
        self.stats.depth.fetch_add(1, Ordering::Relaxed);
        let sent = match self.overflow {
            Overflow::Block => match self.sender.try_send(pending) {
                Ok(()) => Ok(()),
                Err(TrySendError::Full(pending)) => wait_for_room(&self.sender, pending),
                Err(TrySendError::Disconnected(_)) => Err("writer stopped"),
            },
            Overflow::Drop => self.sender.try_send(pending).map_err(|e| match e {
                TrySendError::Full(_) => "queue full",
                TrySendError::Disconnected(_) => "writer stopped",
            }),
        };
        if let Err(why) = sent {
            self.stats.depth.fetch_sub(1, Ordering::Relaxed);
            self.stats.drop_one(why);
        }
    }

    /// Records dropped so far (queue full or not writable).
    pub fn dropped(&self) -> u64 {
        self.stats.dropped()
    }

    /// The queue's counters.
    pub fn stats(&self) -> Arc<QueueStats> {
        self.stats.clone()
    }

    /// The file sink's files, oldest first (none without a file sink).
    pub fn files(&self) -> Vec<std::path::PathBuf> {
        self.file
            .as_ref()
            .map(|(path, keep)| super::readback::sink_files(path, *keep))
            .unwrap_or_default()
    }

    /// The query index, unless turned off.
    pub fn index(&self) -> Option<Arc<AuditIndex>> {
        self.index.clone()
    }

    /// The store sink's table, when the store sink is on.
    pub fn table(&self) -> Option<Arc<dyn AuditTable>> {
        self.table.clone()
    }
}

/// Sends into a full queue, waiting for room. On a worker of a
/// multi-thread Tokio runtime (the decision path), the wait is announced
/// with `block_in_place`, so the worker's other tasks (health checks,
/// `/metrics`, calls that need no record) move to another thread instead
/// of stalling behind a slow sink.
fn wait_for_room(sender: &SyncSender<Pending>, pending: Pending) -> Result<(), &'static str> {
    let send = || sender.send(pending).map_err(|_| "writer stopped");
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) if runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(send)
        }
        _ => send(),
    }
}

impl DecisionLogWriter {
    /// Waits until every queued entry is written and flushed, then ends
    /// the writer. Entries queued later (by a handle some task still
    /// holds) are refused and counted as dropped.
    pub async fn finish(self) -> std::io::Result<()> {
        self.stop.store(true, Ordering::SeqCst);
        let thread = self.thread;
        tokio::task::spawn_blocking(move || thread.join())
            .await
            .map_err(std::io::Error::other)?
            .map_err(|_| std::io::Error::other("the audit writer panicked"))
    }
}

/// How often the writer wakes without records, to retry held ones.
const TICK: Duration = Duration::from_millis(250);
/// How long the writer lets records gather once it has written all it
/// had. Waiting on the queue at once would make every decision wake it
/// (a futex call on the decision path, a sixth of the server's cycles
/// at 30,000 decisions/s in the load profile); pausing first, it wakes at
/// most about a thousand times a second. A record reaches the sinks and
/// the index that much later.
const GATHER: Duration = Duration::from_millis(1);

/// The writer thread's state.
struct Writer {
    stop: Arc<std::sync::atomic::AtomicBool>,
    sinks: Vec<Box<dyn AuditSink>>,
    index: Option<Arc<AuditIndex>>,
    redaction: Redaction,
    stats: Arc<QueueStats>,
}

impl Writer {
    // INVARIANT: one thread appends to every sink in queue order, so each
    // sink's chain (and the index) sees entries in the order they were
    // recorded, and a task's trail reads in the order things happened.
    fn run(mut self, receiver: Receiver<Pending>) {
        loop {
            let pending = match receiver.recv_timeout(TICK) {
                Ok(pending) => pending,
                Err(RecvTimeoutError::Timeout) => {
                    if self.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    // A sink holding records for a retry gets one even
                    // when nothing new comes.
                    if self.sinks.iter().any(|s| s.has_pending()) {
                        self.flush();
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            self.stats.depth.fetch_sub(1, Ordering::Relaxed);
            let entry = Arc::new(self.complete(pending));
            if !self.sinks.is_empty() {
                self.append(&entry);
            }
            if let Some(index) = &self.index {
                index.push(entry);
            }
            self.stats.written.fetch_add(1, Ordering::Relaxed);
            if self.stats.depth() == 0 {
                self.flush();
                std::thread::sleep(GATHER);
            }
        }
        for sink in &mut self.sinks {
            if let Err(error) = sink.close() {
                tracing::error!(sink = %sink.name(), %error, "audit sink not flushed at shutdown");
            }
        }
    }

    /// The entry as recorded: with its Cedar request (for replay) when a
    /// sink keeps it, redacted.
    fn complete(&self, pending: Pending) -> AuditEntry {
        let mut entry = pending.entry;
        if let (AuditEntry::Decision(record), Some(evaluated), false) =
            (&mut entry, &pending.evaluated, self.sinks.is_empty())
        {
            match CedarRequest::from_evaluated(evaluated) {
                Ok(mut cedar) => {
                    self.redaction.apply(&mut cedar);
                    record.cedar = Some(cedar);
                }
                Err(error) => {
                    tracing::warn!(decision_id = %record.decision_id, %error, "decision recorded without its Cedar request");
                }
            }
        }
        entry
    }

    fn append(&mut self, entry: &AuditEntry) {
        let json = match entry.to_json() {
            Ok(json) => json,
            Err(error) => {
                tracing::error!(%error, "audit entry not serializable");
                self.stats.drop_one("not serializable");
                return;
            }
        };
        // A record one sink cannot write is counted and logged; the writer
        // goes on, so one bad moment does not stop the log.
        for sink in &mut self.sinks {
            if let Err(error) = sink.append(json.clone()) {
                tracing::error!(sink = %sink.name(), %error, "cannot write an audit record");
                self.stats.drop_one("sink failed");
            }
        }
    }

    fn flush(&mut self) {
        for sink in &mut self.sinks {
            if let Err(error) = sink.flush() {
                tracing::error!(sink = %sink.name(), %error, "cannot flush the audit sink");
            }
        }
    }
}
