//! `envoy.service.auth.v3.Authorization/Check` on the API port: Envoy's
//! ext_authz filter asks, Mandate answers through the same decision path
//! as `Authorize` in enforcement-point mode. The caller (Envoy) must be
//! allowed `check`; the subject is the downstream workload Envoy
//! authenticated. Every failure is a deny with a reason, never an allow.

use std::sync::Arc;
use std::time::Duration;

use envoy_types::ext_authz::v3::pb::{Authorization, CheckRequest, CheckResponse};
use sha2::{Digest, Sha256};
use tonic::{Request, Response, Status};

use super::authorization::{Extras, View, caller};
use super::v1::{AuthorizeRequest, Decision, Resource, Subject};
use super::{ApiError, AuthorizationApi, PeerIdentity, request_limits};
use crate::decision::reason;
use crate::envoy::{
    Answer, EnvoySettings, RefusalKind, RouteTable, allowed, denied, http_context, map_check,
};
use crate::policy::PolicyStore;

/// The ext_authz service.
#[derive(Debug, Clone)]
pub struct EnvoyApi {
    authz: AuthorizationApi,
    settings: Arc<EnvoySettings>,
    routes: Arc<RouteTable>,
}

impl EnvoyApi {
    /// A service deciding through `authz` with these settings and routes.
    pub fn new(
        authz: AuthorizationApi,
        settings: Arc<EnvoySettings>,
        routes: Arc<RouteTable>,
    ) -> Self {
        Self {
            authz,
            settings,
            routes,
        }
    }

    async fn answer(
        &self,
        caller: &PeerIdentity,
        request: &CheckRequest,
        view: &View,
    ) -> CheckResponse {
        let principal = request
            .attributes
            .as_ref()
            .and_then(|a| a.source.as_ref())
            .map(|s| s.principal.as_str())
            .unwrap_or_default();
        let refuse = |kind, code: &'static str, error: &str, target: (&str, &str, &str)| {
            let decision_id = self.authz.record_refusal(
                &caller.spiffe_id,
                principal,
                target,
                (code, error),
                view,
            );
            denied(
                &Answer {
                    decision_id: &decision_id,
                    decision: "deny",
                    reasons: &[code.to_owned()],
                    determining_policies: &[],
                    approval_id: None,
                    task_id: None,
                },
                kind,
            )
        };
        let routes = self.routes.current();
        let mapped = match map_check(request, &self.settings, &routes) {
            Ok(mapped) => mapped,
            Err(refusal) => {
                return refuse(refusal.kind, refusal.reason, &refusal.error, ("", "", ""));
            }
        };
        let target = &mapped.target;
        let named = (
            target.action.as_str(),
            target.resource_type.as_str(),
            target.resource_id.as_str(),
        );
        let (pair, entities) = match http_context(&mapped.http, &target.route, &target.params) {
            Ok(built) => built,
            Err(error) => {
                return refuse(
                    RefusalKind::Forbidden,
                    reason::INTERNAL_ERROR,
                    &error,
                    named,
                );
            }
        };
        let authorize = AuthorizeRequest {
            action: target.action.clone(),
            resource: Some(Resource {
                r#type: target.resource_type.clone(),
                id: target.resource_id.clone(),
            }),
            context: None,
            token: mapped.token.clone().unwrap_or_default(),
            // Checked before deciding, in `check`.
            min_revision: 0,
            subject: Some(Subject {
                spiffe_id: mapped.subject.to_string(),
                certificate_pem: mapped.certificate_pem.clone().unwrap_or_default(),
            }),
        };
        let extras = Extras {
            context: vec![pair],
            entities,
            subject_thumbprint: mapped.thumbprint.clone(),
        };
        // Envoy bounds header sizes too, but not to our token limit.
        if let Err(error) = request_limits::check(&self.authz.state().limits, &authorize) {
            return refuse(
                RefusalKind::Invalid,
                reason::LIMIT_EXCEEDED,
                &error.to_string(),
                named,
            );
        }
        let (mut response, task_id) =
            match self.authz.decide_extended(caller, &authorize, view, extras) {
                Ok(decided) => decided,
                // Mapping checked what `Authorize` would refuse as bad
                // input; anything left is ours, and a deny.
                Err(error) => {
                    let code = match error {
                        ApiError::InvalidArgument(_) => reason::INVALID_CHECK_REQUEST,
                        _ => reason::INTERNAL_ERROR,
                    };
                    return refuse(RefusalKind::Forbidden, code, &error.to_string(), named);
                }
            };
        // The approval it names must exist before Envoy shows it.
        self.authz.state().settle(&mut response).await;
        let decision = Decision::try_from(response.decision).unwrap_or(Decision::Unspecified);
        let answer = Answer {
            decision_id: &response.decision_id,
            decision: match decision {
                Decision::Allow => "allow",
                Decision::NeedsApproval => "needs_approval",
                _ => "deny",
            },
            reasons: &response.reasons,
            determining_policies: &response.determining_policies,
            approval_id: (!response.approval_id.is_empty()).then_some(&response.approval_id),
            task_id: task_id.as_deref(),
        };
        // INVARIANT: only an explicit allow lets the request through.
        if decision == Decision::Allow {
            allowed(&answer, &self.settings)
        } else {
            denied(&answer, refusal_kind(&response.reasons))
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

/// The header carrying `min_revision` through Envoy.
pub const MIN_REVISION_HEADER: &str = "x-mandate-min-revision";

impl EnvoyApi {
    /// A deny for a check the state gate refused.
    fn refuse_state(
        &self,
        caller: &PeerIdentity,
        request: &CheckRequest,
        (code, error): (&'static str, String),
        view: &View,
    ) -> CheckResponse {
        let principal = request
            .attributes
            .as_ref()
            .and_then(|a| a.source.as_ref())
            .map(|s| s.principal.as_str())
            .unwrap_or_default();
        let decision_id = self.authz.record_refusal(
            &caller.spiffe_id,
            principal,
            ("", "", ""),
            (code, &error),
            view,
        );
        denied(
            &Answer {
                decision_id: &decision_id,
                decision: "deny",
                reasons: &[code.to_owned()],
                determining_policies: &[],
                approval_id: None,
                task_id: None,
            },
            RefusalKind::Forbidden,
        )
    }
}

/// 401 when the subject or its token is what failed, else 403.
fn refusal_kind(reasons: &[String]) -> RefusalKind {
    let unauthenticated = reasons.iter().any(|r| {
        r.starts_with("token-")
            || [
                reason::UNTRUSTED_SUBJECT,
                reason::SUBJECT_CERTIFICATE_INVALID,
                reason::AGENT_PROOF_REQUIRED,
            ]
            .contains(&r.as_str())
    });
    // A refused enforcement point is the caller's problem, not the
    // subject's credentials.
    if unauthenticated
        && !reasons
            .iter()
            .any(|r| r == reason::NOT_AN_ENFORCEMENT_POINT)
    {
        RefusalKind::Unauthenticated
    } else {
        RefusalKind::Forbidden
    }
}

#[tonic::async_trait]
impl Authorization for EnvoyApi {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        let caller = caller(&request)?;
        let gate = match min_revision(request.get_ref()) {
            Ok(min_revision) => self.authz.state().state_gate(min_revision).await,
            Err(error) => Some((reason::INVALID_CHECK_REQUEST, error)),
        };
        let view = View::now(self.authz.state());
        if let Some(refusal) = gate {
            return Ok(Response::new(self.refuse_state(
                &caller,
                request.get_ref(),
                refusal,
                &view,
            )));
        }
        Ok(Response::new(
            self.answer(&caller, request.get_ref(), &view).await,
        ))
    }
}

/// Reloads the route map when its file changes: polled every `interval`,
/// taken once its content stayed the same for one more poll, so a file
/// being written is not read half-way.
pub async fn watch_routes(routes: Arc<RouteTable>, policies: Arc<PolicyStore>, interval: Duration) {
    let Some(path) = routes.path().map(ToOwned::to_owned) else {
        return;
    };
    // The content seen at the last poll, and the content last taken (good
    // or refused: a broken file is reported once, not every poll).
    let mut last: Option<[u8; 32]> = None;
    let mut taken: Option<[u8; 32]> = None;
    loop {
        tokio::time::sleep(interval).await;
        let path = path.clone();
        let Ok(now) = tokio::task::spawn_blocking(move || {
            std::fs::read(&path)
                .ok()
                .map(|bytes| <[u8; 32]>::from(Sha256::digest(bytes)))
        })
        .await
        else {
            continue;
        };
        if now.is_none() || now != last {
            last = now;
            continue;
        }
        if now == taken {
            continue;
        }
        taken = now;
        let (routes, policies) = (routes.clone(), policies.clone());
        // Unchanged content is a no-op by hash; the outcome is logged.
        let _ = tokio::task::spawn_blocking(move || routes.reload(&policies.current())).await;
    }
}
