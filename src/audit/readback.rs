//! Reading entries back from a file sink's files, for questions the
//! in-memory index can no longer answer (entries older than its window).
//! Files are read oldest first, so entries come in the order written; each
//! carries the `seq` of its line.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::event::AuditEntry;
use super::index::Indexed;
use super::sink::rotated;

/// The files of a sink at `path` that keeps `keep` rotated files, oldest
/// first, those that exist.
pub fn sink_files(path: &Path, keep: usize) -> Vec<PathBuf> {
    (1..=keep)
        .rev()
        .map(|n| rotated(path, n))
        .chain(std::iter::once(path.to_owned()))
        .filter(|p| p.is_file())
        .collect()
}

/// Entries of `files` that `wanted` accepts, oldest first, at most
/// `limit`. Lines that do not parse are skipped and counted in the log:
/// `mandate audit verify` is the tool that judges a file.
pub fn read_entries(
    files: &[PathBuf],
    wanted: impl Fn(&AuditEntry) -> bool,
    limit: usize,
) -> std::io::Result<Vec<Indexed>> {
    let mut found = Vec::new();
    let mut unreadable = 0u64;
    for file in files {
        let reader = std::io::BufReader::new(std::fs::File::open(file)?);
        for line in reader.lines() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let Ok(entry) = AuditEntry::from_line(&line) else {
                unreadable += 1;
                continue;
            };
            if !wanted(&entry) {
                continue;
            }
            let seq = serde_json::from_str::<serde_json::Value>(&line)
                .ok()
                .and_then(|v| v.get("seq").and_then(serde_json::Value::as_u64))
                .unwrap_or_default();
            found.push(Indexed {
                seq,
                entry: Arc::new(entry),
            });
            if found.len() >= limit {
                return Ok(found);
            }
        }
    }
    if unreadable > 0 {
        tracing::warn!(unreadable, "audit lines skipped while reading back");
    }
    Ok(found)
}
