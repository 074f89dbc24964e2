//! `mandate store migrate|export|import` with the real binary: a backup of
//! one store restores into another, and across backends with `--ignored`
//! and `MANDATE_TEST_POSTGRES_URL`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::cli::{code_and_stderr, run};
use mandate::graph::{Task, TaskSpec, TaskState};
use mandate::store::{Change, PostgresStore, SqliteStore, Store};
use spiffe::SpiffeId;

fn task(id: &str, state: TaskState) -> Arc<Task> {
    let spec = TaskSpec {
        intent: "fix the build".into(),
        delegatee: SpiffeId::new("spiffe://example.org/agents/a").unwrap(),
        actions: BTreeSet::from(["read".to_owned()]),
        scope: BTreeSet::from(["repo:acme".to_owned()]),
        max_sensitivity: 1,
        expires_at: 2_000_000_000,
    };
    let delegator = SpiffeId::new("spiffe://example.org/workloads/front").unwrap();
    let mut task = Task::new(
        id.into(),
        spec,
        delegator,
        "alice".into(),
        None,
        1_900_000_000,
    );
    task.state = state;
    Arc::new(task)
}

async fn fill(store: &dyn Store) {
    store
        .commit(1, &Change::Tasks(vec![task("t1", TaskState::Active)]), 0)
        .await
        .unwrap();
    store
        .commit(2, &Change::Tasks(vec![task("t1", TaskState::Revoked)]), 0)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_restores_into_an_empty_store_and_not_over_a_full_one() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.db");
    let backup = dir.path().join("backup.jsonl");
    let copy = dir.path().join("copy.db");
    let source_url = format!("sqlite://{}", source.display());
    let copy_url = format!("sqlite://{}", copy.display());

    let (code, stderr) = code_and_stderr(&run(&["store", "migrate", "--store", &source_url]));
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("revision 0"), "{stderr}");
    fill(&SqliteStore::open(&source).await.unwrap()).await;

    let backup_arg = backup.display().to_string();
    let (code, stderr) = code_and_stderr(&run(&[
        "store",
        "export",
        "--store",
        &source_url,
        "--output",
        &backup_arg,
    ]));
    assert_eq!(code, 0, "{stderr}");
    let lines = std::fs::read_to_string(&backup).unwrap();
    assert_eq!(lines.lines().count(), 2, "a head row and one task: {lines}");

    let (code, stderr) = code_and_stderr(&run(&[
        "store",
        "import",
        "--store",
        &copy_url,
        "--input",
        &backup_arg,
    ]));
    assert_eq!(code, 0, "{stderr}");
    let loaded = SqliteStore::open(&copy)
        .await
        .unwrap()
        .load()
        .await
        .unwrap();
    assert_eq!(loaded.revision, 2);
    assert_eq!(loaded.tasks.len(), 1);
    assert_eq!(loaded.tasks[0].state, TaskState::Revoked);

    // Never over existing state.
    let (code, stderr) = code_and_stderr(&run(&[
        "store",
        "import",
        "--store",
        &copy_url,
        "--input",
        &backup_arg,
    ]));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("not empty"), "{stderr}");

    let (code, stderr) = code_and_stderr(&run(&["store", "migrate", "--store", "mysql://nowhere"]));
    assert_eq!(code, 2, "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: set MANDATE_TEST_POSTGRES_URL and pass --ignored (see the README, under the two commands)"]
async fn a_sqlite_store_moves_to_postgresql() {
    let url = std::env::var("MANDATE_TEST_POSTGRES_URL").expect("MANDATE_TEST_POSTGRES_URL is not set: this test needs a PostgreSQL database URL (see the README, under the two commands)");
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.db");
    fill(&SqliteStore::open(&source).await.unwrap()).await;
    let backup = dir.path().join("backup.jsonl").display().to_string();
    let source_url = format!("sqlite://{}", source.display());
    let (code, stderr) = code_and_stderr(&run(&[
        "store",
        "export",
        "--store",
        &source_url,
        "--output",
        &backup,
    ]));
    assert_eq!(code, 0, "{stderr}");

    // A schema of its own, named in the URL as an operator would.
    let schema = format!("cli_{}", uuid::Uuid::now_v7().simple());
    let admin = PostgresStore::connect(&url, Some(&schema)).await.unwrap();
    let separator = if url.contains('?') { '&' } else { '?' };
    let target = format!("{url}{separator}options=-csearch_path%3D{schema}");
    let (code, stderr) = code_and_stderr(&run(&[
        "store", "import", "--store", &target, "--input", &backup,
    ]));
    assert_eq!(code, 0, "{stderr}");
    let loaded = admin.load().await.unwrap();
    assert_eq!(loaded.revision, 2);
    assert_eq!(loaded.tasks[0].state, TaskState::Revoked);
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(admin.pool())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_store_open_in_another_process_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mandate.db");
    let url = format!("sqlite://{}", path.display());
    let running = SqliteStore::open(&path).await.unwrap();
    fill(&running).await;
    // A second process that writes (a migration or an import into a store
    // a server is using, a second server on the same volume) would never
    // be seen by this one.
    let (code, stderr) = code_and_stderr(&run(&["store", "migrate", "--store", &url]));
    assert_ne!(code, 0, "{stderr}");
    assert!(stderr.contains("another process"), "{stderr}");
    // One that only reads may run beside it: a backup of a running store.
    let (code, stderr) = code_and_stderr(&run(&["store", "export", "--store", &url]));
    assert_eq!(code, 0, "{stderr}");
    drop(running);
    let (code, stderr) = code_and_stderr(&run(&["store", "migrate", "--store", &url]));
    assert_eq!(code, 0, "once it is closed the store opens: {stderr}");
}
