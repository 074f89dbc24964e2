//! Load generator (DESIGN §8): `Authorize`, Envoy's ext_authz `Check` and
//! an AuthZEN evaluation over SPIFFE mTLS on loopback, against the floor:
//! a do-nothing gRPC call (`grpc.health.v1.Health/Check`) on the same
//! server, TLS set-up, HTTP/2 stack and connections, in the same run. The
//! budget: `Authorize` and `Check` at least 80% of the floor's throughput,
//! AuthZEN at least 80% of `Authorize`'s.
//!
//! Both decision calls are the realistic agent path: the patcher presents a
//! task token bound to its SVID and reads `repo:acme/payments` (allowed).
//! `Check` comes from the sample Envoy SVID, on behalf of the patcher,
//! with its forwarded certificate, through the example route map; the
//! AuthZEN evaluation asks the same (`POST /access/v1/evaluation` over
//! HTTP/2, the certificate and token in `subject.properties`).
//!
//! Run: `cargo bench --bench load`. Knobs (environment): `LOAD_SECONDS`
//! (per mode, default 5), `LOAD_CONNECTIONS` (per client identity, default
//! 4), `LOAD_CONCURRENCY` (calls in flight in all, default 32), `LOAD_RATE`
//! (calls/s in all; 0, the default, is closed-loop at the concurrency;
//! with a rate, latency counts from each call's scheduled start, so a
//! server that falls behind shows in the tail instead of slowing the
//! load), `LOAD_MODES` (comma-separated, default
//! `floor,authorize,tokenless,check,authzen,floor`; `tokenless` is
//! `Authorize` without a task token, the patcher reading the handbook), `BENCH_AUDIT=off` (the server as
//! `mandate serve` runs it by default, with the in-memory audit index, unless
//! set). The server and the load share the machine, as they do for the
//! floor.

#![allow(missing_docs, reason = "a bench binary")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "benchmark set-up"
)]

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{DevServer, knob};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
use mandate::api::v1::authorization_service_client::AuthorizationServiceClient;
use mandate::api::v1::task_service_client::TaskServiceClient;
use mandate::api::v1::{
    AuthorizeRequest, CreateTaskRequest, Decision, IssueTaskTokenRequest, Resource, TaskScope,
};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Floor,
    Authorize,
    /// `Authorize` without a task token: the patcher reads the handbook,
    /// which `anyone-reads-handbook` permits.
    Tokenless,
    Check,
    Authzen,
}

impl Mode {
    fn parse(name: &str) -> Self {
        match name.trim() {
            "floor" => Self::Floor,
            "authorize" => Self::Authorize,
            "tokenless" => Self::Tokenless,
            "check" => Self::Check,
            "authzen" => Self::Authzen,
            other => {
                panic!(
                    "LOAD_MODES: unknown mode `{other}` (floor, authorize, tokenless, check, authzen)"
                )
            }
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Floor => "floor: health check",
            Self::Authorize => "Authorize",
            Self::Tokenless => "Authorize without a token",
            Self::Check => "ext_authz Check",
            Self::Authzen => "AuthZEN evaluation",
        }
    }
}

/// What each mode sends, prepared once.
#[derive(Clone)]
struct Calls {
    agent: Vec<Channel>,
    envoy: Vec<Channel>,
    authorize: AuthorizeRequest,
    tokenless: AuthorizeRequest,
    check: CheckRequest,
    /// AuthZEN clients (one HTTP/2 connection each) and the evaluation URL.
    authzen: Vec<reqwest::Client>,
    authzen_url: String,
    evaluation: String,
}

/// One call of `mode` on `channel` (the `n`th AuthZEN client); panics
/// unless it was allowed, so the figures are never those of an error path.
async fn one(mode: Mode, channel: &Channel, n: usize, calls: &Calls) {
    match mode {
        Mode::Authzen => {
            let client = &calls.authzen[n % calls.authzen.len()];
            let response = client
                .post(&calls.authzen_url)
                .header("content-type", "application/json")
                .body(calls.evaluation.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            let body = response.bytes().await.unwrap();
            assert!(
                body.starts_with(br#"{"decision":true"#),
                "{}",
                String::from_utf8_lossy(&body)
            );
        }
        Mode::Floor => {
            HealthClient::new(channel.clone())
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .unwrap();
        }
        Mode::Authorize | Mode::Tokenless => {
            let request = if mode == Mode::Authorize {
                &calls.authorize
            } else {
                &calls.tokenless
            };
            let r = AuthorizationServiceClient::new(channel.clone())
                .authorize(request.clone())
                .await
                .unwrap()
                .into_inner();
            assert_eq!(r.decision, Decision::Allow as i32, "{r:?}");
        }
        Mode::Check => {
            let r = AuthorizationClient::new(channel.clone())
                .check(calls.check.clone())
                .await
                .unwrap()
                .into_inner();
            assert_eq!(r.status.as_ref().map(|s| s.code), Some(0), "{r:?}");
        }
    }
}

/// Each call's latency in microseconds, for `for_`.
async fn drive(
    calls: &Calls,
    mode: Mode,
    concurrency: usize,
    rate: u64,
    for_: Duration,
) -> Vec<u64> {
    let channels = if mode == Mode::Check {
        &calls.envoy
    } else {
        &calls.agent
    };
    let started = Instant::now();
    let deadline = started + for_;
    // With a rate, each worker sends every `interval`, the workers spread
    // over one interval.
    let interval = (rate > 0).then(|| Duration::from_secs_f64(concurrency as f64 / rate as f64));
    let mut workers = Vec::new();
    for n in 0..concurrency {
        let channel = channels[n % channels.len()].clone();
        let calls = calls.clone();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut next = interval.map(|i| started + i.mul_f64(n as f64 / concurrency as f64));
            loop {
                let start = match (next, interval) {
                    (Some(at), Some(i)) => {
                        tokio::time::sleep_until(at.into()).await;
                        next = Some(at + i);
                        at
                    }
                    _ => Instant::now(),
                };
                if start >= deadline {
                    break;
                }
                one(mode, &channel, n, &calls).await;
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
    quantiles: [u64; 4],
    calls: usize,
}

fn figures(mut latencies: Vec<u64>, seconds: f64) -> Figures {
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
    Figures {
        per_second: latencies.len() as f64 / seconds,
        quantiles: [at(0.50), at(0.90), at(0.99), at(0.999)],
        calls: latencies.len(),
    }
}

/// A task for the patcher (read on the repos, an hour) and its token,
/// bound to the patcher's sample SVID.
async fn token(dev: &DevServer) -> String {
    let mut frontend = TaskServiceClient::new(dev.channel_as("workloads/frontend").await);
    let task = frontend
        .create_task(CreateTaskRequest {
            intent: "load".into(),
            delegatee: dev.sample("agents/patcher").spiffe_id.clone(),
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
    TaskServiceClient::new(dev.channel_as("agents/patcher").await)
        .issue_task_token(IssueTaskTokenRequest {
            task_id: task,
            ttl_seconds: 3600,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .token
}

async fn prepare(dev: &DevServer, connections: usize) -> Calls {
    let token = token(dev).await;
    let patcher = dev.sample("agents/patcher");
    let pem = std::fs::read_to_string(&patcher.cert).unwrap();
    let mut agent = Vec::new();
    let mut envoy = Vec::new();
    let mut authzen = Vec::new();
    let mut authzen_url = String::new();
    for _ in 0..connections {
        agent.push(dev.channel_as("agents/patcher").await);
        envoy.push(dev.channel_as("workloads/envoy").await);
        let (client, base) = dev.authzen_as("workloads/envoy");
        authzen.push(client);
        authzen_url = format!("{base}/access/v1/evaluation");
    }
    let evaluation = serde_json::json!({
        "subject": {
            "type": "agent",
            "id": patcher.spiffe_id,
            "properties": {"token": token, "certificate_pem": pem},
        },
        "action": {"name": "read"},
        "resource": {"type": "Mandate::Resource", "id": "repo:acme/payments"},
    })
    .to_string();
    Calls {
        agent,
        envoy,
        authorize: AuthorizeRequest {
            action: "read".into(),
            resource: Some(Resource {
                r#type: String::new(),
                id: "repo:acme/payments".into(),
            }),
            token: token.clone(),
            ..Default::default()
        },
        tokenless: AuthorizeRequest {
            action: "read".into(),
            resource: Some(Resource {
                r#type: String::new(),
                id: "handbook".into(),
            }),
            ..Default::default()
        },
        check: CheckRequest {
            attributes: Some(AttributeContext {
                source: Some(Peer {
                    principal: patcher.spiffe_id.clone(),
                    certificate: utf8_percent_encode(&pem, NON_ALPHANUMERIC).to_string(),
                    ..Default::default()
                }),
                request: Some(Request {
                    http: Some(HttpRequest {
                        method: "GET".into(),
                        host: "tools.acme.internal".into(),
                        path: "/repos/acme/payments".into(),
                        headers: HashMap::from([("x-mandate-token".to_owned(), token)]),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        },
        authzen,
        authzen_url,
        evaluation,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a plain run is the same.
    let seconds = knob("LOAD_SECONDS", 5);
    let connections = knob("LOAD_CONNECTIONS", 4).max(1) as usize;
    let concurrency = knob("LOAD_CONCURRENCY", 32).max(1) as usize;
    let rate = knob("LOAD_RATE", 0);
    let modes: Vec<Mode> = std::env::var("LOAD_MODES")
        .unwrap_or_else(|_| "floor,authorize,tokenless,check,authzen,floor".to_owned())
        .split(',')
        .map(Mode::parse)
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    runtime.block_on(async {
        let dev = DevServer::start(dir.path()).await;
        let calls = prepare(&dev, connections).await;
        let window = Duration::from_secs(seconds);
        // Warm every path (connections, caches) before measuring.
        for mode in [
            Mode::Floor,
            Mode::Authorize,
            Mode::Tokenless,
            Mode::Check,
            Mode::Authzen,
        ] {
            drive(&calls, mode, concurrency, 0, Duration::from_secs(1)).await;
        }
        let mut results = Vec::new();
        for mode in &modes {
            let latencies = drive(&calls, *mode, concurrency, rate, window).await;
            results.push((*mode, figures(latencies, seconds as f64)));
        }
        println!(
            "load: {connections} mTLS connection(s) per identity, {concurrency} calls in flight, {}, {seconds} s per mode, {} core(s)",
            if rate == 0 {
                "closed loop".to_owned()
            } else {
                format!("{rate} calls/s offered")
            },
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        println!("| mode | calls | calls/s | p50 µs | p90 µs | p99 µs | p99.9 µs |");
        println!("| --- | --- | --- | --- | --- | --- | --- |");
        for (mode, f) in &results {
            let [p50, p90, p99, p999] = f.quantiles;
            println!(
                "| {} | {} | {:.0} | {p50} | {p90} | {p99} | {p999} |",
                mode.label(),
                f.calls,
                f.per_second
            );
        }
        let floors: Vec<f64> = results
            .iter()
            .filter(|(m, _)| *m == Mode::Floor)
            .map(|(_, f)| f.per_second)
            .collect();
        let per_second = |mode: Mode| {
            results
                .iter()
                .find(|(m, _)| *m == mode)
                .map(|(_, f)| f.per_second)
        };
        if let (Some(authzen), Some(authorize)) =
            (per_second(Mode::Authzen), per_second(Mode::Authorize))
        {
            println!(
                "AuthZEN evaluation / Authorize throughput: {:.1}% (budget: at least 80%)",
                100.0 * authzen / authorize
            );
        }
        if !floors.is_empty() {
            let floor = floors.iter().sum::<f64>() / floors.len() as f64;
            for (mode, f) in results
                .iter()
                .filter(|(m, _)| matches!(m, Mode::Authorize | Mode::Check))
            {
                println!(
                    "{} / floor throughput: {:.1}% (budget: at least 80%)",
                    mode.label(),
                    100.0 * f.per_second / floor
                );
            }
        }
        dev.server.shutdown().await.unwrap();
    });
}
