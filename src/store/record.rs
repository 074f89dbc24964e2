//! How live state is written in the store: JSON documents, one per task,
//! approval or registry entry, and one per change-log row. JSON keeps the
//! two backends' schemas identical and lets `store export` write rows as
//! they are.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use spiffe::SpiffeId;

use super::{Change, StoreError};
use crate::approval::{Approval, ApprovalState, Subject};
use crate::graph::{Task, TaskState};
use crate::registry::{Entry, Kind, RegistryChange};

/// A task as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskRecord {
    id: String,
    intent: String,
    delegator: String,
    delegatee: String,
    originator: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    parent: Option<String>,
    root: String,
    depth: u32,
    actions: BTreeSet<String>,
    scope: BTreeSet<String>,
    max_sensitivity: i64,
    created_at: i64,
    expires_at: i64,
    state: String,
    version: u32,
    scope_digest: String,
}

impl From<&Task> for TaskRecord {
    fn from(t: &Task) -> Self {
        Self {
            id: t.id.to_string(),
            intent: t.intent.clone(),
            delegator: t.delegator.to_string(),
            delegatee: t.delegatee.to_string(),
            originator: t.originator.clone(),
            parent: t.parent.as_deref().map(str::to_owned),
            root: t.root.to_string(),
            depth: t.depth,
            actions: t.actions.to_set(),
            scope: t.scope.to_set(),
            max_sensitivity: t.max_sensitivity,
            created_at: t.created_at,
            expires_at: t.expires_at,
            state: t.state.as_str().to_owned(),
            version: t.version,
            scope_digest: t.scope_digest.clone(),
        }
    }
}

impl TaskRecord {
    /// The task this record holds.
    pub fn into_task(self) -> Result<Task, StoreError> {
        let spiffe = |s: &str| {
            SpiffeId::new(s).map_err(|e| StoreError::Corrupt(format!("task `{}`: {e}", self.id)))
        };
        let state = match self.state.as_str() {
            "active" => TaskState::Active,
            "completed" => TaskState::Completed,
            "revoked" => TaskState::Revoked,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "task `{}` has state `{other}`",
                    self.id
                )));
            }
        };
        Ok(Task {
            delegator: spiffe(&self.delegator)?.into(),
            delegatee: spiffe(&self.delegatee)?.into(),
            id: self.id.into(),
            intent: self.intent,
            originator: self.originator,
            parent: self.parent.map(Into::into),
            root: self.root.into(),
            depth: self.depth,
            actions: self.actions.into(),
            scope: self.scope.into(),
            max_sensitivity: self.max_sensitivity,
            created_at: self.created_at,
            expires_at: self.expires_at,
            state,
            version: self.version,
            scope_digest: self.scope_digest,
        })
    }
}

/// An approval as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApprovalRecord {
    id: String,
    task_id: String,
    action: String,
    resource_type: String,
    resource_id: String,
    justification: String,
    requested_by: String,
    requested_at: i64,
    state: String,
    approver: Option<String>,
    decided_by: Option<String>,
    decided_at: Option<i64>,
    expires_at: Option<i64>,
    scope_digest: String,
}

impl From<&Approval> for ApprovalRecord {
    fn from(a: &Approval) -> Self {
        Self {
            id: a.id.clone(),
            task_id: a.subject.task_id.clone(),
            action: a.subject.action.clone(),
            resource_type: a.subject.resource_type.clone(),
            resource_id: a.subject.resource_id.clone(),
            justification: a.justification.clone(),
            requested_by: a.requested_by.clone(),
            requested_at: a.requested_at,
            state: a.state.as_str().to_owned(),
            approver: a.approver.clone(),
            decided_by: a.decided_by.clone(),
            decided_at: a.decided_at,
            expires_at: a.expires_at,
            scope_digest: a.scope_digest.clone(),
        }
    }
}

impl ApprovalRecord {
    /// The approval this record holds.
    pub fn into_approval(self) -> Result<Approval, StoreError> {
        let state = match self.state.as_str() {
            "pending" => ApprovalState::Pending,
            "approved" => ApprovalState::Approved,
            "denied" => ApprovalState::Denied,
            "revoked" => ApprovalState::Revoked,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "approval `{}` has state `{other}`",
                    self.id
                )));
            }
        };
        Ok(Approval {
            id: self.id,
            subject: Subject {
                task_id: self.task_id,
                action: self.action,
                resource_type: self.resource_type,
                resource_id: self.resource_id,
            },
            justification: self.justification,
            requested_by: self.requested_by,
            requested_at: self.requested_at,
            state,
            approver: self.approver,
            decided_by: self.decided_by,
            decided_at: self.decided_at,
            expires_at: self.expires_at,
            scope_digest: self.scope_digest,
        })
    }
}

/// A registry write as stored: the entry, or a tombstone when removed (so
/// a removal of a catalog entry outlives a restart).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegistryRecord {
    kind: Kind,
    id: String,
    entry: Option<Entry>,
}

impl From<&RegistryChange> for RegistryRecord {
    fn from(c: &RegistryChange) -> Self {
        Self {
            kind: c.kind,
            id: c.id.clone(),
            entry: c.entry.clone(),
        }
    }
}

impl From<RegistryRecord> for RegistryChange {
    fn from(r: RegistryRecord) -> Self {
        Self {
            kind: r.kind,
            id: r.id,
            entry: r.entry,
        }
    }
}

/// A change-log row's document.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ChangeRecord {
    /// Tasks put (new or replaced).
    Tasks {
        /// The tasks.
        tasks: Vec<TaskRecord>,
    },
    /// Approvals put.
    Approvals {
        /// The approvals.
        approvals: Vec<ApprovalRecord>,
    },
    /// One registry write.
    Registry(RegistryRecord),
    /// A new signing key, sealed.
    SigningKey(super::seal::KeyRecord),
}

impl From<&Change> for ChangeRecord {
    fn from(change: &Change) -> Self {
        match change {
            Change::Tasks(tasks) => Self::Tasks {
                tasks: tasks.iter().map(|t| TaskRecord::from(t.as_ref())).collect(),
            },
            Change::Approvals(approvals) => Self::Approvals {
                approvals: approvals.iter().map(ApprovalRecord::from).collect(),
            },
            Change::Registry(change) => Self::Registry(change.into()),
            Change::SigningKey(key) => Self::SigningKey(key.clone()),
        }
    }
}

impl ChangeRecord {
    /// The change this record holds.
    pub fn into_change(self) -> Result<Change, StoreError> {
        Ok(match self {
            Self::Tasks { tasks } => Change::Tasks(
                tasks
                    .into_iter()
                    .map(|t| t.into_task().map(Arc::new))
                    .collect::<Result<_, _>>()?,
            ),
            Self::Approvals { approvals } => Change::Approvals(
                approvals
                    .into_iter()
                    .map(ApprovalRecord::into_approval)
                    .collect::<Result<_, _>>()?,
            ),
            Self::Registry(record) => Change::Registry(record.into()),
            Self::SigningKey(key) => Change::SigningKey(key),
        })
    }
}

/// `value` as JSON text.
pub fn to_json<T: Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// A JSON document read back from the store.
pub fn from_json<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}
