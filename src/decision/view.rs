//! What one decision (or one batch) reads, taken once so every step of it
//! sees the same policies, registry, trust bundles and time.

use std::sync::Arc;

use crate::identity::TrustBundles;
use crate::policy::PolicyEngine;
use crate::registry::Snapshot;

/// A consistent view of the state a decision reads. The live task graph
/// and approvals are read through the pipeline: they change under a
/// decision only by moving forward, which the revision tells.
#[derive(Debug, Clone)]
pub struct View {
    /// The revision the state was at when the view was taken.
    pub revision: u64,
    /// The policy set.
    pub engine: Arc<PolicyEngine>,
    /// The registry.
    pub registry: Arc<Snapshot>,
    /// The trust bundles forwarded certificates are verified against.
    pub bundles: Arc<TrustBundles>,
    /// The time the state is judged at, Unix seconds.
    pub now: i64,
}
