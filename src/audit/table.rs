//! The audit table of the store sink: what a row holds and the questions
//! the table answers. A row is one sealed line (its canonical JSON, hash
//! and link) plus columns copied from it, so `AuditService` filters in SQL;
//! the backends (`store/audit_sql.rs`) implement [`AuditTable`].

use serde_json::Value;

use super::chain::{Chain, hash};
use super::index::{DecisionFilter, Indexed};
use crate::store::StoreError;

/// One row of `audit_records`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRow {
    /// The writer's chain.
    pub chain: String,
    /// Place in the chain, from 1.
    pub seq: u64,
    /// Hash of the row before ([`super::GENESIS`] for the first).
    pub prev_hash: String,
    /// Hash of `body`.
    pub hash: String,
    /// `decision` or the event kind (`task_created`, ...).
    pub kind: String,
    /// When it happened, Unix milliseconds.
    pub time_ms: i64,
    /// The task.
    pub task_id: Option<String>,
    /// The root of its chain.
    pub root_task_id: Option<String>,
    /// The subject of a decision.
    pub subject: Option<String>,
    /// The caller of a decision, the actor of an event.
    pub caller: Option<String>,
    /// `allow`, `deny` or `needs_approval`; none for events.
    pub decision: Option<String>,
    /// Determining policies of a decision (the `audit_policies` rows).
    pub policies: Vec<String>,
    /// The canonical line.
    pub body: String,
}

impl StoredRow {
    /// The row of `line`, a line sealed by a [`Chain`] of `chain`. The
    /// same function reads the columns back for `verify`, so a column that
    /// no longer agrees with the body is found.
    pub fn of_line(chain: &str, line: &str) -> Result<Self, String> {
        let value: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
        let text = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
        let seq = value.get("seq").and_then(Value::as_u64).ok_or("no `seq`")?;
        let prev_hash = text("prev_hash").ok_or("no `prev_hash`")?;
        let event = text("event");
        let is_decision = event.is_none();
        Ok(Self {
            chain: chain.to_owned(),
            seq,
            prev_hash,
            hash: hash(&value)?,
            kind: event.unwrap_or_else(|| "decision".to_owned()),
            time_ms: value.get("time_ms").and_then(Value::as_i64).unwrap_or(0),
            task_id: text("task_id"),
            root_task_id: text("root_task_id"),
            subject: text("subject"),
            caller: if is_decision {
                text("caller")
            } else {
                text("actor")
            },
            decision: text("decision"),
            policies: value
                .get("determining_policies")
                .and_then(Value::as_array)
                .map(|list| {
                    list.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            body: line.to_owned(),
        })
    }

    /// The chain after this row.
    pub fn chain_after(&self) -> Chain {
        Chain {
            seq: self.seq,
            last_hash: self.hash.clone(),
        }
    }
}

/// Where retention cut a chain: the last row pruned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pruned {
    /// Its `seq`.
    pub seq: u64,
    /// Its hash, which the first row kept carries as `prev_hash`.
    pub hash: String,
}

/// The store's audit table. Every call is one or a few SQL statements;
/// the store sink calls them from the audit writer thread, `AuditService`
/// and `mandate audit verify` from the runtime.
#[async_trait::async_trait]
pub trait AuditTable: Send + Sync + std::fmt::Debug {
    /// Where `chain` stands: its last row, else where retention cut it,
    /// else `None` (a new chain).
    async fn head(&self, chain: &str) -> Result<Option<Chain>, StoreError>;

    /// Inserts `rows` (with their policies) in one transaction.
    /// [`StoreError::Conflict`] when a `(chain, seq)` is taken: another
    /// writer uses the same chain name, so the caller reads the head again.
    async fn insert(&self, rows: &[StoredRow]) -> Result<(), StoreError>;

    /// Deletes, chain by chain, every row up to the newest one older than
    /// `before_ms`, recording where each chain was cut, at most `batch`
    /// rows per transaction. What remains of a chain is always a whole
    /// suffix of it. Returns the rows deleted.
    async fn prune(&self, before_ms: i64, batch: u32, now_ms: i64) -> Result<u64, StoreError>;

    /// Decisions matching `filter`, oldest first, at most `limit`.
    async fn decisions(
        &self,
        filter: &DecisionFilter,
        limit: usize,
    ) -> Result<Vec<Indexed>, StoreError>;

    /// Every entry of `root_task_id`'s tree, oldest first, at most `limit`.
    async fn trail(&self, root_task_id: &str, limit: usize) -> Result<Vec<Indexed>, StoreError>;

    /// The time of the oldest row kept once retention has pruned any, else
    /// `None`: earlier questions may have incomplete answers.
    async fn window_start(&self) -> Result<Option<i64>, StoreError>;

    /// Every chain with rows or a retention cut, by name.
    async fn chains(&self) -> Result<Vec<String>, StoreError>;

    /// Where retention cut `chain`, if it did.
    async fn pruned(&self, chain: &str) -> Result<Option<Pruned>, StoreError>;

    /// Rows of `chain` after `after_seq`, in order, at most `limit`.
    async fn rows(
        &self,
        chain: &str,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<StoredRow>, StoreError>;
}

/// A row read back as an index entry (the body parsed).
pub fn indexed(row_seq: u64, body: &str) -> Result<Indexed, StoreError> {
    super::event::AuditEntry::from_line(body)
        .map(|entry| Indexed {
            seq: row_seq,
            entry: std::sync::Arc::new(entry),
        })
        .map_err(|e| StoreError::Corrupt(format!("audit row: {e}")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use crate::audit::event::{EventKind, TaskEvent};

    #[test]
    fn an_event_row_takes_its_actor_as_caller() {
        let event = TaskEvent::new(EventKind::TaskCreated, "spiffe://a/fe", "t1", "t1");
        let map = super::super::event::AuditEntry::Event(Box::new(event))
            .to_json()
            .unwrap();
        let sealed = Chain::default().seal(map).unwrap();
        let row = StoredRow::of_line("r1", &sealed.line).unwrap();
        assert_eq!(row.kind, "task_created");
        assert_eq!(row.caller.as_deref(), Some("spiffe://a/fe"));
        assert_eq!(row.decision, None);
        assert_eq!(row.chain_after(), sealed.next);
    }
}
