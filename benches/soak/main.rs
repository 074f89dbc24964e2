//! Soak (issue 10): a real `mandate serve` process under steady
//! `Authorize` load for a configured time while tasks in use are revoked
//! and the policy set is reloaded, then the checks:
//!
//! - no ALLOW for a call sent after its task's revoke was acknowledged;
//! - no failed call (gRPC error) at all, during reloads or otherwise, and
//!   no deny of a task nobody revoked;
//! - every reload shows (new policy hash, a decision that follows it);
//! - the server's memory is stable: its RSS at the end is within
//!   `SOAK_MAX_RSS_GROWTH_PCT` of its RSS after warm-up, which lasts
//!   `SOAK_WARMUP_SECONDS` and at least until the server's audit index (the
//!   latest 100,000 decisions by default) is full and its ended tasks have
//!   begun to leave memory (the default `task_retention_secs`, 300, and one
//!   sweep); judged only when the run goes on at least 30 s after that.
//!
//! Any violation exits 1. Run: `scripts/soak.sh` (or `cargo bench --bench
//! soak`). Knobs (environment): `SOAK_SECONDS` (default 60),
//! `SOAK_WARMUP_SECONDS` (default 30), `SOAK_AUDIT_INDEX_ENTRIES` (the
//! server's `index_max_entries`, 100000), `SOAK_CONNECTIONS` (patcher mTLS connections, 4),
//! `SOAK_CONCURRENCY` (calls in flight, closed loop, 16), `SOAK_TASKS`
//! (tasks in use at once, 8), `SOAK_REVOKE_MS` (one revoke every, 250),
//! `SOAK_LINGER_MS` (a revoked token stays in use after the
//! acknowledgement, 50), `SOAK_RELOAD_MS` (one reload every, 5000),
//! `SOAK_MAX_RSS_GROWTH_PCT` (10).

#![allow(missing_docs, reason = "a bench binary")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "benchmark set-up"
)]

#[path = "../common/mod.rs"]
mod common;
mod ledger;
mod load;
mod memory;
mod reload;
mod revoke;

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use common::knob;
use common::serve::{ServeProcess, copy_policies};
use mandate::api::v1::task_service_client::TaskServiceClient;
use mandate::identity::dev::DevTrustDomain;
use tonic::transport::Channel;

use ledger::Tally;
use reload::{Reload, Reloader};
use revoke::{Slots, Supply};

const TRUST_DOMAIN: &str = "mandate.local";

struct Knobs {
    seconds: u64,
    warmup: u64,
    connections: usize,
    concurrency: usize,
    tasks: usize,
    revoke_every: Duration,
    linger: Duration,
    reload_every: Duration,
    max_growth_pct: u64,
    audit_index_entries: u64,
}

impl Knobs {
    fn read() -> Self {
        let seconds = knob("SOAK_SECONDS", 60).max(5);
        Self {
            seconds,
            warmup: knob("SOAK_WARMUP_SECONDS", 30),
            connections: knob("SOAK_CONNECTIONS", 4).max(1) as usize,
            concurrency: knob("SOAK_CONCURRENCY", 16).max(1) as usize,
            tasks: knob("SOAK_TASKS", 8).max(1) as usize,
            revoke_every: Duration::from_millis(knob("SOAK_REVOKE_MS", 250).max(1)),
            linger: Duration::from_millis(knob("SOAK_LINGER_MS", 50)),
            reload_every: Duration::from_millis(knob("SOAK_RELOAD_MS", 5000).max(100)),
            max_growth_pct: knob("SOAK_MAX_RSS_GROWTH_PCT", 10),
            audit_index_entries: knob("SOAK_AUDIT_INDEX_ENTRIES", 100_000),
        }
    }
}

/// The server's directory: a dev trust domain, the shipped policies plus
/// the toggled `soak.cedar`; returns the policies directory.
fn lay_out(dir: &Path) -> (DevTrustDomain, std::path::PathBuf) {
    let dev = DevTrustDomain::init(
        &dir.join("data").join("dev"),
        &spiffe::TrustDomain::new(TRUST_DOMAIN).unwrap(),
        &[],
    )
    .unwrap();
    let policies = dir.join("policies");
    copy_policies(&common::repo().join("policies"), &policies);
    reload::write(&policies, true);
    (dev, policies)
}

/// A new mTLS connection to `addr` as the dev sample `path`, accepting
/// only Mandate's own SVID.
async fn connect(dev: &DevTrustDomain, addr: &str, path: &str) -> Channel {
    let sample = dev
        .samples
        .iter()
        .find(|s| s.spiffe_id.ends_with(&format!("/{path}")))
        .unwrap();
    let identity =
        mandate::client::identity_from_files(&sample.cert, &sample.key, &dev.bundle, None).unwrap();
    let server = spiffe::SpiffeId::new(format!("spiffe://{TRUST_DOMAIN}/mandate")).unwrap();
    mandate::client::channel(addr, &identity, Some(server))
        .await
        .unwrap()
}

fn quantile(sorted: &[u32], q: f64) -> u32 {
    sorted
        .get(((sorted.len().max(1) - 1) as f64 * q).round() as usize)
        .copied()
        .unwrap_or(0)
}

fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; nothing else is read from the
    // command line.
    let k = Knobs::read();
    let dir = tempfile::tempdir().unwrap();
    let (dev, policies) = lay_out(dir.path());
    let schema = common::repo().join("schemas/mandate.cedarschema");
    let catalog = common::repo().join("examples/catalog.toml");
    let data = dir.path().join("data");
    let mut server = ServeProcess::start(
        dir.path(),
        &[
            "--data-dir".as_ref(),
            data.as_os_str(),
            "--policies".as_ref(),
            policies.as_os_str(),
            "--schema".as_ref(),
            schema.as_os_str(),
            "--catalog".as_ref(),
            catalog.as_os_str(),
        ],
        // `info` would log every decision; the soak wants what goes wrong.
        "warn,mandate::server=info",
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let tally = Arc::new(Tally::default());
    let reloads: Arc<Mutex<Vec<Reload>>> = Arc::default();

    let (latencies, revoke_latencies, memory) = runtime.block_on(async {
        let addr = server.addr.clone();
        let mut supply = Supply {
            frontend: TaskServiceClient::new(connect(&dev, &addr, "workloads/frontend").await),
            patcher: TaskServiceClient::new(connect(&dev, &addr, "agents/patcher").await),
            patcher_id: format!("spiffe://{TRUST_DOMAIN}/agents/patcher"),
        };
        let mut slots = Vec::new();
        for _ in 0..k.tasks {
            slots.push(ArcSwap::from_pointee(supply.task(&tally).await.unwrap()));
        }
        let slots: Slots = Arc::new(slots);
        let mut channels = Vec::new();
        for _ in 0..k.connections {
            channels.push(connect(&dev, &addr, "agents/patcher").await);
        }
        let admin = connect(&dev, &addr, "workloads/admin").await;

        let started = Instant::now();
        let deadline = started + Duration::from_secs(k.seconds);
        let stop = Arc::new(AtomicBool::new(false));
        let (samples, sampler) = memory::sampler(server.pid(), started, stop.clone());
        let per_second: load::PerSecond =
            Arc::new((0..=k.seconds + 1).map(|_| AtomicU64::new(0)).collect());
        let callers: Vec<_> = (0..k.concurrency)
            .map(|n| {
                tokio::spawn(load::caller(
                    n,
                    channels[n % channels.len()].clone(),
                    slots.clone(),
                    tally.clone(),
                    per_second.clone(),
                    started,
                    deadline,
                ))
            })
            .collect();
        let revoker = tokio::spawn(revoke::revoker(
            supply,
            slots.clone(),
            tally.clone(),
            k.revoke_every,
            k.linger,
            deadline,
        ));
        let reloader = tokio::spawn(
            Reloader {
                dir: policies.clone(),
                admin,
                every: k.reload_every,
                started,
                deadline,
                tally: tally.clone(),
                log: reloads.clone(),
            }
            .run(),
        );
        let mut latencies = Vec::new();
        for c in callers {
            latencies.extend(c.await.unwrap());
        }
        // The last RSS sample is the server at the end of the load.
        stop.store(true, Ordering::SeqCst);
        sampler.join().unwrap();
        let revoke_latencies = revoker.await.unwrap();
        reloader.await.unwrap();
        let memory = samples.lock().unwrap().clone();
        (latencies, revoke_latencies, (memory, per_second))
    });
    let alive = server.running();
    report(
        &k,
        &tally,
        latencies,
        revoke_latencies,
        &reloads.lock().unwrap(),
        &memory,
        alive,
        &server.log,
    )
}

#[allow(clippy::too_many_arguments, reason = "one summary of one run")]
fn report(
    k: &Knobs,
    tally: &Tally,
    mut latencies: Vec<u32>,
    mut revokes: Vec<u64>,
    reloads: &[Reload],
    (samples, per_second): &(Vec<(f64, u64)>, load::PerSecond),
    alive: bool,
    log: &Path,
) -> ExitCode {
    let get = |c: &AtomicU64| c.load(Ordering::SeqCst);
    latencies.sort_unstable();
    revokes.sort_unstable();
    let calls = latencies.len();
    println!(
        "soak: {} s, {} patcher connection(s), {} calls in flight (closed loop), {} tasks in use, a revoke every {} ms (token used {} ms past the ack), a reload every {} ms, {} core(s)",
        k.seconds,
        k.connections,
        k.concurrency,
        k.tasks,
        k.revoke_every.as_millis(),
        k.linger.as_millis(),
        k.reload_every.as_millis(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "calls: {calls} ({:.0}/s), p50 {} µs, p99 {} µs, p99.9 {} µs, max {} µs; allowed {}, denied as revoked {}",
        calls as f64 / k.seconds as f64,
        quantile(&latencies, 0.5),
        quantile(&latencies, 0.99),
        quantile(&latencies, 0.999),
        latencies.last().copied().unwrap_or(0),
        get(&tally.allows),
        get(&tally.denies_expected),
    );
    let revoke_q = |q: f64| {
        revokes
            .get(((revokes.len().max(1) - 1) as f64 * q).round() as usize)
            .copied()
            .unwrap_or(0)
    };
    println!(
        "revokes acknowledged: {} (RevokeTask p50 {} µs, p99 {} µs); calls sent after an acknowledgement: {}",
        revokes.len(),
        revoke_q(0.5),
        revoke_q(0.99),
        get(&tally.calls_after_ack),
    );

    // Decisions per second, in the seconds around a reload (from the write
    // to one second after it showed) and in the others; the first and last
    // (partial) seconds are left out.
    let last = k.seconds.saturating_sub(1);
    let around = |s: u64| {
        reloads.iter().any(|r| {
            let from = r.written.as_secs();
            let to = r
                .shown
                .unwrap_or(r.written + Duration::from_secs(10))
                .as_secs()
                + 1;
            (from..=to).contains(&s)
        })
    };
    let stats = |near: bool| {
        let counts: Vec<u64> = (1..last)
            .filter(|s| around(*s) == near)
            .map(|s| get(&per_second[s as usize]))
            .collect();
        let mean = counts.iter().sum::<u64>() as f64 / counts.len().max(1) as f64;
        (
            counts.len(),
            mean,
            counts.iter().copied().min().unwrap_or(0),
        )
    };
    let (near_n, near_mean, near_min) = stats(true);
    let (far_n, far_mean, far_min) = stats(false);
    let shown: Vec<f64> = reloads
        .iter()
        .filter_map(|r| Some((r.shown? - r.written).as_secs_f64() * 1000.0))
        .collect();
    let failed_near = tally
        .failed_at
        .lock()
        .unwrap()
        .iter()
        .filter(|s| around(**s))
        .count();
    println!(
        "reloads: {} ({} by the file watch, {} by PolicyService.Reload), {} shown, write to shown {:.0} to {:.0} ms",
        reloads.len(),
        reloads.iter().filter(|r| !r.by_rpc).count(),
        reloads.iter().filter(|r| r.by_rpc).count(),
        shown.len(),
        shown.iter().copied().reduce(f64::min).unwrap_or(0.0),
        shown.iter().copied().fold(0.0, f64::max),
    );
    println!(
        "decisions/s around reloads: mean {near_mean:.0}, min {near_min} ({near_n} s); elsewhere: mean {far_mean:.0}, min {far_min} ({far_n} s)"
    );

    let mut failures = Vec::new();
    // The warm-up lasts until the audit index (a bounded in-memory window
    // of the latest decisions, on by default) is full: until then its
    // growth is by design. One decision is at least one entry.
    let mut answered = 0;
    let index_full = (0..per_second.len()).find(|s| {
        answered += get(&per_second[*s]);
        answered >= k.audit_index_entries
    });
    // Ended tasks stay in memory for the retention period, also by design:
    // the first ones leave it one retention and one sweep (at most 30 s)
    // after the first revoke.
    let retention_full = mandate::config::TasksConfig::default()
        .retention_secs
        .unsigned_abs()
        + 30;
    let judged = index_full
        .map(|s| (s as u64 + 2).max(k.warmup).max(retention_full))
        .filter(|w| w + 30 <= k.seconds);
    let first = samples.first().map_or(0, |s| s.1);
    let peak = samples.iter().map(|s| s.1).max().unwrap_or(0);
    match judged.map(|w| (w, memory::figures(samples, w as f64))) {
        _ if samples.is_empty() => failures.push("memory: no RSS samples of the server".into()),
        Some((_, None)) => failures.push("memory: no RSS sample after warm-up".into()),
        Some((w, Some(m))) => {
            println!(
                "server RSS: {} MiB at start, {} MiB after warm-up ({w} s: the audit index full, {} decisions, and ended tasks leaving memory), {} MiB at the end, peak {} MiB after warm-up; growth after warm-up {:+.1}% (stable: at most {}%)",
                m.first / 1024,
                m.warm / 1024,
                k.audit_index_entries,
                m.end / 1024,
                m.peak / 1024,
                m.growth_pct,
                k.max_growth_pct
            );
            if m.growth_pct > k.max_growth_pct as f64 {
                failures.push(format!(
                    "memory: RSS grew {:.1}% after warm-up",
                    m.growth_pct
                ));
            }
        }
        None => println!(
            "server RSS: {} MiB at start, {} MiB at the end, peak {} MiB; not judged: the run ended less than 30 s after warm-up ({} s, until the audit index is full: {} decisions, {calls} made, and until ended tasks leave memory: {retention_full} s), and RSS grows until then by design",
            first / 1024,
            samples.last().map_or(0, |s| s.1) / 1024,
            peak / 1024,
            k.warmup,
            k.audit_index_entries,
        ),
    }

    let series: Vec<String> = samples
        .iter()
        .filter(|(t, _)| (*t as u64).is_multiple_of(30))
        .map(|(t, kib)| format!("{:.0}s {}", t, kib / 1024))
        .collect();
    println!("server RSS every 30 s (MiB): {}", series.join(", "));

    let checks = [
        (
            "ALLOW after a revoke's acknowledgement",
            get(&tally.allows_after_ack),
        ),
        (
            "deny of a task nobody revoked",
            get(&tally.unexpected_denies),
        ),
        (
            "failed Authorize calls (gRPC error)",
            get(&tally.failed_calls),
        ),
        ("  of which around a reload", failed_near as u64),
        (
            "failed control calls or reloads that did not show",
            get(&tally.failed_control),
        ),
    ];
    println!("violations:");
    for (what, n) in checks {
        println!("  {what}: {n}");
        if n > 0 && !what.starts_with(' ') {
            failures.push(format!("{what}: {n}"));
        }
    }
    if !alive {
        failures.push("the server process exited during the soak".into());
    }
    if get(&tally.calls_after_ack) == 0 {
        failures.push("inconclusive: no call was sent after a revoke's acknowledgement".into());
    }
    if reloads.is_empty() && k.reload_every.as_secs() + 5 < k.seconds {
        failures.push("inconclusive: no reload happened".into());
    }
    let log = std::fs::read_to_string(log).unwrap_or_default();
    let problems: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("\"level\":\"ERROR\"") || l.contains("\"level\":\"WARN\""))
        .collect();
    println!("server log: {} warning or error line(s)", problems.len());
    for line in problems.iter().take(5) {
        println!("  {line}");
    }
    for example in tally.examples.lock().unwrap().iter() {
        println!("  example: {example}");
    }
    if failures.is_empty() {
        println!("soak: PASS");
        ExitCode::SUCCESS
    } else {
        for f in &failures {
            println!("soak: FAIL: {f}");
        }
        ExitCode::FAILURE
    }
}
