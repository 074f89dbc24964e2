//! Probes of a running server from outside: `/readyz`, a fresh connection
//! making one call, and waiting for a condition without fixed sleeps; and
//! SVIDs whose validity starts later (as issued to a clock running ahead).

use mandate::identity::{Identity, TrustBundles};
use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use time::OffsetDateTime;

use super::{Leaf, TestCa, TestServer};

impl TestCa {
    /// A good SVID for `path`, valid for a day from `not_before`.
    pub fn svid_from(&self, path: &str, not_before: OffsetDateTime) -> Leaf {
        let mut params = CertificateParams::default();
        let uri = format!("spiffe://{}{path}", self.trust_domain);
        params.subject_alt_names = vec![SanType::URI(uri.try_into().unwrap())];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.not_before = not_before;
        params.not_after = not_before + time::Duration::days(1);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert: cert.der().clone(),
            cert_pem: cert.pem(),
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            key_pem: key.serialize_pem(),
        }
    }
}

/// `GET /readyz`: the status code and the JSON body.
pub async fn readyz(server: &TestServer) -> (u16, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(server.server.http_addr())
        .await
        .unwrap();
    tcp.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.unwrap();
    let code = response
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .expect("an HTTP status line");
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (code, serde_json::from_str(body).unwrap())
}

/// A client identity presenting `leaf` and trusting `cas` (each for its
/// own trust domain).
pub fn client_identity(leaf: &Leaf, cas: &[&TestCa]) -> Identity {
    let mut bundles = TrustBundles::default();
    for ca in cas {
        bundles
            .add(ca.td(), std::slice::from_ref(&ca.cert))
            .unwrap();
    }
    Identity::new(vec![leaf.cert.clone()], leaf.key.clone_key(), bundles).unwrap()
}

/// Opens a new connection as `identity` and makes one call; a refused
/// handshake (either side) or a refused call is an error.
pub async fn try_call(addr: &str, identity: &Identity) -> Result<(), String> {
    let mut client = mandate::client::connect(addr, identity, None)
        .await
        .map_err(|e| e.to_string())?;
    client
        .authorize(mandate::api::v1::AuthorizeRequest {
            action: "read".into(),
            resource: Some(mandate::api::v1::Resource {
                r#type: String::new(),
                id: "handbook".into(),
            }),
            ..Default::default()
        })
        .await
        .map(|_| ())
        .map_err(|status| status.to_string())
}

/// Waits until `$condition` (which may `.await`) holds, polling every
/// 50 ms; fails the test after 20 s, naming what was awaited.
#[macro_export]
macro_rules! eventually {
    ($what:expr, $condition:expr) => {{
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        while !$condition {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting until {}",
                $what
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }};
}
