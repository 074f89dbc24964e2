//! The decision log sink: records go through a bounded queue to a task that
//! appends them to a JSON-lines file, so the decision path never waits for
//! the disk. When the queue is full the record is dropped and counted
//! (the overflow policy is `drop`); drops are logged.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::record::{CedarRequest, DecisionRecord};
use crate::decision::Evaluated;

/// A record waiting to be written; the Cedar request is turned into JSON
/// by the writer, off the decision path.
#[derive(Debug)]
struct Pending {
    record: DecisionRecord,
    evaluated: Option<Evaluated>,
}

/// The handle the decision path records through.
#[derive(Debug, Clone)]
pub struct DecisionLog {
    sender: mpsc::Sender<Pending>,
    dropped: Arc<AtomicU64>,
}

/// The task writing the file; [`DecisionLogWriter::finish`] flushes it.
#[derive(Debug)]
pub struct DecisionLogWriter {
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl DecisionLog {
    /// Opens (appends to) `path` and starts the writer; at most `capacity`
    /// records wait in memory.
    pub async fn open(path: &Path, capacity: usize) -> std::io::Result<(Self, DecisionLogWriter)> {
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await?;
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(write(file, receiver, path.to_owned(), dropped.clone()));
        Ok((Self { sender, dropped }, DecisionLogWriter { task }))
    }

    /// Queues a record; never waits. A full queue drops it.
    pub fn record(&self, record: DecisionRecord, evaluated: Option<Evaluated>) {
        if let Err(error) = self.sender.try_send(Pending { record, evaluated }) {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                match error {
                    mpsc::error::TrySendError::Full(_) => {
                        tracing::warn!(dropped, "decision log queue full: records dropped");
                    }
                    mpsc::error::TrySendError::Closed(_) => {
                        tracing::error!(dropped, "decision log writer stopped: records dropped");
                    }
                }
            }
        }
    }

    /// Records dropped so far (queue full or not writable).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl DecisionLogWriter {
    /// Waits until every queued record is written and flushed. Call after
    /// every [`DecisionLog`] handle is dropped.
    pub async fn finish(self) -> std::io::Result<()> {
        self.task
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())))
    }
}

async fn write(
    file: tokio::fs::File,
    mut receiver: mpsc::Receiver<Pending>,
    path: PathBuf,
    dropped: Arc<AtomicU64>,
) -> std::io::Result<()> {
    let mut out = tokio::io::BufWriter::new(file);
    while let Some(pending) = receiver.recv().await {
        let mut record = pending.record;
        if let Some(evaluated) = &pending.evaluated {
            match CedarRequest::from_evaluated(evaluated) {
                Ok(cedar) => record.cedar = Some(cedar),
                Err(error) => {
                    tracing::warn!(decision_id = %record.decision_id, %error, "decision recorded without its Cedar request");
                }
            }
        }
        // A record that cannot be written is counted and logged; the
        // writer goes on, so one bad moment does not stop the log.
        let written = match serde_json::to_vec(&record) {
            Ok(mut line) => {
                line.push(b'\n');
                let mut result = out.write_all(&line).await;
                if result.is_ok() && receiver.is_empty() {
                    result = out.flush().await;
                }
                result
            }
            Err(e) => Err(std::io::Error::other(e)),
        };
        if let Err(error) = written {
            let dropped = dropped.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::error!(file = %path.display(), %error, dropped, "cannot write the decision log");
        }
    }
    out.flush().await
}
