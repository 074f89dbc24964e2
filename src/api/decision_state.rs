//! The state the control-plane services (tasks, registry, approvals,
//! policies, audit) share. The decision path itself is
//! [`crate::decision::Runner`].

use std::sync::Arc;

use crate::approval::ApprovalBook;
use crate::audit::DecisionLog;
use crate::clock::Clock;
use crate::credential::TaskTokens;
use crate::decision::Evaluator;
use crate::graph::TaskGraph;
use crate::identity::IdentityWatch;
use crate::policy::PolicyStore;
use crate::registry::Registry;
use crate::revision::Revision;

/// What the control-plane services read and write through.
#[derive(Debug)]
pub struct DecisionState {
    /// The policy set in use, swapped whole on reload.
    pub policies: Arc<PolicyStore>,
    /// Cedar, shared with the decision path.
    pub evaluator: Arc<Evaluator>,
    /// Our identity, for the trust bundles that verify subject certificates.
    pub identity: IdentityWatch,
    /// The live task graph.
    pub graph: Arc<TaskGraph>,
    /// Agents, workloads, users, groups and resources.
    pub registry: Arc<Registry>,
    /// Human approvals.
    pub approvals: Arc<ApprovalBook>,
    /// The revision every live store bumps.
    pub revision: Arc<Revision>,
    /// Task token verification.
    pub tokens: Arc<TaskTokens>,
    /// The clock of the decision path.
    pub clock: Arc<dyn Clock>,
    /// Where decision records go, when configured.
    pub decision_log: Option<DecisionLog>,
    /// Prometheus metrics, when served.
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
    /// The durable store: writes go through it; decisions only ask it
    /// whether this replica's state is current.
    pub store: crate::store::StoreHandle,
}
