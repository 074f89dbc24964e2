//! The one way a snapshot reaches the TLS layer: every source hands its
//! candidates to a [`Publisher`], which applies the trust policy and
//! validates before it swaps, so a bad file or a bad response from the agent
//! never replaces good material.

use std::sync::Arc;

use spiffe::TrustDomain;
use tokio::sync::watch;

use super::{Identity, IdentityError, IdentityStatus, IdentityWatch, TrustPolicy, server_config};
use crate::clock::{Clock, SystemClock};

/// The sending side of an [`IdentityWatch`], owned by a source's task.
///
/// INVARIANT: the channel only ever holds snapshots that passed
/// [`prepare`]: filtered by the trust policy, inside their validity, with a
/// key that matches and (when our trust domain is trusted) a chain our own
/// bundle verifies.
#[derive(Debug)]
pub(crate) struct Publisher {
    sender: watch::Sender<Arc<Identity>>,
    trust: TrustPolicy,
    status: IdentityStatus,
    /// Trust domains the policy dropped from the current snapshot, so a
    /// change is logged once rather than at every rotation.
    ignored: Vec<TrustDomain>,
}

impl Publisher {
    /// Checks the first snapshot: a source that cannot produce a valid one
    /// does not start.
    pub(crate) fn start(
        first: Identity,
        trust: TrustPolicy,
        status: IdentityStatus,
    ) -> Result<(Self, IdentityWatch), IdentityError> {
        let (first, ignored) = prepare(first, &trust)?;
        let own = first.trust_domain().clone();
        if !trust.allows(&own, &own) {
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
                ignored,
            },
            receiver,
        ))
    }

    /// Publishes `candidate` if it is valid; otherwise logs and records why
    /// and keeps the previous snapshot. Returns whether it was published.
    pub(crate) fn offer(&mut self, candidate: Result<Identity, IdentityError>) -> bool {
        let now = SystemClock.now();
        let (identity, ignored) = match candidate.and_then(|c| prepare(c, &self.trust)) {
            Ok(prepared) => prepared,
            Err(error) => {
                tracing::error!(%error, "identity update refused; keeping the previous material");
                self.status.refused(now, error.to_string());
                return false;
            }
        };
        let previous = self.sender.borrow().clone();
        let before = previous.bundles.trust_domains();
        let after = identity.bundles.trust_domains();
        for td in after.iter().filter(|td| !before.contains(td)) {
            tracing::info!(trust_domain = %td, "trust domain bundle added");
        }
        for td in before.iter().filter(|td| !after.contains(td)) {
            tracing::warn!(trust_domain = %td, "trust domain bundle withdrawn: its callers are refused from now on");
        }
        if ignored != self.ignored {
            log_ignored(&ignored);
            self.status.ignored(&ignored);
            self.ignored = ignored;
        }
        self.status.rotated(now);
        tracing::info!(
            spiffe_id = %identity.spiffe_id,
            not_after = identity.not_after,
            expires_in_secs = identity.not_after.saturating_sub(now),
            rotations = self.status.rotations(),
            "identity rotated; new handshakes use it"
        );
        self.sender.send_replace(Arc::new(identity));
        true
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

/// Applies the trust policy and checks the result can be served: inside
/// its validity window, key matching the certificate, and (when our own
/// trust domain is trusted) verifying against our own bundle.
fn prepare(
    identity: Identity,
    trust: &TrustPolicy,
) -> Result<(Identity, Vec<TrustDomain>), IdentityError> {
    let (identity, ignored) = trust.apply(identity);
    let now = SystemClock.now();
    if !identity.is_valid_at(now) {
        return Err(IdentityError::NotValidNow {
            id: identity.spiffe_id.to_string(),
            not_before: identity.not_before,
            not_after: identity.not_after,
        });
    }
    server_config(&identity)?;
    Ok((identity, ignored))
}

#[cfg(test)]
mod tests {
    use rcgen::{
        BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
    };
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use time::{Duration, OffsetDateTime};

    use super::*;
    use crate::identity::TrustBundles;

    struct Ca {
        der: CertificateDer<'static>,
        issuer: Issuer<'static, KeyPair>,
    }

    fn ca() -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let der = params.self_signed(&key).unwrap().der().clone();
        Ca {
            der,
            issuer: Issuer::new(params, key),
        }
    }

    /// Our SVID from `signer`, valid until `not_after`, trusting `cas`.
    fn identity(signer: &Ca, not_after: OffsetDateTime, cas: &[(&str, &Ca)]) -> Identity {
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![SanType::URI(
            "spiffe://example.org/mandate".try_into().unwrap(),
        )];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = OffsetDateTime::now_utc() - Duration::minutes(5);
        params.not_after = not_after;
        let key = KeyPair::generate().unwrap();
        let leaf = params
            .signed_by(&key, &signer.issuer)
            .unwrap()
            .der()
            .clone();
        let mut bundles = TrustBundles::default();
        for (td, ca) in cas {
            bundles
                .add(TrustDomain::new(td).unwrap(), std::slice::from_ref(&ca.der))
                .unwrap();
        }
        Identity::new(
            vec![leaf],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            bundles,
        )
        .unwrap()
    }

    fn tomorrow() -> OffsetDateTime {
        OffsetDateTime::now_utc() + Duration::days(1)
    }

    #[test]
    fn only_servable_snapshots_replace_the_current_one() {
        let ours = ca();
        let status = IdentityStatus::new("files");
        let first = identity(&ours, tomorrow(), &[("example.org", &ours)]);
        let first_leaf = first.chain[0].clone();
        let (mut publisher, watch) =
            Publisher::start(first, TrustPolicy::own_only(), status.clone()).unwrap();

        let expired = identity(
            &ours,
            OffsetDateTime::now_utc() - Duration::minutes(1),
            &[("example.org", &ours)],
        );
        let stranger = ca();
        let foreign = identity(&stranger, tomorrow(), &[("example.org", &ours)]);
        for candidate in [expired, foreign] {
            assert!(!publisher.offer(Ok(candidate)));
        }
        assert!(!publisher.offer(Err(IdentityError::NoCertificate)));
        assert_eq!(watch.borrow().chain[0], first_leaf);
        let report = status.report(&watch.borrow(), 0);
        assert_eq!((report.refused_updates, report.rotations), (3, 0));
        assert!(report.last_error.is_some());

        let next = identity(&ours, tomorrow(), &[("example.org", &ours)]);
        let next_leaf = next.chain[0].clone();
        assert!(publisher.offer(Ok(next)));
        assert_eq!(watch.borrow().chain[0], next_leaf);
        let report = status.report(&watch.borrow(), 0);
        assert_eq!(report.rotations, 1);
        assert!(report.last_error.is_none());
    }

    #[test]
    fn a_first_snapshot_that_cannot_be_served_does_not_start() {
        let ours = ca();
        let expired = identity(
            &ours,
            OffsetDateTime::now_utc() - Duration::minutes(1),
            &[("example.org", &ours)],
        );
        let error = Publisher::start(expired, TrustPolicy::own_only(), IdentityStatus::default())
            .unwrap_err();
        assert!(
            matches!(error, IdentityError::NotValidNow { .. }),
            "{error}"
        );
    }

    #[test]
    fn the_trust_policy_is_applied_before_publishing() {
        let ours = ca();
        let partner = ca();
        let status = IdentityStatus::default();
        let (_publisher, watch) = Publisher::start(
            identity(
                &ours,
                tomorrow(),
                &[("example.org", &ours), ("partner.example", &partner)],
            ),
            TrustPolicy::own_only(),
            status.clone(),
        )
        .unwrap();
        assert_eq!(
            watch.borrow().bundles.trust_domains(),
            [&TrustDomain::new("example.org").unwrap()]
        );
        assert_eq!(
            status.report(&watch.borrow(), 0).ignored_trust_domains,
            ["partner.example"]
        );
    }
}
