//! Approvals through the journal: asked for (by the API, or by the decision
//! runner for a "needs approval"), decided and revoked.

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
