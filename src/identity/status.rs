//! What happened to our identity material since start: rotations, refused
//! updates, withdrawn trust domains. `/readyz` shows it and the logs say it
//! as it happens; until a metrics endpoint exists, this is where SVID expiry
//! and rotation counts are read.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::Serialize;
use spiffe::TrustDomain;
use tokio::sync::mpsc;

use super::Identity;

/// How many withdrawals `/readyz` remembers.
const WITHDRAWALS_KEPT: usize = 16;
/// Withdrawn trust domains waiting for the server to act on them; more are
/// refused (and logged), which takes hundreds of withdrawals with no server.
const EVENTS_KEPT: usize = 64;

/// Trust domains whose bundle the publisher withdrew, in order, for the
/// server to revoke their agents' tasks.
pub type WithdrawalEvents = mpsc::Receiver<TrustDomain>;

/// Shared, cheap to clone; written by the source's task and the server.
#[derive(Debug, Clone)]
pub struct IdentityStatus {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    source: &'static str,
    rotations: u64,
    last_rotation_at: Option<i64>,
    refused_updates: u64,
    last_error: Option<LastError>,
    ignored_trust_domains: Vec<String>,
    withdrawals: VecDeque<Withdrawal>,
    agent: Option<AgentReport>,
    /// INVARIANT: created with the status, before the first snapshot is
    /// published, so no withdrawal happens before there is a channel to
    /// carry it (whenever the server starts reading).
    events: Option<mpsc::Sender<TrustDomain>>,
    pending_events: Option<WithdrawalEvents>,
    withdrawal_grace: Duration,
}

/// How the connection to a SPIRE agent has fared (`workload-api` only).
#[derive(Debug, Clone, Default, Serialize)]
pub struct AgentReport {
    /// Reconnection attempts after the stream failed or ended.
    pub reconnects: u64,
    /// Errors by kind (`stream_error`, `stream_ended`, `stream_connect`,
    /// `update_rejected`, ...), as the `spiffe` crate labels them.
    pub errors: BTreeMap<&'static str, u64>,
    /// The latest error's kind and when, Unix seconds.
    pub last_error: Option<(&'static str, i64)>,
}

/// The last update that was refused, cleared by the next accepted one.
#[derive(Debug, Clone, Serialize)]
pub struct LastError {
    /// When, Unix seconds.
    pub at: i64,
    /// Why.
    pub message: String,
}

/// A trust domain whose bundle disappeared.
#[derive(Debug, Clone, Serialize)]
pub struct Withdrawal {
    /// The trust domain.
    pub trust_domain: String,
    /// When, Unix seconds.
    pub at: i64,
    /// How many tasks were revoked because of it.
    pub revoked_tasks: usize,
}

/// The `identity` object of the `/readyz` body.
#[derive(Debug, Clone, Serialize)]
pub struct IdentityReport {
    /// `files`, `dev`, `workload-api` or `static`.
    pub source: &'static str,
    /// Our SPIFFE ID.
    pub spiffe_id: String,
    /// Whether our SVID is inside its validity window now.
    pub svid_valid: bool,
    /// End of our SVID's validity, Unix seconds.
    pub svid_not_after: i64,
    /// Seconds until then (negative once expired).
    pub svid_expires_in_secs: i64,
    /// Snapshots published since the first one.
    pub rotations: u64,
    /// When the last one was, Unix seconds.
    pub last_rotation_at: Option<i64>,
    /// Updates refused (bad files, bad material from the agent).
    pub refused_updates: u64,
    /// The last refusal, while it is the latest word from the source.
    pub last_error: Option<LastError>,
    /// Trust domains we accept callers from (trusted and holding a bundle).
    pub trust_domains: Vec<String>,
    /// Trust domains whose bundle the source offers but the trust policy
    /// does not accept.
    pub ignored_trust_domains: Vec<String>,
    /// The latest trust-domain withdrawals, oldest first.
    pub withdrawals: Vec<Withdrawal>,
    /// Why the SPIRE agent withdrew our own identity, while it does.
    pub withdrawn_by_agent: Option<String>,
    /// The connection to the SPIRE agent, for the `workload-api` source.
    pub workload_api: Option<AgentReport>,
}

impl Default for IdentityStatus {
    /// The status of material handed over whole, with no source behind it.
    fn default() -> Self {
        Self::new("static")
    }
}

impl IdentityStatus {
    /// A status for a source of this kind.
    pub fn new(source: &'static str) -> Self {
        let (events, pending_events) = mpsc::channel(EVENTS_KEPT);
        Self {
            inner: Arc::new(Mutex::new(Inner {
                source,
                events: Some(events),
                pending_events: Some(pending_events),
                ..Inner::default()
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock left counters, not invariants.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new snapshot was published at `at`.
    pub fn rotated(&self, at: i64) {
        let mut inner = self.lock();
        inner.rotations += 1;
        inner.last_rotation_at = Some(at);
        inner.last_error = None;
    }

    /// An update that changed only the bundles was published.
    pub fn bundles_updated(&self) {
        self.lock().last_error = None;
    }

    /// An update was refused at `at`; the previous material stays.
    pub fn refused(&self, at: i64, message: String) {
        let mut inner = self.lock();
        inner.refused_updates += 1;
        inner.last_error = Some(LastError { at, message });
    }

    /// The trust domains the policy dropped from the latest snapshot.
    pub fn ignored(&self, trust_domains: &[TrustDomain]) {
        self.lock().ignored_trust_domains = trust_domains.iter().map(ToString::to_string).collect();
    }

    /// The publisher dropped `trust_domain`'s bundle: hands it to the
    /// server (see [`IdentityStatus::take_withdrawal_events`]).
    pub(crate) fn send_withdrawal_event(&self, trust_domain: TrustDomain) {
        let inner = self.lock();
        let Some(events) = &inner.events else { return };
        if let Err(error) = events.try_send(trust_domain) {
            tracing::error!(%error, "trust domain withdrawal not handed to the server: its agents' tasks are not revoked");
        }
    }

    /// How long a withdrawn bundle must stay away before tasks are revoked
    /// (see [`super::FollowOptions::withdrawal_grace`]).
    pub fn set_withdrawal_grace(&self, grace: Duration) {
        self.lock().withdrawal_grace = grace;
    }

    /// How long a withdrawn bundle must stay away before tasks are revoked;
    /// zero for material handed over whole.
    pub fn withdrawal_grace(&self) -> Duration {
        self.lock().withdrawal_grace
    }

    /// The withdrawn trust domains, in order, from the first snapshot on;
    /// `None` once taken (one server acts on them).
    pub fn take_withdrawal_events(&self) -> Option<WithdrawalEvents> {
        self.lock().pending_events.take()
    }

    /// A trust domain's withdrawal was acted on.
    pub fn withdrawn(&self, withdrawal: Withdrawal) {
        let mut inner = self.lock();
        if inner.withdrawals.len() == WITHDRAWALS_KEPT {
            inner.withdrawals.pop_front();
        }
        inner.withdrawals.push_back(withdrawal);
    }

    /// The connection to the agent was retried.
    pub fn agent_reconnected(&self) {
        self.lock()
            .agent
            .get_or_insert_with(AgentReport::default)
            .reconnects += 1;
    }

    /// The connection to the agent (or an update from it) failed.
    pub fn agent_error(&self, kind: &'static str, at: i64) {
        let mut inner = self.lock();
        let agent = inner.agent.get_or_insert_with(AgentReport::default);
        *agent.errors.entry(kind).or_default() += 1;
        agent.last_error = Some((kind, at));
    }

    /// The latest withdrawals acted on, oldest first.
    pub fn withdrawals(&self) -> Vec<Withdrawal> {
        self.lock().withdrawals.iter().cloned().collect()
    }

    /// The kind of source this status is about.
    pub fn source(&self) -> &'static str {
        self.lock().source
    }

    /// How many snapshots were published since the first one.
    pub fn rotations(&self) -> u64 {
        self.lock().rotations
    }

    /// The report for `identity`, the snapshot in use, at `now`.
    pub fn report(&self, identity: &Identity, now: i64) -> IdentityReport {
        let inner = self.lock();
        IdentityReport {
            source: inner.source,
            spiffe_id: identity.spiffe_id.to_string(),
            svid_valid: identity.is_valid_at(now),
            svid_not_after: identity.not_after,
            svid_expires_in_secs: identity.not_after.saturating_sub(now),
            rotations: inner.rotations,
            last_rotation_at: inner.last_rotation_at,
            refused_updates: inner.refused_updates,
            last_error: inner.last_error.clone(),
            trust_domains: identity
                .bundles
                .trust_domains()
                .iter()
                .map(ToString::to_string)
                .collect(),
            ignored_trust_domains: inner.ignored_trust_domains.clone(),
            withdrawals: inner.withdrawals.iter().cloned().collect(),
            withdrawn_by_agent: identity.withdrawn.clone(),
            workload_api: inner.agent.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_accepted_update_clears_the_last_error_but_not_the_count() {
        let status = IdentityStatus::new("files");
        status.refused(10, "bad key".to_owned());
        status.rotated(11);
        let inner = status.lock();
        assert_eq!(inner.refused_updates, 1);
        assert_eq!(inner.rotations, 1);
        assert!(inner.last_error.is_none());
    }

    #[test]
    fn only_the_latest_withdrawals_are_kept() {
        let status = IdentityStatus::default();
        for at in 0..40 {
            status.withdrawn(Withdrawal {
                trust_domain: "partner.example".to_owned(),
                at,
                revoked_tasks: 0,
            });
        }
        let inner = status.lock();
        assert_eq!(inner.withdrawals.len(), WITHDRAWALS_KEPT);
        assert_eq!(inner.withdrawals.front().map(|w| w.at), Some(24));
    }
}
