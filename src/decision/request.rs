//! One question as every door asks it, in Mandate's own terms: no wire
//! types. `Authorize`, `BatchAuthorize` and Envoy's `Check` each turn their
//! message into a [`Request`]; the runner and the pipeline know nothing
//! else.

use cedar_policy::{Entity, EntityUid, RestrictedExpression};
use spiffe::SpiffeId;

/// A question: may the principal do `action` on `resource`?
#[derive(Debug, Clone)]
pub struct Request {
    /// Who asks: the workload on the other end of the mTLS connection.
    pub caller: Caller,
    /// Enforcement-point mode: the caller asks on behalf of this subject,
    /// which becomes the principal once the caller may `check` for it.
    pub on_behalf_of: Option<Subject>,
    /// Action id within `Mandate::Action`, such as `read`.
    pub action: String,
    /// The resource acted on.
    pub resource: Resource,
    /// The caller's context.
    pub context: CallerContext,
    /// The task token presented, if any.
    pub token: Option<String>,
    /// The revision this replica must have reached before deciding.
    pub min_revision: u64,
    /// What the door adds on its own authority (Envoy's `context.http`).
    pub door: DoorContext,
}

impl Request {
    /// A request by `caller` with no subject, token, context or door
    /// context.
    pub fn new(caller: Caller, action: impl Into<String>, resource: Resource) -> Self {
        Self {
            caller,
            on_behalf_of: None,
            action: action.into(),
            resource,
            context: CallerContext::default(),
            token: None,
            min_revision: 0,
            door: DoorContext::default(),
        }
    }

    /// Who the decision is about, as records name it: the subject in
    /// enforcement-point mode (its SPIFFE ID, or its entity), else the
    /// caller's SPIFFE ID.
    pub fn subject_name(&self) -> String {
        match &self.on_behalf_of {
            None => self.caller.spiffe_id.to_string(),
            Some(Subject::Workload(subject)) => subject.spiffe_id.to_string(),
            Some(Subject::Entity(uid)) => uid.to_string(),
        }
    }
}

/// Whom an enforcement point asks about.
#[derive(Debug, Clone)]
pub enum Subject {
    /// A workload or agent, by SPIFFE ID; a task token binds to it.
    Workload(OnBehalfOf),
    /// Another principal of the schema (a `Mandate::User`, or a type a
    /// user schema declares), by entity. It has no SVID, so no task token
    /// can be presented for it.
    Entity(EntityUid),
}

/// The authenticated peer.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Its SPIFFE ID, from the verified SVID.
    pub spiffe_id: SpiffeId,
    /// `x5t#S256` of its leaf certificate, which a task token's `cnf`
    /// binds to.
    pub thumbprint: Option<String>,
}

/// The subject an enforcement point asks about.
#[derive(Debug, Clone)]
pub struct OnBehalfOf {
    /// The subject's SPIFFE ID.
    pub spiffe_id: SpiffeId,
    /// Its X.509-SVID chain (PEM, leaf first), when forwarded: verified
    /// against our bundles, it binds the token.
    pub certificate_pem: Option<String>,
    /// `x5t#S256` of its certificate, when only that was forwarded.
    pub forwarded_thumbprint: Option<String>,
}

/// A resource: an entity type and id.
#[derive(Debug, Clone, Default)]
pub struct Resource {
    /// Entity type; empty means [`super::DEFAULT_RESOURCE_TYPE`].
    pub type_name: String,
    /// Entity id.
    pub id: String,
}

/// The context a caller sent.
#[derive(Debug, Clone, Default)]
pub struct CallerContext {
    /// As JSON, Cedar's context format.
    pub fields: serde_json::Map<String, serde_json::Value>,
    /// Size of the context as the caller sent it (its wire encoding),
    /// which `limits.max_context_bytes` bounds.
    pub wire_bytes: usize,
}

impl CallerContext {
    /// The caller's `purpose`, which an approval keeps as its
    /// justification.
    pub fn purpose(&self) -> &str {
        self.fields
            .get("purpose")
            .and_then(|p| p.as_str())
            .unwrap_or_default()
    }
}

/// Context Mandate adds on its own authority, and the entities it refers
/// to.
#[derive(Debug, Clone, Default)]
pub struct DoorContext {
    /// Context pairs beyond the caller's.
    pub pairs: Vec<(String, RestrictedExpression)>,
    /// Entities those pairs refer to.
    pub entities: Vec<Entity>,
    /// Entities the caller described (AuthZEN `properties`): used only
    /// for a principal or resource the registry does not hold, so a
    /// caller can never shadow what the registry says.
    pub described: Vec<Entity>,
    /// All that `pairs`, `entities` and `described` say, as text, when the door can
    /// tell it: part of the key under which Cedar's answer is remembered
    /// (see `answer_cache`). Without it, a request with any of them is
    /// decided afresh every time.
    pub digest: Option<String>,
}
