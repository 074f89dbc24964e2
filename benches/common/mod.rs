//! Set-up shared by the benches: the shipped policies and example catalog,
//! and a Mandate server on a dev trust domain with a client's channel.

#![allow(dead_code, reason = "each bench uses part of it")]

use std::path::PathBuf;
use std::sync::Arc;

use mandate::app::{App, Seams};
use mandate::config::Config;
use mandate::decision::{AgentPattern, DEFAULT_AGENT_PATH_PREFIXES};
use mandate::identity::{TrustDomain, dev::DevTrustDomain};
use mandate::policy::PolicyEngine;
use mandate::registry::{Catalog, Registry, SensitivityScale};
use mandate::server::RunningServer;
use tonic::transport::Channel;

pub mod cerbos;
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
    /// Built by the same composition root as `mandate serve`, on its
    /// defaults but for the example catalog and Envoy route map.
    pub async fn start(dir: &std::path::Path) -> Self {
        let mut config = Config::default();
        config.server.listen = "127.0.0.1:0".to_owned();
        config.server.http_listen = "127.0.0.1:0".to_owned();
        config.server.data_dir = dir.to_owned();
        config.policies.dir = repo().join("policies");
        config.policies.schema = repo().join("schemas/mandate.cedarschema");
        config.policies.catalog = Some(repo().join("examples/catalog.toml"));
        let mut settings = config.validate_with_env(None).unwrap();
        settings.envoy.route_map = Some(repo().join("examples/envoy/routes.toml"));
        // The AuthZEN door on a port of its own, as `--authzen-listen`.
        settings.authzen = Some(mandate::api::authzen::AuthzenSettings {
            listen: "127.0.0.1:0".parse().unwrap(),
            public_url: None,
            types: mandate::api::authzen::TypeMap {
                subjects: [("user".to_owned(), "Mandate::User".parse().unwrap())].into(),
                ..Default::default()
            },
            api_keys: Default::default(),
        });
        // What `mandate serve` runs with: the in-memory audit index on, no
        // file. `BENCH_AUDIT=off` measures the bare decision path.
        if std::env::var("BENCH_AUDIT").as_deref() == Ok("off") {
            settings.audit = mandate::audit::AuditSettings::off();
        }
        let app = App::build(settings, Seams::default()).await.unwrap();
        let dev = app.dev_trust_domain().unwrap().clone();
        let server = app.start().await.unwrap();
        let sample = dev.samples.first().unwrap();
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

    /// An HTTP/2 client of the AuthZEN listener presenting the sample SVID
    /// for `path` (its own mTLS connection), and the listener's base URL.
    pub fn authzen_as(&self, path: &str) -> (reqwest::Client, String) {
        let addr = self.server.authzen_addr().unwrap();
        (
            self.https_client_as(path),
            format!("https://localhost:{}", addr.port()),
        )
    }

    /// An HTTP/2 client presenting the sample SVID for `path` that accepts
    /// any server SVID of the dev trust domain (one mTLS connection per
    /// server it talks to).
    pub fn https_client_as(&self, path: &str) -> reqwest::Client {
        let sample = self.sample(path);
        let identity =
            mandate::client::identity_from_files(&sample.cert, &sample.key, &self.dev.bundle, None)
                .unwrap();
        let config = mandate::identity::client_config(&identity, None).unwrap();
        reqwest::Client::builder()
            .use_preconfigured_tls((*config).clone())
            .http2_prior_knowledge()
            .build()
            .unwrap()
    }

    /// Mandate's own SVID and the trust bundle, for another server to serve
    /// TLS from the same trust domain.
    pub fn server_tls(&self) -> (&mandate::identity::dev::SvidFiles, &std::path::Path) {
        (&self.dev.server, &self.dev.bundle)
    }

    /// A new mTLS connection as the sample agent.
    pub async fn channel(&self) -> Channel {
        mandate::client::channel(&self.addr, &self.identity, None)
            .await
            .unwrap()
    }
}
