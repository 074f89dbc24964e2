//! Replicas on PostgreSQL: follow the change log by revision, woken by
//! `LISTEN/NOTIFY`, and know when they have lost the store for too long.
//!
//! A follower catches up (reads every change after memory's revision) when
//! notified, after every reconnect (notifications sent meanwhile are lost)
//! and every `poll` anyway, which doubles as a heartbeat: each successful
//! read is contact with the store. A replica whose last contact is older
//! than `stale_after` denies everything with `state-unavailable` until a
//! catch-up succeeds again (fail closed).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use super::Journal;
use crate::store::{ChangeListener, StoreError};

/// How a replica follows the store and how long it waits for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaSettings {
    /// Without contact with the store for longer, deny everything.
    pub stale_after: Duration,
    /// Longest wait of a decision for its `min_revision`.
    pub min_revision_wait: Duration,
    /// Catch up at least this often, notified or not.
    pub poll: Duration,
}

impl Default for ReplicaSettings {
    fn default() -> Self {
        Self {
            stale_after: Duration::from_secs(5),
            min_revision_wait: Duration::from_secs(1),
            poll: Duration::from_millis(500),
        }
    }
}

#[derive(Debug)]
struct Health {
    started: Instant,
    /// Milliseconds after `started` of the last successful catch-up.
    last_contact_ms: AtomicU64,
    /// The newest revision the store was seen or announced at.
    store_revision: AtomicU64,
    /// Whether this replica has other writers to follow at all.
    following: AtomicBool,
    stale_after: Duration,
}

/// What decisions and `/readyz` know about the replica's state.
#[derive(Debug, Clone)]
pub struct ReplicaHealth(Arc<Health>);

impl ReplicaHealth {
    /// A replica that has just caught up.
    pub fn new(stale_after: Duration) -> Self {
        Self(Arc::new(Health {
            started: Instant::now(),
            last_contact_ms: AtomicU64::new(0),
            store_revision: AtomicU64::new(0),
            following: AtomicBool::new(false),
            stale_after,
        }))
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.0.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn contact(&self, store_revision: u64) {
        self.told(store_revision);
        self.0
            .last_contact_ms
            .store(self.now_ms(), Ordering::SeqCst);
    }

    /// Another writer announced `revision`.
    fn told(&self, revision: u64) {
        self.0.store_revision.fetch_max(revision, Ordering::SeqCst);
    }

    /// Time since the last successful read of the store, when following.
    pub fn since_contact(&self) -> Option<Duration> {
        if !self.0.following.load(Ordering::SeqCst) {
            return None;
        }
        let last = self.0.last_contact_ms.load(Ordering::SeqCst);
        Some(Duration::from_millis(self.now_ms().saturating_sub(last)))
    }

    /// Whether live state may be trusted: a single-writer store always; a
    /// follower while its last contact is recent.
    pub fn available(&self) -> bool {
        self.since_contact()
            .is_none_or(|since| since <= self.0.stale_after)
    }

    /// The newest revision seen in the store, minus `memory`.
    pub fn lag(&self, memory: u64) -> u64 {
        self.0
            .store_revision
            .load(Ordering::SeqCst)
            .saturating_sub(memory)
    }
}

/// A running follower; aborted when dropped.
#[derive(Debug)]
pub struct Follower(JoinHandle<()>);

impl Drop for Follower {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Follower {
    /// Starts following the store of `journal` when it has other writers
    /// (PostgreSQL); `None` for SQLite.
    pub async fn start(
        journal: Arc<Journal>,
        health: ReplicaHealth,
        settings: ReplicaSettings,
    ) -> Result<Option<Self>, StoreError> {
        let Some(listener) = journal.store().listen().await? else {
            return Ok(None);
        };
        health.0.following.store(true, Ordering::SeqCst);
        health.contact(journal.revision());
        Ok(Some(Self(tokio::spawn(follow(
            journal, health, settings, listener,
        )))))
    }
}

async fn follow(
    journal: Arc<Journal>,
    health: ReplicaHealth,
    settings: ReplicaSettings,
    mut listener: Box<dyn ChangeListener>,
) {
    let mut healthy = true;
    loop {
        // A read that never answers (a half-open connection) must not
        // stop the follower: it is an error like any other, and the
        // replica goes stale (and denies) until a catch-up succeeds.
        let caught_up = tokio::time::timeout(settings.stale_after, journal.catch_up())
            .await
            .unwrap_or_else(|_| {
                Err(StoreError::Unavailable(
                    "the store did not answer within `store_stale_after_ms`".to_owned(),
                ))
            });
        match caught_up {
            Ok(revision) => {
                health.contact(revision);
                if !healthy {
                    tracing::info!(revision, "store reachable again; caught up");
                    healthy = true;
                }
            }
            Err(e) => {
                if healthy {
                    tracing::warn!(error = %e, "cannot read the store; following again when it is back");
                    healthy = false;
                }
            }
        }
        // Whatever wakes us (a notification, a lost connection, an error
        // or the poll), the answer is the same: catch up.
        tokio::select! {
            next = listener.next() => match next {
                Ok(Some(revision)) => health.told(revision),
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "store listener failed");
                    tokio::time::sleep(settings.poll.min(Duration::from_millis(200))).await;
                }
            },
            () = tokio::time::sleep(settings.poll) => {}
        }
    }
}
