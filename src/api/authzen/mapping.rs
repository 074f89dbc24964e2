//! An AuthZEN evaluation in Mandate's terms (see `docs/authzen.md`):
//!
//! - `agent` and `workload` subjects are workloads by SPIFFE ID; a task
//!   token (`properties.token`) and the subject's SVID
//!   (`properties.certificate_pem`) bind as on the gRPC API;
//! - other subject types name entity types through the type map (`user`:
//!   `Mandate::User`); resource types too, or are Cedar type names as
//!   written;
//! - the action name is the `Mandate::Action` (through `[authzen]
//!   actions` when listed there), the context Cedar's;
//! - `properties` of an entity of a user schema's type are its attributes
//!   when the registry does not hold it; `Mandate::` entities come only
//!   from the registry, so their properties are ignored.
//!
//! What cannot be mapped is a [`Refused`]: a recorded deny with a reason.

use std::str::FromStr;

use cedar_policy::{Entity, EntityId, EntityTypeName, EntityUid};
use serde_json::{Map, Value};
use spiffe::SpiffeId;

use super::wire::{self, Evaluation};
use super::{TypeMap, WORKLOAD_TYPES};
use crate::decision::{
    self, Caller, CallerContext, DoorContext, OnBehalfOf, Reason, Subject, Target,
};
use crate::policy::NAMESPACE;

/// The header carrying `min_revision`, as through Envoy.
pub const MIN_REVISION_HEADER: &str = "x-mandate-min-revision";

/// Subject properties Mandate reads for a workload subject.
const TOKEN_PROPERTY: &str = "token";
const CERTIFICATE_PROPERTY: &str = "certificate_pem";

/// An evaluation that could not be made a question: what it was about,
/// and why.
#[derive(Debug, Clone)]
pub struct Refused {
    /// The subject as the PEP named it.
    pub subject: String,
    /// The action name.
    pub action: String,
    /// The resource type as the PEP named it.
    pub resource_type: String,
    /// The resource id.
    pub resource_id: String,
    /// The reason code.
    pub reason: Reason,
    /// For people.
    pub error: String,
}

impl Refused {
    /// What the record says it was about.
    pub fn target(&self) -> Target<'_> {
        Target {
            subject: &self.subject,
            action: &self.action,
            resource_type: &self.resource_type,
            resource_id: &self.resource_id,
        }
    }
}

/// The question `evaluation` asks, from the enforcement point `caller`.
pub fn question(
    caller: &SpiffeId,
    evaluation: Evaluation,
    types: &TypeMap,
    min_revision: u64,
) -> Result<decision::Request, Box<Refused>> {
    let Evaluation {
        subject,
        action,
        resource,
        context,
    } = evaluation;
    let refuse = |reason: Reason, error: String| {
        Box::new(Refused {
            subject: format!("{}:{}", subject.kind, subject.id),
            action: action.name.clone(),
            resource_type: resource.kind.clone(),
            resource_id: resource.id.clone(),
            reason,
            error,
        })
    };
    let mut described = Vec::new();
    let (on_behalf_of, token) = if WORKLOAD_TYPES.contains(&subject.kind.as_str()) {
        let (workload, token) = workload(&subject).map_err(|(r, e)| refuse(r, e))?;
        (Subject::Workload(workload), token)
    } else {
        let Some(type_name) = types.subjects.get(&subject.kind) else {
            return Err(refuse(
                Reason::UnknownSubjectType,
                format!(
                    "subject type `{}` is neither `agent`, `workload` nor in `authzen.subject_types`",
                    subject.kind
                ),
            ));
        };
        let uid = uid(type_name.clone(), &subject.id);
        if let Some(entity) =
            describe(&uid, subject.properties.as_ref()).map_err(|e| refuse(e.0, e.1))?
        {
            described.push(entity);
        }
        (Subject::Entity(uid), None)
    };
    let resource_type = match types.resources.get(&resource.kind) {
        Some(name) => name.to_string(),
        None => resource.kind.clone(),
    };
    // A type that does not parse is denied by the evaluator as unknown.
    if let Ok(type_name) = EntityTypeName::from_str(&resource_type) {
        let uid = uid(type_name, &resource.id);
        if let Some(entity) =
            describe(&uid, resource.properties.as_ref()).map_err(|e| refuse(e.0, e.1))?
        {
            described.push(entity);
        }
    }
    let fields = context.unwrap_or_default();
    let wire_bytes = if fields.is_empty() {
        0
    } else {
        serde_json::to_vec(&fields).map_or(usize::MAX, |v| v.len())
    };
    Ok(decision::Request {
        on_behalf_of: Some(on_behalf_of),
        token,
        min_revision,
        context: CallerContext { fields, wire_bytes },
        door: DoorContext {
            described,
            ..DoorContext::default()
        },
        ..decision::Request::new(
            Caller {
                spiffe_id: caller.clone(),
                thumbprint: None,
            },
            types.action(&action.name).to_owned(),
            decision::Resource {
                type_name: resource_type,
                id: resource.id,
            },
        )
    })
}

/// A workload subject by SPIFFE ID, and the task token its properties
/// carry.
fn workload(subject: &wire::Entity) -> Result<(OnBehalfOf, Option<String>), (Reason, String)> {
    let id = SpiffeId::new(&subject.id)
        .ok()
        .filter(|id| !id.path().is_empty())
        .ok_or_else(|| {
            (
                Reason::UnknownSubjectType,
                format!(
                    "a `{}` subject's id must be the SPIFFE ID of a workload, not `{}`",
                    subject.kind, subject.id
                ),
            )
        })?;
    let property = |name: &str| match subject.properties.as_ref().and_then(|p| p.get(name)) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err((
            Reason::InvalidProperties,
            format!("`subject.properties.{name}` must be a string"),
        )),
    };
    let token = property(TOKEN_PROPERTY)?;
    let certificate_pem = property(CERTIFICATE_PROPERTY)?;
    Ok((
        OnBehalfOf {
            spiffe_id: id,
            certificate_pem,
            forwarded_thumbprint: None,
        },
        token,
    ))
}

fn uid(type_name: EntityTypeName, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(type_name, EntityId::new(id))
}

/// The entity `properties` describe, for a type outside Mandate's own
/// namespace; `None` without properties or for a `Mandate::` type.
fn describe(
    uid: &EntityUid,
    properties: Option<&Map<String, Value>>,
) -> Result<Option<Entity>, (Reason, String)> {
    let Some(properties) = properties.filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    // INVARIANT: Mandate's own entities (resources with their
    // sensitivity, users, groups) come only from the registry.
    if uid.type_name().namespace() == NAMESPACE {
        return Ok(None);
    }
    let json = serde_json::json!({
        "uid": {"type": uid.type_name().to_string(), "id": uid.id().unescaped()},
        "attrs": properties,
        "parents": [],
    });
    Entity::from_json_value(json, None).map(Some).map_err(|e| {
        (
            Reason::InvalidProperties,
            format!("the properties of `{uid}` are not Cedar attributes: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn types() -> TypeMap {
        TypeMap {
            subjects: BTreeMap::from([
                ("user".to_owned(), "Mandate::User".parse().unwrap()),
                ("person".to_owned(), "Todo::User".parse().unwrap()),
            ]),
            resources: BTreeMap::from([("todo".to_owned(), "Todo::Todo".parse().unwrap())]),
            actions: BTreeMap::from([("delete".to_owned(), "delete_todo".to_owned())]),
        }
    }

    fn evaluation(subject: Value, resource: Value) -> Evaluation {
        serde_json::from_value(serde_json::json!({
            "subject": subject,
            "action": {"name": "read"},
            "resource": resource,
        }))
        .unwrap()
    }

    fn pep() -> SpiffeId {
        SpiffeId::new("spiffe://mandate.local/workloads/pep").unwrap()
    }

    #[test]
    fn actions_map_both_ways() {
        let types = types();
        assert_eq!(types.action("delete"), "delete_todo");
        assert_eq!(types.action("read"), "read");
        assert_eq!(types.action_name("delete_todo"), Some("delete"));
        assert_eq!(types.action_name("delete"), None);
        assert_eq!(types.action_name("read"), Some("read"));
    }

    #[test]
    fn workloads_bring_their_token_and_certificate() {
        let asked = question(
            &pep(),
            evaluation(
                serde_json::json!({"type": "agent", "id": "spiffe://mandate.local/agents/a",
                    "properties": {"token": "t", "certificate_pem": "pem"}}),
                serde_json::json!({"type": "Mandate::Resource", "id": "r"}),
            ),
            &types(),
            7,
        )
        .unwrap();
        assert_eq!(asked.token.as_deref(), Some("t"));
        assert_eq!(asked.min_revision, 7);
        match asked.on_behalf_of {
            Some(Subject::Workload(w)) => {
                assert_eq!(w.spiffe_id.path(), "/agents/a");
                assert_eq!(w.certificate_pem.as_deref(), Some("pem"));
            }
            other => panic!("{other:?}"),
        }
        let bad = question(
            &pep(),
            evaluation(
                serde_json::json!({"type": "workload", "id": "spiffe://mandate.local"}),
                serde_json::json!({"type": "Mandate::Resource", "id": "r"}),
            ),
            &types(),
            0,
        )
        .unwrap_err();
        assert_eq!(bad.reason, Reason::UnknownSubjectType);
    }

    #[test]
    fn types_map_and_properties_describe_only_user_schema_entities() {
        let asked = question(
            &pep(),
            evaluation(
                serde_json::json!({"type": "person", "id": "rick", "properties": {"email": "r@x"}}),
                serde_json::json!({"type": "todo", "id": "1", "properties": {"ownerID": "r@x"}}),
            ),
            &types(),
            0,
        )
        .unwrap();
        assert_eq!(asked.resource.type_name, "Todo::Todo");
        assert_eq!(asked.subject_name(), r#"Todo::User::"rick""#);
        assert_eq!(asked.door.described.len(), 2);
        let mandate = question(
            &pep(),
            evaluation(
                serde_json::json!({"type": "user", "id": "alice", "properties": {"x": 1}}),
                serde_json::json!({"type": "Mandate::Resource", "id": "r", "properties": {"sensitivity": 0}}),
            ),
            &types(),
            0,
        )
        .unwrap();
        assert!(mandate.door.described.is_empty());
        let unknown = question(
            &pep(),
            evaluation(
                serde_json::json!({"type": "robot", "id": "r2"}),
                serde_json::json!({"type": "todo", "id": "1"}),
            ),
            &types(),
            0,
        )
        .unwrap_err();
        assert_eq!(unknown.reason, Reason::UnknownSubjectType);
        let null = question(
            &pep(),
            evaluation(
                serde_json::json!({"type": "person", "id": "rick", "properties": {"email": null}}),
                serde_json::json!({"type": "todo", "id": "1"}),
            ),
            &types(),
            0,
        )
        .unwrap_err();
        assert_eq!(null.reason, Reason::InvalidProperties);
    }
}
