//! Calls on connections whose peer's trust domain is no longer trusted are
//! refused.
//!
//! A rotation or a withdrawal never drops established connections, so a
//! caller authenticated before its trust domain's bundle was withdrawn (or
//! left `trusted_trust_domains`) still has an open connection. Its
//! handshake was checked once; this checks the trust domain again on every
//! call, against the newest snapshot, so its decisions deny from the next
//! call on (as `UNAUTHENTICATED`, for every service).

use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::api::{ApiError, PeerIdentity};
use crate::identity::IdentityWatch;

/// The interceptor; cheap to clone (one per connection).
#[derive(Debug, Clone)]
pub(super) struct TrustedCallers {
    identity: IdentityWatch,
}

impl TrustedCallers {
    /// Checks callers against the snapshots of `identity`.
    pub(super) fn new(identity: IdentityWatch) -> Self {
        Self { identity }
    }
}

impl Interceptor for TrustedCallers {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        // Without a peer the services refuse the call themselves.
        let Some(peer) = request.extensions().get::<PeerIdentity>() else {
            return Ok(request);
        };
        let trust_domain = peer.spiffe_id.trust_domain();
        if self.identity.borrow().bundles.trusts(trust_domain) {
            return Ok(request);
        }
        tracing::info!(spiffe_id = %peer.spiffe_id, remote_addr = %peer.remote_addr, "call refused: the caller's trust domain is no longer trusted");
        Err(ApiError::Unauthenticated(format!(
            "trust domain `{}` is no longer trusted",
            peer.spiffe_id.trust_domain_name()
        ))
        .into())
    }
}
