//! `[server]`: the gRPC and HTTP listeners, the data directory, and how
//! the process treats connections and calls.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigErrors;
use super::reference::{Section, key};

/// Upper bound on `max_batch_size`, so one call cannot monopolise a core.
const MAX_BATCH_SIZE_LIMIT: usize = 10_000;

/// The `[server]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// gRPC listen address.
    pub listen: String,
    /// HTTP listen address.
    pub http_listen: String,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Most requests in one `BatchAuthorize`.
    pub max_batch_size: usize,
    /// TLS handshake timeout, seconds.
    pub handshake_timeout_secs: u64,
    /// Shutdown grace period, seconds.
    pub shutdown_grace_secs: u64,
    /// Log lines as `json` or `human`.
    pub log_format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// For people.
    #[default]
    Human,
    /// One JSON object a line, with the current spans.
    Json,
}

/// The gRPC listen address when nothing says otherwise; the client
/// commands' default `--server` too.
pub const LISTEN: &str = "127.0.0.1:7443";
/// The data directory when nothing says otherwise.
pub const DATA_DIR: &str = "./data";

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: LISTEN.to_owned(),
            http_listen: "127.0.0.1:7080".to_owned(),
            data_dir: DATA_DIR.into(),
            max_batch_size: 100,
            handshake_timeout_secs: 10,
            shutdown_grace_secs: 10,
            log_format: LogFormat::Human,
        }
    }
}

/// `[server]` checked.
pub(super) struct Server {
    pub listen: SocketAddr,
    pub http_listen: SocketAddr,
    pub handshake_timeout: Duration,
    pub shutdown_grace: Duration,
}

impl ServerConfig {
    /// The addresses and durations; `None` when an address is bad.
    pub(super) fn validate(&self, errors: &mut ConfigErrors) -> Option<Server> {
        let mut addr = |key: &str, value: &str| {
            value
                .parse::<SocketAddr>()
                .map_err(|e| {
                    errors.bad(
                        key,
                        value,
                        format!("is not an address like 127.0.0.1:7443: {e}"),
                    )
                })
                .ok()
        };
        let listen = addr("server.listen", &self.listen);
        let http_listen = addr("server.http_listen", &self.http_listen);
        if let (Some(a), Some(b)) = (listen, http_listen)
            && a == b
            && a.port() != 0
        {
            errors.bad(
                "server.listen",
                a,
                "is `server.http_listen` too; give them different ports",
            );
        }
        if !(1..=MAX_BATCH_SIZE_LIMIT).contains(&self.max_batch_size) {
            errors.bad(
                "server.max_batch_size",
                self.max_batch_size,
                format!("is outside 1..={MAX_BATCH_SIZE_LIMIT}"),
            );
        }
        errors.at_least_one("server.handshake_timeout_secs", self.handshake_timeout_secs);
        Some(Server {
            listen: listen?,
            http_listen: http_listen?,
            handshake_timeout: Duration::from_secs(self.handshake_timeout_secs),
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
        })
    }
}

pub(super) const SECTION: Section = Section {
    name: "server",
    doc: "The listeners and the process.",
    optional: false,
    keys: &[
        key(
            "listen",
            "gRPC over SPIFFE mTLS: the mandate.v1 services, health, reflection, Envoy's Check.",
        ),
        key("http_listen", "HTTP: /metrics, /healthz, /readyz."),
        key(
            "data_dir",
            "Holds the dev trust domain (DIR/dev), the SQLite store and the signing keys.",
        ),
        key(
            "max_batch_size",
            "Most requests in one BatchAuthorize (1 to 10000).",
        ),
        key(
            "handshake_timeout_secs",
            "A TLS handshake that takes longer is dropped.",
        ),
        key(
            "shutdown_grace_secs",
            "How long in-flight calls may take on shutdown.",
        ),
        key(
            "log_format",
            "Log lines as \"json\" (with the current spans: decision_id) or \"human\".",
        ),
    ],
};
