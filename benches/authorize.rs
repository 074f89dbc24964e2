//! Decision latency: Cedar in-process, and `Authorize` round trips over
//! SPIFFE mTLS on loopback, next to a gRPC health check on the same
//! connection set-up as a do-nothing baseline.
//!
//! Run: `cargo bench --bench authorize`.

#![allow(missing_docs, reason = "criterion generates the entry point")]
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "benchmark set-up")]

use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use mandate::api::v1::{AuthorizeRequest, Resource};
use mandate::decision::{Evaluator, Query};
use mandate::identity::SpiffeId;

mod common;

use common::{DevServer, agents, engine, registry};

fn in_process(c: &mut Criterion) {
    let engine = engine();
    let registry = registry(&engine).snapshot();
    let evaluator = Evaluator::new(agents());
    let patcher = SpiffeId::new("spiffe://mandate.local/agents/patcher").unwrap();
    let request = Query::new(
        &patcher,
        "read",
        "",
        "repo:acme/payments",
        serde_json::json!({ "purpose": "bench" }),
    );
    assert!(
        evaluator
            .evaluate(&engine, &registry, request.clone())
            .0
            .is_allowed()
    );
    c.bench_function("decision/in_process_allow", |b| {
        b.iter(|| evaluator.evaluate(&engine, &registry, std::hint::black_box(request.clone())))
    });
}

fn over_mtls(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (server, mut client, mut health) = runtime.block_on(async {
        let dev = DevServer::start(dir.path()).await;
        let channel = dev.channel().await;
        let client =
            mandate::api::v1::authorization_service_client::AuthorizationServiceClient::new(
                channel.clone(),
            );
        let health = tonic_health::pb::health_client::HealthClient::new(channel);
        (dev.server, client, health)
    });

    let request = AuthorizeRequest {
        action: "read".into(),
        resource: Some(Resource {
            r#type: String::new(),
            id: "repo:acme/payments".into(),
        }),
        ..Default::default()
    };
    let mut group = c.benchmark_group("grpc_mtls_round_trip");
    // Each sample runs its calls inside one `block_on`, so the timing is
    // the gRPC round trip and not the cost of entering the runtime.
    group.bench_function("authorize", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    client.authorize(request.clone()).await.unwrap();
                }
                start.elapsed()
            })
        })
    });
    group.bench_function("health_check_baseline", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    health
                        .check(tonic_health::pb::HealthCheckRequest {
                            service: String::new(),
                        })
                        .await
                        .unwrap();
                }
                start.elapsed()
            })
        })
    });
    group.finish();
    runtime.block_on(server.shutdown()).unwrap();
}

criterion_group!(benches, in_process, over_mtls);
criterion_main!(benches);
