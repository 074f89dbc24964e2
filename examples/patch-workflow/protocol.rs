//! What the driver and an agent process say to each other, one JSON object
//! a line: the driver sends a [`Command`] on the agent's stdin, the agent
//! answers with [`Report`]s on its stdout, the last one `Done` or `Failed`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The next step of the workflow for one agent.
#[derive(Debug, Serialize, Deserialize)]
pub struct Command {
    /// The step's name, one the agent's module knows.
    pub step: String,
    /// A task to take on (the agent asks for its token), or to act on.
    #[serde(default)]
    pub task: String,
}

/// One call to Mandate and its answer, as the agent saw it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Call {
    /// What was asked, for people: `read advisory:CVE-2026-1234`.
    pub what: String,
    /// `ALLOW`, `DENY` or `NEEDS_APPROVAL` for `Authorize`; `OK` or
    /// `REFUSED` for the task API.
    pub outcome: String,
    /// The determining policies; or the refusal's message.
    pub why: Vec<String>,
    /// The reason codes (`Authorize` only).
    #[serde(default)]
    pub reasons: Vec<String>,
    /// The decision's id (`Authorize` only).
    #[serde(default)]
    pub decision_id: String,
    /// The approval to decide, with `NEEDS_APPROVAL`.
    #[serde(default)]
    pub approval_id: String,
    /// What the call produced: a task id, a token's `jti`.
    #[serde(default)]
    pub produced: String,
}

/// What an agent tells the driver.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "report", rename_all = "snake_case")]
pub enum Report {
    /// A call it made.
    Call(Call),
    /// The step is over; `result` holds what the driver needs next (the
    /// ids of delegated tasks, by role).
    Done {
        /// Named results.
        result: BTreeMap<String, String>,
    },
    /// The step could not be carried out (no connection, an error the
    /// story has no place for).
    Failed {
        /// Why.
        message: String,
    },
}
