//! The store sink: audit records as rows of the store's `audit_records`
//! table, in a hash chain of this writer's own (`[audit] store_chain`), so
//! replicas sharing one PostgreSQL never interleave their chains.
//!
//! It runs on the audit writer thread like every sink, so the decision
//! path never waits for SQL. Records are kept unsealed until written:
//! each batch (at most [`BATCH`] rows, one transaction) is sealed against
//! the chain's head just before the insert, and the chain moves on only
//! when the insert commits. A store that fails therefore leaves no gap in
//! the chain; its records wait (up to the queue's capacity) and are tried
//! again with a growing pause. Past that backlog the overflow policy
//! decides: `drop` counts and drops the newest record, `block` holds the
//! writer until the store answers, so the queue and then decisions wait.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use super::chain::Chain;
use super::settings::Overflow;
use super::sink::AuditSink;
use super::stats::QueueStats;
use super::table::{AuditTable, StoredRow};
use crate::store::StoreError;

/// Most rows in one insert.
pub const BATCH: usize = 500;
/// First pause after a failed write; it doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Longest wait for one statement, so a store that hangs is a failure.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown keeps trying to write what is left.
const CLOSE_DEADLINE: Duration = Duration::from_secs(5);

/// Appends audit records to the store's table.
#[derive(Debug)]
pub struct StoreSink {
    table: Arc<dyn AuditTable>,
    name: String,
    /// Where the chain stands; `None`: read the head before writing.
    chain: Option<Chain>,
    pending: VecDeque<Map<String, Value>>,
    max_pending: usize,
    overflow: Overflow,
    runtime: tokio::runtime::Handle,
    stats: Arc<QueueStats>,
    backoff: Duration,
    retry_at: Option<Instant>,
    /// Failed writes since the last success, for the log.
    failing: u64,
}

impl StoreSink {
    /// A sink writing chain `name` to `table`, keeping at most
    /// `max_pending` records while the store fails. Call within a Tokio
    /// runtime, a multi-thread one: its handle runs the SQL from the writer
    /// thread, which a current-thread runtime drives only while its own
    /// thread waits.
    pub fn new(
        table: Arc<dyn AuditTable>,
        name: &str,
        max_pending: usize,
        overflow: Overflow,
        stats: Arc<QueueStats>,
    ) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Handle::try_current().map_err(std::io::Error::other)?;
        stats.store_enabled();
        Ok(Self {
            table,
            name: name.to_owned(),
            chain: None,
            pending: VecDeque::new(),
            max_pending: max_pending.max(1),
            overflow,
            runtime,
            stats,
            backoff: MIN_BACKOFF,
            retry_at: None,
            failing: 0,
        })
    }

    fn run<T>(
        &self,
        future: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        self.runtime.block_on(async {
            tokio::time::timeout(STATEMENT_TIMEOUT, future)
                .await
                .unwrap_or_else(|_| {
                    Err(StoreError::Unavailable(format!(
                        "no answer within {STATEMENT_TIMEOUT:?}"
                    )))
                })
        })
    }

    /// Seals and inserts the first `n` pending records.
    fn write_batch(&mut self, n: usize) -> Result<(), StoreError> {
        let mut chain = match &self.chain {
            Some(chain) => chain.clone(),
            None => self.run(self.table.head(&self.name))?.unwrap_or_default(),
        };
        let mut rows = Vec::with_capacity(n);
        for record in self.pending.iter().take(n) {
            let sealed = chain
                .seal(record.clone())
                .map_err(|e| StoreError::Corrupt(format!("cannot seal an audit record: {e}")))?;
            rows.push(StoredRow::of_line(&self.name, &sealed.line).map_err(StoreError::Corrupt)?);
            chain = sealed.next;
        }
        match self.run(self.table.insert(&rows)) {
            Ok(()) => {
                // INVARIANT: the chain moves on only once its rows are
                // committed, so the next batch links to the last row in
                // the table and a failed write leaves no gap.
                self.chain = Some(chain);
                Ok(())
            }
            Err(error) => {
                // A conflict means another writer took our place in the
                // chain (the same `store_chain` twice); either way the
                // head is read again before the next try.
                self.chain = None;
                Err(error)
            }
        }
    }

    /// Writes what is pending, batch by batch; `false` when something is
    /// left. Outside `force`, a failure pauses tries until `retry_at`.
    fn try_write(&mut self, force: bool) -> bool {
        if !force && self.retry_at.is_some_and(|at| Instant::now() < at) {
            return self.pending.is_empty();
        }
        let mut conflicts = 0;
        while !self.pending.is_empty() {
            let n = self.pending.len().min(BATCH);
            match self.write_batch(n) {
                Ok(()) => {
                    self.pending.drain(..n);
                    self.stats.store_written(n);
                    if self.failing > 0 {
                        tracing::info!(chain = %self.name, failures = self.failing, "audit store writes resumed");
                    }
                    self.failing = 0;
                    self.backoff = MIN_BACKOFF;
                    self.retry_at = None;
                }
                Err(StoreError::Conflict(seq)) if conflicts < 3 => {
                    // The head is read again and the batch sealed after it.
                    conflicts += 1;
                    tracing::warn!(chain = %self.name, seq, "another writer appends to this audit chain: is `audit.store_chain` the same on two replicas?");
                }
                Err(StoreError::Corrupt(error)) => {
                    // Not a store failure: the record itself cannot be
                    // written (it will not get better by waiting).
                    tracing::error!(chain = %self.name, %error, "audit record dropped from the store sink");
                    self.pending.pop_front();
                    self.stats.store_dropped();
                }
                Err(error) => {
                    self.failing = self.failing.saturating_add(1);
                    self.stats.store_failed();
                    if self.failing.is_power_of_two() {
                        tracing::warn!(chain = %self.name, %error, failures = self.failing, pending = self.pending.len(), "cannot write audit records to the store; retrying");
                    }
                    self.retry_at = Some(Instant::now() + self.backoff);
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                    break;
                }
            }
        }
        self.stats.store_pending(self.pending.len());
        self.pending.is_empty()
    }
}

impl AuditSink for StoreSink {
    fn name(&self) -> String {
        format!("store:{}", self.name)
    }

    fn append(&mut self, record: Map<String, Value>) -> std::io::Result<()> {
        if self.pending.len() >= self.max_pending {
            match self.overflow {
                Overflow::Drop => {
                    self.try_write(false);
                    if self.pending.len() >= self.max_pending {
                        self.stats.store_dropped();
                        return Err(std::io::Error::other(
                            "the store is failing and its backlog is full: record not stored",
                        ));
                    }
                }
                Overflow::Block => {
                    while !self.try_write(true) && self.pending.len() >= self.max_pending {
                        std::thread::sleep(self.backoff);
                    }
                }
            }
        }
        self.pending.push_back(record);
        if self.pending.len() >= BATCH {
            self.try_write(false);
        }
        self.stats.store_pending(self.pending.len());
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        // Failures are counted and retried here, not reported: the
        // records are still held.
        self.try_write(false);
        Ok(())
    }

    fn close(&mut self) -> std::io::Result<()> {
        let deadline = Instant::now() + CLOSE_DEADLINE;
        while !self.try_write(true) && Instant::now() < deadline {
            std::thread::sleep(
                self.backoff
                    .min(deadline.saturating_duration_since(Instant::now())),
            );
        }
        let lost = self.pending.len();
        if lost == 0 {
            return Ok(());
        }
        for _ in 0..lost {
            self.stats.store_dropped();
        }
        self.pending.clear();
        self.stats.store_pending(0);
        Err(std::io::Error::other(format!(
            "{lost} audit records not written to the store before shutdown"
        )))
    }

    fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }
}
