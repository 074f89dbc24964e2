//! Mandate against a SPIRE agent: the test agent in `common::workload_api`
//! speaks the SPIFFE Workload API over a Unix socket; Mandate is the real
//! server, its identity from the `workload-api` source. Rotation, bundle
//! federation and withdrawal, the agent going away and coming back.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

#[macro_use]
mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::workload_api::{SECURITY_HEADER, TestAgent, pb, raw_client, svid_response};
use common::{Flaw, Setup, TRUST_DOMAIN, TestCa, TestServer, client_identity, readyz, try_call};
use mandate::api::v1::{AuthorizeRequest, Resource, Subject};
use mandate::clock::Clock;
use mandate::graph::{TaskSpec, TaskState};
use mandate::identity::{
    FollowOptions, IdentityFeed, IdentitySource, SpiffeId, TrustPolicy, WorkloadApiSource,
};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

const MANDATE_ID: &str = "spiffe://mandate.local/mandate";
const PARTNER_AGENT: &str = "spiffe://partner.example/agents/patcher";

/// Mandate's identity from `agent`, reconnecting quickly.
async fn follow(agent: &TestAgent, trust: TrustPolicy) -> IdentityFeed {
    IdentitySource::WorkloadApi(WorkloadApiSource {
        startup_timeout: Duration::from_secs(10),
        min_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        ..WorkloadApiSource::new(agent.endpoint())
    })
    .follow(&FollowOptions { trust, poll: None })
    .await
    .unwrap()
}

async fn start(agent: &TestAgent, ca: TestCa, trust: TrustPolicy) -> (TestServer, IdentityFeed) {
    let feed = follow(agent, trust).await;
    let server = TestServer::start_with(Setup {
        identity: Some((ca, feed.clone())),
        ..Setup::default()
    })
    .await;
    (server, feed)
}

fn socket(dir: &tempfile::TempDir) -> std::path::PathBuf {
    dir.path().join("agent.sock")
}

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

fn task_spec(delegatee: &str, now: i64) -> TaskSpec {
    TaskSpec {
        intent: "fix the build".into(),
        delegatee: SpiffeId::new(delegatee).unwrap(),
        actions: BTreeSet::from(["read".to_owned()]),
        scope: BTreeSet::from(["repo:acme/payments".to_owned()]),
        max_sensitivity: 1,
        expires_at: now + 3600,
    }
}

fn on_behalf_of(subject: &str) -> AuthorizeRequest {
    AuthorizeRequest {
        action: "read".into(),
        resource: Some(Resource {
            r#type: String::new(),
            id: "repo:acme/payments".into(),
        }),
        subject: Some(Subject {
            spiffe_id: subject.into(),
            certificate_pem: String::new(),
        }),
        ..Default::default()
    }
}

/// Serves `svid` with the partner's bundle federated or not, and a bundle
/// for a trust domain that is never on the allow-list.
fn federation(
    svid: &common::Leaf,
    ca: &TestCa,
    partner: Option<&TestCa>,
    other: &TestCa,
) -> pb::X509svidResponse {
    let federated: Vec<&TestCa> = partner.into_iter().chain([other]).collect();
    svid_response(MANDATE_ID, svid, &[ca], &federated)
}

#[tokio::test]
async fn a_federated_bundle_is_trusted_once_listed_and_its_withdrawal_revokes() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(TRUST_DOMAIN);
    let partner = TestCa::new("partner.example");
    let other = TestCa::new("other.example");
    let svid = ca.svid("/mandate");
    let agent = TestAgent::start(&socket(&dir), federation(&svid, &ca, None, &other)).await;
    let trust = TrustPolicy::allow([ca.td(), partner.td()]);
    let (server, _feed) = start(&agent, ca, trust).await;
    let partner_client = client_identity(&partner.svid("/agents/patcher"), &[&partner, &server.ca]);
    let other_client = client_identity(&other.svid("/agents/x"), &[&other, &server.ca]);
    assert!(try_call(&server.addr, &partner_client).await.is_err());
    assert!(try_call(&server.addr, &other_client).await.is_err());
    let (_, body) = readyz(&server).await;
    assert_eq!(
        body["identity"]["trust_domains"],
        serde_json::json!(["mandate.local"])
    );
    assert_eq!(
        body["identity"]["ignored_trust_domains"],
        serde_json::json!(["other.example"])
    );

    // The partner's bundle appears: its callers are accepted; the other
    // trust domain's never are, bundle or not.
    agent.push(federation(&svid, &server.ca, Some(&partner), &other));
    eventually!(
        "the partner is accepted",
        try_call(&server.addr, &partner_client).await.is_ok()
    );
    assert!(try_call(&server.addr, &other_client).await.is_err());

    let now = server.clock.now();
    let frontend = SpiffeId::new("spiffe://mandate.local/workloads/frontend").unwrap();
    for (id, delegatee) in [
        ("partner-task", PARTNER_AGENT),
        ("our-task", "spiffe://mandate.local/agents/patcher"),
    ] {
        server
            .graph
            .create_root(
                id.into(),
                task_spec(delegatee, now),
                frontend.clone(),
                "alice".into(),
                now,
            )
            .unwrap();
    }
    let mut partner_open = mandate::client::connect(&server.addr, &partner_client, None)
        .await
        .unwrap();
    common::call(&mut partner_open, "", "read", "handbook").await;
    let mut envoy = server.client("/workloads/envoy").await;
    let before = envoy
        .authorize(on_behalf_of(PARTNER_AGENT))
        .await
        .unwrap()
        .into_inner();
    assert!(
        !before.reasons.iter().any(|r| r == "untrusted-subject"),
        "{before:?}"
    );

    // Withdrawn: the partner's tasks are revoked, its handshakes and its
    // calls on the open connection refused, and decisions about it deny.
    agent.push(federation(&svid, &server.ca, None, &other));
    eventually!(
        "the partner's task is revoked",
        server.graph.get("partner-task").unwrap().state_at(now) == TaskState::Revoked
    );
    assert_eq!(
        server.graph.get("our-task").unwrap().state_at(now),
        TaskState::Active
    );
    assert!(try_call(&server.addr, &partner_client).await.is_err());
    let mut direct = on_behalf_of(PARTNER_AGENT);
    direct.subject = None;
    let status = partner_open.authorize(direct).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let after = envoy
        .authorize(on_behalf_of(PARTNER_AGENT))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after.reasons, ["untrusted-subject"], "{after:?}");
    let (code, body) = readyz(&server).await;
    assert_eq!(code, 200);
    let withdrawals = &body["identity"]["withdrawals"];
    assert_eq!(withdrawals[0]["trust_domain"], "partner.example", "{body}");
    assert_eq!(withdrawals[0]["revoked_tasks"], 1, "{body}");
}

#[tokio::test]
async fn revocation_on_withdrawal_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(TRUST_DOMAIN);
    let partner = TestCa::new("partner.example");
    let other = TestCa::new("other.example");
    let svid = ca.svid("/mandate");
    let agent = TestAgent::start(
        &socket(&dir),
        federation(&svid, &ca, Some(&partner), &other),
    )
    .await;
    let feed = follow(&agent, TrustPolicy::allow([ca.td(), partner.td()])).await;
    let server = TestServer::start_with(Setup {
        identity: Some((ca, feed)),
        revoke_on_trust_withdrawal: false,
        ..Setup::default()
    })
    .await;
    let now = server.clock.now();
    let frontend = SpiffeId::new("spiffe://mandate.local/workloads/frontend").unwrap();
    server
        .graph
        .create_root(
            "partner-task".into(),
            task_spec(PARTNER_AGENT, now),
            frontend,
            "alice".into(),
            now,
        )
        .unwrap();
    agent.push(federation(&svid, &server.ca, None, &other));
    eventually!(
        "the withdrawal is recorded",
        readyz(&server).await.1["identity"]["withdrawals"][0]["trust_domain"] == "partner.example"
    );
    let (_, body) = readyz(&server).await;
    assert_eq!(body["identity"]["withdrawals"][0]["revoked_tasks"], 0);
    assert_eq!(
        server.graph.get("partner-task").unwrap().state_at(now),
        TaskState::Active
    );
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
    let mut health_client = HealthClient::new(server.channel("/workloads/envoy").await);
    assert_eq!(health(&mut health_client).await, ServingStatus::Serving);

    // Gone again; the SVID runs out: not serving, not ready.
    agent.stop().await;
    eventually!(
        "health reports NOT_SERVING",
        health(&mut health_client).await == ServingStatus::NotServing
    );
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
