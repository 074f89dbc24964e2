//! Limits under hostile input, over real mTLS: each exceeded limit is a
//! clear `INVALID_ARGUMENT`, `RESOURCE_EXHAUSTED` or `DEADLINE_EXCEEDED`
//! naming its `[limits]` key, never a crash or an allow, and the server
//! keeps answering afterwards.
//!
//! Covered elsewhere: batch size (`tests/authorize.rs`,
//! `batch_over_the_limit_is_invalid_argument`), chain depth
//! (`tests/tasks.rs`, `depth_is_limited_by_configuration`), the Envoy token
//! header (`tests/envoy.rs`, `an_oversized_token_header_is_400_limit_exceeded`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

mod common;

use std::time::Duration;

use common::{Setup, TestServer, call};
use mandate::api::v1::{AuthorizeRequest, BatchAuthorizeRequest, Decision, Resource};
use mandate::limits::Limits;
use prost_types::value::Kind;
use prost_types::{Struct, Value};
use tonic::Code;

async fn server_with(limits: Limits) -> TestServer {
    TestServer::start_with(Setup {
        limits,
        ..Setup::default()
    })
    .await
}

fn read_handbook(context: Option<Struct>, token: &str) -> AuthorizeRequest {
    AuthorizeRequest {
        action: "read".into(),
        resource: Some(Resource {
            r#type: String::new(),
            id: "handbook".into(),
        }),
        context,
        token: token.into(),
        ..Default::default()
    }
}

fn record(fields: Vec<(&str, Value)>) -> Struct {
    Struct {
        fields: fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
    }
}

/// `{"next": {"next": ... {"leaf": 1}}}`, `levels` records deep.
fn nested(levels: usize) -> Struct {
    let mut inner = record(vec![("leaf", Value::from(1.0))]);
    for _ in 1..levels {
        inner = record(vec![("next", Value::from(Kind::StructValue(inner)))]);
    }
    inner
}

fn entity_reference(id: &str) -> Value {
    Value::from(Kind::StructValue(record(vec![(
        "__entity",
        Value::from(Kind::StructValue(record(vec![
            ("type", Value::from("Mandate::Resource".to_owned())),
            ("id", Value::from(id.to_owned())),
        ]))),
    )])))
}

/// The server still decides: the shipped policies let anyone read the
/// handbook.
async fn still_serving(server: &TestServer) {
    let mut client = server.client("/agents/patcher").await;
    let response = call(&mut client, "", "read", "handbook").await;
    assert_eq!(response.decision(), Decision::Allow, "{response:?}");
}

fn assert_refused(status: &tonic::Status, code: Code, key: &str) {
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(common::error_reason(status), "limit-exceeded", "{status:?}");
    assert!(
        status.message().contains(&format!("limits.{key}")),
        "the message names the limit: {}",
        status.message()
    );
}

#[tokio::test]
async fn an_oversized_request_is_resource_exhausted() {
    let server = server_with(Limits {
        max_request_bytes: 4096,
        ..Limits::default()
    })
    .await;
    let mut client = server.client("/agents/patcher").await;
    let context = record(vec![("note", Value::from("x".repeat(8192)))]);
    let status = client
        .authorize(read_handbook(Some(context), ""))
        .await
        .unwrap_err();
    assert_refused(&status, Code::ResourceExhausted, "max_request_bytes");
    still_serving(&server).await;
}

#[tokio::test]
async fn an_oversized_token_is_invalid_argument() {
    let server = server_with(Limits {
        max_token_bytes: 2048,
        ..Limits::default()
    })
    .await;
    let mut client = server.client("/agents/patcher").await;
    let status = client
        .authorize(read_handbook(None, &"a".repeat(2049)))
        .await
        .unwrap_err();
    assert_refused(&status, Code::InvalidArgument, "max_token_bytes");
    still_serving(&server).await;
}

#[tokio::test]
async fn a_deep_context_is_invalid_argument() {
    let server = server_with(Limits {
        max_context_depth: 4,
        ..Limits::default()
    })
    .await;
    let mut client = server.client("/agents/patcher").await;
    // At the limit: decided (Cedar sees an attribute the schema does not
    // declare, which is not our concern here), not refused.
    let at_limit = client.authorize(read_handbook(Some(nested(4)), "")).await;
    assert!(at_limit.is_ok(), "{at_limit:?}");
    // Past it: refused before anything converts or recurses on it.
    let status = client
        .authorize(read_handbook(Some(nested(10)), ""))
        .await
        .unwrap_err();
    assert_refused(&status, Code::InvalidArgument, "max_context_depth");
    // Far past it, the protobuf decoder's own recursion limit refuses it
    // first: bad input too, not a fault of ours.
    let status = client
        .authorize(read_handbook(Some(nested(200)), ""))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    still_serving(&server).await;
}

#[tokio::test]
async fn a_large_context_is_invalid_argument() {
    let server = server_with(Limits {
        max_context_bytes: 1024,
        ..Limits::default()
    })
    .await;
    let mut client = server.client("/agents/patcher").await;
    let context = record(vec![("note", Value::from("x".repeat(2000)))]);
    let status = client
        .authorize(read_handbook(Some(context), ""))
        .await
        .unwrap_err();
    assert_refused(&status, Code::InvalidArgument, "max_context_bytes");
    still_serving(&server).await;
}

#[tokio::test]
async fn too_many_entity_references_are_invalid_argument_in_a_batch_too() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("decisions.jsonl");
    let server = TestServer::start_with(Setup {
        limits: Limits {
            max_context_entities: 2,
            ..Limits::default()
        },
        max_batch_size: 4,
        decision_log: Some(log.clone()),
        ..Setup::default()
    })
    .await;
    let mut client = server.client("/agents/patcher").await;
    let many = record(
        (0..3)
            .map(|i| (["a", "b", "c"][i], entity_reference(&format!("r{i}"))))
            .collect(),
    );
    let status = client
        .authorize(read_handbook(Some(many.clone()), ""))
        .await
        .unwrap_err();
    assert_refused(&status, Code::InvalidArgument, "max_context_entities");

    // In a batch the refused request is named; nothing in it is decided.
    let batch = BatchAuthorizeRequest {
        requests: vec![read_handbook(None, ""), read_handbook(Some(many), "")],
    };
    let status = client.batch_authorize(batch).await.unwrap_err();
    assert_refused(&status, Code::InvalidArgument, "max_context_entities");
    assert!(status.message().contains("requests[1]"), "{status:?}");
    still_serving(&server).await;
    // The log is written in order: once the call above is in it, so would
    // be anything decided before it. Only that one call is.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let decisions = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let decisions = text
            .lines()
            .filter(|l| l.contains("\"decision_id\""))
            .count();
        if decisions > 0 {
            break decisions;
        }
        assert!(std::time::Instant::now() < deadline, "no decision recorded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(decisions, 1, "no request of the refused batch was decided");
}

/// A TLS connection over raw HTTP/2, presenting a fresh SVID for `path`.
async fn raw_h2(
    server: &TestServer,
    path: &str,
) -> (
    h2::client::SendRequest<prost::bytes::Bytes>,
    tokio::task::JoinHandle<()>,
    Option<usize>,
) {
    let identity = server.ca.identity(&server.ca.svid(path));
    let config = mandate::identity::client_config(&identity, None).unwrap();
    let tcp = tokio::net::TcpStream::connect(server.server.grpc_addr())
        .await
        .unwrap();
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect("mandate.test".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let (send, mut connection) = h2::client::handshake(tls).await.unwrap();
    // The server's SETTINGS arrive with its first frames; drive the
    // connection until they are in.
    let settled = tokio::time::timeout(
        Duration::from_secs(5),
        std::future::poll_fn(|cx| {
            let _ = std::future::Future::poll(std::pin::Pin::new(&mut connection), cx);
            match connection.max_concurrent_send_streams() {
                usize::MAX => std::task::Poll::Pending,
                n => std::task::Poll::Ready(n),
            }
        }),
    )
    .await
    .ok();
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    (send, driver, settled)
}

#[tokio::test]
async fn concurrent_streams_per_connection_are_capped() {
    let server = server_with(Limits {
        max_concurrent_streams: 3,
        ..Limits::default()
    })
    .await;
    let (_send, driver, advertised) = raw_h2(&server, "/agents/patcher").await;
    assert_eq!(
        advertised,
        Some(3),
        "the server's SETTINGS carry the per-connection stream limit"
    );
    driver.abort();
    still_serving(&server).await;
}

#[tokio::test]
async fn a_stalled_request_body_gets_deadline_exceeded() {
    let server = server_with(Limits {
        request_timeout: Duration::from_millis(300),
        ..Limits::default()
    })
    .await;
    let (mut send, driver, _) = raw_h2(&server, "/agents/patcher").await;
    let request = http::Request::post(format!(
        "https://{}/mandate.v1.AuthorizationService/Authorize",
        server.server.grpc_addr()
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .body(())
    .unwrap();
    // Headers only: the body never comes.
    let (response, _body) = send.send_request(request, false).unwrap();
    let response = tokio::time::timeout(Duration::from_secs(5), response)
        .await
        .expect("answered by the deadline, not left hanging")
        .unwrap();
    let status =
        tonic::Status::from_header_map(response.headers()).expect("a gRPC status in the answer");
    assert_refused(&status, Code::DeadlineExceeded, "request_timeout_ms");
    driver.abort();
    still_serving(&server).await;
}

#[tokio::test]
async fn a_silent_tls_client_is_dropped_after_the_handshake_timeout() {
    use tokio::io::AsyncReadExt;
    let server = TestServer::start_with(Setup {
        handshake_timeout: Duration::from_millis(300),
        ..Setup::default()
    })
    .await;
    let mut tcp = tokio::net::TcpStream::connect(server.server.grpc_addr())
        .await
        .unwrap();
    // No ClientHello: the server closes the connection on its own.
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .expect("closed by the server within the handshake timeout");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    still_serving(&server).await;
}
