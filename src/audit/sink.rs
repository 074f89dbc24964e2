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
    /// A rotation failed half-way: the file keeps growing rather than
    /// have files shifted (and the oldest deleted) again.
    rotation_broken: bool,
}

impl FileSink {
    /// Opens (appends to) `path`, resuming the chain from its last line, or
    /// from the last line of `FILE.1` when the file is new.
    pub fn open(path: &Path, rotation: Rotation) -> std::io::Result<Self> {
        let torn = cut_torn_tail(path)?;
        if torn > 0 {
            // A crash mid-write left part of a line: that record was never
            // whole. Appending after it would fuse the next record to it.
            tracing::warn!(file = %path.display(), bytes = torn, "cut a torn last line (an interrupted write) from the audit file");
        }
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
        let file = append_owner_only(path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path: path.to_owned(),
            rotation,
            out: BufWriter::new(file),
            size,
            chain,
            rotation_broken: false,
        })
    }

    /// Starts a new file. The new file is made first, so when that fails
    /// nothing has moved; a failure while files are shifted stops rotation
    /// for good (until restart), since retrying would shift and delete
    /// again around a file that never moved.
    fn rotate(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        let fresh_path = rotated_name(&self.path, "new");
        let _ = std::fs::remove_file(&fresh_path);
        let fresh = append_owner_only(&fresh_path)?;
        self.rotation_broken = true;
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
        std::fs::rename(&fresh_path, &self.path)?;
        self.rotation_broken = false;
        self.out = BufWriter::new(fresh);
        self.size = 0;
        tracing::info!(file = %self.path.display(), seq = self.chain.seq, "audit file rotated");
        Ok(())
    }
}

/// Opens `path` for appending, creating it readable by its owner only:
/// decision records name agents, tasks and resources.
fn append_owner_only(path: &Path) -> std::io::Result<File> {
    std::os::unix::fs::OpenOptionsExt::mode(OpenOptions::new().create(true).append(true), 0o600)
        .open(path)
}

/// Cuts a last line that has no newline (a write interrupted by a crash)
/// from the file at `path`; returns how many bytes went.
fn cut_torn_tail(path: &Path) -> std::io::Result<u64> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    // Back from the end, a block at a time, to the last newline.
    let mut end = len;
    let mut block = [0u8; 4096];
    while end > 0 {
        let start = end.saturating_sub(block.len() as u64);
        let size = usize::try_from(end - start).unwrap_or(block.len());
        let chunk = block.get_mut(..size).unwrap_or_default();
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(at) = chunk.iter().rposition(|b| *b == b'\n') {
            end = start + at as u64 + 1;
            break;
        }
        end = start;
    }
    if end < len {
        file.set_len(end)?;
        file.sync_data()?;
    }
    Ok(len - end)
}

/// `FILE.n`.
pub fn rotated(path: &Path, n: usize) -> PathBuf {
    rotated_name(path, n)
}

fn rotated_name(path: &Path, suffix: impl std::fmt::Display) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{suffix}"));
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
        if !self.rotation_broken
            && self.rotation.max_bytes.is_some_and(|max| self.size >= max)
            && let Err(error) = self.rotate()
        {
            if self.rotation_broken {
                tracing::error!(file = %self.path.display(), %error, "audit file rotation failed half-way; rotation is off until restart and the file keeps growing");
            } else {
                tracing::error!(file = %self.path.display(), %error, "cannot rotate the audit file; it keeps growing");
            }
        }
        Ok(())
    }

    /// Writes what is buffered and syncs it to disk: the writer flushes
    /// when its queue runs empty, so an idle server's records survive a
    /// power loss, and a busy one's batch is synced as one.
    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        self.out.get_ref().sync_data()
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

    #[test]
    fn a_torn_last_line_is_cut_and_the_chain_goes_on_intact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let rotation = Rotation {
            max_bytes: None,
            keep: 1,
        };
        let mut sink = FileSink::open(&path, rotation.clone()).unwrap();
        for i in 0..3 {
            sink.append(record(i)).unwrap();
        }
        sink.flush().unwrap();
        drop(sink);
        // A crash mid-write: half a record, cut inside a multibyte
        // character, and no newline.
        let torn = b"{\"decision_id\":\"d3\",\"pad\":\"\xc3".to_vec();
        let mut bytes = std::fs::read(&path).unwrap();
        let whole = bytes.len();
        bytes.extend_from_slice(&torn);
        std::fs::write(&path, &bytes).unwrap();

        let mut sink = FileSink::open(&path, rotation).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), whole as u64);
        sink.append(record(3)).unwrap();
        sink.flush().unwrap();
        let verified = verify_files(std::slice::from_ref(&path)).unwrap();
        assert_eq!((verified.first_seq, verified.last_seq), (1, 4));
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(
                &std::fs::metadata(&path).unwrap().permissions()
            ) & 0o777,
            0o600
        );
    }
}
