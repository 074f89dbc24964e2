//! `mandate serve`: validate everything, then bind and serve until SIGTERM
//! or SIGINT.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::{EXIT_USAGE, runtime};
use crate::app::{App, BuildError, Seams};
use crate::config::{
    CATALOG_FILE, CONFIG_FILE, Config, ConfigError, ConfigErrors, LogFormat, Settings,
};
use crate::server::RunningServer;

/// Each flag sets one key of `mandate.toml`, named in its help; the
/// defaults are the file's (`mandate config print-default`).
#[derive(Debug, Args)]
pub(super) struct ServeArgs {
    /// Config file (TOML); `./mandate.toml` is read when present.
    #[arg(long, env = "MANDATE_CONFIG")]
    config: Option<PathBuf>,
    /// gRPC listen address, mTLS (`server.listen`).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// HTTP listen address: /metrics, /healthz, /readyz (`server.http_listen`).
    #[arg(long, value_name = "ADDR")]
    http_listen: Option<String>,
    /// TLS listen address of the approvals inbox and trail pages; off
    /// without it (`ui.listen`; see docs/ui.md).
    #[arg(long, value_name = "ADDR")]
    ui_listen: Option<String>,
    /// TLS listen address of the AuthZEN 1.0 API; off without it
    /// (`authzen.listen`; see docs/authzen.md).
    #[arg(long, value_name = "ADDR")]
    authzen_listen: Option<String>,
    /// Data directory; holds the dev trust domain (`server.data_dir`).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Directory of `*.cedar` policies (`policies.dir`).
    #[arg(long, value_name = "DIR")]
    policies: Option<PathBuf>,
    /// Cedar schema (`policies.schema`).
    #[arg(long, value_name = "FILE")]
    schema: Option<PathBuf>,
    /// Registry catalog (TOML): groups, users, workloads, agents and
    /// resources (`policies.catalog`; else `catalog.toml` beside the config
    /// file, if any).
    #[arg(long, value_name = "FILE")]
    catalog: Option<PathBuf>,
    /// Cedar entities JSON, for entity types a user schema adds
    /// (`policies.entities`).
    #[arg(long, value_name = "FILE")]
    entities: Option<PathBuf>,
    /// The JSON-lines audit file: every decision and task event, for
    /// `mandate policy replay` (`audit.file`).
    #[arg(long, value_name = "FILE")]
    decision_log: Option<PathBuf>,
    /// Where our SVID comes from: `files` (--svid-cert, --svid-key,
    /// --trust-bundle), `workload-api` (a SPIRE agent) or `dev`
    /// (`identity.source`).
    #[arg(long, value_name = "SOURCE", value_parser = ["files", "workload-api", "dev"])]
    identity: Option<String>,
    /// The SPIRE agent's Workload API socket, `unix:///path`
    /// (`identity.workload_api_socket`).
    #[arg(long, value_name = "URI")]
    workload_api_socket: Option<String>,
    /// A trust domain whose callers are accepted, given a bundle for it;
    /// repeatable (`identity.trusted_trust_domains`).
    #[arg(long = "trusted-trust-domain", value_name = "TRUST_DOMAIN")]
    trusted_trust_domains: Vec<String>,
    /// Our X.509-SVID chain, PEM, leaf first (`identity.svid_cert`).
    #[arg(long, value_name = "FILE")]
    svid_cert: Option<PathBuf>,
    /// The private key of our SVID, PEM (`identity.svid_key`).
    #[arg(long, value_name = "FILE")]
    svid_key: Option<PathBuf>,
    /// A trusted trust domain and its CA bundle (PEM); repeatable
    /// (`identity.trust_bundles`).
    #[arg(long = "trust-bundle", value_name = "TRUST_DOMAIN=FILE")]
    trust_bundles: Vec<String>,
    /// Trust domain of the dev identity (`identity.dev_trust_domain`).
    #[arg(long, value_name = "NAME")]
    dev_trust_domain: Option<String>,
    /// Most requests in one BatchAuthorize (`server.max_batch_size`).
    #[arg(long, value_name = "N")]
    max_batch_size: Option<usize>,
    /// Route map (TOML) of Envoy's ext_authz `Check`; without one every
    /// `Check` is denied `no-route` (`envoy.route_map`).
    #[arg(long, value_name = "FILE")]
    route_map: Option<PathBuf>,
    /// Log lines as `json` or `human` (`server.log_format`).
    #[arg(long, value_name = "FORMAT", env = "MANDATE_LOG_FORMAT", value_parser = parse_log_format)]
    log_format: Option<LogFormat>,
    /// Also write every audit record to stdout (`audit.stdout`).
    #[arg(long)]
    audit_stdout: bool,
    /// Also write every audit record to the store; `AuditService` then
    /// answers from it (`audit.store`).
    #[arg(long)]
    audit_store: bool,
    /// The store: `sqlite://PATH` or `postgres://...` (`store.url`).
    #[arg(long, env = "MANDATE_STORE", value_name = "URL")]
    store: Option<String>,
    /// A file with the key (32 bytes, base64) sealing signing keys in the
    /// store, so replicas share them; `MANDATE_STORE_KEY` may hold it
    /// instead (`store.key_file`).
    #[arg(long, value_name = "FILE")]
    store_key_file: Option<PathBuf>,
}

impl ServeArgs {
    /// The file (`--config`, else `./mandate.toml` when present) with the
    /// flags applied over it: the one place flags meet the file.
    fn into_config(self) -> Result<Config, ConfigErrors> {
        let default_file = PathBuf::from(CONFIG_FILE);
        let config_file = match &self.config {
            Some(path) => Some(path.clone()),
            None if default_file.is_file() => Some(default_file),
            None => None,
        };
        let mut config = match &config_file {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        let mut errors = ConfigErrors::default();
        self.apply(&mut config, &mut errors);
        // A catalog beside the config file is loaded unless one is named.
        if config.policies.catalog.is_none() {
            config.policies.catalog = config_file
                .as_deref()
                .and_then(|f| f.parent())
                .map(|dir| dir.join(CATALOG_FILE))
                .filter(|c| c.is_file());
        }
        errors.or_ok(config)
    }

    /// Sets the keys the flags name (docs/configuration.md lists them).
    fn apply(self, config: &mut Config, errors: &mut ConfigErrors) {
        fn set<T>(key: &mut T, flag: Option<T>) {
            if let Some(value) = flag {
                *key = value;
            }
        }
        let server = &mut config.server;
        set(&mut server.listen, self.listen);
        set(&mut server.http_listen, self.http_listen);
        set(&mut server.data_dir, self.data_dir);
        set(&mut server.max_batch_size, self.max_batch_size);
        set(&mut server.log_format, self.log_format);
        let policies = &mut config.policies;
        set(&mut policies.dir, self.policies);
        set(&mut policies.schema, self.schema);
        set(&mut policies.catalog, self.catalog.map(Some));
        set(&mut policies.entities, self.entities.map(Some));
        let identity = &mut config.identity;
        set(&mut identity.source, self.identity.map(Some));
        set(
            &mut identity.workload_api_socket,
            self.workload_api_socket.map(Some),
        );
        if !self.trusted_trust_domains.is_empty() {
            identity.trusted_trust_domains = Some(self.trusted_trust_domains);
        }
        set(&mut identity.svid_cert, self.svid_cert.map(Some));
        set(&mut identity.svid_key, self.svid_key.map(Some));
        set(&mut identity.dev_trust_domain, self.dev_trust_domain);
        let mut bundles = BTreeMap::new();
        for spec in &self.trust_bundles {
            match spec.split_once('=') {
                Some((td, file)) if !td.is_empty() && !file.is_empty() => {
                    if bundles.insert(td.to_owned(), PathBuf::from(file)).is_some() {
                        errors.push(ConfigError::Flag {
                            flag: format!("--trust-bundle {spec}"),
                            problem: format!(
                                "names `{td}` a second time; put all its CAs in one PEM file"
                            ),
                        });
                    }
                }
                _ => errors.push(ConfigError::Flag {
                    flag: format!("--trust-bundle {spec}"),
                    problem: "must be TRUST_DOMAIN=FILE".to_owned(),
                }),
            }
        }
        if !bundles.is_empty() {
            identity.trust_bundles = bundles;
        }
        set(&mut config.envoy.route_map, self.route_map.map(Some));
        set(&mut config.audit.file, self.decision_log.map(Some));
        config.audit.stdout |= self.audit_stdout;
        config.audit.store |= self.audit_store;
        set(&mut config.store.url, self.store.map(Some));
        set(&mut config.store.key_file, self.store_key_file.map(Some));
        set(&mut config.ui.listen, self.ui_listen.map(Some));
        set(&mut config.authzen.listen, self.authzen_listen.map(Some));
    }
}

fn parse_log_format(value: &str) -> Result<LogFormat, String> {
    match value {
        "human" => Ok(LogFormat::Human),
        "json" => Ok(LogFormat::Json),
        other => Err(format!("`{other}` is not `json` or `human`")),
    }
}

fn usage_error(problems: &[String]) -> ExitCode {
    for problem in problems {
        eprintln!("error: {problem}");
    }
    ExitCode::from(EXIT_USAGE)
}

pub(super) fn run(args: ServeArgs) -> ExitCode {
    let settings = match args.into_config().and_then(Config::validate) {
        Ok(settings) => settings,
        Err(errors) => return usage_error(&errors.lines()),
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Serve {
        #[command(flatten)]
        args: ServeArgs,
    }

    fn load(file: &str, flags: &[&str]) -> Result<Config, ConfigErrors> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mandate.toml");
        std::fs::write(&path, file).unwrap();
        let mut argv = vec!["serve", "--config", path.to_str().unwrap()];
        argv.extend(flags);
        Serve::try_parse_from(argv).unwrap().args.into_config()
    }

    #[test]
    fn flags_win_over_the_file_and_the_rest_of_the_file_stays() {
        let config = load(
            "[server]\nlisten = \"127.0.0.1:2\"\nhttp_listen = \"127.0.0.1:3\"\n[audit]\nstore = true\n[authzen]\nlisten = \"127.0.0.1:5\"\npublic_url = \"https://pdp\"\n",
            &[
                "--listen",
                "127.0.0.1:1",
                "--authzen-listen",
                "127.0.0.1:6",
                "--audit-stdout",
                "--trust-bundle",
                "a.org=a.pem",
                "--log-format",
                "json",
            ],
        )
        .unwrap();
        assert_eq!(config.server.listen, "127.0.0.1:1");
        assert_eq!(config.server.http_listen, "127.0.0.1:3");
        assert_eq!(config.server.log_format, LogFormat::Json);
        assert_eq!(config.authzen.listen.as_deref(), Some("127.0.0.1:6"));
        assert_eq!(config.authzen.public_url.as_deref(), Some("https://pdp"));
        assert!(config.audit.stdout && config.audit.store);
        assert_eq!(
            config.identity.trust_bundles["a.org"],
            PathBuf::from("a.pem")
        );
        // Without flags, the file.
        let config = load("[server]\nlisten = \"127.0.0.1:2\"\n", &[]).unwrap();
        assert_eq!(config.server.listen, "127.0.0.1:2");
    }

    #[test]
    fn bad_flags_and_a_bad_file_are_reported() {
        let errors = load("", &["--trust-bundle", "a.org"]).unwrap_err();
        assert!(
            errors.lines()[0].starts_with("`--trust-bundle a.org` must be TRUST_DOMAIN=FILE"),
            "{errors}"
        );
        let errors = load("[server]\nlistn = 1\n", &[]).unwrap_err();
        assert!(errors.to_string().contains("`server.listn`"), "{errors}");
    }
}
