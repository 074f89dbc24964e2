//! Set-up shared by the benches: the shipped policies and example catalog,
//! and a Mandate server on a dev trust domain with a client's channel.

#![allow(dead_code, reason = "each bench uses part of it")]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mandate::clock::SystemClock;
use mandate::credential::{KeyRotation, SigningKeys, TaskTokens, TokenSettings};
use mandate::decision::{AgentPattern, DEFAULT_AGENT_PATH_PREFIXES};
use mandate::envoy::{EnvoySettings, RouteTable};
use mandate::graph::TaskGraph;
use mandate::identity::{IdentitySource, TrustDomain, dev::DevTrustDomain};
use mandate::policy::{PolicyEngine, PolicyStore};
use mandate::registry::{Catalog, Registry, SensitivityScale};
use mandate::server::{RunningServer, ServerOptions, start};
use tonic::transport::Channel;

pub mod serve;

/// A numeric knob from the environment, `default` when unset or not a
/// number.
pub fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shipped policies.
pub fn engine() -> PolicyEngine {
    PolicyEngine::load(
        &repo().join("policies"),
        &repo().join("schemas/mandate.cedarschema"),
    )
    .unwrap()
}

/// The example catalog's registry.
pub fn registry(engine: &PolicyEngine) -> Registry {
    Registry::new(
        Catalog::load(&repo().join("examples/catalog.toml"))
            .unwrap()
            .into_entries()
            .unwrap(),
        &cedar_policy::Entities::empty(),
        engine.schema(),
        SensitivityScale::default(),
        "mandate.local",
        Arc::default(),
    )
    .unwrap()
}

pub fn agents() -> AgentPattern {
    AgentPattern::new(
        DEFAULT_AGENT_PATH_PREFIXES.iter().map(|p| (*p).to_owned()),
        [TrustDomain::new("mandate.local").unwrap()],
    )
}

/// A server on a fresh dev trust domain under `dir`, and a way to open
/// channels presenting the sample agent's SVID (each a new mTLS
/// connection).
pub struct DevServer {
    pub server: RunningServer,
    addr: String,
    identity: Arc<mandate::identity::Identity>,
    dev: DevTrustDomain,
}

impl DevServer {
    pub async fn start(dir: &std::path::Path) -> Self {
        let trust_domain = TrustDomain::new("mandate.local").unwrap();
        let dev = DevTrustDomain::init(dir, &trust_domain, &[]).unwrap();
        let sample = dev.samples.first().unwrap().clone();
        let identity = IdentitySource::Dev {
            dir: dir.to_owned(),
            trust_domain,
        }
        .open()
        .await
        .unwrap();
        let engine = engine();
        let engine_for_routes = self::engine();
        let revision: Arc<mandate::revision::Revision> = Arc::default();
        let registry = Arc::new(registry(&engine));
        let graph = Arc::new(TaskGraph::with_revision(
            mandate::graph::DEFAULT_MAX_DEPTH,
            revision.clone(),
        ));
        let approvals = Arc::new(mandate::approval::ApprovalBook::new(revision.clone()));
        let journal = Arc::new(mandate::store::Journal::new(
            mandate::store::boot::scratch(dir).await.unwrap(),
            graph.clone(),
            approvals.clone(),
            registry.clone(),
            revision.clone(),
        ));
        let server = start(ServerOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            http_listen: "127.0.0.1:0".parse().unwrap(),
            registry,
            policies: Arc::new(PolicyStore::new(engine, None, 0)),
            graph,
            approvals,
            revision,
            journal,
            replica: mandate::store::ReplicaSettings::default(),
            tokens: Arc::new(TaskTokens::new(
                Arc::new(SigningKeys::ephemeral(
                    KeyRotation::default(),
                    Arc::new(SystemClock),
                )),
                TokenSettings::default(),
                Arc::new(SystemClock),
            )),
            clock: Arc::new(SystemClock),
            identity,
            identity_status: mandate::identity::IdentityStatus::default(),
            revoke_on_trust_withdrawal: true,
            agents: agents(),
            max_batch_size: 100,
            handshake_timeout: Duration::from_secs(5),
            limits: mandate::limits::Limits::default(),
            shutdown_grace: Duration::from_secs(5),
            policy_poll: None,
            decision_log: None,
            decision_log_capacity: 1,
            // What `mandate serve` runs with: the in-memory audit index on,
            // no file. `BENCH_AUDIT=off` measures the bare decision path.
            audit: if std::env::var("BENCH_AUDIT").as_deref() == Ok("off") {
                mandate::audit::AuditSettings::off()
            } else {
                mandate::audit::AuditSettings::default()
            },
            envoy: EnvoySettings::default(),
            routes: Arc::new(
                RouteTable::load(
                    &repo().join("examples/envoy/routes.toml"),
                    &engine_for_routes,
                )
                .unwrap(),
            ),
        })
        .await
        .unwrap();
        let identity =
            mandate::client::identity_from_files(&sample.cert, &sample.key, &dev.bundle, None)
                .unwrap();
        let addr = server.grpc_addr().to_string();
        Self {
            server,
            addr,
            identity,
            dev,
        }
    }

    /// The dev sample SVID for `path` (such as `workloads/envoy`).
    pub fn sample(&self, path: &str) -> &mandate::identity::dev::SvidFiles {
        self.dev
            .samples
            .iter()
            .find(|s| s.spiffe_id.ends_with(&format!("/{path}")))
            .unwrap()
    }

    /// A new mTLS connection presenting the sample SVID for `path`.
    pub async fn channel_as(&self, path: &str) -> Channel {
        let sample = self.sample(path);
        let identity =
            mandate::client::identity_from_files(&sample.cert, &sample.key, &self.dev.bundle, None)
                .unwrap();
        mandate::client::channel(&self.addr, &identity, None)
            .await
            .unwrap()
    }

    /// A new mTLS connection as the sample agent.
    pub async fn channel(&self) -> Channel {
        mandate::client::channel(&self.addr, &self.identity, None)
            .await
            .unwrap()
    }
}
