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
//! The `cerbos` mode (issue 20: AuthZEN at least 5x Cerbos 0.55's own
//! AuthZEN endpoint) asks Cerbos 0.55.0 the same question on an equivalent
//! attribute policy (`common::cerbos`), from the same Envoy SVID over
//! HTTP/2 and TLS with Mandate's server SVID. Cerbos checks that a client
//! certificate chains to the dev bundle when one is presented, but does not
//! require one or look at its SPIFFE ID, and it checks no task token,
//! delegation chain or task state: it does strictly less work. Only a run
//! with `cerbos` in `LOAD_MODES` installs it, from npm
//! (`@cerbos/cerbos-linux-x64`) into `target/cerbos-0.55.0/`, and starts it
//! as a child process.
//!
//! Run: `cargo bench --bench load`. Knobs (environment): `LOAD_SECONDS`
//! (per mode, default 5), `LOAD_CONNECTIONS` (per client identity, default
//! 4), `LOAD_CONCURRENCY` (calls in flight in all, default 32), `LOAD_RATE`
//! (calls/s in all; 0, the default, is closed-loop at the concurrency;
//! with a rate, latency counts from each call's scheduled start, so a
//! server that falls behind shows in the tail instead of slowing the
//! load), `LOAD_MODES` (comma-separated, default
//! `floor,authorize,tokenless,check,authzen,floor`; `tokenless` is
//! `Authorize` without a task token, the patcher reading the handbook;
//! `cerbos` as above; a mode named twice counts at its mean in the
//! ratios), `BENCH_AUDIT=off` (the server as
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

use common::cerbos::{CerbosProcess, Tls};
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
    /// Cerbos 0.55's own AuthZEN endpoint on an equivalent policy
    /// (`common::cerbos`), from the same Envoy SVID over TLS.
    Cerbos,
}

impl Mode {
    fn parse(name: &str) -> Self {
        match name.trim() {
            "floor" => Self::Floor,
            "authorize" => Self::Authorize,
            "tokenless" => Self::Tokenless,
            "check" => Self::Check,
            "authzen" => Self::Authzen,
            "cerbos" => Self::Cerbos,
            other => {
                panic!(
                    "LOAD_MODES: unknown mode `{other}` (floor, authorize, tokenless, check, authzen, cerbos)"
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
            Self::Cerbos => "Cerbos 0.55 AuthZEN evaluation",
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
    /// The same for Cerbos, when the `cerbos` mode runs.
    cerbos: Option<Evaluations>,
}

/// AuthZEN clients of one PDP (one HTTP/2 connection each), its evaluation
/// URL and the request.
#[derive(Clone)]
struct Evaluations {
    clients: Vec<reqwest::Client>,
    url: String,
    body: String,
}

/// One AuthZEN evaluation; panics unless it was allowed.
async fn evaluate(client: &reqwest::Client, url: &str, body: &str) {
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_owned())
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

/// One call of `mode` on `channel` (the `n`th AuthZEN client); panics
/// unless it was allowed, so the figures are never those of an error path.
async fn one(mode: Mode, channel: &Channel, n: usize, calls: &Calls) {
    match mode {
        Mode::Authzen => {
            let client = &calls.authzen[n % calls.authzen.len()];
            evaluate(client, &calls.authzen_url, &calls.evaluation).await;
        }
        Mode::Cerbos => {
            let cerbos = calls.cerbos.as_ref().unwrap();
            let client = &cerbos.clients[n % cerbos.clients.len()];
            evaluate(client, &cerbos.url, &cerbos.body).await;
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

async fn prepare(dev: &DevServer, connections: usize, cerbos: Option<&str>) -> Calls {
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
        cerbos: cerbos.map(|url| Evaluations {
            clients: (0..connections)
                .map(|_| dev.https_client_as("workloads/envoy"))
                .collect(),
            url: format!("{url}/access/v1/evaluation"),
            body: common::cerbos::evaluation(&patcher.spiffe_id),
        }),
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
        // Only a run that asks for Cerbos installs and starts it.
        let mut cerbos = modes.contains(&Mode::Cerbos).then(|| {
            let (svid, bundle) = dev.server_tls();
            CerbosProcess::start(
                &dir.path().join("cerbos"),
                &Tls {
                    cert: &svid.cert,
                    key: &svid.key,
                    client_ca: bundle,
                },
            )
        });
        if let Some(cerbos) = &mut cerbos {
            cerbos.ready(&dev.https_client_as("workloads/envoy")).await;
        }
        let calls = prepare(&dev, connections, cerbos.as_ref().map(|c| c.url.as_str())).await;
        let window = Duration::from_secs(seconds);
        // Warm every path (connections, caches) before measuring.
        for mode in [
            Mode::Floor,
            Mode::Authorize,
            Mode::Tokenless,
            Mode::Check,
            Mode::Authzen,
            Mode::Cerbos,
        ] {
            if mode != Mode::Cerbos || calls.cerbos.is_some() {
                drive(&calls, mode, concurrency, 0, Duration::from_secs(1)).await;
            }
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
        // A mode run more than once counts at its mean.
        let per_second = |mode: Mode| {
            let runs: Vec<f64> = results
                .iter()
                .filter(|(m, _)| *m == mode)
                .map(|(_, f)| f.per_second)
                .collect();
            (!runs.is_empty()).then(|| runs.iter().sum::<f64>() / runs.len() as f64)
        };
        if let (Some(authzen), Some(authorize)) =
            (per_second(Mode::Authzen), per_second(Mode::Authorize))
        {
            println!(
                "AuthZEN evaluation / Authorize throughput: {:.1}% (budget: at least 80%)",
                100.0 * authzen / authorize
            );
        }
        if let (Some(authzen), Some(cerbos)) = (per_second(Mode::Authzen), per_second(Mode::Cerbos))
        {
            println!(
                "AuthZEN evaluation / Cerbos 0.55 AuthZEN throughput: {:.1}x (goal: at least 5x)",
                authzen / cerbos
            );
        }
        if let Some(floor) = per_second(Mode::Floor) {
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
