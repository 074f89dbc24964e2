//! Crash safety with the real binary: `mandate serve` acknowledges writes,
//! is killed with SIGKILL (no shutdown, no flush), restarts on the same
//! data dir, and every acknowledged write is there: tasks, a revocation
//! (decisions on the revoked task deny), a completion and an approval.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::TestCa;
use common::party::{PATCHER, Party, call, scope, token};
use mandate::api::v1::{
    ApprovalState, CompleteTaskRequest, CreateTaskRequest, DecideApprovalRequest, Decision,
    GetTaskRequest, ListApprovalsRequest, RevokeTaskRequest, TaskState,
};

/// `mandate serve` running, its stderr followed line by line.
struct Served {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

/// `mandate serve` in `dir` with the test PKI and `extra` flags.
fn serve(dir: &Path, extra: &[&str]) -> Command {
    let repo = common::repo();
    let mut command = common::cli::mandate();
    command
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .args(["--data-dir", "data"])
        .arg("--policies")
        .arg(repo.join("policies"))
        .arg("--schema")
        .arg(repo.join("schemas/mandate.cedarschema"))
        .arg("--catalog")
        .arg(repo.join("examples/catalog.toml"))
        .args(["--svid-cert", "server.pem", "--svid-key", "server.key"])
        .args(["--trust-bundle", "mandate.local=bundle.pem"])
        .args(extra)
        .current_dir(dir);
    command
}

impl Served {
    fn start(dir: &Path) -> Self {
        Self::start_with(dir, &[])
    }

    fn start_with(dir: &Path, extra: &[&str]) -> Self {
        let mut child = serve(dir, extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (sender, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = sender.send(strip_ansi(&line));
            }
        });
        let mut served = Self {
            child,
            lines,
            seen: Vec::new(),
        };
        served.wait_for("serving");
        served
    }

    fn wait_for(&mut self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(line) = self.seen.iter().find(|l| l.contains(text)) {
                return line.clone();
            }
            let line = self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| panic!("never logged `{text}`: {:?}", self.seen));
            self.seen.push(line);
        }
    }

    /// The gRPC address from the `serving` line.
    fn addr(&mut self) -> String {
        let line = self.wait_for("serving");
        let start = line.find("grpc=").unwrap() + "grpc=".len();
        line[start..].split_whitespace().next().unwrap().to_owned()
    }

    /// SIGKILL: the process gets no chance to flush or shut down.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

async fn create(frontend: &mut Party) -> (String, u64) {
    let response = frontend
        .tasks
        .create_task(CreateTaskRequest {
            intent: "fix the payments build".into(),
            delegatee: PATCHER.into(),
            on_behalf_of: "alice".into(),
            scope: Some(scope(&["read", "delete"], &["repos"], 1, 3600)),
        })
        .await
        .unwrap()
        .into_inner();
    (response.task.unwrap().id, response.revision)
}

async fn state_of(party: &mut Party, task: &str) -> TaskState {
    let task = party
        .tasks
        .get_task(GetTaskRequest {
            task_id: task.into(),
        })
        .await
        .unwrap()
        .into_inner();
    TaskState::try_from(task.state).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_write_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("mandate.local");
    ca.svid("/mandate").write(dir.path(), "server");
    std::fs::write(dir.path().join("bundle.pem"), &ca.pem).unwrap();
    let (frontend_leaf, patcher_leaf) =
        (ca.svid("/workloads/frontend"), ca.svid("/agents/patcher"));

    let mut served = Served::start(dir.path());
    let addr = served.addr();
    let mut frontend = Party::connect(&ca, &frontend_leaf, &addr).await;
    let mut patcher = Party::connect(&ca, &patcher_leaf, &addr).await;
    let (kept, _) = create(&mut frontend).await;
    let (revoked, _) = create(&mut frontend).await;
    let (completed, _) = create(&mut frontend).await;
    let kept_token = token(&mut patcher, &kept).await;
    let revoked_token = token(&mut patcher, &revoked).await;
    let allowed = call(&mut patcher, &revoked_token, "read", "repo:acme/payments").await;
    assert_eq!(allowed.decision, Decision::Allow as i32, "{allowed:?}");
    let revoke = frontend
        .tasks
        .revoke_task(RevokeTaskRequest {
            task_id: revoked.clone(),
            reason: "user cancelled".into(),
        })
        .await
        .unwrap()
        .into_inner();
    patcher
        .tasks
        .complete_task(CompleteTaskRequest {
            task_id: completed.clone(),
        })
        .await
        .unwrap();
    // A decision asks for the approval; a human grants it.
    let asked = call(&mut patcher, &kept_token, "delete", "repo:acme/payments").await;
    assert_eq!(asked.decision, Decision::NeedsApproval as i32, "{asked:?}");
    let decided = frontend
        .approvals
        .decide_approval(DecideApprovalRequest {
            approval_id: asked.approval_id.clone(),
            approve: true,
            valid_for_seconds: 600,
            approver: "alice".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(decided.revision > revoke.revision);

    served.kill();
    drop((frontend, patcher));

    let mut served = Served::start(dir.path());
    let loaded = served.wait_for("state loaded from the store");
    assert!(loaded.contains("tasks=3"), "{loaded}");
    assert!(
        loaded.contains(&format!("revision={}", decided.revision)),
        "{loaded}"
    );
    let addr = served.addr();
    let mut frontend = Party::connect(&ca, &frontend_leaf, &addr).await;
    let mut patcher = Party::connect(&ca, &patcher_leaf, &addr).await;
    assert_eq!(state_of(&mut frontend, &kept).await, TaskState::Active);
    assert_eq!(state_of(&mut frontend, &revoked).await, TaskState::Revoked);
    assert_eq!(
        state_of(&mut frontend, &completed).await,
        TaskState::Completed
    );
    // The revoked task's token (its signing key is under the data dir
    // too) is refused because the task is revoked, not for the key.
    let denied = call(&mut patcher, &revoked_token, "read", "repo:acme/payments").await;
    assert_eq!(denied.decision, Decision::Deny as i32, "{denied:?}");
    assert!(
        denied
            .determining_policies
            .iter()
            .any(|p| p == "mandate.guard.task-not-active"),
        "{denied:?}"
    );
    assert!(denied.revision >= decided.revision);
    // The approval survived and still lifts the forbid.
    let approvals = frontend
        .approvals
        .list_approvals(ListApprovalsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .approvals;
    let approval = approvals
        .iter()
        .find(|a| a.id == asked.approval_id)
        .unwrap();
    assert_eq!(approval.state, ApprovalState::Approved as i32);
    let lifted = call(&mut patcher, &kept_token, "delete", "repo:acme/payments").await;
    assert_eq!(lifted.decision, Decision::Allow as i32, "{lifted:?}");
    // Writes go on after the last acknowledged revision.
    let (_, next) = create(&mut frontend).await;
    assert_eq!(next, decided.revision + 1);
    served.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_keys_sealed_in_the_store_survive_sigkill_and_need_their_key() {
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("mandate.local");
    ca.svid("/mandate").write(dir.path(), "server");
    std::fs::write(dir.path().join("bundle.pem"), &ca.pem).unwrap();
    let key = base64::engine::general_purpose::STANDARD.encode([42u8; 32]);
    std::fs::write(dir.path().join("store.key"), &key).unwrap();
    let with_key = ["--store-key-file", "store.key"];
    let (frontend_leaf, patcher_leaf) =
        (ca.svid("/workloads/frontend"), ca.svid("/agents/patcher"));

    let mut served = Served::start_with(dir.path(), &with_key);
    let addr = served.addr();
    let mut frontend = Party::connect(&ca, &frontend_leaf, &addr).await;
    let mut patcher = Party::connect(&ca, &patcher_leaf, &addr).await;
    let (task, _) = create(&mut frontend).await;
    let token = token(&mut patcher, &task).await;
    served.kill();
    drop((frontend, patcher));
    assert!(
        !dir.path().join("data/keys").exists(),
        "signing keys live in the store, not in files"
    );

    // The token minted before the crash still verifies: its key came
    // back from the store.
    let mut served = Served::start_with(dir.path(), &with_key);
    let addr = served.addr();
    let mut patcher = Party::connect(&ca, &patcher_leaf, &addr).await;
    let r = call(&mut patcher, &token, "read", "repo:acme/payments").await;
    assert_eq!(r.decision, Decision::Allow as i32, "{r:?}");
    served.kill();

    // Another sealing key cannot open them: start-up refuses.
    let other = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    std::fs::write(dir.path().join("store.key"), other).unwrap();
    let output = serve(dir.path(), &with_key).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("wrong sealing key"), "{stderr}");
}
