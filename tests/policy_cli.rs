//! `mandate policy ...` as a policy author runs it: validate, fmt, test,
//! explain and replay, with their exit codes and messages.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

mod common;

use std::path::Path;

use common::cli::{run, text};
use common::{Setup, TestServer};
use mandate::api::v1::authorization_service_client::AuthorizationServiceClient;
use mandate::api::v1::{AuthorizeRequest, Resource};

fn arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn the_shipped_policies_validate_are_formatted_and_pass_their_suite() {
    let out = run(&["policy", "validate"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = run(&["policy", "fmt", "--check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = run(&["policy", "test"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains(" passed, 0 failed"), "{}", text(&out));
}

#[test]
fn validate_shows_the_problem_with_a_caret_and_exits_1() {
    let dir = common::policies_with(&[(
        "typo.cedar",
        "@id(\"typo\")\npermit (principal, action == Mandate::Action::\"read\", resource is Mandate::Resource)\nwhen { resource.colour == \"red\" };\n",
    )]);
    let out = run(&["policy", "validate", "--policies", arg(dir.path())]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let shown = text(&out);
    assert!(shown.contains("typo.cedar:3:8"), "{shown}");
    assert!(shown.contains("resource.colour"), "{shown}");
    assert!(shown.contains("───"), "a caret excerpt: {shown}");
    // A missing directory is a usage error.
    let out = run(&["policy", "validate", "--policies", "/no/such/dir"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn fmt_check_lists_unformatted_files_and_fmt_fixes_them() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("messy.cedar");
    std::fs::write(
        &file,
        "permit(principal,action==Mandate::Action::\"read\",resource)when{true};",
    )
    .unwrap();
    let out = run(&["policy", "fmt", "--check", arg(dir.path())]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("would reformat"), "{}", text(&out));
    let out = run(&["policy", "fmt", arg(dir.path())]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = run(&["policy", "fmt", "--check", arg(dir.path())]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .contains("permit (\n")
    );
}

#[test]
fn a_failing_case_shows_expected_and_actual_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("suite.json");
    let catalog = common::repo().join("examples/catalog.toml");
    std::fs::write(
        &suite,
        serde_json::json!({
            "catalog": catalog,
            "cases": [
                {"name": "right", "principal": "spiffe://mandate.local/agents/patcher",
                 "action": "read", "resource": "handbook", "expect": "allow"},
                {"name": "wrong", "principal": "spiffe://mandate.local/agents/patcher",
                 "action": "read", "resource": "payroll", "expect": "allow",
                 "policies": ["made-up"]}
            ]
        })
        .to_string(),
    )
    .unwrap();
    let out = run(&["policy", "test", arg(&suite)]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let shown = text(&out);
    assert!(shown.contains("ok    right"), "{shown}");
    assert!(shown.contains("FAIL  wrong"), "{shown}");
    assert!(
        shown.contains("expected: allow (policies: [made-up])"),
        "{shown}"
    );
    assert!(
        shown.contains("actual:   deny (policies: [restricted-data-needs-approval]"),
        "{shown}"
    );
    assert!(shown.contains("1 passed, 1 failed"), "{shown}");
}

#[test]
fn explain_names_the_policies_with_their_source_and_the_entity_slice() {
    let out = run(&[
        "policy",
        "explain",
        "--request",
        "policies/tests/examples.json",
        "--case",
        "a delete within the task needs a human's approval",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["decision"], "needs_approval");
    assert_eq!(
        json["determining_policies"][0]["id"],
        "destructive-actions-need-approval"
    );
    assert!(
        json["determining_policies"][0]["source"]
            .as_str()
            .unwrap()
            .contains("approvals.cedar:")
    );
    let uids: Vec<String> = json["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{}::{}",
                e["uid"]["type"].as_str().unwrap(),
                e["uid"]["id"].as_str().unwrap()
            )
        })
        .collect();
    assert!(
        uids.contains(&"Mandate::Task::fix-build".to_owned()),
        "{uids:?}"
    );
    assert!(
        uids.contains(&"Mandate::Resource::repos".to_owned()),
        "{uids:?}"
    );
}

async fn ask(
    client: &mut AuthorizationServiceClient<tonic::transport::Channel>,
    action: &str,
    id: &str,
) -> String {
    client
        .authorize(AuthorizeRequest {
            action: action.into(),
            resource: Some(Resource {
                r#type: String::new(),
                id: id.into(),
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .decision_id
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_finds_exactly_the_decisions_a_change_flips() {
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("decisions.jsonl");
    let server = TestServer::start_with(Setup {
        decision_log: Some(log.clone()),
        ..Default::default()
    })
    .await;
    let mut patcher = AuthorizationServiceClient::new(server.channel("/agents/patcher").await);
    let customer_db = ask(&mut patcher, "read", "customer-db").await;
    let handbook = ask(&mut patcher, "read", "handbook").await;
    let web = ask(&mut patcher, "read", "repo:acme/web").await;
    drop(patcher);
    server.server.shutdown().await.unwrap();

    let records: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 3);
    assert_eq!(records[0]["decision_id"], customer_db.as_str());
    assert_eq!(records[0]["decision"], "deny");
    assert_eq!(records[1]["decision"], "allow");
    assert!(records[0]["cedar"]["entities"].is_array());

    // Unchanged policies: nothing flips.
    let out = run(&["policy", "replay", "--decisions", arg(&log)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("3 decision(s)"), "{}", text(&out));
    assert!(text(&out).contains("0 would change"), "{}", text(&out));

    // A new permit flips exactly the customer-db read: a widening.
    let widened = common::policies_with(&[(
        "extra.cedar",
        "@id(\"agents-read-customer-db\")\npermit (principal is Mandate::Agent, action == Mandate::Action::\"read\", resource == Mandate::Resource::\"customer-db\");\n",
    )]);
    let out = run(&[
        "policy",
        "replay",
        "--decisions",
        arg(&log),
        "--policies",
        arg(widened.path()),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let shown = text(&out);
    assert!(shown.contains("1 would change"), "{shown}");
    assert!(
        shown.contains("deny -> allow, by agents-read-customer-db: 1"),
        "{shown}"
    );
    assert!(shown.contains(&customer_db), "{shown}");
    assert!(
        !shown.contains(&handbook) && !shown.contains(&web),
        "{shown}"
    );
    let out = run(&[
        "policy",
        "replay",
        "--decisions",
        arg(&log),
        "--policies",
        arg(widened.path()),
        "--allow-widening",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // Removing the agents' read permit narrows: reported, not a failure.
    // The handbook stays readable through `anyone-reads-handbook`.
    let narrowed = common::policies_with(&[]);
    std::fs::remove_file(narrowed.path().join("agents.cedar")).unwrap();
    let out = run(&[
        "policy",
        "replay",
        "--decisions",
        arg(&log),
        "--policies",
        arg(narrowed.path()),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let shown = text(&out);
    assert!(shown.contains("1 would change"), "{shown}");
    assert!(shown.contains("allow -> deny, by no-permit: 1"), "{shown}");
    assert!(
        shown.contains(&web) && !shown.contains(&handbook),
        "{shown}"
    );
}

#[test]
fn validate_warns_about_a_policy_that_can_never_apply() {
    let dir = common::policies_with(&[(
        "never.cedar",
        "@id(\"never\")\npermit (principal, action == Mandate::Action::\"read\", resource)\nwhen { false };\n",
    )]);
    let out = run(&["policy", "validate", "--policies", arg(dir.path())]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("1 warning(s)"), "{}", text(&out));
    assert!(
        text(&out).contains("policy is impossible"),
        "{}",
        text(&out)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn records_keep_neither_tokens_nor_checksums() {
    use mandate::api::v1::registry_service_client::RegistryServiceClient;
    use mandate::api::v1::task_service_client::TaskServiceClient;
    use mandate::api::v1::{
        AgentEntry, CreateTaskRequest, Entry, IssueTaskTokenRequest, TaskScope, UpdateRequest,
        entry,
    };
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("decisions.jsonl");
    let server = TestServer::start_with(Setup {
        decision_log: Some(log.clone()),
        ..Default::default()
    })
    .await;
    let checksum = format!("sha256:{}", "ab".repeat(32));
    RegistryServiceClient::new(server.channel("/workloads/admin").await)
        .update(UpdateRequest {
            entry: Some(Entry {
                entry: Some(entry::Entry::Agent(AgentEntry {
                    spiffe_id: "spiffe://mandate.local/agents/patcher".into(),
                    checksum: checksum.clone(),
                    ..Default::default()
                })),
            }),
        })
        .await
        .unwrap();
    let task = TaskServiceClient::new(server.channel("/workloads/frontend").await)
        .create_task(CreateTaskRequest {
            intent: "records".into(),
            delegatee: "spiffe://mandate.local/agents/patcher".into(),
            on_behalf_of: "alice".into(),
            scope: Some(TaskScope {
                actions: vec!["read".into()],
                resources: vec!["repos".into()],
                max_sensitivity: 1,
                expires_at: 0,
                ttl_seconds: 600,
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap()
        .id;
    let channel = server.channel("/agents/patcher").await;
    let token = TaskServiceClient::new(channel.clone())
        .issue_task_token(IssueTaskTokenRequest {
            task_id: task.clone(),
            ttl_seconds: 0,
            agent_proof: checksum.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .token;
    let mut patcher = AuthorizationServiceClient::new(channel);
    let r = common::call(&mut patcher, &token, "read", "repo:acme/payments").await;
    assert_eq!(
        r.decision,
        mandate::api::v1::Decision::Allow as i32,
        "{r:?}"
    );
    drop(patcher);
    server.server.shutdown().await.unwrap();

    let written = std::fs::read_to_string(&log).unwrap();
    // The file holds the task's lifecycle events too; the decision is the
    // line with a `decision_id`.
    let line = written
        .lines()
        .find(|l| l.contains("\"decision_id\""))
        .unwrap();
    let record: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(record["task_id"], task.as_str());
    assert!(record["token_jti"].is_string());
    assert!(!written.contains(&token), "the token leaked: {written}");
    assert!(
        !written.contains(&checksum),
        "the checksum leaked: {written}"
    );
    assert!(written.contains("(redacted)"), "{written}");
}
