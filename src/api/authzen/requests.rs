//! "Needs approval" the AuthZEN way (the Access Request and Approval
//! profile). Mandate asks its humans when it answers the needs-approval
//! (the pending approval the runner writes); the door makes that answer a
//! requestable denial, binds a PEP's access request to it by
//! `evaluation_id`, and answers polls of the task handle (the approval)
//! from live state.
//!
//! An approval a PEP presents in `context.approval` never decides
//! anything: the pipeline counts the approval live state holds for the
//! task, action and resource (current, not expired, not superseded, the
//! task's scope unchanged), whatever the PEP says. The reference only
//! explains a deny (`approval_expired`, `out_of_scope`, ...).
//!
//! The denials and who submitted each task are remembered in memory, on
//! this replica, for the denial's binding window and the approval's
//! lifetime: a PEP submits and polls where it was answered.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use spiffe::SpiffeId;

use super::profile::{
    self, AccessRequestHint, ApprovalRef, Problem, Standing, Task, TaskAnswer, TaskResult,
};
use super::routes::{Door, REQUESTS, json_body};
use super::wire::{Action, Decision, Entity};
use crate::api::https::HttpsPeer;
use crate::approval::{Approval, ApprovalBook, ApprovalState, MAX_VALID_FOR_SECS, Subject};
use crate::graph::{TaskGraph, TaskState, chain_state};

/// Most requestable denials and task handles remembered at once, each.
const CAPACITY: usize = 16_384;

/// What an evaluation asked: the wire objects a submission must repeat,
/// and what the approval it is about is keyed by in Mandate.
#[derive(Debug, Clone)]
pub struct Asked {
    /// The subject as sent.
    pub subject: Entity,
    /// The action as sent.
    pub action: Action,
    /// The resource as sent.
    pub resource: Entity,
    /// `context.approval`, taken out of the context.
    pub presented: Option<ApprovalRef>,
    /// The action id and resource (Cedar type, id) Mandate decided on;
    /// `None` for an evaluation refused before it could be asked.
    pub decided: Option<(String, String, String)>,
}

/// A requestable denial, until its binding window ends.
#[derive(Debug, Clone)]
struct Requestable {
    caller: SpiffeId,
    subject: Entity,
    action: Action,
    resource: Entity,
    approval_id: String,
    expires_at: i64,
}

/// The requestable denials answered and the task handles submitted.
#[derive(Debug)]
pub struct RequestBook {
    /// By `evaluation_id` (the decision id).
    denials: crate::cache::Bounded<String, Requestable>,
    /// By task id (the approval id): who may poll it.
    tasks: crate::cache::Bounded<String, Vec<SpiffeId>>,
}

impl Default for RequestBook {
    fn default() -> Self {
        let window = profile::DENIAL_TTL_SECS + 2 * profile::SKEW_SECS;
        Self {
            denials: crate::cache::Bounded::new(CAPACITY, secs(window)),
            tasks: crate::cache::Bounded::new(CAPACITY, secs(2 * MAX_VALID_FOR_SECS)),
        }
    }
}

fn secs(n: i64) -> Duration {
    Duration::from_secs(u64::try_from(n).unwrap_or(0))
}

impl RequestBook {
    /// Remembers a requestable denial answered to `caller`; returns its
    /// expiry.
    pub fn answered(
        &self,
        evaluation_id: &str,
        caller: &SpiffeId,
        asked: &Asked,
        approval_id: &str,
        now: i64,
    ) -> i64 {
        let expires_at = now.saturating_add(profile::DENIAL_TTL_SECS);
        self.denials.insert(
            evaluation_id.to_owned(),
            Requestable {
                caller: caller.clone(),
                subject: asked.subject.clone(),
                action: asked.action.clone(),
                resource: asked.resource.clone(),
                approval_id: approval_id.to_owned(),
                expires_at,
            },
        );
        expires_at
    }

    fn submitted(&self, task_id: &str, caller: &SpiffeId) {
        let mut callers = self.tasks.get(task_id).unwrap_or_default();
        if !callers.contains(caller) {
            callers.push(caller.clone());
        }
        self.tasks.insert(task_id.to_owned(), callers);
    }
}

/// Where `presented` stands for an evaluation of `task_id` on `decided`:
/// it counts only if it is the approval live state counts for that task,
/// action and resource now ([`ApprovalBook::current`], the decision's own
/// rule).
pub fn standing(
    approvals: &ApprovalBook,
    graph: &TaskGraph,
    presented: &ApprovalRef,
    task_id: Option<&str>,
    decided: Option<&(String, String, String)>,
    now: i64,
) -> Standing {
    let Some(approval) = approvals.get(&presented.id) else {
        return Standing::Unverifiable;
    };
    // Without a task (no token, or one refused) nothing can bind it.
    let (Some(task_id), Some((action, resource_type, resource_id))) = (task_id, decided) else {
        return Standing::Unverifiable;
    };
    let subject = Subject {
        task_id: task_id.to_owned(),
        action: action.clone(),
        resource_type: resource_type.clone(),
        resource_id: resource_id.clone(),
    };
    if approval.subject != subject {
        return Standing::OutOfScope;
    }
    if approval.state == ApprovalState::Pending {
        return Standing::Undecided;
    }
    let digest = graph
        .chain(task_id)
        .and_then(|chain| chain.first().map(|t| t.scope_digest.clone()));
    let current = digest.and_then(|d| approvals.current(&subject, &d, now));
    if current.is_some_and(|c| c.id == approval.id) {
        Standing::Counts
    } else {
        Standing::Expired
    }
}

/// The reference a decision echoes for an approval that counted.
pub fn reference(approval: &Approval) -> ApprovalRef {
    ApprovalRef {
        id: approval.id.clone(),
        approved_at: approval.decided_at.map(profile::rfc3339),
        approved_until: approval.expires_at.map(profile::rfc3339),
    }
}

/// What a decision says that the profile's additions depend on.
#[derive(Debug)]
pub struct Facts {
    /// Whether it is a "needs approval".
    pub needs_approval: bool,
    /// The decision id, a requestable denial's `evaluation_id`.
    pub evaluation_id: String,
    /// The pending approval a "needs approval" names.
    pub approval_id: Option<String>,
    /// The task of the token, if any.
    pub task_id: Option<String>,
}

/// The profile's additions to a decision: a "needs approval" is a
/// requestable denial, remembered for the access request that may follow;
/// an approval presented with the evaluation is echoed when it counted and
/// explains a deny when it did not.
// INVARIANT: the presented approval never changes `decision`.
pub fn annotate(door: &Door, caller: &SpiffeId, out: &mut Decision, facts: Facts, asked: &Asked) {
    let now = door.now();
    let standing = asked.presented.as_ref().map(|presented| {
        standing(
            door.approvals(),
            door.graph(),
            presented,
            facts.task_id.as_deref(),
            asked.decided.as_ref(),
            now,
        )
    });
    let context = &mut out.context;
    match (facts.needs_approval, facts.approval_id) {
        (true, Some(approval_id)) => {
            let expires_at =
                door.book()
                    .answered(&facts.evaluation_id, caller, asked, &approval_id, now);
            let reason = standing
                .filter(|s| *s != Standing::Counts)
                .map_or(profile::APPROVAL_REQUIRED, Standing::reason);
            context.reason = Some(reason.to_owned());
            context.next_action = standing.map(|_| "request".to_owned());
            context.evaluation_id = Some(facts.evaluation_id);
            context.evaluated_at = Some(profile::rfc3339(now));
            context.access_request = Some(AccessRequestHint {
                endpoint: format!("{}{REQUESTS}", door.public_url()),
                expires_at: profile::rfc3339(expires_at),
            });
        }
        _ if out.decision => {
            context.approval = asked
                .presented
                .as_ref()
                .filter(|_| standing == Some(Standing::Counts))
                .and_then(|p| door.approvals().get(&p.id))
                .map(|a| reference(&a));
        }
        // Not requestable: the PEP has nothing to ask for.
        _ => {
            if let Some(standing) = standing {
                context.reason = Some(standing.reason().to_owned());
                context.next_action = Some("none".to_owned());
            }
        }
    }
}

/// `POST /access/v1/requests`: binds an access request to the denial it
/// names and answers the task handle of its approval.
pub async fn submit(
    State(door): State<Door>,
    ConnectInfo(peer): ConnectInfo<HttpsPeer>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let caller = match door.caller(&peer, &headers) {
        Ok(caller) => caller,
        Err(refused) => return refused.into_response(),
    };
    match bind(&door, &caller, &headers, &body) {
        Ok(task_id) => match task_answer(&door, &task_id) {
            Ok(answer) => {
                // A task already decided is answered as done (201).
                let status = if answer.task.status == "pending" {
                    StatusCode::ACCEPTED
                } else {
                    StatusCode::CREATED
                };
                let location = HeaderValue::from_str(&answer.task.status_endpoint).ok();
                let mut response = (status, axum::Json(answer)).into_response();
                if let Some(location) = location {
                    response.headers_mut().insert(header::LOCATION, location);
                }
                response
            }
            Err(problem) => problem.into_response(),
        },
        Err(problem) => problem.into_response(),
    }
}

/// The task a submission binds to, once it is checked against the denial
/// it names: same enforcement point, in its window, same subject, action
/// and resource.
fn bind(
    door: &Door,
    caller: &SpiffeId,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<String, Problem> {
    json_body(headers).map_err(|e| Problem::bad_request(e.0))?;
    let submission = profile::submission(body)?;
    if submission.items.is_some() {
        return Err(Problem::bad_request(
            "bundled access requests (`items`) are not supported: submit one per denied evaluation"
                .to_owned(),
        ));
    }
    let (Some(resource), Some(action)) = (submission.resource, submission.action) else {
        return Err(Problem::bad_request(
            "`resource` and `action` of the denied evaluation are required".to_owned(),
        ));
    };
    let denial = submission.denial.ok_or_else(|| {
        Problem::invalid_denial_binding(
            "`denial` is required, with `evaluation_id` and `expires_at` from the denied evaluation"
                .to_owned(),
        )
    })?;
    let evaluation_id = denial.evaluation_id.ok_or_else(|| {
        Problem::invalid_denial_binding(
            "`denial.evaluation_id` is required: Mandate binds access requests by the evaluation's id and issues no `binding_token`"
                .to_owned(),
        )
    })?;
    if denial.expires_at.is_none() {
        return Err(Problem::invalid_denial_binding(
            "`denial.expires_at` is required: `context.access_request.expires_at` of the denied evaluation"
                .to_owned(),
        ));
    }
    let denied = door.book().denials.get(&evaluation_id).ok_or_else(|| {
        Problem::invalid_denial_binding(format!(
            "evaluation `{evaluation_id}` is not a requestable denial this server answered (unknown, or past its binding window): evaluate again"
        ))
    })?;
    if denied.caller != *caller {
        tracing::warn!(spiffe_id = %caller, evaluation_id = %evaluation_id, "authzen access request for another enforcement point's evaluation refused");
        return Err(Problem::forbidden(format!(
            "evaluation `{evaluation_id}` was answered to another enforcement point, not to `{caller}`"
        )));
    }
    let now = door.now();
    if now > denied.expires_at.saturating_add(profile::SKEW_SECS) {
        return Err(Problem::expired_denial(format!(
            "the denial of evaluation `{evaluation_id}` expired at {}: evaluate again",
            profile::rfc3339(denied.expires_at)
        )));
    }
    let differs = if without_act(&submission.subject) != without_act(&denied.subject) {
        Some("subject")
    } else if action != denied.action {
        Some("action")
    } else if resource != denied.resource {
        Some("resource")
    } else {
        None
    };
    if let Some(member) = differs {
        return Err(Problem::invalid_denial_binding(format!(
            "`{member}` is not the {member} of evaluation `{evaluation_id}`"
        )));
    }
    door.book().submitted(&denied.approval_id, caller);
    Ok(denied.approval_id)
}

/// The subject as the profile compares it: without `properties.act`,
/// which a PEP may move to `client.actor`.
fn without_act(subject: &Entity) -> Entity {
    let mut subject = subject.clone();
    if let Some(properties) = subject.properties.as_mut() {
        properties.remove("act");
    }
    subject
}

/// `GET /access/v1/requests/{id}`: the task's status now, for an
/// enforcement point that submitted it.
pub async fn poll(
    State(door): State<Door>,
    ConnectInfo(peer): ConnectInfo<HttpsPeer>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let caller = match door.caller(&peer, &headers) {
        Ok(caller) => caller,
        Err(refused) => return refused.into_response(),
    };
    let Some(callers) = door.book().tasks.get(&id) else {
        return Problem::unknown_task(format!(
            "no access request for task `{id}` was submitted here"
        ))
        .into_response();
    };
    if !callers.contains(&caller) {
        tracing::warn!(spiffe_id = %caller, task_id = %id, "authzen task poll by another enforcement point refused");
        return Problem::forbidden(format!(
            "task `{id}` was submitted by another enforcement point, not by `{caller}`"
        ))
        .into_response();
    }
    match task_answer(&door, &id) {
        Ok(answer) => axum::Json(answer).into_response(),
        Err(problem) => problem.into_response(),
    }
}

/// The task handle of approval `id` as live state has it now.
fn task_answer(door: &Door, id: &str) -> Result<TaskAnswer, Problem> {
    let approval = door.approvals().get(id).ok_or_else(|| {
        Problem::task_expired(format!(
            "the approval of task `{id}` left memory with its ended task"
        ))
    })?;
    let now = door.now();
    let status = match approval.state {
        ApprovalState::Pending if task_active(door.graph(), &approval.subject.task_id, now) => {
            "pending"
        }
        // Its task ended before anyone decided: it can never be decided.
        ApprovalState::Pending => "expired",
        ApprovalState::Approved => "approved",
        ApprovalState::Denied => "denied",
        ApprovalState::Revoked => "cancelled",
    };
    let result = (approval.state == ApprovalState::Approved).then(|| TaskResult {
        mode: profile::REEVALUATE.to_owned(),
        approval: reference(&approval),
    });
    Ok(TaskAnswer {
        task: Task {
            id: approval.id.clone(),
            status: status.to_owned(),
            status_endpoint: format!("{}{REQUESTS}/{}", door.public_url(), approval.id),
        },
        result,
    })
}

fn task_active(graph: &TaskGraph, task_id: &str, now: i64) -> bool {
    graph
        .chain(task_id)
        .is_some_and(|chain| chain_state(&chain, now) == TaskState::Active)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hint_has_the_profiles_names() {
        let hint = profile::AccessRequestHint {
            endpoint: "https://pdp/access/v1/requests".to_owned(),
            expires_at: profile::rfc3339(0),
        };
        assert_eq!(
            serde_json::to_value(&hint).unwrap(),
            serde_json::json!({"endpoint": "https://pdp/access/v1/requests", "expires_at": "1970-01-01T00:00:00Z"})
        );
    }

    #[test]
    fn the_act_of_a_subject_is_not_compared() {
        let with: Entity = serde_json::from_value(serde_json::json!(
            {"type": "user", "id": "a", "properties": {"act": {"sub": "x"}, "k": 1}}))
        .unwrap();
        let without: Entity = serde_json::from_value(serde_json::json!(
            {"type": "user", "id": "a", "properties": {"k": 1}}))
        .unwrap();
        assert_eq!(without_act(&with), without_act(&without));
        assert_ne!(with, without);
    }
}
