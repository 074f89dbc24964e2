//! The trust policy: which trust domains are accepted at all.
//!
//! A bundle says how to verify a trust domain's SVIDs; it does not say that
//! we want to talk to it. A SPIRE agent hands out the bundle of every
//! federated trust domain its server federates with, for every workload, so
//! the decision to accept callers from one is made here, independently.

use std::sync::Arc;

use spiffe::TrustDomain;

use super::Identity;

/// The trust domains whose callers are accepted, given a bundle for them.
///
/// INVARIANT: this is applied to every snapshot before it is published, so
/// the TLS verifiers, the enforcement-point subject checks and the
/// withdrawal watch all see the same filtered bundle set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustPolicy {
    /// `None`: only our own trust domain.
    allowed: Option<Vec<TrustDomain>>,
}

impl TrustPolicy {
    /// Only our own trust domain (the default).
    pub fn own_only() -> Self {
        Self::default()
    }

    /// Exactly these trust domains (our own is not added implicitly).
    pub fn allow(trust_domains: impl IntoIterator<Item = TrustDomain>) -> Self {
        let mut allowed: Vec<TrustDomain> = trust_domains.into_iter().collect();
        allowed.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        allowed.dedup();
        Self {
            allowed: Some(allowed),
        }
    }

    /// Whether callers from `trust_domain` are accepted when we are `own`.
    pub fn allows(&self, own: &TrustDomain, trust_domain: &TrustDomain) -> bool {
        match &self.allowed {
            Some(allowed) => allowed.contains(trust_domain),
            None => trust_domain == own,
        }
    }

    /// The configured list, or `None` for "our own only".
    pub fn allowed(&self) -> Option<&[TrustDomain]> {
        self.allowed.as_deref()
    }

    /// `identity` without the bundles of trust domains we do not accept;
    /// also returns the trust domains whose bundles were dropped.
    pub fn apply(&self, mut identity: Identity) -> (Identity, Vec<TrustDomain>) {
        let own = identity.trust_domain().clone();
        let mut bundles = (*identity.bundles).clone();
        let ignored = bundles.retain(|td| self.allows(&own, td));
        identity.bundles = Arc::new(bundles);
        (identity, ignored)
    }
}

#[cfg(test)]
mod tests {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, KeyUsagePurpose, SanType};
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

    use super::*;
    use crate::identity::TrustBundles;

    fn ca() -> CertificateDer<'static> {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        params.self_signed(&key).unwrap().der().clone()
    }

    fn td(name: &str) -> TrustDomain {
        TrustDomain::new(name).unwrap()
    }

    /// An identity in `example.org` holding bundles for `domains`.
    fn identity(domains: &[&str]) -> Identity {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![SanType::URI(
            "spiffe://example.org/mandate".try_into().unwrap(),
        )];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let leaf = params.self_signed(&key).unwrap().der().clone();
        let mut bundles = TrustBundles::default();
        for name in domains {
            bundles.add(td(name), &[ca()]).unwrap();
        }
        Identity::new(
            vec![leaf],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            bundles,
        )
        .unwrap()
    }

    fn names(identity: &Identity) -> Vec<String> {
        identity
            .bundles
            .trust_domains()
            .iter()
            .map(|td| td.to_string())
            .collect()
    }

    #[test]
    fn by_default_only_our_own_trust_domain_is_kept() {
        let (kept, ignored) =
            TrustPolicy::own_only().apply(identity(&["example.org", "partner.example"]));
        assert_eq!(names(&kept), ["example.org"]);
        assert_eq!(ignored, [td("partner.example")]);
    }

    #[test]
    fn the_allow_list_is_independent_of_the_bundles_held() {
        let policy = TrustPolicy::allow([td("example.org"), td("partner.example")]);
        // A listed trust domain without a bundle is simply not trusted yet;
        // a bundle for an unlisted one is dropped.
        let (kept, ignored) = policy.apply(identity(&["example.org", "evil.example"]));
        assert_eq!(names(&kept), ["example.org"]);
        assert_eq!(ignored, [td("evil.example")]);
        let (kept, _) = policy.apply(identity(&["example.org", "partner.example"]));
        assert_eq!(names(&kept), ["example.org", "partner.example"]);
    }

    #[test]
    fn an_allow_list_without_our_own_trust_domain_drops_it() {
        let policy = TrustPolicy::allow([td("partner.example")]);
        let (kept, ignored) = policy.apply(identity(&["example.org", "partner.example"]));
        assert_eq!(names(&kept), ["partner.example"]);
        assert_eq!(ignored, [td("example.org")]);
    }
}
