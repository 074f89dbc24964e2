//! The JSON of the AuthZEN 1.0 HTTPS binding: requests as they arrive
//! (unknown fields ignored, missing or mistyped required fields refused
//! with a message naming them) and decisions as they leave.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A subject or a resource: a type, an id scoped to it, properties.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Entity {
    /// Its type, such as `user`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Its id, unique within the type.
    pub id: String,
    /// What the enforcement point says about it.
    #[serde(default)]
    pub properties: Option<Map<String, Value>>,
}

/// An action: a name and properties.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Action {
    /// Its name, such as `can_read`.
    pub name: String,
    /// What the enforcement point says about it.
    #[serde(default)]
    pub properties: Option<Map<String, Value>>,
}

/// One access evaluation: `POST /access/v1/evaluation`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Evaluation {
    /// Who asks.
    pub subject: Entity,
    /// To do what.
    pub action: Action,
    /// To what.
    pub resource: Entity,
    /// The environment.
    #[serde(default)]
    pub context: Option<Map<String, Value>>,
}

/// One entry of `evaluations`: whatever it leaves out comes from the
/// top-level defaults.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct PartialEvaluation {
    /// Overrides the default subject.
    #[serde(default)]
    pub subject: Option<Entity>,
    /// Overrides the default action.
    #[serde(default)]
    pub action: Option<Action>,
    /// Overrides the default resource.
    #[serde(default)]
    pub resource: Option<Entity>,
    /// Overrides the default context.
    #[serde(default)]
    pub context: Option<Map<String, Value>>,
}

/// How a list of evaluations is run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Semantic {
    /// Every evaluation, every answer.
    #[default]
    ExecuteAll,
    /// Stop after the first deny (like `&&`).
    DenyOnFirstDeny,
    /// Stop after the first permit (like `||`).
    PermitOnFirstPermit,
}

impl Semantic {
    /// Whether the evaluations stop after a decision that `allowed` or not.
    pub fn stops_after(self, allowed: bool) -> bool {
        match self {
            Self::ExecuteAll => false,
            Self::DenyOnFirstDeny => !allowed,
            Self::PermitOnFirstPermit => allowed,
        }
    }
}

/// `options` of a list of evaluations; other options are ignored.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Options {
    /// How the list is run.
    #[serde(default)]
    pub evaluations_semantic: Option<Semantic>,
}

/// `POST /access/v1/evaluations` as sent.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct EvaluationsRequest {
    /// The default subject.
    #[serde(default)]
    pub subject: Option<Entity>,
    /// The default action.
    #[serde(default)]
    pub action: Option<Action>,
    /// The default resource.
    #[serde(default)]
    pub resource: Option<Entity>,
    /// The default context.
    #[serde(default)]
    pub context: Option<Map<String, Value>>,
    /// The evaluations; absent or empty: the defaults are one evaluation.
    #[serde(default)]
    pub evaluations: Option<Vec<PartialEvaluation>>,
    /// How they are run.
    #[serde(default)]
    pub options: Option<Options>,
}

/// A request body that is not what the endpoint takes: answered 400 with
/// the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadRequest(pub String);

/// Parses an evaluation request body.
pub fn evaluation(body: &[u8]) -> Result<Evaluation, BadRequest> {
    let evaluation: Evaluation = parse(body)?;
    check_evaluation(&evaluation, "")?;
    Ok(evaluation)
}

/// What an evaluations request asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Asked {
    /// No list, or an empty one: the defaults are one evaluation, answered
    /// as `POST /access/v1/evaluation` answers.
    One(Box<Evaluation>),
    /// The listed evaluations, defaults applied, in order, and how to run
    /// them.
    Many(Vec<Evaluation>, Semantic),
}

/// Parses an evaluations request body.
pub fn evaluations(body: &[u8]) -> Result<Asked, BadRequest> {
    let request: EvaluationsRequest = parse(body)?;
    let semantic = request
        .options
        .as_ref()
        .and_then(|o| o.evaluations_semantic)
        .unwrap_or_default();
    let (entries, one) = match &request.evaluations {
        Some(list) if !list.is_empty() => (list.clone(), false),
        // Backwards compatible with a single evaluation.
        _ => (vec![PartialEvaluation::default()], true),
    };
    let mut out = Vec::with_capacity(entries.len());
    for (i, entry) in entries.into_iter().enumerate() {
        let at = format!("evaluations[{i}].");
        let missing = |field: &str| {
            BadRequest(format!(
                "`{at}{field}` is missing and there is no top-level `{field}` default"
            ))
        };
        let evaluation = Evaluation {
            subject: entry
                .subject
                .or_else(|| request.subject.clone())
                .ok_or_else(|| missing("subject"))?,
            action: entry
                .action
                .or_else(|| request.action.clone())
                .ok_or_else(|| missing("action"))?,
            resource: entry
                .resource
                .or_else(|| request.resource.clone())
                .ok_or_else(|| missing("resource"))?,
            context: entry.context.or_else(|| request.context.clone()),
        };
        check_evaluation(&evaluation, &at)?;
        out.push(evaluation);
    }
    match (one, out.pop()) {
        (true, Some(evaluation)) => Ok(Asked::One(Box::new(evaluation))),
        (_, last) => {
            out.extend(last);
            Ok(Asked::Many(out, semantic))
        }
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, BadRequest> {
    serde_json::from_slice(body).map_err(|e| {
        BadRequest(if e.is_data() {
            format!("the request does not fit the AuthZEN request: {e}")
        } else {
            format!("the request body is not a JSON object: {e}")
        })
    })
}

/// Required strings must not be empty.
fn check_evaluation(evaluation: &Evaluation, at: &str) -> Result<(), BadRequest> {
    let fields = [
        ("subject.type", &evaluation.subject.kind),
        ("subject.id", &evaluation.subject.id),
        ("action.name", &evaluation.action.name),
        ("resource.type", &evaluation.resource.kind),
        ("resource.id", &evaluation.resource.id),
    ];
    match fields.iter().find(|(_, value)| value.is_empty()) {
        Some((field, _)) => Err(BadRequest(format!("`{at}{field}` must not be empty"))),
        None => Ok(()),
    }
}

/// A decision as the PEP reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Whether the request may go ahead.
    pub decision: bool,
    /// Why, and the decision's id in Mandate's records.
    pub context: DecisionContext,
}

/// `context` of a decision.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DecisionContext {
    /// The id of the decision record.
    pub decision_id: String,
    /// Mandate's reason codes, the most telling first (see
    /// `docs/reasons.md`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    /// The policies that determined the decision.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub determining_policies: Vec<String>,
    /// Evaluation and request errors, for people.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// For a "needs approval": the pending approval a human can decide
    /// (`ApprovalService`, the approvals inbox); evaluating again once it
    /// is approved is allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<String>,
    /// The profile's reason code: `approval_required` for a requestable
    /// denial, or why a presented approval did not count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What the PEP does after a denied re-evaluation: `request`, `retry`
    /// or `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_action: Option<String>,
    /// A requestable denial's id, for `denial.evaluation_id` (the
    /// decision id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation_id: Option<String>,
    /// When a requestable denial was decided, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluated_at: Option<String>,
    /// Where and until when the denial can be requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_request: Option<super::profile::AccessRequestHint>,
    /// The presented approval, when it counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<super::profile::ApprovalRef>,
}

/// The answer of `POST /access/v1/evaluations`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluations {
    /// One decision per evaluation run, in request order.
    pub evaluations: Vec<Decision>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(value: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&value).unwrap()
    }

    #[test]
    fn required_fields_are_named_and_unknown_ones_ignored() {
        let ok = evaluation(&body(serde_json::json!({
            "subject": {"type": "user", "id": "alice", "extra": 1},
            "action": {"name": "read"},
            "resource": {"type": "doc", "id": "1"},
            "whatever": true,
        })))
        .unwrap();
        assert_eq!(ok.subject.id, "alice");
        let missing = evaluation(&body(serde_json::json!({
            "subject": {"type": "user", "id": "alice"},
            "resource": {"type": "doc", "id": "1"},
        })))
        .unwrap_err();
        assert!(missing.0.contains("missing field `action`"), "{missing}");
        let mistyped = evaluation(&body(serde_json::json!({
            "subject": {"type": "user", "id": 7},
            "action": {"name": "read"},
            "resource": {"type": "doc", "id": "1"},
        })))
        .unwrap_err();
        assert!(mistyped.0.contains("invalid type"), "{mistyped}");
        let empty = evaluation(&body(serde_json::json!({
            "subject": {"type": "", "id": "a"},
            "action": {"name": "read"},
            "resource": {"type": "doc", "id": "1"},
        })))
        .unwrap_err();
        assert_eq!(empty.0, "`subject.type` must not be empty");
        assert!(evaluation(b"[1]").is_err());
        assert!(
            evaluation(b"{")
                .unwrap_err()
                .0
                .contains("not a JSON object")
        );
    }

    #[test]
    fn defaults_fill_evaluations_in_order() {
        let Asked::Many(list, semantic) = evaluations(&body(serde_json::json!({
            "subject": {"type": "user", "id": "alice"},
            "action": {"name": "read"},
            "context": {"a": 1},
            "evaluations": [
                {"resource": {"type": "doc", "id": "1"}},
                {"resource": {"type": "doc", "id": "2"}, "action": {"name": "edit"}, "context": {}},
            ],
            "options": {"evaluations_semantic": "deny_on_first_deny", "other": 1},
        })))
        .unwrap() else {
            panic!("a list")
        };
        assert_eq!(semantic, Semantic::DenyOnFirstDeny);
        let ids: Vec<_> = list.iter().map(|e| e.resource.id.as_str()).collect();
        assert_eq!(ids, ["1", "2"]);
        assert_eq!(list[0].action.name, "read");
        assert_eq!(list[1].action.name, "edit");
        assert_eq!(list[0].context.as_ref().unwrap()["a"], 1);
        assert!(list[1].context.as_ref().unwrap().is_empty());
    }

    #[test]
    fn no_list_is_one_evaluation_and_gaps_are_named() {
        let one = serde_json::json!({
            "subject": {"type": "user", "id": "alice"},
            "action": {"name": "read"},
            "resource": {"type": "doc", "id": "1"},
            "evaluations": [],
        });
        assert!(matches!(evaluations(&body(one)).unwrap(), Asked::One(e) if e.resource.id == "1"));
        let gap = evaluations(&body(serde_json::json!({
            "evaluations": [{"subject": {"type": "user", "id": "a"}, "action": {"name": "read"}}],
        })))
        .unwrap_err();
        assert_eq!(
            gap.0,
            "`evaluations[0].resource` is missing and there is no top-level `resource` default"
        );
        let semantic = evaluations(&body(serde_json::json!({
            "evaluations": [],
            "options": {"evaluations_semantic": "sometimes"},
        })))
        .unwrap_err();
        assert!(semantic.0.contains("unknown variant"), "{semantic}");
    }

    #[test]
    fn semantics_stop_where_the_spec_says() {
        assert!(!Semantic::ExecuteAll.stops_after(false));
        assert!(Semantic::DenyOnFirstDeny.stops_after(false));
        assert!(!Semantic::DenyOnFirstDeny.stops_after(true));
        assert!(Semantic::PermitOnFirstPermit.stops_after(true));
    }
}
