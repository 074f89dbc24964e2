//! Policies an approval lifts: `forbid`s annotated
//! `@mandate_outcome("needs_approval")`. When they are the only reason for a
//! deny, the answer is "needs approval" instead of a bare deny.

use std::collections::{HashMap, HashSet};

use cedar_policy::{Effect, PolicyId, PolicySet};

use super::load::PolicySource;
use super::{PolicyError, Problem};

/// The annotation's name.
pub const APPROVAL_ANNOTATION: &str = "mandate_outcome";
/// Its only value.
pub const NEEDS_APPROVAL: &str = "needs_approval";

/// The ids of the annotated forbids, and the set without them. An
/// annotation on a `permit`, or with another value, refuses the set.
pub(super) fn split(
    policies: &PolicySet,
    sources: &HashMap<PolicyId, PolicySource>,
) -> Result<(HashSet<PolicyId>, PolicySet), PolicyError> {
    let mut lifted = HashSet::new();
    let mut rest = PolicySet::new();
    let mut problems = Vec::new();
    for policy in policies.policies() {
        let problem = |message: String| {
            let source = sources.get(policy.id());
            Problem {
                excerpt: None,
                file: source.map(|s| s.file.clone()).unwrap_or_default(),
                location: source.map(|s| (s.line, 1)),
                message,
            }
        };
        match policy.annotation(APPROVAL_ANNOTATION) {
            None => {
                if let Err(e) = rest.add(policy.clone()) {
                    problems.push(problem(e.to_string()));
                }
            }
            Some(NEEDS_APPROVAL) if policy.effect() == Effect::Forbid => {
                lifted.insert(policy.id().clone());
            }
            Some(NEEDS_APPROVAL) => problems.push(problem(format!(
                "policy `{}`: `@{APPROVAL_ANNOTATION}(\"{NEEDS_APPROVAL}\")` only applies to a `forbid`: an approval lifts a forbid, it never grants",
                policy.id()
            ))),
            Some(other) => problems.push(problem(format!(
                "policy `{}`: `@{APPROVAL_ANNOTATION}(\"{other}\")` is not known; the only value is `{NEEDS_APPROVAL}`",
                policy.id()
            ))),
        }
    }
    if problems.is_empty() {
        Ok((lifted, rest))
    } else {
        Err(PolicyError::Invalid { problems })
    }
}
