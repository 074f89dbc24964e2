//! The patcher: writes the fix on its own branch (allowed by its task) and
//! pushes it to `main`, a protected branch: that needs a human's approval.

use std::collections::BTreeMap;

use crate::agent::{Agent, Role, unknown_step};
use crate::protocol::Command;
use crate::{FIX_BRANCH, MAIN_BRANCH, REPO};

/// The patcher's prompt and tools.
pub const ROLE: Role = Role {
    name: "patcher",
    prompt: "You fix a vulnerability following the plan: commit the change on \
             a fix branch, then push it to main.",
    tools: r#"[{"name": "git_read"}, {"name": "git_commit"}, {"name": "git_push"}]"#,
};

/// `fix` (take the task, read the code, commit on the fix branch) and
/// `push` (to `main`).
pub async fn step(
    agent: &mut Agent,
    command: &Command,
) -> Result<BTreeMap<String, String>, String> {
    match command.step.as_str() {
        "fix" => {
            agent.take(&command.task).await?;
            agent.call("read", REPO, "read the code to change").await?;
            agent.call("write", FIX_BRANCH, "commit the fix").await?;
        }
        "push" => {
            agent.call("write", MAIN_BRANCH, "push the fix").await?;
        }
        _ => return Err(unknown_step(&ROLE, command)),
    }
    Ok(BTreeMap::new())
}
