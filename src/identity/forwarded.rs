//! Subject SVIDs forwarded by enforcement points (Envoy's
//! `source.certificate`, `Subject.certificate_pem`), verified once per
//! trust bundle set: an enforcement point forwards the same agent's
//! certificate on every request, and the chain's signature check would
//! otherwise be most of the cost of a `Check`.

use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::{CertificateDer, UnixTime};
use spiffe::SpiffeId;

use super::{TrustBundles, Usage};
use crate::cache::Bounded;

/// Most verified chains remembered; past it the coldest are dropped.
const CAPACITY: usize = 10_000;
/// How long a verified chain is remembered without being verified again.
const MAX_AGE: Duration = Duration::from_secs(600);

/// A chain that verified.
#[derive(Debug, Clone)]
pub struct VerifiedSubject {
    /// The SPIFFE ID of its leaf.
    pub spiffe_id: SpiffeId,
    /// `x5t#S256` of its leaf, for a task token's `cnf`.
    pub thumbprint: String,
}

#[derive(Debug)]
struct Entry {
    /// The bundle set it verified against.
    bundles: Arc<TrustBundles>,
    /// Unix seconds the whole chain is valid within.
    not_before: u64,
    not_after: u64,
    subject: VerifiedSubject,
}

/// Verified forwarded chains, keyed by their PEM.
#[derive(Debug)]
pub struct ForwardedSubjects {
    verified: Bounded<String, Arc<Entry>>,
}

impl Default for ForwardedSubjects {
    fn default() -> Self {
        Self {
            verified: Bounded::new(CAPACITY, MAX_AGE),
        }
    }
}

impl ForwardedSubjects {
    /// Drops chains remembered longer than their age; see
    /// [`Bounded::sweep`].
    pub fn sweep(&self) {
        self.verified.sweep();
    }

    /// Verifies a PEM chain (leaf first) against `bundles` for a client,
    /// as [`TrustBundles::verify`] does.
    // INVARIANT: a remembered result counts only for the very bundle set
    // it was verified against and only within the validity of every
    // certificate of the chain, so a rotation, a withdrawn trust domain
    // or an expiry is seen at the next request.
    pub fn verify(
        &self,
        bundles: &Arc<TrustBundles>,
        pem: &str,
        now: UnixTime,
    ) -> Result<VerifiedSubject, String> {
        let seconds = now.as_secs();
        if let Some(entry) = self.verified.get(pem)
            && Arc::ptr_eq(&entry.bundles, bundles)
            && (entry.not_before..entry.not_after).contains(&seconds)
        {
            return Ok(entry.subject.clone());
        }
        let chain = rustls_pemfile::certs(&mut pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("subject certificate PEM cannot be read: {e}"))?;
        let spiffe_id = bundles
            .verify(&chain, now, Usage::Client)
            .map_err(|e| format!("subject certificate: {e}"))?;
        let leaf = chain
            .first()
            .ok_or_else(|| "subject certificate is empty".to_owned())?;
        let subject = VerifiedSubject {
            spiffe_id,
            thumbprint: crate::credential::thumbprint(leaf),
        };
        // A chain whose validity cannot be read is verified every time.
        if let Some((not_before, not_after)) = validity(&chain) {
            self.verified.insert(
                pem.to_owned(),
                Arc::new(Entry {
                    bundles: bundles.clone(),
                    not_before,
                    not_after,
                    subject: subject.clone(),
                }),
            );
        }
        Ok(subject)
    }
}

/// The window (Unix seconds, end exclusive) in which every certificate of
/// `chain` is valid.
fn validity(chain: &[CertificateDer<'_>]) -> Option<(u64, u64)> {
    let mut window = (0u64, u64::MAX);
    for der in chain {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let validity = cert.validity();
        let from = u64::try_from(validity.not_before.timestamp()).ok()?;
        let until = u64::try_from(validity.not_after.timestamp()).ok()?;
        window = (window.0.max(from), window.1.min(until));
    }
    Some(window)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::identity::dev::DevTrustDomain;
    use crate::identity::{TrustDomain, load_certs};

    fn bundles_of(dev: &DevTrustDomain) -> Arc<TrustBundles> {
        let mut bundles = TrustBundles::default();
        bundles
            .add(dev.trust_domain.clone(), &load_certs(&dev.bundle).unwrap())
            .unwrap();
        Arc::new(bundles)
    }

    #[test]
    fn remembered_only_for_the_same_bundles_and_while_valid() {
        let dir = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        let td = TrustDomain::new("example.org").unwrap();
        let dev = DevTrustDomain::init(dir.path(), &td, &[]).unwrap();
        let stranger = DevTrustDomain::init(other.path(), &td, &[]).unwrap();
        let pem = std::fs::read_to_string(&dev.samples[0].cert).unwrap();
        let cache = ForwardedSubjects::default();
        let now = UnixTime::now();

        let ours = bundles_of(&dev);
        let first = cache.verify(&ours, &pem, now).unwrap();
        assert_eq!(first.spiffe_id.to_string(), dev.samples[0].spiffe_id);
        let again = cache.verify(&ours, &pem, now).unwrap();
        assert_eq!(again.thumbprint, first.thumbprint);

        // Another bundle set for the same trust domain (a rotated CA, or
        // a withdrawn and re-added domain): verified again, and refused.
        let err = cache.verify(&bundles_of(&stranger), &pem, now).unwrap_err();
        assert!(err.starts_with("subject certificate:"), "{err}");

        // Past the SVID's lifetime the remembered result does not count.
        let later = UnixTime::since_unix_epoch(Duration::from_secs(now.as_secs() + 400 * 86_400));
        assert!(cache.verify(&ours, &pem, later).is_err());
        assert!(cache.verify(&ours, "not a pem", now).is_err());
    }
}
