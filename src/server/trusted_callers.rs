//! Every call is checked against the peer's SVID as it stands now, not as
//! it stood at the handshake.
//!
//! A rotation or a withdrawal never drops established connections, and an
//! HTTP/2 connection (Envoy's, typically) stays open for hours, so a
//! handshake's checks go stale. On every call, for every service (health
//! and reflection included), this refuses as `UNAUTHENTICATED`:
//! - a call with no authenticated peer at all;
//! - a peer whose SVID has expired since the handshake;
//! - a peer whose trust domain has no bundle in the newest snapshot (its
//!   bundle was withdrawn; the allow-list is read at start only);
//! - a peer whose chain no longer verifies against the newest bundles (its
//!   CA was removed from a bundle that is still there). The chain is
//!   verified once per connection and bundle set, not on every call.

use std::sync::Arc;

use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::api::{ApiError, PeerIdentity};
use crate::clock::Clock;
use crate::identity::IdentityWatch;

/// The interceptor; cheap to clone (one per connection).
#[derive(Debug, Clone)]
pub(super) struct TrustedCallers {
    identity: IdentityWatch,
    clock: Arc<dyn Clock>,
}

impl TrustedCallers {
    /// Checks callers against the snapshots of `identity` at `clock`'s now.
    pub(super) fn new(identity: IdentityWatch, clock: Arc<dyn Clock>) -> Self {
        Self { identity, clock }
    }

    fn check(&self, peer: &PeerIdentity) -> Result<(), String> {
        // Cloned out: a watch borrow must not be held while verifying.
        let bundles = self.identity.borrow().bundles.clone();
        peer.recheck(&bundles, self.clock.now())
    }
}

impl Interceptor for TrustedCallers {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        // INVARIANT: every connection comes from `api::listener`, which
        // attaches the peer; a request without one was not authenticated.
        let Some(peer) = request.extensions().get::<PeerIdentity>() else {
            tracing::error!("call refused: no authenticated peer on the connection");
            return Err(ApiError::Unauthenticated("no authenticated peer".to_owned()).into());
        };
        match self.check(peer) {
            Ok(()) => Ok(request),
            Err(reason) => {
                tracing::info!(spiffe_id = %peer.spiffe_id, remote_addr = %peer.remote_addr, %reason, "call refused on an open connection");
                Err(ApiError::Unauthenticated(reason).into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use arc_swap::ArcSwap;

    use super::*;
    use crate::clock::ManualClock;
    use crate::identity::TrustDomain;
    use crate::identity::dev::DevTrustDomain;

    /// A server snapshot and the peer of one connection to it, accepted
    /// against that snapshot's bundles.
    fn setup() -> (IdentityWatch, PeerIdentity, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let td = TrustDomain::new("example.org").unwrap();
        let dev = DevTrustDomain::init(dir.path(), &td, &[]).unwrap();
        let server = dev.files_source().load().unwrap();
        let sample = dev.samples.first().unwrap();
        let chain = crate::identity::load_certs(&sample.cert).unwrap();
        let (_, not_after) = crate::identity::validity_of(&chain[0]).unwrap();
        let peer = PeerIdentity {
            spiffe_id: crate::identity::spiffe_id_of_leaf(&chain[0]).unwrap(),
            certificates: Arc::new(chain),
            remote_addr: "127.0.0.1:1".parse().unwrap(),
            not_after,
            verified_against: Arc::new(ArcSwap::new(server.bundles.clone())),
        };
        // A receiver keeps the last value when the sender is gone.
        let (_, watch) = tokio::sync::watch::channel(Arc::new(server));
        (watch, peer, dir)
    }

    fn call(callers: &mut TrustedCallers, peer: Option<&PeerIdentity>) -> Result<(), Status> {
        let mut request = Request::new(());
        if let Some(peer) = peer {
            request.extensions_mut().insert(peer.clone());
        }
        callers.call(request).map(drop)
    }

    #[test]
    fn a_call_without_a_peer_is_refused() {
        let (watch, _, _dir) = setup();
        let mut callers = TrustedCallers::new(watch, Arc::new(crate::clock::SystemClock));
        let status = call(&mut callers, None).unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
    }

    #[test]
    fn a_peer_is_refused_once_its_svid_has_expired() {
        let (watch, peer, _dir) = setup();
        let clock = Arc::new(ManualClock::new(peer.not_after - 10));
        let mut callers = TrustedCallers::new(watch, clock.clone());
        call(&mut callers, Some(&peer)).unwrap();
        clock.advance(10);
        let status = call(&mut callers, Some(&peer)).unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
        assert!(status.message().contains("expired"), "{status:?}");
    }
}
