//! Machine-readable reason codes carried by decisions. They are part of the
//! public API: clients and dashboards match on their spelling
//! ([`Reason::as_str`]), and each has a [`ReasonKind`] from which every door
//! derives how a refusal is answered (gRPC code, HTTP status, CLI exit
//! code).

use crate::credential::TokenError;

/// What kind of refusal a reason is: one place decides how each door
/// answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReasonKind {
    /// Policy, or an invariant, said no.
    Denied,
    /// The caller's credentials (its token, a forwarded identity) are
    /// missing or do not hold.
    Unauthenticated,
    /// The question is malformed or over a limit: asking again unchanged
    /// gets the same answer.
    InvalidRequest,
    /// This replica cannot decide now (behind, or out of contact with the
    /// store): asking again later may succeed.
    Unavailable,
    /// Mandate failed; a bug, answered as a deny.
    Internal,
}

impl ReasonKind {
    /// The gRPC status code of a refusal of this kind.
    pub fn grpc_code(self) -> tonic::Code {
        match self {
            Self::Denied => tonic::Code::PermissionDenied,
            Self::Unauthenticated => tonic::Code::Unauthenticated,
            Self::InvalidRequest => tonic::Code::InvalidArgument,
            Self::Unavailable => tonic::Code::Unavailable,
            Self::Internal => tonic::Code::Internal,
        }
    }

    /// The HTTP status an enforcement point answers a refusal of this
    /// kind with.
    pub fn http_status(self) -> u16 {
        match self {
            Self::Denied => 403,
            Self::Unauthenticated => 401,
            Self::InvalidRequest => 400,
            Self::Unavailable => 503,
            Self::Internal => 500,
        }
    }

    /// The exit code of a CLI command whose answer was a refusal of this
    /// kind (see [`crate::exit_code`]).
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Denied | Self::Unauthenticated => crate::exit_code::DENY,
            Self::InvalidRequest => crate::exit_code::USAGE,
            Self::Unavailable | Self::Internal => crate::exit_code::FAILURE,
        }
    }
}

/// Declares [`Reason`] with each variant's code and kind, and
/// [`Reason::ALL`], so a code cannot be added without both.
macro_rules! reasons {
    ($($(#[doc = $doc:literal])* $variant:ident = $code:literal, $kind:ident;)*) => {
        /// Why a decision came out as it did.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Reason {
            $($(#[doc = $doc])* $variant,)*
        }

        impl Reason {
            /// Every reason, in declaration order.
            pub const ALL: &'static [Reason] = &[$(Reason::$variant,)*];

            /// The stable code clients match on.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$variant => $code,)*
                }
            }

            /// How a refusal for this reason is answered.
            pub const fn kind(self) -> ReasonKind {
                match self {
                    $(Reason::$variant => ReasonKind::$kind,)*
                }
            }
        }
    };
}

reasons! {
    /// This replica is behind the `min_revision` the caller asked for and
    /// did not catch up within the configured wait.
    StaleState = "stale-state", Unavailable;
    /// This replica has lost contact with the store for longer than
    /// allowed: its state may be missing revocations, so it denies
    /// everything.
    StateUnavailable = "state-unavailable", Unavailable;
    /// No policy permits the request.
    NoPermit = "no-permit", Denied;
    /// A `forbid` policy matched.
    ForbiddenByPolicy = "forbidden-by-policy", Denied;
    /// The action is not declared in the schema.
    UnknownAction = "unknown-action", Denied;
    /// The resource type is not declared in the schema (or is not a type
    /// name).
    UnknownResourceType = "unknown-resource-type", Denied;
    /// The context does not fit the schema's context for the action.
    InvalidContext = "invalid-context", Denied;
    /// The principal or resource type does not apply to the action.
    InvalidRequest = "invalid-request", Denied;
    /// A policy could not be evaluated; Mandate denies rather than skip it.
    EvaluationError = "evaluation-error", Denied;
    /// The caller asked on behalf of a subject but may not act as an
    /// enforcement point (action `check`).
    NotAnEnforcementPoint = "not-an-enforcement-point", Denied;
    /// The subject's trust domain is not one we hold a bundle for.
    UntrustedSubject = "untrusted-subject", Unauthenticated;
    /// The subject's certificate does not verify or does not match its ID.
    SubjectCertificateInvalid = "subject-certificate-invalid", Unauthenticated;
    /// Mandate could not build the request; a bug, reported as a deny.
    InternalError = "internal-error", Internal;
    /// A verified task token names a task the graph does not hold.
    UnknownTask = "unknown-task", Denied;
    /// A verified task token names a task that ended and was evicted
    /// from memory after its retention (`[tasks] retention`); a task
    /// still in memory that is not active is denied by the guard policy
    /// `mandate.guard.task-not-active` instead.
    TaskNotActive = "task-not-active", Denied;
    /// Denied only by policies an approval lifts; the answer is "needs
    /// approval".
    NeedsApproval = "needs-approval", Denied;
    /// The agent is registered with a checksum and called without a task
    /// token, the only carrier of its proof.
    AgentProofRequired = "agent-proof-required", Unauthenticated;
    /// An approval was asked for and the approver said no.
    ApprovalDenied = "approval-denied", Denied;
    /// An approval would lift the deny, but the call has no task to hold
    /// one.
    ApprovalNeedsTask = "approval-needs-task", Denied;
    /// The agent's registered checksum is not the one its token proved.
    AgentChecksumMismatch = "agent-checksum-mismatch", Denied;
    /// An approval would lift the deny, but none could be asked for
    /// (policy refused `request_approval`, too many are pending, or the
    /// store did not take it).
    ApprovalNotRequested = "approval-not-requested", Denied;
    /// Envoy `Check`: no route map rule matches the request.
    NoRoute = "no-route", Denied;
    /// Envoy `Check`: no usable downstream SPIFFE ID (no
    /// `source.principal`, or one that is not a workload's SPIFFE ID, or
    /// sources that disagree).
    NoSubject = "no-subject", Unauthenticated;
    /// Envoy `Check`: the configuration requires the downstream
    /// certificate and Envoy did not forward it.
    SubjectCertificateRequired = "subject-certificate-required", Unauthenticated;
    /// Envoy `Check`: the configuration requires a task token and the
    /// request has none.
    TokenRequired = "token-required", Unauthenticated;
    /// Envoy `Check`: the path has dot, empty or encoded-separator
    /// segments, whose meaning upstream could differ from the route map's.
    InvalidPath = "invalid-path", InvalidRequest;
    /// Envoy `Check`: the request lacks what every check needs (the HTTP
    /// attributes), or carries a malformed Mandate header.
    InvalidCheckRequest = "invalid-check-request", InvalidRequest;
    /// A request over one of the `[limits]` (its token, say), refused
    /// unread.
    LimitExceeded = "limit-exceeded", InvalidRequest;
    /// The token is not a compact JWS we can read, or too large.
    TokenMalformed = "token-malformed", Unauthenticated;
    /// The token's `typ` is not `mandate-task+jwt`.
    TokenWrongType = "token-wrong-type", Unauthenticated;
    /// The token's algorithm is not EdDSA.
    TokenWrongAlgorithm = "token-wrong-algorithm", Unauthenticated;
    /// The token's `kid` names no key we verify with.
    TokenUnknownKey = "token-unknown-key", Unauthenticated;
    /// The token's signature does not verify.
    TokenBadSignature = "token-bad-signature", Unauthenticated;
    /// The token is past its `exp`.
    TokenExpired = "token-expired", Unauthenticated;
    /// The token is before its `nbf`.
    TokenNotYetValid = "token-not-yet-valid", Unauthenticated;
    /// The token's `aud` is not ours.
    TokenWrongAudience = "token-wrong-audience", Unauthenticated;
    /// AuthZEN: the subject type is neither a workload's nor one the
    /// configuration maps to an entity type (or a workload subject's id
    /// is not a workload's SPIFFE ID).
    UnknownSubjectType = "unknown-subject-type", Denied;
    /// AuthZEN: `properties` Mandate reads are mistyped, or cannot be
    /// Cedar attributes (a null, a fraction).
    InvalidProperties = "invalid-properties", Denied;
    /// The token was issued to another subject than the caller.
    TokenSubjectMismatch = "token-subject-mismatch", Unauthenticated;
    /// The token is bound to another certificate than the one presented.
    TokenNotBound = "token-not-bound", Unauthenticated;
}

impl Reason {
    /// The reason spelled `code`, if it is one.
    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|r| r.as_str() == code)
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&TokenError> for Reason {
    fn from(error: &TokenError) -> Self {
        match error {
            TokenError::Malformed(_) => Self::TokenMalformed,
            TokenError::WrongType(_) => Self::TokenWrongType,
            TokenError::WrongAlgorithm => Self::TokenWrongAlgorithm,
            TokenError::UnknownKey(_) => Self::TokenUnknownKey,
            TokenError::BadSignature => Self::TokenBadSignature,
            TokenError::Expired(_) => Self::TokenExpired,
            TokenError::NotYetValid(_) => Self::TokenNotYetValid,
            TokenError::WrongAudience(_) => Self::TokenWrongAudience,
            TokenError::SubjectMismatch { .. } => Self::TokenSubjectMismatch,
            TokenError::NotBound => Self::TokenNotBound,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn codes_are_unique_lowercase_and_parse_back() {
        let mut seen = HashSet::new();
        for reason in Reason::ALL {
            let code = reason.as_str();
            assert!(seen.insert(code), "`{code}` is used twice");
            assert!(
                code.chars().all(|c| c.is_ascii_lowercase() || c == '-'),
                "`{code}` is not kebab-case"
            );
            assert_eq!(Reason::parse(code), Some(*reason));
        }
        assert_eq!(Reason::parse("no-such-reason"), None);
    }

    #[test]
    fn token_errors_keep_their_codes() {
        // The spelling the token module's own tests pin.
        let cases = [
            (TokenError::Malformed(String::new()), "token-malformed"),
            (TokenError::WrongType(String::new()), "token-wrong-type"),
            (TokenError::WrongAlgorithm, "token-wrong-algorithm"),
            (TokenError::UnknownKey(String::new()), "token-unknown-key"),
            (TokenError::BadSignature, "token-bad-signature"),
            (TokenError::Expired(0), "token-expired"),
            (TokenError::NotYetValid(0), "token-not-yet-valid"),
            (
                TokenError::WrongAudience(String::new()),
                "token-wrong-audience",
            ),
            (
                TokenError::SubjectMismatch {
                    token: String::new(),
                    subject: String::new(),
                },
                "token-subject-mismatch",
            ),
            (TokenError::NotBound, "token-not-bound"),
        ];
        for (error, code) in cases {
            assert_eq!(Reason::from(&error).as_str(), code);
            assert_eq!(Reason::from(&error).kind(), ReasonKind::Unauthenticated);
        }
    }

    #[test]
    fn kinds_map_to_the_answers_each_door_gives() {
        let cases = [
            (Reason::NoPermit, 403, tonic::Code::PermissionDenied, 1),
            (Reason::TokenExpired, 401, tonic::Code::Unauthenticated, 1),
            (Reason::InvalidPath, 400, tonic::Code::InvalidArgument, 2),
            (Reason::StaleState, 503, tonic::Code::Unavailable, 3),
            (Reason::InternalError, 500, tonic::Code::Internal, 3),
        ];
        for (reason, http, grpc, exit) in cases {
            let kind = reason.kind();
            assert_eq!(kind.http_status(), http, "{reason}");
            assert_eq!(kind.grpc_code(), grpc, "{reason}");
            assert_eq!(kind.exit_code(), exit, "{reason}");
        }
    }
}
