//! `mandate.v1.TaskService`: create, delegate, tokens, completion,
//! revocation and reads, each authorized by Cedar and then checked against
//! the graph's invariants.

use std::collections::BTreeSet;
use std::sync::Arc;

use cedar_policy::RestrictedExpression;
use spiffe::SpiffeId;
use tonic::{Request, Response, Status};

use super::ApiError;
use super::authorization::caller;
use super::control::ControlGate;
use super::control::ControlRequest;
use super::trail::Trail;
use super::trail::{bare_event, task_event};
use super::v1::task_service_server::TaskService;
use super::v1::{
    self, AmendTaskRequest, CompleteTaskRequest, CreateTaskRequest, DelegateTaskRequest,
    GetTaskRequest, IssueTaskTokenRequest, IssueTaskTokenResponse, ListTasksRequest,
    ListTasksResponse, RevokeAgentRequest, RevokeResponse, RevokeTaskRequest, TaskResponse,
    WriteResponse,
};
use crate::audit::{EventKind, HistoryRecord};
use crate::clock::Clock;
use crate::credential::TaskTokens;
use crate::decision::task_entities;
use crate::graph::{
    Amendment, Task, TaskFilter, TaskGraph, TaskId, TaskSpec, TaskState, chain_state,
};
use crate::journal::Journal;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::revision::Revision;

const TASK_TYPE: &str = "Mandate::Task";
/// Graph pages one `ListTasks` call examines at most; past that it answers
/// a short page with a token to go on, so no call scans the whole graph.
const MAX_SCAN_PAGES: usize = 10;

/// The gRPC service.
#[derive(Debug, Clone)]
pub struct TaskApi {
    pub(crate) gate: ControlGate,
    pub(crate) trail: Trail,
    pub(crate) graph: Arc<TaskGraph>,
    /// For a delegatee's class and an agent's entity.
    pub(crate) registry: Arc<Registry>,
    pub(crate) revision: Arc<Revision>,
    pub(crate) tokens: Arc<TaskTokens>,
    pub(crate) journal: Arc<Journal>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) metrics: Option<Arc<Metrics>>,
}

impl TaskApi {
    fn now(&self) -> i64 {
        self.clock.now()
    }

    fn authorize_task(
        &self,
        caller: &SpiffeId,
        action: &str,
        chain: &[Arc<Task>],
    ) -> Result<(), ApiError> {
        self.authorize_task_with(caller, action, chain, Vec::new())
    }

    fn authorize_task_with(
        &self,
        caller: &SpiffeId,
        action: &str,
        chain: &[Arc<Task>],
        context: Vec<(String, RestrictedExpression)>,
    ) -> Result<(), ApiError> {
        let id = chain.first().map(|t| t.id.clone()).unwrap_or_default();
        let entities = task_entities(chain, self.now()).map_err(ApiError::Internal)?;
        self.gate.authorize_control(
            caller,
            ControlRequest {
                action,
                resource_type: TASK_TYPE,
                resource_id: &id,
                entities,
                context,
            },
        )
    }

    /// `delegate` of the task as it will be, with the delegatee's
    /// registered class in the context.
    fn authorize_delegation(&self, caller: &SpiffeId, chain: &[Arc<Task>]) -> Result<(), ApiError> {
        let class = chain.first().and_then(|t| {
            self.registry
                .snapshot()
                .agent(&t.delegatee.to_string())
                .and_then(|a| a.class.clone())
        });
        let context = class
            .map(|c| {
                (
                    "delegatee_class".to_owned(),
                    RestrictedExpression::new_string(c),
                )
            })
            .into_iter()
            .collect();
        self.authorize_task_with(caller, "delegate", chain, context)
    }

    fn chain(&self, id: &str) -> Result<Vec<Arc<Task>>, ApiError> {
        if id.is_empty() {
            return Err(ApiError::InvalidArgument(
                "`task_id` is required".to_owned(),
            ));
        }
        self.graph
            .chain(id)
            .ok_or_else(|| ApiError::NotFound(format!("task `{id}` does not exist")))
    }

    /// The chain of a task that ended and left memory (see
    /// [`crate::graph::TaskGraph::evict_ended`]), from the store; its
    /// ancestors still live come from the graph.
    async fn archived_chain(&self, id: &str) -> Result<Vec<Arc<Task>>, ApiError> {
        let store = self.journal.store();
        let mut chain = Vec::new();
        let mut next = Some(id.to_owned());
        while let Some(id) = next {
            // A stored cycle would loop for ever; no chain is this long.
            if chain.len() > 1024 {
                return Err(ApiError::Internal(format!(
                    "the stored chain of `{id}` is longer than any chain can be"
                )));
            }
            let task =
                match self.graph.get(&id) {
                    Some(task) => task,
                    None => Arc::new(store.task(&id).await?.ok_or_else(|| {
                        ApiError::NotFound(format!("task `{id}` does not exist"))
                    })?),
                };
            next = task.parent.as_deref().map(str::to_owned);
            chain.push(task);
        }
        Ok(chain)
    }

    fn to_proto(&self, chain: &[Arc<Task>]) -> v1::Task {
        let state = chain_state(chain, self.now());
        chain
            .first()
            .map_or_else(v1::Task::default, |t| task_to_proto(t, state))
    }
}

fn spiffe_id(field: &str, value: &str) -> Result<SpiffeId, ApiError> {
    SpiffeId::new(value).map_err(|e| {
        ApiError::InvalidArgument(format!("`{field}` `{value}` is not a SPIFFE ID: {e}"))
    })
}

fn spec(
    intent: &str,
    delegatee: &str,
    scope: Option<&v1::TaskScope>,
    now: i64,
) -> Result<TaskSpec, ApiError> {
    let scope = scope.ok_or_else(|| ApiError::InvalidArgument("`scope` is required".to_owned()))?;
    let expires_at = match (scope.expires_at, scope.ttl_seconds) {
        (0, 0) => {
            return Err(ApiError::InvalidArgument(
                "`scope.expires_at` or `scope.ttl_seconds` is required".to_owned(),
            ));
        }
        (0, ttl) => now.saturating_add(ttl),
        (at, _) => at,
    };
    Ok(TaskSpec {
        intent: intent.to_owned(),
        delegatee: spiffe_id("delegatee", delegatee)?,
        actions: scope.actions.iter().cloned().collect::<BTreeSet<_>>(),
        scope: scope.resources.iter().cloned().collect::<BTreeSet<_>>(),
        max_sensitivity: scope.max_sensitivity,
        expires_at,
    })
}

fn state_to_proto(state: TaskState) -> v1::TaskState {
    match state {
        TaskState::Active => v1::TaskState::Active,
        TaskState::Completed => v1::TaskState::Completed,
        TaskState::Revoked => v1::TaskState::Revoked,
        TaskState::Expired => v1::TaskState::Expired,
    }
}

fn task_to_proto(task: &Task, state: TaskState) -> v1::Task {
    v1::Task {
        id: task.id.to_string(),
        intent: task.intent.clone(),
        delegator: task.delegator.to_string(),
        delegatee: task.delegatee.to_string(),
        originator: task.originator.clone(),
        parent_id: task.parent.as_deref().unwrap_or_default().to_owned(),
        root_id: task.root.to_string(),
        depth: task.depth,
        actions: task.actions.iter().map(str::to_owned).collect(),
        resources: task.scope.iter().map(str::to_owned).collect(),
        max_sensitivity: task.max_sensitivity,
        created_at: task.created_at,
        expires_at: task.expires_at,
        state: state_to_proto(state) as i32,
        scope_digest: task.scope_digest.clone(),
        version: task.version,
        archived: false,
    }
}

#[tonic::async_trait]
impl TaskService for TaskApi {
    async fn create_task(
        &self,
        request: Request<CreateTaskRequest>,
    ) -> Result<Response<TaskResponse>, Status> {
        let caller = caller(&request)?.spiffe_id;
        let r = request.get_ref();
        if r.on_behalf_of.is_empty() {
            return Err(ApiError::InvalidArgument(
                "`on_behalf_of` (the user) is required".to_owned(),
            )
            .into());
        }
        let now = self.now();
        let spec = spec(&r.intent, &r.delegatee, r.scope.as_ref(), now)?;
        let id: TaskId = uuid::Uuid::now_v7().to_string().into();
        // The task as it would be created is what policy judges.
        let task = Task::new(
            id.clone(),
            spec.clone(),
            caller.clone(),
            r.on_behalf_of.clone(),
            None,
            now,
        );
        self.authorize_delegation(&caller, &[Arc::new(task)])?;
        let (task, revision) = self
            .journal
            .create_root::<ApiError>(id, spec, caller.clone(), r.on_behalf_of.clone(), now)
            .await?;
        tracing::info!(task_id = %task.id, spiffe_id = %caller, delegatee = %task.delegatee, revision, "task created");
        self.trail.record_event(task_event(
            EventKind::TaskCreated,
            &caller.to_string(),
            &task,
            revision,
        ));
        Ok(Response::new(TaskResponse {
            task: Some(task_to_proto(&task, TaskState::Active)),
            revision,
        }))
    }

    async fn delegate_task(
        &self,
        request: Request<DelegateTaskRequest>,
    ) -> Result<Response<TaskResponse>, Status> {
        let caller = caller(&request)?.spiffe_id;
        let r = request.get_ref();
        self.gate.check_agent_proof(&caller, &r.agent_proof)?;
        let now = self.now();
        let parent_chain = self.chain(&r.parent_id)?;
        let spec = spec(&r.intent, &r.delegatee, r.scope.as_ref(), now)?;
        let id: TaskId = uuid::Uuid::now_v7().to_string().into();
        let parent = parent_chain.first().cloned();
        let child = Task::new(
            id.clone(),
            spec.clone(),
            caller.clone(),
            String::new(),
            parent.as_deref(),
            now,
        );
        let mut chain = vec![Arc::new(child)];
        chain.extend(parent_chain);
        self.authorize_delegation(&caller, &chain)?;
        let (task, revision) = self
            .journal
            .delegate::<ApiError>(id, &r.parent_id, &caller, spec, now)
            .await?;
        tracing::info!(task_id = %task.id, parent = %r.parent_id, spiffe_id = %caller, delegatee = %task.delegatee, revision, "task delegated");
        self.trail.record_event(task_event(
            EventKind::TaskDelegated,
            &caller.to_string(),
            &task,
            revision,
        ));
        Ok(Response::new(TaskResponse {
            task: Some(task_to_proto(&task, TaskState::Active)),
            revision,
        }))
    }

    async fn amend_task(
        &self,
        request: Request<AmendTaskRequest>,
    ) -> Result<Response<TaskResponse>, Status> {
        let caller = caller(&request)?.spiffe_id;
        let r = request.get_ref();
        self.gate.check_agent_proof(&caller, &r.agent_proof)?;
        let now = self.now();
        let chain = self.chain(&r.task_id)?;
        let current = chain
            .first()
            .cloned()
            .ok_or_else(|| ApiError::NotFound(r.task_id.clone()))?;
        let spec = spec(
            &current.intent,
            &current.delegatee.to_string(),
            r.scope.as_ref(),
            now,
        )?;
        let amendment = Amendment {
            actions: spec.actions,
            scope: spec.scope,
            max_sensitivity: spec.max_sensitivity,
            expires_at: spec.expires_at,
        };
        // Policy judges the task as it will be, like a new delegation.
        let mut amended = (*current).clone();
        amended.actions = amendment.actions.clone().into();
        amended.scope = amendment.scope.clone().into();
        amended.max_sensitivity = amendment.max_sensitivity;
        amended.expires_at = amendment.expires_at;
        amended.scope_digest = amended.compute_scope_digest();
        let mut as_it_will_be = vec![Arc::new(amended)];
        as_it_will_be.extend(chain.iter().skip(1).cloned());
        self.authorize_delegation(&caller, &as_it_will_be)?;
        let (task, revision) = self
            .journal
            .amend::<ApiError>(&r.task_id, &caller, amendment, now)
            .await?;
        tracing::info!(task_id = %task.id, spiffe_id = %caller, version = task.version, scope_digest = %task.scope_digest, revision, "task amended");
        self.trail.record_event(task_event(
            EventKind::TaskAmended,
            &caller.to_string(),
            &task,
            revision,
        ));
        let chain = self.chain(&task.id)?;
        Ok(Response::new(TaskResponse {
            task: Some(self.to_proto(&chain)),
            revision,
        }))
    }

    async fn issue_task_token(
        &self,
        request: Request<IssueTaskTokenRequest>,
    ) -> Result<Response<IssueTaskTokenResponse>, Status> {
        let peer = caller(&request)?;
        let r = request.get_ref();
        let chain = self.chain(&r.task_id)?;
        let task = chain
            .first()
            .cloned()
            .ok_or_else(|| ApiError::NotFound(r.task_id.clone()))?;
        // INVARIANT: a token is for one (task, delegatee) pair (§3.2).
        if *task.delegatee != peer.spiffe_id {
            return Err(ApiError::refused(
                tonic::Code::PermissionDenied,
                "not-delegatee",
                format!(
                    // The delegatee is not named: a caller that only knows a
                    // task id learns nothing about who works on it.
                    "`{}` is not the delegatee of task `{}`; only it may get tokens for it",
                    peer.spiffe_id, task.id
                ),
            )
            .into());
        }
        ApiError::unless_active(&chain, self.now())?;
        self.authorize_task(&peer.spiffe_id, "issue_token", &chain)?;
        self.gate
            .check_agent_proof(&peer.spiffe_id, &r.agent_proof)?;
        let leaf = peer
            .certificates
            .first()
            .ok_or_else(|| ApiError::Unauthenticated("no client certificate".to_owned()))?;
        let ttl = (r.ttl_seconds > 0).then_some(r.ttl_seconds);
        let (token, claims) = self
            .tokens
            .mint(
                &chain,
                leaf.as_ref(),
                ttl,
                (!r.agent_proof.is_empty()).then_some(r.agent_proof.as_str()),
            )
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        tracing::info!(task_id = %task.id, spiffe_id = %peer.spiffe_id, jti = %claims.jti, exp = claims.exp, "task token issued");
        if let Some(metrics) = &self.metrics {
            metrics.token_issued();
        }
        let mut event = bare_event(
            EventKind::TokenIssued,
            &peer.spiffe_id.to_string(),
            &task,
            self.revision.current(),
        );
        event.token_jti = Some(claims.jti.clone());
        event.expires_at = Some(claims.exp);
        self.trail.record_event(event);
        Ok(Response::new(IssueTaskTokenResponse {
            token,
            jti: claims.jti,
            expires_at: claims.exp,
        }))
    }

    async fn complete_task(
        &self,
        request: Request<CompleteTaskRequest>,
    ) -> Result<Response<WriteResponse>, Status> {
        let caller = caller(&request)?.spiffe_id;
        let chain = self.chain(&request.get_ref().task_id)?;
        self.authorize_task(&caller, "complete", &chain)?;
        let task_id = &request.get_ref().task_id;
        let mut revision = self
            .journal
            .complete::<ApiError>(task_id, self.now())
            .await?;
        tracing::info!(task_id = %task_id, spiffe_id = %caller, revision, "task completed");
        // What hangs off the task ends with it: its tokens and its
        // sub-tasks' already deny (their chain is completed); its pending
        // approvals are revoked. Should that write fail, they stay pending
        // but can neither be decided nor count (the task is not active).
        match self
            .journal
            .end_pending_approvals(&self.graph.subtree(task_id))
            .await
        {
            Ok((ended, at)) => {
                revision = revision.max(at);
                for approval in &ended {
                    self.trail.record_approval_event(
                        EventKind::ApprovalRevoked,
                        &caller.to_string(),
                        approval,
                        at,
                    );
                }
            }
            Err(error) => {
                tracing::warn!(task_id = %task_id, error = %error, "pending approvals of a completed task not revoked");
            }
        }
        if let Some(task) = chain.first() {
            let mut event = bare_event(
                EventKind::TaskCompleted,
                &caller.to_string(),
                task,
                revision,
            );
            // What the task did stays readable once it has left memory.
            event.history = self.graph.history(&chain).map(|seen| HistoryRecord {
                task: (*seen.task).clone(),
                tree: (*seen.tree).clone(),
            });
            self.trail.record_event(event);
        }
        Ok(Response::new(WriteResponse { revision }))
    }

    async fn revoke_task(
        &self,
        request: Request<RevokeTaskRequest>,
    ) -> Result<Response<RevokeResponse>, Status> {
        let caller = caller(&request)?.spiffe_id;
        let r = request.get_ref();
        let chain = self.chain(&r.task_id)?;
        self.authorize_task(&caller, "revoke", &chain)?;
        // INVARIANT: the revoke is committed to the store and applied to
        // memory (the graph's write lock released) before we answer, so
        // every decision that starts after this reply sees it.
        let (revoked, revision) = self.journal.revoke::<ApiError>(&r.task_id).await?;
        tracing::info!(task_id = %r.task_id, spiffe_id = %caller, revoked = revoked.len(), reason = %r.reason, revision, "task revoked");
        if let Some(metrics) = &self.metrics {
            metrics.revoked("task");
        }
        if let Some(task) = chain.first() {
            let mut event = bare_event(EventKind::TaskRevoked, &caller.to_string(), task, revision);
            event.revoked_task_ids = revoked.iter().map(|id| id.to_string()).collect();
            event.reason = (!r.reason.is_empty()).then(|| r.reason.clone());
            self.trail.record_event(event);
        }
        Ok(Response::new(RevokeResponse {
            revoked_task_ids: revoked.iter().map(|id| id.to_string()).collect(),
            revision,
        }))
    }

    async fn revoke_agent(
        &self,
        request: Request<RevokeAgentRequest>,
    ) -> Result<Response<RevokeResponse>, Status> {
        let caller = caller(&request)?.spiffe_id;
        let r = request.get_ref();
        let target = spiffe_id("spiffe_id", &r.spiffe_id)?;
        let entity = self
            .gate
            .agents()
            .entity(&self.registry.snapshot(), &target)
            .map_err(ApiError::Internal)?;
        let type_name = entity.uid().type_name().to_string();
        self.gate.authorize_control(
            &caller,
            ControlRequest {
                action: "revoke",
                resource_type: &type_name,
                resource_id: &target.to_string(),
                entities: vec![entity],
                context: Vec::new(),
            },
        )?;
        let (revoked, revision) = self
            .journal
            .revoke_agent(&target)
            .await
            .map_err(ApiError::from)?;
        tracing::info!(target = %target, spiffe_id = %caller, revoked = revoked.len(), reason = %r.reason, revision, "agent's tasks revoked");
        if let Some(metrics) = &self.metrics {
            metrics.revoked("agent");
        }
        self.trail
            .record_revocations(&caller.to_string(), &revoked, &r.reason, revision);
        Ok(Response::new(RevokeResponse {
            revoked_task_ids: revoked.iter().map(|id| id.to_string()).collect(),
            revision,
        }))
    }

    async fn get_task(
        &self,
        request: Request<GetTaskRequest>,
    ) -> Result<Response<v1::Task>, Status> {
        let caller = caller(&request)?.spiffe_id;
        let id = &request.get_ref().task_id;
        let (chain, archived) = match self.chain(id) {
            Ok(chain) => (chain, false),
            Err(ApiError::NotFound(_)) => (self.archived_chain(id).await?, true),
            Err(e) => return Err(e.into()),
        };
        self.authorize_task(&caller, "read", &chain)?;
        Ok(Response::new(v1::Task {
            archived,
            ..self.to_proto(&chain)
        }))
    }

    async fn list_tasks(
        &self,
        request: Request<ListTasksRequest>,
    ) -> Result<Response<ListTasksResponse>, Status> {
        let caller = caller(&request)?.spiffe_id;
        let r = request.get_ref();
        let limit = super::page_limit(r.page_size);
        let state = match v1::TaskState::try_from(r.state) {
            Ok(v1::TaskState::Unspecified) => None,
            Ok(v1::TaskState::Active) => Some(TaskState::Active),
            Ok(v1::TaskState::Completed) => Some(TaskState::Completed),
            Ok(v1::TaskState::Revoked) => Some(TaskState::Revoked),
            Ok(v1::TaskState::Expired) => Some(TaskState::Expired),
            Err(_) => {
                return Err(
                    ApiError::InvalidArgument(format!("unknown task state {}", r.state)).into(),
                );
            }
        };
        let filter = TaskFilter {
            delegatee: (!r.delegatee.is_empty()).then(|| r.delegatee.clone()),
            root: (!r.root_id.is_empty()).then(|| r.root_id.clone()),
            state,
        };
        let now = self.now();
        let mut after = (!r.page_token.is_empty()).then(|| r.page_token.clone());
        let mut tasks = Vec::new();
        let mut exhausted = false;
        // Tasks the caller may not read are skipped, so a page is filled
        // from several graph pages, up to MAX_SCAN_PAGES.
        let mut pages = 0;
        while tasks.len() < limit && !exhausted && pages < MAX_SCAN_PAGES {
            pages += 1;
            let batch = self.graph.list(&filter, after.as_deref(), limit, now);
            exhausted = batch.len() < limit;
            for task in batch {
                after = Some(task.id.to_string());
                let Some(chain) = self.graph.chain(&task.id) else {
                    continue;
                };
                if self.authorize_task(&caller, "read", &chain).is_ok() {
                    tasks.push(self.to_proto(&chain));
                    if tasks.len() == limit {
                        break;
                    }
                }
            }
        }
        // Go on after the last task examined, whether it was listed or not.
        let next_page_token = if exhausted && tasks.len() < limit {
            String::new()
        } else {
            after.unwrap_or_default()
        };
        Ok(Response::new(ListTasksResponse {
            tasks,
            next_page_token,
        }))
    }
}
