//! Which policies read the execution history (`context.history`,
//! `context.history_root`): a decision of an action none of its policies
//! reads it for goes without it, so it stays cacheable and never waits on
//! the task's ledger.

use cedar_policy::Policy;

/// The context keys of the histories.
pub const HISTORY_KEYS: [&str; 2] = ["history", "history_root"];

/// Whether `policy` may read the history: it names `history` or
/// `history_root` on the context, or uses the context whole (which would
/// see them too). A policy that cannot be told as JSON is taken to read it.
pub fn reads_history(policy: &Policy) -> bool {
    policy.to_json().map_or(true, |json| reads(&json))
}

fn reads(value: &serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            for op in [".", "has"] {
                if let Some(Value::Object(access)) = map.get(op)
                    && access.get("left").is_some_and(is_context)
                {
                    return access
                        .get("attr")
                        .and_then(Value::as_str)
                        .is_some_and(|attr| HISTORY_KEYS.contains(&attr));
                }
            }
            // Reached only when the context is not read by attribute.
            is_context(value) || map.values().any(reads)
        }
        Value::Array(items) => items.iter().any(reads),
        _ => false,
    }
}

fn is_context(value: &serde_json::Value) -> bool {
    value.get("Var").and_then(serde_json::Value::as_str) == Some("context")
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn reads_text(text: &str) -> bool {
        reads_history(&Policy::from_str(text).unwrap())
    }

    #[test]
    fn policies_that_name_the_history_read_it() {
        assert!(reads_text(
            "permit(principal, action, resource) when { context.history.denials > 3 };"
        ));
        assert!(reads_text(
            r#"forbid(principal, action, resource) when { context has history_root && context["history_root"].hasTag("read") };"#
        ));
        // The context whole holds the history too.
        assert!(reads_text(
            "permit(principal, action, resource) when { context == {} };"
        ));
    }

    #[test]
    fn policies_that_read_other_keys_do_not() {
        assert!(!reads_text(
            r#"permit(principal, action, resource) when { context has purpose && context.purpose == "history" };"#
        ));
        assert!(!reads_text(
            "permit(principal, action, resource) when { context.http.method == \"GET\" };"
        ));
        assert!(!reads_text("permit(principal, action, resource);"));
    }
}
