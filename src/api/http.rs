//! The HTTP endpoint: `/healthz` (the process is up), `/readyz` (the gRPC
//! server accepts decisions: serving, and holding a valid SVID) and
//! `/.well-known/jwks.json` (the keys that verify task tokens) and
//! `/metrics` (Prometheus text format).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

use crate::audit::DecisionLog;
use crate::clock::{Clock, SystemClock};
use crate::credential::TaskTokens;
use crate::envoy::RouteTable;
use crate::identity::{IdentityStatus, IdentityWatch};
use crate::policy::PolicyStore;

/// Shared readiness flag, cleared first thing on shutdown.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Marks the server ready or not.
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }

    /// Whether the server is ready.
    pub fn get(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// What `/readyz` reports on.
#[derive(Debug, Clone)]
pub struct ReadyState {
    /// Cleared first thing on shutdown.
    pub readiness: Readiness,
    /// The policy set in use.
    pub policies: Arc<PolicyStore>,
    /// The decision log, when configured.
    pub decision_log: Option<DecisionLog>,
    /// Our SVID and bundles.
    pub identity: IdentityWatch,
    /// Rotations, refused updates and withdrawals.
    pub identity_status: IdentityStatus,
    /// The route map of Envoy's `Check`.
    pub routes: Arc<RouteTable>,
    /// The store and this replica's contact with it.
    pub store: crate::journal::StoreHandle,
}

/// The router for the HTTP listener.
pub fn router(ready_state: ReadyState, tokens: Arc<TaskTokens>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready).with_state(ready_state))
        .route(
            "/.well-known/jwks.json",
            get(|| async move { Json(tokens.keys().jwks()) }),
        )
}

/// The `/metrics` route.
pub fn metrics_router(metrics: Arc<crate::metrics::Metrics>) -> Router {
    Router::new().route(
        "/metrics",
        get(|| async move {
            match metrics.encode() {
                Ok(text) => (
                    StatusCode::OK,
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    text,
                ),
                Err(_) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    [(axum::http::header::CONTENT_TYPE, "text/plain")],
                    "cannot encode the metrics\n".to_owned(),
                ),
            }
        }),
    )
}

/// 200 while serving with a valid SVID; 503 once shutting down or while no
/// valid SVID is held. The body says which policy set is in use and whether
/// the last reload was refused (the server keeps serving the previous set
/// then, so it stays ready), and the state of our identity: SVID expiry,
/// rotations, refused updates, trust domains and withdrawals.
async fn ready(
    State(ReadyState {
        readiness,
        policies,
        decision_log,
        identity,
        identity_status,
        routes,
        store,
    }): State<ReadyState>,
) -> (StatusCode, Json<serde_json::Value>) {
    let status = policies.status();
    let identity = identity_status.report(&identity.borrow(), SystemClock.now());
    // A replica out of contact with the store denies everything, so it
    // is not ready either: a load balancer should send calls elsewhere.
    let ready = readiness.get() && identity.svid_valid && store.health().available();
    let body = serde_json::json!({
        "identity": identity,
        "decision_log": decision_log.as_ref().map(|log| serde_json::json!({
            "dropped": log.dropped(),
            // The store sink: records waiting for the store, failed writes.
            "store": log.stats().store().map(|s| serde_json::json!({
                "pending": s.pending,
                "failures": s.failures,
                "dropped": s.dropped,
            })),
        })),
        "ready": ready,
        "policies": {
            "policy_hash": status.hash.as_ref(),
            "policy_count": status.policy_count,
            "loaded_at": status.loaded_at,
            "reloads": status.reloads,
            "failed_reloads": status.failed_reloads,
            "last_error": status.last_error.as_ref().map(|e| serde_json::json!({
                "at": e.at,
                "problems": e.problems,
            })),
        },
        "store": store.report(),
        "route_map": routes.path().map(|path| serde_json::json!({
            "file": path.display().to_string(),
            "routes": routes.current().routes().len(),
            "last_error": routes.last_error(),
        })),
    });
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body))
}
