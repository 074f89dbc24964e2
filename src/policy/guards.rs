//! Built-in guards (DESIGN §3.7): the task invariants Cedar can express,
//! compiled in as `forbid` policies with ids under `mandate.guard.`. They
//! are evaluated with the user's policies, so a decision they cause names
//! them, and editing `policies/` cannot remove them.

use cedar_policy::{Policy, PolicyId};

/// Prefix of every built-in policy id; reserved, user policies cannot use it.
pub const RESERVED_PREFIX: &str = "mandate.";

/// Actions that manage Mandate itself rather than operate on resources.
const CONTROL_ACTIONS: &[&str] = &[
    "delegate",
    "issue_token",
    "approve",
    "request_approval",
    "read_approval",
    "revoke",
    "complete",
    "check",
    "register",
    "update",
    "remove",
    "inspect",
    "read_policies",
    "validate_policies",
    "reload_policies",
    "query_decisions",
    "read_trail",
];

/// The resource operations among the schema's actions, sorted.
pub(super) fn resource_operations<'a>(actions: impl Iterator<Item = &'a String>) -> Vec<String> {
    let mut ops: Vec<String> = actions
        .filter(|a| !CONTROL_ACTIONS.contains(&a.as_str()))
        .cloned()
        .collect();
    ops.sort();
    ops
}

fn action_list(ops: &[String]) -> String {
    ops.iter()
        .map(|a| format!("Mandate::Action::{a:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The guard texts, by id, for these resource operations.
pub(super) fn texts(ops: &[String], unknown_sensitivity: i64) -> Vec<(String, String)> {
    if ops.is_empty() {
        return Vec::new();
    }
    let all = action_list(ops);
    let mut guards = vec![
        (
            "mandate.guard.task-not-active".to_owned(),
            format!(
                "forbid (principal, action in [{all}], resource)\n\
                 when {{ context has task && context.task.state != \"active\" }};"
            ),
        ),
        (
            "mandate.guard.delegatee-not-principal".to_owned(),
            format!(
                "forbid (principal, action in [{all}], resource)\n\
                 when {{ context has task && context.task.delegatee != principal.spiffe_id }};"
            ),
        ),
        // Any other resource type is outside every task's scope, whatever
        // a user schema adds.
        (
            "mandate.guard.resource-outside-scope".to_owned(),
            format!(
                "forbid (principal, action in [{all}], resource)\n\
                 when {{ context has task &&\n  \
                 !(resource is Mandate::Resource && resource in context.task.scope) }};"
            ),
        ),
        // A resource without a recorded sensitivity counts as the highest
        // level of the scale.
        (
            "mandate.guard.sensitivity-above-max".to_owned(),
            format!(
                "forbid (principal, action in [{all}], resource is Mandate::Resource)\n\
                 when {{ context has task &&\n  \
                 (if resource has sensitivity then resource.sensitivity else {unknown_sensitivity}) > context.task.max_sensitivity }};"
            ),
        ),
    ];
    // One guard per action: Cedar cannot turn an action into a string.
    for op in ops {
        guards.push((
            format!("mandate.guard.action-not-in-task.{op}"),
            format!(
                "forbid (principal, action == Mandate::Action::{op:?}, resource)\n\
                 when {{ context has task && !context.task.actions.contains({op:?}) }};"
            ),
        ));
    }
    guards
}

/// Parses the guards.
pub(super) fn policies(ops: &[String], unknown_sensitivity: i64) -> Result<Vec<Policy>, String> {
    texts(ops, unknown_sensitivity)
        .into_iter()
        .map(|(id, text)| {
            Policy::parse(Some(PolicyId::new(&id)), &text)
                .map_err(|e| format!("built-in guard `{id}` does not parse: {e}"))
        })
        .collect()
}
