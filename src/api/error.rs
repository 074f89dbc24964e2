//! The one place where API errors become gRPC statuses. A policy deny is a
//! normal response and never passes through here. Every status carries a
//! `google.rpc.ErrorInfo` whose `reason` is a stable code (domain
//! `mandate`), so clients match on it instead of parsing messages.

use std::collections::HashMap;
use std::sync::Arc;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::graph::{Task, TaskState, chain_state};

/// The `ErrorInfo` domain of Mandate's reasons.
pub const ERROR_DOMAIN: &str = "mandate";

/// Why an API call failed before a decision could be made.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed; the message says which field.
    #[error("{0}")]
    InvalidArgument(String),
    /// The caller has no verified SVID on this connection.
    #[error("{0}")]
    Unauthenticated(String),
    /// Policy or an invariant refuses the call.
    #[error("{0}")]
    PermissionDenied(String),
    /// A named thing does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The thing to create exists already.
    #[error("{0}")]
    AlreadyExists(String),
    /// The thing is not in a state that allows the call.
    #[error("{0}")]
    FailedPrecondition(String),
    /// Anything unexpected; logged, and returned without internals.
    #[error("{0}")]
    Internal(String),
    /// The store is down or this replica is behind it: try again.
    #[error("{0}")]
    Unavailable(String),
    /// A refusal with its own reason code; the message starts with it.
    #[error("{reason}: {message}")]
    Refused {
        /// The gRPC code.
        code: Code,
        /// The reason code (`no-permit`, `not-delegatee`, ...).
        reason: &'static str,
        /// What went wrong, for a human.
        message: String,
    },
}

impl ApiError {
    /// A refusal for `reason`.
    pub fn refused(code: Code, reason: &'static str, message: impl Into<String>) -> Self {
        Self::Refused {
            code,
            reason,
            message: message.into(),
        }
    }

    /// `task-not-active` unless `chain` (the task first) is active at
    /// `now`: what ended can get no token, approval or decision of one.
    pub fn unless_active(chain: &[Arc<Task>], now: i64) -> Result<(), Self> {
        let state = chain_state(chain, now);
        match chain.first() {
            Some(_) if state == TaskState::Active => Ok(()),
            task => Err(Self::refused(
                Code::FailedPrecondition,
                "task-not-active",
                format!(
                    "task `{}` is {}",
                    task.map_or("", |t| &*t.id),
                    state.as_str()
                ),
            )),
        }
    }

    /// The stable reason code of this error.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidArgument(_) => "invalid-argument",
            Self::Unauthenticated(_) => "unauthenticated",
            Self::PermissionDenied(_) => "permission-denied",
            Self::NotFound(_) => "not-found",
            Self::AlreadyExists(_) => "already-exists",
            Self::FailedPrecondition(_) => "failed-precondition",
            Self::Internal(_) => "internal-error",
            Self::Unavailable(_) => "unavailable",
            Self::Refused { reason, .. } => reason,
        }
    }

    /// The gRPC code of this error.
    pub fn code(&self) -> Code {
        match self {
            Self::InvalidArgument(_) => Code::InvalidArgument,
            Self::Unauthenticated(_) => Code::Unauthenticated,
            Self::PermissionDenied(_) => Code::PermissionDenied,
            Self::NotFound(_) => Code::NotFound,
            Self::AlreadyExists(_) => Code::AlreadyExists,
            Self::FailedPrecondition(_) => Code::FailedPrecondition,
            Self::Internal(_) => Code::Internal,
            Self::Unavailable(_) => Code::Unavailable,
            Self::Refused { code, .. } => *code,
        }
    }

    /// This error with `prefix` put before its message (which request of
    /// a batch it is about, say).
    pub fn in_context(self, prefix: &str) -> Self {
        let (code, reason) = (self.code(), self.reason());
        match self {
            Self::Internal(message) => Self::Internal(message),
            Self::Refused { message, .. } => Self::Refused {
                code,
                reason,
                message: format!("{prefix}: {message}"),
            },
            other => Self::Refused {
                code,
                reason,
                message: format!("{prefix}: {other}"),
            },
        }
    }
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Self {
        let (code, reason) = (error.code(), error.reason());
        let message = match error {
            ApiError::Internal(message) => {
                tracing::error!(error = %message, "internal error");
                "internal error".to_owned()
            }
            other => other.to_string(),
        };
        let details = ErrorDetails::with_error_info(reason, ERROR_DOMAIN, HashMap::new());
        Status::with_error_details(code, message, details)
    }
}

impl From<crate::graph::GraphError> for ApiError {
    fn from(error: crate::graph::GraphError) -> Self {
        use crate::graph::GraphError;
        let code = match error {
            GraphError::NotFound(_) => Code::NotFound,
            GraphError::Violation { .. } => Code::PermissionDenied,
            GraphError::NotActive { .. } => Code::FailedPrecondition,
            GraphError::Invalid(_) => Code::InvalidArgument,
        };
        Self::refused(code, error.reason(), error.to_string())
    }
}

impl From<crate::approval::ApprovalError> for ApiError {
    fn from(error: crate::approval::ApprovalError) -> Self {
        use crate::approval::ApprovalError;
        let code = match error {
            ApprovalError::NotFound(_) => Code::NotFound,
            ApprovalError::NotPending { .. }
            | ApprovalError::AlreadyRevoked(_)
            | ApprovalError::TaskChanged(_)
            | ApprovalError::TooManyPending(_) => Code::FailedPrecondition,
            ApprovalError::Invalid(_) => Code::InvalidArgument,
        };
        Self::refused(code, error.reason(), error.to_string())
    }
}

impl From<crate::registry::RegistryError> for ApiError {
    fn from(error: crate::registry::RegistryError) -> Self {
        use crate::registry::RegistryError;
        let code = match error {
            RegistryError::AlreadyExists { .. } => Code::AlreadyExists,
            RegistryError::NotFound { .. } => Code::NotFound,
            RegistryError::InUse { .. } | RegistryError::Static { .. } => Code::FailedPrecondition,
            RegistryError::Invalid(_) => Code::InvalidArgument,
        };
        Self::refused(code, error.reason(), error.to_string())
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(error: crate::store::StoreError) -> Self {
        tracing::warn!(error = %error, "write refused: the store failed");
        // Memory never holds what the store has not committed. When a
        // commit's answer was lost the write may have landed all the same;
        // memory then catches up before the next write, so a retry is
        // judged against it (revoking a revoked task is a no-op).
        Self::refused(Code::Unavailable, "store-unavailable", error.to_string())
    }
}
