//! The HTTP endpoint: `/healthz` (the process is up), `/readyz` (the gRPC
//! server accepts decisions) and `/.well-known/jwks.json` (the keys that
//! verify task tokens).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

use crate::audit::DecisionLog;
use crate::credential::TaskTokens;
use crate::envoy::RouteTable;
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
#[derive(Clone)]
struct ReadyState {
    readiness: Readiness,
    policies: Arc<PolicyStore>,
    decision_log: Option<DecisionLog>,
    routes: Arc<RouteTable>,
}

/// The router for the HTTP listener.
pub fn router(
    readiness: Readiness,
    tokens: Arc<TaskTokens>,
    policies: Arc<PolicyStore>,
    decision_log: Option<DecisionLog>,
    routes: Arc<RouteTable>,
) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(ready).with_state(ReadyState {
                readiness,
                policies,
                decision_log,
                routes,
            }),
        )
        .route(
            "/.well-known/jwks.json",
            get(|| async move { Json(tokens.keys().jwks()) }),
        )
}

/// 200 while serving, 503 once shutting down; the body says which policy
/// set is in use and whether the last reload was refused (the server keeps
/// serving the previous set then, so it stays ready).
async fn ready(
    State(ReadyState {
        readiness,
        policies,
        decision_log,
        routes,
    }): State<ReadyState>,
) -> (StatusCode, Json<serde_json::Value>) {
    let status = policies.status();
    let body = serde_json::json!({
        "decision_log": decision_log.as_ref().map(|log| serde_json::json!({
            "dropped": log.dropped(),
        })),
        "ready": readiness.get(),
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
        "route_map": routes.path().map(|path| serde_json::json!({
            "file": path.display().to_string(),
            "routes": routes.current().routes().len(),
            "last_error": routes.last_error(),
        })),
    });
    let code = if readiness.get() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body))
}
