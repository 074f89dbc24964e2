//! The decision record, one JSON object a line. Its fields are a public
//! format: tools read old logs, so fields are only ever added.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use cedar_policy::{Context, Entities, Entity, EntityUid, Request};
use serde::{Deserialize, Serialize};

use crate::ledger::History;
use crate::policy::Evaluated;

/// The version written in every record.
pub const RECORD_VERSION: u32 = 1;

/// One decision (DESIGN §3.8).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionRecord {
    /// [`RECORD_VERSION`].
    pub version: u32,
    /// The decision id (UUIDv7).
    pub decision_id: String,
    /// When, Unix milliseconds.
    pub time_ms: i64,
    /// SPIFFE ID of the caller (an enforcement point in PEP mode).
    pub caller: String,
    /// SPIFFE ID of the principal decided about.
    pub subject: String,
    /// Action id.
    pub action: String,
    /// Resource type and id.
    pub resource_type: String,
    /// Resource id.
    pub resource_id: String,
    /// The task of the token, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// The root of its chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_task_id: Option<String>,
    /// Task ids from the task to the root.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<String>,
    /// The token's `jti` (never the token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_jti: Option<String>,
    /// `allow`, `deny` or `needs_approval`.
    pub decision: String,
    /// With `needs_approval`, the pending approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<String>,
    /// Determining policy ids.
    pub determining_policies: Vec<String>,
    /// Reason codes.
    pub reasons: Vec<String>,
    /// Evaluation errors.
    pub errors: Vec<String>,
    /// Hash of the policy set used.
    pub policy_hash: String,
    /// State revision.
    pub revision: u64,
    /// Time spent deciding, microseconds.
    pub latency_us: u64,
    /// What the task and its tree had done before this call (see
    /// [`crate::ledger`]), for a call whose task token verified and whose
    /// action's policies read it (the others keep no copy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<HistoryRecord>,
    /// The Cedar request as evaluated, when the decision reached the
    /// policies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cedar: Option<CedarRequest>,
}

/// The execution history a decision saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryRecord {
    /// The task's own calls (`context.history`).
    pub task: History,
    /// Its whole tree's (`context.history_root`).
    pub tree: History,
}

/// A Cedar request and its entity slice in Cedar's JSON formats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CedarRequest {
    /// Principal uid, Cedar syntax (`Mandate::Agent::"spiffe://..."`).
    pub principal: String,
    /// Action uid.
    pub action: String,
    /// Resource uid.
    pub resource: String,
    /// The whole context, Mandate's keys included, in Cedar's JSON form.
    pub context: serde_json::Value,
    /// The entity slice, in Cedar's entities JSON form.
    pub entities: serde_json::Value,
}

impl CedarRequest {
    /// The JSON form of an evaluated request.
    pub fn from_evaluated(evaluated: &Evaluated) -> Result<Self, String> {
        let uid = |u: Option<&EntityUid>, what: &str| {
            u.map(ToString::to_string)
                .ok_or_else(|| format!("the request has no {what}"))
        };
        let request = &evaluated.request;
        Ok(Self {
            principal: uid(request.principal(), "principal")?,
            action: uid(request.action(), "action")?,
            resource: uid(request.resource(), "resource")?,
            context: match request.context() {
                Some(context) => context_json(context)?,
                None => serde_json::json!({}),
            },
            entities: redact(
                evaluated
                    .entities
                    .to_json_value()
                    .map_err(|e| e.to_string())?,
            ),
        })
    }

    /// The request and entities back as Cedar values, for replay. Not
    /// checked against a schema: the candidate set's schema may differ.
    pub fn to_cedar(&self) -> Result<(Request, Entities), String> {
        let uid = |s: &str| EntityUid::from_str(s).map_err(|e| format!("`{s}`: {e}"));
        let context =
            Context::from_json_value(self.context.clone(), None).map_err(|e| e.to_string())?;
        let request = Request::new(
            uid(&self.principal)?,
            uid(&self.action)?,
            uid(&self.resource)?,
            context,
            None,
        )
        .map_err(|e| e.to_string())?;
        let entities =
            Entities::from_json_value(self.entities.clone(), None).map_err(|e| e.to_string())?;
        Ok((request, entities))
    }
}

/// What a record shows instead of a secret.
pub const REDACTED: &str = "(redacted)";

/// Agents' registered checksums are kept out of records: an agent that
/// could read one would only have to replay it as its proof. (A policy that
/// compares `principal.checksum` therefore replays against the placeholder.)
fn redact(mut entities: serde_json::Value) -> serde_json::Value {
    for entity in entities.as_array_mut().into_iter().flatten() {
        let is_agent = entity
            .get("uid")
            .and_then(|u| u.get("type"))
            .and_then(serde_json::Value::as_str)
            == Some("Mandate::Agent");
        if is_agent
            && let Some(checksum) = entity.get_mut("attrs").and_then(|a| a.get_mut("checksum"))
        {
            *checksum = serde_json::Value::String(REDACTED.to_owned());
        }
    }
    entities
}

/// A context in Cedar's JSON form. Cedar has no direct serialiser for a
/// context, so its values are evaluated as the attributes of a scratch
/// entity, whose JSON form Cedar does write.
fn context_json(context: &Context) -> Result<serde_json::Value, String> {
    let attrs: HashMap<String, _> = context.clone().into_iter().collect();
    let scratch =
        EntityUid::from_str(r#"Mandate::Record::"context""#).map_err(|e| e.to_string())?;
    let entity = Entity::new(scratch, attrs, HashSet::new()).map_err(|e| e.to_string())?;
    let json = entity.to_json_value().map_err(|e| e.to_string())?;
    Ok(json
        .get("attrs")
        .cloned()
        .unwrap_or_else(|| serde_json::json!({})))
}
