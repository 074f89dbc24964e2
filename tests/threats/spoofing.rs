//! Agent identity spoofing: a caller claims to be an agent it is not.

use mandate::api::v1::authorization_service_client::AuthorizationServiceClient;
use mandate::api::v1::{AuthorizeRequest, Decision, Resource, Subject};

use crate::common::party::*;
use crate::common::{Flaw, Leaf, Setup, TRUST_DOMAIN, TestCa, TestServer};

/// The TLS alerts only the server's client-certificate verifier sends.
const NO_CERTIFICATE: &str = "received fatal alert: CertificateRequired";
const BAD_CERTIFICATE: &str = "received fatal alert: CertificateUnknown";

/// A new connection presenting `leaf` (or nothing) that asks one question;
/// no local checks of the client certificate, so the server judges it.
async fn ask(server: &TestServer, leaf: Option<&Leaf>) -> Result<Decision, String> {
    let auth = leaf.map(|l| (vec![l.cert.clone()], l.key.clone_key()));
    let channel = server.raw_channel(auth).await.map_err(|e| e.to_string())?;
    let response = AuthorizationServiceClient::new(channel)
        .authorize(AuthorizeRequest {
            action: "read".into(),
            resource: Some(Resource {
                r#type: String::new(),
                id: "repo:acme/payments".into(),
            }),
            ..Default::default()
        })
        .await
        .map_err(|status| status.to_string())?;
    Ok(Decision::try_from(response.into_inner().decision).unwrap())
}

/// The genuine patcher gets an answer over the same path; `attempt` is
/// refused at the handshake with `alert`.
async fn assert_handshake_refused(server: &TestServer, attempt: Option<&Leaf>, alert: &str) {
    let genuine = server.ca.svid("/agents/patcher");
    assert_eq!(
        ask(server, Some(&genuine)).await,
        Ok(Decision::Allow),
        "the genuine patcher must get its answer"
    );
    let error = ask(server, attempt)
        .await
        .expect_err("the spoofed handshake must be refused");
    assert!(error.contains(alert), "expected `{alert}`, got: {error}");
}

#[tokio::test]
async fn spoofing_without_an_svid_is_refused_at_the_handshake() {
    let server = TestServer::start().await;
    assert_handshake_refused(&server, None, NO_CERTIFICATE).await;
}

#[tokio::test]
async fn spoofing_with_an_svid_from_a_ca_outside_the_bundle_is_refused() {
    let server = TestServer::start().await;
    // Same trust domain name, same SPIFFE ID, another CA.
    let rogue = TestCa::new(TRUST_DOMAIN);
    assert_handshake_refused(
        &server,
        Some(&rogue.svid("/agents/patcher")),
        BAD_CERTIFICATE,
    )
    .await;
    // A trust domain nobody federated with.
    let stranger = TestCa::new("evil.example");
    assert_handshake_refused(
        &server,
        Some(&stranger.svid("/agents/patcher")),
        BAD_CERTIFICATE,
    )
    .await;
}

#[tokio::test]
async fn spoofing_our_ids_with_a_federated_trust_domains_ca_is_refused() {
    let partner = TestCa::new("partner.example");
    let server = TestServer::start_with(Setup {
        extra_bundles: vec![(partner.td(), partner.cert.clone())],
        ..Setup::default()
    })
    .await;
    // The partner's CA is trusted for the partner's own IDs...
    let own = partner.svid("/agents/helper");
    assert!(
        ask(&server, Some(&own)).await.is_ok(),
        "a federated SVID for its own trust domain must be accepted"
    );
    // ...never for ours: the chain is checked against the bundle of the
    // trust domain the ID names.
    let forged = partner.leaf("spiffe://mandate.local/agents/patcher", Flaw::None);
    assert_handshake_refused(&server, Some(&forged), BAD_CERTIFICATE).await;
}

#[tokio::test]
async fn spoofing_another_agent_by_presenting_its_token_is_denied() {
    let server = TestServer::start().await;
    let task = patcher_task(&server).await;
    let mut patcher = party(&server, "/agents/patcher").await;
    let stolen = token(&mut patcher, &task.id).await;
    assert_allowed(
        &call(&mut patcher, &stolen, "write", "repo:acme/payments").await,
        "the patcher with its own token",
    );
    // The reviewer has a good SVID of its own, and the patcher's token.
    let mut reviewer = party(&server, "/agents/reviewer").await;
    let r = call(&mut reviewer, &stolen, "write", "repo:acme/payments").await;
    assert_denied(
        &r,
        "token-subject-mismatch",
        "the reviewer with the patcher's token",
    );
    assert!(r.determining_policies.is_empty(), "no policy ran: {r:?}");
}

#[tokio::test]
async fn spoofing_through_request_fields_is_ignored_or_denied() {
    let server = TestServer::start().await;
    let task = patcher_task(&server).await;
    let patcher_svid = server.ca.svid("/agents/patcher");
    let mut patcher = party_for(&server, &patcher_svid).await;
    let patcher_token = token(&mut patcher, &task.id).await;

    // A workload claims the patcher's identity in metadata: the principal
    // still comes from its certificate, and a workload gets nothing an
    // agent gets.
    let mut billing = party(&server, "/services/billing").await;
    let mut request = tonic::Request::new(AuthorizeRequest {
        action: "read".into(),
        resource: Some(Resource {
            r#type: String::new(),
            id: "repo:acme/payments".into(),
        }),
        ..Default::default()
    });
    for header in ["x-spiffe-id", "x-forwarded-client-cert"] {
        request
            .metadata_mut()
            .insert(header, format!("URI={PATCHER}").parse().unwrap());
    }
    let r = billing.authz.authorize(request).await.unwrap().into_inner();
    assert_denied(
        &r,
        "no-permit",
        "a workload claiming to be the patcher in metadata",
    );

    // A workload that is no enforcement point names the patcher as the
    // subject of its question, with the patcher's certificate and token.
    let on_behalf = AuthorizeRequest {
        action: "write".into(),
        resource: Some(Resource {
            r#type: String::new(),
            id: "repo:acme/payments".into(),
        }),
        token: patcher_token,
        subject: Some(Subject {
            spiffe_id: PATCHER.into(),
            certificate_pem: patcher_svid.cert_pem.clone(),
        }),
        ..Default::default()
    };
    let r = billing
        .authz
        .authorize(on_behalf.clone())
        .await
        .unwrap()
        .into_inner();
    assert_denied(
        &r,
        "not-an-enforcement-point",
        "a workload asking on behalf of the patcher",
    );
    // The control: the example Envoy may ask that very question.
    let mut envoy = party(&server, "/workloads/envoy").await;
    let r = envoy.authz.authorize(on_behalf).await.unwrap().into_inner();
    assert_allowed(&r, "the enforcement point asking for the patcher");
}
