//! Policy reloads on a running server: a swap under load fails no call, a
//! broken file keeps the previous set and says why, the file watch and
//! `PolicyService` both reload, and every decision names its policy set.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::party::decision;
use common::{Setup, TestServer};
use mandate::api::v1::authorization_service_client::AuthorizationServiceClient;
use mandate::api::v1::policy_service_client::PolicyServiceClient;
use mandate::api::v1::{
    AuthorizeRequest, Decision, GetPolicyStatusRequest, ListPoliciesRequest, PolicyFile,
    ReloadPoliciesRequest, Resource, ValidatePoliciesRequest,
};
use tonic::Code;

async fn start(dir: &Path, poll: Option<Duration>) -> TestServer {
    TestServer::start_with(Setup {
        policies: dir.to_owned(),
        policy_poll: poll,
        ..Default::default()
    })
    .await
}

fn read_customer_db() -> AuthorizeRequest {
    AuthorizeRequest {
        action: "read".into(),
        resource: Some(Resource {
            r#type: String::new(),
            id: "customer-db".into(),
        }),
        ..Default::default()
    }
}

const ALLOW_CUSTOMER_DB: &str = r#"@id("agents-read-customer-db")
permit (
  principal is Mandate::Agent,
  action == Mandate::Action::"read",
  resource == Mandate::Resource::"customer-db"
);
"#;

/// Waits until `calls` reaches `n`, failing if the caller stopped or it
/// takes unreasonably long (a broken reload would otherwise hang).
async fn wait_for<T>(calls: &AtomicUsize, n: usize, caller: &tokio::task::JoinHandle<T>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while calls.load(Ordering::SeqCst) < n {
        assert!(!caller.is_finished(), "the calling task stopped");
        assert!(
            Instant::now() < deadline,
            "calls stalled at {}",
            calls.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_under_load_changes_the_decision_and_fails_no_call() {
    let dir = common::policies_with(&[]);
    let server = start(dir.path(), None).await;
    let mut admin = PolicyServiceClient::new(server.channel("/workloads/admin").await);
    let before = admin
        .get_status(GetPolicyStatusRequest {})
        .await
        .unwrap()
        .into_inner();

    // A client keeps asking while the set is swapped.
    let patcher = server.channel("/agents/patcher").await;
    let stop = Arc::new(AtomicBool::new(false));
    let allowed = Arc::new(AtomicUsize::new(0));
    let calls = Arc::new(AtomicUsize::new(0));
    let caller = {
        let (stop, allowed, calls) = (stop.clone(), allowed.clone(), calls.clone());
        let mut client = AuthorizationServiceClient::new(patcher);
        tokio::spawn(async move {
            // (hash, decision) of every call, in order.
            let mut seen: Vec<(String, Decision)> = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                // Every call succeeds: a reload never fails a request.
                let r = client
                    .authorize(read_customer_db())
                    .await
                    .unwrap()
                    .into_inner();
                calls.fetch_add(1, Ordering::SeqCst);
                if decision(&r) == Decision::Allow {
                    allowed.fetch_add(1, Ordering::SeqCst);
                }
                seen.push((r.policy_hash.clone(), decision(&r)));
            }
            seen
        })
    };
    wait_for(&calls, 20, &caller).await;
    assert_eq!(allowed.load(Ordering::SeqCst), 0);

    std::fs::write(dir.path().join("extra.cedar"), ALLOW_CUSTOMER_DB).unwrap();
    let reloaded = admin
        .reload(ReloadPoliciesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(reloaded.ok && reloaded.reloaded, "{reloaded:?}");
    let after = reloaded.status.unwrap();
    assert_ne!(after.policy_hash, before.policy_hash);
    assert_eq!(after.policy_count, before.policy_count + 1);

    let at_reload = calls.load(Ordering::SeqCst);
    wait_for(&calls, at_reload + 20, &caller).await;
    stop.store(true, Ordering::SeqCst);
    let seen = caller.await.unwrap();
    assert!(allowed.load(Ordering::SeqCst) >= 19, "the new set allows");
    // Every call was decided by one set or the other, deny under the old
    // and allow under the new, and the swap happened once.
    for (hash, d) in &seen {
        if *hash == before.policy_hash {
            assert_eq!(*d, Decision::Deny);
        } else {
            assert_eq!(*hash, after.policy_hash);
            assert_eq!(*d, Decision::Allow);
        }
    }
    let switches = seen.windows(2).filter(|w| w[0].0 != w[1].0).count();
    assert_eq!(switches, 1);

    // Reloading unchanged files changes nothing.
    let again = admin
        .reload(ReloadPoliciesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(again.ok && !again.reloaded, "{again:?}");
}

#[tokio::test]
async fn a_broken_file_keeps_the_previous_set_and_says_why() {
    let dir = common::policies_with(&[]);
    let server = start(dir.path(), None).await;
    let mut admin = PolicyServiceClient::new(server.channel("/workloads/admin").await);
    let mut patcher = AuthorizationServiceClient::new(server.channel("/agents/patcher").await);
    let good = patcher
        .authorize(read_customer_db())
        .await
        .unwrap()
        .into_inner();

    std::fs::write(
        dir.path().join("broken.cedar"),
        "@id(\"typo\")\npermit (principal, action == Mandate::Action::\"read\", resource is Mandate::Resource)\nwhen { resource.colour == \"red\" };\n",
    )
    .unwrap();
    let refused = admin
        .reload(ReloadPoliciesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(!refused.ok && !refused.reloaded, "{refused:?}");
    assert!(
        refused
            .problems
            .iter()
            .any(|p| p.contains("broken.cedar:3:")),
        "{refused:?}"
    );
    let status = refused.status.unwrap();
    assert!(status.last_error.contains("colour"), "{status:?}");
    assert_eq!(status.failed_reloads, 1);

    // The decisions are the old set's.
    let same = patcher
        .authorize(read_customer_db())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(same.policy_hash, good.policy_hash);
    assert_eq!(decision(&same), decision(&good));

    // `/readyz` stays ready and shows the refusal.
    let body = readyz(&server).await;
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains("colour"), "{body}");

    // Fixed, the next reload clears the error.
    std::fs::remove_file(dir.path().join("broken.cedar")).unwrap();
    std::fs::write(dir.path().join("extra.cedar"), ALLOW_CUSTOMER_DB).unwrap();
    let fixed = admin
        .reload(ReloadPoliciesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(fixed.ok && fixed.reloaded, "{fixed:?}");
    assert!(fixed.status.unwrap().last_error.is_empty());
}

async fn readyz(server: &TestServer) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(server.server.http_addr())
        .await
        .unwrap();
    tcp.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    tcp.read_to_string(&mut body).await.unwrap();
    body
}

#[tokio::test]
async fn the_file_watch_reloads_a_changed_set() {
    let dir = common::policies_with(&[]);
    let server = start(dir.path(), Some(Duration::from_millis(50))).await;
    let mut patcher = AuthorizationServiceClient::new(server.channel("/agents/patcher").await);
    let before = patcher
        .authorize(read_customer_db())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(decision(&before), Decision::Deny);
    std::fs::write(dir.path().join("extra.cedar"), ALLOW_CUSTOMER_DB).unwrap();
    // Waits for the watch, bounded so a broken watch fails the test.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = patcher
            .authorize(read_customer_db())
            .await
            .unwrap()
            .into_inner();
        if decision(&r) == Decision::Allow {
            assert_ne!(r.policy_hash, before.policy_hash);
            break;
        }
        assert!(Instant::now() < deadline, "the watch never reloaded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn policy_service_lists_validates_and_is_authorized() {
    let dir = common::policies_with(&[]);
    let server = start(dir.path(), None).await;
    let mut admin = PolicyServiceClient::new(server.channel("/workloads/admin").await);
    let listed = admin
        .list_policies(ListPoliciesRequest {})
        .await
        .unwrap()
        .into_inner();
    let approval = listed
        .policies
        .iter()
        .find(|p| p.id == "destructive-actions-need-approval")
        .unwrap();
    assert_eq!(approval.effect, "forbid");
    assert!(approval.source.contains("approvals.cedar:"), "{approval:?}");
    assert_eq!(
        approval
            .annotations
            .get("mandate_outcome")
            .map(String::as_str),
        Some("needs_approval")
    );
    assert!(
        listed
            .policies
            .iter()
            .any(|p| p.built_in && p.id == "mandate.guard.task-not-active")
    );

    let valid = admin
        .validate(ValidatePoliciesRequest {
            files: vec![PolicyFile {
                name: "a.cedar".into(),
                text: ALLOW_CUSTOMER_DB.into(),
            }],
            schema: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(valid.valid, "{valid:?}");
    let invalid = admin
        .validate(ValidatePoliciesRequest {
            files: vec![PolicyFile {
                name: "b.cedar".into(),
                text: "permit (principal, action == Mandate::Action::\"fly\", resource);".into(),
            }],
            schema: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!invalid.valid);
    assert_eq!(invalid.problems[0].file, "b.cedar");
    assert_eq!(invalid.problems[0].line, 1);
    // Validation changed nothing in use.
    let status = admin
        .get_status(GetPolicyStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.policy_hash, listed.policy_hash);

    // An agent may not see, check or reload the policy set.
    let mut agent = PolicyServiceClient::new(server.channel("/agents/patcher").await);
    let status = agent.reload(ReloadPoliciesRequest {}).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = agent
        .get_status(GetPolicyStatusRequest {})
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn a_schema_the_registry_does_not_fit_is_refused() {
    // The test server reads the repository's schema; a copy lets the test
    // change it without touching the repository.
    let dir = common::policies_with(&[]);
    let schema_dir = tempfile::tempdir().unwrap();
    let schema = schema_dir.path().join("mandate.cedarschema");
    let original =
        std::fs::read_to_string(common::repo().join("schemas/mandate.cedarschema")).unwrap();
    std::fs::write(&schema, &original).unwrap();
    let server = TestServer::start_with(Setup {
        policies: dir.path().to_owned(),
        schema: Some(schema.clone()),
        ..Default::default()
    })
    .await;
    let mut admin = PolicyServiceClient::new(server.channel("/workloads/admin").await);
    // Agents lose `class`, which the example catalog gives them.
    let without_class = original.replace("    class?: String,\n", "");
    assert_ne!(without_class, original);
    std::fs::write(&schema, without_class).unwrap();
    // The policies that use `class` no longer validate either; drop them.
    let tasks = std::fs::read_to_string(dir.path().join("tasks.cedar")).unwrap();
    let start = tasks
        .find("@id(\"agents-delegate-within-their-class\")")
        .unwrap();
    let end = start + tasks[start..].find("};").unwrap() + 2;
    std::fs::write(
        dir.path().join("tasks.cedar"),
        format!("{}{}", &tasks[..start], &tasks[end..]),
    )
    .unwrap();
    let refused = admin
        .reload(ReloadPoliciesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(!refused.ok && !refused.reloaded, "{refused:?}");
    assert!(
        refused
            .problems
            .iter()
            .any(|p| p.contains("the registry does not fit the new schema")),
        "{refused:?}"
    );
    // The old set still decides.
    let mut patcher = AuthorizationServiceClient::new(server.channel("/agents/patcher").await);
    let r = common::call(&mut patcher, "", "read", "repo:acme/web").await;
    assert_eq!(decision(&r), Decision::Allow, "{r:?}");
}
