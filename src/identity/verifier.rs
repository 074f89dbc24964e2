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

/// Server side: requires a client certificate and accepts it only when it is
/// an X.509-SVID that verifies against the bundle of its own trust domain.
#[derive(Debug)]
pub struct SpiffeClientVerifier {
    bundles: Arc<TrustBundles>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl SpiffeClientVerifier {
    /// A verifier over these bundles.
    pub fn new(bundles: Arc<TrustBundles>) -> Self {
        Self {
            bundles,
            algorithms: signature_algorithms(),
        }
    }
}

impl ClientCertVerifier for SpiffeClientVerifier {
    fn client_auth_mandatory(&self) -> bool {
        true
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
