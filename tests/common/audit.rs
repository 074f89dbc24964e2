//! Helpers for the audit tests: a three-level chain's steps, `/metrics`
//! scrapes, and waiting for the audit writer; the parties, scopes and
//! tokens are [`super::party`]'s.

use std::time::{Duration, Instant};

use mandate::api::v1::{GetTaskTrailRequest, trail_entry::Entry};

use super::TestServer;
#[allow(unused_imports, reason = "each test binary uses a different part")]
pub use super::party::{PATCHER, Party, REVIEWER, TESTER, party, root_task, scope, token};

/// `party` delegates `actions` on the repos (internal data, an hour) of
/// `parent` to `delegatee`; returns the new task's id.
pub async fn delegate(
    party: &mut Party,
    parent: &str,
    delegatee: &str,
    actions: &[&str],
) -> String {
    super::party::delegate(
        party,
        parent,
        delegatee,
        scope(actions, &["repos"], 1, 3600),
    )
    .await
    .id
}

/// One call of `action` on `repo:acme/payments`; returns its decision id
/// and whether it was allowed.
pub async fn call_payments(party: &mut Party, token: &str, action: &str) -> (String, bool) {
    let r = super::party::call(party, token, action, "repo:acme/payments").await;
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
