//! `mandate.v1.AuthorizationService`: Authorize and BatchAuthorize.

use std::sync::Arc;

use spiffe::SpiffeId;
use tonic::{Request, Response, Status};

use super::check_cache::CheckCache;
pub use super::decision_state::DecisionState;
pub(super) use super::decision_state::{Decided, Extras, View};
use super::v1::authorization_service_server::AuthorizationService;
use super::v1::{
    AuthorizeRequest, AuthorizeResponse, BatchAuthorizeRequest, BatchAuthorizeResponse, Decision,
    Subject,
};
use super::{ApiError, PeerIdentity, request_limits};
use crate::audit::{DecisionRecord, RECORD_VERSION};
use crate::credential::thumbprint;

/// The gRPC service.
#[derive(Debug, Clone)]
pub struct AuthorizationApi {
    pub(super) state: Arc<DecisionState>,
    pub(super) checks: Arc<CheckCache>,
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
            log.record_request(
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
                request
                    .context
                    .iter()
                    .flat_map(|c| c.fields.keys().map(String::as_str)),
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

/// Names the request of a batch a bad-input error is about.
fn in_batch(i: usize) -> impl Fn(ApiError) -> ApiError {
    move |e| match e {
        ApiError::InvalidArgument(m) => ApiError::InvalidArgument(format!("requests[{i}]: {m}")),
        other => other,
    }
}

#[tonic::async_trait]
impl AuthorizationService for AuthorizationApi {
    async fn authorize(
        &self,
        request: Request<AuthorizeRequest>,
    ) -> Result<Response<AuthorizeResponse>, Status> {
        let caller = caller(&request)?;
        request_limits::check(&self.state.limits, request.get_ref())?;
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
        // Every request within the limits before any is decided (and
        // recorded): an oversized one fails the batch with nothing done.
        for (i, r) in requests.iter().enumerate() {
            request_limits::check(&self.state.limits, r).map_err(in_batch(i))?;
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
            .map(|(i, r)| self.decide(&caller, r, &view).map_err(in_batch(i)))
            .collect::<Result<Vec<_>, _>>()?;
        for response in &mut responses {
            self.state.settle(response).await;
        }
        Ok(Response::new(BatchAuthorizeResponse { responses }))
    }
}
