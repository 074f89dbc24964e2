//! One conformance suite for every store backend: SQLite always, and
//! PostgreSQL when `MANDATE_TEST_POSTGRES_URL` is set (each test in a
//! schema of its own, so they run in parallel). Every test opens real
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

use mandate::approval::{Approval, ApprovalBook, ApprovalState, Subject};
use mandate::graph::{Task, TaskGraph, TaskSpec, TaskState};
use mandate::registry::{Entry, Kind, Registry, RegistryChange, SensitivityScale, UserEntry};
use mandate::revision::Revision;
use mandate::store::{Change, Journal, PostgresStore, SqliteStore, Store, StoreError};
use spiffe::SpiffeId;

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

    fn postgres() -> Option<Self> {
        let url = std::env::var("MANDATE_TEST_POSTGRES_URL").ok()?;
        let schema = format!("conformance_{}", uuid::Uuid::now_v7().simple());
        Some(Self::Postgres { url, schema })
    }

    async fn open(&self) -> Arc<dyn Store> {
        match self {
            Self::Sqlite(dir) => Arc::new(
                SqliteStore::open(&dir.path().join("mandate.db"))
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

/// Runs each named test against every backend available.
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
                async fn $name() {
                    let Some(backend) = super::Backend::postgres() else {
                        eprintln!("skipped: MANDATE_TEST_POSTGRES_URL is not set");
                        return;
                    };
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
    a_writer_behind_another_catches_up_and_plans_again,
    a_write_on_a_shared_store_sees_other_writers_first,
    signing_keys_are_shared_sealed_and_refused_under_another_sealing_key,
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
    let ids: Vec<&str> = loaded.tasks.iter().map(|t| t.id.as_str()).collect();
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
    assert_eq!(tasks[0].id, "t3");
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
    assert_eq!(loaded.tasks[0].id, "t1");
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

/// Live state built on `store` from what it holds, as `mandate serve` does.
struct Live {
    graph: Arc<TaskGraph>,
    approvals: Arc<ApprovalBook>,
    revision: Arc<Revision>,
    journal: Journal,
}

async fn live(store: Arc<dyn Store>) -> Live {
    let loaded = store.load().await.unwrap();
    let revision = Arc::new(Revision::starting_at(loaded.revision));
    let graph = Arc::new(TaskGraph::with_revision(8, revision.clone()));
    let approvals = Arc::new(ApprovalBook::new(revision.clone()));
    mandate::store::boot::fill(&graph, &approvals, &loaded);
    let registry = Arc::new(
        Registry::new(
            Vec::new(),
            &cedar_policy::Entities::empty(),
            &cedar_policy::Schema::from_cedarschema_str("").unwrap().0,
            SensitivityScale::default(),
            "example.org",
            revision.clone(),
        )
        .unwrap(),
    );
    let journal = Journal::new(
        store,
        graph.clone(),
        approvals.clone(),
        registry,
        revision.clone(),
    );
    Live {
        graph,
        approvals,
        revision,
        journal,
    }
}

fn now() -> i64 {
    mandate::clock::Clock::now(&mandate::clock::SystemClock)
}

async fn the_journal_commits_before_memory_and_agrees_with_the_store(backend: &Backend) {
    let store = backend.open().await;
    let live = live(store.clone()).await;
    let mut root_spec = spec("/agents/a");
    root_spec.expires_at = now() + 3600;
    let (root, r1) = live
        .journal
        .create_root::<StoreOrGraph>(
            "root".into(),
            root_spec.clone(),
            spiffe("/workloads/front"),
            "alice".into(),
            now(),
        )
        .await
        .unwrap();
    let mut child_spec = spec("/agents/b");
    child_spec.expires_at = now() + 600;
    let (_, r2) = live
        .journal
        .delegate::<StoreOrGraph>(
            "child".into(),
            "root",
            &spiffe("/agents/a"),
            child_spec,
            now(),
        )
        .await
        .unwrap();
    let (approval, _, r3) = live
        .journal
        .request_approval::<StoreOrGraph>(
            Subject {
                task_id: "child".into(),
                action: "write".into(),
                resource_type: "Mandate::Resource".into(),
                resource_id: "repo:acme".into(),
            },
            "needed",
            "spiffe://example.org/agents/b",
            "sha256:00",
            now(),
        )
        .await
        .unwrap();
    let (revoked, r4) = live.journal.revoke::<StoreOrGraph>("root").await.unwrap();
    assert_eq!((r1, r2, r3, r4), (1, 2, 3, 4));
    assert_eq!(revoked.len(), 2, "the subtree is revoked");
    // A no-op answers with the current revision and writes nothing.
    let (again, r5) = live.journal.revoke::<StoreOrGraph>("root").await.unwrap();
    assert!(again.is_empty());
    assert_eq!(r5, 4);
    assert_eq!(store.head().await.unwrap(), 4);
    assert_eq!(live.revision.current(), 4);

    // What a restart would load is what memory holds.
    let reloaded = live_from(backend).await;
    assert_eq!(reloaded.revision.current(), 4);
    for id in ["root", "child"] {
        assert_eq!(reloaded.graph.get(id), live.graph.get(id));
        assert_eq!(
            reloaded.graph.get(id).unwrap().state,
            TaskState::Revoked,
            "{id}"
        );
    }
    assert_eq!(root.id, "root");
    assert_eq!(
        reloaded.approvals.get(&approval.id),
        live.approvals.get(&approval.id)
    );
}

async fn live_from(backend: &Backend) -> Live {
    live(backend.open().await).await
}

async fn a_failed_commit_leaves_memory_untouched(backend: &Backend) {
    let store = backend.open().await;
    let live = live(store.clone()).await;
    let mut root_spec = spec("/agents/a");
    root_spec.expires_at = now() + 3600;
    live.journal
        .create_root::<StoreOrGraph>(
            "root".into(),
            root_spec.clone(),
            spiffe("/workloads/front"),
            "alice".into(),
            now(),
        )
        .await
        .unwrap();
    store.close().await;
    let revoke = live.journal.revoke::<StoreOrGraph>("root").await;
    assert!(
        matches!(revoke, Err(StoreOrGraph::Store(StoreError::Unavailable(_)))),
        "{revoke:?}"
    );
    assert_eq!(
        live.graph.get("root").unwrap().state,
        TaskState::Active,
        "an uncommitted revoke must not reach memory"
    );
    let create = live
        .journal
        .create_root::<StoreOrGraph>(
            "other".into(),
            root_spec,
            spiffe("/workloads/front"),
            "alice".into(),
            now(),
        )
        .await;
    assert!(create.is_err());
    assert!(live.graph.get("other").is_none());
    assert_eq!(live.revision.current(), 1);
}

async fn a_writer_behind_another_catches_up_and_plans_again(backend: &Backend) {
    // Two replicas' worth of memory on one store.
    let first = live_from(backend).await;
    let second = live_from(backend).await;
    let mut root_spec = spec("/agents/a");
    root_spec.expires_at = now() + 3600;
    first
        .journal
        .create_root::<StoreOrGraph>(
            "root".into(),
            root_spec.clone(),
            spiffe("/workloads/front"),
            "alice".into(),
            now(),
        )
        .await
        .unwrap();
    assert!(second.graph.get("root").is_none());
    // The second is at revision 0 and claims 1: it conflicts (or, on a
    // shared store, catches up first), learns about `root` and then
    // writes revision 2.
    let (_, revision) = second
        .journal
        .create_root::<StoreOrGraph>(
            "other".into(),
            root_spec,
            spiffe("/workloads/front"),
            "alice".into(),
            now(),
        )
        .await
        .unwrap();
    assert_eq!(revision, 2);
    assert!(second.graph.get("root").is_some());
    let (revoked, revision) = second
        .journal
        .revoke_agent(&spiffe("/agents/a"))
        .await
        .unwrap();
    assert_eq!(revision, 3);
    assert_eq!(revoked.len(), 2);
    assert_eq!(second.graph.get("root").unwrap().state, TaskState::Revoked);
    // The first learns of both by following.
    assert_eq!(first.journal.catch_up().await.unwrap(), 3);
    assert_eq!(first.graph.get("root").unwrap().state, TaskState::Revoked);
    assert_eq!(first.graph.get("other").unwrap().state, TaskState::Revoked);
}

async fn a_write_on_a_shared_store_sees_other_writers_first(backend: &Backend) {
    let first = live_from(backend).await;
    let second = live_from(backend).await;
    let mut root_spec = spec("/agents/a");
    root_spec.expires_at = now() + 3600;
    first
        .journal
        .create_root::<StoreOrGraph>(
            "root".into(),
            root_spec,
            spiffe("/workloads/front"),
            "alice".into(),
            now(),
        )
        .await
        .unwrap();
    let (revoked, revision) = second
        .journal
        .revoke_agent(&spiffe("/agents/a"))
        .await
        .unwrap();
    if second.journal.store().shared() {
        assert_eq!((revoked, revision), (vec!["root".to_owned()], 2));
    } else {
        // SQLite has one writer per file by design: a second one is not
        // told of the first's writes (the README says so).
        assert_eq!((revoked.len(), revision), (0, 0));
    }
}

/// The errors a journal write can end in, for these tests.
#[derive(Debug)]
#[expect(dead_code, reason = "read through `Debug` in assertion messages")]
enum StoreOrGraph {
    Store(StoreError),
    Graph(mandate::graph::GraphError),
    Approval(mandate::approval::ApprovalError),
}

impl From<StoreError> for StoreOrGraph {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl From<mandate::graph::GraphError> for StoreOrGraph {
    fn from(e: mandate::graph::GraphError) -> Self {
        Self::Graph(e)
    }
}

impl From<mandate::approval::ApprovalError> for StoreOrGraph {
    fn from(e: mandate::approval::ApprovalError) -> Self {
        Self::Approval(e)
    }
}

fn sealer(byte: u8) -> mandate::store::seal::Sealer {
    use base64::Engine;
    let text = base64::engine::general_purpose::STANDARD.encode([byte; 32]);
    mandate::store::seal::Sealer::from_base64(&text).unwrap()
}

fn ring(clock: Arc<mandate::clock::ManualClock>) -> Arc<mandate::credential::SigningKeys> {
    let rotation = mandate::credential::KeyRotation {
        rotate_after: 60,
        overlap: 3600,
    };
    Arc::new(mandate::credential::SigningKeys::from_store(
        rotation, clock,
    ))
}

async fn signing_keys_are_shared_sealed_and_refused_under_another_sealing_key(backend: &Backend) {
    let clock = Arc::new(mandate::clock::ManualClock::new(NOW));
    let first = live_from(backend).await;
    let first_ring = ring(clock.clone());
    first
        .journal
        .keep_keys(first_ring.clone(), sealer(7), &[])
        .unwrap();
    assert!(
        first_ring.current().is_err(),
        "no key before one is committed"
    );
    assert!(first.journal.rotate_key_if_due().await.unwrap());
    assert!(
        !first.journal.rotate_key_if_due().await.unwrap(),
        "not due yet"
    );
    let kid = first_ring.current().unwrap().kid.clone();

    // Another replica loads it and can verify what the first signs.
    let store = backend.open().await;
    let loaded = store.load().await.unwrap();
    assert_eq!(loaded.keys.len(), 1);
    let second = live(store.clone()).await;
    let second_ring = ring(clock.clone());
    second
        .journal
        .keep_keys(second_ring.clone(), sealer(7), &loaded.keys)
        .unwrap();
    assert!(second_ring.verifying(&kid).is_some());

    // The store holds it sealed only.
    let rows = store.export().await.unwrap();
    let row = rows.iter().find(|r| r.table == "signing_key").unwrap();
    assert!(row.body["sealed"].is_string(), "{row:?}");
    assert_eq!(row.body.as_object().unwrap().len(), 3, "{row:?}");

    // Under another sealing key the stored keys are refused.
    let third = live(backend.open().await).await;
    assert!(
        third
            .journal
            .keep_keys(ring(clock.clone()), sealer(8), &loaded.keys)
            .is_err()
    );

    // A rotation on the second reaches the first through the change log.
    clock.advance(61);
    assert!(second.journal.rotate_key_if_due().await.unwrap());
    let rotated = second_ring.current().unwrap().kid.clone();
    assert_ne!(rotated, kid);
    first.journal.catch_up().await.unwrap();
    assert_eq!(first_ring.current().unwrap().kid, rotated);
    assert!(first_ring.verifying(&kid).is_some(), "the old key overlaps");
}
