//! The journal over each backend: the write path (commit, then memory),
//! failures, several writers on one store, and signing keys.

use std::sync::Arc;

use mandate::approval::{ApprovalBook, Subject};
use mandate::graph::{TaskGraph, TaskState};
use mandate::journal::Journal;
use mandate::registry::{Registry, SensitivityScale};
use mandate::revision::Revision;
use mandate::store::{Store, StoreError};

use super::{Backend, NOW, spec, spiffe};

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
    mandate::journal::boot::fill(&graph, &approvals, &loaded);
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

pub async fn the_journal_commits_before_memory_and_agrees_with_the_store(backend: &Backend) {
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
    assert_eq!(&*root.id, "root");
    assert_eq!(
        reloaded.approvals.get(&approval.id),
        live.approvals.get(&approval.id)
    );
}

async fn live_from(backend: &Backend) -> Live {
    live(backend.open().await).await
}

pub async fn a_failed_commit_leaves_memory_untouched(backend: &Backend) {
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

pub async fn a_writer_behind_another_catches_up_and_plans_again(backend: &Backend) {
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

pub async fn a_write_on_a_shared_store_sees_other_writers_first(backend: &Backend) {
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
        assert_eq!((revoked, revision), (vec!["root".into()], 2));
    } else {
        // SQLite has one writer per file by design: a second one is not
        // told of the first's writes (docs/store.md says so).
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

pub async fn signing_keys_are_shared_sealed_and_refused_under_another_sealing_key(
    backend: &Backend,
) {
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

/// The real store, with every commit answered only after a pause: the
/// commit has landed while its caller still waits, which is when a
/// deadline or a cancelled call can interrupt it.
#[derive(Debug)]
struct SlowToAnswer {
    inner: Arc<dyn Store>,
    pause: std::time::Duration,
}

#[async_trait::async_trait]
impl Store for SlowToAnswer {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    fn shared(&self) -> bool {
        self.inner.shared()
    }
    async fn load(&self) -> Result<mandate::store::Loaded, StoreError> {
        self.inner.load().await
    }
    async fn commit(
        &self,
        revision: u64,
        change: &mandate::store::Change,
        at: i64,
    ) -> Result<(), StoreError> {
        let committed = self.inner.commit(revision, change, at).await;
        tokio::time::sleep(self.pause).await;
        committed
    }
    async fn changes_since(
        &self,
        after: u64,
        limit: u32,
    ) -> Result<Vec<(u64, mandate::store::Change)>, StoreError> {
        self.inner.changes_since(after, limit).await
    }
    async fn head(&self) -> Result<u64, StoreError> {
        self.inner.head().await
    }
    async fn task(&self, id: &str) -> Result<Option<mandate::graph::Task>, StoreError> {
        self.inner.task(id).await
    }
    async fn listen(&self) -> Result<Option<Box<dyn mandate::store::ChangeListener>>, StoreError> {
        self.inner.listen().await
    }
    async fn export(&self) -> Result<Vec<mandate::store::ExportRow>, StoreError> {
        self.inner.export().await
    }
    async fn import(&self, rows: &[mandate::store::ExportRow]) -> Result<(), StoreError> {
        self.inner.import(rows).await
    }
    fn audit_table(&self) -> Arc<dyn mandate::audit::AuditTable> {
        self.inner.audit_table()
    }
    async fn close(&self) {
        self.inner.close().await;
    }
}

pub async fn a_write_whose_caller_goes_away_is_still_applied(backend: &Backend) {
    let store = backend.open().await;
    let live = live(Arc::new(SlowToAnswer {
        inner: store.clone(),
        pause: std::time::Duration::from_millis(300),
    }))
    .await;
    let mut root_spec = spec("/agents/a");
    root_spec.expires_at = now() + 3600;
    live.journal
        .create_root::<StoreOrGraph>(
            "root".into(),
            root_spec,
            spiffe("/workloads/front"),
            "alice".into(),
            now(),
        )
        .await
        .unwrap();
    // The revoke's caller gives up while the store is still answering.
    let gave_up = tokio::time::timeout(
        std::time::Duration::from_millis(50),
        live.journal.revoke::<StoreOrGraph>("root"),
    )
    .await;
    assert!(gave_up.is_err(), "the caller gave up before the answer");
    // The store holds the revoke; memory must get it too, without another
    // write to trigger a catch-up.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while live.graph.get("root").unwrap().state != TaskState::Revoked {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the store revoked the task and memory never did"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(live.revision.current(), store.head().await.unwrap());
}
