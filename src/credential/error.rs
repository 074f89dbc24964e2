//! Errors of the credential boundary.

use std::path::PathBuf;

/// Keys could not be loaded, created or used.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum CredentialError {
    /// A key file could not be read or written.
    #[error("key file `{path}`: {message}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Key generation or signing failed.
    #[error("signing: {0}")]
    Signing(String),
}

/// Why a task token is refused. Each maps to a reason code
/// (`crate::decision::Reason`'s `From<&TokenError>`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a compact JWS we can read, or too large.
    #[error("token is malformed: {0}")]
    Malformed(String),
    /// `typ` is not `mandate-task+jwt`.
    #[error("token type is `{0}`, not `mandate-task+jwt`")]
    WrongType(String),
    /// The algorithm is not EdDSA (this includes `none`).
    #[error("token algorithm is not EdDSA")]
    WrongAlgorithm,
    /// The `kid` names no key we verify with (unknown or retired).
    #[error("token key `{0}` is unknown or retired")]
    UnknownKey(String),
    /// The signature does not verify.
    #[error("token signature does not verify")]
    BadSignature,
    /// Past `exp` (beyond the leeway).
    #[error("token expired at {0}")]
    Expired(i64),
    /// Before `nbf` (beyond the leeway).
    #[error("token is not valid before {0}")]
    NotYetValid(i64),
    /// `aud` is not ours.
    #[error("token audience is not `{0}`")]
    WrongAudience(String),
    /// `sub` is not the subject of this call.
    #[error("token was issued to `{token}`, not `{subject}`")]
    SubjectMismatch {
        /// `sub` of the token.
        token: String,
        /// The authenticated subject.
        subject: String,
    },
    /// `cnf` does not match the certificate of this call.
    #[error("token is bound to another certificate than the one presented")]
    NotBound,
}
