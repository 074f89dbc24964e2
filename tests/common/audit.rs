//! Helpers for the audit tests: parties with the task, authorization and
//! audit clients on one SVID, a three-level chain's steps, `/metrics`
//! scrapes, and waiting for the audit writer.

use std::time::{Duration, Instant};

use mandate::api::v1::audit_service_client::AuditServiceClient;
use mandate::api::v1::authorization_service_client::AuthorizationServiceClient;
use mandate::api::v1::task_service_client::TaskServiceClient;
use mandate::api::v1::{
    DelegateTaskRequest, GetTaskTrailRequest, IssueTaskTokenRequest, TaskScope, trail_entry::Entry,
};
use tonic::transport::Channel;

use super::TestServer;

pub const PATCHER: &str = "spiffe://mandate.local/agents/patcher";
pub const REVIEWER: &str = "spiffe://mandate.local/agents/reviewer";
pub const TESTER: &str = "spiffe://mandate.local/agents/tester";

pub struct Party {
    pub tasks: TaskServiceClient<Channel>,
    pub authz: AuthorizationServiceClient<Channel>,
    pub audit: AuditServiceClient<Channel>,
}

pub async fn party(server: &TestServer, path: &str) -> Party {
    let channel = server.channel(path).await;
    Party {
        tasks: TaskServiceClient::new(channel.clone()),
        authz: AuthorizationServiceClient::new(channel.clone()),
        audit: AuditServiceClient::new(channel),
    }
}

pub fn scope(actions: &[&str], resources: &[&str]) -> TaskScope {
    TaskScope {
        actions: actions.iter().map(|s| (*s).to_owned()).collect(),
        resources: resources.iter().map(|s| (*s).to_owned()).collect(),
        max_sensitivity: 1,
        expires_at: 0,
        ttl_seconds: 3600,
    }
}

pub async fn delegate(
    party: &mut Party,
    parent: &str,
    delegatee: &str,
    actions: &[&str],
) -> String {
    party
        .tasks
        .delegate_task(DelegateTaskRequest {
            parent_id: parent.into(),
            intent: format!("help with {parent}"),
            delegatee: delegatee.into(),
            scope: Some(scope(actions, &["repos"])),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap()
        .id
}

pub async fn token(party: &mut Party, task: &str) -> String {
    party
        .tasks
        .issue_task_token(IssueTaskTokenRequest {
            task_id: task.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .token
}

/// One call; returns its decision id and whether it was allowed.
pub async fn call(party: &mut Party, token: &str, action: &str) -> (String, bool) {
    let r = super::call(&mut party.authz, token, action, "repo:acme/payments").await;
    (
        r.decision_id,
        r.decision == mandate::api::v1::Decision::Allow as i32,
    )
}

/// `(kind, task id, decision id)` of a trail: kind is the event name or
/// `allow`/`deny`.
pub type Step = (String, String, String);

pub async fn trail(admin: &mut Party, root: &str) -> Vec<Step> {
    let response = admin
        .audit
        .get_task_trail(GetTaskTrailRequest {
            root_task_id: root.into(),
        })
        .await
        .unwrap()
        .into_inner();
    response
        .entries
        .into_iter()
        .filter_map(|e| e.entry)
        .map(|e| match e {
            Entry::Event(e) => (e.event, e.task_id, String::new()),
            Entry::Decision(d) => (d.decision, d.task_id, d.decision_id),
        })
        .collect()
}

/// Waits until `check` holds (the writer thread indexes asynchronously).
pub async fn eventually<F: std::future::Future<Output = bool>>(mut check: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "condition not met in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The same connection's clients, for a closure.
pub fn party_clone(party: &Party) -> Party {
    Party {
        tasks: party.tasks.clone(),
        authz: party.authz.clone(),
        audit: party.audit.clone(),
    }
}

/// `GET /metrics`.
pub async fn scrape(server: &TestServer) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(server.server.http_addr())
        .await
        .unwrap();
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_owned())
}

/// The value of the sample named exactly `series` (with its labels), 0
/// when absent.
pub async fn metric(server: &TestServer, series: &str) -> f64 {
    let text = scrape(server).await;
    text.lines()
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().unwrap())
        })
        .unwrap_or(0.0)
}
