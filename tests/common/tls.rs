//! TLS client set-ups for tests: the client accepts the server by its
//! trust domain's bundle (and, where asked, by the server's SPIFFE ID) and
//! presents a certificate of the test's choosing, or none.

use std::sync::Arc;

use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::{Leaf, TestServer};

/// A client certificate chain and its key.
pub type ClientAuth = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// A rustls client configuration that verifies the server against the test
/// CA's bundles (and against `server_id` when given), presents
/// `client_auth` (none when `None`) and offers `alpn`. No local checks of
/// our own certificate: bad SVIDs reach the server.
pub fn config(
    server: &TestServer,
    server_id: Option<&str>,
    client_auth: Option<ClientAuth>,
    alpn: &[&[u8]],
) -> rustls::ClientConfig {
    let verifier = Arc::new(mandate::identity::SpiffeServerVerifier::new(
        Arc::new(server.ca.bundles()),
        server_id.map(|id| mandate::identity::SpiffeId::new(id).unwrap()),
    ));
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(verifier);
    let mut config = match client_auth {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// The configuration of a client of the HTTPS doors (AuthZEN, the
/// approvals page): the server must be Mandate's SVID; presents `leaf`, or
/// no certificate.
pub fn client(server: &TestServer, leaf: Option<&Leaf>, alpn: &[&[u8]]) -> rustls::ClientConfig {
    let auth = leaf.map(|leaf| (vec![leaf.cert.clone()], leaf.key.clone_key()));
    config(server, Some("spiffe://mandate.local/mandate"), auth, alpn)
}
