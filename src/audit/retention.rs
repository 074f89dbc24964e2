//! Retention of the store sink: rows older than `store_retention_days` are
//! deleted periodically, by a task of their own, never on the decision
//! path or the audit writer. Each chain is cut after its newest row older
//! than the limit and the cut (that row's seq and hash) is recorded, so
//! what remains of a chain is a whole suffix that still verifies, and its
//! first row must link to the cut.

use std::sync::Arc;
use std::time::Duration;

use super::stats::QueueStats;
use super::table::AuditTable;
use crate::store::StoreError;

/// Most rows deleted in one transaction, so pruning a large backlog never
/// holds the store's write lock for long.
pub const PRUNE_BATCH: u32 = 10_000;

/// Deletes the rows older than `retention` at `now_ms`; the rows deleted.
pub async fn prune_once(
    table: &dyn AuditTable,
    retention: Duration,
    now_ms: i64,
) -> Result<u64, StoreError> {
    let age = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    table
        .prune(now_ms.saturating_sub(age), PRUNE_BATCH, now_ms)
        .await
}

/// Prunes at start and then every `every`, until the task is aborted.
/// Several replicas may prune the same store: the deletes are idempotent.
pub async fn prune_every(
    table: Arc<dyn AuditTable>,
    retention: Duration,
    every: Duration,
    stats: Arc<QueueStats>,
) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match prune_once(table.as_ref(), retention, super::event::unix_ms()).await {
            Ok(0) => {}
            Ok(rows) => {
                stats.store_pruned(rows);
                tracing::info!(rows, "audit rows past retention pruned");
            }
            Err(error) => tracing::warn!(%error, "cannot prune the audit table; retrying later"),
        }
    }
}
