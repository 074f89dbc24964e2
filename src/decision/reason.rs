//! Machine-readable reason codes carried by decisions. They are part of the
//! public API: clients and dashboards match on them.

/// This replica is behind the `min_revision` the caller asked for and did
/// not catch up within the configured wait.
pub const STALE_STATE: &str = "stale-state";
/// This replica has lost contact with the store for longer than allowed:
/// its state may be missing revocations, so it denies everything.
pub const STATE_UNAVAILABLE: &str = "state-unavailable";
/// No policy permits the request.
pub const NO_PERMIT: &str = "no-permit";
/// A `forbid` policy matched.
pub const FORBIDDEN_BY_POLICY: &str = "forbidden-by-policy";
/// The action is not declared in the schema.
pub const UNKNOWN_ACTION: &str = "unknown-action";
/// The resource type is not declared in the schema (or is not a type name).
pub const UNKNOWN_RESOURCE_TYPE: &str = "unknown-resource-type";
/// The context does not fit the schema's context for the action.
pub const INVALID_CONTEXT: &str = "invalid-context";
/// The principal or resource type does not apply to the action.
pub const INVALID_REQUEST: &str = "invalid-request";
/// A policy could not be evaluated; Mandate denies rather than skip it.
pub const EVALUATION_ERROR: &str = "evaluation-error";
/// The caller asked on behalf of a subject but may not act as an
/// enforcement point (action `check`).
pub const NOT_AN_ENFORCEMENT_POINT: &str = "not-an-enforcement-point";
/// The subject's trust domain is not one we hold a bundle for.
pub const UNTRUSTED_SUBJECT: &str = "untrusted-subject";
/// The subject's certificate does not verify or does not match its ID.
pub const SUBJECT_CERTIFICATE_INVALID: &str = "subject-certificate-invalid";
/// Mandate could not build the request; a bug, reported as a deny.
pub const INTERNAL_ERROR: &str = "internal-error";
/// A verified task token names a task the graph does not hold.
pub const UNKNOWN_TASK: &str = "unknown-task";
/// Denied only by policies an approval lifts; the answer is "needs approval".
pub const NEEDS_APPROVAL: &str = "needs-approval";
/// The agent is registered with a checksum and called without a task
/// token, the only carrier of its proof.
pub const AGENT_PROOF_REQUIRED: &str = "agent-proof-required";
/// An approval was asked for and the approver said no.
pub const APPROVAL_DENIED: &str = "approval-denied";
/// An approval would lift the deny, but the call has no task to hold one.
pub const APPROVAL_NEEDS_TASK: &str = "approval-needs-task";
/// The agent's registered checksum is not the one its token proved.
pub const AGENT_CHECKSUM_MISMATCH: &str = "agent-checksum-mismatch";
/// An approval would lift the deny, but none could be asked for (policy
/// refused `request_approval`, or too many are pending).
pub const APPROVAL_NOT_REQUESTED: &str = "approval-not-requested";
/// Envoy `Check`: no route map rule matches the request.
pub const NO_ROUTE: &str = "no-route";
/// Envoy `Check`: no usable downstream SPIFFE ID (no `source.principal`,
/// or one that is not a workload's SPIFFE ID, or sources that disagree).
pub const NO_SUBJECT: &str = "no-subject";
/// Envoy `Check`: the configuration requires the downstream certificate
/// and Envoy did not forward it.
pub const SUBJECT_CERTIFICATE_REQUIRED: &str = "subject-certificate-required";
/// Envoy `Check`: the configuration requires a task token and the request
/// has none.
pub const TOKEN_REQUIRED: &str = "token-required";
/// Envoy `Check`: the path has dot, empty or encoded-separator segments,
/// whose meaning upstream could differ from the route map's.
pub const INVALID_PATH: &str = "invalid-path";
/// Envoy `Check`: the request lacks what every check needs (the HTTP
/// attributes).
pub const INVALID_CHECK_REQUEST: &str = "invalid-check-request";
/// A request over one of the `[limits]` (its token, say), refused unread.
pub const LIMIT_EXCEEDED: &str = "limit-exceeded";
