//! Probes of a running server from outside: `/readyz`, a fresh connection
//! making one call, and waiting for a condition without fixed sleeps.

use mandate::identity::{Identity, TrustBundles};

use super::{Leaf, TestCa, TestServer};

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
