//! The audit pipeline: decision records and task events go through one
//! bounded queue to a writer thread that completes them (the Cedar request
//! as JSON, redaction), appends them to every sink's hash chain and to the
//! query index. The decision path never touches a sink. When the queue is
//! full the overflow policy decides: `drop` counts and logs, `block` waits.
//! The writer runs on its own thread, not the async runtime, so `block`
//! cannot starve it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use super::event::{AuditEntry, TaskEvent};
use super::index::AuditIndex;
use super::record::{CedarRequest, DecisionRecord};
use super::redact::Redaction;
use super::settings::{AuditSettings, Overflow};
use super::sink::{AuditSink, FileSink, StdoutSink};
use crate::decision::Evaluated;

/// An entry waiting to be written; the Cedar request is turned into JSON
/// by the writer, off the decision path.
#[derive(Debug)]
struct Pending {
    entry: AuditEntry,
    evaluated: Option<Evaluated>,
}

/// Counters of the queue, read by `/readyz` and `/metrics`.
#[derive(Debug, Default)]
pub struct QueueStats {
    depth: AtomicU64,
    dropped: AtomicU64,
    written: AtomicU64,
}

impl QueueStats {
    /// Entries waiting now.
    pub fn depth(&self) -> u64 {
        self.depth.load(Ordering::Relaxed)
    }

    /// Entries lost: the queue was full (`drop`), or a sink could not
    /// write them.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Entries the writer has handled.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    fn drop_one(&self, why: &str) {
        let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        if dropped.is_power_of_two() {
            tracing::warn!(dropped, why, "audit records dropped");
        }
    }
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
}

/// The writer thread; [`DecisionLogWriter::finish`] flushes it.
#[derive(Debug)]
pub struct DecisionLogWriter {
    thread: std::thread::JoinHandle<()>,
}

impl DecisionLog {
    /// Opens the sinks `settings` names and starts the writer.
    pub fn start(settings: &AuditSettings) -> std::io::Result<(Self, DecisionLogWriter)> {
        let mut sinks: Vec<Box<dyn AuditSink>> = Vec::new();
        if let Some(path) = &settings.file {
            sinks.push(Box::new(FileSink::open(path, settings.rotation.clone())?));
        }
        if settings.stdout {
            sinks.push(Box::new(StdoutSink::default()));
        }
        Self::with_sinks(settings, sinks)
    }

    /// Starts the writer over `sinks` (a store-backed sink comes in here).
    pub fn with_sinks(
        settings: &AuditSettings,
        sinks: Vec<Box<dyn AuditSink>>,
    ) -> std::io::Result<(Self, DecisionLogWriter)> {
        let (sender, receiver) = sync_channel(settings.capacity.max(1));
        let stats = Arc::new(QueueStats::default());
        let index =
            (settings.index.max_entries > 0).then(|| Arc::new(AuditIndex::new(settings.index)));
        let writer = Writer {
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
            },
            DecisionLogWriter { thread },
        ))
    }

    /// Queues a decision; see [`Overflow`] for a full queue.
    pub fn record(&self, record: DecisionRecord, evaluated: Option<Evaluated>) {
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
        evaluated: Option<Evaluated>,
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
            Overflow::Block => self.sender.send(pending).map_err(|_| "writer stopped"),
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
}

impl DecisionLogWriter {
    /// Waits until every queued entry is written and flushed. Call after
    /// every [`DecisionLog`] handle is dropped.
    pub async fn finish(self) -> std::io::Result<()> {
        let thread = self.thread;
        tokio::task::spawn_blocking(move || thread.join())
            .await
            .map_err(std::io::Error::other)?
            .map_err(|_| std::io::Error::other("the audit writer panicked"))
    }
}

/// The writer thread's state.
struct Writer {
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
        while let Ok(pending) = receiver.recv() {
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
            }
        }
        self.flush();
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
