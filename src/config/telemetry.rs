//! The `[telemetry]` table of `mandate.toml`: where the decision path's
//! spans are exported over OTLP/gRPC. The endpoint is the table's
//! `otlp_endpoint`, else the standard `OTEL_EXPORTER_OTLP_ENDPOINT`. A
//! build without the `otel` feature refuses the key (rather than ignore
//! what was asked for) and only warns about the variable, which is often
//! set for a whole environment.

use serde::{Deserialize, Serialize};

use super::ConfigErrors;
use super::reference::{Section, example};

/// The `[telemetry]` section.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// OTLP/gRPC collector, `http://HOST:PORT` (4317 is the usual port).
    pub otlp_endpoint: Option<String>,
}

/// The standard variable naming the OTLP endpoint.
pub const OTLP_ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// Where spans go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TelemetrySettings {
    /// The OTLP/gRPC endpoint; `None`: no export.
    pub otlp_endpoint: Option<String>,
}

impl TelemetryConfig {
    /// Settings from the section and `env` (the variable's value, if set).
    pub(super) fn validate(
        &self,
        env: Option<String>,
        problems: &mut ConfigErrors,
    ) -> TelemetrySettings {
        let from_env = env.filter(|v| !v.trim().is_empty());
        let endpoint = match (self.otlp_endpoint.clone(), from_env) {
            (Some(configured), _) => {
                if !cfg!(feature = "otel") {
                    problems.bad(
                        "telemetry.otlp_endpoint",
                        &configured,
                        "asks for OpenTelemetry export, but this mandate was built without it; build with `cargo build --features otel` or remove the key",
                    );
                    return TelemetrySettings::default();
                }
                Some(configured)
            }
            (None, Some(env)) => {
                if !cfg!(feature = "otel") {
                    // Logging is not set up yet: straight to stderr.
                    eprintln!(
                        "warning: {OTLP_ENDPOINT_VAR} is set but this mandate was built without OpenTelemetry export (`--features otel`): no spans are exported"
                    );
                    return TelemetrySettings::default();
                }
                Some(env)
            }
            (None, None) => None,
        };
        if let Some(endpoint) = &endpoint
            && !valid_endpoint(endpoint)
        {
            problems.bad(
                "telemetry.otlp_endpoint",
                endpoint,
                format!("(or {OTLP_ENDPOINT_VAR}) must be `http://HOST:PORT` (the exporter speaks OTLP over gRPC without TLS: a local collector or agent)"),
            );
        }
        TelemetrySettings {
            otlp_endpoint: endpoint,
        }
    }
}

fn valid_endpoint(endpoint: &str) -> bool {
    endpoint
        .strip_prefix("http://")
        .is_some_and(|rest| !rest.is_empty() && !rest.contains(char::is_whitespace))
}

pub(super) const SECTION: Section = Section {
    name: "telemetry",
    doc: "OpenTelemetry export of the decision path's spans over OTLP/gRPC (service\n`mandate`), for a mandate built with `--features otel`; without that feature\nthe key is refused at start-up.",
    optional: false,
    keys: &[example(
        "otlp_endpoint",
        "The collector, http://HOST:PORT (default: $OTEL_EXPORTER_OTLP_ENDPOINT; the\nkey wins).",
        "\"http://127.0.0.1:4317\"",
    )],
};

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(key: Option<&str>, env: Option<&str>) -> (TelemetrySettings, Vec<String>) {
        let mut problems = ConfigErrors::default();
        let raw = TelemetryConfig {
            otlp_endpoint: key.map(str::to_owned),
        };
        (
            raw.validate(env.map(str::to_owned), &mut problems),
            problems.lines(),
        )
    }

    #[test]
    fn nothing_asked_nothing_exported() {
        assert_eq!(resolve(None, None), (TelemetrySettings::default(), vec![]));
    }

    #[cfg(not(feature = "otel"))]
    #[test]
    fn without_the_feature_the_key_is_refused() {
        let (settings, problems) = resolve(Some("http://127.0.0.1:4317"), None);
        assert_eq!(settings.otlp_endpoint, None);
        assert!(
            problems.iter().any(|p| p.contains("--features otel")),
            "{problems:?}"
        );
        // The variable alone is a warning, not a refusal.
        assert_eq!(resolve(None, Some("http://c:4317")).1, Vec::<String>::new());
    }

    #[cfg(feature = "otel")]
    #[test]
    fn with_the_feature_the_key_wins_and_is_checked() {
        let (settings, problems) = resolve(Some("http://a:4317"), Some("http://b:4317"));
        assert_eq!(settings.otlp_endpoint.as_deref(), Some("http://a:4317"));
        assert!(problems.is_empty());
        let (_, problems) = resolve(Some("https://a:4317"), None);
        assert!(
            problems.iter().any(|p| p.contains("`https://a:4317`")),
            "{problems:?}"
        );
    }
}
