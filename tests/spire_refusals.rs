//! What Mandate refuses from a SPIRE agent, and from its callers as their
//! SVIDs go stale: an update without our own bundle, a new SPIFFE ID for
//! us, the agent withdrawing our identity, a first SVID that cannot be
//! served, and calls on open connections whose peer's SVID has expired or
//! no longer verifies.

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
use std::time::{Duration, Instant};

use common::workload_api::{TestAgent, pb, socket, start, svid_response};
use common::{TRUST_DOMAIN, TestCa, client_identity, readyz, try_call};
use mandate::clock::Clock;
use mandate::graph::{TaskSpec, TaskState};
use mandate::identity::{
    FollowOptions, IdentityError, IdentityFeed, IdentitySource, SpiffeId, TrustPolicy,
    WorkloadApiSource,
};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

const MANDATE_ID: &str = "spiffe://mandate.local/mandate";

fn refused_updates(feed: &IdentityFeed) -> u64 {
    feed.status.report(&feed.watch.borrow(), 0).refused_updates
}

async fn health(client: &mut HealthClient<tonic::transport::Channel>) -> Result<i32, Code> {
    client
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map(|response| response.into_inner().status)
        .map_err(|status| status.code())
}

#[tokio::test]
async fn an_update_without_our_own_bundle_is_refused_and_revokes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(TRUST_DOMAIN);
    let partner = TestCa::new("partner.example");
    let svid = ca.svid("/mandate");
    let agent = TestAgent::start(
        &socket(&dir),
        svid_response(MANDATE_ID, &svid, &[&ca], &[&partner]),
    )
    .await;
    let trust = TrustPolicy::allow([ca.td(), partner.td()]);
    let (server, feed) = start(&agent, ca, trust).await;
    let now = server.clock.now();
    server
        .graph
        .create_root(
            "our-task".into(),
            TaskSpec {
                intent: "fix the build".into(),
                delegatee: SpiffeId::new("spiffe://mandate.local/agents/patcher").unwrap(),
                actions: BTreeSet::from(["read".to_owned()]),
                scope: BTreeSet::from(["repo:acme/payments".to_owned()]),
                max_sensitivity: 1,
                expires_at: now + 3600,
            },
            SpiffeId::new("spiffe://mandate.local/workloads/frontend").unwrap(),
            "alice".into(),
            now,
        )
        .unwrap();

    // A federated entry named after our own trust domain, with no CA: the
    // `spiffe` crate lets it replace the bundle that came with our SVID.
    let mut response = svid_response(MANDATE_ID, &svid, &[&server.ca], &[&partner]);
    response
        .federated_bundles
        .insert(format!("spiffe://{TRUST_DOMAIN}"), Vec::new());
    agent.push(response);
    eventually!("the update is refused", refused_updates(&feed) == 1);
    let (code, body) = readyz(&server).await;
    assert_eq!(code, 200, "{body}");
    let message = body["identity"]["last_error"]["message"].as_str().unwrap();
    assert!(
        message.contains("no bundle for our own trust domain `mandate.local`"),
        "{message}"
    );
    // Our callers are still accepted and our agents keep their tasks.
    let our_client = server.ca.identity(&server.ca.svid("/workloads/envoy"));
    try_call(&server.addr, &our_client).await.unwrap();
    assert_eq!(body["identity"]["withdrawals"], serde_json::json!([]));
    assert_eq!(
        server.graph.get("our-task").unwrap().state_at(now),
        TaskState::Active
    );
}

#[tokio::test]
async fn a_new_spiffe_id_for_us_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(TRUST_DOMAIN);
    let agent = TestAgent::start(
        &socket(&dir),
        svid_response(MANDATE_ID, &ca.svid("/mandate"), &[&ca], &[]),
    )
    .await;
    let (server, feed) = start(&agent, ca, TrustPolicy::own_only()).await;
    let renamed = "spiffe://mandate.local/other";
    agent.push(svid_response(
        renamed,
        &server.ca.svid("/other"),
        &[&server.ca],
        &[],
    ));
    eventually!("the new ID is refused", refused_updates(&feed) == 1);
    assert_eq!(feed.watch.borrow().spiffe_id.to_string(), MANDATE_ID);
    let (_, body) = readyz(&server).await;
    let message = body["identity"]["last_error"]["message"].as_str().unwrap();
    assert!(message.contains(renamed), "{message}");
}

#[tokio::test]
async fn an_identity_the_agent_withdraws_is_not_served_until_issued_again() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(TRUST_DOMAIN);
    let agent = TestAgent::start(
        &socket(&dir),
        svid_response(MANDATE_ID, &ca.svid("/mandate"), &[&ca], &[]),
    )
    .await;
    let (server, _feed) = start(&agent, ca, TrustPolicy::own_only()).await;
    let mut health_client = HealthClient::new(server.channel("/workloads/envoy").await);
    let serving = Ok(ServingStatus::Serving as i32);
    assert_eq!(health(&mut health_client).await, serving);

    // Mandate's registration entry is deleted: the agent says so.
    agent.deny();
    eventually!(
        "health reports NOT_SERVING",
        health(&mut health_client).await == Ok(ServingStatus::NotServing as i32)
    );
    let (code, body) = readyz(&server).await;
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["identity"]["svid_valid"], false);
    assert!(body["identity"]["withdrawn_by_agent"].is_string(), "{body}");

    // The entry is back.
    agent.push(svid_response(
        MANDATE_ID,
        &server.ca.svid("/mandate"),
        &[&server.ca],
        &[],
    ));
    eventually!(
        "health reports SERVING again",
        health(&mut health_client).await == serving
    );
    let (code, body) = readyz(&server).await;
    assert_eq!(code, 200, "{body}");
    assert!(body["identity"]["withdrawn_by_agent"].is_null(), "{body}");
}

fn source(agent: &TestAgent, startup_timeout: Duration) -> IdentitySource {
    IdentitySource::WorkloadApi(WorkloadApiSource {
        startup_timeout,
        min_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        ..WorkloadApiSource::new(agent.endpoint())
    })
}

#[tokio::test]
async fn start_up_waits_for_a_first_svid_that_can_be_served() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(TRUST_DOMAIN);
    let stranger = TestCa::new(TRUST_DOMAIN);
    let refused: pb::X509svidResponse =
        svid_response(MANDATE_ID, &stranger.svid("/mandate"), &[&ca], &[]);
    let agent = TestAgent::start(&socket(&dir), refused.clone()).await;

    // Never a good one: refused after the whole timeout, as an agent error.
    let started = Instant::now();
    let error = source(&agent, Duration::from_secs(1))
        .follow(&FollowOptions::default())
        .await
        .unwrap_err();
    assert!(started.elapsed() >= Duration::from_secs(1), "{error}");
    assert!(matches!(error, IdentityError::WorkloadApi(_)), "{error}");
    assert!(
        error
            .to_string()
            .contains("does not verify against our own bundle"),
        "{error}"
    );

    // A good one arrives in time: taken.
    let follow = tokio::spawn({
        let source = source(&agent, Duration::from_secs(10));
        async move { source.follow(&FollowOptions::default()).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let good = ca.svid("/mandate");
    agent.push(svid_response(MANDATE_ID, &good, &[&ca], &[]));
    let feed = follow.await.unwrap().unwrap();
    assert_eq!(feed.watch.borrow().chain[0], good.cert);
    assert_eq!(agent.calls_without_header(), 0);
}

#[tokio::test]
async fn calls_on_an_open_connection_stop_when_the_peers_svid_goes_stale() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(TRUST_DOMAIN);
    let agent = TestAgent::start(
        &socket(&dir),
        svid_response(MANDATE_ID, &ca.svid("/mandate"), &[&ca], &[]),
    )
    .await;
    let (server, feed) = start(&agent, ca, TrustPolicy::own_only()).await;

    // Its CA leaves a bundle that stays: refused on the open connection.
    let mut open = server.client("/workloads/envoy").await;
    common::call(&mut open, "", "read", "handbook").await;
    let new_ca = TestCa::new(TRUST_DOMAIN);
    agent.push(svid_response(
        MANDATE_ID,
        &new_ca.svid("/mandate"),
        &[&new_ca],
        &[],
    ));
    eventually!("the rotation is published", feed.status.rotations() == 1);
    let status = open
        .authorize(mandate::api::v1::AuthorizeRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(
        status.message().contains("no longer verifies"),
        "{status:?}"
    );

    // Its SVID expires while the connection stays open: refused, on every
    // service (health included).
    let leaf = new_ca.svid("/workloads/envoy");
    let identity = client_identity(&leaf, &[&new_ca]);
    let channel = mandate::client::channel(&server.addr, &identity, None)
        .await
        .unwrap();
    let mut health_client = HealthClient::new(channel.clone());
    let mut tasks = mandate::api::v1::task_service_client::TaskServiceClient::new(channel.clone());
    let mut client =
        mandate::api::v1::authorization_service_client::AuthorizationServiceClient::new(channel);
    common::call(&mut client, "", "read", "handbook").await;
    assert!(health(&mut health_client).await.is_ok());
    server.clock.advance(2 * 86_400);
    let status = client
        .authorize(mandate::api::v1::AuthorizeRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("expired"), "{status:?}");
    assert_eq!(health(&mut health_client).await, Err(Code::Unauthenticated));
    let status = tasks
        .list_tasks(mandate::api::v1::ListTasksRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
}
