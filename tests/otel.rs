//! OpenTelemetry export (feature `otel`): a real OTLP/gRPC collector (the
//! trace service of `opentelemetry-proto`, served by tonic on
//! 127.0.0.1:0) receives the `decision` span of an `Authorize` call over
//! mTLS, with its `decision_id` and the service name `mandate`, once
//! shutdown flushes the exporter.

#![cfg(feature = "otel")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

mod common;

use common::TestServer;
use mandate::config::TelemetrySettings;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

/// Keeps every export it receives.
struct Collector(mpsc::UnboundedSender<ExportTraceServiceRequest>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let _ = self.0.send(request.into_inner());
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn text(value: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> Option<String> {
    match value.and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => Some(s.clone()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_decision_span_is_exported_with_its_decision_id() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, mut exports) = mpsc::unbounded_channel();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Collector(tx)))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    let telemetry = mandate::telemetry::init(
        "info",
        false,
        &TelemetrySettings {
            otlp_endpoint: Some(format!("http://{addr}")),
        },
    )
    .unwrap();
    assert!(telemetry.exporting());

    let server = TestServer::start().await;
    let mut client = server.client("/agents/patcher").await;
    let decided = common::call(&mut client, "", "read", "handbook").await;
    assert!(!decided.decision_id.is_empty());
    server.server.shutdown().await.unwrap();
    // A graceful shutdown flushes what the batch exporter still holds.
    tokio::task::spawn_blocking(move || telemetry.shutdown())
        .await
        .unwrap();

    let mut found = None;
    while let Ok(export) = exports.try_recv() {
        for resource_spans in export.resource_spans {
            let service = resource_spans.resource.as_ref().and_then(|r| {
                r.attributes
                    .iter()
                    .find(|kv| kv.key == "service.name")
                    .and_then(|kv| text(kv.value.as_ref()))
            });
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    let id = span
                        .attributes
                        .iter()
                        .find(|kv| kv.key == "decision_id")
                        .and_then(|kv| text(kv.value.as_ref()));
                    if span.name == "decision" && id.as_deref() == Some(&decided.decision_id) {
                        found = Some(service.clone());
                    }
                }
            }
        }
    }
    let service = found.expect("the collector got no `decision` span with this decision id");
    assert_eq!(service.as_deref(), Some("mandate"));
}
