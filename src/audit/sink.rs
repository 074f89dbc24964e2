//! Where audit lines go. A sink appends records to its own hash chain and
//! writes them somewhere durable; it runs on the audit writer thread, never
//! on the decision path, so it may block. The JSON-lines file (rotated by
//! size) and stdout live here; the store sink (a table with retention) is
//! in `store_sink.rs`.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::chain::Chain;
use super::verify::last_line;

/// A destination of audit records.
pub trait AuditSink: Send {
    /// A name for logs (`file:/var/log/decisions.jsonl`, `stdout`).
    fn name(&self) -> String;

    /// Appends one record, chaining it to the sink's previous one.
    fn append(&mut self, record: Map<String, Value>) -> std::io::Result<()>;

    /// Makes what was appended durable (called when the queue runs empty,
    /// and while [`AuditSink::has_pending`] says so, every tick).
    fn flush(&mut self) -> std::io::Result<()>;

    /// The last flush, on shutdown: a sink that retries may try a little
    /// longer, then reports what it could not write.
    fn close(&mut self) -> std::io::Result<()> {
        self.flush()
    }

    /// Whether records are held for a retry, so the writer flushes again
    /// even when no new record arrives.
    fn has_pending(&self) -> bool {
        false
    }
}

/// How a file sink rotates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// Rotate once the file reaches this size; `None`: never.
    pub max_bytes: Option<u64>,
    /// Rotated files kept (`FILE.1` the newest); older ones are deleted.
    pub keep: usize,
}

/// Appends JSON lines to a file; past `max_bytes` the file is renamed
/// `FILE.1` (older ones shift to `.2`, ...) and a new one started, whose
/// first line links to the last line of `FILE.1`.
#[derive(Debug)]
pub struct FileSink {
    path: PathBuf,
    rotation: Rotation,
    out: BufWriter<File>,
    size: u64,
    chain: Chain,
}

impl FileSink {
    /// Opens (appends to) `path`, resuming the chain from its last line, or
    /// from the last line of `FILE.1` when the file is new.
    pub fn open(path: &Path, rotation: Rotation) -> std::io::Result<Self> {
        let previous = match last_line(path)? {
            Some(line) => Some(line),
            None => last_line(&rotated(path, 1))?,
        };
        let chain = match previous {
            Some(line) => Chain::after(&line).unwrap_or_else(|error| {
                // A torn last line (a crash mid-write): start a new chain
                // rather than refuse to record; `verify` shows the seam.
                tracing::warn!(file = %path.display(), %error, "last audit line unreadable: starting a new hash chain");
                Chain::default()
            }),
            None => Chain::default(),
        };
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path: path.to_owned(),
            rotation,
            out: BufWriter::new(file),
            size,
            chain,
        })
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        let keep = self.rotation.keep.max(1);
        let oldest = rotated(&self.path, keep);
        if oldest.exists() {
            std::fs::remove_file(&oldest)?;
        }
        for n in (1..keep).rev() {
            let from = rotated(&self.path, n);
            if from.exists() {
                std::fs::rename(&from, rotated(&self.path, n + 1))?;
            }
        }
        std::fs::rename(&self.path, rotated(&self.path, 1))?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.out = BufWriter::new(file);
        self.size = 0;
        tracing::info!(file = %self.path.display(), seq = self.chain.seq, "audit file rotated");
        Ok(())
    }
}

/// `FILE.n`.
pub fn rotated(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

impl AuditSink for FileSink {
    fn name(&self) -> String {
        format!("file:{}", self.path.display())
    }

    fn append(&mut self, record: Map<String, Value>) -> std::io::Result<()> {
        let sealed = self.chain.seal(record).map_err(std::io::Error::other)?;
        self.out.write_all(sealed.line.as_bytes())?;
        self.out.write_all(b"\n")?;
        // INVARIANT: the chain moves on only once the line is written, so
        // the next line links to the last line in the file; a lost line
        // shows as a broken link, never as a hidden gap.
        self.chain = sealed.next;
        let written = u64::try_from(sealed.line.len()).unwrap_or(u64::MAX);
        self.size = self.size.saturating_add(written).saturating_add(1);
        // The record is written: a rotation that fails is logged, not
        // reported, or the writer would count a written record as lost.
        // The next record tries to rotate again.
        if self.rotation.max_bytes.is_some_and(|max| self.size >= max)
            && let Err(error) = self.rotate()
        {
            tracing::error!(file = %self.path.display(), %error, "cannot rotate the audit file; it keeps growing");
        }
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Writes JSON lines to standard output (for a log collector), with a
/// chain of its own that starts anew with every process.
#[derive(Debug, Default)]
pub struct StdoutSink {
    chain: Chain,
}

impl AuditSink for StdoutSink {
    fn name(&self) -> String {
        "stdout".to_owned()
    }

    fn append(&mut self, record: Map<String, Value>) -> std::io::Result<()> {
        let sealed = self.chain.seal(record).map_err(std::io::Error::other)?;
        let mut out = std::io::stdout().lock();
        out.write_all(sealed.line.as_bytes())?;
        out.write_all(b"\n")?;
        self.chain = sealed.next;
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().lock().flush()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use crate::audit::verify::verify_files;

    fn record(i: usize) -> Map<String, Value> {
        let Value::Object(map) =
            serde_json::json!({ "decision_id": format!("d{i}"), "pad": "x".repeat(100) })
        else {
            unreachable!()
        };
        map
    }

    #[test]
    fn the_chain_continues_across_rotation_and_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let rotation = Rotation {
            max_bytes: Some(1000),
            keep: 10,
        };
        let mut sink = FileSink::open(&path, rotation.clone()).unwrap();
        for i in 0..20 {
            sink.append(record(i)).unwrap();
        }
        sink.flush().unwrap();
        drop(sink);
        // A restart goes on from the last line written.
        let mut sink = FileSink::open(&path, rotation).unwrap();
        sink.append(record(20)).unwrap();
        sink.flush().unwrap();
        let mut files: Vec<PathBuf> = (1..=10)
            .rev()
            .map(|n| rotated(&path, n))
            .filter(|p| p.exists())
            .collect();
        assert!(files.len() >= 2, "{files:?}");
        files.push(path.clone());
        let verified = verify_files(&files).unwrap();
        assert_eq!((verified.first_seq, verified.last_seq), (1, 21));
        // The newest file alone continues the chain of the one before.
        let alone = verify_files(&[path]).unwrap();
        assert_ne!(alone.anchor, crate::audit::chain::GENESIS);
    }
}
