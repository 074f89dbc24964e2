//! Task trail events from the control plane: each write to a task or an
//! approval is recorded, after it succeeded, in the same audit queue as the
//! decisions, so a root task's trail reads in the order things happened.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::approval::Approval;
use crate::audit::{DecisionLog, EventKind, TaskEvent};
use crate::graph::{Task, TaskGraph};

/// Where control-plane writes are recorded; records nothing when the audit
/// pipeline is off.
#[derive(Debug, Clone)]
pub(crate) struct Trail {
    log: Option<DecisionLog>,
    /// For the root of the tasks an event names.
    graph: Arc<TaskGraph>,
}

impl Trail {
    /// A trail into `log`, when there is one.
    pub(crate) fn new(log: Option<DecisionLog>, graph: Arc<TaskGraph>) -> Self {
        Self { log, graph }
    }

    /// Queues `event` when the audit pipeline runs.
    pub(crate) fn record_event(&self, event: TaskEvent) {
        if let Some(log) = &self.log {
            tracing::debug!(event = event.event.as_str(), task_id = %event.task_id, root_task_id = %event.root_task_id, "audit event");
            log.event(event);
        }
    }

    /// One `task_revoked` event per chain a revocation of many tasks (an
    /// agent's, a withdrawn trust domain's) reached, naming the tasks
    /// revoked in it.
    pub(crate) fn record_revocations(
        &self,
        actor: &str,
        revoked: &[crate::graph::TaskId],
        reason: &str,
        revision: u64,
    ) {
        if self.log.is_none() {
            return;
        }
        let mut by_root: BTreeMap<String, Vec<Arc<Task>>> = BTreeMap::new();
        for id in revoked {
            if let Some(task) = self.graph.chain(id).and_then(|c| c.first().cloned()) {
                by_root.entry(task.root.to_string()).or_default().push(task);
            }
        }
        for tasks in by_root.values() {
            let Some(first) = tasks.first() else {
                continue;
            };
            let mut event = bare_event(EventKind::TaskRevoked, actor, first, revision);
            event.revoked_task_ids = tasks.iter().map(|t| t.id.to_string()).collect();
            event.reason = (!reason.is_empty()).then(|| reason.to_owned());
            self.record_event(event);
        }
    }

    /// Queues an approval event; the root comes from the live graph.
    pub(crate) fn record_approval_event(
        &self,
        kind: EventKind,
        actor: &str,
        approval: &Approval,
        revision: u64,
    ) {
        if self.log.is_none() {
            return;
        }
        let task_id = &approval.subject.task_id;
        let root = self
            .graph
            .chain(task_id)
            .and_then(|chain| chain.last().map(|t| t.id.to_string()))
            .unwrap_or_else(|| task_id.clone());
        let event = TaskEvent::for_approval(kind, actor, approval, &root, revision);
        self.record_event(event);
    }
}

/// An event about `task` with its bounds (created, delegated, amended).
pub(crate) fn task_event(kind: EventKind, actor: &str, task: &Task, revision: u64) -> TaskEvent {
    let mut event = TaskEvent::new(kind, actor, &task.id, &task.root);
    event.parent_task_id = task.parent.as_deref().map(str::to_owned);
    event.delegatee = Some(task.delegatee.to_string());
    event.originator = (!task.originator.is_empty()).then(|| task.originator.clone());
    event.intent = Some(task.intent.clone());
    event.actions = task.actions.iter().map(str::to_owned).collect();
    event.resources = task.scope.iter().map(str::to_owned).collect();
    event.max_sensitivity = Some(task.max_sensitivity);
    event.expires_at = Some(task.expires_at);
    event.revision = revision;
    event
}

/// An event about `task` without its bounds (completed, revoked, a token).
pub(crate) fn bare_event(kind: EventKind, actor: &str, task: &Task, revision: u64) -> TaskEvent {
    let mut event = TaskEvent::new(kind, actor, &task.id, &task.root);
    event.delegatee = Some(task.delegatee.to_string());
    event.revision = revision;
    event
}
