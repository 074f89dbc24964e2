//! Task trail events: what happened to a task besides the decisions made
//! under it (created, delegated, amended, completed, revoked, a token
//! issued, an approval asked for, decided or revoked). They go through the
//! same queue, sinks and hash chains as decision records, and carry the
//! root task id so a whole delegation chain can be selected.

use serde::{Deserialize, Serialize};

use super::record::{DecisionRecord, HistoryRecord};
use crate::approval::{Approval, ApprovalState};

/// The version written in every event.
pub const EVENT_VERSION: u32 = 1;

/// What happened; serialized in `snake_case` (`task_created`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A root task was created on behalf of a user.
    TaskCreated,
    /// A sub-task was delegated.
    TaskDelegated,
    /// A task's bounds changed.
    TaskAmended,
    /// A task was marked done.
    TaskCompleted,
    /// A task and its subtree were revoked.
    TaskRevoked,
    /// A task token was issued (its `jti` only).
    TokenIssued,
    /// A human approval was asked for.
    ApprovalRequested,
    /// An approval was granted or refused.
    ApprovalDecided,
    /// An approval was revoked.
    ApprovalRevoked,
}

impl EventKind {
    /// The name written in records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TaskCreated => "task_created",
            Self::TaskDelegated => "task_delegated",
            Self::TaskAmended => "task_amended",
            Self::TaskCompleted => "task_completed",
            Self::TaskRevoked => "task_revoked",
            Self::TokenIssued => "token_issued",
            Self::ApprovalRequested => "approval_requested",
            Self::ApprovalDecided => "approval_decided",
            Self::ApprovalRevoked => "approval_revoked",
        }
    }
}

/// One lifecycle event. Fields that do not apply to the kind are left out
/// of the JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskEvent {
    /// [`EVENT_VERSION`].
    pub version: u32,
    /// What happened; its presence tells an event line from a decision.
    pub event: EventKind,
    /// The event id (UUIDv7).
    pub event_id: String,
    /// When, Unix milliseconds.
    pub time_ms: i64,
    /// SPIFFE ID of the caller that made it happen.
    pub actor: String,
    /// The task it happened to.
    pub task_id: String,
    /// The root of the task's chain.
    pub root_task_id: String,
    /// The parent task, for a delegation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_task_id: Option<String>,
    /// The task's delegatee (SPIFFE ID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegatee: Option<String>,
    /// The user at the root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub originator: Option<String>,
    /// The task's intent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<String>,
    /// The task's actions (created, delegated, amended).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<String>,
    /// The task's resource scope.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    /// The task's highest sensitivity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_sensitivity: Option<i64>,
    /// When the task (or the token) expires, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// The issued token's `jti` (never the token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_jti: Option<String>,
    /// The approval concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<String>,
    /// The approval's action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// The approval's resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    /// Whether the approval was granted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved: Option<bool>,
    /// Who decided the approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approver: Option<String>,
    /// Tasks a revocation reached (the task and its subtree).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revoked_task_ids: Vec<String>,
    /// The reason given with a revocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// On completion: what the task and its tree had done (see
    /// [`crate::ledger`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<HistoryRecord>,
    /// State revision after the change.
    pub revision: u64,
}

impl TaskEvent {
    /// An event of `kind` by `actor` about `approval`, whose task's root
    /// is `root_task_id`, at `revision`.
    pub fn for_approval(
        kind: EventKind,
        actor: &str,
        approval: &Approval,
        root_task_id: &str,
        revision: u64,
    ) -> Self {
        let mut event = Self::new(kind, actor, &approval.subject.task_id, root_task_id);
        event.approval_id = Some(approval.id.clone());
        event.action = Some(approval.subject.action.clone());
        event.resource_id = Some(approval.subject.resource_id.clone());
        event.approver.clone_from(&approval.approver);
        if kind == EventKind::ApprovalDecided {
            event.approved = Some(approval.state == ApprovalState::Approved);
        }
        event.revision = revision;
        event
    }

    /// An event of `kind` by `actor` on `task_id` (root `root_task_id`),
    /// now; the other fields empty.
    pub fn new(kind: EventKind, actor: &str, task_id: &str, root_task_id: &str) -> Self {
        Self {
            version: EVENT_VERSION,
            event: kind,
            event_id: uuid::Uuid::now_v7().to_string(),
            time_ms: unix_ms(),
            actor: actor.to_owned(),
            task_id: task_id.to_owned(),
            root_task_id: root_task_id.to_owned(),
            parent_task_id: None,
            delegatee: None,
            originator: None,
            intent: None,
            actions: Vec::new(),
            resources: Vec::new(),
            max_sensitivity: None,
            expires_at: None,
            token_jti: None,
            approval_id: None,
            action: None,
            resource_id: None,
            approved: None,
            approver: None,
            revoked_task_ids: Vec::new(),
            reason: None,
            history: None,
            revision: 0,
        }
    }
}

/// One line of an audit sink: a decision or a lifecycle event.
#[derive(Debug, Clone, PartialEq)]
pub enum AuditEntry {
    /// A decision (`Authorize`, `BatchAuthorize`, Envoy's `Check`).
    Decision(Box<DecisionRecord>),
    /// A task lifecycle event.
    Event(Box<TaskEvent>),
}

impl AuditEntry {
    /// When it happened, Unix milliseconds.
    pub fn time_ms(&self) -> i64 {
        match self {
            Self::Decision(d) => d.time_ms,
            Self::Event(e) => e.time_ms,
        }
    }

    /// The root task of its chain, if any.
    pub fn root_task_id(&self) -> Option<&str> {
        match self {
            Self::Decision(d) => d.root_task_id.as_deref(),
            Self::Event(e) => Some(&e.root_task_id),
        }
    }

    /// Now, Unix milliseconds, as records write it.
    pub fn now_ms() -> i64 {
        unix_ms()
    }

    /// Its JSON object, without the chain fields a sink adds.
    pub fn to_json(&self) -> serde_json::Result<serde_json::Map<String, serde_json::Value>> {
        let value = match self {
            Self::Decision(d) => serde_json::to_value(d)?,
            Self::Event(e) => serde_json::to_value(e)?,
        };
        match value {
            serde_json::Value::Object(map) => Ok(map),
            _ => Err(serde::ser::Error::custom("a record is not a JSON object")),
        }
    }

    /// Reads one line: an object with an `event` key is a lifecycle event,
    /// any other a decision record (records older than events have no
    /// marker, so the decision is the default). Chain fields are ignored.
    pub fn from_line(line: &str) -> serde_json::Result<Self> {
        let value: serde_json::Value = serde_json::from_str(line)?;
        if value.get("event").is_some() {
            Ok(Self::Event(Box::new(serde_json::from_value(value)?)))
        } else {
            Ok(Self::Decision(Box::new(serde_json::from_value(value)?)))
        }
    }
}

/// Whether a line is a task lifecycle event (an object with `event`),
/// not a decision.
pub fn is_event_line(line: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(line).is_ok_and(|value| value.get("event").is_some())
}

/// Now, Unix milliseconds.
pub(crate) fn unix_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )
    .unwrap_or(i64::MAX)
}
