//! Policy reloads during the load: every interval the file `soak.cedar` in
//! the server's policies directory switches between a permit and a forbid
//! of `read` on a resource nothing else uses. Every other change is left to
//! the server's file watch, the others are reloaded at once through
//! `PolicyService.Reload`. Each must show in `GetStatus` (a new policy
//! hash) and in a decision (the probe on that resource flips, decided by
//! the new set), or it counts as a failure.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mandate::api::v1::authorization_service_client::AuthorizationServiceClient;
use mandate::api::v1::policy_service_client::PolicyServiceClient;
use mandate::api::v1::{
    AuthorizeRequest, Decision, GetPolicyStatusRequest, ReloadPoliciesRequest, Resource,
};
use tonic::transport::Channel;

use crate::ledger::Tally;

/// The resource the toggled policy is about.
const PROBE: &str = "soak-toggle";

/// How long a change may take to show (the file watch takes two checks of
/// `policy_poll_ms`, 1 s by default).
const SHOW_WITHIN: Duration = Duration::from_secs(10);

/// The toggled file's two contents: `(policy id, text)`.
fn policy(permit: bool) -> (&'static str, String) {
    let (id, effect) = if permit {
        ("soak-toggle-permit", "permit")
    } else {
        ("soak-toggle-forbid", "forbid")
    };
    (
        id,
        format!(
            "// Toggled by the soak (benches/soak): a real change on every reload.\n\
             @id(\"{id}\")\n\
             {effect} (\n  principal,\n  action == Mandate::Action::\"read\",\n  resource == Mandate::Resource::\"{PROBE}\"\n);\n"
        ),
    )
}

/// Writes the toggled file whole (a hidden temporary file renamed over it;
/// the server skips hidden files), so the watch never sees half of it.
pub fn write(dir: &Path, permit: bool) {
    let tmp = dir.join(".soak.cedar.tmp");
    std::fs::write(&tmp, policy(permit).1).unwrap();
    std::fs::rename(&tmp, dir.join("soak.cedar")).unwrap();
}

/// One reload as seen from the run's start: when the file changed, and when
/// the change showed (or `None`: it never did).
#[derive(Clone, Copy, Debug)]
pub struct Reload {
    pub written: Duration,
    pub shown: Option<Duration>,
    pub by_rpc: bool,
}

pub struct Reloader {
    pub dir: PathBuf,
    pub admin: Channel,
    pub every: Duration,
    pub started: Instant,
    pub deadline: Instant,
    pub tally: Arc<Tally>,
    pub log: Arc<Mutex<Vec<Reload>>>,
}

impl Reloader {
    pub async fn run(self) {
        let mut policies = PolicyServiceClient::new(self.admin.clone());
        let mut decisions = AuthorizationServiceClient::new(self.admin.clone());
        // The file starts as the permit.
        let mut permit = true;
        let mut hash = self.hash(&mut policies).await.unwrap_or_default();
        let mut ticker = tokio::time::interval_at((Instant::now() + self.every).into(), self.every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for n in 0u64.. {
            // The next tick may be past the end of the run.
            tokio::select! {
                _ = ticker.tick() => {}
                () = tokio::time::sleep_until(self.deadline.into()) => break,
            }
            if Instant::now() >= self.deadline {
                break;
            }
            permit = !permit;
            let by_rpc = n % 2 == 1;
            write(&self.dir, permit);
            let written = self.started.elapsed();
            if by_rpc {
                match policies.reload(ReloadPoliciesRequest {}).await {
                    Ok(r) if r.get_ref().ok => {}
                    Ok(r) => self.tally.control(format!(
                        "Reload refused a valid set: {:?}",
                        r.get_ref().problems
                    )),
                    Err(e) => {
                        self.tally
                            .control(format!("Reload failed: {:?} {}", e.code(), e.message()))
                    }
                }
            }
            let shown = self
                .shown(&mut policies, &mut decisions, &hash, permit)
                .await;
            match &shown {
                Some(new) => hash.clone_from(new),
                None => self.tally.control(format!(
                    "reload {} ({}) did not show within {SHOW_WITHIN:?}",
                    n + 1,
                    if by_rpc { "Reload RPC" } else { "file watch" }
                )),
            }
            self.log.lock().unwrap().push(Reload {
                written,
                shown: shown.map(|_| self.started.elapsed()),
                by_rpc,
            });
        }
    }

    async fn hash(&self, policies: &mut PolicyServiceClient<Channel>) -> Option<String> {
        match policies.get_status(GetPolicyStatusRequest {}).await {
            Ok(s) => Some(s.into_inner().policy_hash),
            Err(e) => {
                self.tally
                    .control(format!("GetStatus failed: {:?} {}", e.code(), e.message()));
                None
            }
        }
    }

    /// Waits until the set in use is a new one and a decision made with it
    /// follows the toggled policy; the new hash, or `None` on time-out.
    async fn shown(
        &self,
        policies: &mut PolicyServiceClient<Channel>,
        decisions: &mut AuthorizationServiceClient<Channel>,
        old: &str,
        permit: bool,
    ) -> Option<String> {
        let give_up = Instant::now() + SHOW_WITHIN;
        let (id, _) = policy(permit);
        while Instant::now() < give_up {
            if let Some(new) = self.hash(policies).await
                && new != old
            {
                let probe = decisions
                    .authorize(AuthorizeRequest {
                        action: "read".into(),
                        resource: Some(Resource {
                            r#type: String::new(),
                            id: PROBE.into(),
                        }),
                        ..Default::default()
                    })
                    .await;
                match probe.map(tonic::Response::into_inner) {
                    Ok(r)
                        if r.policy_hash == new
                            && (r.decision == Decision::Allow as i32) == permit
                            && r.determining_policies.iter().any(|p| p == id) =>
                    {
                        return Some(new);
                    }
                    Ok(r) if r.policy_hash == new => {
                        self.tally.control(format!(
                            "the new policy set ({new}) decided the probe against `{id}`: {r:?}"
                        ));
                        return Some(new);
                    }
                    // Another set is in use by now (a later check will
                    // see it): look again.
                    Ok(_) => {}
                    Err(e) => {
                        self.tally
                            .control(format!("probe failed: {:?} {}", e.code(), e.message()))
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }
}
