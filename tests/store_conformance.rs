//! One conformance suite for every store backend: SQLite always, and
//! PostgreSQL with `--ignored` and `MANDATE_TEST_POSTGRES_URL` (each test in
//! a schema of its own, so they run in parallel). Every test opens real
//! databases; nothing is mocked.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

use std::collections::BTreeSet;
use std::sync::Arc;

use mandate::approval::{Approval, ApprovalState, Subject};
use mandate::graph::{Task, TaskSpec, TaskState};
use mandate::registry::{Entry, Kind, RegistryChange, UserEntry};
use mandate::store::{Change, PostgresStore, SqliteStore, Store, StoreError};
use spiffe::SpiffeId;

#[path = "store_conformance/journal.rs"]
mod journal;

use journal::*;

const NOW: i64 = 1_800_000_000;

/// Where a test's store lives; [`Backend::open`] opens the same one again.
enum Backend {
    Sqlite(tempfile::TempDir),
    Postgres { url: String, schema: String },
}

impl Backend {
    fn sqlite() -> Self {
        Self::Sqlite(tempfile::tempdir().unwrap())
    }

    fn postgres() -> Self {
        let url = std::env::var("MANDATE_TEST_POSTGRES_URL").expect("MANDATE_TEST_POSTGRES_URL is not set: this test needs a PostgreSQL database URL (see the README, under the two commands)");
        let schema = format!("conformance_{}", uuid::Uuid::now_v7().simple());
        Self::Postgres { url, schema }
    }

    async fn open(&self) -> Arc<dyn Store> {
        match self {
            Self::Sqlite(dir) => Arc::new(
                SqliteStore::open_unlocked(&dir.path().join("mandate.db"))
                    .await
                    .unwrap(),
            ),
            Self::Postgres { url, schema } => {
                Arc::new(PostgresStore::connect(url, Some(schema)).await.unwrap())
            }
        }
    }

    async fn drop_schema(&self) {
        if let Self::Postgres { url, schema } = self {
            let store = PostgresStore::connect(url, None).await.unwrap();
            sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                .execute(store.pool())
                .await
                .unwrap();
        }
    }
}

/// Runs each named test against SQLite and, ignored unless asked for,
/// PostgreSQL.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(&super::Backend::sqlite()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                #[ignore = "needs PostgreSQL: set MANDATE_TEST_POSTGRES_URL and pass --ignored (see the README, under the two commands)"]
                async fn $name() {
                    let backend = super::Backend::postgres();
                    super::$name(&backend).await;
                    backend.drop_schema().await;
                }
            )*
        }
    };
}

conformance!(
    an_empty_store_loads_at_revision_zero,
    every_kind_of_change_round_trips,
    a_taken_revision_conflicts_and_writes_nothing,
    changes_come_back_in_revision_order,
    later_writes_replace_earlier_rows,
    a_reopened_store_keeps_everything,
    export_then_import_round_trips,
    the_journal_commits_before_memory_and_agrees_with_the_store,
    a_failed_commit_leaves_memory_untouched,
    a_write_whose_caller_goes_away_is_still_applied,
    a_writer_behind_another_catches_up_and_plans_again,
    a_write_on_a_shared_store_sees_other_writers_first,
    signing_keys_are_shared_sealed_and_refused_under_another_sealing_key,
    one_task_is_read_back_as_last_committed,
);

fn spiffe(path: &str) -> SpiffeId {
    SpiffeId::new(format!("spiffe://example.org{path}")).unwrap()
}

fn spec(delegatee: &str) -> TaskSpec {
    TaskSpec {
        intent: "fix the build".into(),
        delegatee: spiffe(delegatee),
        actions: BTreeSet::from(["read".to_owned()]),
        scope: BTreeSet::from(["repo:acme".to_owned()]),
        max_sensitivity: 1,
        expires_at: NOW + 3600,
    }
}

fn task(id: &str, parent: Option<&Task>) -> Arc<Task> {
    Arc::new(Task::new(
        id.into(),
        spec("/agents/a"),
        spiffe("/workloads/front"),
        "alice".into(),
        parent,
        NOW,
    ))
}

fn approval(id: &str, task_id: &str, state: ApprovalState) -> Approval {
    Approval {
        id: id.into(),
        subject: Subject {
            task_id: task_id.into(),
            action: "write".into(),
            resource_type: "Mandate::Resource".into(),
            resource_id: "repo:acme".into(),
        },
        justification: "needed".into(),
        requested_by: "spiffe://example.org/agents/a".into(),
        requested_at: NOW,
        state,
        approver: (state != ApprovalState::Pending).then(|| "bob".to_owned()),
        decided_by: None,
        decided_at: (state != ApprovalState::Pending).then_some(NOW),
        expires_at: (state != ApprovalState::Pending).then_some(NOW + 60),
        scope_digest: "sha256:00".into(),
    }
}

fn user(id: &str) -> RegistryChange {
    RegistryChange {
        kind: Kind::User,
        id: id.into(),
        entry: Some(Entry::User(UserEntry {
            id: id.into(),
            name: Some("A User".into()),
            groups: BTreeSet::new(),
        })),
    }
}

async fn an_empty_store_loads_at_revision_zero(backend: &Backend) {
    let store = backend.open().await;
    let loaded = store.load().await.unwrap();
    assert_eq!(loaded.revision, 0);
    assert_eq!(loaded.rows(), 0);
    assert_eq!(store.head().await.unwrap(), 0);
    assert!(store.changes_since(0, 10).await.unwrap().is_empty());
}

/// What `GetTask` answers for a task that left memory.
async fn one_task_is_read_back_as_last_committed(backend: &Backend) {
    let store = backend.open().await;
    let root = task("t1", None);
    store
        .commit(1, &Change::Tasks(vec![root.clone()]), NOW)
        .await
        .unwrap();
    let mut revoked = (*root).clone();
    revoked.state = TaskState::Revoked;
    store
        .commit(2, &Change::Tasks(vec![Arc::new(revoked.clone())]), NOW)
        .await
        .unwrap();
    assert_eq!(store.task("t1").await.unwrap(), Some(revoked));
    assert_eq!(store.task("t2").await.unwrap(), None);
}

async fn every_kind_of_change_round_trips(backend: &Backend) {
    let store = backend.open().await;
    let root = task("t1", None);
    let child = task("t2", Some(&root));
    store
        .commit(1, &Change::Tasks(vec![root.clone(), child.clone()]), NOW)
        .await
        .unwrap();
    let pending = approval("a1", "t1", ApprovalState::Pending);
    store
        .commit(2, &Change::Approvals(vec![pending.clone()]), NOW)
        .await
        .unwrap();
    store
        .commit(3, &Change::Registry(user("carol")), NOW)
        .await
        .unwrap();
    let removal = RegistryChange {
        kind: Kind::User,
        id: "alice".into(),
        entry: None,
    };
    store
        .commit(4, &Change::Registry(removal.clone()), NOW)
        .await
        .unwrap();

    let loaded = store.load().await.unwrap();
    assert_eq!(loaded.revision, 4);
    let mut tasks: Vec<Task> = loaded.tasks.iter().map(|t| (**t).clone()).collect();
    tasks.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(tasks, vec![(*root).clone(), (*child).clone()]);
    assert_eq!(tasks[1].parent.as_deref(), Some("t1"));
    assert_eq!(loaded.approvals, vec![pending]);
    assert_eq!(loaded.registry.len(), 2);
    assert!(loaded.registry.contains(&user("carol")));
    assert!(loaded.registry.contains(&removal));
}

async fn a_taken_revision_conflicts_and_writes_nothing(backend: &Backend) {
    let store = backend.open().await;
    store
        .commit(1, &Change::Tasks(vec![task("first", None)]), NOW)
        .await
        .unwrap();
    let second = store
        .commit(1, &Change::Tasks(vec![task("second", None)]), NOW)
        .await;
    assert!(matches!(second, Err(StoreError::Conflict(1))), "{second:?}");
    let loaded = store.load().await.unwrap();
    let ids: Vec<&str> = loaded.tasks.iter().map(|t| &*t.id).collect();
    assert_eq!(
        ids,
        vec!["first"],
        "the conflicting write must leave nothing"
    );
    assert_eq!(loaded.revision, 1);
}

async fn changes_come_back_in_revision_order(backend: &Backend) {
    let store = backend.open().await;
    for revision in 1..=5u64 {
        let change = Change::Tasks(vec![task(&format!("t{revision}"), None)]);
        store.commit(revision, &change, NOW).await.unwrap();
    }
    let after_two = store.changes_since(2, 2).await.unwrap();
    let revisions: Vec<u64> = after_two.iter().map(|(r, _)| *r).collect();
    assert_eq!(revisions, vec![3, 4]);
    let Change::Tasks(tasks) = &after_two[0].1 else {
        panic!("a task change was written");
    };
    assert_eq!(&*tasks[0].id, "t3");
    assert!(store.changes_since(5, 10).await.unwrap().is_empty());
    assert_eq!(store.head().await.unwrap(), 5);
}

async fn later_writes_replace_earlier_rows(backend: &Backend) {
    let store = backend.open().await;
    let active = task("t1", None);
    store
        .commit(1, &Change::Tasks(vec![active.clone()]), NOW)
        .await
        .unwrap();
    let mut revoked = (*active).clone();
    revoked.state = TaskState::Revoked;
    store
        .commit(2, &Change::Tasks(vec![Arc::new(revoked)]), NOW)
        .await
        .unwrap();
    let decided = approval("a1", "t1", ApprovalState::Approved);
    store
        .commit(
            3,
            &Change::Approvals(vec![approval("a1", "t1", ApprovalState::Pending)]),
            NOW,
        )
        .await
        .unwrap();
    store
        .commit(4, &Change::Approvals(vec![decided.clone()]), NOW)
        .await
        .unwrap();
    let loaded = store.load().await.unwrap();
    assert_eq!(loaded.tasks.len(), 1);
    assert_eq!(loaded.tasks[0].state, TaskState::Revoked);
    assert_eq!(loaded.approvals, vec![decided]);
}

async fn a_reopened_store_keeps_everything(backend: &Backend) {
    let store = backend.open().await;
    store
        .commit(1, &Change::Tasks(vec![task("t1", None)]), NOW)
        .await
        .unwrap();
    store.close().await;
    drop(store);
    let again = backend.open().await;
    let loaded = again.load().await.unwrap();
    assert_eq!(loaded.revision, 1);
    assert_eq!(&*loaded.tasks[0].id, "t1");
    again
        .commit(2, &Change::Tasks(vec![task("t2", None)]), NOW)
        .await
        .unwrap();
}

async fn export_then_import_round_trips(backend: &Backend) {
    let source = backend.open().await;
    source
        .commit(1, &Change::Tasks(vec![task("t1", None)]), NOW)
        .await
        .unwrap();
    source
        .commit(
            2,
            &Change::Approvals(vec![approval("a1", "t1", ApprovalState::Denied)]),
            NOW,
        )
        .await
        .unwrap();
    source
        .commit(3, &Change::Registry(user("carol")), NOW)
        .await
        .unwrap();
    let rows = source.export().await.unwrap();
    // Through text, as `store export` writes it.
    let text: Vec<String> = rows
        .iter()
        .map(|r| serde_json::to_string(r).unwrap())
        .collect();
    let rows: Vec<mandate::store::ExportRow> = text
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();

    let refused = source.import(&rows).await;
    assert!(
        matches!(refused, Err(StoreError::NotEmpty(3))),
        "{refused:?}"
    );

    let target_dir = tempfile::tempdir().unwrap();
    let target = SqliteStore::open(&target_dir.path().join("copy.db"))
        .await
        .unwrap();
    target.import(&rows).await.unwrap();
    let (a, b) = (source.load().await.unwrap(), target.load().await.unwrap());
    assert_eq!(b.revision, 3);
    assert_eq!(a.tasks, b.tasks);
    assert_eq!(a.approvals, b.approvals);
    assert_eq!(a.registry, b.registry);
    // Revisions go on after the imported head.
    assert!(matches!(
        target
            .commit(3, &Change::Tasks(vec![task("t9", None)]), NOW)
            .await,
        Err(StoreError::Conflict(3))
    ));
    target
        .commit(4, &Change::Tasks(vec![task("t9", None)]), NOW)
        .await
        .unwrap();
}
