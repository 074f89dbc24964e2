//! Metrics read at scrape time from the state that already counts them.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::approval::{ApprovalBook, ApprovalFilter, ApprovalState};
use crate::audit::QueueStats;
use crate::clock::{Clock, SystemClock};
use crate::identity::{IdentityStatus, IdentityWatch};
use crate::journal::ReplicaHealth;
use crate::policy::PolicyStore;
use crate::revision::Revision;

/// What the scrape-time metrics read.
#[derive(Debug, Clone)]
pub struct Live {
    /// The policy set and its reload counters.
    pub policies: Arc<PolicyStore>,
    /// The approvals, for the pending count.
    pub approvals: Arc<ApprovalBook>,
    /// The shared state revision.
    pub revision: Arc<Revision>,
    /// The audit queue, when the pipeline runs.
    pub audit: Option<Arc<QueueStats>>,
    /// Our SVID and bundles, for the SVID's expiry.
    pub identity: IdentityWatch,
    /// Rotations and refused identity updates.
    pub identity_status: IdentityStatus,
    /// This replica's contact with the store and its lag.
    pub replica: ReplicaHealth,
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

impl Collector for Live {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        gauge(
            &mut encoder,
            "mandate_state_revision",
            "The state revision of this replica (every write to tasks, registry and approvals bumps it)",
            self.revision.current(),
        )?;
        let pending = self
            .approvals
            .list(
                &ApprovalFilter {
                    state: Some(ApprovalState::Pending),
                    ..ApprovalFilter::default()
                },
                None,
                usize::MAX,
            )
            .len();
        gauge(
            &mut encoder,
            "mandate_approvals_pending",
            "Approvals waiting for a human",
            u64::try_from(pending).unwrap_or(u64::MAX),
        )?;
        let status = self.policies.status();
        counter(
            &mut encoder,
            "mandate_policy_reloads",
            "Policy reloads that put a new set in use",
            status.reloads,
        )?;
        counter(
            &mut encoder,
            "mandate_policy_reload_failures",
            "Policy reloads refused (the set in use stayed)",
            status.failed_reloads,
        )?;
        let identity = self.identity.borrow().clone();
        let report = self.identity_status.report(&identity, SystemClock.now());
        gauge(
            &mut encoder,
            "mandate_svid_expiry_timestamp_seconds",
            "End of the validity of the SVID Mandate serves with, Unix seconds",
            u64::try_from(report.svid_not_after).unwrap_or(0),
        )?;
        counter(
            &mut encoder,
            "mandate_svid_rotations",
            "New SVIDs published since start",
            report.rotations,
        )?;
        counter(
            &mut encoder,
            "mandate_identity_refused_updates",
            "SVID or bundle updates refused (the previous material stayed)",
            report.refused_updates,
        )?;
        gauge(
            &mut encoder,
            "mandate_store_replica_lag_revisions",
            "Revisions this replica is behind the newest the store told it of",
            self.replica.lag(self.revision.current()),
        )?;
        gauge(
            &mut encoder,
            "mandate_store_available",
            "1 while this replica's state may be trusted (in contact with the store), else 0: decisions deny",
            u64::from(self.replica.available()),
        )?;
        if let Some(audit) = &self.audit {
            gauge(
                &mut encoder,
                "mandate_audit_queue_depth",
                "Audit records waiting to be written",
                audit.depth(),
            )?;
            counter(
                &mut encoder,
                "mandate_audit_dropped",
                "Audit records lost: queue full under the drop policy, or a sink failed",
                audit.dropped(),
            )?;
            counter(
                &mut encoder,
                "mandate_audit_written",
                "Audit records handled by the writer",
                audit.written(),
            )?;
            if let Some(store) = audit.store() {
                counter(
                    &mut encoder,
                    "mandate_audit_store_written",
                    "Audit rows committed to the store",
                    store.written,
                )?;
                counter(
                    &mut encoder,
                    "mandate_audit_store_failures",
                    "Failed writes of audit rows to the store (each retried; decisions are not affected)",
                    store.failures,
                )?;
                counter(
                    &mut encoder,
                    "mandate_audit_store_dropped",
                    "Audit records the store never got: its backlog was full under the drop policy, or shutdown came first",
                    store.dropped,
                )?;
                gauge(
                    &mut encoder,
                    "mandate_audit_store_pending",
                    "Audit records waiting for the store",
                    store.pending,
                )?;
                counter(
                    &mut encoder,
                    "mandate_audit_store_pruned",
                    "Audit rows deleted by retention",
                    store.pruned,
                )?;
            }
        }
        Ok(())
    }
}
