//! Authorization of Mandate's own API: every control-plane call (tasks,
//! registry, approvals) is a Cedar decision with the caller as principal.

use cedar_policy::{Entity, RestrictedExpression};
use spiffe::SpiffeId;

use super::{ApiError, DecisionState};
use crate::decision::DecisionRequest;

/// One control-plane question: may the caller `action` this resource?
#[derive(Debug)]
pub(crate) struct ControlRequest<'a> {
    pub action: &'a str,
    pub resource_type: &'a str,
    pub resource_id: &'a str,
    /// The resource entity (first) and what it refers to, built from live
    /// state or from the write about to happen.
    pub entities: Vec<Entity>,
    /// Context Mandate computes for the action.
    pub context: Vec<(String, RestrictedExpression)>,
}

impl DecisionState {
    /// `Ok` when policy allows; otherwise PERMISSION_DENIED naming the
    /// reasons, the determining policies and the first error.
    pub(crate) fn authorize_control(
        &self,
        caller: &SpiffeId,
        request: ControlRequest<'_>,
    ) -> Result<(), ApiError> {
        let outcome = self.decider.decide(
            &self.engine,
            &self.registry.snapshot(),
            DecisionRequest {
                entities: request.entities,
                mandate_context: request.context,
                ..DecisionRequest::new(
                    caller,
                    request.action,
                    request.resource_type,
                    request.resource_id,
                    serde_json::json!({}),
                )
            },
        );
        if outcome.allowed {
            return Ok(());
        }
        let mut why = outcome.reasons.join(", ");
        if !outcome.determining_policies.is_empty() {
            why.push_str(&format!(" ({})", outcome.determining_policies.join(", ")));
        }
        if let Some(error) = outcome.errors.first() {
            why.push_str(&format!(": {error}"));
        }
        Err(ApiError::PermissionDenied(format!(
            "`{caller}` may not `{}` `{}`: {why}",
            request.action, request.resource_id
        )))
    }
}
