//! `mandate.v1.AuthorizationService`: Authorize and BatchAuthorize.

use std::sync::Arc;

use rustls_pki_types::UnixTime;
use spiffe::SpiffeId;
use tonic::{Request, Response, Status};

use super::check_cache::{CheckCache, CheckKey};
use super::v1::authorization_service_server::AuthorizationService;
use super::v1::{
    AuthorizeRequest, AuthorizeResponse, BatchAuthorizeRequest, BatchAuthorizeResponse, Decision,
    Subject,
};
use super::{ApiError, PeerIdentity, context::struct_to_json};
use crate::approval::{Approval, ApprovalBook, ApprovalState, Subject as ApprovalSubject};
use crate::audit::{DecisionLog, DecisionRecord, RECORD_VERSION};
use crate::clock::Clock;
use crate::credential::{TaskTokens, thumbprint};
use crate::decision::{
    ApprovalView, Decider, DecisionRequest, Outcome, TaskFacts, reason, task_entities,
};
use crate::graph::TaskGraph;
use crate::identity::{ForwardedSubjects, IdentityWatch, TrustBundles};
use crate::policy::{PolicyEngine, PolicyStore};
use crate::registry::{Registry, Snapshot};
use crate::revision::Revision;

/// The action an enforcement point needs to ask on behalf of a subject.
const CHECK_ACTION: &str = "check";
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
    fn decide_full(
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
    revision: u64,
    engine: Arc<PolicyEngine>,
    registry: Arc<Snapshot>,
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
struct Decided {
    outcome: Outcome,
    evaluated: Option<crate::decision::Evaluated>,
    task_id: Option<String>,
    task_chain: Vec<String>,
    token_jti: Option<String>,
}

impl Decided {
    /// A decision that never reached the policies.
    fn early(outcome: Outcome) -> Self {
        Self {
            outcome,
            evaluated: None,
            task_id: None,
            task_chain: Vec::new(),
            token_jti: None,
        }
    }
}

/// The gRPC service.
#[derive(Debug, Clone)]
pub struct AuthorizationApi {
    state: Arc<DecisionState>,
    checks: Arc<CheckCache>,
}

impl AuthorizationApi {
    /// A service over `state`.
    pub fn new(state: Arc<DecisionState>) -> Self {
        Self {
            state,
            checks: Arc::default(),
        }
    }

    /// The state every decision reads.
    pub(super) fn state(&self) -> &DecisionState {
        &self.state
    }

    fn decide(
        &self,
        caller: &PeerIdentity,
        request: &AuthorizeRequest,
        view: &View,
    ) -> Result<AuthorizeResponse, ApiError> {
        self.decide_extended(caller, request, view, Extras::default())
            .map(|(response, _)| response)
    }

    /// [`AuthorizationApi::decide`] with what Mandate adds on its own
    /// authority; also returns the id of the token's task, if any.
    pub(super) fn decide_extended(
        &self,
        caller: &PeerIdentity,
        request: &AuthorizeRequest,
        view: &View,
        extras: Extras,
    ) -> Result<(AuthorizeResponse, Option<String>), ApiError> {
        let (revision, engine, registry) = (view.revision, &view.engine, &*view.registry);
        let resource = request
            .resource
            .as_ref()
            .ok_or_else(|| ApiError::InvalidArgument("`resource` is required".to_owned()))?;
        if request.action.is_empty() {
            return Err(ApiError::InvalidArgument("`action` is required".to_owned()));
        }
        if resource.id.is_empty() {
            return Err(ApiError::InvalidArgument(
                "`resource.id` is required".to_owned(),
            ));
        }
        let subject_id = request.subject.as_ref().map(subject_id).transpose()?;

        let started = std::time::Instant::now();
        let decision_id = uuid::Uuid::now_v7().to_string();
        let span = tracing::info_span!("decision", decision_id = %decision_id);
        let _in_span = span.enter();
        let decided = match (&request.subject, &subject_id) {
            (Some(subject), Some(subject_id)) => self.decide_for_subject(
                view,
                &caller.spiffe_id,
                subject,
                subject_id,
                request,
                resource,
                extras,
            ),
            _ => {
                let binding = caller.certificates.first().map(|c| thumbprint(c));
                self.state.decide_full(
                    engine,
                    registry,
                    &caller.spiffe_id,
                    binding.as_deref(),
                    request,
                    resource,
                    extras,
                )
            }
        };

        let Decided {
            outcome,
            evaluated,
            task_id,
            task_chain,
            token_jti,
        } = decided;
        let verdict = if outcome.allowed {
            Decision::Allow
        } else if outcome.approval_id.is_some() {
            Decision::NeedsApproval
        } else {
            Decision::Deny
        };
        let latency = started.elapsed();
        if let Some(metrics) = &self.state.metrics {
            metrics.decision(
                verdict_name(verdict),
                outcome.reasons.first().copied().unwrap_or("none"),
                Some(latency),
            );
        }
        if let Some(log) = &self.state.decision_log {
            log.record(
                DecisionRecord {
                    version: RECORD_VERSION,
                    decision_id: decision_id.clone(),
                    time_ms: unix_ms(),
                    caller: caller.spiffe_id.to_string(),
                    subject: subject_id.as_ref().unwrap_or(&caller.spiffe_id).to_string(),
                    action: request.action.clone(),
                    resource_type: resource.r#type.clone(),
                    resource_id: resource.id.clone(),
                    task_id: task_chain.first().cloned(),
                    root_task_id: task_chain.last().cloned(),
                    chain: task_chain,
                    token_jti,
                    decision: verdict_name(verdict).to_owned(),
                    approval_id: outcome.approval_id.clone(),
                    determining_policies: outcome.determining_policies.clone(),
                    reasons: outcome.reasons.iter().map(|r| (*r).to_owned()).collect(),
                    errors: outcome.errors.clone(),
                    policy_hash: engine.hash().to_string(),
                    revision,
                    latency_us: u64::try_from(latency.as_micros()).unwrap_or(u64::MAX),
                    cedar: None,
                },
                evaluated,
            );
        }
        tracing::info!(
            decision_id = %decision_id,
            spiffe_id = %caller.spiffe_id,
            subject = subject_id.as_ref().map(ToString::to_string),
            action = %request.action,
            resource_type = %resource.r#type,
            resource_id = %resource.id,
            allowed = outcome.allowed,
            approval_id = outcome.approval_id.as_deref(),
            policies = ?outcome.determining_policies,
            reasons = ?outcome.reasons,
            revision,
            policy_hash = %engine.hash(),
            "decision"
        );
        Ok((
            AuthorizeResponse {
                decision: verdict as i32,
                approval_id: outcome.approval_id.unwrap_or_default(),
                decision_id,
                determining_policies: outcome.determining_policies,
                errors: outcome.errors,
                reasons: outcome.reasons.into_iter().map(str::to_owned).collect(),
                revision,
                policy_hash: engine.hash().to_string(),
            },
            task_id,
        ))
    }

    /// Verifies a forwarded subject SVID against our bundles; returns the
    /// thumbprint of its leaf.
    fn verify_subject_certificate(
        &self,
        bundles: &Arc<TrustBundles>,
        subject: &Subject,
        expected: &SpiffeId,
    ) -> Result<String, String> {
        let verified =
            self.state
                .forwarded
                .verify(bundles, &subject.certificate_pem, UnixTime::now())?;
        if verified.spiffe_id != *expected {
            return Err(format!(
                "subject certificate is for `{}`, not `{expected}`",
                verified.spiffe_id
            ));
        }
        Ok(verified.thumbprint)
    }

    /// Records and logs a request refused before any policy saw it (the
    /// Envoy adapter's `no-route`, `token-required`, ...); returns its
    /// decision id. `target` is (action, resource type, resource id) when
    /// known.
    pub(super) fn record_refusal(
        &self,
        caller: &SpiffeId,
        subject: &str,
        target: (&str, &str, &str),
        refusal: (&'static str, &str),
        view: &View,
    ) -> String {
        let ((action, resource_type, resource_id), (reason, error)) = (target, refusal);
        let decision_id = uuid::Uuid::now_v7().to_string();
        if let Some(metrics) = &self.state.metrics {
            metrics.decision("deny", reason, None);
        }
        if let Some(log) = &self.state.decision_log {
            log.record(
                DecisionRecord {
                    version: RECORD_VERSION,
                    decision_id: decision_id.clone(),
                    time_ms: unix_ms(),
                    caller: caller.to_string(),
                    subject: subject.to_owned(),
                    action: action.to_owned(),
                    resource_type: resource_type.to_owned(),
                    resource_id: resource_id.to_owned(),
                    task_id: None,
                    root_task_id: None,
                    chain: Vec::new(),
                    token_jti: None,
                    decision: "deny".to_owned(),
                    approval_id: None,
                    determining_policies: Vec::new(),
                    reasons: vec![reason.to_owned()],
                    errors: vec![error.to_owned()],
                    policy_hash: view.engine.hash().to_string(),
                    revision: view.revision,
                    latency_us: 0,
                    cedar: None,
                },
                None,
            );
        }
        tracing::info!(
            decision_id = %decision_id,
            spiffe_id = %caller,
            subject,
            action,
            resource_type,
            resource_id,
            allowed = false,
            reasons = ?[reason],
            error,
            revision = view.revision,
            "decision"
        );
        decision_id
    }

    /// Enforcement-point mode: the subject's trust domain must be trusted,
    /// its certificate (when sent) must verify, the caller must be allowed
    /// `check` on the resource for this subject, and then the subject is the
    /// principal.
    #[allow(clippy::too_many_arguments)]
    fn decide_for_subject(
        &self,
        view: &View,
        caller: &SpiffeId,
        subject: &Subject,
        subject_id: &SpiffeId,
        request: &AuthorizeRequest,
        resource: &super::v1::Resource,
        extras: Extras,
    ) -> Decided {
        let bundles = self.state.identity.borrow().bundles.clone();
        if !bundles.trusts(subject_id.trust_domain()) {
            return Decided::early(Outcome::deny(
                reason::UNTRUSTED_SUBJECT,
                format!(
                    "subject trust domain `{}` is not trusted",
                    subject_id.trust_domain_name()
                ),
            ));
        }
        let subject_thumbprint = if subject.certificate_pem.is_empty() {
            None
        } else {
            match self.verify_subject_certificate(&bundles, subject, subject_id) {
                Ok(thumbprint) => Some(thumbprint),
                Err(error) => {
                    return Decided::early(Outcome::deny(
                        reason::SUBJECT_CERTIFICATE_INVALID,
                        error,
                    ));
                }
            }
        };
        let (engine, registry) = (&view.engine, &view.registry);
        let key = CheckKey {
            caller: caller.to_string(),
            resource: (resource.r#type.clone(), resource.id.clone()),
            subject: subject_id.to_string(),
            certificate_verified: subject_thumbprint.is_some(),
        };
        if !self.checks.allowed(engine, registry, &key) {
            let (check, check_evaluated) = self.state.decider.decide_explained(
                engine,
                registry,
                DecisionRequest::new(
                    caller,
                    CHECK_ACTION,
                    &resource.r#type,
                    &resource.id,
                    serde_json::json!({
                        "subject": {
                            "spiffe_id": subject_id.to_string(),
                            "trust_domain": subject_id.trust_domain_name(),
                            "path": subject_id.path(),
                            "certificate_verified": subject_thumbprint.is_some(),
                        }
                    }),
                ),
            );
            if !check.allowed {
                let mut outcome = check;
                outcome.reasons.insert(0, reason::NOT_AN_ENFORCEMENT_POINT);
                // The record keeps the `check` request: a policy change
                // that would let this enforcement point ask shows in a
                // replay.
                return Decided {
                    evaluated: check_evaluated,
                    ..Decided::early(outcome)
                };
            }
            self.checks.remember(engine, registry, key);
        }
        // A forwarded certificate binds the token; without one, a
        // forwarded hash of it may.
        let binding = subject_thumbprint.or_else(|| extras.subject_thumbprint.clone());
        self.state.decide_full(
            engine,
            registry,
            subject_id,
            binding.as_deref(),
            request,
            resource,
            extras,
        )
    }
}

/// The name of a verdict in records and metrics.
fn verdict_name(verdict: Decision) -> &'static str {
    match verdict {
        Decision::Allow => "allow",
        Decision::NeedsApproval => "needs_approval",
        _ => "deny",
    }
}

/// Now, Unix milliseconds.
fn unix_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )
    .unwrap_or(i64::MAX)
}

/// The subject's SPIFFE ID; it must name a workload, not a trust domain.
fn subject_id(subject: &Subject) -> Result<SpiffeId, ApiError> {
    let id = SpiffeId::new(&subject.spiffe_id).map_err(|e| {
        ApiError::InvalidArgument(format!(
            "`subject.spiffe_id` `{}` is not a SPIFFE ID: {e}",
            subject.spiffe_id
        ))
    })?;
    if id.path().is_empty() {
        return Err(ApiError::InvalidArgument(format!(
            "`subject.spiffe_id` `{id}` names a trust domain, not a workload"
        )));
    }
    Ok(id)
}

pub(super) fn caller<T>(request: &Request<T>) -> Result<PeerIdentity, ApiError> {
    request
        .extensions()
        .get::<PeerIdentity>()
        .cloned()
        .ok_or_else(|| {
            ApiError::Unauthenticated("no verified client SVID on this connection".to_owned())
        })
}

#[tonic::async_trait]
impl AuthorizationService for AuthorizationApi {
    async fn authorize(
        &self,
        request: Request<AuthorizeRequest>,
    ) -> Result<Response<AuthorizeResponse>, Status> {
        let caller = caller(&request)?;
        let gate = self.state.state_gate(request.get_ref().min_revision).await;
        let view = View::now(&self.state);
        if let Some(refusal) = gate {
            let refused = self.state_refusal(&caller.spiffe_id, request.get_ref(), refusal, &view);
            return Ok(Response::new(refused));
        }
        let mut response = self.decide(&caller, request.get_ref(), &view)?;
        self.state.settle(&mut response).await;
        Ok(Response::new(response))
    }

    async fn batch_authorize(
        &self,
        request: Request<BatchAuthorizeRequest>,
    ) -> Result<Response<BatchAuthorizeResponse>, Status> {
        let caller = caller(&request)?;
        let requests = &request.get_ref().requests;
        if requests.len() > self.state.max_batch_size {
            return Err(ApiError::InvalidArgument(format!(
                "batch has {} requests; the limit is {}",
                requests.len(),
                self.state.max_batch_size
            ))
            .into());
        }
        let min_revision = requests.iter().map(|r| r.min_revision).max();
        let gate = self.state.state_gate(min_revision.unwrap_or(0)).await;
        // One policy set and one registry for the whole batch.
        let view = View::now(&self.state);
        if let Some(refusal) = gate {
            let responses = requests
                .iter()
                .map(|r| self.state_refusal(&caller.spiffe_id, r, refusal.clone(), &view))
                .collect();
            return Ok(Response::new(BatchAuthorizeResponse { responses }));
        }
        let mut responses: Vec<AuthorizeResponse> = requests
            .iter()
            .enumerate()
            .map(|(i, r)| {
                self.decide(&caller, r, &view).map_err(|e| match e {
                    ApiError::InvalidArgument(m) => {
                        ApiError::InvalidArgument(format!("requests[{i}]: {m}"))
                    }
                    other => other,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        for response in &mut responses {
            self.state.settle(response).await;
        }
        Ok(Response::new(BatchAuthorizeResponse { responses }))
    }
}
