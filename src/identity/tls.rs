//! rustls configurations for Mandate's server and its clients.

use std::sync::Arc;

use rustls::{ClientConfig, ServerConfig};
use spiffe::SpiffeId;

use rustls_pki_types::UnixTime;

use super::{Identity, IdentityError, SpiffeClientVerifier, SpiffeServerVerifier, Usage};

const H2: &[u8] = b"h2";

fn versions() -> &'static [&'static rustls::SupportedProtocolVersion] {
    // TLS 1.3 preferred, 1.2 kept for older enforcement points; nothing older.
    rustls::ALL_VERSIONS
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server configuration that presents our SVID, requires a client SVID
/// from a trusted trust domain and speaks HTTP/2 only.
pub fn server_config(identity: &Identity) -> Result<Arc<ServerConfig>, IdentityError> {
    // An SVID our own bundle refuses (expired, another CA) would make every
    // client refuse us: catch it here, before it is served.
    if identity.bundles.trusts(identity.spiffe_id.trust_domain()) {
        identity
            .bundles
            .verify(&identity.chain, UnixTime::now(), Usage::Server)
            .map_err(|e| IdentityError::Tls(format!("our own SVID is not valid: {e}")))?;
    }
    let verifier = Arc::new(SpiffeClientVerifier::new(identity.bundles.clone()));
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions())
        .map_err(|e| IdentityError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())
        .map_err(|e| IdentityError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![H2.to_vec()];
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
        .map_err(|e| IdentityError::Tls(e.to_string()))?;
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

    #[test]
    fn an_svid_our_own_bundle_refuses_is_not_served() {
        use crate::identity::TrustBundles;
        let ours = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        let td = TrustDomain::new("example.org").unwrap();
        let dev = DevTrustDomain::init(ours.path(), &td, &[]).unwrap();
        let stranger = DevTrustDomain::init(other.path(), &td, &[]).unwrap();
        let identity = dev.files_source().load().unwrap();
        // Our SVID, but the bundle of another CA for our trust domain.
        let mut bundles = TrustBundles::default();
        bundles
            .add(td, &crate::identity::load_certs(&stranger.bundle).unwrap())
            .unwrap();
        let mismatched =
            Identity::new(identity.chain.clone(), identity.key.clone_key(), bundles).unwrap();
        let err = server_config(&mismatched).unwrap_err();
        assert!(
            err.to_string().contains("our own SVID is not valid"),
            "{err}"
        );
    }
}
