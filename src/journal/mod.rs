//! The write service: every write to live state (tasks, approvals, the
//! registry, signing keys) is planned against memory, committed to the
//! store, then applied to memory at the revision the store took, then
//! acknowledged. It sits above the graph, the approvals, the registry and
//! the store, and ties them together: the replica follower
//! ([`follow`]), start-up ([`boot`]) and key rotation ([`keyring`]) apply
//! through it too.

pub mod boot;
mod follow;
mod handle;
mod keyring;

pub use follow::{Follower, ReplicaHealth, ReplicaSettings};
pub use handle::StoreHandle;
pub use keyring::rotate_keys;

use std::sync::Arc;

use spiffe::SpiffeId;
use tokio::sync::{Mutex, OwnedMutexGuard};

use self::keyring::StoredKeys;
use crate::approval::{Approval, ApprovalBook, ApprovalError, Subject};
use crate::credential::SigningKeys;
use crate::graph::{Amendment, GraphError, Task, TaskGraph, TaskId, TaskSpec};
use crate::registry::{Entry, Kind, Registry, RegistryError, Snapshot};
use crate::revision::Revision;
use crate::store::seal::{KeyRecord, Sealer};
use crate::store::{Change, Store, StoreError};

/// How often one write plans again after another replica took its
/// revision, before it gives up with `UNAVAILABLE`.
const MAX_ATTEMPTS: usize = 16;
/// Changes read per query while catching up.
const CATCH_UP_BATCH: u32 = 1000;

/// The durable writer of live state: every write to the graph, the
/// approvals and the registry made by the API goes through it.
///
/// INVARIANT: writes run one at a time (the `writer` mutex), from plan to
/// apply, and followers apply other replicas' changes under the same
/// mutex, so a plan is still valid when it is applied; and nothing is
/// applied to memory that the store has not committed.
///
/// INVARIANT: once a commit is sent, it is applied (or, if its outcome is
/// unknown, memory catches up with the store) even when the caller goes
/// away meanwhile (a deadline, a cancelled call): the step runs in a task
/// of its own, holding the writer mutex.
#[derive(Debug)]
pub struct Journal {
    state: Arc<JournalState>,
}

/// What [`Journal`] holds; shared with the commit step's task.
#[derive(Debug)]
pub struct JournalState {
    store: Arc<dyn Store>,
    writer: Arc<Mutex<()>>,
    graph: Arc<TaskGraph>,
    approvals: Arc<ApprovalBook>,
    registry: Arc<Registry>,
    revision: Arc<Revision>,
    /// The key ring and the sealer, when signing keys live in the store.
    keys: std::sync::OnceLock<StoredKeys>,
}

impl std::ops::Deref for Journal {
    type Target = JournalState;

    fn deref(&self) -> &JournalState {
        &self.state
    }
}

impl Journal {
    /// A journal writing `store` and the live state loaded from it.
    pub fn new(
        store: Arc<dyn Store>,
        graph: Arc<TaskGraph>,
        approvals: Arc<ApprovalBook>,
        registry: Arc<Registry>,
        revision: Arc<Revision>,
    ) -> Self {
        Self {
            state: Arc::new(JournalState {
                store,
                writer: Arc::new(Mutex::new(())),
                graph,
                approvals,
                registry,
                revision,
                keys: std::sync::OnceLock::new(),
            }),
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The revision memory is at.
    pub fn revision(&self) -> u64 {
        self.revision.current()
    }

    /// Runs `plan` (again after a conflict), commits its change as the next
    /// revision and applies it. A plan without a change (a no-op such as
    /// revoking a revoked task) answers with the current revision.
    async fn write<T, E: From<StoreError>>(
        &self,
        mut plan: impl FnMut() -> Result<(Option<Change>, T), E>,
    ) -> Result<(T, u64), E> {
        let mut writer = Arc::clone(&self.writer).lock_owned().await;
        // Judged against what other replicas wrote, not only against what
        // this one has been told of so far: a revoke of a task created
        // elsewhere a moment ago must find it.
        if self.store.shared() {
            self.catch_up_locked().await?;
        }
        for _ in 0..MAX_ATTEMPTS {
            let (change, value) = plan()?;
            let Some(change) = change else {
                return Ok((value, self.revision.current()));
            };
            let next = self.revision.current().saturating_add(1);
            let (held, committed) = self.commit_and_apply(writer, next, change).await;
            writer = held;
            match committed {
                Ok(()) => return Ok((value, next)),
                // Another replica wrote first: learn what it wrote and
                // judge this write again against it.
                Err(StoreError::Conflict(_)) => {
                    self.catch_up_locked().await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Unavailable("too many concurrent writers; try again".to_owned()).into())
    }

    /// Commits `change` as `revision` and applies it, in a task the caller
    /// cannot cancel (see the type's invariant). On an error other than a
    /// conflict the commit may have landed all the same (the connection
    /// dropped after COMMIT was sent), so memory catches up with the store
    /// before the writer mutex is given back.
    async fn commit_and_apply(
        &self,
        writer: OwnedMutexGuard<()>,
        revision: u64,
        change: Change,
    ) -> (OwnedMutexGuard<()>, Result<(), StoreError>) {
        let state = Arc::clone(&self.state);
        let step = tokio::spawn(async move {
            let committed = match state.store.commit(revision, &change, unix_now()).await {
                Ok(()) => state.apply(&change, revision),
                Err(StoreError::Conflict(e)) => Err(StoreError::Conflict(e)),
                Err(e) => {
                    if let Err(caught) = state.catch_up_locked().await {
                        tracing::warn!(error = %caught, "cannot learn whether a failed commit landed; this replica is behind the store until it catches up");
                    }
                    Err(e)
                }
            };
            (writer, committed)
        });
        match step.await {
            Ok(done) => done,
            // The task panicked and its guard went with it.
            Err(e) => (
                Arc::clone(&self.writer).lock_owned().await,
                Err(StoreError::Unavailable(format!(
                    "the commit step failed: {e}"
                ))),
            ),
        }
    }

    /// Reads and applies every change committed after memory's revision;
    /// returns the revision memory is then at.
    pub async fn catch_up(&self) -> Result<u64, StoreError> {
        let _writer = self.writer.lock().await;
        self.catch_up_locked().await
    }
}

impl JournalState {
    /// Applies a committed change to memory. A registry change that no
    /// longer fits the schema in use (it changed since the plan) is not
    /// applied and the revision does not move: memory cannot claim a
    /// revision it lacks a write of, so this replica stops here and is
    /// stale (and denies) rather than decide on an old registry.
    fn apply(&self, change: &Change, revision: u64) -> Result<(), StoreError> {
        match change {
            Change::Tasks(tasks) => self.graph.apply(tasks, revision),
            Change::Approvals(approvals) => self.approvals.apply(approvals, revision),
            Change::Registry(change) => {
                if let Err(problems) = self.registry.apply(change, revision) {
                    let problems = problems.join("; ");
                    tracing::error!(kind = %change.kind, id = %change.id, %problems, revision, "a committed registry write does not fit the schema in use; this replica stops at the revision before it");
                    return Err(StoreError::Corrupt(format!(
                        "the registry write at revision `{revision}` ({} `{}`) does not fit the schema in use: {problems}",
                        change.kind, change.id
                    )));
                }
            }
            Change::SigningKey(record) => {
                keyring::apply_key(self.keys.get(), record);
                self.revision.advance_to(revision);
            }
        }
        Ok(())
    }

    async fn catch_up_locked(&self) -> Result<u64, StoreError> {
        loop {
            let batch = self
                .store
                .changes_since(self.revision.current(), CATCH_UP_BATCH)
                .await?;
            if batch.is_empty() {
                return Ok(self.revision.current());
            }
            for (revision, change) in batch {
                // INVARIANT: changes are applied one revision after the
                // other; a hole would mean a write this replica never saw,
                // so it stops following (and, stale, denies everything)
                // rather than decide on state with a write missing.
                let expected = self.revision.current().saturating_add(1);
                if revision != expected {
                    return Err(StoreError::Corrupt(format!(
                        "the change log jumps from revision `{}` to `{revision}`",
                        expected.saturating_sub(1)
                    )));
                }
                self.apply(&change, revision)?;
            }
        }
    }
}

impl Journal {
    /// Creates a root task; see [`TaskGraph::create_root`].
    pub async fn create_root<E: From<GraphError> + From<StoreError>>(
        &self,
        id: TaskId,
        spec: TaskSpec,
        delegator: SpiffeId,
        originator: String,
        now: i64,
    ) -> Result<(Arc<Task>, u64), E> {
        self.write(|| {
            let task = self.graph.plan_root(
                id.clone(),
                spec.clone(),
                delegator.clone(),
                originator.clone(),
                now,
            )?;
            Ok((Some(Change::Tasks(vec![task.clone()])), task))
        })
        .await
    }

    /// Creates a sub-task; see [`TaskGraph::delegate`]. Scopes are checked
    /// against the registry in use.
    pub async fn delegate<E: From<GraphError> + From<StoreError>>(
        &self,
        id: TaskId,
        parent_id: &str,
        caller: &SpiffeId,
        spec: TaskSpec,
        now: i64,
    ) -> Result<(Arc<Task>, u64), E> {
        self.write(|| {
            let registry = self.registry.snapshot();
            let task = self.graph.plan_delegate(
                id.clone(),
                parent_id,
                caller,
                spec.clone(),
                now,
                registry.as_ref(),
            )?;
            Ok((Some(Change::Tasks(vec![task.clone()])), task))
        })
        .await
    }

    /// Amends a task; see [`TaskGraph::amend`].
    pub async fn amend<E: From<GraphError> + From<StoreError>>(
        &self,
        id: &str,
        caller: &SpiffeId,
        amendment: Amendment,
        now: i64,
    ) -> Result<(Arc<Task>, u64), E> {
        self.write(|| {
            let registry = self.registry.snapshot();
            let task =
                self.graph
                    .plan_amend(id, caller, amendment.clone(), now, registry.as_ref())?;
            Ok((Some(Change::Tasks(vec![task.clone()])), task))
        })
        .await
    }

    /// Completes a task; see [`TaskGraph::complete`].
    pub async fn complete<E: From<GraphError> + From<StoreError>>(
        &self,
        id: &str,
        now: i64,
    ) -> Result<u64, E> {
        self.write(|| {
            let task = self.graph.plan_complete(id, now)?;
            Ok((Some(Change::Tasks(vec![task])), ()))
        })
        .await
        .map(|((), revision)| revision)
    }

    /// Revokes the pending approvals of tasks that ended (a completed
    /// task and its subtree); see [`ApprovalBook::plan_end_pending`].
    pub async fn end_pending_approvals(
        &self,
        task_ids: &[TaskId],
    ) -> Result<(Vec<Approval>, u64), StoreError> {
        self.write(|| {
            let ended = self.approvals.plan_end_pending(task_ids);
            let change = (!ended.is_empty()).then(|| Change::Approvals(ended.clone()));
            Ok((change, ended))
        })
        .await
    }

    /// Revokes a task and its subtree; see [`TaskGraph::revoke`]. Returns
    /// once memory denies, so every later decision on this replica does.
    pub async fn revoke<E: From<GraphError> + From<StoreError>>(
        &self,
        id: &str,
    ) -> Result<(Vec<TaskId>, u64), E> {
        self.write(|| {
            let tasks = self.graph.plan_revoke(id)?;
            Ok(revoked(tasks))
        })
        .await
    }

    /// Revokes every task delegated to `delegatee`.
    pub async fn revoke_agent(
        &self,
        delegatee: &SpiffeId,
    ) -> Result<(Vec<TaskId>, u64), StoreError> {
        self.write(|| Ok(revoked(self.graph.plan_revoke_agent(delegatee))))
            .await
    }

    /// Registers (`update` false) or updates a registry entry; see
    /// [`Registry::register`].
    pub async fn put_entry<E: From<RegistryError> + From<StoreError>>(
        &self,
        entry: Entry,
        authorize: impl Fn(&Snapshot) -> Result<(), E>,
        update: bool,
    ) -> Result<u64, E> {
        self.write(|| {
            let change = self.registry.plan_put(entry.clone(), &authorize, update)?;
            Ok((Some(Change::Registry(change)), ()))
        })
        .await
        .map(|((), revision)| revision)
    }

    /// Removes a registry entry; see [`Registry::remove`].
    pub async fn remove_entry<E: From<RegistryError> + From<StoreError>>(
        &self,
        kind: Kind,
        id: &str,
        authorize: impl Fn(&Snapshot) -> Result<(), E>,
    ) -> Result<u64, E> {
        self.write(|| {
            let change = self.registry.plan_remove(kind, id, &authorize)?;
            Ok((Some(Change::Registry(change)), ()))
        })
        .await
        .map(|((), revision)| revision)
    }
}

/// Approvals through the journal: asked for (by the API, or by the
/// decision runner for a "needs approval"), decided and revoked.
impl Journal {
    /// Asks for an approval; see [`crate::approval::ApprovalBook::request`].
    pub async fn request_approval<E: From<ApprovalError> + From<StoreError>>(
        &self,
        subject: Subject,
        justification: &str,
        requested_by: &str,
        scope_digest: &str,
        now: i64,
    ) -> Result<(Approval, bool, u64), E> {
        let ((approval, created), revision) = self
            .write(|| -> Result<_, E> {
                let plan = self.approvals.plan_request(
                    subject.clone(),
                    justification,
                    requested_by,
                    scope_digest,
                    now,
                )?;
                let created = !plan.changes.is_empty();
                let change = created.then_some(Change::Approvals(plan.changes));
                Ok((change, (plan.approval, created)))
            })
            .await?;
        Ok((approval, created, revision))
    }

    /// Decides an approval; see [`crate::approval::ApprovalBook::decide`]. `who` is
    /// (approver, decided_by).
    pub async fn decide_approval<E: From<ApprovalError> + From<StoreError>>(
        &self,
        id: &str,
        granted: bool,
        who: (&str, &str),
        valid_for: i64,
        scope_digest: &str,
        now: i64,
    ) -> Result<(Approval, u64), E> {
        self.write(|| {
            let approval =
                self.approvals
                    .plan_decide(id, granted, who, valid_for, scope_digest, now)?;
            Ok((Some(Change::Approvals(vec![approval.clone()])), approval))
        })
        .await
    }

    /// Withdraws an approval; see [`crate::approval::ApprovalBook::revoke`].
    pub async fn revoke_approval<E: From<ApprovalError> + From<StoreError>>(
        &self,
        id: &str,
    ) -> Result<(Approval, u64), E> {
        self.write(|| {
            let approval = self.approvals.plan_revoke(id)?;
            Ok((Some(Change::Approvals(vec![approval.clone()])), approval))
        })
        .await
    }
}

/// Signing keys through the journal (see [`keyring`]).
impl Journal {
    /// Keeps signing keys in the store: `ring` (made with
    /// [`SigningKeys::from_store`]) gets every stored key now and every new
    /// one as it is committed. Keys that do not open with `sealer` are
    /// refused: the store holds keys of another deployment.
    pub fn keep_keys(
        &self,
        ring: Arc<SigningKeys>,
        sealer: Sealer,
        stored: &[KeyRecord],
    ) -> Result<(), StoreError> {
        keyring::open_stored(&ring, &sealer, stored)?;
        self.keys
            .set(StoredKeys { ring, sealer })
            .map_err(|_| StoreError::Key("signing keys are already kept".to_owned()))
    }

    /// Makes, seals and commits a new signing key when the newest is due
    /// for rotation (or there is none); returns whether it did. Another
    /// replica may have rotated meanwhile: the plan runs after catching
    /// up, so one rotation is enough.
    pub async fn rotate_key_if_due(&self) -> Result<bool, StoreError> {
        let Some(keys) = self.keys.get() else {
            return Ok(false);
        };
        // Whether this call rotated: the revision may also move when the
        // write catches up with other replicas' changes.
        let (rotated, _) = self
            .write(|| -> Result<_, StoreError> {
                let record = keyring::plan_rotation(keys)?;
                let rotated = record.is_some();
                Ok((record.map(Change::SigningKey), rotated))
            })
            .await?;
        Ok(rotated)
    }
}

fn revoked(tasks: Vec<Arc<Task>>) -> (Option<Change>, Vec<TaskId>) {
    let ids = tasks.iter().map(|t| t.id.clone()).collect();
    ((!tasks.is_empty()).then_some(Change::Tasks(tasks)), ids)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
