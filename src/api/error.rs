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
    /// Anything unexpected; logged, and returned without internals.
    #[error("{0}")]
    Internal(String),
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Self {
        match error {
            ApiError::InvalidArgument(message) => Status::invalid_argument(message),
            ApiError::Unauthenticated(message) => Status::unauthenticated(message),
            ApiError::Internal(message) => {
                tracing::error!(error = %message, "internal error");
                Status::internal("internal error")
            }
        }
    }
}
