//! Load generator (DESIGN §8): `Authorize` throughput over SPIFFE mTLS on
//! loopback against a do-nothing call (`grpc.health.v1.Health/Check`) on
//! the same server, TLS set-up and connections, in the same run. The
//! budget: `Authorize` at least 80% of the baseline's throughput.
//!
//! Run: `cargo bench --bench load`. Knobs (environment): `LOAD_SECONDS`
//! (per mode, default 5), `LOAD_CONNECTIONS` (default 4),
//! `LOAD_CONCURRENCY` (calls in flight in all, default 32). The server and
//! the load share the machine, as they do for the baseline.

#![allow(missing_docs, reason = "a bench binary")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "benchmark set-up"
)]

mod common;

use std::time::{Duration, Instant};

use common::DevServer;
use mandate::api::v1::authorization_service_client::AuthorizationServiceClient;
use mandate::api::v1::{AuthorizeRequest, Decision, Resource};
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    Baseline,
    Authorize,
}

/// Calls made and each call's latency, in microseconds.
async fn drive(channels: &[Channel], mode: Mode, concurrency: usize, for_: Duration) -> Vec<u64> {
    let deadline = Instant::now() + for_;
    let mut workers = Vec::new();
    for n in 0..concurrency {
        let channel = channels[n % channels.len()].clone();
        workers.push(tokio::spawn(async move {
            let mut authz = AuthorizationServiceClient::new(channel.clone());
            let mut health = HealthClient::new(channel);
            let request = AuthorizeRequest {
                action: "read".into(),
                resource: Some(Resource {
                    r#type: String::new(),
                    id: "repo:acme/payments".into(),
                }),
                ..Default::default()
            };
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let start = Instant::now();
                match mode {
                    Mode::Baseline => {
                        health
                            .check(HealthCheckRequest {
                                service: String::new(),
                            })
                            .await
                            .unwrap();
                    }
                    Mode::Authorize => {
                        let r = authz.authorize(request.clone()).await.unwrap().into_inner();
                        // A real decision every time, not an error path.
                        assert_eq!(r.decision, Decision::Allow as i32);
                    }
                }
                latencies.push(u64::try_from(start.elapsed().as_micros()).unwrap());
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    all
}

struct Figures {
    per_second: f64,
    p50_us: u64,
    p99_us: u64,
    calls: usize,
}

fn figures(mut latencies: Vec<u64>, seconds: f64) -> Figures {
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q) as usize];
    Figures {
        per_second: latencies.len() as f64 / seconds,
        p50_us: at(0.50),
        p99_us: at(0.99),
        calls: latencies.len(),
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a plain run is the same.
    let seconds = knob("LOAD_SECONDS", 5);
    let connections = knob("LOAD_CONNECTIONS", 4).max(1) as usize;
    let concurrency = knob("LOAD_CONCURRENCY", 32).max(1) as usize;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    runtime.block_on(async {
        let dev = DevServer::start(dir.path()).await;
        let mut channels = Vec::new();
        for _ in 0..connections {
            channels.push(dev.channel().await);
        }
        let window = Duration::from_secs(seconds);
        // Warm both paths (TLS sessions, caches), then measure each, the
        // baseline first and again last to see the machine drift.
        drive(&channels, Mode::Baseline, concurrency, Duration::from_secs(1)).await;
        drive(&channels, Mode::Authorize, concurrency, Duration::from_secs(1)).await;
        let before = figures(drive(&channels, Mode::Baseline, concurrency, window).await, seconds as f64);
        let authorize = figures(drive(&channels, Mode::Authorize, concurrency, window).await, seconds as f64);
        let after = figures(drive(&channels, Mode::Baseline, concurrency, window).await, seconds as f64);
        let baseline = (before.per_second + after.per_second) / 2.0;
        println!(
            "load: {connections} mTLS connection(s), {concurrency} calls in flight, {seconds} s per mode, {} core(s)",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        println!("| mode | calls | calls/s | p50 µs | p99 µs |");
        println!("| --- | --- | --- | --- | --- |");
        for (name, f) in [
            ("health check (baseline, before)", &before),
            ("Authorize", &authorize),
            ("health check (baseline, after)", &after),
        ] {
            println!(
                "| {name} | {} | {:.0} | {} | {} |",
                f.calls, f.per_second, f.p50_us, f.p99_us
            );
        }
        println!(
            "Authorize / baseline throughput: {:.1}% (budget: at least 80%)",
            100.0 * authorize.per_second / baseline
        );
        dev.server.shutdown().await.unwrap();
    });
}
