//! Handshake rejections: each bad client certificate is refused by the
//! server before any call is decided. Every case is paired with the good
//! SVID path so a failure cannot come from the test set-up itself.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

mod common;

use common::{Flaw, Leaf, Setup, TestCa, TestServer};
use mandate::api::v1::authorization_service_client::AuthorizationServiceClient;
use mandate::api::v1::{AuthorizeRequest, Resource};

fn read_handbook() -> AuthorizeRequest {
    AuthorizeRequest {
        action: "read".into(),
        resource: Some(Resource {
            r#type: String::new(),
            id: "handbook".into(),
        }),
        ..Default::default()
    }
}

/// Connects with `leaf` (or no certificate) and makes one call; returns
/// whether a decision came back.
async fn call_with(server: &TestServer, leaf: Option<&Leaf>) -> Result<(), String> {
    let auth = leaf.map(|l| (vec![l.cert.clone()], l.key.clone_key()));
    let channel = server.raw_channel(auth).await.map_err(|e| e.to_string())?;
    AuthorizationServiceClient::new(channel)
        .authorize(read_handbook())
        .await
        .map(|_| ())
        .map_err(|status| status.to_string())
}

/// The TLS alert the server sends for a client certificate it refuses.
const BAD_CERTIFICATE: &str = "received fatal alert: CertificateUnknown";
/// The TLS alert the server sends when no client certificate comes.
const NO_CERTIFICATE: &str = "received fatal alert: CertificateRequired";

async fn assert_rejected(server: &TestServer, leaf: Option<&Leaf>) {
    let alert = if leaf.is_some() {
        BAD_CERTIFICATE
    } else {
        NO_CERTIFICATE
    };
    // The control: a good SVID from the trusted CA gets a decision.
    let good = server.ca.svid("/agents/control");
    call_with(server, Some(&good))
        .await
        .expect("a good SVID must be accepted");
    let error = call_with(server, leaf)
        .await
        .expect_err("the handshake should have been refused");
    // Only the server's TLS verifier sends this alert: a refusal anywhere
    // else (a dropped connection, a gRPC error) would not pass.
    assert!(error.contains(alert), "expected `{alert}`, got: {error}");
}

#[tokio::test]
async fn no_client_certificate_is_rejected() {
    let server = TestServer::start().await;
    assert_rejected(&server, None).await;
}

#[tokio::test]
async fn certificate_from_a_ca_outside_the_bundle_is_rejected() {
    let server = TestServer::start().await;
    let impostor = TestCa::new(common::TRUST_DOMAIN).svid("/agents/patcher");
    assert_rejected(&server, Some(&impostor)).await;
}

#[tokio::test]
async fn trust_domain_we_do_not_trust_is_rejected() {
    let server = TestServer::start().await;
    let foreign = TestCa::new("evil.example").svid("/agents/patcher");
    assert_rejected(&server, Some(&foreign)).await;
}

#[tokio::test]
async fn federated_ca_cannot_mint_our_ids() {
    let partner = TestCa::new("partner.example");
    let server = TestServer::start_with(Setup {
        extra_bundles: vec![(partner.td(), partner.cert.clone())],
        ..Setup::default()
    })
    .await;
    // The partner's own IDs are accepted ...
    call_with(&server, Some(&partner.svid("/agents/helper")))
        .await
        .expect("a federated SVID for its own trust domain must be accepted");
    // ... but not an ID in our trust domain signed by the partner's CA.
    let forged = partner.leaf("spiffe://mandate.local/workloads/admin", Flaw::None);
    assert_rejected(&server, Some(&forged)).await;
}

#[tokio::test]
async fn two_uri_sans_are_rejected() {
    let server = TestServer::start().await;
    let leaf = server
        .ca
        .leaf("spiffe://mandate.local/agents/a", Flaw::TwoUriSans);
    assert_rejected(&server, Some(&leaf)).await;
}

#[tokio::test]
async fn non_spiffe_uri_san_is_rejected() {
    let server = TestServer::start().await;
    let leaf = server
        .ca
        .leaf("spiffe://mandate.local/agents/a", Flaw::NonSpiffeUri);
    assert_rejected(&server, Some(&leaf)).await;
}

#[tokio::test]
async fn ca_certificate_as_leaf_is_rejected() {
    let server = TestServer::start().await;
    let leaf = server
        .ca
        .leaf("spiffe://mandate.local/agents/a", Flaw::IsCa);
    assert_rejected(&server, Some(&leaf)).await;
}

#[tokio::test]
async fn expired_svid_is_rejected() {
    let server = TestServer::start().await;
    let leaf = server
        .ca
        .leaf("spiffe://mandate.local/agents/a", Flaw::Expired);
    assert_rejected(&server, Some(&leaf)).await;
}

#[tokio::test]
async fn root_spiffe_id_is_rejected() {
    let server = TestServer::start().await;
    let leaf = server.ca.leaf("spiffe://mandate.local", Flaw::None);
    assert_rejected(&server, Some(&leaf)).await;
}

#[tokio::test]
async fn the_principal_comes_from_the_certificate() {
    // A Workload-path SVID must not get agent permissions, whatever it sends.
    let server = TestServer::start().await;
    let mut client = server.client("/services/billing").await;
    let mut request = read_handbook();
    request.resource.as_mut().unwrap().id = "repo:acme/payments".into();
    let mut metadata_forged = tonic::Request::new(request);
    metadata_forged.metadata_mut().insert(
        "x-spiffe-id",
        "spiffe://mandate.local/agents/patcher".parse().unwrap(),
    );
    let response = client
        .authorize(metadata_forged)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.decision, mandate::api::v1::Decision::Deny as i32);
}
