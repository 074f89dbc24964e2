//! Federation through a SPIRE agent: a federated trust domain's bundle
//! appears (its callers are accepted once it is on the allow-list), then is
//! withdrawn (its handshakes and calls are refused, decisions about it deny,
//! and its agents' tasks are revoked unless that is turned off).

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

use common::workload_api::{TestAgent, follow, follow_with, pb, socket, start, svid_response};
use common::{Setup, TRUST_DOMAIN, TestCa, TestServer, client_identity, readyz, try_call};
use mandate::api::v1::{AuthorizeRequest, Resource, Subject};
use mandate::clock::Clock;
use mandate::graph::{TaskSpec, TaskState};
use mandate::identity::{FollowOptions, SpiffeId, TrustPolicy};
use tonic::Code;

const MANDATE_ID: &str = "spiffe://mandate.local/mandate";
const PARTNER_AGENT: &str = "spiffe://partner.example/agents/patcher";

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

    // The audit trail records the revocation, with Mandate as the actor.
    let mut audit = mandate::api::v1::audit_service_client::AuditServiceClient::new(
        server.channel("/workloads/admin").await,
    );
    let request = mandate::api::v1::GetTaskTrailRequest {
        root_task_id: "partner-task".into(),
    };
    eventually!(
        "the revocation is in the trail",
        audit
            .get_task_trail(request.clone())
            .await
            .unwrap()
            .into_inner()
            .entries
            .iter()
            .any(|e| matches!(
                &e.entry,
                Some(mandate::api::v1::trail_entry::Entry::Event(event))
                    if event.event == "task_revoked"
                        && event.actor == MANDATE_ID
                        && event.reason.contains("partner.example")
                        && event.revoked_task_ids == ["partner-task"]
            ))
    );
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

#[tokio::test]
async fn a_bundle_back_within_the_grace_period_revokes_nothing() {
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
    let grace = Duration::from_secs(2);
    let options = FollowOptions {
        trust: TrustPolicy::allow([ca.td(), partner.td()]),
        withdrawal_grace: grace,
        ..FollowOptions::default()
    };
    let feed = follow_with(&agent, options).await;
    let server = TestServer::start_with(Setup {
        identity: Some((ca, feed)),
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
    let partner_client = client_identity(&partner.svid("/agents/patcher"), &[&partner, &server.ca]);
    let state = || server.graph.get("partner-task").unwrap().state_at(now);

    // One update without the partner's bundle, the next with it: its
    // callers are refused meanwhile, its tasks are kept.
    agent.push(federation(&svid, &server.ca, None, &other));
    eventually!(
        "the partner is refused",
        try_call(&server.addr, &partner_client).await.is_err()
    );
    agent.push(federation(&svid, &server.ca, Some(&partner), &other));
    eventually!(
        "the partner is accepted again",
        try_call(&server.addr, &partner_client).await.is_ok()
    );
    tokio::time::sleep(grace + Duration::from_secs(1)).await;
    assert_eq!(state(), TaskState::Active);
    let (_, body) = readyz(&server).await;
    assert_eq!(body["identity"]["withdrawals"], serde_json::json!([]));

    // Gone for good: revoked once the grace period is over, not before.
    let withdrawn = Instant::now();
    agent.push(federation(&svid, &server.ca, None, &other));
    eventually!(
        "the partner's task is revoked",
        state() == TaskState::Revoked
    );
    assert!(withdrawn.elapsed() >= grace - Duration::from_millis(500));
}
