//! Resident memory per task in the live graph (DESIGN §8: under 1 KiB per
//! active task at 1M tasks), a timed program rather than criterion: it
//! puts `MANDATE_BENCH_TASKS` (default 1,000,000) tasks shaped like the
//! store bench's (three roots for every child, UUIDv7 ids, the example's
//! SPIFFE IDs, two actions, one resource) into a graph the way start-up
//! does (`TaskGraph::apply`, in batches), and reads `VmRSS` before and
//! after. The figure is an upper bound: it includes what the allocator
//! keeps of the freed batches.
//!
//! `cargo bench --bench memory`

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    reason = "benchmark"
)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use mandate::graph::{Task, TaskGraph, TaskSpec};
use spiffe::SpiffeId;

const BATCH: usize = 10_000;

/// `VmRSS` of this process, KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

fn main() {
    let n: usize = std::env::var("MANDATE_BENCH_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let now = mandate::clock::Clock::now(&mandate::clock::SystemClock);
    let spec = |delegatee: &str| TaskSpec {
        intent: "fix the payments build".into(),
        delegatee: SpiffeId::new(delegatee).unwrap(),
        actions: BTreeSet::from(["read".to_owned(), "write".to_owned()]),
        scope: BTreeSet::from(["repo:acme/payments".to_owned()]),
        max_sensitivity: 1,
        expires_at: now + 86_400,
    };
    let front = SpiffeId::new("spiffe://mandate.local/workloads/frontend").unwrap();
    let patcher = SpiffeId::new("spiffe://mandate.local/agents/patcher").unwrap();
    let graph = TaskGraph::new(8);
    let before = rss_kib();
    let started = Instant::now();
    let mut parent: Option<Arc<Task>> = None;
    let mut made = 0;
    while made < n {
        let mut batch = Vec::with_capacity(BATCH);
        while batch.len() < BATCH && made < n {
            let id: mandate::graph::TaskId = uuid::Uuid::now_v7().to_string().into();
            // Every fourth task is a child of the root before it.
            let task = match (&parent, made % 4) {
                (Some(root), 3) => Task::new(
                    id,
                    spec("spiffe://mandate.local/agents/tester"),
                    patcher.clone(),
                    "alice".into(),
                    Some(root),
                    now,
                ),
                _ => Task::new(
                    id,
                    spec("spiffe://mandate.local/agents/patcher"),
                    front.clone(),
                    "alice".into(),
                    None,
                    now,
                ),
            };
            let task = Arc::new(task);
            if task.parent.is_none() {
                parent = Some(task.clone());
            }
            batch.push(task);
            made += 1;
        }
        graph.apply(&batch, made as u64);
    }
    drop(parent);
    let elapsed = started.elapsed();
    let after = rss_kib();
    let per_task = (after.saturating_sub(before) * 1024) as f64 / n as f64;
    println!(
        "memory: {} tasks in the graph in {elapsed:.2?}; VmRSS {before} kB before, {after} kB after: {per_task:.0} bytes per task",
        graph.len()
    );
}
