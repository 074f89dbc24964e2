//! Store figures for BENCHMARKS.md, a timed program rather than criterion
//! (each figure is one long run): durable writes per second (create,
//! revoke) on each backend, revoke propagation between two replicas on
//! PostgreSQL (p50/p99), and start-up with 1M tasks (building them, then
//! loading them into memory).
//!
//! `cargo bench --bench store`; PostgreSQL figures need
//! `MANDATE_TEST_POSTGRES_URL`. `MANDATE_BENCH_WRITES` (default 2000),
//! `MANDATE_BENCH_REVOKES` (500) and `MANDATE_BENCH_TASKS` (1000000) size
//! the runs; `MANDATE_BENCH_SQLITE_FILE` keeps the 1M-task SQLite file.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "benchmark"
)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mandate::approval::ApprovalBook;
use mandate::graph::{Task, TaskGraph, TaskSpec, TaskState};
use mandate::journal::{Follower, Journal, ReplicaHealth, ReplicaSettings};
use mandate::registry::{Registry, SensitivityScale};
use mandate::revision::Revision;
use mandate::store::record::{TaskRecord, to_json};
use mandate::store::{PostgresStore, SqliteStore, Store, StoreError};
use spiffe::SpiffeId;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now() -> i64 {
    mandate::clock::Clock::now(&mandate::clock::SystemClock)
}

fn spec() -> TaskSpec {
    TaskSpec {
        intent: "fix the payments build".into(),
        delegatee: SpiffeId::new("spiffe://mandate.local/agents/patcher").unwrap(),
        actions: BTreeSet::from(["read".to_owned(), "write".to_owned()]),
        scope: BTreeSet::from(["repo:acme/payments".to_owned()]),
        max_sensitivity: 1,
        expires_at: now() + 86_400,
    }
}

fn front() -> SpiffeId {
    SpiffeId::new("spiffe://mandate.local/workloads/frontend").unwrap()
}

struct Live {
    graph: Arc<TaskGraph>,
    journal: Arc<Journal>,
}

async fn live(store: Arc<dyn Store>) -> Live {
    let loaded = store.load().await.unwrap();
    let revision = Arc::new(Revision::starting_at(loaded.revision));
    let graph = Arc::new(TaskGraph::with_revision(8, revision.clone()));
    let approvals = Arc::new(ApprovalBook::new(revision.clone()));
    mandate::journal::boot::fill(&graph, &approvals, &loaded);
    let registry = Arc::new(
        Registry::new(
            Vec::new(),
            &cedar_policy::Entities::empty(),
            &cedar_policy::Schema::from_cedarschema_str("").unwrap().0,
            SensitivityScale::default(),
            "mandate.local",
            revision.clone(),
        )
        .unwrap(),
    );
    let journal = Arc::new(Journal::new(
        store,
        graph.clone(),
        approvals,
        registry,
        revision,
    ));
    Live { graph, journal }
}

async fn create(live: &Live) -> mandate::graph::TaskId {
    let id: mandate::graph::TaskId = uuid::Uuid::now_v7().to_string().into();
    live.journal
        .create_root::<Error>(id.clone(), spec(), front(), "alice".into(), now())
        .await
        .unwrap();
    id
}

/// Sequential durable writes: each is committed (and on SQLite synced)
/// before the next starts, as one client's writes are.
async fn writes(name: &str, store: Arc<dyn Store>) {
    let n = env("MANDATE_BENCH_WRITES", 2000);
    let live = live(store).await;
    let started = Instant::now();
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        ids.push(create(&live).await);
    }
    let created = started.elapsed();
    let started = Instant::now();
    for id in &ids {
        live.journal.revoke::<Error>(id).await.unwrap();
    }
    let revoked = started.elapsed();
    println!(
        "{name}: {n} creates in {created:.2?} = {:.0}/s; {n} revokes in {revoked:.2?} = {:.0}/s",
        per_second(n, created),
        per_second(n, revoked)
    );
}

fn per_second(n: usize, took: Duration) -> f64 {
    n as f64 / took.as_secs_f64()
}

/// Revoke on one replica, time until the other's memory has it.
async fn propagation(url: &str) {
    let n = env("MANDATE_BENCH_REVOKES", 500);
    let schema = format!("bench_{}", uuid::Uuid::now_v7().simple());
    let one = live(Arc::new(
        PostgresStore::connect(url, Some(&schema)).await.unwrap(),
    ))
    .await;
    let two = live(Arc::new(
        PostgresStore::connect(url, Some(&schema)).await.unwrap(),
    ))
    .await;
    let settings = ReplicaSettings::default();
    let _followers = (
        Follower::start(
            one.journal.clone(),
            ReplicaHealth::new(settings.stale_after),
            settings,
        )
        .await
        .unwrap(),
        Follower::start(
            two.journal.clone(),
            ReplicaHealth::new(settings.stale_after),
            settings,
        )
        .await
        .unwrap(),
    );
    let mut took = Vec::with_capacity(n);
    for _ in 0..n {
        let id = create(&one).await;
        while two.graph.get(&id).is_none() {
            tokio::time::sleep(Duration::from_micros(100)).await;
        }
        let started = Instant::now();
        one.journal.revoke::<Error>(&id).await.unwrap();
        while two.graph.get(&id).unwrap().state != TaskState::Revoked {
            tokio::time::sleep(Duration::from_micros(100)).await;
        }
        took.push(started.elapsed());
    }
    took.sort();
    let at = |q: f64| took[((took.len() as f64 * q) as usize).min(took.len() - 1)];
    println!(
        "postgres: revoke propagation over {n} revokes (from the revoke call to the other replica's memory): p50 {:.2?}, p99 {:.2?}, max {:.2?}",
        at(0.5),
        at(0.99),
        took[took.len() - 1]
    );
    drop_schema(url, &schema).await;
}

/// Writes `n` tasks straight into the tasks table (in batches, one
/// transaction each), as a long-running deployment would have them.
async fn build_sqlite(store: &SqliteStore, n: usize) {
    let rows = task_rows(n);
    let mut tx = store.pool().begin().await.unwrap();
    for chunk in rows.chunks(500) {
        let mut insert = sqlx::QueryBuilder::new("INSERT INTO tasks (id, revision, body) ");
        insert.push_values(chunk, |mut row, (id, body)| {
            row.push_bind(id).push_bind(1i64).push_bind(body);
        });
        insert.build().execute(&mut *tx).await.unwrap();
    }
    sqlx::query("INSERT INTO change_log (revision, recorded_at, body) VALUES (1, 0, '{\"type\":\"tasks\",\"tasks\":[]}')")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

async fn build_postgres(store: &PostgresStore, n: usize) {
    let rows = task_rows(n);
    for batch in rows.chunks(100_000) {
        let mut tx = store.pool().begin().await.unwrap();
        for chunk in batch.chunks(1000) {
            let mut insert = sqlx::QueryBuilder::new("INSERT INTO tasks (id, revision, body) ");
            insert.push_values(chunk, |mut row, (id, body)| {
                row.push_bind(id).push_bind(1i64).push_bind(body);
            });
            insert.build().execute(&mut *tx).await.unwrap();
        }
        tx.commit().await.unwrap();
    }
    sqlx::query("INSERT INTO change_log (revision, recorded_at, body) VALUES (1, 0, '{\"type\":\"tasks\",\"tasks\":[]}')")
        .execute(store.pool())
        .await
        .unwrap();
}

/// Root tasks and, every fourth, a child of the one before: chains as a
/// real graph has them.
fn task_rows(n: usize) -> Vec<(String, String)> {
    let mut rows = Vec::with_capacity(n);
    let mut parent: Option<Task> = None;
    for i in 0..n {
        let id: mandate::graph::TaskId = uuid::Uuid::now_v7().to_string().into();
        let task = Task::new(
            id.clone(),
            spec(),
            front(),
            "alice".into(),
            parent.as_ref().filter(|_| i % 4 != 0),
            now(),
        );
        rows.push((id.to_string(), to_json(&TaskRecord::from(&task)).unwrap()));
        parent = Some(task);
    }
    rows
}

async fn startup(name: &str, store: Arc<dyn Store>, built: Duration) {
    let started = Instant::now();
    let loaded = store.load().await.unwrap();
    let read = started.elapsed();
    let revision = Arc::new(Revision::starting_at(loaded.revision));
    let graph = TaskGraph::with_revision(8, revision.clone());
    let approvals = ApprovalBook::new(revision);
    mandate::journal::boot::fill(&graph, &approvals, &loaded);
    let total = started.elapsed();
    println!(
        "{name}: start-up with {} tasks: read {read:.2?}, into memory {:.2?}, total {total:.2?} (building the rows took {built:.2?})",
        graph.len(),
        total - read
    );
}

async fn drop_schema(url: &str, schema: &str) {
    let admin = PostgresStore::connect(url, None).await.unwrap();
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(admin.pool())
        .await
        .unwrap();
}

#[derive(Debug)]
#[expect(dead_code, reason = "printed through `Debug` when a run fails")]
enum Error {
    Store(StoreError),
    Graph(mandate::graph::GraphError),
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl From<mandate::graph::GraphError> for Error {
    fn from(e: mandate::graph::GraphError) -> Self {
        Self::Graph(e)
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let postgres = std::env::var("MANDATE_TEST_POSTGRES_URL").ok();
        let dir = tempfile::tempdir().unwrap();
        let sqlite = SqliteStore::open(&dir.path().join("writes.db"))
            .await
            .unwrap();
        writes("sqlite (WAL, synchronous=FULL)", Arc::new(sqlite)).await;
        if let Some(url) = &postgres {
            let schema = format!("bench_{}", uuid::Uuid::now_v7().simple());
            let store = PostgresStore::connect(url, Some(&schema)).await.unwrap();
            writes("postgres", Arc::new(store)).await;
            drop_schema(url, &schema).await;
            propagation(url).await;
        }

        let n = env("MANDATE_BENCH_TASKS", 1_000_000);
        // Kept there when named, to start `mandate serve` on it.
        let path = std::env::var("MANDATE_BENCH_SQLITE_FILE")
            .map_or_else(|_| dir.path().join("startup.db"), std::path::PathBuf::from);
        let store = SqliteStore::open(&path).await.unwrap();
        let started = Instant::now();
        build_sqlite(&store, n).await;
        let built = started.elapsed();
        store.close().await;
        // One handle at a time: the file is locked while one is open.
        drop(store);
        let store = SqliteStore::open(&path).await.unwrap();
        startup("sqlite", Arc::new(store), built).await;
        if let Some(url) = &postgres {
            let schema = format!("bench_{}", uuid::Uuid::now_v7().simple());
            let store = PostgresStore::connect(url, Some(&schema)).await.unwrap();
            let started = Instant::now();
            build_postgres(&store, n).await;
            let built = started.elapsed();
            startup("postgres", Arc::new(store), built).await;
            drop_schema(url, &schema).await;
        }
    });
}
