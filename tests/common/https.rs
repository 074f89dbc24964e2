//! TLS for the HTTPS doors (AuthZEN, the approvals page): the client
//! accepts the server by the SVID of its trust domain and presents `leaf`,
//! or no certificate at all.

use std::sync::Arc;

use super::{Leaf, TestServer};

/// A rustls client configuration presenting `leaf` (none when `None`) and
/// offering `alpn`.
pub fn tls(server: &TestServer, leaf: Option<&Leaf>, alpn: &[&[u8]]) -> rustls::ClientConfig {
    let verifier = Arc::new(mandate::identity::SpiffeServerVerifier::new(
        Arc::new(server.ca.bundles()),
        Some(mandate::identity::SpiffeId::new("spiffe://mandate.local/mandate").unwrap()),
    ));
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(verifier);
    let mut config = match leaf {
        Some(leaf) => builder
            .with_client_auth_cert(vec![leaf.cert.clone()], leaf.key.clone_key())
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}
