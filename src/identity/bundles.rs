//! Trust bundles, one per trust domain, and chain verification against them.

use std::collections::HashMap;

use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use spiffe::{SpiffeId, TrustDomain};
use webpki::{EndEntityCert, KeyUsage};

use super::{IdentityError, svid::spiffe_id_of_leaf};

/// The CA certificates trusted for each trust domain.
///
/// INVARIANT: a chain is verified only against the bundle of the trust domain
/// its own SPIFFE ID names, so a federated CA can never mint our IDs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TrustBundles {
    anchors: HashMap<TrustDomain, Vec<TrustAnchor<'static>>>,
}

impl TrustBundles {
    /// Adds the CA certificates of one trust domain (several calls append).
    pub fn add(
        &mut self,
        trust_domain: TrustDomain,
        cas: &[CertificateDer<'_>],
    ) -> Result<(), IdentityError> {
        let entry = self.anchors.entry(trust_domain.clone()).or_default();
        for ca in cas {
            let anchor = webpki::anchor_from_trusted_cert(ca).map_err(|e| {
                IdentityError::Malformed(format!("bundle for `{trust_domain}`: {e}"))
            })?;
            entry.push(anchor.to_owned());
        }
        Ok(())
    }

    /// The trust domains we hold a bundle for, sorted.
    pub fn trust_domains(&self) -> Vec<&TrustDomain> {
        let mut domains: Vec<_> = self.anchors.keys().collect();
        domains.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        domains
    }

    /// Whether we hold a bundle for `trust_domain`.
    pub fn trusts(&self, trust_domain: &TrustDomain) -> bool {
        self.anchors
            .get(trust_domain)
            .is_some_and(|a| !a.is_empty())
    }

    /// Drops the bundles of every trust domain `keep` refuses; returns the
    /// trust domains dropped, sorted.
    pub fn retain(&mut self, mut keep: impl FnMut(&TrustDomain) -> bool) -> Vec<TrustDomain> {
        let mut dropped: Vec<TrustDomain> = self
            .anchors
            .keys()
            .filter(|td| !keep(td))
            .cloned()
            .collect();
        for td in &dropped {
            self.anchors.remove(td);
        }
        dropped.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        dropped
    }

    /// Whether no trust domain is trusted at all.
    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }

    /// Verifies an X.509-SVID chain (leaf first) for a client or a server and
    /// returns its SPIFFE ID.
    pub fn verify(
        &self,
        chain: &[CertificateDer<'_>],
        now: UnixTime,
        usage: Usage,
    ) -> Result<SpiffeId, IdentityError> {
        let (leaf, intermediates) = chain.split_first().ok_or(IdentityError::NoCertificate)?;
        let id = spiffe_id_of_leaf(leaf)?;
        let anchors = self
            .anchors
            .get(id.trust_domain())
            .filter(|anchors| !anchors.is_empty())
            .ok_or_else(|| {
                IdentityError::UntrustedTrustDomain(id.trust_domain_name().to_owned())
            })?;
        let cert = EndEntityCert::try_from(leaf).map_err(|e| IdentityError::Chain {
            id: id.to_string(),
            reason: e.to_string(),
        })?;
        let usage = match usage {
            Usage::Client => KeyUsage::client_auth(),
            Usage::Server => KeyUsage::server_auth(),
        };
        cert.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            anchors,
            intermediates,
            now,
            usage,
            None,
            None,
        )
        .map_err(|e| IdentityError::Chain {
            id: id.to_string(),
            reason: e.to_string(),
        })?;
        Ok(id)
    }
}

/// Which side of a TLS connection a certificate is presented by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// A client certificate (extended key usage `clientAuth` if any is set).
    Client,
    /// A server certificate (extended key usage `serverAuth` if any is set).
    Server,
}
