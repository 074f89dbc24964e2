//! The state every decision reads (`DecisionState`) and the decision path
//! over it (DESIGN §4 steps 3-6): task token, live chain, approval, Cedar.
//! The gRPC services (`Authorize`, Envoy's `Check`) call it.

use std::sync::Arc;

use spiffe::SpiffeId;

use super::context::struct_to_json;
use super::v1::AuthorizeRequest;
use crate::approval::{Approval, ApprovalBook, ApprovalState, Subject as ApprovalSubject};
use crate::audit::DecisionLog;
use crate::clock::Clock;
use crate::credential::{TaskTokens, thumbprint};
use crate::decision::{
    ApprovalView, Decider, DecisionRequest, Outcome, TaskFacts, reason, task_entities,
};
use crate::graph::TaskGraph;
use crate::identity::{ForwardedSubjects, IdentityWatch};
use crate::policy::{PolicyEngine, PolicyStore};
use crate::registry::{Registry, Snapshot};
use crate::revision::Revision;

/// The Cedar type of tasks.
const TASK_TYPE: &str = "Mandate::Task";

/// Everything the decision path reads, shared by every request.
#[derive(Debug)]
pub struct DecisionState {
    /// The policy set in use, swapped whole on reload.
    pub policies: Arc<PolicyStore>,
    /// The decider.
    pub decider: Decider,
    /// Our identity, for the trust bundles that verify subject certificates.
    pub identity: IdentityWatch,
    /// The live task graph.
    pub graph: Arc<TaskGraph>,
    /// Agents, workloads, users, groups and resources.
    pub registry: Arc<Registry>,
    /// Human approvals.
    pub approvals: Arc<ApprovalBook>,
    /// The revision every live store bumps.
    pub revision: Arc<Revision>,
    /// Task token verification.
    pub tokens: Arc<TaskTokens>,
    /// The clock of the decision path.
    pub clock: Arc<dyn Clock>,
    /// Most requests accepted in one `BatchAuthorize`.
    pub max_batch_size: usize,
    /// Bounds on one request's token and context.
    pub limits: crate::limits::Limits,
    /// Where decision records go, when configured.
    pub decision_log: Option<DecisionLog>,
    /// Subject certificates enforcement points forwarded, once verified.
    pub forwarded: ForwardedSubjects,
    /// Prometheus metrics, when served.
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
    /// The durable store: writes go through it; decisions only ask it
    /// whether this replica's state is current.
    pub store: crate::store::StoreHandle,
}

impl DecisionState {
    /// The decision path for one request (DESIGN §4 steps 3-6): verify the
    /// task token against `principal` and its certificate
    /// `certificate_der` (for the token's `cnf`), read the task's live
    /// chain, and evaluate the policies.
    pub fn decide_as(
        &self,
        principal: &SpiffeId,
        certificate_der: Option<&[u8]>,
        request: &AuthorizeRequest,
        resource: &super::v1::Resource,
    ) -> Outcome {
        self.decide_with(
            &self.policies.current(),
            &self.registry.snapshot(),
            principal,
            certificate_der,
            request,
            resource,
        )
    }

    /// [`DecisionState::decide_as`] against one policy set and one registry
    /// snapshot, so every part of a decision sees the same of each.
    pub fn decide_with(
        &self,
        engine: &PolicyEngine,
        registry: &Snapshot,
        principal: &SpiffeId,
        certificate_der: Option<&[u8]>,
        request: &AuthorizeRequest,
        resource: &super::v1::Resource,
    ) -> Outcome {
        self.decide_full(
            engine,
            registry,
            principal,
            certificate_der.map(thumbprint).as_deref(),
            request,
            resource,
            Extras::default(),
        )
        .outcome
    }

    /// The decision and what a decision record keeps of it; `binding` is
    /// the `x5t#S256` of the principal's certificate, for the token's
    /// `cnf`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn decide_full(
        &self,
        engine: &PolicyEngine,
        registry: &Snapshot,
        principal: &SpiffeId,
        binding: Option<&str>,
        request: &AuthorizeRequest,
        resource: &super::v1::Resource,
        extras: Extras,
    ) -> Decided {
        // INVARIANT: an agent registered with a checksum acts only through
        // task tokens, which carry the proof of its checksum.
        if request.token.is_empty()
            && registry
                .agent(&principal.to_string())
                .is_some_and(|a| a.checksum.is_some())
        {
            return Decided::early(Outcome::deny(
                reason::AGENT_PROOF_REQUIRED,
                format!(
                    "`{principal}` is registered with a checksum: call with a task token, which carries its proof"
                ),
            ));
        }
        let task = if request.token.is_empty() {
            None
        } else {
            match self.task_facts(registry, &request.token, principal, binding) {
                Ok(facts) => Some(facts),
                Err(outcome) => return Decided::early(outcome),
            }
        };
        let resource_type = if resource.r#type.is_empty() {
            crate::decision::DEFAULT_RESOURCE_TYPE
        } else {
            resource.r#type.as_str()
        };
        let approval_subject = task.as_ref().and_then(|facts| {
            facts.chain.first().map(|t| {
                (
                    ApprovalSubject {
                        task_id: t.id.clone(),
                        action: request.action.clone(),
                        resource_type: resource_type.to_owned(),
                        resource_id: resource.id.clone(),
                    },
                    t.scope_digest.clone(),
                )
            })
        });
        let now = self.clock.now();
        let current = approval_subject
            .as_ref()
            .and_then(|(subject, digest)| self.approvals.current(subject, digest, now));
        // A task as the resource comes from the live graph, never from files.
        let mut entities = if resource.r#type == TASK_TYPE {
            match self
                .graph
                .chain(&resource.id)
                .map(|chain| task_entities(&chain, now))
            {
                Some(Ok(entities)) => entities,
                Some(Err(e)) => return Decided::early(Outcome::deny(reason::INTERNAL_ERROR, e)),
                None => Vec::new(),
            }
        } else {
            Vec::new()
        };
        entities.extend(extras.entities);
        let context = struct_to_json(request.context.as_ref());
        let justification = context
            .get("purpose")
            .and_then(|p| p.as_str())
            .unwrap_or_default()
            .to_owned();
        // Only a decision record needs these; the decision path does not
        // pay for them otherwise.
        let task_id = task
            .as_ref()
            .and_then(|f| f.chain.first())
            .map(|t| t.id.clone());
        let (task_chain, token_jti) = match (&self.decision_log, &task) {
            (Some(_), Some(f)) => (
                f.chain.iter().map(|t| t.id.clone()).collect(),
                Some(f.token_jti.clone()),
            ),
            _ => (Vec::new(), None),
        };
        let (mut outcome, evaluated) = self.decider.decide_explained(
            engine,
            registry,
            DecisionRequest {
                task,
                entities,
                approval: current.as_ref().map(|a| ApprovalView {
                    granted: a.state == ApprovalState::Approved,
                    approver: a.approver.clone().unwrap_or_default(),
                    age_seconds: now.saturating_sub(a.decided_at.unwrap_or(now)),
                }),
                mandate_context: extras.context,
                ..DecisionRequest::new(
                    principal,
                    &request.action,
                    &resource.r#type,
                    &resource.id,
                    context,
                )
            },
        );
        if outcome.needs_approval {
            self.hold_for_approval(
                &mut outcome,
                principal,
                approval_subject,
                current.map(|a| a.state),
                &justification,
                now,
            );
        }
        Decided {
            outcome,
            evaluated,
            task_id,
            task_chain,
            token_jti,
        }
    }

    /// Turns a "needs approval" outcome into an answer: the pending
    /// approval to decide (created when none is pending), or a plain deny
    /// when there is no task to hold an approval or the approver said no.
    fn hold_for_approval(
        &self,
        outcome: &mut Outcome,
        principal: &SpiffeId,
        subject: Option<(ApprovalSubject, String)>,
        current: Option<ApprovalState>,
        justification: &str,
        now: i64,
    ) {
        let has_task = subject.is_some();
        if !outcome.settle_approval(has_task, current == Some(ApprovalState::Denied)) {
            return;
        }
        let Some((subject, digest)) = subject else {
            return;
        };
        let mut deny = |code: &'static str, error: String| outcome.refuse_approval(code, error);
        // Asking a human is a `request_approval` like any other: policy
        // may refuse it.
        let would_be = Approval {
            id: "(new)".to_owned(),
            subject: subject.clone(),
            justification: justification.to_owned(),
            requested_by: principal.to_string(),
            requested_at: now,
            state: ApprovalState::Pending,
            approver: None,
            decided_by: None,
            decided_at: None,
            expires_at: None,
            scope_digest: digest.clone(),
        };
        if let Err(refused) = self.authorize_on_approval(
            principal,
            "request_approval",
            &would_be,
            Vec::new(),
            Vec::new(),
        ) {
            return deny(reason::APPROVAL_NOT_REQUESTED, refused.to_string());
        }
        // The decision cannot wait for the store: the request is planned
        // now and committed in the background (see the journal).
        match self.store.journal.request_approval_later(
            subject,
            justification,
            &principal.to_string(),
            &digest,
            now,
        ) {
            Ok((approval, created)) => {
                if created {
                    tracing::info!(approval_id = %approval.id, task_id = %approval.subject.task_id, action = %approval.subject.action, resource_id = %approval.subject.resource_id, spiffe_id = %principal, "approval requested by a decision");
                    // Committed in the background: the event carries the
                    // revision the decision saw, not the commit's.
                    self.record_approval_event(
                        crate::audit::EventKind::ApprovalRequested,
                        &principal.to_string(),
                        &approval,
                        self.revision.current(),
                    );
                }
                outcome.approval_id = Some(approval.id);
            }
            Err(e) => deny(reason::APPROVAL_NOT_REQUESTED, e.to_string()),
        }
    }

    /// Verifies a task token and reads its task's live chain.
    // INVARIANT: a token that does not verify, or names no task, never
    // reaches the policies: it is a deny with the token's reason.
    fn task_facts(
        &self,
        registry: &Snapshot,
        token: &str,
        subject: &SpiffeId,
        binding: Option<&str>,
    ) -> Result<TaskFacts, Outcome> {
        let claims = self
            .tokens
            .verify_bound(token, subject, binding)
            .map_err(|e| Outcome::deny(e.reason(), e.to_string()))?;
        // INVARIANT: a token proves the agent's checksum at issue time; once
        // the registered checksum changes (or one is registered), the
        // token no longer speaks for the agent.
        let registered = registry
            .agent(&subject.to_string())
            .and_then(|a| a.checksum.as_deref());
        if registered.is_some() && registered != claims.agent_proof.as_deref() {
            tracing::warn!(spiffe_id = %subject, jti = %claims.jti, "token's agent proof does not match the registered checksum");
            return Err(Outcome::deny(
                reason::AGENT_CHECKSUM_MISMATCH,
                format!(
                    "`{subject}` is registered with another checksum than the one its token proved; get a new token"
                ),
            ));
        }
        let chain = self.graph.chain(&claims.task).ok_or_else(|| {
            Outcome::deny(
                reason::UNKNOWN_TASK,
                format!("task `{}` does not exist", claims.task),
            )
        })?;
        Ok(TaskFacts {
            chain,
            now: self.clock.now(),
            token_jti: claims.jti,
        })
    }
}

/// What Mandate adds to a request on its own authority (the Envoy
/// adapter's `context.http` and the entities it refers to), and the
/// subject's certificate thumbprint when only that was forwarded.
#[derive(Debug, Default)]
pub(super) struct Extras {
    /// Context pairs beyond the caller's.
    pub context: Vec<(String, cedar_policy::RestrictedExpression)>,
    /// Entities those pairs refer to.
    pub entities: Vec<cedar_policy::Entity>,
    /// `x5t#S256` of the subject's certificate, when no certificate was
    /// forwarded but its hash was.
    pub subject_thumbprint: Option<String>,
}

/// What a decision reads, loaded in an order that keeps it consistent.
pub(super) struct View {
    pub(super) revision: u64,
    pub(super) engine: Arc<PolicyEngine>,
    pub(super) registry: Arc<Snapshot>,
}

impl View {
    /// INVARIANT: the revision is read before the state it describes, so a
    /// client waiting for revision N never sees a decision made before N;
    /// the policies before the registry (see `Registry::revalidate`).
    pub(super) fn now(state: &DecisionState) -> Self {
        let revision = state.revision.current();
        let engine = state.policies.current();
        let registry = state.registry.snapshot();
        Self {
            revision,
            engine,
            registry,
        }
    }
}

/// A decision and what its record keeps.
pub(super) struct Decided {
    pub(super) outcome: Outcome,
    pub(super) evaluated: Option<crate::decision::Evaluated>,
    pub(super) task_id: Option<String>,
    pub(super) task_chain: Vec<String>,
    pub(super) token_jti: Option<String>,
}

impl Decided {
    /// A decision that never reached the policies.
    pub(super) fn early(outcome: Outcome) -> Self {
        Self {
            outcome,
            evaluated: None,
            task_id: None,
            task_chain: Vec::new(),
            token_jti: None,
        }
    }
}
