//! The publisher's checks and what it counts, against generated SVIDs.

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};
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
    let (mut publisher, watch) = Publisher::start(first, trust, status.clone(), system()).unwrap();
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
    let error =
        Publisher::start(foreign, trust.clone(), IdentityStatus::default(), system()).unwrap_err();
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
    let (mut publisher, watch) = Publisher::start(first, trust, status.clone(), system()).unwrap();
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
