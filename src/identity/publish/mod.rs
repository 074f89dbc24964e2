//! The one way a snapshot reaches the TLS layer: every source hands its
//! candidates to a [`Publisher`], which applies the trust policy and
//! validates before it swaps, so a bad file or a bad response from the agent
//! never replaces good material.

use std::sync::Arc;

use rustls_pki_types::UnixTime;
use spiffe::TrustDomain;
use tokio::sync::watch;

use super::{Identity, IdentityError, IdentityStatus, IdentityWatch, TrustPolicy, Usage};
use crate::clock::Clock;

/// The sending side of an [`IdentityWatch`], owned by a source's task.
///
/// INVARIANT: the channel only ever holds snapshots that passed
/// [`prepare`]: inside their validity, with a chain our own trust domain's
/// bundle verifies, a key that matches, filtered by the trust policy; and
/// every one after the first names the same SPIFFE ID as the first.
#[derive(Debug)]
pub(crate) struct Publisher {
    sender: watch::Sender<Arc<Identity>>,
    trust: TrustPolicy,
    status: IdentityStatus,
    clock: Arc<dyn Clock>,
    /// Trust domains the policy dropped from the current snapshot, so a
    /// change is logged once rather than at every rotation.
    ignored: Vec<TrustDomain>,
}

/// What became of an offered candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Offered {
    /// Published: a new SVID, new bundles, or material the agent issues
    /// again after withdrawing it.
    Published,
    /// The same material as the current snapshot: nothing to publish.
    Unchanged,
    /// Refused; `retry` when the same material may pass later (an SVID
    /// not valid yet, as csi-driver-spiffe issues with `notBefore` = now).
    Refused {
        /// Whether offering the same material again may succeed.
        retry: bool,
    },
}

impl Publisher {
    /// Checks the first snapshot: a source that cannot produce a valid one
    /// does not start.
    pub(crate) fn start(
        first: Identity,
        trust: TrustPolicy,
        status: IdentityStatus,
        clock: Arc<dyn Clock>,
    ) -> Result<(Self, IdentityWatch), IdentityError> {
        let (first, ignored) = prepare(first, &trust, clock.now())?;
        let own = first.trust_domain().clone();
        if !trust.allows(&own, &own) {
            // Allowed on purpose: a Mandate alone in its trust domain may
            // serve only federated callers. Our SVID is still checked
            // against our own bundle in `prepare`.
            tracing::warn!(trust_domain = %own, "our own trust domain is not in `trusted_trust_domains`: callers from it are refused");
        }
        log_ignored(&ignored);
        status.ignored(&ignored);
        tracing::info!(
            source = status.source(),
            spiffe_id = %first.spiffe_id,
            not_after = first.not_after,
            trust_domains = ?first.bundles.trust_domains(),
            "identity ready"
        );
        let (sender, receiver) = watch::channel(Arc::new(first));
        Ok((
            Self {
                sender,
                trust,
                status,
                clock,
                ignored,
            },
            receiver,
        ))
    }

    /// Publishes `candidate` if it is valid and differs from the current
    /// snapshot; otherwise logs and records why and keeps the current one.
    pub(crate) fn offer(&mut self, candidate: Result<Identity, IdentityError>) -> Offered {
        let now = self.clock.now();
        let previous = self.sender.borrow().clone();
        let prepared = candidate
            .and_then(|c| same_spiffe_id(&previous, c))
            .and_then(|c| prepare(c, &self.trust, now));
        let (identity, ignored) = match prepared {
            Ok(prepared) => prepared,
            Err(error) => {
                let retry = matches!(error, IdentityError::NotValidNow { not_before, .. } if not_before > now);
                tracing::error!(%error, retry, "identity update refused; keeping the previous material");
                self.status.refused(now, error.to_string());
                return Offered::Refused { retry };
            }
        };
        let reissued = previous.withdrawn.is_some();
        let same_svid = previous.chain == identity.chain
            && previous.key.secret_der() == identity.key.secret_der();
        if !reissued && same_svid && previous.bundles == identity.bundles {
            tracing::debug!(spiffe_id = %identity.spiffe_id, "identity update unchanged");
            return Offered::Unchanged;
        }
        self.log_bundle_changes(&previous, &identity);
        if ignored != self.ignored {
            log_ignored(&ignored);
            self.status.ignored(&ignored);
            self.ignored = ignored;
        }
        if same_svid {
            self.status.bundles_updated();
            tracing::info!(spiffe_id = %identity.spiffe_id, reissued, trust_domains = ?identity.bundles.trust_domains(), "trust bundles updated; new handshakes use them");
        } else {
            self.status.rotated(now);
            tracing::info!(
                spiffe_id = %identity.spiffe_id,
                not_after = identity.not_after,
                expires_in_secs = identity.not_after.saturating_sub(now),
                rotations = self.status.rotations(),
                reissued,
                "identity rotated; new handshakes use it"
            );
        }
        self.sender.send_replace(Arc::new(identity));
        Offered::Published
    }

    /// Logs added bundles and hands withdrawn ones to the server, which
    /// logs them with what it did about them.
    fn log_bundle_changes(&self, previous: &Identity, next: &Identity) {
        let before = previous.bundles.trust_domains();
        let after = next.bundles.trust_domains();
        for td in after.iter().filter(|td| !before.contains(td)) {
            tracing::info!(trust_domain = %td, "trust domain bundle added");
        }
        for td in before.into_iter().filter(|td| !after.contains(td)) {
            self.status.send_withdrawal_event(td.clone());
        }
    }

    /// Marks the current material as withdrawn by the agent: it stays for
    /// open connections, but health and readiness report that nothing
    /// should send us work until the agent issues an identity again.
    pub(crate) fn withdraw(&mut self, reason: String) {
        let current = self.sender.borrow().clone();
        if current.withdrawn.as_ref() == Some(&reason) {
            return;
        }
        tracing::error!(spiffe_id = %current.spiffe_id, %reason, "the SPIRE agent withdrew our identity (is Mandate's registration entry deleted?): health NOT_SERVING until it issues one again");
        self.status.refused(
            self.clock.now(),
            format!("identity withdrawn by the agent: {reason}"),
        );
        self.sender
            .send_replace(Arc::new(current.withdrawn(reason)));
    }

    /// Resolves once nobody reads the snapshots any more, so a source's
    /// task ends with the server that used it.
    pub(crate) async fn closed(&self) {
        self.sender.closed().await;
    }
}

fn log_ignored(ignored: &[TrustDomain]) {
    if !ignored.is_empty() {
        tracing::info!(trust_domains = ?ignored, "bundles offered for trust domains not in `trusted_trust_domains` are ignored");
    }
}

/// Refuses a candidate for another SPIFFE ID than the current one: task
/// tokens were issued with ours as issuer and audience, and clients pin it.
fn same_spiffe_id(current: &Identity, candidate: Identity) -> Result<Identity, IdentityError> {
    if candidate.spiffe_id == current.spiffe_id {
        Ok(candidate)
    } else {
        Err(IdentityError::SpiffeIdChanged {
            current: current.spiffe_id.to_string(),
            offered: candidate.spiffe_id.to_string(),
        })
    }
}

/// Checks a candidate can be served at `now` and applies the trust policy:
/// inside its validity window, verifying against our own trust domain's
/// bundle (whether or not the policy accepts callers from it), and a key
/// that matches the certificate.
fn prepare(
    identity: Identity,
    trust: &TrustPolicy,
    now: i64,
) -> Result<(Identity, Vec<TrustDomain>), IdentityError> {
    if !identity.is_within_validity(now) {
        return Err(IdentityError::NotValidNow {
            id: identity.spiffe_id.to_string(),
            not_before: identity.not_before,
            not_after: identity.not_after,
        });
    }
    // INVARIANT: checked before the policy filters the bundles, so our SVID
    // is verified even when our own trust domain's callers are refused; and
    // an update without our own bundle (an agent listing our trust domain
    // among the federated ones with no CA) is refused rather than published
    // as a withdrawal of our own trust domain.
    let own = identity.trust_domain();
    if !identity.bundles.trusts(own) {
        return Err(IdentityError::NoOwnBundle(own.to_string()));
    }
    let at = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        u64::try_from(now).unwrap_or_default(),
    ));
    identity
        .bundles
        .verify(&identity.chain, at, Usage::Server)
        .map_err(|e| IdentityError::OwnSvidUntrusted {
            id: identity.spiffe_id.to_string(),
            reason: e.to_string(),
        })?;
    let (identity, ignored) = trust.apply(identity);
    Ok((identity.with_server_config()?, ignored))
}

#[cfg(test)]
mod tests;
