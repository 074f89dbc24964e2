//! The classifier: scores the flaw with the CVSS tool and classifies the
//! data it exposes. Its task is revoked halfway; it does not know, and
//! its next call is denied.

use std::collections::BTreeMap;

use crate::agent::{Agent, Role, unknown_step};
use crate::protocol::Command;
use crate::{ADVISORY, CLASSIFIER_TOOL};

/// The classifier's prompt and tools.
pub const ROLE: Role = Role {
    name: "classifier",
    prompt: "You score a vulnerability with the CVSS classifier and say how \
             sensitive the data it exposes is.",
    tools: r#"[{"name": "read_advisory"}, {"name": "cvss_classifier"}]"#,
};

/// `score` (take the task, read the advisory, run the classifier) and
/// `classify-data` (run it again on the data the flaw exposes).
pub async fn step(
    agent: &mut Agent,
    command: &Command,
) -> Result<BTreeMap<String, String>, String> {
    match command.step.as_str() {
        "score" => {
            agent.take(&command.task).await?;
            agent.call("read", ADVISORY, "read the vector").await?;
            agent
                .call("invoke", CLASSIFIER_TOOL, "score the flaw")
                .await?;
        }
        "classify-data" => {
            agent
                .call("invoke", CLASSIFIER_TOOL, "classify the exposed data")
                .await?;
        }
        _ => return Err(unknown_step(&ROLE, command)),
    }
    Ok(BTreeMap::new())
}
