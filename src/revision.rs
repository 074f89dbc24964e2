//! The state revision: one counter for every write to live state (tasks,
//! registry, approvals), returned by writes and reported with decisions so
//! a client can ask for a decision made at or after its own write.

use std::sync::atomic::{AtomicU64, Ordering};

/// A monotonically increasing revision shared by the live stores.
///
/// INVARIANT: a writer bumps it while still holding its own store's write
/// lock, after the change, so a reader that sees revision N and then takes
/// a read lock sees every write up to N.
#[derive(Debug, Default)]
pub struct Revision(AtomicU64);

impl Revision {
    /// A counter starting at `value`.
    pub fn starting_at(value: u64) -> Self {
        Self(AtomicU64::new(value))
    }

    /// The latest revision.
    pub fn current(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }

    /// Records one write; returns its revision.
    pub fn bump(&self) -> u64 {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Records a write the store numbered `revision` (never moves back);
    /// returns the revision now current.
    pub fn advance_to(&self, revision: u64) -> u64 {
        self.0.fetch_max(revision, Ordering::SeqCst).max(revision)
    }
}
