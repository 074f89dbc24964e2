//! The one place where API errors become gRPC statuses. A policy deny is a
//! normal response and never passes through here.

use tonic::Status;

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
}

impl From<crate::graph::GraphError> for ApiError {
    fn from(error: crate::graph::GraphError) -> Self {
        use crate::graph::GraphError;
        let message = format!("{}: {error}", error.reason());
        match error {
            GraphError::NotFound(_) => Self::NotFound(message),
            GraphError::Violation { .. } => Self::PermissionDenied(message),
            GraphError::NotActive { .. } => Self::FailedPrecondition(message),
            GraphError::Invalid(_) => Self::InvalidArgument(message),
        }
    }
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Self {
        match error {
            ApiError::InvalidArgument(message) => Status::invalid_argument(message),
            ApiError::Unauthenticated(message) => Status::unauthenticated(message),
            ApiError::PermissionDenied(message) => Status::permission_denied(message),
            ApiError::NotFound(message) => Status::not_found(message),
            ApiError::FailedPrecondition(message) => Status::failed_precondition(message),
            ApiError::AlreadyExists(message) => Status::already_exists(message),
            ApiError::Unavailable(message) => Status::unavailable(message),
            ApiError::Internal(message) => {
                tracing::error!(error = %message, "internal error");
                Status::internal("internal error")
            }
        }
    }
}

impl From<crate::approval::ApprovalError> for ApiError {
    fn from(error: crate::approval::ApprovalError) -> Self {
        use crate::approval::ApprovalError;
        let message = error.to_string();
        match error {
            ApprovalError::NotFound(_) => Self::NotFound(message),
            ApprovalError::NotPending { .. }
            | ApprovalError::AlreadyRevoked(_)
            | ApprovalError::TaskChanged(_)
            | ApprovalError::TooManyPending(_) => Self::FailedPrecondition(message),
            ApprovalError::Invalid(_) => Self::InvalidArgument(message),
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(error: crate::store::StoreError) -> Self {
        tracing::warn!(error = %error, "write refused: the store failed");
        // Memory never holds what the store has not committed. When a
        // commit's answer was lost the write may have landed all the same;
        // memory then catches up before the next write, so a retry is
        // judged against it (revoking a revoked task is a no-op).
        Self::Unavailable(format!("store-unavailable: {error}"))
    }
}
