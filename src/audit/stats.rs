//! The audit queue's counters, read by `/readyz` and `/metrics` and kept
//! by the writer and the store sink.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Counters of the queue, read by `/readyz` and `/metrics`.
#[derive(Debug, Default)]
pub struct QueueStats {
    pub(super) depth: AtomicU64,
    dropped: AtomicU64,
    pub(super) written: AtomicU64,
    store: StoreStats,
}

/// Counters of the store sink.
#[derive(Debug, Default)]
struct StoreStats {
    enabled: AtomicBool,
    written: AtomicU64,
    failures: AtomicU64,
    dropped: AtomicU64,
    pending: AtomicU64,
    pruned: AtomicU64,
}

/// A snapshot of the store sink's counters, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreSinkCounts {
    /// Rows committed.
    pub written: u64,
    /// Writes that failed (each is retried).
    pub failures: u64,
    /// Records the store never got: its backlog was full under `drop`,
    /// or shutdown came before the store answered.
    pub dropped: u64,
    /// Records waiting for the store now.
    pub pending: u64,
    /// Rows deleted by retention.
    pub pruned: u64,
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

    /// The store sink's counters, when it runs.
    pub fn store(&self) -> Option<StoreSinkCounts> {
        let s = &self.store;
        s.enabled.load(Ordering::Relaxed).then(|| StoreSinkCounts {
            written: s.written.load(Ordering::Relaxed),
            failures: s.failures.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
            pending: s.pending.load(Ordering::Relaxed),
            pruned: s.pruned.load(Ordering::Relaxed),
        })
    }

    pub(super) fn store_enabled(&self) {
        self.store.enabled.store(true, Ordering::Relaxed);
    }

    pub(super) fn store_written(&self, n: usize) {
        let n = u64::try_from(n).unwrap_or(u64::MAX);
        self.store.written.fetch_add(n, Ordering::Relaxed);
    }

    pub(super) fn store_failed(&self) {
        self.store.failures.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn store_dropped(&self) {
        self.store.dropped.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn store_pending(&self, n: usize) {
        let n = u64::try_from(n).unwrap_or(u64::MAX);
        self.store.pending.store(n, Ordering::Relaxed);
    }

    /// Counts rows retention deleted.
    pub fn store_pruned(&self, n: u64) {
        self.store.pruned.fetch_add(n, Ordering::Relaxed);
    }

    pub(super) fn drop_one(&self, why: &str) {
        let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        if dropped.is_power_of_two() {
            tracing::warn!(dropped, why, "audit records dropped");
        }
    }
}
