//! The JSON of the Access Request and Approval profile of AuthZEN
//! (`profiles/authzen-access-request-approval/` in `openid/authzen`,
//! draft), with its field names as written there: the requestable denial
//! in a decision's `context`, the access request a PEP submits, the task
//! handle it polls, the approval reference it brings back in
//! `context.approval`, and the problem documents of its errors.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::wire::{Action, BadRequest, Entity};

/// The capability the metadata document announces.
pub const CAPABILITY: &str = "urn:openid:authzen:capability:access-request";
/// `context.reason` of a requestable denial.
pub const APPROVAL_REQUIRED: &str = "approval_required";
/// `result.mode` of the one completion mode: evaluate again.
pub const REEVALUATE: &str = "reevaluate";
/// How long a requestable denial can be submitted, seconds.
pub const DENIAL_TTL_SECS: i64 = 600;
/// Clock skew allowed on the denial's expiry, as the profile suggests.
pub const SKEW_SECS: i64 = 30;

/// `context.access_request`: the denial can be requested, there, until
/// then.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRequestHint {
    /// The access request endpoint.
    pub endpoint: String,
    /// RFC 3339; submissions after it are refused.
    pub expires_at: String,
}

/// `context.approval` as a PEP presents it on re-evaluation (and as a
/// decision echoes the one that counted): `result.approval` unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRef {
    /// The approval's id (Mandate's approval id).
    pub id: String,
    /// RFC 3339, when it was decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_at: Option<String>,
    /// RFC 3339, until when it counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_until: Option<String>,
}

/// Why a re-evaluation that presented an approval was denied, as the
/// profile's registry names it; with `next_action`, what the PEP does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// The presented approval is the one that counts now (or the human's
    /// current "no").
    Counts,
    /// Decided, but expired, revoked, superseded by a later decision, or
    /// asked under a task scope that changed since.
    Expired,
    /// About another task, action or resource than this evaluation.
    OutOfScope,
    /// No approval has this id here.
    Unverifiable,
    /// Still waiting for a human: not an approval result yet.
    Undecided,
}

impl Standing {
    /// `context.reason` of a denied re-evaluation.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Counts => "policy_denied",
            Self::Expired => "approval_expired",
            Self::OutOfScope => "out_of_scope",
            Self::Unverifiable => "approval_unverifiable",
            Self::Undecided => APPROVAL_REQUIRED,
        }
    }
}

/// Takes the approval reference out of an evaluation's context: it is
/// the profile's machinery, not an input to policies (Mandate reads
/// approvals from live state, and `context.approval` is its own key).
pub fn take_approval(
    context: &mut Option<Map<String, Value>>,
) -> Result<Option<ApprovalRef>, BadRequest> {
    let Some(value) = context.as_mut().and_then(|c| c.remove("approval")) else {
        return Ok(None);
    };
    serde_json::from_value(value).map(Some).map_err(|e| {
        BadRequest(format!(
            "`context.approval` must be the `approval` of an access request's result, unchanged: {e}"
        ))
    })
}

/// `denial` of a submission: what binds it to the denied evaluation.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Denial {
    /// `context.evaluation_id` of the denied evaluation.
    #[serde(default)]
    pub evaluation_id: Option<String>,
    /// `context.access_request.expires_at`, echoed; required (freshness
    /// is judged by the expiry Mandate recorded).
    #[serde(default)]
    pub expires_at: Option<String>,
    /// Mandate issues none; a submission with only one is refused.
    #[serde(default)]
    pub binding_token: Option<String>,
}

/// An access request as a PEP submits it (`POST` to the access request
/// endpoint). Members the profile defines that Mandate does not use
/// (`context`, `requested_access`, `client`, `callback`) are ignored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Submission {
    /// The subject of the denied evaluation.
    pub subject: Entity,
    /// Its resource.
    #[serde(default)]
    pub resource: Option<Entity>,
    /// Its action.
    #[serde(default)]
    pub action: Option<Action>,
    /// A bundle; Mandate takes one request per denied evaluation.
    #[serde(default)]
    pub items: Option<Value>,
    /// The binding to the denial.
    #[serde(default)]
    pub denial: Option<Denial>,
}

/// Parses a submission body; a body that is not one is a 400.
pub fn submission(body: &[u8]) -> Result<Submission, Problem> {
    serde_json::from_slice(body).map_err(|e| {
        Problem::bad_request(format!("the request is not an AuthZEN access request: {e}"))
    })
}

/// A task handle: `task` of a submission's answer and of a poll.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// Its id: the id of the approval Mandate asked its humans for.
    pub id: String,
    /// `pending`, `approved`, `denied`, `expired` or `cancelled`.
    pub status: String,
    /// Where to poll it.
    pub status_endpoint: String,
}

/// `result` of an approved task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskResult {
    /// Always [`REEVALUATE`].
    pub mode: String,
    /// What to put in `context.approval` when evaluating again.
    pub approval: ApprovalRef,
}

/// A submission's answer and a poll's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskAnswer {
    /// The handle.
    pub task: Task,
    /// Only for an approved task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<TaskResult>,
}

/// An error of the access request or task status endpoint, as an
/// RFC 9457 problem document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The status.
    pub status: StatusCode,
    /// The profile's problem type, or `about:blank` for a plain HTTP one.
    pub kind: &'static str,
    /// What happened, for people.
    pub detail: String,
}

impl Problem {
    fn new(status: StatusCode, kind: &'static str, detail: String) -> Self {
        Self {
            status,
            kind,
            detail,
        }
    }

    /// Not an access request at all.
    pub fn bad_request(detail: String) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "about:blank", detail)
    }

    /// The evaluation was answered to another enforcement point.
    pub fn forbidden(detail: String) -> Self {
        Self::new(StatusCode::FORBIDDEN, "about:blank", detail)
    }

    /// The submission does not bind to a requestable denial answered here.
    pub fn invalid_denial_binding(detail: String) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "urn:openid:authzen:access-request:error:invalid_denial_binding",
            detail,
        )
    }

    /// The denial's binding window is over.
    pub fn expired_denial(detail: String) -> Self {
        Self::new(
            StatusCode::GONE,
            "urn:openid:authzen:access-request:error:expired_denial",
            detail,
        )
    }

    /// No task with this id was submitted here.
    pub fn unknown_task(detail: String) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "urn:openid:authzen:access-request:error:unknown_task",
            detail,
        )
    }

    /// The task's approval left memory with its task.
    pub fn task_expired(detail: String) -> Self {
        Self::new(
            StatusCode::GONE,
            "urn:openid:authzen:access-request:error:task_expired",
            detail,
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "type": self.kind,
            "title": self.status.canonical_reason().unwrap_or("Error"),
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        (
            self.status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body.to_string(),
        )
            .into_response()
    }
}

/// Unix seconds as RFC 3339 in UTC (`2026-04-30T20:15:00Z`).
pub fn rfc3339(unix: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(unix) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        // Out of time's range: only from a broken clock; the epoch says so.
        Err(_) => "1970-01-01T00:00:00Z".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_777_580_100), "2026-04-30T20:15:00Z");
    }

    #[test]
    fn the_approval_reference_leaves_the_context() {
        let mut context = Some(
            serde_json::json!({"approval": {"id": "a1", "approved_until": "x", "state": "s"}, "time": 1})
                .as_object()
                .cloned()
                .unwrap(),
        );
        let taken = take_approval(&mut context).unwrap().unwrap();
        assert_eq!(taken.id, "a1");
        assert_eq!(context.unwrap().keys().collect::<Vec<_>>(), ["time"]);
        let mut none = None;
        assert_eq!(take_approval(&mut none).unwrap(), None);
        let mut bad = Some(
            serde_json::json!({"approval": "a1"})
                .as_object()
                .cloned()
                .unwrap(),
        );
        assert!(
            take_approval(&mut bad)
                .unwrap_err()
                .0
                .contains("context.approval")
        );
    }
}
