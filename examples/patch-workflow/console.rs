//! The people's side: the console (the dev trust domain's `frontend`
//! workload, registered as a task creator and an approval front end),
//! through which alice starts the task and decides approvals, and the
//! security team's audit tool (the `admin` workload, an operator), which
//! reads the trail.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use mandate::api::v1::{
    ApprovalState, CreateTaskRequest, DecideApprovalRequest, GetTaskTrailRequest,
    ListApprovalsRequest, TaskScope, TrailEntry, approval_service_client::ApprovalServiceClient,
    audit_service_client::AuditServiceClient, task_service_client::TaskServiceClient,
    trail_entry::Entry,
};
use tonic::transport::Channel;

use crate::protocol::Call;

/// The human of the story.
pub const HUMAN: &str = "alice";

/// How long the audit trail may take to show every decision: records reach
/// the index through the audit queue, after the answer.
const TRAIL_WAIT: Duration = Duration::from_secs(10);

/// How long `--approve-in-browser` waits for alice.
pub const BROWSER_WAIT: Duration = Duration::from_secs(600);

/// The console, relaying alice.
pub struct Console {
    pub channel: Channel,
}

impl Console {
    /// Starts the root task for `delegatee` on alice's behalf; the call and
    /// the new task's id.
    pub async fn create_task(
        &self,
        delegatee: &str,
        intent: &str,
        actions: &[&str],
        resources: &[&str],
    ) -> Result<(Call, String), String> {
        let what = format!(
            "create task for {delegatee} on behalf of {HUMAN}: \"{intent}\" [{} on {}, sensitivity <= 1]",
            actions.join(", "),
            resources.join(", ")
        );
        let task = TaskServiceClient::new(self.channel.clone())
            .create_task(CreateTaskRequest {
                intent: intent.to_owned(),
                delegatee: crate::agent::spiffe_id(delegatee),
                on_behalf_of: HUMAN.to_owned(),
                scope: Some(TaskScope {
                    actions: actions.iter().map(|a| (*a).to_owned()).collect(),
                    resources: resources.iter().map(|r| (*r).to_owned()).collect(),
                    max_sensitivity: 1,
                    expires_at: 0,
                    ttl_seconds: 1800,
                }),
            })
            .await
            .map_err(|s| format!("{what}: {}", s.message()))?
            .into_inner()
            .task
            .ok_or("the server answered no task")?;
        let call = ok(what, format!("task {}", crate::agent::short(&task.id)));
        Ok((call, task.id))
    }

    /// The approvals of `task` waiting for a human, as the console lists
    /// them: `(id, action, resource)`.
    pub async fn pending(&self, task: &str) -> Result<Vec<(String, String, String)>, String> {
        let list = ApprovalServiceClient::new(self.channel.clone())
            .list_approvals(ListApprovalsRequest {
                state: ApprovalState::Pending as i32,
                task_id: task.to_owned(),
                approver: String::new(),
                page_size: 0,
                page_token: String::new(),
            })
            .await
            .map_err(|s| format!("listing approvals: {}", s.message()))?
            .into_inner();
        Ok(list
            .approvals
            .into_iter()
            .map(|a| {
                let resource = a.resource.map(|r| r.id).unwrap_or_default();
                (a.id, a.action, resource)
            })
            .collect())
    }

    /// Waits until `approval` (of `task`) is decided on the approvals page;
    /// an approval is the call's success, a denial its refusal.
    pub async fn wait_for_decision(&self, task: &str, approval: &str) -> Result<Call, String> {
        let what = format!(
            "{HUMAN} decides {} in the browser",
            crate::agent::short(approval)
        );
        let deadline = Instant::now() + BROWSER_WAIT;
        loop {
            let list = ApprovalServiceClient::new(self.channel.clone())
                .list_approvals(ListApprovalsRequest {
                    state: ApprovalState::Unspecified as i32,
                    task_id: task.to_owned(),
                    approver: String::new(),
                    page_size: 0,
                    page_token: String::new(),
                })
                .await
                .map_err(|s| format!("listing approvals: {}", s.message()))?
                .into_inner();
            let state = list
                .approvals
                .iter()
                .find(|a| a.id == approval)
                .and_then(|a| ApprovalState::try_from(a.state).ok());
            match state {
                Some(ApprovalState::Approved) => {
                    return Ok(ok(what, "APPROVAL_STATE_APPROVED".to_owned()));
                }
                Some(ApprovalState::Pending) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                other => {
                    return Ok(Call {
                        what,
                        outcome: "REFUSED".to_owned(),
                        why: vec![format!(
                            "the approval is {}",
                            other.map_or("gone", |s| s.as_str_name())
                        )],
                        ..ok(String::new(), String::new())
                    });
                }
            }
        }
    }

    /// Relays alice's approval of `approval`, for ten minutes.
    pub async fn approve(&self, approval: &str) -> Result<Call, String> {
        let what = format!("{HUMAN} approves {}", crate::agent::short(approval));
        let decided = ApprovalServiceClient::new(self.channel.clone())
            .decide_approval(DecideApprovalRequest {
                approval_id: approval.to_owned(),
                approve: true,
                valid_for_seconds: 600,
                approver: HUMAN.to_owned(),
            })
            .await
            .map_err(|s| format!("{what}: {}", s.message()))?
            .into_inner()
            .approval
            .ok_or("the server answered no approval")?;
        let state = ApprovalState::try_from(decided.state)
            .map_or_else(|_| "unknown".to_owned(), |s| s.as_str_name().to_owned());
        Ok(ok(what, state))
    }
}

fn ok(what: String, produced: String) -> Call {
    Call {
        what,
        outcome: "OK".to_owned(),
        why: Vec::new(),
        reasons: Vec::new(),
        decision_id: String::new(),
        approval_id: String::new(),
        produced,
    }
}

/// Reads `root`'s trail as an operator, waiting until it holds every
/// decision in `decisions`; errs naming those still missing after a while.
pub async fn trail(
    auditor: Channel,
    root: &str,
    decisions: &BTreeSet<String>,
) -> Result<Vec<TrailEntry>, String> {
    let mut client = AuditServiceClient::new(auditor);
    let started = Instant::now();
    loop {
        let entries = client
            .get_task_trail(GetTaskTrailRequest {
                root_task_id: root.to_owned(),
            })
            .await
            .map_err(|s| format!("reading the trail: {}", s.message()))?
            .into_inner()
            .entries;
        let recorded: BTreeSet<&str> = entries
            .iter()
            .filter_map(|e| match &e.entry {
                Some(Entry::Decision(d)) => Some(d.decision_id.as_str()),
                _ => None,
            })
            .collect();
        let missing: Vec<&String> = decisions
            .iter()
            .filter(|d| !recorded.contains(d.as_str()))
            .collect();
        if missing.is_empty() {
            return Ok(entries);
        }
        if started.elapsed() > TRAIL_WAIT {
            return Err(format!(
                "the trail lacks {} of the story's decisions: {missing:?}",
                missing.len()
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
