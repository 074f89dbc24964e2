//! People in the loop: the approvals inbox and the delegation-trail
//! picture, served to browsers on a listener of their own (`[ui]`, off
//! unless configured).
//!
//! Mandate does not authenticate humans. The listener speaks TLS with the
//! same SPIFFE client-certificate verification as the gRPC port, and a
//! user id is believed only from a front proxy whose SVID is on the
//! configured list (see [`human`]), or from the loopback dev login of the
//! dev trust domain. Every read and write goes through the same
//! authorization as the gRPC services ([`crate::api::ApprovalApi`],
//! [`crate::api::AuditApi`]), with the proxy as the principal.

mod csrf;
mod human;
mod page;
mod routes;
pub mod settings;
mod trail;
mod webhook;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use settings::{UiSettings, WebhookSettings};

use crate::api::https::{Https, HttpsPeer, accept_https};
use crate::api::{ApprovalApi, AuditApi};
use crate::clock::Clock;
use crate::graph::TaskGraph;
use crate::identity::{ClientCertificate, IdentityWatch};
use crate::registry::Registry;
use crate::revision::Revision;

/// The handles the UI reads and writes through; built by the server's
/// composition root from the same parts as the gRPC services.
#[derive(Debug, Clone)]
pub struct UiParts {
    /// Approvals: read, list and decide, under `ApprovalService`'s rules.
    pub approvals: ApprovalApi,
    /// The approval book itself, which the webhook watches for requests.
    pub book: Arc<crate::approval::ApprovalBook>,
    /// Trails, under `AuditService`'s rules.
    pub audit: AuditApi,
    /// The live task graph, for chains and task states.
    pub graph: Arc<TaskGraph>,
    /// Resources' sensitivity and labels.
    pub registry: Arc<Registry>,
    /// The live revision: the inbox refreshes when it moves.
    pub revision: Arc<Revision>,
    /// The clock of the decision path.
    pub clock: Arc<dyn Clock>,
    /// Our SVID and trust bundles, for the listener's TLS.
    pub identity: IdentityWatch,
    /// Webhook failures are counted here.
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
}

/// Why the UI could not start.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum UiError {
    /// The listener could not be bound.
    #[error("cannot listen on `{addr}` (ui): {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Our identity cannot make a TLS configuration.
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
    /// No randomness for the signing key.
    #[error("ui: {0}")]
    Random(String),
    /// The webhook client cannot be built.
    #[error("ui webhook: {0}")]
    Webhook(String),
}

/// A handshake not done in this time is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The running UI: its listener, its accept loop and the webhook notifier.
#[derive(Debug)]
pub struct RunningUi {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    serve: JoinHandle<std::io::Result<()>>,
    accept: JoinHandle<()>,
    notifier: Option<JoinHandle<()>>,
}

/// Binds the UI listener and starts serving it (and the webhook notifier).
pub async fn start(settings: UiSettings, parts: UiParts) -> Result<RunningUi, UiError> {
    let tcp = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|source| UiError::Bind {
            addr: settings.listen,
            source,
        })?;
    let addr = tcp.local_addr().map_err(|source| UiError::Bind {
        addr: settings.listen,
        source,
    })?;
    let settings = Arc::new(settings);
    // A connection without a client certificate is only ever a dev login
    // candidate (see `human`).
    let client = if settings.dev_login {
        ClientCertificate::Optional
    } else {
        ClientCertificate::Required
    };
    let (incoming, accept) = accept_https(
        tcp,
        addr,
        parts.identity.clone(),
        Https {
            alpn: &[b"http/1.1"],
            client,
            handshake_timeout: HANDSHAKE_TIMEOUT,
            metrics: None,
            backlog: 64,
        },
    )?;
    let notifier = match &settings.webhook {
        Some(hook) => Some(webhook::start(hook.clone(), &settings, parts.clone())?),
        None => None,
    };
    let keys = csrf::Keys::generate().map_err(UiError::Random)?;
    let router = routes::router(routes::AppState::new(settings.clone(), parts, keys));
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
    tracing::info!(ui = %addr, dev_login = settings.dev_login, "serving the ui");
    Ok(RunningUi {
        addr,
        stop,
        serve,
        accept,
        notifier,
    })
}

impl RunningUi {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets open requests finish within `grace`.
    pub async fn shutdown(self, grace: std::time::Duration) {
        self.accept.abort();
        if let Some(notifier) = &self.notifier {
            notifier.abort();
        }
        let _ = self.stop.send(());
        let mut serve = self.serve;
        if tokio::time::timeout(grace, &mut serve).await.is_err() {
            serve.abort();
        }
    }
}

/// The sensitivity (by name, inherited) and labels (with the ancestors')
/// of a resource.
pub(crate) fn resource_facts(registry: &Registry, id: &str) -> (String, Vec<String>) {
    let snapshot = registry.snapshot();
    let mut sensitivity = None;
    let mut labels = std::collections::BTreeSet::new();
    let mut next = Some(id.to_owned());
    // Bounded: a hierarchy is acyclic, but the page must not spin if not.
    for _ in 0..64 {
        let Some(crate::registry::Entry::Resource(r)) = next
            .as_deref()
            .and_then(|id| snapshot.get(crate::registry::Kind::Resource, id))
        else {
            break;
        };
        if sensitivity.is_none() {
            sensitivity = r.sensitivity.clone();
        }
        labels.extend(r.labels.iter().cloned());
        next = r.parent.clone();
    }
    let sensitivity = match sensitivity {
        Some(crate::registry::Level::Name(name)) => name,
        Some(crate::registry::Level::Number(n)) => n.to_string(),
        None => "unclassified".to_owned(),
    };
    (sensitivity, labels.into_iter().collect())
}

/// `text` as one URL path segment (ids keep their dashes).
pub(crate) fn path_segment(text: &str) -> String {
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(text, SEGMENT).to_string()
}
