//! `mandate.v1.AuthorizationService`: Authorize and BatchAuthorize, an
//! adapter from the wire to the decision [`Runner`] and back.

use std::sync::Arc;

use prost::Message;
use spiffe::SpiffeId;
use tonic::{Request, Response, Status};

use super::context::struct_to_map;
use super::v1::authorization_service_server::AuthorizationService;
use super::v1::{
    AuthorizeRequest, AuthorizeResponse, BatchAuthorizeRequest, BatchAuthorizeResponse, Decision,
    Subject,
};
use super::{ApiError, PeerIdentity};
use crate::credential::thumbprint;
use crate::decision::{
    self, Answer, BatchRefused, Caller, CallerContext, OnBehalfOf, Reason, Runner,
};

/// The gRPC service.
#[derive(Debug, Clone)]
pub struct AuthorizationApi {
    runner: Arc<Runner>,
}

impl AuthorizationApi {
    /// A service deciding through `runner`.
    pub fn new(runner: Arc<Runner>) -> Self {
        Self { runner }
    }
}

/// The question `request` asks, from `caller`.
fn question(
    caller: &PeerIdentity,
    request: &AuthorizeRequest,
) -> Result<decision::Request, ApiError> {
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
    let on_behalf_of = request
        .subject
        .as_ref()
        .map(on_behalf_of)
        .transpose()?
        .map(decision::Subject::Workload);
    let token = (!request.token.is_empty()).then(|| request.token.clone());
    // Only a token binds to the caller's certificate.
    let thumbprint = match (&token, &on_behalf_of) {
        (Some(_), None) => caller.certificates.first().map(|c| thumbprint(c)),
        _ => None,
    };
    Ok(decision::Request {
        caller: Caller {
            spiffe_id: caller.spiffe_id.clone(),
            thumbprint,
        },
        on_behalf_of,
        action: request.action.clone(),
        resource: decision::Resource {
            type_name: resource.r#type.clone(),
            id: resource.id.clone(),
        },
        context: CallerContext {
            fields: struct_to_map(request.context.as_ref()),
            wire_bytes: request.context.as_ref().map_or(0, Message::encoded_len),
        },
        token,
        min_revision: request.min_revision,
        door: decision::DoorContext::default(),
    })
}

/// Enforcement-point mode: the subject must name a workload, not a trust
/// domain.
fn on_behalf_of(subject: &Subject) -> Result<OnBehalfOf, ApiError> {
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
    Ok(OnBehalfOf {
        spiffe_id: id,
        certificate_pem: (!subject.certificate_pem.is_empty())
            .then(|| subject.certificate_pem.clone()),
        forwarded_thumbprint: None,
    })
}

/// The answer on the wire.
fn response(answer: Answer) -> AuthorizeResponse {
    let decision = match &answer.decision {
        decision::Decision::Allow(_) => Decision::Allow,
        decision::Decision::Deny(_) => Decision::Deny,
        decision::Decision::NeedsApproval(_) => Decision::NeedsApproval,
    };
    let grounds = answer.decision.into_grounds();
    AuthorizeResponse {
        decision: decision as i32,
        approval_id: answer.approval_id.unwrap_or_default(),
        decision_id: answer.decision_id,
        determining_policies: grounds.determining_policies,
        errors: grounds.errors,
        reasons: grounds
            .reasons
            .iter()
            .map(|r| r.as_str().to_owned())
            .collect(),
        revision: answer.revision,
        policy_hash: answer.policy_hash,
    }
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
        let question = question(&caller, request.get_ref())?;
        let answer = self.runner.run(question).await.map_err(|e| {
            ApiError::refused(
                tonic::Code::InvalidArgument,
                Reason::LimitExceeded.as_str(),
                e.to_string(),
            )
        })?;
        Ok(Response::new(response(answer)))
    }

    async fn batch_authorize(
        &self,
        request: Request<BatchAuthorizeRequest>,
    ) -> Result<Response<BatchAuthorizeResponse>, Status> {
        let caller = caller(&request)?;
        let questions = request
            .get_ref()
            .requests
            .iter()
            .enumerate()
            .map(|(i, r)| question(&caller, r).map_err(|e| e.in_context(&format!("requests[{i}]"))))
            .collect::<Result<Vec<_>, _>>()?;
        let answers = self
            .runner
            .run_batch(&questions)
            .await
            .map_err(|e: BatchRefused| {
                ApiError::refused(
                    tonic::Code::InvalidArgument,
                    e.reason().as_str(),
                    e.to_string(),
                )
            })?;
        Ok(Response::new(BatchAuthorizeResponse {
            responses: answers.into_iter().map(response).collect(),
        }))
    }
}
