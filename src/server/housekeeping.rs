//! Housekeeping, off the decision path: tasks that ended leave memory
//! after their retention (their approvals with them), and the decision
//! path's caches drop what is past its age. Without it memory grows with
//! every task ever created.

use std::sync::Arc;
use std::time::Duration;

use crate::approval::ApprovalBook;
use crate::clock::Clock;
use crate::decision::Runner;
use crate::graph::{Retention, TaskGraph};

/// What a sweep works on.
pub(super) struct Housekeeping {
    pub graph: Arc<TaskGraph>,
    pub approvals: Arc<ApprovalBook>,
    pub runner: Arc<Runner>,
    pub retention: Retention,
    pub clock: Arc<dyn Clock>,
}

impl Housekeeping {
    /// How often to sweep: a quarter of the retention, between 1 and 30
    /// seconds, so an ended task leaves at most that much after its time.
    pub(super) fn interval(&self) -> Duration {
        let quarter = self.retention.keep_ended / 4;
        Duration::from_secs(u64::try_from(quarter.clamp(1, 30)).unwrap_or(30))
    }

    /// One sweep; returns how many tasks left memory.
    pub(super) fn sweep(&self) -> usize {
        let dropped = self.graph.evict_ended(self.retention, self.clock.now());
        if !dropped.is_empty() {
            self.approvals.forget_tasks(&dropped);
            tracing::debug!(tasks = dropped.len(), "ended tasks left memory");
        }
        self.runner.sweep_caches();
        dropped.len()
    }

    /// Sweeps every [`Housekeeping::interval`], on a blocking thread (a
    /// sweep scans the whole graph).
    pub(super) async fn run(self) {
        let this = Arc::new(self);
        let mut every = tokio::time::interval(this.interval());
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let sweep = this.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || sweep.sweep()).await {
                tracing::error!(error = %e, "housekeeping sweep failed");
            }
        }
    }
}
