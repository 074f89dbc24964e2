//! Server configuration: `mandate.toml`, one struct per section, each
//! defaulted by `serde` (its `Default` is the only place a default is
//! written) and checked by its `validate`; flags are applied over the file
//! in one place (`mandate serve`); every problem is reported at once, each
//! naming its key as `section.key`. [`reference`] describes the file, from
//! which `mandate config print-default` writes `mandate.toml.example`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use spiffe::TrustDomain;

use crate::credential::{KeyRotation, TokenSettings};
use crate::envoy::EnvoySettings;
use crate::identity::{FollowOptions, IdentitySource};
use crate::registry::SensitivityScale;

mod audit;
mod authzen;
mod envoy;
mod error;
mod identity;
mod limits;
mod policies;
pub mod reference;
mod server;
mod store;
mod telemetry;
mod tokens;
mod ui;

pub use audit::AuditConfig;
pub use authzen::{ApiKeyConfig, AuthzenConfig};
pub use envoy::EnvoyConfig;
pub use error::{ConfigError, ConfigErrors};
pub use identity::{DEV_TRUST_DOMAIN, IdentityConfig};
pub use limits::LimitsConfig;
pub use policies::{CATALOG_FILE, POLICIES, PoliciesConfig, SCHEMA};
pub use server::{DATA_DIR, LISTEN, LogFormat, ServerConfig};
pub use store::{STORE_FILE, StoreConfig};
pub use telemetry::{OTLP_ENDPOINT_VAR, TelemetryConfig, TelemetrySettings};
pub use tokens::{TasksConfig, TokensConfig};
pub use ui::{UiConfig, WebhookConfig};

/// Config file read when present and `--config` is not given.
pub const CONFIG_FILE: &str = "./mandate.toml";
/// The environment variable naming the workload API socket.
pub const SPIFFE_ENDPOINT_SOCKET: &str = "SPIFFE_ENDPOINT_SOCKET";

/// `mandate.toml`: every section, each at its defaults when absent.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[server]`: listeners and the process.
    pub server: ServerConfig,
    /// `[identity]`: our SVID and whom we trust.
    pub identity: IdentityConfig,
    /// `[store]`: persistence and replicas.
    pub store: StoreConfig,
    /// `[tokens]`: task tokens and signing keys.
    pub tokens: TokensConfig,
    /// `[tasks]`: delegation and retention.
    pub tasks: TasksConfig,
    /// `[policies]`: policies, schema, registry catalog.
    pub policies: PoliciesConfig,
    /// `[audit]`: the audit trail.
    pub audit: AuditConfig,
    /// `[envoy]`: Envoy's ext_authz.
    pub envoy: EnvoyConfig,
    /// `[limits]`: bounds on hostile input.
    pub limits: LimitsConfig,
    /// `[telemetry]`: OpenTelemetry export.
    pub telemetry: TelemetryConfig,
    /// `[authzen]`: the AuthZEN 1.0 API.
    pub authzen: AuthzenConfig,
    /// `[ui]`: the approvals inbox and trail pages.
    pub ui: UiConfig,
}

impl Config {
    /// Reads a `mandate.toml`.
    pub fn from_file(path: &Path) -> Result<Self, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text, path)
    }

    /// Parses the text of a `mandate.toml` read from `path`. Unknown keys
    /// and keys of the old flat layout are refused, all of them named.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, ConfigErrors> {
        let syntax = |e: toml::de::Error| ConfigError::Syntax {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        };
        let table: toml::Table = toml::from_str(text).map_err(syntax)?;
        reference::check_keys(&table, path)?;
        Ok(toml::from_str(text).map_err(syntax)?)
    }

    /// Checks every section; the settings `serve` runs with, or every
    /// problem found. `SPIFFE_ENDPOINT_SOCKET` names the workload API
    /// socket when the config does not.
    pub fn validate(self) -> Result<Settings, ConfigErrors> {
        self.validate_with_env(std::env::var(SPIFFE_ENDPOINT_SOCKET).ok())
    }

    /// [`Config::validate`] with `SPIFFE_ENDPOINT_SOCKET` given.
    pub fn validate_with_env(self, env_socket: Option<String>) -> Result<Settings, ConfigErrors> {
        let mut errors = ConfigErrors::default();
        let data_dir = self.server.data_dir.clone();
        let server = self.server.validate(&mut errors);
        let identity = self.identity.validate(&data_dir, env_socket, &mut errors);
        let (store, replica) = self.store.validate(&data_dir, &mut errors);
        let (tokens, key_rotation) = self.tokens.validate(&mut errors);
        let task_retention = self.tasks.validate(&tokens, &mut errors);
        let (sensitivity, policy_poll) = self.policies.validate(&mut errors);
        let envoy = self.envoy.validate(&mut errors);
        let audit = self.audit.validate(&envoy.token_header, &mut errors);
        let limits = self.limits.validate(&mut errors);
        let telemetry = self
            .telemetry
            .validate(std::env::var(OTLP_ENDPOINT_VAR).ok(), &mut errors);
        let ui = self
            .ui
            .validate(identity.as_ref().map(|i| &i.source), &mut errors);
        let authzen = self.authzen.validate(&mut errors);
        let (Some(server), Some(identity)) = (server, identity) else {
            return Err(errors);
        };
        errors.or_ok(Settings {
            listen: server.listen,
            http_listen: server.http_listen,
            data_dir,
            policies: self.policies.dir,
            schema: self.policies.schema,
            entities: self.policies.entities,
            catalog: self.policies.catalog,
            sensitivity,
            policy_validation_level: self.policies.validation_level,
            decision_log: self.audit.file,
            decision_log_capacity: self.audit.capacity,
            policy_poll,
            identity: identity.source,
            identity_follow: identity.follow,
            revoke_on_trust_withdrawal: self.identity.revoke_on_trust_withdrawal,
            max_batch_size: self.server.max_batch_size,
            agent_path_prefixes: self.identity.agent_path_prefixes,
            agent_trust_domains: identity.agent_trust_domains,
            handshake_timeout: server.handshake_timeout,
            limits,
            shutdown_grace: server.shutdown_grace,
            max_delegation_depth: self.tasks.max_delegation_depth,
            task_retention,
            tokens,
            key_rotation,
            envoy,
            log_json: self.server.log_format == LogFormat::Json,
            audit,
            telemetry,
            store,
            replica,
            store_key_file: self.store.key_file,
            ui,
            authzen,
        })
    }
}

/// Validated settings for `mandate serve`.
#[derive(Debug, Clone)]
pub struct Settings {
    /// gRPC listen address.
    pub listen: SocketAddr,
    /// HTTP listen address.
    pub http_listen: SocketAddr,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Policies directory.
    pub policies: PathBuf,
    /// Cedar schema file.
    pub schema: PathBuf,
    /// Cedar entities JSON file.
    pub entities: Option<PathBuf>,
    /// Registry catalog file.
    pub catalog: Option<PathBuf>,
    /// The sensitivity scale.
    pub sensitivity: SensitivityScale,
    /// How often policy files are checked for changes; `None`: never.
    pub policy_poll: Option<Duration>,
    /// Cedar level-based validation level, if any.
    pub policy_validation_level: Option<u32>,
    /// JSON-lines file of decision records, if any.
    pub decision_log: Option<PathBuf>,
    /// Most decision records waiting to be written.
    pub decision_log_capacity: usize,
    /// Where our identity comes from.
    pub identity: IdentitySource,
    /// The trust policy and how often files are checked.
    pub identity_follow: FollowOptions,
    /// Revoke a trust domain's agents' tasks when its bundle is withdrawn.
    pub revoke_on_trust_withdrawal: bool,
    /// Most requests in one `BatchAuthorize`.
    pub max_batch_size: usize,
    /// SPIFFE ID path prefixes that denote agents.
    pub agent_path_prefixes: Vec<String>,
    /// Trust domains the prefixes apply to; `None` means our own.
    pub agent_trust_domains: Option<Vec<TrustDomain>>,
    /// TLS handshake timeout.
    pub handshake_timeout: Duration,
    /// Request sizes, nesting, streams and the call deadline.
    pub limits: crate::limits::Limits,
    /// Shutdown grace period.
    pub shutdown_grace: Duration,
    /// Longest delegation chain.
    pub max_delegation_depth: u32,
    /// How long ended tasks stay in memory, and evicted ids are
    /// remembered.
    pub task_retention: crate::graph::Retention,
    /// Task token lifetimes.
    pub tokens: TokenSettings,
    /// Signing key rotation.
    pub key_rotation: KeyRotation,
    /// Envoy ext_authz.
    pub envoy: EnvoySettings,
    /// Log lines as JSON (else for humans).
    pub log_json: bool,
    /// The audit pipeline but its file and capacity (`decision_log`,
    /// `decision_log_capacity`).
    pub audit: crate::audit::AuditSettings,
    /// OpenTelemetry export.
    pub telemetry: TelemetrySettings,
    /// The store URL.
    pub store: String,
    /// How this replica follows the store.
    pub replica: crate::journal::ReplicaSettings,
    /// The file with the key sealing signing keys in the store, if any.
    pub store_key_file: Option<PathBuf>,
    /// The browser pages; `None`: off.
    pub ui: Option<crate::ui::UiSettings>,
    /// The AuthZEN API; `None`: off.
    pub authzen: Option<crate::api::authzen::AuthzenSettings>,
}

#[cfg(test)]
mod tests;
