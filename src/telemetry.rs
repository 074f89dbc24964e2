//! Logs and, with the `otel` feature, OpenTelemetry export: one
//! `tracing` subscriber whose layers are the log lines on stderr (JSON or
//! human) and, when an OTLP endpoint is configured, the spans of the
//! decision path (`decision`, with `decision_id`) sent over OTLP/gRPC with
//! service name `mandate`. [`Telemetry::shutdown`] flushes the exporter on
//! a graceful shutdown.

use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::TelemetrySettings;

/// The service name spans are exported under.
pub const SERVICE_NAME: &str = "mandate";

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum TelemetryError {
    /// The OTLP exporter could not be built.
    #[error("cannot export to the OTLP endpoint `{endpoint}`: {message}")]
    Exporter {
        /// The endpoint.
        endpoint: String,
        /// Why.
        message: String,
    },
    /// An endpoint was configured in a build without the `otel` feature
    /// (the configuration check refuses this first).
    #[error("OpenTelemetry export needs a mandate built with `--features otel`")]
    NotBuilt,
}

/// What must be flushed at shutdown.
#[derive(Debug, Default)]
pub struct Telemetry {
    #[cfg(feature = "otel")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

/// Logs to stderr, filtered by `RUST_LOG` (else `default`), as JSON lines
/// (with the current spans, so `decision_id` is on every line of a
/// decision) or for humans; and spans to `settings.otlp_endpoint`. With an
/// endpoint, call within a Tokio runtime (the gRPC exporter runs on it).
/// A subscriber already installed is kept (tests install several servers).
pub fn init(
    default: &str,
    json: bool,
    settings: &TelemetrySettings,
) -> Result<Telemetry, TelemetryError> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = if json {
        fmt.json().with_current_span(true).boxed()
    } else {
        fmt.boxed()
    };
    let registry = tracing_subscriber::registry().with(filter).with(fmt);
    #[cfg(feature = "otel")]
    {
        let (layer, provider) = match &settings.otlp_endpoint {
            Some(endpoint) => {
                let (layer, provider) = otel::layer(endpoint)?;
                (Some(layer), Some(provider))
            }
            None => (None, None),
        };
        let _ = registry.with(layer).try_init();
        Ok(Telemetry { provider })
    }
    #[cfg(not(feature = "otel"))]
    {
        if settings.otlp_endpoint.is_some() {
            return Err(TelemetryError::NotBuilt);
        }
        let _ = registry.try_init();
        Ok(Telemetry::default())
    }
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        #[cfg(feature = "otel")]
        {
            self.provider.is_some()
        }
        #[cfg(not(feature = "otel"))]
        {
            false
        }
    }

    /// Sends the spans still buffered and stops the exporter. Blocks until
    /// the exporter answers (it has its own timeout): call off the async
    /// runtime's workers, e.g. in `spawn_blocking`.
    pub fn shutdown(self) {
        #[cfg(feature = "otel")]
        if let Some(provider) = self.provider
            && let Err(error) = provider.shutdown()
        {
            tracing::warn!(%error, "OpenTelemetry export not flushed at shutdown");
        }
    }
}

#[cfg(feature = "otel")]
mod otel {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::WithExportConfig as _;
    use opentelemetry_sdk::Resource;
    use opentelemetry_sdk::trace::SdkTracerProvider;

    use super::{SERVICE_NAME, TelemetryError};

    /// The layer that turns `tracing` spans into OpenTelemetry spans, and
    /// the provider that batches and exports them.
    pub(super) fn layer<S>(
        endpoint: &str,
    ) -> Result<
        (
            tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>,
            SdkTracerProvider,
        ),
        TelemetryError,
    >
    where
        S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()
            .map_err(|e| TelemetryError::Exporter {
                endpoint: endpoint.to_owned(),
                message: e.to_string(),
            })?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(Resource::builder().with_service_name(SERVICE_NAME).build())
            .build();
        let tracer = provider.tracer(SERVICE_NAME);
        Ok((tracing_opentelemetry::layer().with_tracer(tracer), provider))
    }
}
