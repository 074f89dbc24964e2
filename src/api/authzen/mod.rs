//! AuthZEN 1.0 (the OpenID Authorization API) over HTTPS JSON, on a
//! listener of its own (`[authzen]`, off unless configured): one more
//! door on the decision [`Runner`]. The caller is an enforcement point,
//! authenticated by its SVID as on the gRPC port, and must be allowed
//! `check` for every subject it asks about, as Envoy must.
//!
//! `wire` parses and answers the JSON, `mapping` turns an evaluation into
//! a [`crate::decision::Request`], `search` enumerates and pages searches,
//! `keys` holds the opt-in API keys, `routes` serves
//! the endpoints and the metadata document, `profile` and `requests` the
//! Access Request and Approval profile (needs approval). Every evaluation (and every
//! search candidate) is decided, recorded and counted by the runner like
//! any other decision. See `docs/authzen.md`.

mod keys;
pub(crate) mod mapping;
pub mod profile;
mod requests;
mod routes;
pub mod search;
pub mod wire;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cedar_policy::EntityTypeName;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::api::https::{Https, HttpsPeer, accept_https};
use crate::clock::Clock;
use crate::decision::Runner;
use crate::identity::{ClientCertificate, IdentityWatch};
use crate::policy::PolicyEngine;

pub use keys::{ApiKey, ApiKeys, parse_sha256};
pub use mapping::MIN_REVISION_HEADER;

/// Subject types that name a workload or agent by SPIFFE ID.
pub const WORKLOAD_TYPES: &[&str] = &["agent", "workload"];

/// The `[authzen]` settings, validated by `crate::config`.
#[derive(Debug, Clone)]
pub struct AuthzenSettings {
    /// Where the API listens (TLS, HTTP/1.1 and HTTP/2).
    pub listen: SocketAddr,
    /// The published base URL; `https://` and the bound address when
    /// `None`.
    pub public_url: Option<String>,
    /// How AuthZEN types name Cedar entity types.
    pub types: TypeMap,
    /// Keys for enforcement points without an SVID; with any, client
    /// certificates are optional on this listener.
    pub api_keys: ApiKeys,
}

/// AuthZEN subject and resource types to Cedar entity types.
#[derive(Debug, Clone, Default)]
pub struct TypeMap {
    /// Subject types other than [`WORKLOAD_TYPES`]; `user` is
    /// `Mandate::User` unless configured otherwise.
    pub subjects: BTreeMap<String, EntityTypeName>,
    /// Resource types; one not listed is a Cedar type name as written.
    pub resources: BTreeMap<String, EntityTypeName>,
    /// Action names to `Mandate::Action` ids; one not listed is its own
    /// id (for a scenario whose names collide with Mandate's own).
    pub actions: BTreeMap<String, String>,
}

impl TypeMap {
    /// The `Mandate::Action` id an AuthZEN action name asks for.
    pub fn action<'a>(&'a self, name: &'a str) -> &'a str {
        self.actions.get(name).map_or(name, String::as_str)
    }

    /// The AuthZEN name of a schema action, for action search; `None`
    /// when another name maps onto its own (it cannot be asked by it).
    pub fn action_name<'a>(&'a self, id: &'a str) -> Option<&'a str> {
        match self.actions.iter().find(|(_, to)| to.as_str() == id) {
            Some((name, _)) => Some(name),
            None if self.actions.contains_key(id) => None,
            None => Some(id),
        }
    }
}

impl TypeMap {
    /// The mapped types and actions the schema does not declare, one line each: a
    /// start-up problem, like a route map naming an unknown type.
    pub fn check(&self, engine: &PolicyEngine) -> Vec<String> {
        let mut problems = Vec::new();
        for (key, map) in [
            ("subject_types", &self.subjects),
            ("resource_types", &self.resources),
        ] {
            for (authzen, cedar) in map {
                if !engine.has_entity_type(cedar) {
                    problems.push(format!(
                        "`authzen.{key}.{authzen}`: entity type `{cedar}` is not declared in the schema"
                    ));
                }
            }
        }
        for (authzen, id) in &self.actions {
            if engine.action(id).is_none() {
                problems.push(format!(
                    "`authzen.actions.{authzen}`: action `{id}` is not declared in the schema"
                ));
            }
        }
        problems
    }
}

/// What the AuthZEN door is built from.
#[derive(Debug, Clone)]
pub struct AuthzenParts {
    /// Decides every evaluation.
    pub runner: Arc<Runner>,
    /// The live approvals: a needs-approval's task handle, polled.
    pub approvals: Arc<crate::approval::ApprovalBook>,
    /// The live tasks, for whether a pending approval can still be
    /// decided and which scope an approval counts for.
    pub graph: Arc<crate::graph::TaskGraph>,
    /// Our SVID and trust bundles, for the listener's TLS and for checking
    /// a caller again on every request.
    pub identity: IdentityWatch,
    /// The clock callers' SVIDs are checked against.
    pub clock: Arc<dyn Clock>,
    /// Failed handshakes are counted here.
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
    /// A handshake not done in this time is dropped.
    pub handshake_timeout: Duration,
    /// Largest request body.
    pub max_request_bytes: usize,
}

/// Why the AuthZEN listener could not start.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum AuthzenError {
    /// The listener could not be bound.
    #[error("cannot listen on `{addr}` (authzen): {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Our identity cannot make a TLS configuration.
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
}

/// The running AuthZEN API.
#[derive(Debug)]
pub struct RunningAuthzen {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    serve: JoinHandle<std::io::Result<()>>,
    accept: JoinHandle<()>,
}

/// Binds the AuthZEN listener and starts serving it.
pub async fn start(
    settings: AuthzenSettings,
    parts: AuthzenParts,
) -> Result<RunningAuthzen, AuthzenError> {
    let bind_error = |source| AuthzenError::Bind {
        addr: settings.listen,
        source,
    };
    let tcp = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(bind_error)?;
    let addr = tcp.local_addr().map_err(bind_error)?;
    let client = if settings.api_keys.is_empty() {
        ClientCertificate::Required
    } else {
        ClientCertificate::Optional
    };
    let (incoming, accept) = accept_https(
        tcp,
        addr,
        parts.identity.clone(),
        Https {
            alpn: &[b"h2", b"http/1.1"],
            client,
            handshake_timeout: parts.handshake_timeout,
            metrics: parts.metrics.clone(),
            backlog: 128,
        },
    )?;
    let public_url = settings
        .public_url
        .clone()
        .unwrap_or_else(|| format!("https://{addr}"));
    let router = routes::router(routes::Door::new(
        parts,
        settings.types,
        settings.api_keys,
        public_url,
    ));
    let (stop, stopped) = oneshot::channel::<()>();
    let serve = tokio::spawn(async move {
        axum::serve(
            incoming,
            router.into_make_service_with_connect_info::<HttpsPeer>(),
        )
        .with_graceful_shutdown(async {
            let _ = stopped.await;
        })
        .await
    });
    tracing::info!(authzen = %addr, client_certificates = ?client, "serving authzen");
    Ok(RunningAuthzen {
        addr,
        stop,
        serve,
        accept,
    })
}

impl RunningAuthzen {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets open requests finish within `grace`.
    pub async fn shutdown(self, grace: Duration) {
        self.accept.abort();
        let _ = self.stop.send(());
        let mut serve = self.serve;
        if tokio::time::timeout(grace, &mut serve).await.is_err() {
            serve.abort();
        }
    }
}
