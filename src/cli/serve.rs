//! `mandate serve`: validate everything, then bind and serve until SIGTERM
//! or SIGINT.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::{EXIT_USAGE, runtime};
use crate::app::{App, BuildError, Seams};
use crate::config::{RawAudit, RawConfig, RawEnvoy, Settings, defaults};
use crate::server::RunningServer;

#[derive(Debug, Args)]
pub(super) struct ServeArgs {
    /// Config file (TOML); `./mandate.toml` is read when present.
    #[arg(long, env = "MANDATE_CONFIG")]
    config: Option<PathBuf>,
    /// gRPC listen address (mTLS) [default: 127.0.0.1:7443].
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// HTTP listen address for /healthz and /readyz [default: 127.0.0.1:7080].
    #[arg(long, value_name = "ADDR")]
    http_listen: Option<String>,
    /// TLS listen address of the approvals inbox and trail pages; off
    /// without it or `[ui] listen` (see docs/ui.md).
    #[arg(long, value_name = "ADDR")]
    ui_listen: Option<String>,
    /// TLS listen address of the AuthZEN 1.0 API; off without it or
    /// `[authzen] listen` (see docs/authzen.md).
    #[arg(long, value_name = "ADDR")]
    authzen_listen: Option<String>,
    /// Data directory; holds the dev trust domain [default: ./data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Directory of `*.cedar` policies [default: ./policies].
    #[arg(long, value_name = "DIR")]
    policies: Option<PathBuf>,
    /// Cedar schema [default: ./schemas/mandate.cedarschema].
    #[arg(long, value_name = "FILE")]
    schema: Option<PathBuf>,
    /// Registry catalog (TOML): groups, users, workloads, agents and
    /// resources [default: `catalog.toml` beside the config file, if any].
    #[arg(long, value_name = "FILE")]
    catalog: Option<PathBuf>,
    /// Cedar entities JSON, for entity types a user schema adds.
    #[arg(long, value_name = "FILE")]
    entities: Option<PathBuf>,
    /// Append a JSON-lines record of every decision to this file (for
    /// `mandate policy replay`).
    #[arg(long, value_name = "FILE")]
    decision_log: Option<PathBuf>,
    /// Where our SVID comes from: `files` (--svid-cert, --svid-key,
    /// --trust-bundle), `workload-api` (a SPIRE agent) or `dev` [default:
    /// files with --svid-cert, workload-api with --workload-api-socket,
    /// else dev].
    #[arg(long, value_name = "SOURCE", value_parser = ["files", "workload-api", "dev"])]
    identity: Option<String>,
    /// The SPIRE agent's Workload API socket, `unix:///path` [default:
    /// $SPIFFE_ENDPOINT_SOCKET].
    #[arg(long, value_name = "URI")]
    workload_api_socket: Option<String>,
    /// A trust domain whose callers are accepted, given a bundle for it;
    /// repeatable [default: only our own].
    #[arg(long = "trusted-trust-domain", value_name = "TRUST_DOMAIN")]
    trusted_trust_domains: Vec<String>,
    /// Our X.509-SVID chain (PEM, leaf first). Without it, a dev trust
    /// domain is used.
    #[arg(long, value_name = "FILE")]
    svid_cert: Option<PathBuf>,
    /// The private key of our SVID (PEM).
    #[arg(long, value_name = "FILE")]
    svid_key: Option<PathBuf>,
    /// A trusted trust domain and its CA bundle (PEM); repeatable.
    #[arg(long = "trust-bundle", value_name = "TRUST_DOMAIN=FILE")]
    trust_bundles: Vec<String>,
    /// Trust domain of the dev identity [default: mandate.local].
    #[arg(long, value_name = "NAME")]
    dev_trust_domain: Option<String>,
    /// Most requests in one BatchAuthorize [default: 100].
    #[arg(long, value_name = "N")]
    max_batch_size: Option<usize>,
    /// Route map (TOML) of Envoy's ext_authz `Check`; without one every
    /// `Check` is denied `no-route`.
    #[arg(long, value_name = "FILE")]
    route_map: Option<PathBuf>,
    /// Log lines as `json` or `human` [default: human].
    #[arg(long, value_name = "FORMAT", env = "MANDATE_LOG_FORMAT", value_parser = ["json", "human"])]
    log_format: Option<String>,
    /// Also write every audit record (decisions, task events) to stdout.
    #[arg(long)]
    audit_stdout: bool,
    /// Also write every audit record to the store (`[audit] store = true`);
    /// `AuditService` then answers from it.
    #[arg(long)]
    audit_store: bool,
    /// The store: `sqlite://PATH` or `postgres://...` [default:
    /// sqlite://DATA_DIR/mandate.db].
    #[arg(long, env = "MANDATE_STORE", value_name = "URL")]
    store: Option<String>,
    /// A file with the key (32 bytes, base64) sealing signing keys in the
    /// store, so replicas share them; `MANDATE_STORE_KEY` may hold it
    /// instead. Without either, signing keys are files under the data dir.
    #[arg(long, value_name = "FILE")]
    store_key_file: Option<PathBuf>,
}

impl ServeArgs {
    fn into_raw(self) -> Result<RawConfig, Vec<String>> {
        let mut problems = Vec::new();
        let mut bundles = BTreeMap::new();
        for spec in &self.trust_bundles {
            match spec.split_once('=') {
                Some((td, file)) if !td.is_empty() && !file.is_empty() => {
                    if bundles.insert(td.to_owned(), PathBuf::from(file)).is_some() {
                        problems.push(format!(
                            "`--trust-bundle` names `{td}` twice; put all its CAs in one PEM file"
                        ));
                    }
                }
                _ => problems.push(format!("`--trust-bundle {spec}` must be TRUST_DOMAIN=FILE")),
            }
        }
        let flags = RawConfig {
            listen: self.listen,
            http_listen: self.http_listen,
            data_dir: self.data_dir,
            policies: self.policies,
            schema: self.schema,
            entities: self.entities,
            catalog: self.catalog,
            decision_log: self.decision_log,
            identity: self.identity,
            workload_api_socket: self.workload_api_socket,
            trusted_trust_domains: (!self.trusted_trust_domains.is_empty())
                .then_some(self.trusted_trust_domains),
            svid_cert: self.svid_cert,
            svid_key: self.svid_key,
            trust_bundles: (!bundles.is_empty()).then_some(bundles),
            dev_trust_domain: self.dev_trust_domain,
            max_batch_size: self.max_batch_size,
            envoy: self.route_map.map(|route_map| RawEnvoy {
                route_map: Some(route_map),
                ..RawEnvoy::default()
            }),
            log_format: self.log_format,
            audit: (self.audit_stdout || self.audit_store).then(|| RawAudit {
                stdout: self.audit_stdout.then_some(true),
                store: self.audit_store.then_some(true),
                ..RawAudit::default()
            }),
            store: self.store,
            store_key_file: self.store_key_file,
            ui: self.ui_listen.map(|listen| crate::config::RawUi {
                listen: Some(listen),
                ..crate::config::RawUi::default()
            }),
            authzen: self.authzen_listen.map(|listen| crate::config::RawAuthzen {
                listen: Some(listen),
                ..crate::config::RawAuthzen::default()
            }),
            ..RawConfig::default()
        };
        let default_file = PathBuf::from(defaults::CONFIG_FILE);
        let config_file = match self.config {
            Some(path) => Some(path),
            None if default_file.is_file() => Some(default_file),
            None => None,
        };
        let file = config_file
            .as_deref()
            .map_or_else(|| Ok(RawConfig::default()), RawConfig::from_file);
        // A catalog beside the config file is loaded unless one is named.
        let beside = config_file
            .as_deref()
            .and_then(|f| f.parent())
            .map(|dir| dir.join(defaults::CATALOG_FILE))
            .filter(|c| c.is_file());
        match file {
            Ok(file) if problems.is_empty() => {
                let mut raw = flags.or(file);
                if raw.catalog.is_none() {
                    raw.catalog = beside;
                }
                Ok(raw)
            }
            Ok(_) => Err(problems),
            Err(e) => {
                problems.push(e);
                Err(problems)
            }
        }
    }
}

fn usage_error(problems: &[String]) -> ExitCode {
    for problem in problems {
        eprintln!("error: {problem}");
    }
    ExitCode::from(EXIT_USAGE)
}

pub(super) fn run(args: ServeArgs) -> ExitCode {
    let settings = match args.into_raw().and_then(Settings::resolve) {
        Ok(settings) => settings,
        Err(problems) => return usage_error(&problems),
    };
    // The runtime first: the OTLP exporter, when configured, runs on it.
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let telemetry = {
        let _in_runtime = runtime.enter();
        match crate::telemetry::init("info", settings.log_json, &settings.telemetry) {
            Ok(telemetry) => telemetry,
            Err(e) => return usage_error(&[e.to_string()]),
        }
    };
    if let Some(endpoint) = &settings.telemetry.otlp_endpoint {
        tracing::info!(%endpoint, "exporting spans over OTLP");
    }
    let code = runtime.block_on(serve(settings));
    // Spans still buffered go out before the process ends.
    runtime.block_on(async {
        let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    });
    code
}

async fn serve(settings: Settings) -> ExitCode {
    let listen = settings.listen;
    let app = match App::build(settings, Seams::default()).await {
        Ok(app) => app,
        Err(BuildError::Config(problems)) => return usage_error(&problems),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    if let Some(dev) = app.dev_trust_domain() {
        eprint!(
            "no SVID configured: using the {}\ncall the server with a sample SVID, for example:\n  mandate authorize --server {listen} --cert {} --key {} --ca {} --action read --resource 'Mandate::Resource::\"handbook\"'\n",
            super::dev::describe(dev),
            dev.samples
                .first()
                .map_or_else(String::new, |s| s.cert.display().to_string()),
            dev.samples
                .first()
                .map_or_else(String::new, |s| s.key.display().to_string()),
            dev.bundle.display(),
        );
    }
    let signals = Signals::install();
    let server = match app.start().await {
        Ok(server) => server,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(crate::exit_code::FAILURE);
        }
    };

    wait_for_signal(&server, signals).await;
    tracing::info!("shutting down");
    match server.shutdown().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(crate::exit_code::FAILURE)
        }
    }
}

/// The signals `serve` handles, installed before the server starts so a
/// signal that arrives as soon as it serves is not the default action.
struct Signals {
    term: Option<tokio::signal::unix::Signal>,
    hup: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn install() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate())
            .map_err(|error| tracing::warn!(%error, "cannot watch SIGTERM; only Ctrl-C stops the server"))
            .ok();
        let hup = signal(SignalKind::hangup())
            .map_err(
                |error| tracing::warn!(%error, "cannot watch SIGHUP; reload through PolicyService"),
            )
            .ok();
        Self { term, hup }
    }
}

/// Serves until SIGTERM or SIGINT; SIGHUP reloads the policy files.
async fn wait_for_signal(server: &RunningServer, mut signals: Signals) {
    async fn next(signal: &mut Option<tokio::signal::unix::Signal>) {
        match signal {
            Some(signal) => {
                signal.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    }
    loop {
        tokio::select! {
            _ = next(&mut signals.term) => return,
            _ = tokio::signal::ctrl_c() => return,
            _ = next(&mut signals.hup) => {
                // The outcomes are logged and kept for status reports.
                let _ = server.reload_policies("SIGHUP").await;
                let _ = server.reload_routes().await;
            }
        }
    }
}
