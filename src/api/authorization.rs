//! `mandate.v1.AuthorizationService`: Authorize and BatchAuthorize.

use std::sync::Arc;

use rustls_pki_types::UnixTime;
use spiffe::SpiffeId;
use tonic::{Request, Response, Status};

use super::v1::authorization_service_server::AuthorizationService;
use super::v1::{
    AuthorizeRequest, AuthorizeResponse, BatchAuthorizeRequest, BatchAuthorizeResponse, Decision,
    Subject,
};
use super::{ApiError, PeerIdentity, context::struct_to_json};
use crate::decision::{Decider, DecisionRequest, Outcome, reason};
use crate::identity::{IdentityWatch, Usage};
use crate::policy::PolicyEngine;

/// The action an enforcement point needs to ask on behalf of a subject.
const CHECK_ACTION: &str = "check";

/// Everything the decision path reads, shared by every request.
#[derive(Debug)]
pub struct DecisionState {
    /// The current policies.
    pub engine: Arc<PolicyEngine>,
    /// The decider.
    pub decider: Decider,
    /// Our identity, for the trust bundles that verify subject certificates.
    pub identity: IdentityWatch,
    /// Most requests accepted in one `BatchAuthorize`.
    pub max_batch_size: usize,
}

/// The gRPC service.
#[derive(Debug, Clone)]
pub struct AuthorizationApi {
    state: Arc<DecisionState>,
}

impl AuthorizationApi {
    /// A service over `state`.
    pub fn new(state: Arc<DecisionState>) -> Self {
        Self { state }
    }

    fn decide(
        &self,
        caller: &SpiffeId,
        request: &AuthorizeRequest,
    ) -> Result<AuthorizeResponse, ApiError> {
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
        let subject_id = match &request.subject {
            Some(subject) => Some(SpiffeId::new(&subject.spiffe_id).map_err(|e| {
                ApiError::InvalidArgument(format!(
                    "`subject.spiffe_id` `{}` is not a SPIFFE ID: {e}",
                    subject.spiffe_id
                ))
            })?),
            None => None,
        };

        let engine = &self.state.engine;
        let outcome = if !request.token.is_empty() {
            // INVARIANT: a token we cannot verify never allows.
            Outcome::deny(
                reason::INVALID_TOKEN,
                "task tokens are not accepted by this server version",
            )
        } else if let (Some(subject), Some(subject_id)) = (&request.subject, &subject_id) {
            self.decide_for_subject(caller, subject, subject_id, request, resource)
        } else {
            self.state.decider.decide(
                engine,
                DecisionRequest {
                    principal: caller,
                    action: &request.action,
                    resource_type: &resource.r#type,
                    resource_id: &resource.id,
                    context: struct_to_json(request.context.as_ref()),
                },
            )
        };

        let decision_id = uuid::Uuid::now_v7().to_string();
        tracing::info!(
            decision_id = %decision_id,
            spiffe_id = %caller,
            subject = subject_id.as_ref().map(ToString::to_string),
            action = %request.action,
            resource_type = %resource.r#type,
            resource_id = %resource.id,
            allowed = outcome.allowed,
            policies = ?outcome.determining_policies,
            reasons = ?outcome.reasons,
            "decision"
        );
        Ok(AuthorizeResponse {
            decision: if outcome.allowed {
                Decision::Allow
            } else {
                Decision::Deny
            } as i32,
            decision_id,
            determining_policies: outcome.determining_policies,
            errors: outcome.errors,
            reasons: outcome.reasons.into_iter().map(str::to_owned).collect(),
            revision: 0,
        })
    }

    /// Enforcement-point mode: the caller must be allowed `check` on the
    /// resource, the subject's certificate (when sent) must verify, and then
    /// the subject is the principal.
    fn decide_for_subject(
        &self,
        caller: &SpiffeId,
        subject: &Subject,
        subject_id: &SpiffeId,
        request: &AuthorizeRequest,
        resource: &super::v1::Resource,
    ) -> Outcome {
        let engine = &self.state.engine;
        let check = self.state.decider.decide(
            engine,
            DecisionRequest {
                principal: caller,
                action: CHECK_ACTION,
                resource_type: &resource.r#type,
                resource_id: &resource.id,
                context: serde_json::json!({}),
            },
        );
        if !check.allowed {
            let mut outcome = check;
            outcome.reasons.insert(0, reason::NOT_AN_ENFORCEMENT_POINT);
            return outcome;
        }
        if !subject.certificate_pem.is_empty()
            && let Err(error) = self.verify_subject_certificate(subject, subject_id)
        {
            return Outcome::deny(reason::SUBJECT_CERTIFICATE_INVALID, error);
        }
        self.state.decider.decide(
            engine,
            DecisionRequest {
                principal: subject_id,
                action: &request.action,
                resource_type: &resource.r#type,
                resource_id: &resource.id,
                context: struct_to_json(request.context.as_ref()),
            },
        )
    }

    fn verify_subject_certificate(
        &self,
        subject: &Subject,
        expected: &SpiffeId,
    ) -> Result<(), String> {
        let chain = rustls_pemfile::certs(&mut subject.certificate_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("subject certificate PEM cannot be read: {e}"))?;
        let bundles = self.state.identity.borrow().bundles.clone();
        let actual = bundles
            .verify(&chain, UnixTime::now(), Usage::Client)
            .map_err(|e| format!("subject certificate: {e}"))?;
        if actual != *expected {
            return Err(format!(
                "subject certificate is for `{actual}`, not `{expected}`"
            ));
        }
        Ok(())
    }
}

fn caller<T>(request: &Request<T>) -> Result<SpiffeId, ApiError> {
    request
        .extensions()
        .get::<PeerIdentity>()
        .map(|peer| peer.spiffe_id.clone())
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
        Ok(Response::new(self.decide(&caller, request.get_ref())?))
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
        let responses = requests
            .iter()
            .enumerate()
            .map(|(i, r)| {
                self.decide(&caller, r).map_err(|e| match e {
                    ApiError::InvalidArgument(m) => {
                        ApiError::InvalidArgument(format!("requests[{i}]: {m}"))
                    }
                    other => other,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Response::new(BatchAuthorizeResponse { responses }))
    }
}
