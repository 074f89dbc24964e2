//! Writes to the approvals, in two steps like the task graph's: a plan
//! checks the write against the current state and returns the approvals
//! as they will be; [`super::ApprovalBook::apply`] puts them in once the store has
//! committed them.

use super::{
    Approval, ApprovalError, ApprovalState, Inner, MAX_JUSTIFICATION_BYTES, MAX_PENDING_PER_TASK,
    MAX_VALID_FOR_SECS, Subject, pending_of,
};

/// What asking for an approval does.
#[derive(Debug, Clone)]
pub struct RequestPlan {
    /// The pending approval the caller gets: the existing one, or the new.
    pub approval: Approval,
    /// The approvals written: empty when the pending one already existed;
    /// else the new one, after a stale pending one revoked.
    pub changes: Vec<Approval>,
}

pub(super) fn plan_request(
    inner: &Inner,
    id: String,
    subject: Subject,
    justification: &str,
    requested_by: &str,
    scope_digest: &str,
    now: i64,
) -> Result<RequestPlan, ApprovalError> {
    if justification.len() > MAX_JUSTIFICATION_BYTES {
        return Err(ApprovalError::Invalid(format!(
            "the justification is longer than {MAX_JUSTIFICATION_BYTES} bytes"
        )));
    }
    let pending = pending_of(inner, &subject);
    if let Some(pending) = pending
        && pending.scope_digest == scope_digest
    {
        return Ok(RequestPlan {
            approval: pending.clone(),
            changes: Vec::new(),
        });
    }
    // A pending approval asked under other bounds can never be decided;
    // it is replaced.
    let mut changes = Vec::new();
    if let Some(stale) = pending {
        let mut stale = stale.clone();
        stale.state = ApprovalState::Revoked;
        changes.push(stale);
    }
    let waiting = inner
        .pending_per_task
        .get(&subject.task_id)
        .copied()
        .unwrap_or(0)
        .saturating_sub(changes.len());
    if waiting >= MAX_PENDING_PER_TASK {
        return Err(ApprovalError::TooManyPending(subject.task_id));
    }
    let approval = Approval {
        id,
        subject,
        justification: justification.to_owned(),
        requested_by: requested_by.to_owned(),
        requested_at: now,
        state: ApprovalState::Pending,
        approver: None,
        decided_by: None,
        decided_at: None,
        expires_at: None,
        scope_digest: scope_digest.to_owned(),
    };
    changes.push(approval.clone());
    Ok(RequestPlan { approval, changes })
}

pub(super) fn plan_decide(
    inner: &Inner,
    id: &str,
    granted: bool,
    (approver, decided_by): (&str, &str),
    valid_for: i64,
    scope_digest: &str,
    now: i64,
) -> Result<Approval, ApprovalError> {
    if !(1..=MAX_VALID_FOR_SECS).contains(&valid_for) {
        return Err(ApprovalError::Invalid(format!(
            "`valid_for` must be 1 to {MAX_VALID_FOR_SECS} seconds, not {valid_for}"
        )));
    }
    let mut approval = inner
        .by_id
        .get(id)
        .cloned()
        .ok_or_else(|| ApprovalError::NotFound(id.to_owned()))?;
    if approval.state != ApprovalState::Pending {
        return Err(ApprovalError::NotPending {
            id: id.to_owned(),
            state: approval.state.as_str(),
        });
    }
    if approval.scope_digest != scope_digest {
        return Err(ApprovalError::TaskChanged(id.to_owned()));
    }
    approval.approver = Some(approver.to_owned());
    approval.decided_by = Some(decided_by.to_owned());
    approval.decided_at = Some(now);
    approval.expires_at = Some(now.saturating_add(valid_for));
    approval.state = if granted {
        ApprovalState::Approved
    } else {
        ApprovalState::Denied
    };
    Ok(approval)
}

pub(super) fn plan_revoke(inner: &Inner, id: &str) -> Result<Approval, ApprovalError> {
    let mut approval = inner
        .by_id
        .get(id)
        .cloned()
        .ok_or_else(|| ApprovalError::NotFound(id.to_owned()))?;
    if approval.state == ApprovalState::Revoked {
        return Err(ApprovalError::AlreadyRevoked(id.to_owned()));
    }
    approval.state = ApprovalState::Revoked;
    Ok(approval)
}

/// Puts an approval in, new or replacing, keeping the indexes right.
///
/// INVARIANT: `last_decided` names the decision made last, by decision
/// time and then id, whatever order approvals are applied in (live writes
/// in order, a start-up load by id): a revoked or expired last decision
/// never lets an older one count again.
pub(super) fn upsert(inner: &mut Inner, approval: Approval) {
    let previous = inner.by_id.get(&approval.id).map(|a| a.state);
    match previous {
        None => {
            inner
                .by_subject
                .entry(approval.subject.clone())
                .or_default()
                .push(approval.id.clone());
            if approval.state == ApprovalState::Pending {
                *inner
                    .pending_per_task
                    .entry(approval.subject.task_id.clone())
                    .or_default() += 1;
            }
        }
        Some(ApprovalState::Pending) if approval.state != ApprovalState::Pending => {
            if let Some(n) = inner.pending_per_task.get_mut(&approval.subject.task_id) {
                *n = n.saturating_sub(1);
            }
        }
        Some(_) => {}
    }
    if let Some(decided_at) = approval.decided_at {
        let later = inner
            .last_decided
            .get(&approval.subject)
            .and_then(|id| inner.by_id.get(id))
            .is_none_or(|last| {
                (last.decided_at, last.id.as_str()) <= (Some(decided_at), approval.id.as_str())
            });
        if later {
            inner
                .last_decided
                .insert(approval.subject.clone(), approval.id.clone());
        }
    }
    inner.by_id.insert(approval.id.clone(), approval);
}
