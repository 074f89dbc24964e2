//! What the soak checks, call by call: a task's token in use, the moment
//! its revoke was sent and acknowledged, and every outcome that breaks a
//! promise (an allow sent after the acknowledgement, a deny of a task
//! nobody revoked, a failed call).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use mandate::api::v1::{AuthorizeRequest, AuthorizeResponse, Decision};

/// The guard that denies a revoked task's calls.
pub const TASK_NOT_ACTIVE: &str = "mandate.guard.task-not-active";

/// How many examples of each kind of violation are kept for the report.
const EXAMPLES: usize = 5;

/// A task the load uses, with its `Authorize` request (token included).
pub struct Task {
    pub id: String,
    pub request: AuthorizeRequest,
    /// Set just before the revoke is sent: from then on a deny is expected
    /// and outcomes go through `ledger`.
    revoking: AtomicBool,
    ledger: Mutex<Ledger>,
}

#[derive(Default)]
struct Ledger {
    acknowledged: Option<Instant>,
    /// Outcomes (send instant, allowed) answered while the revoke was in
    /// flight, judged once its acknowledgement is known.
    in_flight: Vec<(Instant, bool)>,
}

impl Task {
    pub fn new(id: String, request: AuthorizeRequest) -> Self {
        Self {
            id,
            request,
            revoking: AtomicBool::new(false),
            ledger: Mutex::default(),
        }
    }

    /// Marks the revoke as about to be sent.
    pub fn revoking(&self) {
        self.revoking.store(true, Ordering::SeqCst);
    }

    /// The revoke RPC returned at `at`: judges the outcomes answered while
    /// it was in flight.
    pub fn acknowledged(&self, at: Instant, tally: &Tally) {
        let mut ledger = self.ledger.lock().unwrap();
        ledger.acknowledged = Some(at);
        for (sent, allowed) in std::mem::take(&mut ledger.in_flight) {
            if sent > at {
                tally.after_ack(&self.id, sent, at, allowed);
            }
        }
    }
}

/// Counters shared by every part of the soak.
#[derive(Default)]
pub struct Tally {
    pub allows: AtomicU64,
    pub denies_expected: AtomicU64,
    /// Calls sent after their task's revoke was acknowledged: what the
    /// "no allow after a revoke" check stands on.
    pub calls_after_ack: AtomicU64,
    pub allows_after_ack: AtomicU64,
    pub unexpected_denies: AtomicU64,
    pub failed_calls: AtomicU64,
    pub failed_control: AtomicU64,
    /// The second of the run each failed `Authorize` was answered in.
    pub failed_at: Mutex<Vec<u64>>,
    pub examples: Mutex<Vec<String>>,
}

impl Tally {
    /// Judges one answered `Authorize` on `task`, sent at `sent`.
    pub fn answered(&self, task: &Task, sent: Instant, r: &AuthorizeResponse) {
        let allowed = r.decision == Decision::Allow as i32;
        if allowed {
            self.allows.fetch_add(1, Ordering::Relaxed);
        }
        if !task.revoking.load(Ordering::SeqCst) {
            if !allowed {
                self.unexpected_deny(&task.id, r);
            }
            return;
        }
        if !allowed {
            if r.determining_policies.iter().any(|p| p == TASK_NOT_ACTIVE) {
                self.denies_expected.fetch_add(1, Ordering::Relaxed);
            } else {
                self.unexpected_deny(&task.id, r);
            }
        }
        let mut ledger = task.ledger.lock().unwrap();
        match ledger.acknowledged {
            Some(at) if sent > at => self.after_ack(&task.id, sent, at, allowed),
            Some(_) => {}
            None => ledger.in_flight.push((sent, allowed)),
        }
    }

    fn after_ack(&self, task: &str, sent: Instant, ack: Instant, allowed: bool) {
        self.calls_after_ack.fetch_add(1, Ordering::Relaxed);
        if allowed {
            self.allows_after_ack.fetch_add(1, Ordering::Relaxed);
            self.example(format!(
                "ALLOW after revoke: task {task}, call sent {} µs after the revoke's acknowledgement",
                sent.duration_since(ack).as_micros()
            ));
        }
    }

    fn unexpected_deny(&self, task: &str, r: &AuthorizeResponse) {
        self.unexpected_denies.fetch_add(1, Ordering::Relaxed);
        self.example(format!(
            "unexpected {:?} on task {task} (not revoked): reasons {:?}, policies {:?}, errors {:?}",
            Decision::try_from(r.decision).unwrap_or(Decision::Unspecified),
            r.reasons,
            r.determining_policies,
            r.errors
        ));
    }

    /// An `Authorize` that failed with a gRPC error.
    pub fn failed(&self, status: &tonic::Status, second: u64) {
        self.failed_calls.fetch_add(1, Ordering::Relaxed);
        self.failed_at.lock().unwrap().push(second);
        self.example(format!(
            "Authorize failed at second {second}: {:?} {}",
            status.code(),
            status.message()
        ));
    }

    /// A control call (create, token, revoke, reload) that failed or did
    /// not do what it says.
    pub fn control(&self, what: String) {
        self.failed_control.fetch_add(1, Ordering::Relaxed);
        self.example(what);
    }

    pub fn example(&self, what: String) {
        let mut examples = self.examples.lock().unwrap();
        if examples.len() < EXAMPLES * 4 {
            examples.push(what);
        }
    }
}
