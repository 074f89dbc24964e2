//! The search APIs (`POST /access/v1/search/subject|resource|action`):
//! which subjects, resources or actions the policies permit, by
//! enumeration with a bound. The candidates are the registry's entities
//! of the type searched for (and the schema's actions); each one is
//! decided as an evaluation with that candidate, through the same door
//! and runner, so it is recorded and counted like any decision. Results
//! are sorted by id and paged by an opaque token that carries the offset
//! and a digest of the request, so a changed request mid-way is refused.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::wire::{Action, BadRequest, Entity, Evaluation};

/// Most candidates one search decides; a search over more is refused
/// (narrow it, or ask evaluations).
pub const MAX_CANDIDATES: usize = 1000;

/// What is searched for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Searched {
    /// `search/subject`: subjects of a type.
    Subject,
    /// `search/resource`: resources of a type.
    Resource,
    /// `search/action`: actions.
    Action,
}

/// A subject or resource of a search: the id is absent for what is
/// searched for.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Partial {
    /// Its type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Its id; ignored for the searched entity.
    #[serde(default)]
    pub id: Option<String>,
    /// What the enforcement point says about it.
    #[serde(default)]
    pub properties: Option<Map<String, Value>>,
}

/// `page` of a search request.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct PageRequest {
    /// `next_token` of the previous page.
    #[serde(default)]
    pub token: Option<String>,
    /// Most results on this page; 0 or absent: all.
    #[serde(default)]
    pub limit: Option<u64>,
}

/// A search request as sent.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SearchRequest {
    /// The subject (its id ignored for a subject search).
    pub subject: Partial,
    /// The action; absent for an action search.
    #[serde(default)]
    pub action: Option<Action>,
    /// The resource (its id ignored for a resource search).
    pub resource: Partial,
    /// The environment.
    #[serde(default)]
    pub context: Option<Map<String, Value>>,
}

/// A parsed search: the request, where its page starts and how long it
/// is, and the digest its tokens carry.
#[derive(Debug, Clone, PartialEq)]
pub struct Search {
    /// What is asked.
    pub request: SearchRequest,
    /// Results skipped.
    pub offset: usize,
    /// Most results returned; `None`: all.
    pub limit: Option<usize>,
    /// Of the request without its page.
    digest: String,
}

/// Parses a search body for `searched`.
pub fn parse(body: &[u8], searched: Searched) -> Result<Search, BadRequest> {
    let mut value: Value = serde_json::from_slice(body)
        .map_err(|e| BadRequest(format!("the request body is not a JSON object: {e}")))?;
    let page = match value.as_object_mut() {
        Some(object) => object.remove("page"),
        None => {
            return Err(BadRequest(
                "the request body is not a JSON object".to_owned(),
            ));
        }
    };
    let page: PageRequest = match page {
        None | Some(Value::Null) => PageRequest::default(),
        Some(page) => serde_json::from_value(page)
            .map_err(|e| BadRequest(format!("`page` does not fit the AuthZEN page: {e}")))?,
    };
    let digest = hex(&Sha256::digest(value.to_string().as_bytes()));
    let request: SearchRequest = serde_json::from_value(value)
        .map_err(|e| BadRequest(format!("the request does not fit the AuthZEN search: {e}")))?;
    let required = |field: &str, value: Option<&String>| match value {
        Some(text) if !text.is_empty() => Ok(()),
        _ => Err(BadRequest(format!(
            "`{field}` is required and must not be empty"
        ))),
    };
    required("subject.type", Some(&request.subject.kind))?;
    required("resource.type", Some(&request.resource.kind))?;
    match searched {
        Searched::Subject => {
            required("resource.id", request.resource.id.as_ref())?;
            required("action.name", request.action.as_ref().map(|a| &a.name))?;
        }
        Searched::Resource => {
            required("subject.id", request.subject.id.as_ref())?;
            required("action.name", request.action.as_ref().map(|a| &a.name))?;
        }
        Searched::Action => {
            required("subject.id", request.subject.id.as_ref())?;
            required("resource.id", request.resource.id.as_ref())?;
        }
    }
    let offset = match page.token.as_deref() {
        None | Some("") => 0,
        Some(token) => offset_of(token, &digest)?,
    };
    let limit = page
        .limit
        .filter(|l| *l > 0)
        .map(|l| usize::try_from(l).unwrap_or(usize::MAX));
    Ok(Search {
        request,
        offset,
        limit,
        digest,
    })
}

impl Search {
    /// The evaluation that asks about `candidate` (an id, or an action
    /// name for an action search).
    pub fn evaluation(&self, searched: Searched, candidate: &str) -> Evaluation {
        let request = &self.request;
        let entity = |partial: &Partial, id: Option<&str>| Entity {
            kind: partial.kind.clone(),
            id: id
                .map(str::to_owned)
                .or_else(|| partial.id.clone())
                .unwrap_or_default(),
            properties: partial.properties.clone(),
        };
        let (subject, resource, action) = match searched {
            Searched::Subject => (Some(candidate), None, None),
            Searched::Resource => (None, Some(candidate), None),
            Searched::Action => (None, None, Some(candidate)),
        };
        Evaluation {
            subject: entity(&request.subject, subject),
            action: match action {
                Some(name) => Action {
                    name: name.to_owned(),
                    properties: None,
                },
                None => request.action.clone().unwrap_or(Action {
                    name: String::new(),
                    properties: None,
                }),
            },
            resource: entity(&request.resource, resource),
            context: request.context.clone(),
        }
    }

    /// The page of `permitted` (every permitted candidate, sorted) this
    /// request asks for, as the PEP reads it.
    pub fn page(&self, searched: Searched, permitted: &[String]) -> Value {
        let total = permitted.len();
        let start = self.offset.min(total);
        let end = self
            .limit
            .map_or(total, |limit| start.saturating_add(limit).min(total));
        let slice = permitted.get(start..end).unwrap_or_default();
        let next_token = if end < total {
            URL_SAFE_NO_PAD.encode(format!("{end}.{}", self.digest))
        } else {
            String::new()
        };
        let results: Vec<Value> = slice
            .iter()
            .map(|id| match searched {
                Searched::Action => serde_json::json!({"name": id}),
                Searched::Subject => {
                    serde_json::json!({"type": self.request.subject.kind, "id": id})
                }
                Searched::Resource => {
                    serde_json::json!({"type": self.request.resource.kind, "id": id})
                }
            })
            .collect();
        serde_json::to_value(SearchResponse {
            page: PageResponse {
                next_token,
                count: slice.len(),
                total,
            },
            results,
        })
        .unwrap_or(Value::Null)
    }
}

/// A search answer.
#[derive(Debug, Serialize)]
struct SearchResponse {
    page: PageResponse,
    results: Vec<Value>,
}

/// `page` of a search answer.
#[derive(Debug, Serialize)]
struct PageResponse {
    next_token: String,
    count: usize,
    total: usize,
}

/// The offset a token carries, if it was issued for this request.
fn offset_of(token: &str, digest: &str) -> Result<usize, BadRequest> {
    let invalid = || BadRequest("`page.token` is not a token this server issued".to_owned());
    let text = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    let text = String::from_utf8(text).map_err(|_| invalid())?;
    let (offset, of) = text.split_once('.').ok_or_else(invalid)?;
    if of != digest {
        return Err(BadRequest(
            "`page.token` belongs to another search: keep the request unchanged between pages"
                .to_owned(),
        ));
    }
    offset.parse().map_err(|_| invalid())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(value: Value) -> Vec<u8> {
        serde_json::to_vec(&value).unwrap()
    }

    fn ask(page: Value) -> Vec<u8> {
        body(serde_json::json!({
            "subject": {"type": "user", "id": "alice"},
            "action": {"name": "view"},
            "resource": {"type": "record"},
            "page": page,
        }))
    }

    #[test]
    fn pages_follow_each_other_and_belong_to_their_request() {
        let permitted: Vec<String> = ["101", "102", "103"].map(String::from).to_vec();
        let first = parse(&ask(serde_json::json!({"limit": 2})), Searched::Resource).unwrap();
        let page = first.page(Searched::Resource, &permitted);
        assert_eq!(page["page"]["count"], 2);
        assert_eq!(page["page"]["total"], 3);
        assert_eq!(page["results"][1]["id"], "102");
        let token = page["page"]["next_token"].as_str().unwrap();
        assert!(!token.is_empty());
        let second = parse(
            &ask(serde_json::json!({"limit": 2, "token": token})),
            Searched::Resource,
        )
        .unwrap();
        let page = second.page(Searched::Resource, &permitted);
        assert_eq!(
            page["results"],
            serde_json::json!([{"type": "record", "id": "103"}])
        );
        assert_eq!(page["page"]["next_token"], "");
        // The same token on another request is refused.
        let other = body(serde_json::json!({
            "subject": {"type": "user", "id": "bob"},
            "action": {"name": "view"},
            "resource": {"type": "record"},
            "page": {"limit": 2, "token": token},
        }));
        assert!(
            parse(&other, Searched::Resource)
                .unwrap_err()
                .0
                .contains("another search")
        );
        assert!(parse(&ask(serde_json::json!({"token": "%%"})), Searched::Resource).is_err());
    }

    #[test]
    fn what_each_search_needs_is_required() {
        let no_action = body(serde_json::json!({
            "subject": {"type": "user", "id": "alice"},
            "resource": {"type": "record"},
        }));
        let error = parse(&no_action, Searched::Resource).unwrap_err();
        assert_eq!(error.0, "`action.name` is required and must not be empty");
        let action_search = body(serde_json::json!({
            "subject": {"type": "user", "id": "alice"},
            "resource": {"type": "record", "id": "101"},
        }));
        let search = parse(&action_search, Searched::Action).unwrap();
        let evaluation = search.evaluation(Searched::Action, "edit");
        assert_eq!(evaluation.action.name, "edit");
        assert_eq!(evaluation.resource.id, "101");
        assert!(parse(&action_search, Searched::Subject).is_err());
    }
}
