//! The `workload-api` identity source: our SVID and the bundle of every trust
//! domain a SPIRE agent reports (ours and the federated ones), over the
//! SPIFFE Workload API, through the `spiffe` crate's `X509Source`.
//!
//! `X509Source` keeps one `FetchX509SVID` stream open, reconnects with
//! backoff when the agent goes away, keeps the last material meanwhile and
//! refuses responses it cannot parse. Each update it accepts is turned into
//! an [`Identity`] and offered to the [`Publisher`], which refuses what
//! cannot be served; so a bad response never replaces good material.

use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use spiffe::X509Source;
use spiffe::x509_source::{MetricsErrorKind, MetricsRecorder, X509SourceState};

use super::publish::Publisher;
use super::{FollowOptions, Identity, IdentityError, IdentityStatus, IdentityWatch, TrustBundles};
use crate::clock::{Clock, SystemClock};

/// Default wait for the first SVID at start-up.
pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Default first delay before reconnecting to an agent that went away.
pub const DEFAULT_MIN_BACKOFF: Duration = Duration::from_millis(200);
/// Default longest delay between reconnection attempts.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long a closing `X509Source` may take to stop.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the agent listens and how patiently it is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadApiSource {
    /// The agent's socket as in `SPIFFE_ENDPOINT_SOCKET`: `unix:///path`
    /// only (see [`WorkloadApiSource::parse_endpoint`]).
    pub endpoint: String,
    /// How long start-up waits for a first usable SVID.
    pub startup_timeout: Duration,
    /// First delay before reconnecting to an agent that went away.
    pub min_backoff: Duration,
    /// Longest delay between reconnection attempts.
    pub max_backoff: Duration,
}

impl WorkloadApiSource {
    /// A source for `endpoint` with the default timeouts.
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            startup_timeout: DEFAULT_STARTUP_TIMEOUT,
            min_backoff: DEFAULT_MIN_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
        }
    }

    /// Checks an endpoint; a bare absolute path means a Unix socket, as
    /// SPIRE's own tools accept. Only Unix sockets are accepted: the
    /// Workload API has no transport security of its own, and over
    /// `tcp://` anyone who can reach the port could serve us an identity
    /// (and read our key on the way).
    pub fn parse_endpoint(value: &str) -> Result<String, IdentityError> {
        let endpoint = if value.starts_with('/') {
            format!("unix://{value}")
        } else {
            value.to_owned()
        };
        let refused = |reason: String| IdentityError::Endpoint {
            endpoint: value.to_owned(),
            reason,
        };
        match spiffe::transport::Endpoint::parse(&endpoint) {
            Ok(spiffe::transport::Endpoint::Unix(_)) => Ok(endpoint),
            Ok(_) => Err(refused(
                "only `unix://` sockets are accepted: the workload API over TCP is unauthenticated plaintext".to_owned(),
            )),
            Err(e) => Err(refused(e.to_string())),
        }
    }

    async fn connect(&self, status: &IdentityStatus) -> Result<X509Source, IdentityError> {
        X509Source::builder()
            .endpoint(&self.endpoint)
            .metrics(Arc::new(AgentMetrics(status.clone())))
            .initial_sync_timeout(self.startup_timeout)
            .reconnect_backoff(self.min_backoff, self.max_backoff)
            .shutdown_timeout(Some(SHUTDOWN_TIMEOUT))
            .build()
            .await
            .map_err(|e| {
                IdentityError::WorkloadApi(format!("no usable SVID from `{}`: {e}", self.endpoint))
            })
    }

    /// Waits up to `startup_timeout` for a first SVID that can be served
    /// (the agent may send one we refuse, for example not valid yet, before
    /// a good one), then keeps a task publishing every update the agent
    /// sends until nobody reads the snapshots any more.
    pub(crate) async fn follow(
        &self,
        options: &FollowOptions,
        status: IdentityStatus,
    ) -> Result<IdentityWatch, IdentityError> {
        let deadline = tokio::time::Instant::now() + self.startup_timeout;
        let source = self.connect(&status).await?;
        let mut updates = source.updated();
        loop {
            let state = source.state();
            let started = snapshot(&state).and_then(|first| {
                Publisher::start(
                    first,
                    options.trust.clone(),
                    status.clone(),
                    options.clock.clone(),
                )
            });
            let error = match started {
                Ok((publisher, watch)) => {
                    tokio::spawn(run(
                        self.clone(),
                        source,
                        state.revision(),
                        publisher,
                        status,
                    ));
                    return Ok(watch);
                }
                Err(error) => error,
            };
            tracing::warn!(%error, "first SVID from the workload API refused; waiting for another");
            status.refused(options.clock.now(), error.to_string());
            let waited = tokio::time::timeout_at(deadline, updates.changed()).await;
            if !matches!(waited, Ok(Ok(_))) {
                let _ = source.shutdown_with_timeout(SHUTDOWN_TIMEOUT).await;
                return Err(IdentityError::WorkloadApi(format!(
                    "no usable SVID from `{}` within {}s: {error}",
                    self.endpoint,
                    self.startup_timeout.as_secs()
                )));
            }
        }
    }
}

/// Why following one `X509Source` stopped.
enum Stopped {
    /// Nobody reads the snapshots: the server is gone.
    Unused,
    /// The source closed (its supervisor ended); a new one is needed.
    SourceClosed,
}

async fn run(
    config: WorkloadApiSource,
    mut source: X509Source,
    mut revision: u64,
    mut publisher: Publisher,
    status: IdentityStatus,
) {
    loop {
        let stopped = follow_updates(&source, revision, &mut publisher).await;
        let _ = source.shutdown_with_timeout(SHUTDOWN_TIMEOUT).await;
        if let Stopped::Unused = stopped {
            return;
        }
        tracing::error!(endpoint = %config.endpoint, "workload API source closed; reconnecting, the last material stays in use until it expires");
        source = loop {
            tokio::select! {
                () = publisher.closed() => return,
                connected = config.connect(&status) => match connected {
                    Ok(source) => break source,
                    Err(error) => {
                        tracing::warn!(%error, "workload API still unreachable");
                        tokio::time::sleep(config.max_backoff).await;
                    }
                },
            }
        };
        let state = source.state();
        revision = state.revision();
        offer(&mut publisher, &state);
    }
}

/// Offers one observation: material, or the agent's withdrawal of it.
fn offer(publisher: &mut Publisher, state: &X509SourceState) {
    match state.withdrawal() {
        // The agent answered `PermissionDenied`: our registration entry is
        // gone. Not a bad update to shrug off: nothing should send us work.
        Some(reason) => publisher.withdraw(reason.to_string()),
        None => {
            publisher.offer(snapshot(state));
        }
    }
}

/// Offers every observation after `revision` (the one already offered)
/// until the source closes or nobody reads the snapshots.
async fn follow_updates(
    source: &X509Source,
    mut revision: u64,
    publisher: &mut Publisher,
) -> Stopped {
    let mut updates = source.updated();
    loop {
        // Checked after subscribing, so an update that landed before the
        // subscription is not missed until the next one.
        let state = source.state();
        if state.revision() != revision {
            revision = state.revision();
            tracing::debug!(revision, "workload API update");
            offer(publisher, &state);
        }
        tokio::select! {
            () = publisher.closed() => return Stopped::Unused,
            changed = updates.changed() => if changed.is_err() {
                return Stopped::SourceClosed;
            },
        }
    }
}

/// Counts what the `X509Source` reports about the agent connection into
/// the status `/readyz` shows.
// INVARIANT: never panics: a panicking recorder ends the source's
// supervisor, and with it every later rotation.
struct AgentMetrics(IdentityStatus);

impl MetricsRecorder for AgentMetrics {
    fn record_update(&self) {
        // Counted by the publisher, which also knows whether it was taken.
    }

    fn record_reconnect(&self) {
        self.0.agent_reconnected();
    }

    fn record_error(&self, kind: MetricsErrorKind) {
        self.0.agent_error(kind.as_str(), SystemClock.now());
    }
}

/// Our SVID (the agent's default, the first it lists) and every bundle of
/// one `X509Source` observation, as a snapshot to validate.
fn snapshot(state: &X509SourceState) -> Result<Identity, IdentityError> {
    let context = state
        .context()
        .map_err(|e| IdentityError::WorkloadApi(e.to_string()))?;
    let svid = state
        .svid()
        .map_err(|e| IdentityError::WorkloadApi(format!("no usable SVID: {e}")))?;
    let chain = svid
        .cert_chain()
        .iter()
        .map(|cert| CertificateDer::from(cert.as_bytes().to_vec()))
        .collect();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        svid.private_key().as_bytes().to_vec(),
    ));
    let mut bundles = TrustBundles::default();
    for (trust_domain, bundle) in context.bundle_set().iter() {
        let cas: Vec<CertificateDer<'_>> = bundle
            .authorities()
            .iter()
            .map(|ca| CertificateDer::from(ca.as_bytes()))
            .collect();
        // An empty federated bundle is how the agent says it holds none:
        // that trust domain is not trusted.
        if !cas.is_empty() {
            bundles.add(trust_domain.clone(), &cas)?;
        }
    }
    Identity::new(chain, key, bundles)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_checked_and_bare_paths_are_unix_sockets() {
        assert_eq!(
            WorkloadApiSource::parse_endpoint("/run/spire/agent.sock").unwrap(),
            "unix:///run/spire/agent.sock"
        );
        assert!(WorkloadApiSource::parse_endpoint("unix:///tmp/a.sock").is_ok());
        let tcp = WorkloadApiSource::parse_endpoint("tcp://127.0.0.1:8081").unwrap_err();
        assert!(tcp.to_string().contains("only `unix://`"), "{tcp}");
        for bad in ["tcp://localhost:8081", "http://x", "unix://", "agent.sock"] {
            assert!(WorkloadApiSource::parse_endpoint(bad).is_err(), "{bad}");
        }
    }
}
