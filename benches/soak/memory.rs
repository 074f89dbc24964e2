//! The server's resident memory, sampled every second from
//! `/proc/PID/status` (the server is its own process, so the figure is
//! its alone).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::serve::rss_kib;

/// `(seconds since the run started, VmRSS in KiB)`.
pub type Samples = Arc<Mutex<Vec<(f64, u64)>>>;

/// Samples `pid` every second until `stop` is set.
pub fn sampler(
    pid: u32,
    started: Instant,
    stop: Arc<AtomicBool>,
) -> (Samples, std::thread::JoinHandle<()>) {
    let samples: Samples = Arc::default();
    let out = samples.clone();
    let handle = std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            if let Some(kib) = rss_kib(pid) {
                out.lock()
                    .unwrap()
                    .push((started.elapsed().as_secs_f64(), kib));
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        if let Some(kib) = rss_kib(pid) {
            out.lock()
                .unwrap()
                .push((started.elapsed().as_secs_f64(), kib));
        }
    });
    (samples, handle)
}

/// The figures of a run: after warm-up, at the end, the peak after
/// warm-up, and the growth from the first to the second in percent.
pub struct Figures {
    pub warm: u64,
    pub end: u64,
    pub peak: u64,
    pub first: u64,
    pub growth_pct: f64,
}

pub fn figures(samples: &[(f64, u64)], warmup: f64) -> Option<Figures> {
    let first = samples.first()?.1;
    let warm = samples.iter().find(|(t, _)| *t >= warmup)?.1;
    let end = samples.last()?.1;
    let peak = samples
        .iter()
        .filter(|(t, _)| *t >= warmup)
        .map(|(_, k)| *k)
        .max()?;
    Some(Figures {
        warm,
        end,
        peak,
        first,
        growth_pct: 100.0 * (end as f64 - warm as f64) / warm as f64,
    })
}
