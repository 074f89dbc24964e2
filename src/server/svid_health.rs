//! gRPC health follows our SVID: NOT_SERVING while we hold no valid one
//! (expired, or not yet valid), SERVING again once a valid one arrives.
//!
//! A load balancer should stop sending us work we cannot complete: once our
//! SVID has expired every client refuses our handshake anyway. `/readyz`
//! reads the same condition at each request (see `api::http`).

use std::time::Duration;

use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::clock::{Clock, SystemClock};
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

/// Whether the current snapshot's SVID is valid now.
pub(super) fn valid_now(identity: &IdentityWatch) -> bool {
    identity.borrow().is_valid_at(SystemClock.now())
}

/// Keeps health in step with the SVID until aborted; `valid` is what was
/// last set.
pub(super) async fn follow(
    mut identity: IdentityWatch,
    health: HealthReporter,
    names: &'static [&'static str],
    mut valid: bool,
) {
    // A watch whose sender is gone (material handed over whole) never
    // changes again; only the clock matters then.
    let mut source_alive = true;
    loop {
        // Copied out: a watch borrow must not be held across an await.
        let (spiffe_id, not_before, not_after) = {
            let current = identity.borrow_and_update();
            (
                current.spiffe_id.to_string(),
                current.not_before,
                current.not_after,
            )
        };
        let now = SystemClock.now();
        let now_valid = not_before <= now && now < not_after;
        if now_valid != valid {
            valid = now_valid;
            if valid {
                tracing::info!(%spiffe_id, not_after, "valid SVID held again: health SERVING");
            } else {
                tracing::error!(%spiffe_id, not_before, not_after, "no valid SVID held: health NOT_SERVING until a new one arrives");
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
