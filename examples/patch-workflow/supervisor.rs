//! The supervisor: takes the human's task, triages the advisory, and hands
//! each part of the work to the agent for it, each with a narrower task.
//! It stays the delegator of those tasks, so it may revoke them.

use std::collections::BTreeMap;

use crate::agent::{Agent, Role, Scope, unknown_step};
use crate::protocol::Command;
use crate::{ADVISORY, CLASSIFIER_TOOL, REPO};

/// The supervisor's prompt and tools.
pub const ROLE: Role = Role {
    name: "supervisor",
    prompt: "You coordinate the patching of a vulnerability. Read the advisory, \
             then delegate: the planner finds the code and plans the fix, the \
             classifier scores the flaw, the patcher writes and pushes the fix. \
             Never do their work yourself.",
    tools: r#"[{"name": "read_advisory"}, {"name": "delegate"}, {"name": "revoke"}, {"name": "complete"}]"#,
};

/// `start` (take the root task, triage, delegate; answers the sub-tasks'
/// ids by role), `revoke` (a task it delegated), `finish`.
pub async fn step(
    agent: &mut Agent,
    command: &Command,
) -> Result<BTreeMap<String, String>, String> {
    let mut result = BTreeMap::new();
    match command.step.as_str() {
        "start" => {
            agent.take(&command.task).await?;
            agent.call("read", ADVISORY, "triage the advisory").await?;
            let planner = Scope {
                actions: &["read"],
                resources: &[ADVISORY, REPO],
                max_sensitivity: 1,
            };
            let classifier = Scope {
                actions: &["read", "invoke"],
                resources: &[ADVISORY, CLASSIFIER_TOOL],
                max_sensitivity: 1,
            };
            let patcher = Scope {
                actions: &["read", "write"],
                resources: &[REPO],
                max_sensitivity: 1,
            };
            let planned = agent
                .delegate(
                    "planner",
                    "find the vulnerable code and plan the fix",
                    &planner,
                )
                .await?;
            let scored = agent
                .delegate(
                    "classifier",
                    "score the flaw and the data it exposes",
                    &classifier,
                )
                .await?;
            let patched = agent
                .delegate("patcher", "write the fix on a branch and push it", &patcher)
                .await?;
            result.insert("planner".to_owned(), planned);
            result.insert("classifier".to_owned(), scored);
            result.insert("patcher".to_owned(), patched);
        }
        "revoke" => {
            agent
                .revoke(
                    &command.task,
                    "the advisory was re-scored upstream; this classification is stale",
                )
                .await?;
        }
        "finish" => agent.complete().await?,
        _ => return Err(unknown_step(&ROLE, command)),
    }
    Ok(result)
}
