//! Arbitrary DER as a caller's certificate: the leaf rules, the validity
//! reader, chain verification against a fixed bundle (as the TLS
//! verifiers do) and a forwarded subject PEM (as `Check` and
//! `Authorize.subject` do). Never a panic, and never an acceptance of a
//! certificate the bundle's CA did not issue as an SVID.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rustls_pki_types::{CertificateDer, UnixTime};
use spiffe::TrustDomain;

use super::{NOW, Outcome, TRUST_DOMAIN, ensure};
use crate::identity::{ForwardedSubjects, TrustBundles, Usage, spiffe_id_of_leaf, validity_of};

/// Verification against one CA, at [`NOW`].
#[derive(Debug)]
pub struct SvidHarness {
    bundles: Arc<TrustBundles>,
    forwarded: ForwardedSubjects,
    issued: Vec<Vec<u8>>,
    now: UnixTime,
}

impl SvidHarness {
    /// A harness trusting `ca` (DER) for [`TRUST_DOMAIN`]; `issued` are the
    /// good SVIDs that CA signed, the only certificates it may accept.
    pub fn new(ca: &[u8], issued: Vec<Vec<u8>>) -> Result<Self, String> {
        let mut bundles = TrustBundles::default();
        let td = TrustDomain::new(TRUST_DOMAIN).map_err(|e| e.to_string())?;
        bundles
            .add(td, &[CertificateDer::from(ca.to_vec())])
            .map_err(|e| e.to_string())?;
        let now = UnixTime::since_unix_epoch(std::time::Duration::from_secs(NOW.unsigned_abs()));
        Ok(Self {
            bundles: Arc::new(bundles),
            forwarded: ForwardedSubjects::default(),
            issued,
            now,
        })
    }

    /// Checks `data` as a leaf (alone, and as its own intermediate) for
    /// both usages, and as a forwarded PEM.
    pub fn check(&self, data: &[u8]) -> Result<Outcome, String> {
        let leaf_rules = spiffe_id_of_leaf(data);
        let _ = validity_of(data);
        let issued = self.issued.iter().any(|good| good == data);
        let leaf = CertificateDer::from(data);
        let mut outcome = None;
        for chain in [vec![leaf.clone()], vec![leaf.clone(), leaf.clone()]] {
            for usage in [Usage::Client, Usage::Server] {
                match self.bundles.verify(&chain, self.now, usage) {
                    Ok(id) => {
                        ensure(issued, || {
                            format!("accepted `{id}` in a certificate the CA did not issue")
                        })?;
                        ensure(leaf_rules.as_ref().is_ok_and(|l| *l == id), || {
                            format!("accepted `{id}` although the leaf rules say {leaf_rules:?}")
                        })?;
                    }
                    Err(error) => outcome = Some(error.to_string()),
                }
            }
        }
        let pem = format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            STANDARD.encode(data)
        );
        match self.forwarded.verify(&self.bundles, &pem, self.now) {
            Ok(subject) => ensure(issued, || {
                format!(
                    "accepted forwarded `{}` the CA did not issue",
                    subject.spiffe_id
                )
            })?,
            Err(error) => outcome = Some(error),
        }
        match outcome {
            Some(error) => Outcome::refused(error),
            None => Ok(Outcome::Accepted),
        }
    }
}
