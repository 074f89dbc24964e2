//! `envoy.service.auth.v3.Authorization/Check` on the API port: Envoy's
//! ext_authz filter asks, Mandate answers through the same decision path
//! as `Authorize` in enforcement-point mode. The caller (Envoy) must be
//! allowed `check`; the subject is the downstream workload Envoy
//! authenticated. Every failure is a deny with a reason, never an allow.

use std::sync::Arc;

use envoy_types::ext_authz::v3::pb::{Authorization, CheckRequest, CheckResponse};
use tonic::{Request, Response, Status};

use super::PeerIdentity;
use super::authorization::caller;
use crate::decision::{
    self, Answer, Caller, DoorContext, OnBehalfOf, Reason, ReasonKind, Runner, Subject, Target,
};
use crate::envoy::{
    self as ext, EnvoySettings, RouteTable, allowed, denied, http_context, map_check,
};

/// The header carrying `min_revision` through Envoy.
pub const MIN_REVISION_HEADER: &str = "x-mandate-min-revision";

/// The ext_authz service.
#[derive(Debug, Clone)]
pub struct EnvoyApi {
    runner: Arc<Runner>,
    settings: Arc<EnvoySettings>,
    routes: Arc<RouteTable>,
}

impl EnvoyApi {
    /// A service deciding through `runner` with these settings and routes.
    pub fn new(runner: Arc<Runner>, settings: Arc<EnvoySettings>, routes: Arc<RouteTable>) -> Self {
        Self {
            runner,
            settings,
            routes,
        }
    }

    async fn answer(&self, caller: &PeerIdentity, request: &CheckRequest) -> CheckResponse {
        let principal = request
            .attributes
            .as_ref()
            .and_then(|a| a.source.as_ref())
            .map(|s| s.principal.as_str())
            .unwrap_or_default();
        let refuse = |target: Target<'_>, reason: Reason, error: String| {
            let target = Target {
                subject: principal,
                ..target
            };
            self.reply(&self.runner.refuse(&caller.spiffe_id, target, reason, error))
        };
        let min_revision = match min_revision(request) {
            Ok(min_revision) => min_revision,
            Err(error) => return refuse(Target::default(), Reason::InvalidCheckRequest, error),
        };
        let routes = self.routes.current();
        let mapped = match map_check(request, &self.settings, &routes) {
            Ok(mapped) => mapped,
            Err(refusal) => return refuse(Target::default(), refusal.reason, refusal.error),
        };
        let target = &mapped.target;
        let named = Target {
            subject: principal,
            action: &target.action,
            resource_type: &target.resource_type,
            resource_id: &target.resource_id,
        };
        let (pair, entities) = match http_context(&mapped.http, &target.route, &target.params) {
            Ok(built) => built,
            Err(error) => return refuse(named, Reason::InternalError, error),
        };
        let question = decision::Request {
            on_behalf_of: Some(Subject::Workload(OnBehalfOf {
                spiffe_id: mapped.subject.clone(),
                certificate_pem: mapped.certificate_pem.clone(),
                forwarded_thumbprint: mapped.thumbprint.clone(),
            })),
            token: mapped.token.clone(),
            min_revision,
            door: DoorContext {
                pairs: vec![pair],
                entities,
                described: Vec::new(),
                // What `http_context` built its pair and entities from.
                digest: Some(format!(
                    "{:?}|{}|{:?}",
                    mapped.http, target.route, target.params
                )),
            },
            ..decision::Request::new(
                Caller {
                    spiffe_id: caller.spiffe_id.clone(),
                    thumbprint: None,
                },
                target.action.clone(),
                decision::Resource {
                    type_name: target.resource_type.clone(),
                    id: target.resource_id.clone(),
                },
            )
        };
        // Envoy bounds header sizes too, but not to our token limit.
        match self.runner.run(question).await {
            Ok(answer) => self.reply(&answer),
            Err(limit) => refuse(named, Reason::LimitExceeded, limit.to_string()),
        }
    }

    /// The answer as Envoy takes it.
    // INVARIANT: only an explicit allow lets the request through.
    fn reply(&self, answer: &Answer) -> CheckResponse {
        let grounds = answer.decision.grounds();
        let reasons: Vec<String> = grounds
            .reasons
            .iter()
            .map(|r| r.as_str().to_owned())
            .collect();
        let wire = ext::Answer {
            decision_id: &answer.decision_id,
            decision: answer.decision.name(),
            reasons: &reasons,
            determining_policies: &grounds.determining_policies,
            approval_id: answer.approval_id.as_deref(),
            task_id: answer.task_id.as_deref(),
        };
        if answer.decision.is_allowed() {
            allowed(&wire, &self.settings)
        } else {
            let kind = answer
                .decision
                .first_reason()
                .map_or(ReasonKind::Denied, Reason::kind);
            denied(&wire, kind)
        }
    }
}

/// The consistency token Envoy forwarded in [`MIN_REVISION_HEADER`]; 0
/// without one.
fn min_revision(request: &CheckRequest) -> Result<u64, String> {
    let header = request
        .attributes
        .as_ref()
        .and_then(|a| a.request.as_ref())
        .and_then(|r| r.http.as_ref())
        .and_then(|h| h.headers.get(MIN_REVISION_HEADER));
    match header {
        None => Ok(0),
        Some(text) => text.trim().parse().map_err(|_| {
            format!("`{MIN_REVISION_HEADER}` must be a revision number, not `{text}`")
        }),
    }
}

#[tonic::async_trait]
impl Authorization for EnvoyApi {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        let caller = caller(&request)?;
        Ok(Response::new(self.answer(&caller, request.get_ref()).await))
    }
}
