//! Whether this replica's state is fit to decide on, asked before every
//! `Authorize` and `Check`, and the approvals a decision asked for, waited
//! for before answering. Decisions never read the store: these only look
//! at the revision memory is at and at when the store was last reached.

use std::time::{Duration, Instant};

use spiffe::SpiffeId;

use super::authorization::View;
use super::v1::{AuthorizeRequest, AuthorizeResponse, Decision};
use super::{AuthorizationApi, DecisionState};
use crate::decision::reason;

/// How often a decision waiting for its `min_revision` looks again.
const REVISION_POLL: Duration = Duration::from_millis(2);

impl DecisionState {
    /// `None` when decisions may go ahead; else the reason code and message
    /// to deny with. A replica out of contact with the store denies
    /// everything (`state-unavailable`, fail closed); one behind
    /// `min_revision` waits up to the configured bound for it, then
    /// denies (`stale-state`).
    pub(super) async fn state_gate(&self, min_revision: u64) -> Option<(&'static str, String)> {
        let health = &self.store.health;
        if !health.available() {
            let since = health.since_contact().unwrap_or_default();
            return Some((
                reason::STATE_UNAVAILABLE,
                format!(
                    "no contact with the store for `{}` ms; denying until caught up",
                    since.as_millis()
                ),
            ));
        }
        if self.revision.current() >= min_revision {
            return None;
        }
        let deadline = Instant::now() + self.store.settings.min_revision_wait;
        // INVARIANT: the revision only moves once a change is applied to
        // memory, so reaching `min_revision` means every write up to it is
        // visible to the decision that follows.
        while self.revision.current() < min_revision {
            if Instant::now() >= deadline {
                return Some((
                    reason::STALE_STATE,
                    format!(
                        "this replica is at revision `{}`, the request asks for `{min_revision}`",
                        self.revision.current()
                    ),
                ));
            }
            tokio::time::sleep(REVISION_POLL).await;
        }
        // Contact may have been lost while waiting.
        (!health.available()).then(|| {
            (
                reason::STATE_UNAVAILABLE,
                "lost contact with the store".to_owned(),
            )
        })
    }

    /// Waits until an approval the decision asked for is committed, so the
    /// caller can act on the id it gets; if it could not be recorded, the
    /// answer names none and says so.
    pub(super) async fn settle(&self, response: &mut AuthorizeResponse) {
        if response.approval_id.is_empty()
            || self.store.journal.settled(&response.approval_id).await
        {
            return;
        }
        response.approval_id.clear();
        response
            .reasons
            .push(reason::APPROVAL_NOT_REQUESTED.to_owned());
    }
}

impl AuthorizationApi {
    /// A deny for a request the state gate refused, recorded like any
    /// other refusal.
    pub(super) fn state_refusal(
        &self,
        caller: &SpiffeId,
        request: &AuthorizeRequest,
        (code, error): (&'static str, String),
        view: &View,
    ) -> AuthorizeResponse {
        let resource = request.resource.clone().unwrap_or_default();
        let subject = request
            .subject
            .as_ref()
            .map(|s| s.spiffe_id.as_str())
            .unwrap_or_default();
        let decision_id = self.record_refusal(
            caller,
            subject,
            (&request.action, &resource.r#type, &resource.id),
            (code, &error),
            view,
        );
        AuthorizeResponse {
            decision: Decision::Deny as i32,
            decision_id,
            reasons: vec![code.to_owned()],
            errors: vec![error],
            revision: self.state().revision.current(),
            policy_hash: self.state().policies.current().hash().to_string(),
            ..AuthorizeResponse::default()
        }
    }
}
