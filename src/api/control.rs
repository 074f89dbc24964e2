//! Authorization of Mandate's own API: every control-plane call (tasks,
//! registry, approvals) is a Cedar decision with the caller as principal.

use std::sync::Arc;

use cedar_policy::{Entity, RestrictedExpression};
use spiffe::SpiffeId;

use super::ApiError;
use crate::approval::{APPROVAL_TYPE, Approval};
use crate::clock::Clock;
use crate::decision::{Evaluator, Query, Reason, approval_entities, check_agent_proof};
use crate::graph::TaskGraph;
use crate::policy::PolicyStore;
use crate::registry::Registry;

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

/// Cedar over Mandate's own API, with the caller as principal: what every
/// control-plane service asks before it reads or writes.
#[derive(Debug, Clone)]
pub(crate) struct ControlGate {
    evaluator: Arc<Evaluator>,
    policies: Arc<PolicyStore>,
    registry: Arc<Registry>,
    /// For the chain of an approval's task.
    graph: Arc<TaskGraph>,
    clock: Arc<dyn Clock>,
}

impl ControlGate {
    /// A gate over the policies in use and the live registry and graph.
    pub(crate) fn new(
        evaluator: Arc<Evaluator>,
        policies: Arc<PolicyStore>,
        registry: Arc<Registry>,
        graph: Arc<TaskGraph>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            evaluator,
            policies,
            registry,
            graph,
            clock,
        }
    }

    /// Which SPIFFE IDs are agents, as the decision path sees them.
    pub(crate) fn agents(&self) -> &crate::decision::AgentPattern {
        self.evaluator.agents()
    }

    /// `Ok` when policy allows; otherwise PERMISSION_DENIED naming the
    /// reasons, the determining policies and the first error.
    pub(crate) fn authorize_control(
        &self,
        caller: &SpiffeId,
        request: ControlRequest<'_>,
    ) -> Result<(), ApiError> {
        let (decision, _) = self.evaluator.evaluate(
            &self.policies.current(),
            &self.registry.snapshot(),
            Query {
                entities: request.entities,
                mandate_context: request.context,
                ..Query::new(
                    caller,
                    request.action,
                    request.resource_type,
                    request.resource_id,
                    serde_json::json!({}),
                )
            },
        );
        if decision.is_allowed() {
            return Ok(());
        }
        let grounds = decision.grounds();
        let reasons: Vec<&str> = grounds.reasons.iter().map(|r| r.as_str()).collect();
        let mut why = reasons.join(", ");
        if !grounds.determining_policies.is_empty() {
            why.push_str(&format!(" ({})", grounds.determining_policies.join(", ")));
        }
        if let Some(error) = grounds.errors.first() {
            why.push_str(&format!(": {error}"));
        }
        Err(ApiError::refused(
            tonic::Code::PermissionDenied,
            decision.first_reason().map_or("no-permit", Reason::as_str),
            format!(
                "`{caller}` may not `{}` `{}`: {why}",
                request.action, request.resource_id
            ),
        ))
    }

    /// Asks Cedar whether `caller` may `action` `approval`; the slice holds
    /// the approval, its task's chain and `more`.
    pub(crate) fn authorize_on_approval(
        &self,
        caller: &SpiffeId,
        action: &str,
        approval: &Approval,
        context: Vec<(String, RestrictedExpression)>,
        more: Vec<Entity>,
    ) -> Result<(), ApiError> {
        let chain = self.graph.chain(&approval.subject.task_id).ok_or_else(|| {
            ApiError::NotFound(format!(
                "task `{}` of approval `{}` does not exist",
                approval.subject.task_id, approval.id
            ))
        })?;
        let mut entities =
            approval_entities(approval, &chain, self.clock.now()).map_err(ApiError::Internal)?;
        entities.extend(more);
        self.authorize_control(
            caller,
            ControlRequest {
                action,
                resource_type: APPROVAL_TYPE,
                resource_id: &approval.id,
                entities,
                context,
            },
        )
    }

    /// INVARIANT: an agent registered with a checksum acts on its tasks
    /// (gets a token, delegates, amends, asks for approvals) only by
    /// proving that checksum; a mismatch is logged.
    pub(crate) fn check_agent_proof(&self, agent: &SpiffeId, proof: &str) -> Result<(), ApiError> {
        if !proof.is_empty() {
            crate::integrity::check_checksum_format(proof)
                .map_err(|e| ApiError::InvalidArgument(format!("`agent_proof`: {e}")))?;
        }
        let proved = (!proof.is_empty()).then_some(proof);
        // A control-plane call always states its proof, so any refusal
        // is a mismatch (an empty proof proves nothing).
        check_agent_proof(&self.registry.snapshot(), agent, Some(proved)).map_err(|_| {
            ApiError::refused(
                tonic::Code::PermissionDenied,
                Reason::AgentChecksumMismatch.as_str(),
                format!(
                    "`{agent}` is registered with another checksum than the one it proved ({}); re-register the agent if it changed on purpose",
                    proved.unwrap_or("none")
                ),
            )
        })
    }
}
