//! Why a write to the task graph was refused.

/// A refused write, with a machine-readable reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    /// No task has this id.
    #[error("task `{0}` does not exist")]
    NotFound(String),
    /// An invariant of DESIGN §3 would be broken.
    #[error("{message}")]
    Violation {
        /// Reason code, such as `widens-actions`.
        reason: &'static str,
        /// What exactly, for a human.
        message: String,
    },
    /// The task is not in a state that allows this.
    #[error("task `{id}` is {state}")]
    NotActive {
        /// The task.
        id: String,
        /// Its state.
        state: &'static str,
    },
    /// The request itself is malformed.
    #[error("{0}")]
    Invalid(String),
}

impl GraphError {
    pub(super) fn violation(reason: &'static str, message: impl Into<String>) -> Self {
        Self::Violation {
            reason,
            message: message.into(),
        }
    }

    /// The reason code, for API responses.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "unknown-task",
            Self::Violation { reason, .. } => reason,
            Self::NotActive { .. } => "task-not-active",
            Self::Invalid(_) => "invalid-task",
        }
    }
}
