//! The one way a snapshot reaches the TLS layer: every source hands its
//! candidates to a [`Publisher`], which applies the trust policy and
//! validates before it swaps, so a bad file or a bad response from the agent
//! never replaces good material.

use std::sync::Arc;

use rustls_pki_types::UnixTime;
use spiffe::TrustDomain;
use tokio::sync::watch;

use super::{
    Identity, IdentityError, IdentityStatus, IdentityWatch, TrustPolicy, Usage, server_config,
};
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
        let not_before = OffsetDateTime::now_utc() - Duration::minutes(5);
        svid(MANDATE, signer, (not_before, not_after), cas)
    }

    const MANDATE: &str = "spiffe://example.org/mandate";

    /// An SVID for `id` from `signer`, valid over `validity`, trusting `cas`.
    fn svid(
        id: &str,
        signer: &Ca,
        validity: (OffsetDateTime, OffsetDateTime),
        cas: &[(&str, &Ca)],
    ) -> Identity {
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![SanType::URI(id.try_into().unwrap())];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        (params.not_before, params.not_after) = validity;
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

    fn system() -> Arc<dyn Clock> {
        Arc::new(crate::clock::SystemClock)
    }

    fn refused(retry: bool) -> Offered {
        Offered::Refused { retry }
    }

    #[test]
    fn only_servable_snapshots_replace_the_current_one() {
        let ours = ca();
        let status = IdentityStatus::new("files");
        let first = identity(&ours, tomorrow(), &[("example.org", &ours)]);
        let first_leaf = first.chain[0].clone();
        let (mut publisher, watch) =
            Publisher::start(first, TrustPolicy::own_only(), status.clone(), system()).unwrap();

        let expired = identity(
            &ours,
            OffsetDateTime::now_utc() - Duration::minutes(1),
            &[("example.org", &ours)],
        );
        let stranger = ca();
        let foreign = identity(&stranger, tomorrow(), &[("example.org", &ours)]);
        for candidate in [expired, foreign] {
            assert_eq!(publisher.offer(Ok(candidate)), refused(false));
        }
        assert_eq!(
            publisher.offer(Err(IdentityError::NoCertificate)),
            refused(false)
        );
        assert_eq!(watch.borrow().chain[0], first_leaf);
        let report = status.report(&watch.borrow(), 0);
        assert_eq!((report.refused_updates, report.rotations), (3, 0));
        assert!(report.last_error.is_some());

        let next = identity(&ours, tomorrow(), &[("example.org", &ours)]);
        let next_leaf = next.chain[0].clone();
        assert_eq!(publisher.offer(Ok(next)), Offered::Published);
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
        let error = Publisher::start(
            expired,
            TrustPolicy::own_only(),
            IdentityStatus::default(),
            system(),
        )
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
            system(),
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

    #[test]
    fn an_update_without_our_own_bundle_is_refused() {
        let ours = ca();
        let partner = ca();
        let trust = TrustPolicy::allow([
            TrustDomain::new("example.org").unwrap(),
            TrustDomain::new("partner.example").unwrap(),
        ]);
        let status = IdentityStatus::default();
        let first = identity(
            &ours,
            tomorrow(),
            &[("example.org", &ours), ("partner.example", &partner)],
        );
        let (mut publisher, watch) =
            Publisher::start(first, trust, status.clone(), system()).unwrap();
        // What an agent response with an empty federated entry named after
        // our own trust domain becomes: our bundle is gone.
        let without_ours = identity(&ours, tomorrow(), &[("partner.example", &partner)]);
        assert_eq!(publisher.offer(Ok(without_ours)), refused(false));
        assert_eq!(watch.borrow().bundles.trust_domains().len(), 2);
        let report = status.report(&watch.borrow(), 0);
        assert!(report.last_error.is_some_and(|e| {
            e.message
                .contains("no bundle for our own trust domain `example.org`")
        }),);
        assert!(status.take_withdrawal_events().unwrap().try_recv().is_err());
    }

    #[test]
    fn our_svid_is_checked_even_when_our_trust_domain_is_not_allowed() {
        let ours = ca();
        let partner = ca();
        let stranger = ca();
        let trust = TrustPolicy::allow([TrustDomain::new("partner.example").unwrap()]);
        let bundles = [("example.org", &ours), ("partner.example", &partner)];
        let foreign = identity(&stranger, tomorrow(), &bundles);
        let error = Publisher::start(foreign, trust.clone(), IdentityStatus::default(), system())
            .unwrap_err();
        assert!(
            matches!(error, IdentityError::OwnSvidUntrusted { .. }),
            "{error}"
        );
        let no_own_bundle = identity(&ours, tomorrow(), &[("partner.example", &partner)]);
        let error = Publisher::start(
            no_own_bundle,
            trust.clone(),
            IdentityStatus::default(),
            system(),
        )
        .unwrap_err();
        assert!(matches!(error, IdentityError::NoOwnBundle(_)), "{error}");
        let (_, watch) = Publisher::start(
            identity(&ours, tomorrow(), &bundles),
            trust,
            IdentityStatus::default(),
            system(),
        )
        .unwrap();
        // Checked, then dropped: our own callers are refused, as configured.
        assert_eq!(
            watch.borrow().bundles.trust_domains(),
            [&TrustDomain::new("partner.example").unwrap()]
        );
    }

    #[test]
    fn a_change_of_our_spiffe_id_is_refused() {
        let ours = ca();
        let validity = (OffsetDateTime::now_utc() - Duration::minutes(5), tomorrow());
        let bundles = [("example.org", &ours)];
        let (mut publisher, watch) = Publisher::start(
            svid(MANDATE, &ours, validity, &bundles),
            TrustPolicy::own_only(),
            IdentityStatus::default(),
            system(),
        )
        .unwrap();
        let renamed = svid("spiffe://example.org/other", &ours, validity, &bundles);
        assert_eq!(publisher.offer(Ok(renamed)), refused(false));
        assert_eq!(watch.borrow().spiffe_id.to_string(), MANDATE);
    }

    #[test]
    fn only_a_new_svid_counts_as_a_rotation() {
        let ours = ca();
        let partner = ca();
        let status = IdentityStatus::default();
        let trust = TrustPolicy::allow([
            TrustDomain::new("example.org").unwrap(),
            TrustDomain::new("partner.example").unwrap(),
        ]);
        let first = identity(&ours, tomorrow(), &[("example.org", &ours)]);
        let again = Identity::new(
            first.chain.clone(),
            first.key.clone_key(),
            (*first.bundles).clone(),
        );
        let (mut publisher, watch) =
            Publisher::start(first, trust, status.clone(), system()).unwrap();
        assert_eq!(publisher.offer(again), Offered::Unchanged);

        let current = watch.borrow().clone();
        let mut bundles = (*current.bundles).clone();
        bundles
            .add(
                TrustDomain::new("partner.example").unwrap(),
                std::slice::from_ref(&partner.der),
            )
            .unwrap();
        let federated = Identity::new(current.chain.clone(), current.key.clone_key(), bundles);
        assert_eq!(publisher.offer(federated), Offered::Published);
        assert_eq!(watch.borrow().bundles.trust_domains().len(), 2);
        assert_eq!(status.rotations(), 0);
    }

    #[test]
    fn an_svid_not_valid_yet_is_refused_for_now() {
        let ours = ca();
        let clock = Arc::new(crate::clock::ManualClock::new(
            OffsetDateTime::now_utc().unix_timestamp(),
        ));
        let (mut publisher, watch) = Publisher::start(
            identity(&ours, tomorrow(), &[("example.org", &ours)]),
            TrustPolicy::own_only(),
            IdentityStatus::default(),
            clock.clone(),
        )
        .unwrap();
        let soon = OffsetDateTime::now_utc() + Duration::hours(1);
        let early = || {
            svid(
                MANDATE,
                &ours,
                (soon, soon + Duration::days(1)),
                &[("example.org", &ours)],
            )
        };
        assert_eq!(publisher.offer(Ok(early())), refused(true));
        // The injected clock decides, not the system's.
        clock.advance(2 * 3600);
        let next = early();
        let leaf = next.chain[0].clone();
        assert_eq!(publisher.offer(Ok(next)), Offered::Published);
        assert_eq!(watch.borrow().chain[0], leaf);
    }

    #[test]
    fn withdrawn_material_is_not_valid_until_issued_again() {
        let ours = ca();
        let status = IdentityStatus::default();
        let first = identity(&ours, tomorrow(), &[("example.org", &ours)]);
        let again = Identity::new(
            first.chain.clone(),
            first.key.clone_key(),
            (*first.bundles).clone(),
        );
        let (mut publisher, watch) =
            Publisher::start(first, TrustPolicy::own_only(), status.clone(), system()).unwrap();
        let now = OffsetDateTime::now_utc().unix_timestamp();
        publisher.withdraw("permission denied".to_owned());
        assert!(!watch.borrow().is_valid_at(now));
        let report = status.report(&watch.borrow(), now);
        assert!(!report.svid_valid);
        assert_eq!(
            report.withdrawn_by_agent.as_deref(),
            Some("permission denied")
        );
        // The same material issued again is published: valid again.
        assert_eq!(publisher.offer(again), Offered::Published);
        assert!(watch.borrow().is_valid_at(now));
    }
}
