//! `mandate authorize` exit codes against a real server: 0 allow, 1 deny,
//! 2 error.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

mod common;

use std::process::Output;

use common::TestServer;
use common::cli::{ClientFiles, expect, mandate, run_as};

async fn authorize(server_addr: &str, files: &ClientFiles, extra: &[&str]) -> Output {
    let args: Vec<&str> = std::iter::once("authorize")
        .chain(extra.iter().copied())
        .collect();
    run_as(files, server_addr, &args).await
}

#[tokio::test(flavor = "multi_thread")]
async fn allow_exits_0_and_prints_the_decision() {
    let server = TestServer::start().await;
    let f = ClientFiles::new(&server, "/agents/patcher");
    let out = authorize(
        &server.addr,
        &f,
        &[
            "--action",
            "read",
            "--resource",
            r#"Mandate::Resource::"handbook""#,
        ],
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("ALLOW"), "{stdout}");
    assert!(stdout.contains("anyone-reads-handbook"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn deny_exits_1_and_json_is_machine_readable() {
    let server = TestServer::start().await;
    let f = ClientFiles::new(&server, "/agents/patcher");
    let out = authorize(
        &server.addr,
        &f,
        &["--action", "read", "--resource", "customer-db", "--json"],
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["decision"], "deny");
    assert_eq!(json["reasons"], serde_json::json!(["no-permit"]));
    assert!(
        json["decision_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn context_is_passed_through() {
    let server = TestServer::start().await;
    let f = ClientFiles::new(&server, "/workloads/admin");
    let args = ["--action", "delete", "--resource", "payroll"];
    let without = authorize(&server.addr, &f, &args).await;
    assert_eq!(without.status.code(), Some(1));
    let mut with = args.to_vec();
    with.extend(["--context", r#"{"ticket": "CHG-7"}"#]);
    let with = authorize(&server.addr, &f, &with).await;
    assert_eq!(
        with.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&with.stdout)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_exit_2_and_a_server_that_cannot_answer_3() {
    let server = TestServer::start().await;
    let f = ClientFiles::new(&server, "/agents/patcher");
    // Nobody listens on port 1: Mandate could not be asked (3), which is
    // neither a deny (1) nor a mistake in the command (2).
    let out = authorize(
        "127.0.0.1:1",
        &f,
        &["--action", "read", "--resource", "handbook"],
    )
    .await;
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot connect"));
    // Context that is not JSON.
    let out = authorize(
        &server.addr,
        &f,
        &[
            "--action",
            "read",
            "--resource",
            "handbook",
            "--context",
            "{oops",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    // Missing required flag.
    let out = authorize(&server.addr, &f, &["--resource", "handbook"]).await;
    assert_eq!(out.status.code(), Some(2));
    // A server that is not who we pinned.
    let out = authorize(
        &server.addr,
        &f,
        &[
            "--action",
            "read",
            "--resource",
            "handbook",
            "--server-id",
            "spiffe://mandate.local/not-mandate",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn dev_init_writes_a_trust_domain_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("dev");
    let run = |extra: &[&str]| {
        mandate()
            .args(["dev", "init", "--dir"])
            .arg(&target)
            .args(["--trust-domain", "example.org", "--agent", "scout"])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("spiffe://example.org/agents/scout"));
    let leaf = std::fs::read(target.join("agents/scout/svid.pem")).unwrap();
    let chain = rustls_pemfile::certs(&mut leaf.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let id = mandate::identity::spiffe_id_of_leaf(&chain[0]).unwrap();
    assert_eq!(id.to_string(), "spiffe://example.org/agents/scout");
    assert_eq!(run(&[]).status.code(), Some(2));
    assert_eq!(run(&["--force"]).status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_from_the_command_line_end_to_end() {
    let server = TestServer::start().await;
    let frontend = ClientFiles::new(&server, "/workloads/frontend");
    let patcher = ClientFiles::new(&server, "/agents/patcher");
    let reviewer = ClientFiles::new(&server, "/agents/reviewer");

    let created = run_as(
        &frontend,
        &server.addr,
        &[
            "task",
            "create",
            "--intent",
            "fix the build",
            "--delegatee",
            "spiffe://mandate.local/agents/patcher",
            "--on-behalf-of",
            "alice",
            "--action",
            "read",
            "--resource",
            "repos",
            "--max-sensitivity",
            "1",
            "--ttl",
            "600",
            "--json",
        ],
    )
    .await;
    assert_eq!(
        created.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let task: serde_json::Value = serde_json::from_slice(&created.stdout).unwrap();
    let task_id = task["id"].as_str().unwrap().to_owned();
    assert_eq!(task["state"], "active");

    // Only the delegatee gets a token: a refusal exits 1.
    let stolen = run_as(
        &reviewer,
        &server.addr,
        &["task", "token", "--task", &task_id],
    )
    .await;
    assert_eq!(
        stolen.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&stolen.stderr)
    );

    let token = run_as(
        &patcher,
        &server.addr,
        &["task", "token", "--task", &task_id],
    )
    .await;
    assert_eq!(
        token.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&token.stderr)
    );
    let token = String::from_utf8(token.stdout).unwrap().trim().to_owned();
    let read = [
        "authorize",
        "--action",
        "read",
        "--resource",
        "repo:acme/payments",
        "--token",
        &token,
    ];
    let allowed = run_as(&patcher, &server.addr, &read).await;
    assert_eq!(
        allowed.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&allowed.stdout)
    );

    let revoked = run_as(
        &frontend,
        &server.addr,
        &["task", "revoke", "--task", &task_id],
    )
    .await;
    assert_eq!(
        revoked.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&revoked.stderr)
    );
    let denied = run_as(&patcher, &server.addr, &read).await;
    assert_eq!(denied.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&denied.stdout).contains("mandate.guard.task-not-active"));

    let listed = run_as(
        &patcher,
        &server.addr,
        &["task", "list", "--state", "revoked", "--json"],
    )
    .await;
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed["tasks"][0]["id"], task_id.as_str());
    let missing = run_as(
        &patcher,
        &server.addr,
        &["task", "get", "--task", "no-such-task"],
    )
    .await;
    assert_eq!(missing.status.code(), Some(1));
}

/// `out` exited with `code`; returns its stdout.
#[tokio::test(flavor = "multi_thread")]
async fn an_approval_from_the_command_line() {
    let server = TestServer::start().await;
    let frontend = ClientFiles::new(&server, "/workloads/frontend");
    let patcher = ClientFiles::new(&server, "/agents/patcher");
    let created = run_as(
        &frontend,
        &server.addr,
        &[
            "task",
            "create",
            "--intent",
            "delete the old repo",
            "--delegatee",
            "spiffe://mandate.local/agents/patcher",
            "--on-behalf-of",
            "alice",
            "--action",
            "delete",
            "--resource",
            "repo:acme/web",
            "--max-sensitivity",
            "1",
            "--json",
        ],
    )
    .await;
    let task: serde_json::Value = serde_json::from_str(&expect(&created, 0)).unwrap();
    let task_id = task["id"].as_str().unwrap().to_owned();
    let token = run_as(
        &patcher,
        &server.addr,
        &["task", "token", "--task", &task_id],
    )
    .await;
    let token = expect(&token, 0).trim().to_owned();
    let delete = [
        "authorize",
        "--action",
        "delete",
        "--resource",
        "repo:acme/web",
        "--token",
        &token,
        "--json",
    ];
    let held = run_as(&patcher, &server.addr, &delete).await;
    let held: serde_json::Value = serde_json::from_str(&expect(&held, 1)).unwrap();
    assert_eq!(held["decision"], "needs_approval");
    let approval_id = held["approval_id"].as_str().unwrap().to_owned();

    let pending = run_as(
        &frontend,
        &server.addr,
        &["approval", "list", "--state", "pending"],
    )
    .await;
    assert!(expect(&pending, 0).contains(&approval_id));
    let decided = run_as(
        &frontend,
        &server.addr,
        &[
            "approval",
            "decide",
            "--approval",
            &approval_id,
            "--approve",
            "--approver",
            "alice",
            "--json",
        ],
    )
    .await;
    let decided: serde_json::Value = serde_json::from_str(&expect(&decided, 0)).unwrap();
    assert_eq!(decided["state"], "approved");
    assert_eq!(decided["current"], true);
    let allowed = run_as(&patcher, &server.addr, &delete).await;
    let allowed: serde_json::Value = serde_json::from_str(&expect(&allowed, 0)).unwrap();
    assert_eq!(allowed["decision"], "allow");

    // `--approve` and `--deny` together are a usage error.
    let both = run_as(
        &frontend,
        &server.addr,
        &[
            "approval",
            "decide",
            "--approval",
            &approval_id,
            "--approve",
            "--deny",
            "--approver",
            "alice",
        ],
    )
    .await;
    expect(&both, 2);
}

#[test]
fn agent_checksum_prints_the_canonical_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let prompt = dir.path().join("prompt.txt");
    let tools = dir.path().join("tools.json");
    let config = dir.path().join("config.json");
    std::fs::write(&prompt, "You fix failing builds.\n").unwrap();
    std::fs::write(&tools, r#"[{"name": "git"}]"#).unwrap();
    std::fs::write(&config, r#"{"temperature": 0, "model": "m-1"}"#).unwrap();
    let out = mandate()
        .args(["agent", "checksum", "--prompt"])
        .arg(&prompt)
        .arg("--tools")
        .arg(&tools)
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    let expected = mandate::integrity::agent_checksum(
        "You fix failing builds.\n",
        &serde_json::json!([{ "name": "git" }]),
        &serde_json::json!({ "model": "m-1", "temperature": 0 }),
    )
    .unwrap();
    assert_eq!(expect(&out, 0).trim(), expected);

    std::fs::write(&tools, "not json").unwrap();
    let out = mandate()
        .args(["agent", "checksum", "--prompt"])
        .arg(&prompt)
        .arg("--tools")
        .arg(&tools)
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not JSON"));
}
