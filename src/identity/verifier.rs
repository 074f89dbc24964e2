//! rustls verifiers that accept a peer only by its X.509-SVID.
//!
//! Both sides use [`TrustBundles::verify`], so the client and server paths
//! (and the subject certificates an enforcement point forwards) share one
//! set of rules.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use spiffe::SpiffeId;

use super::{IdentityError, TrustBundles, Usage};

fn reject(error: IdentityError) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(error))))
}

fn full_chain<'a>(
    end_entity: &'a CertificateDer<'_>,
    intermediates: &'a [CertificateDer<'_>],
) -> Vec<CertificateDer<'a>> {
    std::iter::once(end_entity)
        .chain(intermediates)
        .map(|der| CertificateDer::from(der.as_ref()))
        .collect()
}

fn signature_algorithms() -> WebPkiSupportedAlgorithms {
    rustls::crypto::ring::default_provider().signature_verification_algorithms
}

/// Server side: requires a client certificate (unless made
/// [`optional`](Self::optional)) and accepts it only when it is an
/// X.509-SVID that verifies against the bundle of its own trust domain.
#[derive(Debug)]
pub struct SpiffeClientVerifier {
    bundles: Arc<TrustBundles>,
    algorithms: WebPkiSupportedAlgorithms,
    mandatory: bool,
}

impl SpiffeClientVerifier {
    /// A verifier over these bundles.
    pub fn new(bundles: Arc<TrustBundles>) -> Self {
        Self {
            bundles,
            algorithms: signature_algorithms(),
            mandatory: true,
        }
    }

    /// The same verifier, letting a client connect without a certificate:
    /// one that is presented is still verified in full.
    pub fn optional(self) -> Self {
        Self {
            mandatory: false,
            ..self
        }
    }
}

impl ClientCertVerifier for SpiffeClientVerifier {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // No hints: a workload has exactly one SVID to present.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match self
            .bundles
            .verify(&full_chain(end_entity, intermediates), now, Usage::Client)
        {
            Ok(_) => Ok(ClientCertVerified::assertion()),
            Err(error) => {
                tracing::info!(%error, "client certificate rejected");
                Err(reject(error))
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Client side: accepts the server by its X.509-SVID instead of a DNS name,
/// optionally requiring one exact SPIFFE ID.
#[derive(Debug)]
pub struct SpiffeServerVerifier {
    bundles: Arc<TrustBundles>,
    expected: Option<SpiffeId>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl SpiffeServerVerifier {
    /// A verifier over these bundles; `expected` pins the server's SPIFFE ID.
    pub fn new(bundles: Arc<TrustBundles>, expected: Option<SpiffeId>) -> Self {
        Self {
            bundles,
            expected,
            algorithms: signature_algorithms(),
        }
    }
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let id = self
            .bundles
            .verify(&full_chain(end_entity, intermediates), now, Usage::Server)
            .map_err(reject)?;
        match &self.expected {
            Some(expected) if *expected != id => Err(reject(IdentityError::UnexpectedPeer {
                expected: expected.to_string(),
                actual: id.to_string(),
            })),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rcgen::{
        BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
    };
    use spiffe::TrustDomain;

    use super::*;

    struct Ca {
        td: TrustDomain,
        der: CertificateDer<'static>,
        issuer: Issuer<'static, KeyPair>,
    }

    fn ca(td: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let der = params.self_signed(&key).unwrap().der().clone();
        Ca {
            td: TrustDomain::new(td).unwrap(),
            der,
            issuer: Issuer::new(params, key),
        }
    }

    fn leaf(ca: &Ca, id: &str) -> CertificateDer<'static> {
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![SanType::URI(id.try_into().unwrap())];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().unwrap();
        params.signed_by(&key, &ca.issuer).unwrap().der().clone()
    }

    fn bundles(cas: &[&Ca]) -> Arc<TrustBundles> {
        let mut bundles = TrustBundles::default();
        for ca in cas {
            bundles
                .add(ca.td.clone(), std::slice::from_ref(&ca.der))
                .unwrap();
        }
        Arc::new(bundles)
    }

    #[test]
    fn client_certificates_are_mandatory() {
        let verifier = SpiffeClientVerifier::new(bundles(&[]));
        assert!(verifier.offer_client_auth());
        assert!(verifier.client_auth_mandatory());
    }

    #[test]
    fn client_svid_verifies_only_against_its_own_trust_domain() {
        let ours = ca("example.org");
        let partner = ca("partner.example");
        let verifier = SpiffeClientVerifier::new(bundles(&[&ours, &partner]));
        let now = UnixTime::now();
        let good = leaf(&ours, "spiffe://example.org/agents/a");
        assert!(verifier.verify_client_cert(&good, &[], now).is_ok());
        let partners_own = leaf(&partner, "spiffe://partner.example/agents/a");
        assert!(verifier.verify_client_cert(&partners_own, &[], now).is_ok());
        // The partner's CA signing an ID in our trust domain.
        let forged = leaf(&partner, "spiffe://example.org/workloads/admin");
        assert!(verifier.verify_client_cert(&forged, &[], now).is_err());
        // A CA nobody trusts, for our trust domain and for its own.
        let stranger = ca("example.org");
        let impostor = leaf(&stranger, "spiffe://example.org/agents/a");
        assert!(verifier.verify_client_cert(&impostor, &[], now).is_err());
        let elsewhere = leaf(&ca("evil.example"), "spiffe://evil.example/agents/a");
        assert!(verifier.verify_client_cert(&elsewhere, &[], now).is_err());
    }

    #[test]
    fn an_svid_past_its_validity_is_refused() {
        let ours = ca("example.org");
        let verifier = SpiffeClientVerifier::new(bundles(&[&ours]));
        let good = leaf(&ours, "spiffe://example.org/agents/a");
        // rcgen's default validity ends in 4096; a later clock is past it.
        let far_future = UnixTime::since_unix_epoch(Duration::from_secs(4_200_000_000 * 20));
        assert!(verifier.verify_client_cert(&good, &[], far_future).is_err());
    }

    #[test]
    fn server_verifier_pins_the_expected_id() {
        let ours = ca("example.org");
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![SanType::URI(
            "spiffe://example.org/mandate".try_into().unwrap(),
        )];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().unwrap();
        let server = params.signed_by(&key, &ours.issuer).unwrap().der().clone();
        let name = ServerName::try_from("localhost").unwrap();
        let now = UnixTime::now();
        let expected = SpiffeId::new("spiffe://example.org/mandate").unwrap();
        let other = SpiffeId::new("spiffe://example.org/not-mandate").unwrap();
        let pinned = SpiffeServerVerifier::new(bundles(&[&ours]), Some(expected));
        assert!(
            pinned
                .verify_server_cert(&server, &[], &name, &[], now)
                .is_ok()
        );
        let wrong = SpiffeServerVerifier::new(bundles(&[&ours]), Some(other));
        assert!(
            wrong
                .verify_server_cert(&server, &[], &name, &[], now)
                .is_err()
        );
    }
}
