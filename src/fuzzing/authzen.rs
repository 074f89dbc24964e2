//! An AuthZEN request body from arbitrary bytes, parsed as both endpoints
//! parse it and each evaluation mapped to a decision request, as the door
//! does. Never a panic; what is accepted has every required field, maps
//! to what it named, and a refusal says why.

use std::collections::BTreeMap;

use spiffe::SpiffeId;

use super::{Outcome, SUBJECT, ensure};
use crate::api::authzen::mapping::question;
use crate::api::authzen::wire::{self, Asked, Evaluation};
use crate::api::authzen::{TypeMap, WORKLOAD_TYPES};
use crate::decision::{Reason, Subject};

/// The caller of every mapped evaluation: an enforcement point.
const CALLER: &str = "spiffe://mandate.local/workloads/envoy";

/// Checks `data` as an evaluation and as an evaluations request.
pub fn check_authzen_request(data: &[u8]) -> Result<Outcome, String> {
    let types = TypeMap {
        subjects: BTreeMap::from([(
            "user".to_owned(),
            "Mandate::User".parse().map_err(|e| format!("{e}"))?,
        )]),
        resources: BTreeMap::from([(
            "todo".to_owned(),
            "Todo::Todo".parse().map_err(|e| format!("{e}"))?,
        )]),
        actions: BTreeMap::new(),
    };
    let caller = SpiffeId::new(CALLER).map_err(|e| e.to_string())?;
    let one = wire::evaluation(data);
    let many = wire::evaluations(data);
    // What the single endpoint takes, the list endpoint takes as one.
    if let Ok(evaluation) = &one {
        ensure(
            matches!(&many, Ok(Asked::One(e)) if **e == *evaluation),
            || format!("an evaluation is not one evaluation of the list endpoint: {many:?}"),
        )?;
    }
    let list = match many {
        Ok(Asked::One(evaluation)) => vec![*evaluation],
        Ok(Asked::Many(list, _)) => {
            ensure(!list.is_empty(), || "an empty list accepted".to_owned())?;
            list
        }
        Err(error) => {
            if let Err(other) = one {
                Outcome::refused(other.0)?;
            }
            return Outcome::refused(error.0);
        }
    };
    for evaluation in list {
        check_mapping(&caller, evaluation, &types)?;
    }
    Ok(Outcome::Accepted)
}

/// A mapped evaluation asks what it named; one that is refused says why.
fn check_mapping(caller: &SpiffeId, evaluation: Evaluation, types: &TypeMap) -> Result<(), String> {
    for (field, value) in [
        ("subject.type", &evaluation.subject.kind),
        ("subject.id", &evaluation.subject.id),
        ("action.name", &evaluation.action.name),
        ("resource.type", &evaluation.resource.kind),
        ("resource.id", &evaluation.resource.id),
    ] {
        ensure(!value.is_empty(), || format!("an empty `{field}` accepted"))?;
    }
    let workload = WORKLOAD_TYPES.contains(&evaluation.subject.kind.as_str());
    let (action, resource_id) = (
        evaluation.action.name.clone(),
        evaluation.resource.id.clone(),
    );
    match question(caller, evaluation, types, 0) {
        Ok(request) => {
            ensure(
                request.action == action && request.resource.id == resource_id,
                || format!("mapped to another question: {request:?}"),
            )?;
            ensure(&request.caller.spiffe_id == caller, || {
                "mapped to another caller".to_owned()
            })?;
            match &request.on_behalf_of {
                Some(Subject::Workload(subject)) => ensure(workload, || {
                    format!("`{}` mapped to a workload", subject.spiffe_id)
                }),
                Some(Subject::Entity(uid)) => {
                    ensure(!workload && request.token.is_none(), || {
                        format!("`{uid}` mapped to an entity with a token")
                    })?;
                    // Mandate's own entities come only from the registry.
                    ensure(
                        request
                            .door
                            .described
                            .iter()
                            .all(|e| e.uid().type_name().namespace() != "Mandate"),
                        || "a Mandate:: entity described by the caller".to_owned(),
                    )
                }
                None => Err("mapped without a subject".to_owned()),
            }
        }
        Err(refused) => {
            ensure(
                matches!(
                    refused.reason,
                    Reason::UnknownSubjectType | Reason::InvalidProperties
                ) && !refused.error.trim().is_empty(),
                || format!("refused with {:?}: `{}`", refused.reason, refused.error),
            )?;
            // The fixture subject, forwarded as a workload, always maps.
            ensure(
                !(workload
                    && refused.subject.ends_with(SUBJECT)
                    && refused.reason == Reason::UnknownSubjectType),
                || format!("`{SUBJECT}` refused as a workload"),
            )
        }
    }
}
