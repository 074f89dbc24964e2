//! The load: `concurrency` closed-loop callers spread over the patcher's
//! mTLS connections, each sending `Authorize` with the token of the task in
//! its slot at the moment it sends.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use mandate::api::v1::authorization_service_client::AuthorizationServiceClient;
use tonic::transport::Channel;

use crate::ledger::Tally;
use crate::revoke::Slots;

/// Calls completed in each second of the run.
pub type PerSecond = Arc<Vec<AtomicU64>>;

/// One caller until `deadline`; returns its latencies in µs.
pub async fn caller(
    n: usize,
    channel: Channel,
    slots: Slots,
    tally: Arc<Tally>,
    per_second: PerSecond,
    started: Instant,
    deadline: Instant,
) -> Vec<u32> {
    let mut client = AuthorizationServiceClient::new(channel);
    let mut latencies = Vec::new();
    loop {
        let task = slots[n % slots.len()].load_full();
        let sent = Instant::now();
        if sent >= deadline {
            break;
        }
        let answer = client.authorize(task.request.clone()).await;
        let done = Instant::now();
        let second = done.duration_since(started).as_secs();
        if let Some(count) = per_second.get(usize::try_from(second).unwrap()) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        latencies.push(u32::try_from(done.duration_since(sent).as_micros()).unwrap_or(u32::MAX));
        match answer {
            Ok(r) => tally.answered(&task, sent, r.get_ref()),
            Err(status) => tally.failed(&status, second),
        }
    }
    latencies
}
