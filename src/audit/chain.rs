//! The hash chain of a sink: every line carries `seq` (1, 2, ... per sink)
//! and `prev_hash`, the SHA-256 of the previous line in its canonical form,
//! so an edited, deleted or reordered line breaks the chain at the next
//! one.
//!
//! The canonical form of a line is its JSON object serialized by RFC 8785
//! (JSON Canonicalization Scheme: sorted keys, no whitespace, ECMAScript
//! number form), the `seq` and `prev_hash` fields included. Sinks write
//! lines in that form, so the hash of a written line is the hash of its
//! bytes; a reader that re-encodes the JSON (re-indents it, reorders keys)
//! does not break the chain, a changed value does.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// `prev_hash` of the first line of a new chain.
pub const GENESIS: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

/// Where a sink's chain stands: the last line written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// `seq` of the last line; 0 before the first.
    pub seq: u64,
    /// Hash of the last line, [`GENESIS`] before the first.
    pub last_hash: String,
}

impl Default for Chain {
    fn default() -> Self {
        Self {
            seq: 0,
            last_hash: GENESIS.to_owned(),
        }
    }
}

/// A line ready to write and the chain once it is written.
#[derive(Debug)]
pub struct Sealed {
    /// The canonical line, without the newline.
    pub line: String,
    /// The chain after this line; commit it once the line is written, so
    /// a failed write does not leave a gap the next line hides.
    pub next: Chain,
}

impl Chain {
    /// The chain continuing after `line`, an earlier line of the sink (the
    /// last of the file being appended to, or of the file rotated away).
    /// A line without `seq` (written before chains) counts as 0.
    pub fn after(line: &str) -> Result<Self, String> {
        let value: Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
        Ok(Self {
            seq: value.get("seq").and_then(Value::as_u64).unwrap_or(0),
            last_hash: hash(&value)?,
        })
    }

    /// Adds `seq` and `prev_hash` to `record` and encodes it canonically.
    pub fn seal(&self, mut record: Map<String, Value>) -> Result<Sealed, String> {
        let seq = self.seq.saturating_add(1);
        record.insert("seq".to_owned(), Value::from(seq));
        record.insert(
            "prev_hash".to_owned(),
            Value::String(self.last_hash.clone()),
        );
        let line = serde_json_canonicalizer::to_string(&Value::Object(record))
            .map_err(|e| e.to_string())?;
        let last_hash = hash_canonical(&line);
        Ok(Sealed {
            line,
            next: Self { seq, last_hash },
        })
    }
}

/// `sha256:<hex>` of a JSON value's canonical form.
pub fn hash(value: &Value) -> Result<String, String> {
    serde_json_canonicalizer::to_string(value)
        .map(|canonical| hash_canonical(&canonical))
        .map_err(|e| e.to_string())
}

fn hash_canonical(canonical: &str) -> String {
    let digest = Sha256::digest(canonical.as_bytes());
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for byte in digest {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn record(n: u64) -> Map<String, Value> {
        let Value::Object(map) =
            serde_json::json!({"decision_id": format!("d{n}"), "b": 1, "a": 2})
        else {
            unreachable!()
        };
        map
    }

    #[test]
    fn each_line_links_to_the_previous_one() {
        let chain = Chain::default();
        let first = chain.seal(record(1)).unwrap();
        assert!(first.line.contains(GENESIS));
        let second = first.next.seal(record(2)).unwrap();
        assert_eq!(second.next.seq, 2);
        let value: Value = serde_json::from_str(&second.line).unwrap();
        assert_eq!(
            value.get("prev_hash").and_then(Value::as_str),
            Some(first.next.last_hash.as_str())
        );
        // Keys are sorted: the line is its own canonical form.
        assert!(first.line.starts_with(r#"{"a":2,"b":1,"#), "{}", first.line);
    }

    #[test]
    fn a_chain_resumes_after_a_written_line() {
        let first = Chain::default().seal(record(1)).unwrap();
        assert_eq!(Chain::after(&first.line).unwrap(), first.next);
        // Re-encoding the line (pretty, other key order) keeps its hash.
        let pretty =
            serde_json::to_string_pretty(&serde_json::from_str::<Value>(&first.line).unwrap())
                .unwrap();
        assert_eq!(Chain::after(&pretty).unwrap(), first.next);
    }
}
