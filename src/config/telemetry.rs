//! The `[telemetry]` table of `mandate.toml`: where the decision path's
//! spans are exported over OTLP/gRPC. The endpoint is the table's
//! `otlp_endpoint`, else the standard `OTEL_EXPORTER_OTLP_ENDPOINT`. A
//! build without the `otel` feature refuses the key (rather than ignore
//! what was asked for) and only warns about the variable, which is often
//! set for a whole environment.

use serde::Deserialize;

/// The `[telemetry]` table.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
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

impl RawTelemetry {
    /// `self` with every unset key taken from `file`.
    pub fn or(self, file: Self) -> Self {
        Self {
            otlp_endpoint: self.otlp_endpoint.or(file.otlp_endpoint),
        }
    }

    /// Settings from the table and `env` (the variable's value, if set).
    pub fn resolve(self, env: Option<String>, problems: &mut Vec<String>) -> TelemetrySettings {
        let from_env = env.filter(|v| !v.trim().is_empty());
        let endpoint = match (self.otlp_endpoint, from_env) {
            (Some(configured), _) => {
                if !cfg!(feature = "otel") {
                    problems.push(format!(
                        "`telemetry.otlp_endpoint` `{configured}` asks for OpenTelemetry export, but this mandate was built without it; build with `cargo build --features otel` or remove the key"
                    ));
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
            problems.push(format!(
                "the OTLP endpoint `{endpoint}` must be `http://HOST:PORT` (the exporter speaks OTLP over gRPC without TLS: a local collector or agent)"
            ));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(key: Option<&str>, env: Option<&str>) -> (TelemetrySettings, Vec<String>) {
        let mut problems = Vec::new();
        let raw = RawTelemetry {
            otlp_endpoint: key.map(str::to_owned),
        };
        (raw.resolve(env.map(str::to_owned), &mut problems), problems)
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
