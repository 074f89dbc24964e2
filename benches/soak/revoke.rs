//! Tasks in use and their revocation: the front end starts a task for the
//! patcher, which gets a token bound to its SVID (the "Tasks" flow of
//! docs/tasks-and-approvals.md); every interval one task in use is revoked, its token stays in use
//! for a moment after the acknowledgement (so calls are sent after it), then
//! a fresh task takes its slot.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use mandate::api::v1::task_service_client::TaskServiceClient;
use mandate::api::v1::{
    AuthorizeRequest, CreateTaskRequest, IssueTaskTokenRequest, Resource, RevokeTaskRequest,
    TaskScope,
};
use tonic::transport::Channel;

use crate::ledger::{Tally, Task};

/// What a task's calls ask: the patcher reads its repository (allowed
/// while the task is active).
pub const RESOURCE: &str = "repo:acme/payments";

/// The slots the load draws its tasks from.
pub type Slots = Arc<Vec<ArcSwap<Task>>>;

/// Starts tasks: the front end creates, the patcher takes the token.
#[derive(Clone)]
pub struct Supply {
    pub frontend: TaskServiceClient<Channel>,
    pub patcher: TaskServiceClient<Channel>,
    pub patcher_id: String,
}

impl Supply {
    /// A fresh task and its token; `None` (counted) when a call failed.
    pub async fn task(&mut self, tally: &Tally) -> Option<Task> {
        let created = self
            .frontend
            .create_task(CreateTaskRequest {
                intent: "soak".into(),
                delegatee: self.patcher_id.clone(),
                on_behalf_of: "alice".into(),
                scope: Some(TaskScope {
                    actions: vec!["read".into()],
                    resources: vec!["repos".into()],
                    max_sensitivity: 1,
                    expires_at: 0,
                    ttl_seconds: 3600,
                }),
            })
            .await;
        let id = match created.map(|r| r.into_inner().task) {
            Ok(Some(task)) => task.id,
            Ok(None) => {
                tally.control("CreateTask answered without a task".into());
                return None;
            }
            Err(e) => {
                tally.control(format!("CreateTask failed: {:?} {}", e.code(), e.message()));
                return None;
            }
        };
        let token = match self
            .patcher
            .issue_task_token(IssueTaskTokenRequest {
                task_id: id.clone(),
                ttl_seconds: 3600,
                ..Default::default()
            })
            .await
        {
            Ok(r) => r.into_inner().token,
            Err(e) => {
                tally.control(format!(
                    "IssueTaskToken failed: {:?} {}",
                    e.code(),
                    e.message()
                ));
                return None;
            }
        };
        Some(Task::new(
            id,
            AuthorizeRequest {
                action: "read".into(),
                resource: Some(Resource {
                    r#type: String::new(),
                    id: RESOURCE.into(),
                }),
                token,
                ..Default::default()
            },
        ))
    }
}

/// Revokes one task in use every `every` until `deadline`, round the
/// slots; returns the revoke latencies (µs, sent to acknowledged).
pub async fn revoker(
    mut supply: Supply,
    slots: Slots,
    tally: Arc<Tally>,
    every: Duration,
    linger: Duration,
    deadline: Instant,
) -> Vec<u64> {
    let mut latencies = Vec::new();
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for n in 0.. {
        // The next tick may be past the end of the run.
        tokio::select! {
            _ = ticker.tick() => {}
            () = tokio::time::sleep_until(deadline.into()) => break,
        }
        if Instant::now() >= deadline {
            break;
        }
        let Some(fresh) = supply.task(&tally).await else {
            continue;
        };
        let slot = &slots[n % slots.len()];
        let old = slot.load_full();
        old.revoking();
        let sent = Instant::now();
        let answer = supply
            .frontend
            .revoke_task(RevokeTaskRequest {
                task_id: old.id.clone(),
                reason: "soak".into(),
            })
            .await;
        let acknowledged = Instant::now();
        match answer {
            Ok(r) if r.get_ref().revoked_task_ids.contains(&old.id) => {
                old.acknowledged(acknowledged, &tally);
                latencies
                    .push(u64::try_from(acknowledged.duration_since(sent).as_micros()).unwrap());
            }
            Ok(r) => tally.control(format!(
                "RevokeTask of {} answered without it: {:?}",
                old.id,
                r.get_ref()
            )),
            Err(e) => tally.control(format!(
                "RevokeTask of {} failed: {:?} {}",
                old.id,
                e.code(),
                e.message()
            )),
        }
        // The load keeps using the revoked token for a while: those calls
        // are the ones that must all be denied.
        tokio::time::sleep(linger).await;
        slot.store(Arc::new(fresh));
    }
    latencies
}
