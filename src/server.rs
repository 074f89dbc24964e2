//! Runs Mandate: binds the gRPC and HTTP listeners, serves until told to
//! stop, then drains.

mod housekeeping;
mod svid_health;
mod trusted_callers;
mod withdrawal;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic_health::ServingStatus;

use envoy_types::ext_authz::v3::pb::AuthorizationServer;

use crate::api::v1::approval_service_server::ApprovalServiceServer;
use crate::api::v1::audit_service_server::AuditServiceServer;
use crate::api::v1::authorization_service_server::AuthorizationServiceServer;
use crate::api::v1::policy_service_server::PolicyServiceServer;
use crate::api::v1::registry_service_server::RegistryServiceServer;
use crate::api::v1::task_service_server::TaskServiceServer;
use crate::api::{
    ApprovalApi, AuditApi, AuthorizationApi, ControlGate, EnvoyApi, PolicyApi, PolicyReload,
    RegistryApi, TaskApi, Trail, TransportLimitsLayer, http, listener,
};
use crate::approval::ApprovalBook;
use crate::audit::{AuditSettings, DecisionLog, DecisionLogWriter};
use crate::clock::Clock;
use crate::credential::TaskTokens;
use crate::decision::{AgentPattern, Evaluator, Pipeline, Runner, RunnerParts};
use crate::envoy::{EnvoySettings, RouteTable};
use crate::graph::TaskGraph;
use crate::identity::{IdentityError, IdentityStatus, IdentityWatch};
use crate::metrics::{Live, Metrics};
use crate::policy::PolicyStore;
use crate::registry::Registry;
use crate::revision::Revision;

/// The gRPC service name reported by health checks.
pub const SERVICE_NAME: &str = "mandate.v1.AuthorizationService";
/// The task service's name, also reported by health checks.
pub const TASK_SERVICE_NAME: &str = "mandate.v1.TaskService";
/// Every service whose health is reported, with `""` for the server.
const HEALTH_NAMES: &[&str] = &[
    SERVICE_NAME,
    TASK_SERVICE_NAME,
    "mandate.v1.RegistryService",
    "mandate.v1.ApprovalService",
    "mandate.v1.PolicyService",
    "mandate.v1.AuditService",
    ENVOY_SERVICE_NAME,
    "",
];
/// Envoy's ext_authz service, served on the same port.
pub const ENVOY_SERVICE_NAME: &str = "envoy.service.auth.v3.Authorization";

/// Everything a server runs, built and checked by [`crate::app::App`].
pub(crate) struct Parts {
    /// gRPC (mTLS) listen address; port 0 picks a free port.
    pub(crate) listen: SocketAddr,
    /// HTTP listen address for `/healthz` and `/readyz`.
    pub(crate) http_listen: SocketAddr,
    /// The policy set in use, reloadable.
    pub(crate) policies: Arc<PolicyStore>,
    /// The live task graph.
    pub(crate) graph: Arc<TaskGraph>,
    /// The registry.
    pub(crate) registry: Arc<Registry>,
    /// Human approvals.
    pub(crate) approvals: Arc<ApprovalBook>,
    /// The revision shared by the graph, the registry and the approvals.
    pub(crate) revision: Arc<Revision>,
    /// Task token minting and verification.
    pub(crate) tokens: Arc<TaskTokens>,
    /// The clock of the decision path.
    pub(crate) clock: Arc<dyn Clock>,
    /// Our SVID and trust bundles.
    pub(crate) identity: IdentityWatch,
    /// What happened to them; `IdentityStatus::default()` for material
    /// handed over whole.
    pub(crate) identity_status: IdentityStatus,
    /// Revoke the tasks of a trust domain's agents when its bundle is
    /// withdrawn.
    pub(crate) revoke_on_trust_withdrawal: bool,
    /// How long ended tasks stay in memory.
    pub(crate) task_retention: crate::graph::Retention,
    /// Which SPIFFE IDs are agents.
    pub(crate) agents: AgentPattern,
    /// Most requests in one `BatchAuthorize`.
    pub(crate) max_batch_size: usize,
    /// A TLS handshake that takes longer is dropped.
    pub(crate) handshake_timeout: Duration,
    /// Request sizes, nesting, streams and the call deadline.
    pub(crate) limits: crate::limits::Limits,
    /// How long in-flight calls may take to finish on shutdown.
    pub(crate) shutdown_grace: Duration,
    /// How often the policy files are checked for changes; `None` turns
    /// the watch off (reloads then come from SIGHUP or `PolicyService`).
    pub(crate) policy_poll: Option<Duration>,
    /// The audit pipeline: the decision log file, stdout, rotation,
    /// overflow, redaction, the query window.
    pub(crate) audit: AuditSettings,
    /// How Envoy's `Check` reads requests.
    pub(crate) envoy: EnvoySettings,
    /// The route map of Envoy's `Check`, reloadable.
    pub(crate) routes: Arc<RouteTable>,
    /// The durable writer of the graph, approvals and registry above.
    pub(crate) journal: Arc<crate::journal::Journal>,
    /// How this replica follows the store.
    pub(crate) replica: crate::journal::ReplicaSettings,
    /// How often to check whether the sealed signing key is due for
    /// rotation; `None` when keys are files, not shared through the store.
    pub(crate) rotate_keys_every: Option<Duration>,
    /// The approvals inbox and trail pages (`[ui]`); `None`: off.
    pub(crate) ui: Option<crate::ui::UiSettings>,
    /// The AuthZEN API (`[authzen]`); `None`: off.
    pub(crate) authzen: Option<crate::api::authzen::AuthzenSettings>,
}

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ServerError {
    /// A listener could not be bound.
    #[error("cannot listen on `{addr}`: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The identity material is unusable.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The gRPC server failed.
    #[error("gRPC server: {0}")]
    Grpc(String),
    /// The store cannot be followed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The browser UI cannot start.
    #[error(transparent)]
    Ui(#[from] crate::ui::UiError),
    /// The AuthZEN API cannot start.
    #[error(transparent)]
    Authzen(#[from] crate::api::authzen::AuthzenError),
    /// The decision log cannot be opened or written.
    #[error("decision log `{path}`: {source}")]
    DecisionLog {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A running server; [`RunningServer::shutdown`] stops it gracefully.
#[derive(Debug)]
pub struct RunningServer {
    reload: PolicyReload,
    policies: Arc<PolicyStore>,
    /// Rotates the sealed signing key when due.
    key_rotation: Option<JoinHandle<()>>,
    watcher: Option<JoinHandle<()>>,
    route_watcher: Option<JoinHandle<()>>,
    routes: Arc<RouteTable>,
    /// Follows other replicas' writes (PostgreSQL only); stops when dropped.
    _follower: Option<crate::journal::Follower>,
    /// Health and withdrawals following the identity snapshots.
    identity_tasks: [JoinHandle<()>; 2],
    /// Ended tasks leaving memory, caches dropping what is past its age.
    housekeeping: JoinHandle<()>,
    log_writer: Option<DecisionLogWriter>,
    /// Prunes the audit table past its retention.
    pruner: Option<JoinHandle<()>>,
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
    readiness: http::Readiness,
    health: tonic_health::server::HealthReporter,
    stop_grpc: oneshot::Sender<()>,
    stop_http: oneshot::Sender<()>,
    grpc: JoinHandle<Result<(), tonic::transport::Error>>,
    http: JoinHandle<std::io::Result<()>>,
    accept: JoinHandle<()>,
    ui: Option<crate::ui::RunningUi>,
    authzen: Option<crate::api::authzen::RunningAuthzen>,
    grace: Duration,
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })
}

/// Binds both listeners and starts serving.
pub(crate) async fn start(options: Parts) -> Result<RunningServer, ServerError> {
    let grpc_listener = bind(options.listen).await?;
    let http_listener = bind(options.http_listen).await?;
    let grpc_addr = grpc_listener
        .local_addr()
        .map_err(|source| ServerError::Bind {
            addr: options.listen,
            source,
        })?;
    let http_addr = http_listener
        .local_addr()
        .map_err(|source| ServerError::Bind {
            addr: options.http_listen,
            source,
        })?;

    let audit = &options.audit;
    // The store sink writes to the state store's own database.
    let audit_table = audit
        .store
        .as_ref()
        .map(|_| options.journal.store().audit_table());
    let (decision_log, log_writer) = if audit.enabled() {
        let (log, writer) = DecisionLog::start(audit, audit_table.clone()).map_err(|source| {
            ServerError::DecisionLog {
                path: audit.file.clone().unwrap_or_default(),
                source,
            }
        })?;
        (Some(log), Some(writer))
    } else {
        (None, None)
    };
    // Retention runs on a task of its own, off the decision path.
    let pruner = match (&audit.store, &audit_table, &decision_log) {
        (Some(store), Some(table), Some(log)) => store.retention.map(|retention| {
            tokio::spawn(crate::audit::prune_every(
                table.clone(),
                retention,
                store.prune_every,
                log.stats(),
            ))
        }),
        _ => None,
    };
    let replica_health = crate::journal::ReplicaHealth::new(options.replica.stale_after);
    let metrics = Arc::new(Metrics::new(Live {
        policies: options.policies.clone(),
        approvals: options.approvals.clone(),
        revision: options.revision.clone(),
        audit: decision_log.as_ref().map(DecisionLog::stats),
        identity: options.identity.clone(),
        identity_status: options.identity_status.clone(),
        replica: replica_health.clone(),
    }));
    let (incoming, accept) = listener::accept(
        grpc_listener,
        options.identity.clone(),
        options.handshake_timeout,
        Some(metrics.clone()),
    )?;

    let follower = crate::journal::Follower::start(
        options.journal.clone(),
        replica_health.clone(),
        options.replica,
    )
    .await?;
    let store =
        crate::journal::StoreHandle::new(options.journal.clone(), replica_health, options.replica);
    let evaluator = Arc::new(Evaluator::new(options.agents));
    let runner = Arc::new(Runner::new(RunnerParts {
        pipeline: Pipeline::new(
            evaluator.clone(),
            options.tokens.clone(),
            options.graph.clone(),
            options.approvals.clone(),
        ),
        policies: options.policies.clone(),
        registry: options.registry.clone(),
        identity: options.identity.clone(),
        revision: options.revision.clone(),
        clock: options.clock.clone(),
        store: store.clone(),
        decision_log: decision_log.clone(),
        metrics: Some(metrics.clone()),
        limits: options.limits.clone(),
        max_batch_size: options.max_batch_size,
    }));
    let housekeeping = tokio::spawn(
        housekeeping::Housekeeping {
            graph: options.graph.clone(),
            approvals: options.approvals.clone(),
            runner: runner.clone(),
            retention: options.task_retention,
            clock: options.clock.clone(),
        }
        .run(),
    );
    let gate = ControlGate::new(
        evaluator,
        options.policies.clone(),
        options.registry.clone(),
        options.graph.clone(),
        options.clock.clone(),
    );
    let trail = Trail::new(decision_log.clone(), options.graph.clone());
    let reload = PolicyReload::new(
        options.policies.clone(),
        options.registry.clone(),
        options.clock.clone(),
    );
    let clock = options.clock.clone();
    let approval_api = ApprovalApi {
        gate: gate.clone(),
        trail: trail.clone(),
        approvals: options.approvals.clone(),
        graph: options.graph.clone(),
        registry: options.registry.clone(),
        policies: options.policies.clone(),
        journal: options.journal.clone(),
        clock: clock.clone(),
        metrics: Some(metrics.clone()),
    };
    let audit_api = AuditApi {
        gate: gate.clone(),
        decision_log: decision_log.clone(),
    };
    // Bound before anything is served, so a bad `[ui]` stops start-up.
    let ui = match options.ui {
        Some(settings) => Some(
            crate::ui::start(
                settings,
                crate::ui::UiParts {
                    approvals: approval_api.clone(),
                    book: options.approvals.clone(),
                    audit: audit_api.clone(),
                    graph: options.graph.clone(),
                    registry: options.registry.clone(),
                    revision: options.revision.clone(),
                    clock: clock.clone(),
                    identity: options.identity.clone(),
                    metrics: Some(metrics.clone()),
                },
            )
            .await?,
        ),
        None => None,
    };
    // Bound before anything is served, so a bad `[authzen]` stops start-up.
    let authzen = match options.authzen {
        Some(settings) => Some(
            crate::api::authzen::start(
                settings,
                crate::api::authzen::AuthzenParts {
                    runner: runner.clone(),
                    approvals: options.approvals.clone(),
                    graph: options.graph.clone(),
                    identity: options.identity.clone(),
                    clock: clock.clone(),
                    metrics: Some(metrics.clone()),
                    handshake_timeout: options.handshake_timeout,
                    max_request_bytes: options.limits.max_request_bytes,
                },
            )
            .await?,
        ),
        None => None,
    };
    let (health, health_service) = tonic_health::server::health_reporter();
    // Set before serving, so the first health check already tells.
    let svid_valid = svid_health::valid_now(&options.identity, clock.as_ref());
    svid_health::set(&health, HEALTH_NAMES, svid_valid).await;
    // Material handed over whole withdraws nothing; a status already
    // followed by another server is not followed twice.
    let withdrawal_events = options
        .identity_status
        .take_withdrawal_events()
        .unwrap_or_else(|| tokio::sync::mpsc::channel(1).1);
    let identity_tasks = [
        tokio::spawn(svid_health::follow(
            options.identity.clone(),
            health.clone(),
            HEALTH_NAMES,
            svid_valid,
            clock.clone(),
        )),
        tokio::spawn(withdrawal::follow(
            withdrawal_events,
            withdrawal::Withdrawals {
                graph: options.graph.clone(),
                status: options.identity_status.clone(),
                own: options.identity.borrow().trust_domain().clone(),
                revoke: options.revoke_on_trust_withdrawal,
                clock: clock.clone(),
                identity: options.identity.clone(),
                grace: options.identity_status.withdrawal_grace(),
                trail: Some(trail.clone()),
                metrics: Some(metrics.clone()),
                journal: Some(options.journal.clone()),
            },
        )),
    ];
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::api::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| ServerError::Grpc(e.to_string()))?;

    let (stop_grpc, grpc_stopped) = oneshot::channel::<()>();
    let limits = &options.limits;
    let max_bytes = limits.max_request_bytes;
    let grpc = tokio::spawn(
        tonic::transport::Server::builder()
            .max_concurrent_streams(limits.max_concurrent_streams)
            .layer(tonic::service::InterceptorLayer::new(
                trusted_callers::TrustedCallers::new(options.identity.clone(), clock.clone()),
            ))
            .layer(TransportLimitsLayer::new(limits.request_timeout, max_bytes))
            .add_service(health_service.max_decoding_message_size(max_bytes))
            .add_service(reflection.max_decoding_message_size(max_bytes))
            .add_service(
                AuthorizationServiceServer::new(AuthorizationApi::new(runner.clone()))
                    .max_decoding_message_size(max_bytes),
            )
            .add_service(
                TaskServiceServer::new(TaskApi {
                    gate: gate.clone(),
                    trail: trail.clone(),
                    graph: options.graph.clone(),
                    registry: options.registry.clone(),
                    revision: options.revision.clone(),
                    tokens: options.tokens.clone(),
                    journal: options.journal.clone(),
                    clock: clock.clone(),
                    metrics: Some(metrics.clone()),
                })
                .max_decoding_message_size(max_bytes),
            )
            .add_service(
                RegistryServiceServer::new(RegistryApi {
                    gate: gate.clone(),
                    registry: options.registry.clone(),
                    journal: options.journal.clone(),
                })
                .max_decoding_message_size(max_bytes),
            )
            .add_service(
                ApprovalServiceServer::new(approval_api).max_decoding_message_size(max_bytes),
            )
            .add_service(
                PolicyServiceServer::new(PolicyApi {
                    gate: gate.clone(),
                    policies: options.policies.clone(),
                    reload: reload.clone(),
                })
                .max_decoding_message_size(max_bytes),
            )
            .add_service(AuditServiceServer::new(audit_api).max_decoding_message_size(max_bytes))
            .add_service(
                AuthorizationServer::new(EnvoyApi::new(
                    runner.clone(),
                    Arc::new(options.envoy),
                    options.routes.clone(),
                ))
                .max_decoding_message_size(max_bytes),
            )
            .serve_with_incoming_shutdown(incoming, async {
                let _ = grpc_stopped.await;
            }),
    );

    let readiness = http::Readiness::default();
    readiness.set(true);
    let (stop_http, http_stopped) = oneshot::channel::<()>();
    let router = http::router(
        http::ReadyState {
            readiness: readiness.clone(),
            policies: options.policies.clone(),
            decision_log,
            identity: options.identity.clone(),
            identity_status: options.identity_status.clone(),
            routes: options.routes.clone(),
            store,
        },
        options.tokens,
    )
    .merge(http::metrics_router(metrics.clone()));
    let watcher = options
        .policy_poll
        .map(|interval| tokio::spawn(crate::api::watch_policies(reload.clone(), interval)));
    let route_watcher = options.policy_poll.map(|interval| {
        tokio::spawn(crate::envoy::watch_routes(
            options.routes.clone(),
            options.policies.clone(),
            interval,
        ))
    });
    let http = tokio::spawn(async move {
        axum::serve(http_listener, router)
            .with_graceful_shutdown(async {
                let _ = http_stopped.await;
            })
            .await
    });

    tracing::info!(grpc = %grpc_addr, http = %http_addr, "serving");
    let key_rotation = options
        .rotate_keys_every
        .map(|every| tokio::spawn(crate::journal::rotate_keys(options.journal.clone(), every)));
    Ok(RunningServer {
        reload,
        policies: options.policies,
        key_rotation,
        watcher,
        route_watcher,
        routes: options.routes,
        _follower: follower,
        identity_tasks,
        housekeeping,
        log_writer,
        pruner,
        grpc_addr,
        http_addr,
        readiness,
        health,
        stop_grpc,
        stop_http,
        grpc,
        http,
        accept,
        ui,
        authzen,
        grace: options.shutdown_grace,
    })
}

impl RunningServer {
    /// The bound gRPC address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// The bound HTTP address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The bound address of the browser UI, when it is on.
    pub fn ui_addr(&self) -> Option<SocketAddr> {
        self.ui.as_ref().map(crate::ui::RunningUi::addr)
    }

    /// The bound address of the AuthZEN API, when it is on.
    pub fn authzen_addr(&self) -> Option<SocketAddr> {
        self.authzen
            .as_ref()
            .map(crate::api::authzen::RunningAuthzen::addr)
    }

    /// Reloads the policy files (as on SIGHUP): `Ok(false)` when nothing
    /// changed; a set that does not load or that the registry does not fit
    /// is refused and the one in use stays.
    pub async fn reload_policies(&self, trigger: &'static str) -> Result<bool, Vec<String>> {
        let reload = self.reload.clone();
        tokio::task::spawn_blocking(move || reload.reload(trigger))
            .await
            .unwrap_or_else(|e| Err(vec![format!("reload task failed: {e}")]))
    }

    /// Reloads the route map of Envoy's `Check` (as on SIGHUP); `Ok(false)`
    /// when it is unchanged or there is none.
    pub async fn reload_routes(&self) -> Result<bool, Vec<String>> {
        let (routes, policies) = (self.routes.clone(), self.policies.clone());
        tokio::task::spawn_blocking(move || routes.reload(&policies.current()))
            .await
            .unwrap_or_else(|e| Err(vec![format!("reload task failed: {e}")]))
    }

    /// Health to NOT_SERVING, stop accepting, let in-flight calls finish
    /// within the grace period, then stop.
    pub async fn shutdown(self) -> Result<(), ServerError> {
        self.readiness.set(false);
        // Stopped first, so health cannot flip back to SERVING below.
        for task in &self.identity_tasks {
            task.abort();
        }
        self.housekeeping.abort();
        for name in HEALTH_NAMES {
            self.health
                .set_service_status(*name, ServingStatus::NotServing)
                .await;
        }
        self.accept.abort();
        if let Some(ui) = self.ui {
            ui.shutdown(self.grace).await;
        }
        if let Some(authzen) = self.authzen {
            authzen.shutdown(self.grace).await;
        }
        if let Some(watcher) = &self.watcher {
            watcher.abort();
        }
        if let Some(watcher) = &self.route_watcher {
            watcher.abort();
        }
        if let Some(pruner) = &self.pruner {
            pruner.abort();
        }
        if let Some(rotation) = &self.key_rotation {
            rotation.abort();
        }
        let _ = self.stop_grpc.send(());
        let mut grpc = self.grpc;
        let result = match tokio::time::timeout(self.grace, &mut grpc).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(ServerError::Grpc(e.to_string())),
            Ok(Err(e)) => Err(ServerError::Grpc(e.to_string())),
            Err(_) => {
                tracing::warn!(grace = ?self.grace, "in-flight calls did not finish in time");
                // Stopped, so the services let go of the decision log and
                // it can be flushed below.
                grpc.abort();
                let _ = grpc.await;
                Ok(())
            }
        };
        let _ = self.stop_http.send(());
        let mut http = self.http;
        if tokio::time::timeout(self.grace, &mut http).await.is_err() {
            http.abort();
            let _ = http.await;
        }
        // The writer ends once the last handle to the log is gone: the
        // services are, the watcher is aborted, ours goes now.
        if let Some(watcher) = self.watcher {
            let _ = watcher.await;
        }
        if let Some(writer) = self.log_writer {
            match tokio::time::timeout(self.grace, writer.finish()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "decision log not flushed"),
                Err(_) => tracing::warn!("decision log not flushed within the grace period"),
            }
        }
        result
    }
}
