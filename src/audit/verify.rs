//! Checking a sink's files: every line's `prev_hash` must be the hash of
//! the line before it and its `seq` one more. Several files are checked as
//! one chain, oldest first (`decisions.jsonl.2 decisions.jsonl.1
//! decisions.jsonl`); the first line of the first file may continue a
//! chain from a file not given, which is reported, not refused.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::chain::{GENESIS, hash};

/// What an intact chain holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Lines checked.
    pub lines: u64,
    /// `seq` of the first line.
    pub first_seq: u64,
    /// `seq` of the last line.
    pub last_seq: u64,
    /// `prev_hash` of the first line: [`GENESIS`] when the chain starts
    /// here, else the hash of a line in an earlier file.
    pub anchor: String,
    /// Hash of the last line, which the sink's next line will carry.
    pub last_hash: String,
}

/// The first broken link.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, miette::Diagnostic)]
#[error("{}:{line}: {problem}", file.display())]
pub struct BrokenLink {
    /// The file.
    pub file: PathBuf,
    /// Its line, from 1.
    pub line: u64,
    /// What is wrong.
    pub problem: String,
}

/// Checks `files` as one chain, oldest first.
pub fn verify_files(files: &[PathBuf]) -> Result<Verified, BrokenLink> {
    let mut state: Option<Verified> = None;
    for file in files {
        let broken = |line: u64, problem: String| BrokenLink {
            file: file.clone(),
            line,
            problem,
        };
        let reader = std::fs::File::open(file)
            .map(std::io::BufReader::new)
            .map_err(|e| broken(0, format!("cannot read: {e}")))?;
        for (n, line) in reader.lines().enumerate() {
            let number = u64::try_from(n).unwrap_or(u64::MAX).saturating_add(1);
            let line = line.map_err(|e| broken(number, format!("cannot read: {e}")))?;
            if line.trim().is_empty() {
                continue;
            }
            state = Some(check_line(state, &line).map_err(|p| broken(number, p))?);
        }
    }
    state.ok_or_else(|| BrokenLink {
        file: files.first().cloned().unwrap_or_default(),
        line: 0,
        problem: "no records".to_owned(),
    })
}

/// Checks one line against the chain so far.
fn check_line(state: Option<Verified>, line: &str) -> Result<Verified, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("not a JSON record: {e}"))?;
    let seq = value
        .get("seq")
        .and_then(Value::as_u64)
        .ok_or("no `seq`: not written by a chained sink")?;
    let prev = value
        .get("prev_hash")
        .and_then(Value::as_str)
        .ok_or("no `prev_hash`: not written by a chained sink")?
        .to_owned();
    let this = hash(&value)?;
    let Some(before) = state else {
        if prev == GENESIS && seq != 1 {
            return Err(format!("starts a chain with `seq` {seq}, not 1"));
        }
        return Ok(Verified {
            lines: 1,
            first_seq: seq,
            last_seq: seq,
            anchor: prev,
            last_hash: this,
        });
    };
    if prev != before.last_hash {
        return Err(format!(
            "`prev_hash` `{prev}` is not the hash of the line before (`{}`): that line was edited, or lines were deleted or reordered",
            before.last_hash
        ));
    }
    if seq != before.last_seq.saturating_add(1) {
        return Err(format!(
            "`seq` {seq} follows {}: lines were deleted or reordered",
            before.last_seq
        ));
    }
    Ok(Verified {
        lines: before.lines.saturating_add(1),
        last_seq: seq,
        last_hash: this,
        ..before
    })
}

/// The last non-empty line of `path`, if it exists and has one.
pub(crate) fn last_line(path: &Path) -> std::io::Result<Option<String>> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut last = None;
    for line in std::io::BufReader::new(file).lines() {
        let line = line?;
        if !line.trim().is_empty() {
            last = Some(line);
        }
    }
    Ok(last)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

    use super::*;
    use crate::audit::chain::Chain;

    fn lines(n: u64) -> Vec<String> {
        let mut chain = Chain::default();
        (1..=n)
            .map(|i| {
                let serde_json::Value::Object(map) =
                    serde_json::json!({ "decision_id": format!("d{i}") })
                else {
                    unreachable!()
                };
                let sealed = chain.seal(map).unwrap();
                chain = sealed.next;
                sealed.line
            })
            .collect()
    }

    fn check(lines: &[String]) -> Result<Verified, BrokenLink> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        verify_files(&[path]).map_err(|mut b| {
            b.file = PathBuf::new();
            b
        })
    }

    #[test]
    fn an_intact_chain_verifies() {
        let verified = check(&lines(4)).unwrap();
        assert_eq!(
            (verified.lines, verified.first_seq, verified.last_seq),
            (4, 1, 4)
        );
        assert_eq!(verified.anchor, GENESIS);
    }

    #[test]
    fn edits_deletions_and_reorders_break_the_next_link() {
        let good = lines(5);
        let mut edited = good.clone();
        edited[1] = edited[1].replace("d2", "dX");
        assert_eq!(check(&edited).unwrap_err().line, 3);
        let mut deleted = good.clone();
        deleted.remove(2);
        assert_eq!(check(&deleted).unwrap_err().line, 3);
        let mut reordered = good.clone();
        reordered.swap(1, 2);
        assert_eq!(check(&reordered).unwrap_err().line, 2);
        // Without its first line the file reads as the continuation of an
        // earlier one: the anchor says so.
        assert_ne!(check(&good[1..]).unwrap().anchor, GENESIS);
    }
}
