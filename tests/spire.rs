//! Mandate against a SPIRE agent: the test agent in `common::workload_api`
//! speaks the SPIFFE Workload API over a Unix socket; Mandate is the real
//! server, its identity from the `workload-api` source. Rotation, bad
//! material, the agent going away and coming back (federation is in
//! `spire_federation.rs`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

#[macro_use]
mod common;

use std::time::Duration;

use common::workload_api::{
    SECURITY_HEADER, TestAgent, pb, raw_client, socket, start, svid_response,
};
use common::{Flaw, TRUST_DOMAIN, TestCa, client_identity, readyz, try_call};
use mandate::identity::{IdentityFeed, TrustPolicy};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

const MANDATE_ID: &str = "spiffe://mandate.local/mandate";

fn refused_updates(feed: &IdentityFeed) -> u64 {
    feed.status.report(&feed.watch.borrow(), 0).refused_updates
}

#[tokio::test]
async fn the_test_agent_speaks_the_workload_api_and_requires_its_header() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(TRUST_DOMAIN);
    let first = ca.svid("/mandate");
    let agent = TestAgent::start(
        &socket(&dir),
        svid_response(MANDATE_ID, &first, &[&ca], &[]),
    )
    .await;
    let mut client = raw_client(agent.path()).await;
    let refused = client
        .fetch_x509svid(pb::X509svidRequest {})
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");

    let mut request = tonic::Request::new(pb::X509svidRequest {});
    request
        .metadata_mut()
        .insert(SECURITY_HEADER, "true".parse().unwrap());
    let mut stream = client.fetch_x509svid(request).await.unwrap().into_inner();
    let response = stream.message().await.unwrap().unwrap();
    assert_eq!(response.svids[0].spiffe_id, MANDATE_ID);
    assert_eq!(response.svids[0].x509_svid, first.cert.to_vec());
    // A push reaches the open stream.
    let second = ca.svid("/mandate");
    agent.push(svid_response(MANDATE_ID, &second, &[&ca], &[]));
    let response = stream.message().await.unwrap().unwrap();
    assert_eq!(response.svids[0].x509_svid, second.cert.to_vec());
}

#[tokio::test]
async fn a_rotation_to_a_new_ca_keeps_serving_and_keeps_open_connections() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(TRUST_DOMAIN);
    let agent = TestAgent::start(
        &socket(&dir),
        svid_response(MANDATE_ID, &ca.svid("/mandate"), &[&ca], &[]),
    )
    .await;
    let (server, feed) = start(&agent, ca, TrustPolicy::own_only()).await;
    assert!(agent.calls() >= 1);
    // Every call carried the `workload.spiffe.io` header.
    assert_eq!(agent.calls_without_header(), 0);
    // This client trusts only the first CA: after the rotation it could
    // not complete a new handshake, so its calls prove the connection
    // stayed up.
    let mut open = server.client("/workloads/envoy").await;
    common::call(&mut open, "", "read", "handbook").await;

    let new_ca = TestCa::new(TRUST_DOMAIN);
    // The bundle keeps the old CA while its SVIDs are still out there.
    agent.push(svid_response(
        MANDATE_ID,
        &new_ca.svid("/mandate"),
        &[&server.ca, &new_ca],
        &[],
    ));
    eventually!("the rotation is published", feed.status.rotations() == 1);

    let trusts_old_ca_only = server.ca.identity(&server.ca.svid("/workloads/envoy"));
    let error = try_call(&server.addr, &trusts_old_ca_only)
        .await
        .expect_err("new handshakes must present the new SVID");
    assert!(error.contains("cannot connect"), "{error}");
    let new_client = client_identity(&new_ca.svid("/workloads/envoy"), &[&new_ca]);
    try_call(&server.addr, &new_client).await.unwrap();
    let old_svid_new_trust = client_identity(&server.ca.svid("/agents/patcher"), &[&new_ca]);
    try_call(&server.addr, &old_svid_new_trust).await.unwrap();
    common::call(&mut open, "", "read", "handbook").await;

    let (code, body) = readyz(&server).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["identity"]["source"], "workload-api");
    assert_eq!(body["identity"]["rotations"], 1);
    assert_eq!(body["identity"]["spiffe_id"], MANDATE_ID);
    assert_eq!(body["identity"]["svid_valid"], true);
}

async fn health(client: &mut HealthClient<tonic::transport::Channel>) -> ServingStatus {
    let response = client
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    ServingStatus::try_from(response.status).unwrap()
}

#[tokio::test]
async fn without_the_agent_the_last_svid_is_kept_until_it_expires() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(TRUST_DOMAIN);
    let mut agent = TestAgent::start(
        &socket(&dir),
        svid_response(MANDATE_ID, &ca.svid("/mandate"), &[&ca], &[]),
    )
    .await;
    let (server, feed) = start(&agent, ca, TrustPolicy::own_only()).await;

    // The socket disappears: Mandate keeps serving what it has.
    agent.stop().await;
    assert!(!agent.path().exists());
    let client = server.ca.identity(&server.ca.svid("/workloads/envoy"));
    try_call(&server.addr, &client).await.unwrap();
    assert_eq!(readyz(&server).await.0, 200);

    // It comes back on the same path with a short-lived SVID.
    let short = server.ca.svid_for("/mandate", Duration::from_secs(6));
    agent.push(svid_response(MANDATE_ID, &short, &[&server.ca], &[]));
    agent.restart().await;
    eventually!("the new SVID is taken", feed.status.rotations() == 1);
    // The lost connection shows in `/readyz`.
    let (_, body) = readyz(&server).await;
    let connection = &body["identity"]["workload_api"];
    assert!(connection["reconnects"].as_u64().unwrap() >= 1, "{body}");
    assert!(
        connection["errors"]
            .as_object()
            .is_some_and(|e| !e.is_empty()),
        "{body}"
    );
    let mut health_client = HealthClient::new(server.channel("/workloads/envoy").await);
    assert_eq!(health(&mut health_client).await, ServingStatus::Serving);

    // Gone again; the SVID runs out: not serving, not ready. Health reads
    // the server's clock, moved here; `/readyz` reads the system clock.
    agent.stop().await;
    server.clock.advance(10);
    eventually!(
        "health reports NOT_SERVING",
        health(&mut health_client).await == ServingStatus::NotServing
    );
    eventually!("/readyz reports 503", readyz(&server).await.0 == 503);
    let (code, body) = readyz(&server).await;
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["identity"]["svid_valid"], false);
    assert_eq!(body["ready"], false);

    // Back with a valid SVID: serving again, on the same connection.
    agent.push(svid_response(
        MANDATE_ID,
        &server.ca.svid("/mandate"),
        &[&server.ca],
        &[],
    ));
    agent.restart().await;
    eventually!(
        "health reports SERVING again",
        health(&mut health_client).await == ServingStatus::Serving
    );
    assert_eq!(readyz(&server).await.0, 200);
}

#[tokio::test]
async fn bad_material_from_the_agent_is_refused_and_the_last_good_kept() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(TRUST_DOMAIN);
    let agent = TestAgent::start(
        &socket(&dir),
        svid_response(MANDATE_ID, &ca.svid("/mandate"), &[&ca], &[]),
    )
    .await;
    let (server, feed) = start(&agent, ca, TrustPolicy::own_only()).await;
    let client = server.ca.identity(&server.ca.svid("/workloads/envoy"));

    // Signed by a CA its own bundle does not hold.
    let stranger = TestCa::new(TRUST_DOMAIN);
    agent.push(svid_response(
        MANDATE_ID,
        &stranger.svid("/mandate"),
        &[&server.ca],
        &[],
    ));
    eventually!(
        "the stranger's SVID is refused",
        refused_updates(&feed) == 1
    );
    // Expired.
    let expired = server.ca.leaf(MANDATE_ID, Flaw::Expired);
    agent.push(svid_response(MANDATE_ID, &expired, &[&server.ca], &[]));
    eventually!("the expired SVID is refused", refused_updates(&feed) == 2);
    assert_eq!(feed.status.rotations(), 0);
    try_call(&server.addr, &client).await.unwrap();
    let (code, body) = readyz(&server).await;
    assert_eq!(code, 200, "{body}");
    assert!(
        body["identity"]["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("SVID"),
        "{body}"
    );

    // A good one is taken again and clears the error.
    agent.push(svid_response(
        MANDATE_ID,
        &server.ca.svid("/mandate"),
        &[&server.ca],
        &[],
    ));
    eventually!("the good SVID is taken", feed.status.rotations() == 1);
    let (_, body) = readyz(&server).await;
    assert!(body["identity"]["last_error"].is_null(), "{body}");
    try_call(&server.addr, &client).await.unwrap();
}
