//! rustls configurations for Mandate's server and its clients.

use std::sync::Arc;

use rustls::{ClientConfig, ServerConfig};
use spiffe::SpiffeId;

use super::{Identity, IdentityError, SpiffeClientVerifier, SpiffeServerVerifier};

const H2: &[u8] = b"h2";

fn versions() -> &'static [&'static rustls::SupportedProtocolVersion] {
    // TLS 1.3 preferred, 1.2 kept for older enforcement points; nothing older.
    rustls::ALL_VERSIONS
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Says plainly when rustls refuses our key for not being our certificate's.
fn key_error(error: rustls::Error) -> IdentityError {
    match error {
        rustls::Error::InconsistentKeys(_) => IdentityError::KeyMismatch,
        other => IdentityError::Tls(other.to_string()),
    }
}

/// A server configuration that presents our SVID, requires a client SVID
/// from a trusted trust domain and speaks HTTP/2 only.
///
/// This checks only that the key fits the certificate: whether our SVID is
/// valid and verifies against our own bundle is checked before a snapshot
/// is published (see `publish::prepare`), at the sources' clock.
pub fn server_config(identity: &Identity) -> Result<Arc<ServerConfig>, IdentityError> {
    listener_config(identity, &[H2], ClientCertificate::Required)
}

/// Whether a listener requires a client certificate. One that is presented
/// is verified in full either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCertificate {
    /// Every client presents an SVID (the gRPC port).
    Required,
    /// A client may connect without one (the UI's loopback dev login).
    Optional,
}

/// A server configuration for one of our listeners: our SVID, the SPIFFE
/// verification of client certificates, the application protocols `alpn`
/// names (in the server's order of preference).
pub fn listener_config(
    identity: &Identity,
    alpn: &[&[u8]],
    client: ClientCertificate,
) -> Result<Arc<ServerConfig>, IdentityError> {
    let verifier = SpiffeClientVerifier::new(identity.bundles.clone());
    let verifier = match client {
        ClientCertificate::Required => verifier,
        ClientCertificate::Optional => verifier.optional(),
    };
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions())
        .map_err(|e| IdentityError::Tls(e.to_string()))?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())
        .map_err(key_error)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    // INVARIANT: every connection runs the full client-certificate check.
    // A resumed session would restore the peer's chain from a cache without
    // verifying it again, so an expired SVID or a withdrawn trust domain
    // would keep working.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// A client configuration that presents our SVID and accepts the server by
/// its SVID (pinned to `server_id` when given) rather than by DNS name.
pub fn client_config(
    identity: &Identity,
    server_id: Option<SpiffeId>,
) -> Result<Arc<ClientConfig>, IdentityError> {
    let verifier = Arc::new(SpiffeServerVerifier::new(
        identity.bundles.clone(),
        server_id,
    ));
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions())
        .map_err(|e| IdentityError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(identity.chain.clone(), identity.key.clone_key())
        .map_err(key_error)?;
    config.alpn_protocols = vec![H2.to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::TrustDomain;
    use crate::identity::dev::DevTrustDomain;

    #[test]
    fn server_never_resumes_sessions_and_speaks_only_h2() {
        let dir = tempfile::tempdir().unwrap();
        let dev = DevTrustDomain::init(dir.path(), &TrustDomain::new("example.org").unwrap(), &[])
            .unwrap();
        let config = server_config(&dev.files_source().load().unwrap()).unwrap();
        assert_eq!(config.send_tls13_tickets, 0);
        assert!(!config.session_storage.can_cache());
        assert_eq!(config.alpn_protocols, [b"h2".to_vec()]);
    }
}
