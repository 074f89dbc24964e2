//! gRPC health follows our SVID: NOT_SERVING while we hold no valid one
//! (expired, not yet valid, or withdrawn by the SPIRE agent because
//! Mandate's registration entry is gone), SERVING again once a valid one
//! arrives.
//!
//! A load balancer should stop sending us work we cannot complete: once our
//! SVID has expired every client refuses our handshake anyway. `/readyz`
//! reads the same condition at each request (see `api::http`).

use std::sync::Arc;
use std::time::Duration;

use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::clock::Clock;
use crate::identity::IdentityWatch;

/// Longest wait between two looks at the clock: certificates are judged by
/// the wall clock, which can jump, so an exact sleep to expiry is not
/// trusted alone.
const MAX_WAIT: Duration = Duration::from_secs(1);

/// Sets every service in `names` to match whether our SVID is valid now.
pub(super) async fn set(health: &HealthReporter, names: &[&str], valid: bool) {
    let status = if valid {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    for name in names {
        health.set_service_status(*name, status).await;
    }
}

/// Whether the current snapshot's SVID is valid at `clock`'s now.
pub(super) fn valid_now(identity: &IdentityWatch, clock: &dyn Clock) -> bool {
    identity.borrow().is_valid_at(clock.now())
}

/// Keeps health in step with the SVID until aborted; `valid` is what was
/// last set.
pub(super) async fn follow(
    mut identity: IdentityWatch,
    health: HealthReporter,
    names: &'static [&'static str],
    mut valid: bool,
    clock: Arc<dyn Clock>,
) {
    // A watch whose sender is gone (material handed over whole) never
    // changes again; only the clock matters then.
    let mut source_alive = true;
    loop {
        // Cloned out: a watch borrow must not be held across an await.
        let current = identity.borrow_and_update().clone();
        let (spiffe_id, not_before, not_after) =
            (&current.spiffe_id, current.not_before, current.not_after);
        let now = clock.now();
        let now_valid = current.is_valid_at(now);
        if now_valid != valid {
            valid = now_valid;
            if valid {
                tracing::info!(%spiffe_id, not_after, "valid SVID held again: health SERVING");
            } else {
                tracing::error!(%spiffe_id, not_before, not_after, withdrawn = ?current.withdrawn, "no valid SVID held: health NOT_SERVING until a new one arrives");
            }
            set(&health, names, valid).await;
        }
        let next_edge = if now < not_before {
            not_before
        } else {
            not_after
        };
        let wait = u64::try_from(next_edge.saturating_sub(now))
            .map(Duration::from_secs)
            .unwrap_or_default()
            .clamp(Duration::from_millis(100), MAX_WAIT);
        if source_alive {
            tokio::select! {
                changed = identity.changed() => source_alive = changed.is_ok(),
                () = tokio::time::sleep(wait) => {}
            }
        } else {
            tokio::time::sleep(wait).await;
        }
    }
}
