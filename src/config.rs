//! Server configuration: `mandate.toml` and command-line flags, merged
//! (flags win), defaulted in one place and validated before any port is bound.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use spiffe::TrustDomain;

use crate::credential::{KeyRotation, TokenSettings};
use crate::decision::DEFAULT_AGENT_PATH_PREFIXES;
use crate::envoy::EnvoySettings;
use crate::identity::{FollowOptions, IdentitySource};
use crate::registry::SensitivityScale;

mod audit;
mod authzen;
mod identity;
mod limits;
mod telemetry;
mod ui;

pub use audit::RawAudit;
pub use authzen::RawAuthzen;
pub use limits::RawLimits;
pub use telemetry::{OTLP_ENDPOINT_VAR, RawTelemetry, TelemetrySettings};
pub use ui::{RawUi, RawWebhook};

/// Defaults, in one place.
pub mod defaults {
    /// gRPC listen address.
    pub const LISTEN: &str = "127.0.0.1:7443";
    /// HTTP listen address.
    pub const HTTP_LISTEN: &str = "127.0.0.1:7080";
    /// Data directory.
    pub const DATA_DIR: &str = "./data";
    /// Policies directory.
    pub const POLICIES: &str = "./policies";
    /// Schema file.
    pub const SCHEMA: &str = "./schemas/mandate.cedarschema";
    /// Config file read when present and `--config` is not given.
    pub const CONFIG_FILE: &str = "./mandate.toml";
    /// Decision records waiting to be written before new ones are dropped.
    pub const DECISION_LOG_CAPACITY: usize = 10_000;
    /// How often policy files are checked for changes, ms.
    pub const POLICY_POLL_MS: u64 = 1000;
    /// Catalog file name looked for beside the config file.
    pub const CATALOG_FILE: &str = "catalog.toml";
    /// Trust domain of the dev identity.
    pub const DEV_TRUST_DOMAIN: &str = "mandate.local";
    /// How often SVID and bundle files are checked for changes, ms.
    pub const IDENTITY_POLL_MS: u64 = 1000;
    /// How long start-up waits for a first SVID from the workload API, s.
    pub const WORKLOAD_API_TIMEOUT_SECS: u64 = 30;
    /// Revoke a trust domain's agents' tasks when its bundle is withdrawn.
    pub const REVOKE_ON_TRUST_WITHDRAWAL: bool = true;
    /// How long a withdrawn bundle must stay away before tasks are revoked, s.
    pub const WITHDRAWAL_GRACE_SECS: u64 = 30;
    /// The environment variable naming the workload API socket.
    pub const SPIFFE_ENDPOINT_SOCKET: &str = "SPIFFE_ENDPOINT_SOCKET";
    /// Most requests in one `BatchAuthorize`.
    pub const MAX_BATCH_SIZE: usize = 100;
    /// TLS handshake timeout, seconds.
    pub const HANDSHAKE_TIMEOUT_SECS: u64 = 10;
    /// Shutdown grace period, seconds.
    pub const SHUTDOWN_GRACE_SECS: u64 = 10;
    /// Longest delegation chain.
    pub const MAX_DELEGATION_DEPTH: u32 = crate::graph::DEFAULT_MAX_DEPTH;
    /// How long an ended task stays in memory before only the store and
    /// the audit trail hold it, seconds.
    pub const TASK_RETENTION_SECS: i64 = 300;
    /// Task token lifetime when none is asked for, seconds.
    pub const TOKEN_TTL_SECS: i64 = 300;
    /// Longest task token lifetime, seconds.
    pub const TOKEN_MAX_TTL_SECS: i64 = 3600;
    /// Signing key rotation period, seconds.
    pub const KEY_ROTATION_SECS: i64 = 24 * 3600;
    /// How long a retired signing key still verifies, seconds.
    pub const KEY_OVERLAP_SECS: i64 = 2 * 3600;
    /// The SQLite file of the default store, under the data dir.
    pub const STORE_FILE: &str = "mandate.db";
    /// A replica that has not reached the store for longer denies
    /// everything (`state-unavailable`), ms.
    pub const STORE_STALE_AFTER_MS: u64 = 5000;
    /// Longest wait of a decision for its `min_revision`, ms.
    pub const MIN_REVISION_WAIT_MS: u64 = 1000;
    /// How often a replica catches up without a notification, ms.
    pub const STORE_POLL_MS: u64 = 500;
}

/// Upper bound on `max_batch_size`, so one call cannot monopolise a core.
const MAX_BATCH_SIZE_LIMIT: usize = 10_000;

/// The keys of `mandate.toml`; the command line fills the same struct.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// gRPC listen address.
    pub listen: Option<String>,
    /// HTTP listen address.
    pub http_listen: Option<String>,
    /// Data directory.
    pub data_dir: Option<PathBuf>,
    /// Policies directory.
    pub policies: Option<PathBuf>,
    /// Cedar schema file.
    pub schema: Option<PathBuf>,
    /// Cedar entities JSON file.
    pub entities: Option<PathBuf>,
    /// Registry catalog (TOML).
    pub catalog: Option<PathBuf>,
    /// Sensitivity level names, lowest first.
    pub sensitivity_levels: Option<Vec<String>>,
    /// How often policy files are checked for changes, ms; 0 turns it off.
    pub policy_poll_ms: Option<u64>,
    /// Cedar level-based validation of the policies at this level.
    pub policy_validation_level: Option<u32>,
    /// JSON-lines file of decision records.
    pub decision_log: Option<PathBuf>,
    /// Most decision records waiting to be written.
    pub decision_log_capacity: Option<usize>,
    /// Identity source: `files`, `workload-api` or `dev`.
    pub identity: Option<String>,
    /// The SPIRE agent's Workload API socket (`unix:///path`).
    pub workload_api_socket: Option<String>,
    /// How long start-up waits for a first SVID from the workload API, s.
    pub workload_api_timeout_secs: Option<u64>,
    /// How often SVID and bundle files are checked, ms; 0 turns it off.
    pub identity_poll_ms: Option<u64>,
    /// Trust domains whose callers are accepted (given a bundle).
    pub trusted_trust_domains: Option<Vec<String>>,
    /// Revoke a trust domain's agents' tasks when its bundle is withdrawn.
    pub revoke_on_trust_withdrawal: Option<bool>,
    /// How long a withdrawn bundle must stay away before tasks are revoked, s.
    pub withdrawal_grace_secs: Option<u64>,
    /// Our SVID chain (PEM).
    pub svid_cert: Option<PathBuf>,
    /// Our SVID key (PEM).
    pub svid_key: Option<PathBuf>,
    /// Trust domain to bundle file.
    pub trust_bundles: Option<BTreeMap<String, PathBuf>>,
    /// Trust domain of the dev identity.
    pub dev_trust_domain: Option<String>,
    /// Most requests in one `BatchAuthorize`.
    pub max_batch_size: Option<usize>,
    /// SPIFFE ID path prefixes that denote agents.
    pub agent_path_prefixes: Option<Vec<String>>,
    /// Trust domains whose IDs the agent path prefixes apply to.
    pub agent_trust_domains: Option<Vec<String>>,
    /// TLS handshake timeout, seconds.
    pub handshake_timeout_secs: Option<u64>,
    /// Shutdown grace period, seconds.
    pub shutdown_grace_secs: Option<u64>,
    /// Longest delegation chain.
    pub max_delegation_depth: Option<u32>,
    /// How long an ended task stays in memory, seconds.
    pub task_retention_secs: Option<i64>,
    /// Default task token lifetime, seconds.
    pub token_ttl_secs: Option<i64>,
    /// Longest task token lifetime, seconds.
    pub token_max_ttl_secs: Option<i64>,
    /// Signing key rotation period, seconds.
    pub key_rotation_secs: Option<i64>,
    /// How long a retired signing key still verifies, seconds.
    pub key_overlap_secs: Option<i64>,
    /// Envoy ext_authz (`[envoy]`).
    pub envoy: Option<RawEnvoy>,
    /// Log lines as `json` or `human` (default).
    pub log_format: Option<String>,
    /// The audit pipeline (`[audit]`).
    pub audit: Option<RawAudit>,
    /// Bounds on hostile input (`[limits]`).
    pub limits: Option<RawLimits>,
    /// OpenTelemetry export (`[telemetry]`).
    pub telemetry: Option<RawTelemetry>,
    /// The `[ui]` table: the approvals inbox and trail pages.
    pub ui: Option<RawUi>,
    /// The `[authzen]` table: the AuthZEN 1.0 API.
    pub authzen: Option<RawAuthzen>,
    /// The store: `sqlite://PATH` or `postgres://...`.
    pub store: Option<String>,
    /// A replica out of contact with the store for longer denies, ms.
    pub store_stale_after_ms: Option<u64>,
    /// Longest wait of a decision for its `min_revision`, ms.
    pub min_revision_wait_ms: Option<u64>,
    /// How often a replica catches up without a notification, ms.
    pub store_poll_ms: Option<u64>,
    /// A file holding the key (32 bytes, base64) that seals signing keys
    /// in the store; without it (or `MANDATE_STORE_KEY`), signing keys
    /// are files under the data dir.
    pub store_key_file: Option<PathBuf>,
}

/// The `[envoy]` table of `mandate.toml`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEnvoy {
    /// Route map file (TOML).
    pub route_map: Option<PathBuf>,
    /// The header carrying the task token.
    pub token_header: Option<String>,
    /// Also accept `authorization: Bearer <token>`.
    pub accept_bearer: Option<bool>,
    /// Refuse requests without a task token (401).
    pub require_token: Option<bool>,
    /// Refuse requests whose downstream certificate was not forwarded.
    pub require_certificate: Option<bool>,
    /// Read the subject from `x-forwarded-client-cert`.
    pub trust_xfcc: Option<bool>,
    /// Add `x-mandate-task` to allowed requests.
    pub task_header: Option<bool>,
    /// Request headers shown to policies in `context.http.headers`.
    pub context_headers: Option<Vec<String>>,
}

impl RawEnvoy {
    fn or(self, file: Self) -> Self {
        Self {
            route_map: self.route_map.or(file.route_map),
            token_header: self.token_header.or(file.token_header),
            accept_bearer: self.accept_bearer.or(file.accept_bearer),
            require_token: self.require_token.or(file.require_token),
            require_certificate: self.require_certificate.or(file.require_certificate),
            trust_xfcc: self.trust_xfcc.or(file.trust_xfcc),
            task_header: self.task_header.or(file.task_header),
            context_headers: self.context_headers.or(file.context_headers),
        }
    }

    /// Settings with defaults applied; problems pushed to `problems`.
    fn resolve(self, problems: &mut Vec<String>) -> EnvoySettings {
        let base = EnvoySettings::default();
        let settings = EnvoySettings {
            route_map: self.route_map,
            token_header: self
                .token_header
                .map_or(base.token_header, |h| h.to_ascii_lowercase()),
            accept_bearer: self.accept_bearer.unwrap_or(base.accept_bearer),
            require_token: self.require_token.unwrap_or(base.require_token),
            require_certificate: self.require_certificate.unwrap_or(base.require_certificate),
            trust_xfcc: self.trust_xfcc.unwrap_or(base.trust_xfcc),
            task_header: self.task_header.unwrap_or(base.task_header),
            context_headers: self
                .context_headers
                .unwrap_or_default()
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
        };
        if let Some(path) = &settings.route_map
            && !path.is_file()
        {
            problems.push(format!(
                "`envoy.route_map` `{}` does not exist",
                path.display()
            ));
        }
        problems.extend(settings.validate());
        settings
    }
}

impl RawConfig {
    /// Reads a `mandate.toml`.
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read config `{}`: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("config `{}`: {e}", path.display()))
    }

    /// `self` with every unset key taken from `file`.
    pub fn or(self, file: Self) -> Self {
        Self {
            listen: self.listen.or(file.listen),
            http_listen: self.http_listen.or(file.http_listen),
            data_dir: self.data_dir.or(file.data_dir),
            policies: self.policies.or(file.policies),
            schema: self.schema.or(file.schema),
            entities: self.entities.or(file.entities),
            catalog: self.catalog.or(file.catalog),
            sensitivity_levels: self.sensitivity_levels.or(file.sensitivity_levels),
            policy_poll_ms: self.policy_poll_ms.or(file.policy_poll_ms),
            policy_validation_level: self
                .policy_validation_level
                .or(file.policy_validation_level),
            decision_log: self.decision_log.or(file.decision_log),
            decision_log_capacity: self.decision_log_capacity.or(file.decision_log_capacity),
            identity: self.identity.or(file.identity),
            workload_api_socket: self.workload_api_socket.or(file.workload_api_socket),
            workload_api_timeout_secs: self
                .workload_api_timeout_secs
                .or(file.workload_api_timeout_secs),
            identity_poll_ms: self.identity_poll_ms.or(file.identity_poll_ms),
            trusted_trust_domains: self.trusted_trust_domains.or(file.trusted_trust_domains),
            revoke_on_trust_withdrawal: self
                .revoke_on_trust_withdrawal
                .or(file.revoke_on_trust_withdrawal),
            withdrawal_grace_secs: self.withdrawal_grace_secs.or(file.withdrawal_grace_secs),
            svid_cert: self.svid_cert.or(file.svid_cert),
            svid_key: self.svid_key.or(file.svid_key),
            trust_bundles: self.trust_bundles.or(file.trust_bundles),
            dev_trust_domain: self.dev_trust_domain.or(file.dev_trust_domain),
            max_batch_size: self.max_batch_size.or(file.max_batch_size),
            agent_path_prefixes: self.agent_path_prefixes.or(file.agent_path_prefixes),
            agent_trust_domains: self.agent_trust_domains.or(file.agent_trust_domains),
            handshake_timeout_secs: self.handshake_timeout_secs.or(file.handshake_timeout_secs),
            shutdown_grace_secs: self.shutdown_grace_secs.or(file.shutdown_grace_secs),
            max_delegation_depth: self.max_delegation_depth.or(file.max_delegation_depth),
            task_retention_secs: self.task_retention_secs.or(file.task_retention_secs),
            token_ttl_secs: self.token_ttl_secs.or(file.token_ttl_secs),
            token_max_ttl_secs: self.token_max_ttl_secs.or(file.token_max_ttl_secs),
            key_rotation_secs: self.key_rotation_secs.or(file.key_rotation_secs),
            key_overlap_secs: self.key_overlap_secs.or(file.key_overlap_secs),
            store: self.store.or(file.store),
            store_stale_after_ms: self.store_stale_after_ms.or(file.store_stale_after_ms),
            min_revision_wait_ms: self.min_revision_wait_ms.or(file.min_revision_wait_ms),
            store_poll_ms: self.store_poll_ms.or(file.store_poll_ms),
            store_key_file: self.store_key_file.or(file.store_key_file),
            envoy: match (self.envoy, file.envoy) {
                (Some(flags), Some(file)) => Some(flags.or(file)),
                (flags, file) => flags.or(file),
            },
            log_format: self.log_format.or(file.log_format),
            audit: match (self.audit, file.audit) {
                (Some(flags), Some(file)) => Some(flags.or(file)),
                (flags, file) => flags.or(file),
            },
            limits: match (self.limits, file.limits) {
                (Some(flags), Some(file)) => Some(flags.or(file)),
                (flags, file) => flags.or(file),
            },
            telemetry: match (self.telemetry, file.telemetry) {
                (Some(flags), Some(file)) => Some(flags.or(file)),
                (flags, file) => flags.or(file),
            },
            ui: match (self.ui, file.ui) {
                (Some(flags), Some(file)) => Some(flags.or(file)),
                (flags, file) => flags.or(file),
            },
            authzen: match (self.authzen, file.authzen) {
                (Some(flags), Some(file)) => Some(flags.or(file)),
                (flags, file) => flags.or(file),
            },
        }
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

impl Settings {
    /// Applies defaults and validates; every problem found is reported, one
    /// line each. `SPIFFE_ENDPOINT_SOCKET` names the workload API socket
    /// when the config does not.
    pub fn resolve(raw: RawConfig) -> Result<Self, Vec<String>> {
        Self::resolve_with_env(raw, std::env::var(defaults::SPIFFE_ENDPOINT_SOCKET).ok())
    }

    /// [`Settings::resolve`] with `SPIFFE_ENDPOINT_SOCKET` given.
    pub fn resolve_with_env(
        raw: RawConfig,
        env_socket: Option<String>,
    ) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        let data_dir = raw
            .data_dir
            .clone()
            .unwrap_or_else(|| defaults::DATA_DIR.into());
        let identity = identity::resolve(&raw, &data_dir, env_socket, &mut problems);
        let mut addr = |key: &str, value: Option<String>, default: &str| {
            let value = value.unwrap_or_else(|| default.to_owned());
            value.parse::<SocketAddr>().map_err(|e| {
                problems.push(format!(
                    "`{key}` `{value}` is not an address like 127.0.0.1:7443: {e}"
                ));
            })
        };
        let listen = addr("listen", raw.listen, defaults::LISTEN);
        let http_listen = addr("http-listen", raw.http_listen, defaults::HTTP_LISTEN);
        if let (Ok(a), Ok(b)) = (&listen, &http_listen)
            && a == b
            && a.port() != 0
        {
            problems.push(format!("`listen` and `http-listen` are both `{a}`"));
        }

        let policies = raw.policies.unwrap_or_else(|| defaults::POLICIES.into());
        if !policies.is_dir() {
            problems.push(format!(
                "policies directory `{}` does not exist",
                policies.display()
            ));
        }
        let schema = raw.schema.unwrap_or_else(|| defaults::SCHEMA.into());
        if !schema.is_file() {
            problems.push(format!("schema file `{}` does not exist", schema.display()));
        }
        if let Some(entities) = &raw.entities
            && !entities.is_file()
        {
            problems.push(format!(
                "entities file `{}` does not exist",
                entities.display()
            ));
        }

        if let Some(catalog) = &raw.catalog
            && !catalog.is_file()
        {
            problems.push(format!(
                "catalog file `{}` does not exist",
                catalog.display()
            ));
        }
        let sensitivity = match raw.sensitivity_levels.clone() {
            Some(levels) => SensitivityScale::new(levels).unwrap_or_else(|e| {
                problems.push(format!("`sensitivity_levels`: {e}"));
                SensitivityScale::default()
            }),
            None => SensitivityScale::default(),
        };

        let decision_log_capacity = raw
            .decision_log_capacity
            .unwrap_or(defaults::DECISION_LOG_CAPACITY);
        if decision_log_capacity == 0 {
            problems.push("`decision_log_capacity` must be at least 1".to_owned());
        }

        let max_batch_size = raw.max_batch_size.unwrap_or(defaults::MAX_BATCH_SIZE);
        if !(1..=MAX_BATCH_SIZE_LIMIT).contains(&max_batch_size) {
            problems.push(format!(
                "`max-batch-size` {max_batch_size} is outside 1..={MAX_BATCH_SIZE_LIMIT}"
            ));
        }
        let agent_path_prefixes = raw.agent_path_prefixes.unwrap_or_else(|| {
            DEFAULT_AGENT_PATH_PREFIXES
                .iter()
                .map(|p| (*p).to_owned())
                .collect()
        });
        for prefix in &agent_path_prefixes {
            if !prefix.starts_with('/') {
                problems.push(format!("agent path prefix `{prefix}` must start with `/`"));
            }
        }
        let agent_trust_domains = raw.agent_trust_domains.as_ref().map(|names| {
            names
                .iter()
                .filter_map(|name| {
                    TrustDomain::new(name)
                        .map_err(|e| {
                            problems.push(format!(
                                "agent trust domain `{name}` is not a trust domain name: {e}"
                            ))
                        })
                        .ok()
                })
                .collect::<Vec<_>>()
        });
        let max_delegation_depth = raw
            .max_delegation_depth
            .unwrap_or(defaults::MAX_DELEGATION_DEPTH);
        if max_delegation_depth == 0 {
            problems.push("`max-delegation-depth` must be at least 1".to_owned());
        }
        let tokens = TokenSettings {
            default_ttl: raw.token_ttl_secs.unwrap_or(defaults::TOKEN_TTL_SECS),
            max_ttl: raw
                .token_max_ttl_secs
                .unwrap_or(defaults::TOKEN_MAX_TTL_SECS),
            ..TokenSettings::default()
        };
        if tokens.default_ttl < 1 || tokens.max_ttl < tokens.default_ttl {
            problems.push(format!(
                "token lifetimes must satisfy 1 <= `token-ttl-secs` ({}) <= `token-max-ttl-secs` ({})",
                tokens.default_ttl, tokens.max_ttl
            ));
        }
        let keep_ended = raw
            .task_retention_secs
            .unwrap_or(defaults::TASK_RETENTION_SECS);
        if keep_ended < 0 {
            problems.push(format!(
                "`task-retention-secs` ({keep_ended}) must be 0 or more"
            ));
        }
        let task_retention = crate::graph::Retention {
            keep_ended,
            remember_evicted: tokens.max_ttl.saturating_add(tokens.leeway),
        };
        let key_rotation = KeyRotation {
            rotate_after: raw.key_rotation_secs.unwrap_or(defaults::KEY_ROTATION_SECS),
            overlap: raw.key_overlap_secs.unwrap_or(defaults::KEY_OVERLAP_SECS),
        };
        // A retired key must outlive every token it signed.
        if key_rotation.rotate_after < 60
            || key_rotation.overlap < tokens.max_ttl.saturating_add(tokens.leeway)
        {
            problems.push(format!(
                "`key-rotation-secs` must be at least 60 and `key-overlap-secs` ({}) at least the longest token lifetime plus leeway ({})",
                key_rotation.overlap,
                tokens.max_ttl.saturating_add(tokens.leeway)
            ));
        }
        let store = raw.store.clone().unwrap_or_else(|| {
            format!("sqlite://{}", data_dir.join(defaults::STORE_FILE).display())
        });
        let replica = store_settings(
            [
                raw.store_stale_after_ms,
                raw.min_revision_wait_ms,
                raw.store_poll_ms,
            ],
            &store,
            &mut problems,
        );
        let envoy = raw.envoy.unwrap_or_default().resolve(&mut problems);
        let audit = raw
            .audit
            .unwrap_or_default()
            .resolve(&envoy.token_header, &mut problems);
        let telemetry = raw
            .telemetry
            .clone()
            .unwrap_or_default()
            .resolve(std::env::var(OTLP_ENDPOINT_VAR).ok(), &mut problems);
        let log_json = match raw.log_format.as_deref() {
            None | Some("human") => false,
            Some("json") => true,
            Some(other) => {
                problems.push(format!("`log-format` `{other}` is not `json` or `human`"));
                false
            }
        };
        let limits = raw.limits.unwrap_or_default().resolve(&mut problems);
        let ui = raw
            .ui
            .unwrap_or_default()
            .resolve(identity.as_ref().map(|(source, _)| source), &mut problems);
        let authzen = raw.authzen.unwrap_or_default().resolve(&mut problems);
        let handshake_timeout = raw
            .handshake_timeout_secs
            .unwrap_or(defaults::HANDSHAKE_TIMEOUT_SECS);
        if handshake_timeout == 0 {
            problems.push("`handshake-timeout-secs` must be at least 1".to_owned());
        }

        match (listen, http_listen, identity) {
            (Ok(listen), Ok(http_listen), Some((identity, identity_follow)))
                if problems.is_empty() =>
            {
                Ok(Self {
                    listen,
                    http_listen,
                    data_dir,
                    policies,
                    schema,
                    entities: raw.entities,
                    catalog: raw.catalog,
                    sensitivity,
                    policy_validation_level: raw.policy_validation_level,
                    decision_log: raw.decision_log,
                    decision_log_capacity,
                    policy_poll: match raw.policy_poll_ms.unwrap_or(defaults::POLICY_POLL_MS) {
                        0 => None,
                        ms => Some(Duration::from_millis(ms)),
                    },
                    identity,
                    identity_follow,
                    revoke_on_trust_withdrawal: raw
                        .revoke_on_trust_withdrawal
                        .unwrap_or(defaults::REVOKE_ON_TRUST_WITHDRAWAL),
                    max_batch_size,
                    agent_path_prefixes,
                    agent_trust_domains,
                    handshake_timeout: Duration::from_secs(handshake_timeout),
                    limits,
                    shutdown_grace: Duration::from_secs(
                        raw.shutdown_grace_secs
                            .unwrap_or(defaults::SHUTDOWN_GRACE_SECS),
                    ),
                    max_delegation_depth,
                    task_retention,
                    tokens,
                    key_rotation,
                    envoy,
                    log_json,
                    audit,
                    telemetry,
                    store,
                    replica,
                    store_key_file: raw.store_key_file,
                    ui,
                    authzen,
                })
            }
            _ => Err(problems),
        }
    }
}

/// Checks the store URL and the replica bounds.
/// `ms` is `store_stale_after_ms`, `min_revision_wait_ms`, `store_poll_ms`.
fn store_settings(
    [stale_after_ms, min_revision_wait_ms, poll_ms]: [Option<u64>; 3],
    store: &str,
    problems: &mut Vec<String>,
) -> crate::journal::ReplicaSettings {
    let known = ["sqlite://", "postgres://", "postgresql://"];
    if !known.iter().any(|scheme| store.starts_with(scheme)) || store.len() <= "sqlite://".len() {
        problems.push(format!(
            "`store` `{}` must be `sqlite://PATH` or `postgres://...`",
            crate::store::redact(store)
        ));
    }
    let ms = |value: Option<u64>, default: u64, key: &str, problems: &mut Vec<String>| {
        let value = value.unwrap_or(default);
        if value == 0 {
            problems.push(format!("`{key}` must be at least 1"));
        }
        Duration::from_millis(value)
    };
    let settings = crate::journal::ReplicaSettings {
        stale_after: ms(
            stale_after_ms,
            defaults::STORE_STALE_AFTER_MS,
            "store_stale_after_ms",
            problems,
        ),
        min_revision_wait: ms(
            min_revision_wait_ms,
            defaults::MIN_REVISION_WAIT_MS,
            "min_revision_wait_ms",
            problems,
        ),
        poll: ms(poll_ms, defaults::STORE_POLL_MS, "store_poll_ms", problems),
    };
    // On a quiet cluster the poll is the only contact: polling no more
    // often than the stale bound would flap the replica into deny-all.
    if settings.poll >= settings.stale_after {
        problems.push(format!(
            "`store_poll_ms` ({} ms) must be less than `store_stale_after_ms` ({} ms)",
            settings.poll.as_millis(),
            settings.stale_after.as_millis()
        ));
    }
    settings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poll_as_slow_as_the_stale_bound_is_refused() {
        let mut problems = Vec::new();
        store_settings(
            [Some(1000), None, Some(1000)],
            "sqlite://x.db",
            &mut problems,
        );
        assert!(
            problems.iter().any(|p| p.contains("`store_poll_ms`")),
            "{problems:?}"
        );
    }

    #[test]
    fn flags_win_over_the_file() {
        let flags = RawConfig {
            listen: Some("127.0.0.1:1".into()),
            ..Default::default()
        };
        let file = RawConfig {
            listen: Some("127.0.0.1:2".into()),
            http_listen: Some("127.0.0.1:3".into()),
            ..Default::default()
        };
        let merged = flags.or(file);
        assert_eq!(merged.listen.as_deref(), Some("127.0.0.1:1"));
        assert_eq!(merged.http_listen.as_deref(), Some("127.0.0.1:3"));
    }

    #[test]
    fn every_problem_is_reported() {
        let raw = RawConfig {
            listen: Some("nowhere".into()),
            policies: Some("/nonexistent/policies".into()),
            svid_cert: Some("/nonexistent/cert.pem".into()),
            max_batch_size: Some(0),
            ..Default::default()
        };
        let problems = Settings::resolve(raw).err().unwrap_or_default();
        assert!(
            problems.iter().any(|p| p.contains("`listen` `nowhere`")),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.contains("/nonexistent/policies")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains("must be given together")),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.contains("max-batch-size")),
            "{problems:?}"
        );
    }

    #[test]
    fn the_shipped_example_config_parses() {
        let raw: RawConfig = toml::from_str(include_str!("../mandate.toml.example")).unwrap();
        assert_eq!(raw.listen.as_deref(), Some(defaults::LISTEN));
        assert_eq!(raw.max_batch_size, Some(defaults::MAX_BATCH_SIZE));
        let audit = raw.audit.unwrap_or_default();
        assert_eq!(audit.overflow.as_deref(), Some("drop"));
        assert_eq!(
            audit.index_max_entries,
            Some(crate::audit::defaults::INDEX_MAX_ENTRIES)
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = toml::from_str::<RawConfig>("listn = \"x\"").err();
        assert!(err.is_some());
    }
}
