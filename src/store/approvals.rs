//! Approvals through the journal: asked for by the API or by a decision
//! (which cannot wait for the store, so the request is committed in the
//! background and the answer waits for it), decided and revoked.

use std::sync::Arc;

use super::{Change, Journal, StoreError};
use crate::approval::{Approval, ApprovalError, Subject};

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

    /// Asks for an approval from the decision path, which cannot wait for
    /// the store: plans it now (so the decision can name it) and commits
    /// it in the background. Until the commit lands the approval cannot be
    /// decided (it is not in memory yet); if the commit fails it is never
    /// created, and asking again plans a new one. Either way nothing is
    /// allowed by it, so this stays fail-closed.
    pub fn request_approval_later(
        self: &Arc<Self>,
        subject: Subject,
        justification: &str,
        requested_by: &str,
        scope_digest: &str,
        now: i64,
    ) -> Result<(Approval, bool), ApprovalError> {
        let mut asking = self.asking.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(pending) = asking
            .values()
            .find(|a| a.approval.subject == subject && a.approval.scope_digest == scope_digest)
        {
            return Ok((pending.approval.clone(), false));
        }
        let plan = self.approvals.plan_request(
            subject.clone(),
            justification,
            requested_by,
            scope_digest,
            now,
        )?;
        if plan.changes.is_empty() {
            return Ok((plan.approval, false));
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Err(ApprovalError::Invalid(
                "no runtime to record the approval request on".to_owned(),
            ));
        };
        let journal = self.clone();
        let (id, justification, requested_by, scope_digest) = (
            plan.approval.id.clone(),
            justification.to_owned(),
            requested_by.to_owned(),
            scope_digest.to_owned(),
        );
        let (done, settled) = tokio::sync::watch::channel(false);
        asking.insert(
            id.clone(),
            Asking {
                approval: plan.approval.clone(),
                settled,
            },
        );
        drop(asking);
        runtime.spawn(async move {
            let written = journal
                .write(|| -> Result<_, RequestError> {
                    let plan = journal.approvals.plan_request_as(
                        id.clone(),
                        subject.clone(),
                        &justification,
                        &requested_by,
                        &scope_digest,
                        now,
                    )?;
                    let change = (!plan.changes.is_empty()).then_some(Change::Approvals(plan.changes));
                    Ok((change, ()))
                })
                .await;
            // Applied (or failed): from now on memory answers.
            journal
                .asking
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
            let _ = done.send(true);
            if let Err(e) = written {
                tracing::warn!(approval_id = %id, error = %e, "an approval asked for by a decision was not recorded");
            }
        });
        Ok((plan.approval, true))
    }

    /// Waits until an approval a decision asked for is committed or has
    /// failed; returns whether it exists now. Answering only after this
    /// keeps read-your-writes: the caller can decide on it at once.
    pub async fn settled(&self, approval_id: &str) -> bool {
        let waiting = self
            .asking
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(approval_id)
            .map(|a| a.settled.clone());
        if let Some(mut settled) = waiting {
            // An error means the sender is gone: settled too.
            let _ = settled.wait_for(|done| *done).await;
        }
        self.approvals.get(approval_id).is_some()
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

/// An approval a decision asked for, on its way to the store.
#[derive(Debug)]
pub(super) struct Asking {
    pub(super) approval: Approval,
    /// Turns true once the commit landed or failed.
    pub(super) settled: tokio::sync::watch::Receiver<bool>,
}

/// Why a background approval request was not recorded.
#[derive(Debug, thiserror::Error)]
enum RequestError {
    #[error(transparent)]
    Approval(#[from] ApprovalError),
    #[error(transparent)]
    Store(#[from] StoreError),
}
