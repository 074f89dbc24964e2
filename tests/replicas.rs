//! Replicas on one PostgreSQL (`--ignored`, `MANDATE_TEST_POSTGRES_URL`, a
//! schema per test): a revoke on one denies on the other, `min_revision`
//! waits for the write it names, and a replica cut from the store denies everything
//! while stale, then catches up. Two real servers over mTLS in one test
//! process; the cut is a TCP proxy the test controls. The `stale-state`
//! test needs no PostgreSQL and always runs.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Setup, TestServer};
use mandate::api::v1::authorization_service_client::AuthorizationServiceClient;
use mandate::api::v1::task_service_client::TaskServiceClient;
use mandate::api::v1::{
    AuthorizeRequest, AuthorizeResponse, CreateTaskRequest, Decision, IssueTaskTokenRequest,
    Resource, RevokeTaskRequest, TaskScope,
};
use mandate::journal::ReplicaSettings;
use mandate::store::PostgresStore;
use tokio::net::{TcpListener, TcpStream};
use tonic::transport::Channel;

const PATCHER: &str = "spiffe://mandate.local/agents/patcher";

/// The database URL and a fresh schema name.
fn postgres() -> (String, String) {
    let url = std::env::var("MANDATE_TEST_POSTGRES_URL").expect("MANDATE_TEST_POSTGRES_URL is not set: this test needs a PostgreSQL database URL (see the README, under the two commands)");
    (url, format!("replicas_{}", uuid::Uuid::now_v7().simple()))
}

async fn replica(url: &str, schema: &str, replica: ReplicaSettings) -> TestServer {
    let store = PostgresStore::connect(url, Some(schema)).await.unwrap();
    TestServer::start_with(Setup {
        store: Some(Arc::new(store)),
        replica,
        ..Setup::default()
    })
    .await
}

async fn drop_schema(url: &str, schema: &str) {
    let store = PostgresStore::connect(url, None).await.unwrap();
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(store.pool())
        .await
        .unwrap();
}

/// The frontend creates a task for the patcher on `server`.
async fn create(server: &TestServer) -> (String, u64) {
    let mut frontend = TaskServiceClient::new(server.channel("/workloads/frontend").await);
    let response = frontend
        .create_task(CreateTaskRequest {
            intent: "fix the payments build".into(),
            delegatee: PATCHER.into(),
            on_behalf_of: "alice".into(),
            scope: Some(TaskScope {
                actions: vec!["read".into()],
                resources: vec!["repos".into()],
                max_sensitivity: 1,
                expires_at: 0,
                ttl_seconds: 3600,
            }),
        })
        .await
        .unwrap()
        .into_inner();
    (response.task.unwrap().id, response.revision)
}

async fn revoke(server: &TestServer, task: &str) -> u64 {
    let mut frontend = TaskServiceClient::new(server.channel("/workloads/frontend").await);
    frontend
        .revoke_task(RevokeTaskRequest {
            task_id: task.into(),
            reason: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .revision
}

/// The patcher on `server`: a channel, and a token for `task` minted there.
async fn patcher(server: &TestServer, task: &str) -> (AuthorizationServiceClient<Channel>, String) {
    let channel = server.channel("/agents/patcher").await;
    let token = TaskServiceClient::new(channel.clone())
        .issue_task_token(IssueTaskTokenRequest {
            task_id: task.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .token;
    (AuthorizationServiceClient::new(channel), token)
}

async fn read(
    client: &mut AuthorizationServiceClient<Channel>,
    token: &str,
    min_revision: u64,
) -> AuthorizeResponse {
    client
        .authorize(AuthorizeRequest {
            action: "read".into(),
            resource: Some(Resource {
                r#type: String::new(),
                id: "repo:acme/payments".into(),
            }),
            token: token.into(),
            min_revision,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

fn denied_because(r: &AuthorizeResponse, reason: &str) -> bool {
    r.decision == Decision::Deny as i32 && r.reasons.iter().any(|x| x == reason)
}

fn revoked(r: &AuthorizeResponse) -> bool {
    r.decision == Decision::Deny as i32
        && r.determining_policies
            .iter()
            .any(|p| p == "mandate.guard.task-not-active")
}

/// Waits until `server` holds `task` (its follower applied it).
async fn replicated(server: &TestServer, task: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.graph.get(task).is_none() {
        assert!(Instant::now() < deadline, "task `{task}` never replicated");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL: set MANDATE_TEST_POSTGRES_URL and pass --ignored (see the README, under the two commands)"]
async fn a_revoke_on_one_replica_denies_on_the_other_within_the_bound() {
    let (url, schema) = postgres();
    let one = replica(&url, &schema, ReplicaSettings::default()).await;
    let two = replica(&url, &schema, ReplicaSettings::default()).await;
    let (task, _) = create(&one).await;
    replicated(&two, &task).await;
    let (mut client, token) = patcher(&two, &task).await;
    let allowed = read(&mut client, &token, 0).await;
    assert_eq!(allowed.decision, Decision::Allow as i32, "{allowed:?}");

    let revision = revoke(&one, &task).await;
    let revoked_at = Instant::now();
    loop {
        let r = read(&mut client, &token, 0).await;
        if revoked(&r) {
            break;
        }
        assert_eq!(r.decision, Decision::Allow as i32, "{r:?}");
        assert!(
            revoked_at.elapsed() < Duration::from_secs(1),
            "the other replica still allows {:?} after the revoke",
            revoked_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    eprintln!("revoke propagated in {:?}", revoked_at.elapsed());
    assert!(two.journal.revision() >= revision);
    let (code, body) = common::readyz(&two).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["store"]["available"], true, "{body}");
    assert_eq!(body["store"]["lag_revisions"], 0, "{body}");
    drop((one, two));
    drop_schema(&url, &schema).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: set MANDATE_TEST_POSTGRES_URL and pass --ignored (see the README, under the two commands)"]
async fn min_revision_waits_for_the_write_it_names() {
    let (url, schema) = postgres();
    let one = replica(&url, &schema, ReplicaSettings::default()).await;
    let two = replica(&url, &schema, ReplicaSettings::default()).await;
    let (task, _) = create(&one).await;
    replicated(&two, &task).await;
    let (mut client, token) = patcher(&two, &task).await;
    // Asked for the revision the revoke will get before it exists: the
    // decision waits for it, then denies because the task is revoked.
    let next = two.journal.revision() + 1;
    let waiting = tokio::spawn(async move {
        let started = Instant::now();
        (read(&mut client, &token, next).await, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(revoke(&one, &task).await, next);
    let (r, waited) = waiting.await.unwrap();
    assert!(revoked(&r), "{r:?}");
    assert!(r.revision >= next, "{r:?}");
    assert!(waited >= Duration::from_millis(150), "{waited:?}");
    drop((one, two));
    drop_schema(&url, &schema).await;
}

#[tokio::test]
async fn a_replica_behind_min_revision_denies_stale_state_after_the_wait() {
    // Any backend: nobody will write the revision asked for.
    let server = TestServer::start_with(Setup {
        replica: ReplicaSettings {
            min_revision_wait: Duration::from_millis(200),
            ..ReplicaSettings::default()
        },
        ..Setup::default()
    })
    .await;
    let (task, revision) = create(&server).await;
    let (mut client, token) = patcher(&server, &task).await;
    let current = read(&mut client, &token, revision).await;
    assert_eq!(current.decision, Decision::Allow as i32, "{current:?}");
    let started = Instant::now();
    let ahead = read(&mut client, &token, revision + 100).await;
    assert!(denied_because(&ahead, "stale-state"), "{ahead:?}");
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert!(started.elapsed() < Duration::from_secs(2));
}

/// A TCP proxy to PostgreSQL that the test can cut: cut, it drops every
/// connection and refuses new ones.
struct Proxy {
    port: u16,
    cut: Arc<AtomicBool>,
    generation: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Proxy {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let generation = Arc::new(tokio::sync::watch::channel(0u64).0);
        let (cut_flag, cuts) = (cut.clone(), generation.clone());
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                if cut_flag.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let upstream = upstream.clone();
                let mut cut = cuts.subscribe();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (mut client, mut server) = (client, server);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Self {
            port,
            cut,
            generation,
        }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

/// `url` with its host and port replaced by the proxy's.
fn through(url: &str, port: u16) -> (String, String) {
    let after_scheme = url.find("://").unwrap() + 3;
    let host_start = url[after_scheme..]
        .find('@')
        .map_or(after_scheme, |at| after_scheme + at + 1);
    let host_end = host_start + url[host_start..].find('/').unwrap();
    let upstream = url[host_start..host_end].to_owned();
    let upstream = if upstream.contains(':') {
        upstream
    } else {
        format!("{upstream}:5432")
    };
    (
        format!("{}127.0.0.1:{port}{}", &url[..host_start], &url[host_end..]),
        upstream,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: set MANDATE_TEST_POSTGRES_URL and pass --ignored (see the README, under the two commands)"]
async fn a_replica_cut_from_the_store_denies_while_stale_then_catches_up() {
    let (url, schema) = postgres();
    let (_, upstream) = through(&url, 0);
    let proxy = Proxy::start(upstream).await;
    let (proxied, _) = through(&url, proxy.port);
    let one = replica(&url, &schema, ReplicaSettings::default()).await;
    let settings = ReplicaSettings {
        stale_after: Duration::from_millis(500),
        poll: Duration::from_millis(100),
        ..ReplicaSettings::default()
    };
    let two = replica(&proxied, &schema, settings).await;
    let (task, _) = create(&one).await;
    replicated(&two, &task).await;
    let (mut client, token) = patcher(&two, &task).await;
    assert_eq!(
        read(&mut client, &token, 0).await.decision,
        Decision::Allow as i32
    );

    proxy.cut();
    let cut_at = Instant::now();
    let revision = revoke(&one, &task).await;
    // Within the stale bound (plus one poll) the cut replica refuses
    // everything: it cannot know about the revoke.
    loop {
        let r = read(&mut client, &token, 0).await;
        if denied_because(&r, "state-unavailable") {
            break;
        }
        assert!(
            cut_at.elapsed() < Duration::from_secs(3),
            "still deciding on stale state: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(cut_at.elapsed() >= Duration::from_millis(400));
    assert!(two.graph.get(&task).unwrap().state == mandate::graph::TaskState::Active);
    // Still cut a while later: still refused, and not ready.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let still = read(&mut client, &token, 0).await;
    assert!(denied_because(&still, "state-unavailable"), "{still:?}");
    let (code, body) = common::readyz(&two).await;
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["store"]["backend"], "postgres");
    assert_eq!(body["store"]["available"], false, "{body}");
    assert!(body["store"]["since_contact_ms"].as_u64().unwrap() >= 500);

    proxy.restore();
    let restored_at = Instant::now();
    loop {
        let r = read(&mut client, &token, 0).await;
        if revoked(&r) {
            break;
        }
        assert!(
            denied_because(&r, "state-unavailable"),
            "a replica catching up must not allow: {r:?}"
        );
        assert!(
            restored_at.elapsed() < Duration::from_secs(10),
            "never caught up: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(two.journal.revision() >= revision);
    drop((one, two));
    drop_schema(&url, &schema).await;
}
