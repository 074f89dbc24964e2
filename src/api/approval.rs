//! `mandate.v1.ApprovalService`: ask for, decide, list and revoke human
//! approvals, each authorized by Cedar.

use std::sync::Arc;

use cedar_policy::RestrictedExpression;
use spiffe::SpiffeId;
use tonic::{Request, Response, Status};

use super::ApiError;
use super::authorization::caller;
use super::control::ControlGate;
use super::trail::Trail;
use super::v1::approval_service_server::ApprovalService;
use super::v1::{
    self, ApprovalResponse, DecideApprovalRequest, ListApprovalsRequest, ListApprovalsResponse,
    RequestApprovalRequest, RevokeApprovalRequest,
};
use crate::approval::{Approval, ApprovalBook, ApprovalFilter, ApprovalState, Subject};
use crate::audit::EventKind;
use crate::clock::Clock;
use crate::decision::DEFAULT_RESOURCE_TYPE;
use crate::graph::{ResourceHierarchy, TaskGraph};
use crate::journal::Journal;
use crate::metrics::Metrics;
use crate::policy::PolicyStore;
use crate::registry::{Kind, Registry};

/// How long a decision counts when the request does not say.
const DEFAULT_VALID_FOR_SECS: i64 = 3600;

/// The gRPC service.
#[derive(Debug, Clone)]
pub struct ApprovalApi {
    pub(crate) gate: ControlGate,
    pub(crate) trail: Trail,
    pub(crate) approvals: Arc<ApprovalBook>,
    /// For the approval's task and its chain.
    pub(crate) graph: Arc<TaskGraph>,
    /// For the approver's groups and the resource's sensitivity.
    pub(crate) registry: Arc<Registry>,
    /// For the actions policies declare.
    pub(crate) policies: Arc<PolicyStore>,
    pub(crate) journal: Arc<Journal>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) metrics: Option<Arc<Metrics>>,
}

impl ApprovalApi {
    fn now(&self) -> i64 {
        self.clock.now()
    }

    fn authorize(
        &self,
        caller: &SpiffeId,
        action: &str,
        approval: &Approval,
        context: Vec<(String, RestrictedExpression)>,
        more: Vec<cedar_policy::Entity>,
    ) -> Result<(), ApiError> {
        self.gate
            .authorize_on_approval(caller, action, approval, context, more)
    }

    fn approval(&self, id: &str) -> Result<Approval, ApiError> {
        if id.is_empty() {
            return Err(ApiError::InvalidArgument(
                "`approval_id` is required".to_owned(),
            ));
        }
        self.approvals
            .get(id)
            .ok_or_else(|| ApiError::NotFound(format!("approval `{id}` does not exist")))
    }

    /// `caller` (a front end) relays `approver`'s decision on `approval_id`:
    /// Cedar `approve` with the user in the context, then the journal, then
    /// the trail. Every door that decides approvals (gRPC, the browser
    /// inbox) goes through here, so none can decide under other rules.
    /// `valid_for` 0 means the default hour.
    pub async fn decide(
        &self,
        caller: &SpiffeId,
        approver_id: &str,
        approval_id: &str,
        approve: bool,
        valid_for: i64,
    ) -> Result<(Approval, u64), ApiError> {
        if approver_id.is_empty() || approver_id.len() > crate::registry::MAX_ID_LEN {
            return Err(ApiError::InvalidArgument(
                "`approver` (the user who decides) is required, at most 1024 bytes".to_owned(),
            ));
        }
        let approval = self.approval(approval_id)?;
        let approver =
            crate::registry::snapshot_uid(Kind::User, approver_id).map_err(ApiError::Internal)?;
        let users = self
            .registry
            .snapshot()
            .entity_with_ancestors(Kind::User, approver_id);
        self.authorize(
            caller,
            "approve",
            &approval,
            vec![(
                "approver".to_owned(),
                RestrictedExpression::new_entity_uid(approver),
            )],
            users,
        )?;
        let chain = self.graph.chain(&approval.subject.task_id).ok_or_else(|| {
            ApiError::NotFound(format!(
                "task `{}` does not exist",
                approval.subject.task_id
            ))
        })?;
        let task = chain
            .first()
            .cloned()
            .ok_or_else(|| ApiError::NotFound(approval.subject.task_id.clone()))?;
        // An approval of a task that ended can never count: deciding it
        // would only mislead the approver.
        ApiError::unless_active(&chain, self.now())?;
        let valid_for = if valid_for == 0 {
            DEFAULT_VALID_FOR_SECS
        } else {
            valid_for
        };
        let (approval, revision) = self
            .journal
            .decide_approval::<ApiError>(
                &approval.id,
                approve,
                (approver_id, &caller.to_string()),
                valid_for,
                &task.scope_digest,
                self.now(),
            )
            .await?;
        tracing::info!(approval_id = %approval.id, approved = approve, approver = %approver_id, spiffe_id = %caller, valid_for, revision, "approval decided");
        self.trail.record_approval_event(
            EventKind::ApprovalDecided,
            &caller.to_string(),
            &approval,
            revision,
        );
        Ok((approval, revision))
    }

    /// One approval, if `caller` may `read_approval` it.
    pub fn read(&self, caller: &SpiffeId, approval_id: &str) -> Result<Approval, ApiError> {
        let approval = self.approval(approval_id)?;
        self.authorize(caller, "read_approval", &approval, Vec::new(), Vec::new())?;
        Ok(approval)
    }

    /// A page of approvals matching `filter` after `after`, less those
    /// `caller` may not `read_approval`; the second value is the last id
    /// of the page when it was full (where the next page starts).
    pub fn list_readable(
        &self,
        caller: &SpiffeId,
        filter: &ApprovalFilter,
        after: Option<&str>,
        limit: usize,
    ) -> (Vec<Approval>, Option<String>) {
        let page = self.approvals.list(filter, after, limit);
        let next = if page.len() == limit {
            page.last().map(|a| a.id.clone())
        } else {
            None
        };
        let readable = page
            .into_iter()
            .filter(|a| {
                self.authorize(caller, "read_approval", a, Vec::new(), Vec::new())
                    .is_ok()
            })
            .collect();
        (readable, next)
    }

    fn to_proto(&self, approval: &Approval) -> v1::Approval {
        let now = self.now();
        let current = self
            .graph
            .get(&approval.subject.task_id)
            .is_some_and(|t| approval.is_current(&t.scope_digest, now));
        v1::Approval {
            id: approval.id.clone(),
            task_id: approval.subject.task_id.clone(),
            action: approval.subject.action.clone(),
            resource: Some(v1::ApprovalResource {
                r#type: approval.subject.resource_type.clone(),
                id: approval.subject.resource_id.clone(),
            }),
            justification: approval.justification.clone(),
            requested_by: approval.requested_by.clone(),
            requested_at: approval.requested_at,
            state: state_to_proto(approval.state) as i32,
            approver: approval.approver.clone().unwrap_or_default(),
            decided_by: approval.decided_by.clone().unwrap_or_default(),
            decided_at: approval.decided_at.unwrap_or_default(),
            expires_at: approval.expires_at.unwrap_or_default(),
            scope_digest: approval.scope_digest.clone(),
            current,
        }
    }
}

fn state_to_proto(state: ApprovalState) -> v1::ApprovalState {
    match state {
        ApprovalState::Pending => v1::ApprovalState::Pending,
        ApprovalState::Approved => v1::ApprovalState::Approved,
        ApprovalState::Denied => v1::ApprovalState::Denied,
        ApprovalState::Revoked => v1::ApprovalState::Revoked,
    }
}

#[tonic::async_trait]
impl ApprovalService for ApprovalApi {
    async fn request_approval(
        &self,
        request: Request<RequestApprovalRequest>,
    ) -> Result<Response<ApprovalResponse>, Status> {
        let caller = caller(&request)?.spiffe_id;
        let r = request.get_ref();
        let resource = r
            .resource
            .as_ref()
            .filter(|res| !res.id.is_empty())
            .ok_or_else(|| ApiError::InvalidArgument("`resource.id` is required".to_owned()))?;
        if self.policies.current().action(&r.action).is_none() {
            return Err(ApiError::InvalidArgument(format!(
                "action `{}` is not declared in the schema",
                r.action
            ))
            .into());
        }
        if r.task_id.is_empty() {
            return Err(ApiError::InvalidArgument("`task_id` is required".to_owned()).into());
        }
        self.gate.check_agent_proof(&caller, &r.agent_proof)?;
        let chain = self
            .graph
            .chain(&r.task_id)
            .ok_or_else(|| ApiError::NotFound(format!("task `{}` does not exist", r.task_id)))?;
        let task = chain
            .first()
            .cloned()
            .ok_or_else(|| ApiError::NotFound(r.task_id.clone()))?;
        // INVARIANT: only the agent working on the task asks for approvals
        // of it, and only while the task is live.
        if *task.delegatee != caller {
            return Err(ApiError::refused(tonic::Code::PermissionDenied, "not-delegatee", format!(
                "`{caller}` is not the delegatee of task `{}`; only it may ask for approvals of it",
                task.id
            ))
            .into());
        }
        let now = self.now();
        ApiError::unless_active(&chain, now)?;
        // An approval lifts only approval policies, never the task's own
        // bounds: asking a human for something the task cannot do would
        // only be noise.
        let registry = self.registry.snapshot();
        let in_scope = (resource.r#type.is_empty() || resource.r#type == DEFAULT_RESOURCE_TYPE)
            && task
                .scope
                .iter()
                .any(|root| registry.within(&resource.id, root));
        if !task.actions.contains(&r.action) || !in_scope {
            return Err(ApiError::refused(
                tonic::Code::FailedPrecondition,
                "outside-task",
                format!(
                    "task `{}` does not allow `{}` on `{}`; an approval cannot widen a task",
                    task.id, r.action, resource.id
                ),
            )
            .into());
        }
        let subject = Subject {
            task_id: task.id.to_string(),
            action: r.action.clone(),
            resource_type: if resource.r#type.is_empty() {
                DEFAULT_RESOURCE_TYPE.to_owned()
            } else {
                resource.r#type.clone()
            },
            resource_id: resource.id.clone(),
        };
        // Policy judges the approval as it would be asked for.
        let would_be = Approval {
            id: "(new)".to_owned(),
            subject: subject.clone(),
            justification: r.justification.clone(),
            requested_by: caller.to_string(),
            requested_at: now,
            state: ApprovalState::Pending,
            approver: None,
            decided_by: None,
            decided_at: None,
            expires_at: None,
            scope_digest: task.scope_digest.clone(),
        };
        self.authorize(
            &caller,
            "request_approval",
            &would_be,
            Vec::new(),
            Vec::new(),
        )?;
        let (approval, created, revision) = self
            .journal
            .request_approval::<ApiError>(
                subject,
                &r.justification,
                &caller.to_string(),
                &task.scope_digest,
                now,
            )
            .await?;
        if created {
            tracing::info!(approval_id = %approval.id, task_id = %task.id, action = %r.action, resource_id = %resource.id, spiffe_id = %caller, revision, "approval requested");
            self.trail.record_approval_event(
                EventKind::ApprovalRequested,
                &caller.to_string(),
                &approval,
                revision,
            );
        }
        Ok(Response::new(ApprovalResponse {
            approval: Some(self.to_proto(&approval)),
            revision,
        }))
    }

    async fn decide_approval(
        &self,
        request: Request<DecideApprovalRequest>,
    ) -> Result<Response<ApprovalResponse>, Status> {
        let caller = caller(&request)?.spiffe_id;
        let r = request.get_ref();
        let (approval, revision) = self
            .decide(
                &caller,
                &r.approver,
                &r.approval_id,
                r.approve,
                r.valid_for_seconds,
            )
            .await?;
        Ok(Response::new(ApprovalResponse {
            approval: Some(self.to_proto(&approval)),
            revision,
        }))
    }

    async fn list_approvals(
        &self,
        request: Request<ListApprovalsRequest>,
    ) -> Result<Response<ListApprovalsResponse>, Status> {
        let caller = caller(&request)?.spiffe_id;
        let r = request.get_ref();
        let limit = super::page_limit(r.page_size);
        let state = match v1::ApprovalState::try_from(r.state) {
            Ok(v1::ApprovalState::Unspecified) => None,
            Ok(v1::ApprovalState::Pending) => Some(ApprovalState::Pending),
            Ok(v1::ApprovalState::Approved) => Some(ApprovalState::Approved),
            Ok(v1::ApprovalState::Denied) => Some(ApprovalState::Denied),
            Ok(v1::ApprovalState::Revoked) => Some(ApprovalState::Revoked),
            Err(_) => {
                return Err(ApiError::InvalidArgument(format!(
                    "unknown approval state {}",
                    r.state
                ))
                .into());
            }
        };
        let filter = ApprovalFilter {
            state,
            task_id: (!r.task_id.is_empty()).then(|| r.task_id.clone()),
            approver: (!r.approver.is_empty()).then(|| r.approver.clone()),
        };
        let after = (!r.page_token.is_empty()).then_some(r.page_token.as_str());
        // Approvals the caller may not read are left out of the page.
        let (page, next) = self.list_readable(&caller, &filter, after, limit);
        Ok(Response::new(ListApprovalsResponse {
            approvals: page.iter().map(|a| self.to_proto(a)).collect(),
            next_page_token: next.unwrap_or_default(),
        }))
    }

    async fn revoke_approval(
        &self,
        request: Request<RevokeApprovalRequest>,
    ) -> Result<Response<ApprovalResponse>, Status> {
        let caller = caller(&request)?.spiffe_id;
        let r = request.get_ref();
        let approval = self.approval(&r.approval_id)?;
        self.authorize(&caller, "revoke", &approval, Vec::new(), Vec::new())?;
        let (approval, revision) = self
            .journal
            .revoke_approval::<ApiError>(&approval.id)
            .await?;
        tracing::info!(approval_id = %approval.id, spiffe_id = %caller, reason = %r.reason, revision, "approval revoked");
        if let Some(metrics) = &self.metrics {
            metrics.revoked("approval");
        }
        self.trail.record_approval_event(
            EventKind::ApprovalRevoked,
            &caller.to_string(),
            &approval,
            revision,
        );
        Ok(Response::new(ApprovalResponse {
            approval: Some(self.to_proto(&approval)),
            revision,
        }))
    }
}
