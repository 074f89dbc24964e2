//! `mandate.v1.AuditService`: decisions and task trails. With the store
//! sink on, from the store's audit table (filters in SQL; with PostgreSQL,
//! any replica answers for the records of all of them). Otherwise from the
//! audit index, the window of recent entries the pipeline keeps in memory,
//! or, when a question reaches before that window, from the file sink's
//! files. Both calls are Cedar decisions on `Mandate::AuditLog::"main"`.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use spiffe::SpiffeId;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::ApiError;
use super::authorization::caller;
use super::control::ControlGate;
use super::control::ControlRequest;
use super::v1::audit_service_server::AuditService;
use super::v1::{
    self, DecisionEntry, GetTaskTrailRequest, GetTaskTrailResponse, QueryDecisionsRequest,
    TrailEntry, trail_entry,
};
use crate::audit::{
    AuditEntry, AuditIndex, AuditTable, DecisionFilter, DecisionLog, DecisionRecord, Indexed,
    TaskEvent, read_entries,
};
use crate::ledger::History;

/// The Cedar type and id of the audit log, the resource of these calls.
const AUDIT_LOG_TYPE: &str = "Mandate::AuditLog";
const AUDIT_LOG_ID: &str = "main";
/// Records a query returns when it asks for no limit, and at most.
const DEFAULT_LIMIT: usize = 1000;
const MAX_LIMIT: usize = 10_000;
/// Most entries of one trail read from the store.
const MAX_TRAIL: usize = 100_000;

/// The gRPC service.
#[derive(Debug, Clone)]
pub struct AuditApi {
    pub(crate) gate: ControlGate,
    /// Where the records are read from; `None` when the audit pipeline
    /// is off.
    pub(crate) decision_log: Option<DecisionLog>,
}

impl AuditApi {
    fn authorize<T>(&self, request: &Request<T>, action: &str) -> Result<(), ApiError> {
        self.authorize_caller(&caller(request)?.spiffe_id, action)
    }

    fn authorize_caller(&self, caller: &SpiffeId, action: &str) -> Result<(), ApiError> {
        self.gate.authorize_control(
            caller,
            ControlRequest {
                action,
                resource_type: AUDIT_LOG_TYPE,
                resource_id: AUDIT_LOG_ID,
                entities: Vec::new(),
                context: Vec::new(),
            },
        )
    }

    /// The trail of `root` (decisions and task events, in order) if
    /// `caller` may `read_trail`, and where the answering window starts
    /// when entries before it may be missing. Every door that shows trails
    /// (gRPC, the browser) reads through here.
    pub async fn trail(
        &self,
        caller: &SpiffeId,
        root: &str,
    ) -> Result<(Vec<Indexed>, Option<i64>), ApiError> {
        self.authorize_caller(caller, "read_trail")?;
        if root.is_empty() {
            return Err(ApiError::InvalidArgument(
                "`root_task_id` is required".to_owned(),
            ));
        }
        if let Some(table) = self.table() {
            let entries = table.trail(root, MAX_TRAIL).await.map_err(ApiError::from)?;
            let window = table.window_start().await.map_err(ApiError::from)?;
            return Ok((entries, window));
        }
        let (index, files) = self.sources()?;
        Ok(match index.map(|index| index.trail(root)) {
            Some((entries, None)) => (entries, None),
            Some((entries, window)) if files.is_empty() => (entries, window),
            _ => {
                let root = root.to_owned();
                let wanted = move |e: &AuditEntry| e.root_task_id() == Some(root.as_str());
                (read_back(files, wanted, usize::MAX).await?, None)
            }
        })
    }

    /// The store's audit table, when the store sink is on.
    fn table(&self) -> Option<Arc<dyn AuditTable>> {
        self.decision_log.as_ref().and_then(|log| log.table())
    }

    /// The index and the file sink's files (oldest first), either may be
    /// missing but not both.
    fn sources(&self) -> Result<(Option<Arc<AuditIndex>>, Vec<PathBuf>), ApiError> {
        let log = self.decision_log.as_ref();
        let index = log.and_then(|log| log.index());
        let files = log.map(|log| log.files()).unwrap_or_default();
        if index.is_none() && files.is_empty() {
            return Err(ApiError::FailedPrecondition(
                "nothing to answer from: the audit index is off (`audit.index_max_entries` = 0) and there is no decision log file".to_owned(),
            ));
        }
        Ok((index, files))
    }
}

/// Entries of `files` that `wanted` accepts, read off the async runtime.
async fn read_back(
    files: Vec<PathBuf>,
    wanted: impl Fn(&AuditEntry) -> bool + Send + 'static,
    limit: usize,
) -> Result<Vec<Indexed>, ApiError> {
    tokio::task::spawn_blocking(move || read_entries(&files, wanted, limit))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(format!("cannot read the decision log: {e}")))
}

fn nonempty(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_owned())
}

fn filter_of(r: &QueryDecisionsRequest) -> Result<DecisionFilter, ApiError> {
    let decision = nonempty(&r.decision);
    if let Some(d) = &decision
        && !["allow", "deny", "needs_approval"].contains(&d.as_str())
    {
        return Err(ApiError::InvalidArgument(format!(
            "`decision` `{d}` is not `allow`, `deny` or `needs_approval`"
        )));
    }
    Ok(DecisionFilter {
        task_id: nonempty(&r.task_id),
        root_task_id: nonempty(&r.root_task_id),
        subject: nonempty(&r.subject),
        decision,
        since_ms: (r.since_ms != 0).then_some(r.since_ms),
        until_ms: (r.until_ms != 0).then_some(r.until_ms),
        policy_id: nonempty(&r.policy_id),
    })
}

/// A decision record as the API shows it.
pub fn decision_to_proto(seq: u64, d: &DecisionRecord) -> DecisionEntry {
    DecisionEntry {
        seq,
        decision_id: d.decision_id.clone(),
        time_ms: d.time_ms,
        caller: d.caller.clone(),
        subject: d.subject.clone(),
        action: d.action.clone(),
        resource_type: d.resource_type.clone(),
        resource_id: d.resource_id.clone(),
        task_id: d.task_id.clone().unwrap_or_default(),
        root_task_id: d.root_task_id.clone().unwrap_or_default(),
        chain: d.chain.clone(),
        token_jti: d.token_jti.clone().unwrap_or_default(),
        decision: d.decision.clone(),
        approval_id: d.approval_id.clone().unwrap_or_default(),
        determining_policies: d.determining_policies.clone(),
        reasons: d.reasons.clone(),
        errors: d.errors.clone(),
        policy_hash: d.policy_hash.clone(),
        revision: d.revision,
        latency_us: d.latency_us,
        history: d.history.as_ref().map(|h| history_to_proto(&h.task)),
        history_root: d.history.as_ref().map(|h| history_to_proto(&h.tree)),
    }
}

/// An execution history as the API shows it.
fn history_to_proto(h: &History) -> v1::History {
    v1::History {
        calls: h.calls.iter().map(|(a, n)| (a.clone(), *n)).collect(),
        denials: h.denials,
        sensitivity_read: h.sensitivity_read,
        labels_read: h.labels_read.iter().cloned().collect(),
        last_actions: h.last_actions.iter().cloned().collect(),
    }
}

/// A task event as the API shows it.
pub fn event_to_proto(seq: u64, e: &TaskEvent) -> v1::TaskEvent {
    v1::TaskEvent {
        seq,
        event_id: e.event_id.clone(),
        time_ms: e.time_ms,
        event: e.event.as_str().to_owned(),
        actor: e.actor.clone(),
        task_id: e.task_id.clone(),
        root_task_id: e.root_task_id.clone(),
        parent_task_id: e.parent_task_id.clone().unwrap_or_default(),
        delegatee: e.delegatee.clone().unwrap_or_default(),
        originator: e.originator.clone().unwrap_or_default(),
        intent: e.intent.clone().unwrap_or_default(),
        actions: e.actions.clone(),
        resources: e.resources.clone(),
        max_sensitivity: e.max_sensitivity.unwrap_or_default(),
        expires_at: e.expires_at.unwrap_or_default(),
        token_jti: e.token_jti.clone().unwrap_or_default(),
        approval_id: e.approval_id.clone().unwrap_or_default(),
        action: e.action.clone().unwrap_or_default(),
        resource_id: e.resource_id.clone().unwrap_or_default(),
        approved: e.approved.unwrap_or_default(),
        approver: e.approver.clone().unwrap_or_default(),
        revoked_task_ids: e.revoked_task_ids.clone(),
        reason: e.reason.clone().unwrap_or_default(),
        revision: e.revision,
        history: e.history.as_ref().map(|h| history_to_proto(&h.task)),
        history_root: e.history.as_ref().map(|h| history_to_proto(&h.tree)),
    }
}

fn trail_entry(indexed: &Indexed) -> TrailEntry {
    let entry = match &*indexed.entry {
        AuditEntry::Decision(d) => trail_entry::Entry::Decision(decision_to_proto(indexed.seq, d)),
        AuditEntry::Event(e) => trail_entry::Entry::Event(event_to_proto(indexed.seq, e)),
    };
    TrailEntry { entry: Some(entry) }
}

type DecisionStream = Pin<Box<dyn Stream<Item = Result<DecisionEntry, Status>> + Send>>;

#[tonic::async_trait]
impl AuditService for AuditApi {
    type QueryDecisionsStream = DecisionStream;

    async fn query_decisions(
        &self,
        request: Request<QueryDecisionsRequest>,
    ) -> Result<Response<Self::QueryDecisionsStream>, Status> {
        self.authorize(&request, "query_decisions")?;
        let r = request.get_ref();
        let filter = filter_of(r)?;
        let limit = match r.limit {
            0 => DEFAULT_LIMIT,
            n => usize::try_from(n).unwrap_or(MAX_LIMIT).min(MAX_LIMIT),
        };
        // The store answers when its sink is on. Otherwise the index does,
        // unless the question reaches before its window and the files go
        // back further. Matches are copied out under the index's lock, then
        // streamed without it.
        let found = if let Some(table) = self.table() {
            table
                .decisions(&filter, limit)
                .await
                .map_err(ApiError::from)?
        } else {
            let (index, files) = self.sources()?;
            match index {
                Some(index)
                    if files.is_empty()
                        || index
                            .window_start()
                            .is_none_or(|start| filter.since_ms.is_some_and(|s| s >= start)) =>
                {
                    index.decisions(&filter, limit)
                }
                _ => {
                    let wanted = move |e: &AuditEntry| matches!(e, AuditEntry::Decision(d) if filter.matches(d));
                    read_back(files, wanted, limit).await?
                }
            }
        };
        let stream = tokio_stream::iter(found.into_iter().filter_map(
            |indexed| match &*indexed.entry {
                AuditEntry::Decision(d) => Some(Ok(decision_to_proto(indexed.seq, d))),
                AuditEntry::Event(_) => None,
            },
        ));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_task_trail(
        &self,
        request: Request<GetTaskTrailRequest>,
    ) -> Result<Response<GetTaskTrailResponse>, Status> {
        let caller = caller(&request)?.spiffe_id;
        let (entries, window) = self.trail(&caller, &request.get_ref().root_task_id).await?;
        Ok(Response::new(GetTaskTrailResponse {
            entries: entries.iter().map(trail_entry).collect(),
            window_start_ms: window.unwrap_or_default(),
        }))
    }
}
