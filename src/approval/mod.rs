//! Approvals: a human's decision on (task, action, resource), held in live
//! state. An approval counts only while it is current: decided, not
//! revoked, not expired, and the task's scope digest unchanged since it was
//! decided (DESIGN §3.5).

mod entity;
mod write;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::revision::Revision;

pub use entity::{APPROVAL_TYPE, approval_entity};
pub use write::RequestPlan;

/// Where an approval is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApprovalState {
    /// Asked for, not decided yet.
    Pending,
    /// The approver said yes.
    Approved,
    /// The approver said no.
    Denied,
    /// Withdrawn after it was asked for or decided.
    Revoked,
}

impl ApprovalState {
    /// The name used in Cedar, the API and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Revoked => "revoked",
        }
    }
}

/// What an approval is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subject {
    /// The task.
    pub task_id: String,
    /// The action id.
    pub action: String,
    /// The resource's Cedar type.
    pub resource_type: String,
    /// The resource's id.
    pub resource_id: String,
}

/// One approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    /// Its id (a UUIDv7).
    pub id: String,
    /// What it is about.
    pub subject: Subject,
    /// Why the agent asks, in its words.
    pub justification: String,
    /// SPIFFE ID of the agent that asked.
    pub requested_by: String,
    /// When it was asked for, Unix seconds.
    pub requested_at: i64,
    /// Its state.
    pub state: ApprovalState,
    /// The user who decided.
    pub approver: Option<String>,
    /// SPIFFE ID of the workload that relayed the decision.
    pub decided_by: Option<String>,
    /// When it was decided, Unix seconds.
    pub decided_at: Option<i64>,
    /// Until when the decision counts, Unix seconds.
    pub expires_at: Option<i64>,
    /// The task's scope digest when the approval was asked for; a decision
    /// is refused if the task changed since, so the human decides on the
    /// bounds the agent asked under.
    pub scope_digest: String,
}

impl Approval {
    /// Whether the decision still counts at `now` for a task whose scope
    /// digest is `digest`.
    pub fn is_current(&self, digest: &str, now: i64) -> bool {
        matches!(self.state, ApprovalState::Approved | ApprovalState::Denied)
            && self.expires_at.is_some_and(|e| now < e)
            && self.scope_digest == digest
    }
}

/// Why an approval write was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApprovalError {
    /// No approval has this id.
    #[error("approval `{0}` does not exist")]
    NotFound(String),
    /// Only a pending approval can be decided.
    #[error("approval `{id}` is {state}, not pending")]
    NotPending {
        /// The approval.
        id: String,
        /// Its state.
        state: &'static str,
    },
    /// Already revoked.
    #[error("approval `{0}` is already revoked")]
    AlreadyRevoked(String),
    /// The task changed after the approval was asked for.
    #[error("the task of approval `{0}` changed after it was asked for; the agent must ask again")]
    TaskChanged(String),
    /// Too many approvals of one task wait for a decision.
    #[error(
        "task `{0}` already has {MAX_PENDING_PER_TASK} pending approvals; decide or revoke some first"
    )]
    TooManyPending(String),
    /// Bad input.
    #[error("{0}")]
    Invalid(String),
}

impl ApprovalError {
    /// The stable reason code clients match on.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "unknown-approval",
            Self::NotPending { .. } => "approval-not-pending",
            Self::AlreadyRevoked(_) => "approval-revoked",
            Self::TaskChanged(_) => "approval-task-changed",
            Self::TooManyPending(_) => "too-many-pending",
            Self::Invalid(_) => "invalid-approval",
        }
    }
}

/// Which approvals to list.
#[derive(Debug, Clone, Default)]
pub struct ApprovalFilter {
    /// Only these states.
    pub state: Option<ApprovalState>,
    /// Only approvals of this task.
    pub task_id: Option<String>,
    /// Only approvals decided by this user.
    pub approver: Option<String>,
}

/// Longest lifetime of a decision, seconds (30 days).
pub const MAX_VALID_FOR_SECS: i64 = 30 * 24 * 3600;
/// Longest justification, bytes.
pub const MAX_JUSTIFICATION_BYTES: usize = 2048;
/// Most approvals of one task pending at once, so an agent cannot flood
/// its humans.
pub const MAX_PENDING_PER_TASK: usize = 64;

#[derive(Debug, Default)]
struct Inner {
    /// By id; UUIDv7 ids sort by creation.
    by_id: BTreeMap<String, Approval>,
    /// Ids per subject, oldest first.
    by_subject: HashMap<Subject, Vec<String>>,
    /// The approval decided last for each subject. INVARIANT: only this
    /// one can count; revoking it or letting it expire never lets an
    /// older decision count again.
    last_decided: HashMap<Subject, String>,
    /// Pending approvals per task.
    pending_per_task: HashMap<String, usize>,
}

/// The live approvals.
#[derive(Debug, Default)]
pub struct ApprovalBook {
    inner: RwLock<Inner>,
    revision: Arc<Revision>,
}

impl ApprovalBook {
    /// An empty book whose writes bump `revision`.
    pub fn new(revision: Arc<Revision>) -> Self {
        Self {
            inner: RwLock::default(),
            revision,
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// One approval.
    pub fn get(&self, id: &str) -> Option<Approval> {
        self.read().by_id.get(id).cloned()
    }

    /// The pending approval for `subject`, or a new one. Returns it, whether
    /// it was created, and the revision (unchanged when it already existed).
    /// `scope_digest` is the task's digest now. In memory only: a server
    /// writes through [`crate::journal::Journal`].
    pub fn request(
        &self,
        subject: Subject,
        justification: &str,
        requested_by: &str,
        scope_digest: &str,
        now: i64,
    ) -> Result<(Approval, bool, u64), ApprovalError> {
        let mut inner = self.write();
        let plan = write::plan_request(
            &inner,
            uuid::Uuid::now_v7().to_string(),
            subject,
            justification,
            requested_by,
            scope_digest,
            now,
        )?;
        let created = !plan.changes.is_empty();
        let revision = self.apply_locked(&mut inner, plan.changes);
        Ok((plan.approval, created, revision))
    }

    /// Records a decision on a pending approval, valid for `valid_for`
    /// seconds. `scope_digest` is the task's digest now: it must be the one
    /// the approval was asked under. In memory only.
    #[allow(clippy::too_many_arguments)]
    pub fn decide(
        &self,
        id: &str,
        granted: bool,
        approver: &str,
        decided_by: &str,
        valid_for: i64,
        scope_digest: &str,
        now: i64,
    ) -> Result<(Approval, u64), ApprovalError> {
        let mut inner = self.write();
        let approval = write::plan_decide(
            &inner,
            id,
            granted,
            (approver, decided_by),
            valid_for,
            scope_digest,
            now,
        )?;
        let revision = self.apply_locked(&mut inner, vec![approval.clone()]);
        Ok((approval, revision))
    }

    /// Withdraws an approval, pending or decided. In memory only.
    pub fn revoke(&self, id: &str) -> Result<(Approval, u64), ApprovalError> {
        let mut inner = self.write();
        let approval = write::plan_revoke(&inner, id)?;
        let revision = self.apply_locked(&mut inner, vec![approval.clone()]);
        Ok((approval, revision))
    }

    fn apply_locked(&self, inner: &mut Inner, approvals: Vec<Approval>) -> u64 {
        if approvals.is_empty() {
            return self.revision.current();
        }
        for approval in approvals {
            write::upsert(inner, approval);
        }
        self.revision.bump()
    }

    /// The last decision on `subject`, if it is current for a task whose
    /// scope digest is `digest`. Only the last decision can count.
    pub fn current(&self, subject: &Subject, digest: &str, now: i64) -> Option<Approval> {
        let inner = self.read();
        let id = inner.last_decided.get(subject)?;
        inner
            .by_id
            .get(id)
            .filter(|a| a.is_current(digest, now))
            .cloned()
    }

    /// The pending approval for `subject`, if any.
    pub fn pending(&self, subject: &Subject) -> Option<Approval> {
        pending_of(&self.read(), subject).cloned()
    }

    /// Approvals matching `filter`, by id (creation order), after `after`.
    pub fn list(
        &self,
        filter: &ApprovalFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Vec<Approval> {
        let inner = self.read();
        let start = after.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
        inner
            .by_id
            .range::<str, _>((start, std::ops::Bound::Unbounded))
            .map(|(_, a)| a)
            .filter(|a| filter.state.is_none_or(|s| a.state == s))
            .filter(|a| {
                filter
                    .task_id
                    .as_ref()
                    .is_none_or(|t| &a.subject.task_id == t)
            })
            .filter(|a| {
                filter
                    .approver
                    .as_ref()
                    .is_none_or(|u| a.approver.as_ref() == Some(u))
            })
            .take(limit)
            .cloned()
            .collect()
    }
}

fn pending_of<'a>(inner: &'a Inner, subject: &Subject) -> Option<&'a Approval> {
    inner
        .by_subject
        .get(subject)?
        .iter()
        .filter_map(|id| inner.by_id.get(id))
        .find(|a| a.state == ApprovalState::Pending)
}

/// Writes in two steps (see [`write`]): plans that change nothing, and
/// applying what the store committed.
impl ApprovalBook {
    /// Plans [`ApprovalBook::request`].
    pub fn plan_request(
        &self,
        subject: Subject,
        justification: &str,
        requested_by: &str,
        scope_digest: &str,
        now: i64,
    ) -> Result<RequestPlan, ApprovalError> {
        self.plan_request_as(
            uuid::Uuid::now_v7().to_string(),
            subject,
            justification,
            requested_by,
            scope_digest,
            now,
        )
    }

    /// [`ApprovalBook::plan_request`] naming a new approval `id`.
    pub fn plan_request_as(
        &self,
        id: String,
        subject: Subject,
        justification: &str,
        requested_by: &str,
        scope_digest: &str,
        now: i64,
    ) -> Result<RequestPlan, ApprovalError> {
        write::plan_request(
            &self.read(),
            id,
            subject,
            justification,
            requested_by,
            scope_digest,
            now,
        )
    }

    /// Plans [`ApprovalBook::decide`]; `who` is (approver, decided_by).
    pub fn plan_decide(
        &self,
        id: &str,
        granted: bool,
        who: (&str, &str),
        valid_for: i64,
        scope_digest: &str,
        now: i64,
    ) -> Result<Approval, ApprovalError> {
        write::plan_decide(&self.read(), id, granted, who, valid_for, scope_digest, now)
    }

    /// Plans [`ApprovalBook::revoke`].
    pub fn plan_revoke(&self, id: &str) -> Result<Approval, ApprovalError> {
        write::plan_revoke(&self.read(), id)
    }

    /// Plans ending the pending approvals of `task_ids`, tasks that ended:
    /// each revoked, so no human is asked to decide what can never count.
    pub fn plan_end_pending(&self, task_ids: &[crate::graph::TaskId]) -> Vec<Approval> {
        let inner = self.read();
        let ended: std::collections::HashSet<&str> = task_ids
            .iter()
            .map(|id| &**id)
            .filter(|id| inner.pending_per_task.get(*id).is_some_and(|n| *n > 0))
            .collect();
        if ended.is_empty() {
            return Vec::new();
        }
        inner
            .by_id
            .values()
            .filter(|a| {
                a.state == ApprovalState::Pending && ended.contains(a.subject.task_id.as_str())
            })
            .map(|a| Approval {
                state: ApprovalState::Revoked,
                ..a.clone()
            })
            .collect()
    }

    /// Drops the approvals of tasks that left memory (see
    /// [`crate::graph::TaskGraph::evict_ended`]): none of them can count
    /// again, and the store and the audit trail keep them. Not a write:
    /// no revision.
    pub fn forget_tasks(&self, task_ids: &[crate::graph::TaskId]) {
        let gone: std::collections::HashSet<&str> = task_ids.iter().map(|id| &**id).collect();
        let mut inner = self.write();
        let of_gone = |subject: &Subject| gone.contains(subject.task_id.as_str());
        inner.by_id.retain(|_, a| !of_gone(&a.subject));
        inner.by_subject.retain(|subject, _| !of_gone(subject));
        inner.last_decided.retain(|subject, _| !of_gone(subject));
        inner
            .pending_per_task
            .retain(|task, _| !gone.contains(task.as_str()));
    }

    /// Puts committed `approvals` in and moves the revision to `revision`,
    /// under the write lock.
    pub fn apply(&self, approvals: &[Approval], revision: u64) {
        let mut inner = self.write();
        for approval in approvals {
            write::upsert(&mut inner, approval.clone());
        }
        self.revision.advance_to(revision);
    }
}

#[cfg(test)]
mod tests;
