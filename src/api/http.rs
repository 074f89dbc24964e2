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

use crate::credential::TaskTokens;

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

/// The router for the HTTP listener.
pub fn router(readiness: Readiness, tokens: Arc<TaskTokens>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready).with_state(readiness))
        .route(
            "/.well-known/jwks.json",
            get(|| async move { Json(tokens.keys().jwks()) }),
        )
}

async fn ready(State(readiness): State<Readiness>) -> (StatusCode, &'static str) {
    if readiness.get() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}
