//! An approval as Cedar sees it: `Mandate::Approval`, built from live state.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use cedar_policy::{Entity, EntityId, EntityTypeName, EntityUid, RestrictedExpression};

use super::Approval;

/// The Cedar type of approvals.
pub const APPROVAL_TYPE: &str = "Mandate::Approval";

/// The entity of `approval`, whose task's chain starts with a task whose
/// originator is `originator`.
pub fn approval_entity(approval: &Approval, originator: &str) -> Result<Entity, String> {
    let type_name = |name: &str| EntityTypeName::from_str(name).map_err(|e| e.to_string());
    let uid =
        EntityUid::from_type_name_and_id(type_name(APPROVAL_TYPE)?, EntityId::new(&approval.id));
    let task = EntityUid::from_type_name_and_id(
        type_name("Mandate::Task")?,
        EntityId::new(&approval.subject.task_id),
    );
    let string = |s: &str| RestrictedExpression::new_string(s.to_owned());
    let attrs = HashMap::from([
        (
            "task".to_owned(),
            RestrictedExpression::new_entity_uid(task),
        ),
        ("action".to_owned(), string(&approval.subject.action)),
        (
            "resource_type".to_owned(),
            string(&approval.subject.resource_type),
        ),
        (
            "resource_id".to_owned(),
            string(&approval.subject.resource_id),
        ),
        ("requested_by".to_owned(), string(&approval.requested_by)),
        (
            "originator".to_owned(),
            RestrictedExpression::new_entity_uid(EntityUid::from_type_name_and_id(
                type_name("Mandate::User")?,
                EntityId::new(originator),
            )),
        ),
        ("state".to_owned(), string(approval.state.as_str())),
    ]);
    Entity::new(uid, attrs, HashSet::new()).map_err(|e| e.to_string())
}
