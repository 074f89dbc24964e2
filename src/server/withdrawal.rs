//! When a trust domain's bundle disappears from the snapshots (the SPIRE
//! server stopped federating with it; only the `workload-api` source can
//! withdraw one), its agents can no longer prove who they are: the tasks
//! delegated to them are revoked (unless turned off), and the withdrawal is
//! logged and kept for `/readyz`.
//!
//! Refusing their handshakes and their calls on open connections is done
//! elsewhere (the verifiers and `trusted_callers`); this closes the other
//! door: a task token already minted for such an agent and presented
//! through an enforcement point.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use spiffe::{SpiffeId, TrustDomain};
use tokio::task::JoinSet;

use crate::api::Trail;
use crate::clock::Clock;
use crate::graph::{TaskFilter, TaskGraph, TaskId, TaskState};
use crate::identity::{IdentityStatus, IdentityWatch, Withdrawal, WithdrawalEvents};
use crate::journal::Journal;

/// Tasks read per page while looking for a trust domain's delegatees.
const PAGE: usize = 500;

/// What acting on a withdrawal needs.
pub(super) struct Withdrawals {
    /// The task graph whose tasks are revoked.
    pub(super) graph: Arc<TaskGraph>,
    /// Where withdrawals are recorded for `/readyz`.
    pub(super) status: IdentityStatus,
    /// Our own trust domain: never revoked (see [`withdraw`]).
    pub(super) own: TrustDomain,
    /// Whether tasks are revoked at all.
    pub(super) revoke: bool,
    /// The clock tasks are judged by.
    pub(super) clock: Arc<dyn Clock>,
    /// The snapshots, to see whether a bundle came back within the grace.
    pub(super) identity: IdentityWatch,
    /// How long a bundle must stay away before anything is revoked.
    pub(super) grace: Duration,
    /// Where revocations are recorded in the audit trail, with our own
    /// SPIFFE ID as the actor.
    pub(super) trail: Option<Trail>,
    /// Where revocations are counted.
    pub(super) metrics: Option<Arc<crate::metrics::Metrics>>,
    /// The store the revocations are committed to before they take effect,
    /// like any other write; `None` revokes in memory only (unit tests).
    pub(super) journal: Option<Arc<Journal>>,
}

/// Acts on every withdrawn trust domain the publisher reports, from its
/// first snapshot on, until aborted. The events are computed by the
/// publisher as it swaps snapshots, so a withdrawal before this task runs
/// is not missed. Each waits out the grace period on its own (aborted with
/// this task), so one trust domain's grace does not hold up another's.
pub(super) async fn follow(mut events: WithdrawalEvents, withdrawals: Withdrawals) {
    let withdrawals = Arc::new(withdrawals);
    let mut waiting: JoinSet<TrustDomain> = JoinSet::new();
    // INVARIANT: one grace period per trust domain at a time; a bundle that
    // flaps within it is judged once, when the first one ends.
    let mut pending: HashSet<TrustDomain> = HashSet::new();
    loop {
        tokio::select! {
            event = events.recv() => {
                let Some(trust_domain) = event else { break };
                if pending.insert(trust_domain.clone()) {
                    waiting.spawn(after_grace(trust_domain, withdrawals.clone()));
                }
            }
            Some(done) = waiting.join_next(), if !waiting.is_empty() => {
                if let Ok(trust_domain) = done {
                    pending.remove(&trust_domain);
                }
            }
        }
    }
    while waiting.join_next().await.is_some() {}
}

/// Revokes once the grace period is over, unless the bundle came back.
async fn after_grace(trust_domain: TrustDomain, w: Arc<Withdrawals>) -> TrustDomain {
    tracing::warn!(%trust_domain, grace_secs = w.grace.as_secs(), "trust domain bundle withdrawn: its callers are refused from now on");
    tokio::time::sleep(w.grace).await;
    if w.identity.borrow().bundles.trusts(&trust_domain) {
        tracing::info!(%trust_domain, "trust domain bundle back within the grace period: its agents' tasks are kept");
        return trust_domain;
    }
    withdraw(&trust_domain, &w).await;
    trust_domain
}

async fn withdraw(trust_domain: &TrustDomain, w: &Withdrawals) {
    let now = w.clock.now();
    // INVARIANT: our own trust domain is never revoked. Publishing requires
    // our own bundle, so it cannot disappear; if it ever did, revoking
    // every task of our own agents (irreversibly) on one bad snapshot
    // would be the wrong answer to it.
    if *trust_domain == w.own {
        tracing::error!(%trust_domain, "our own trust domain's bundle disappeared: its agents' tasks are kept");
        return;
    }
    let (revoked, revision) = if w.revoke {
        revoke_durably(trust_domain, w, now).await
    } else {
        (Vec::new(), w.graph.revision())
    };
    if w.revoke {
        tracing::warn!(%trust_domain, revoked = revoked.len(), task_ids = ?revoked, revision, "trust domain still withdrawn after the grace period: its agents' active tasks revoked");
    } else {
        tracing::warn!(%trust_domain, "trust domain still withdrawn after the grace period: its agents' tasks are kept (`revoke_on_trust_withdrawal` is off)");
    }
    if let Some(metrics) = w.metrics.as_ref().filter(|_| !revoked.is_empty()) {
        metrics.revoked("trust_withdrawal");
    }
    if let Some(trail) = w.trail.as_ref().filter(|_| !revoked.is_empty()) {
        let own_id = w.identity.borrow().spiffe_id.to_string();
        trail.record_revocations(
            &own_id,
            &revoked,
            &format!("trust domain `{trust_domain}` withdrawn"),
            revision,
        );
    }
    w.status.withdrawn(Withdrawal {
        trust_domain: trust_domain.to_string(),
        at: now,
        revoked_tasks: revoked.len(),
    });
}

/// Revokes every active task of `trust_domain`'s agents through the
/// journal, as the `RevokeAgent` RPC does: committed to the store, then
/// applied. A delegatee whose revocation the store refuses keeps its tasks
/// (its calls are refused anyway, its trust domain being withdrawn), and
/// says so loudly.
async fn revoke_durably(
    trust_domain: &TrustDomain,
    w: &Withdrawals,
    now: i64,
) -> (Vec<TaskId>, u64) {
    let Some(journal) = &w.journal else {
        return revoke_trust_domain(&w.graph, trust_domain, now);
    };
    let (graph, td) = (w.graph.clone(), trust_domain.clone());
    // Finding the delegatees scans the task graph: off the async workers.
    let delegatees = tokio::task::spawn_blocking(move || delegatees_of(&graph, &td, now))
        .await
        .unwrap_or_default();
    let mut revoked = Vec::new();
    let mut revision = w.graph.revision();
    for delegatee in delegatees.values() {
        match journal.revoke_agent(delegatee).await {
            Ok((ids, at)) => {
                revoked.extend(ids);
                revision = at;
            }
            Err(error) => {
                tracing::error!(%error, spiffe_id = %delegatee, "cannot revoke the tasks of a withdrawn agent");
            }
        }
    }
    (revoked, revision)
}

/// Revokes every active task delegated to an agent of `trust_domain`, with
/// its subtree, in memory only.
pub(crate) fn revoke_trust_domain(
    graph: &TaskGraph,
    trust_domain: &TrustDomain,
    now: i64,
) -> (Vec<TaskId>, u64) {
    let mut revoked = Vec::new();
    let mut revision = graph.revision();
    for delegatee in delegatees_of(graph, trust_domain, now).values() {
        let (ids, at) = graph.revoke_agent(delegatee);
        revoked.extend(ids);
        revision = at;
    }
    (revoked, revision)
}

/// The agents of `trust_domain` with an active task, each once.
fn delegatees_of(
    graph: &TaskGraph,
    trust_domain: &TrustDomain,
    now: i64,
) -> BTreeMap<String, SpiffeId> {
    let filter = TaskFilter {
        state: Some(TaskState::Active),
        ..TaskFilter::default()
    };
    // Keyed by the ID's text: each delegatee is revoked once.
    let mut delegatees: BTreeMap<String, SpiffeId> = BTreeMap::new();
    let mut after: Option<TaskId> = None;
    loop {
        let page = graph.list(&filter, after.as_deref(), PAGE, now);
        delegatees.extend(
            page.iter()
                .filter(|task| task.delegatee.trust_domain() == trust_domain)
                .map(|task| (task.delegatee.to_string(), (*task.delegatee).clone())),
        );
        match page.last() {
            Some(last) if page.len() == PAGE => after = Some(last.id.clone()),
            _ => break,
        }
    }
    delegatees
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use crate::identity::Identity;

    use crate::graph::{ResourceHierarchy, TaskSpec};

    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn spec(delegatee: &str) -> TaskSpec {
        TaskSpec {
            intent: "fix the build".into(),
            delegatee: SpiffeId::new(delegatee).unwrap(),
            actions: BTreeSet::from(["read".to_owned()]),
            scope: BTreeSet::from(["repos".to_owned()]),
            max_sensitivity: 1,
            expires_at: NOW + 3600,
        }
    }

    struct Flat;

    impl ResourceHierarchy for Flat {
        fn within(&self, resource: &str, root: &str) -> bool {
            resource == root
        }
    }

    fn task(graph: &TaskGraph, id: &str, delegatee: &str) {
        graph
            .create_root(
                id.into(),
                spec(delegatee),
                SpiffeId::new("spiffe://example.org/workloads/frontend").unwrap(),
                "alice".into(),
                NOW,
            )
            .unwrap();
    }

    fn state(graph: &TaskGraph, id: &str) -> TaskState {
        graph.get(id).unwrap().state_at(NOW)
    }

    #[test]
    fn only_the_withdrawn_trust_domains_agents_lose_their_tasks() {
        let graph = TaskGraph::default();
        task(&graph, "ours", "spiffe://example.org/agents/patcher");
        // More than a page, so paging is exercised.
        for i in 0..(PAGE + 3) {
            task(
                &graph,
                &format!("p{i:04}"),
                "spiffe://partner.example/agents/a",
            );
        }
        task(&graph, "partner-b", "spiffe://partner.example/agents/b");
        let (revoked, _) =
            revoke_trust_domain(&graph, &TrustDomain::new("partner.example").unwrap(), NOW);
        assert_eq!(revoked.len(), PAGE + 4);
        assert_eq!(state(&graph, "partner-b"), TaskState::Revoked);
        assert_eq!(state(&graph, "p0000"), TaskState::Revoked);
        assert_eq!(state(&graph, "ours"), TaskState::Active);
    }

    #[test]
    fn a_withdrawn_agents_subtasks_are_revoked_with_its_tasks() {
        let graph = TaskGraph::default();
        let partner = "spiffe://partner.example/agents/planner";
        task(&graph, "plan", partner);
        // The partner's agent delegated part of its task to one of ours.
        graph
            .delegate(
                "patch".into(),
                "plan",
                &SpiffeId::new(partner).unwrap(),
                spec("spiffe://example.org/agents/patcher"),
                NOW,
                &Flat,
            )
            .unwrap();
        let (revoked, _) =
            revoke_trust_domain(&graph, &TrustDomain::new("partner.example").unwrap(), NOW);
        assert_eq!(revoked.len(), 2, "{revoked:?}");
        assert_eq!(state(&graph, "patch"), TaskState::Revoked);
    }

    /// Our identity in `example.org`, also trusting `partner.example` when
    /// `partner` is set; the directories hold the dev CAs.
    fn identity(partner: bool, dirs: &(tempfile::TempDir, tempfile::TempDir)) -> Arc<Identity> {
        use crate::identity::dev::DevTrustDomain;
        let ours = DevTrustDomain::open_or_init(dirs.0.path(), &td("example.org")).unwrap();
        let mut identity = ours.files_source().load().unwrap();
        if partner {
            let theirs =
                DevTrustDomain::open_or_init(dirs.1.path(), &td("partner.example")).unwrap();
            let mut bundles = (*identity.bundles).clone();
            let cas = crate::identity::load_certs(&theirs.bundle).unwrap();
            bundles.add(td("partner.example"), &cas).unwrap();
            identity.bundles = Arc::new(bundles);
        }
        Arc::new(identity)
    }

    fn td(name: &str) -> TrustDomain {
        TrustDomain::new(name).unwrap()
    }

    fn dirs() -> (tempfile::TempDir, tempfile::TempDir) {
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap())
    }

    fn withdrawals(graph: &Arc<TaskGraph>, status: &IdentityStatus) -> Withdrawals {
        let (_, identity) = tokio::sync::watch::channel(identity(false, &dirs()));
        Withdrawals {
            graph: graph.clone(),
            status: status.clone(),
            own: td("example.org"),
            trail: None,
            metrics: None,
            journal: None,
            revoke: true,
            clock: Arc::new(crate::clock::ManualClock::new(NOW)),
            identity,
            grace: Duration::ZERO,
        }
    }

    #[tokio::test]
    async fn our_own_trust_domain_is_never_revoked() {
        let graph = Arc::new(TaskGraph::default());
        task(&graph, "ours", "spiffe://example.org/agents/patcher");
        let status = IdentityStatus::default();
        withdraw(
            &TrustDomain::new("example.org").unwrap(),
            &withdrawals(&graph, &status),
        )
        .await;
        assert_eq!(state(&graph, "ours"), TaskState::Active);
        assert!(status.withdrawals().is_empty());
    }

    #[tokio::test]
    async fn a_withdrawal_before_the_server_follows_is_not_missed() {
        let graph = Arc::new(TaskGraph::default());
        task(&graph, "theirs", "spiffe://partner.example/agents/a");
        let status = IdentityStatus::new("workload-api");
        // Sent by the publisher before the server's task ever ran.
        status.send_withdrawal_event(TrustDomain::new("partner.example").unwrap());
        let events = status.take_withdrawal_events().unwrap();
        let task = tokio::spawn(follow(events, withdrawals(&graph, &status)));
        for _ in 0..100 {
            if state(&graph, "theirs") == TaskState::Revoked {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        task.abort();
        assert_eq!(state(&graph, "theirs"), TaskState::Revoked);
        assert_eq!(status.withdrawals().len(), 1);
    }

    #[tokio::test]
    async fn a_bundle_back_within_the_grace_period_revokes_nothing() {
        let graph = Arc::new(TaskGraph::default());
        task(&graph, "theirs", "spiffe://partner.example/agents/a");
        let status = IdentityStatus::new("workload-api");
        let dirs = dirs();
        let (sender, watch) = tokio::sync::watch::channel(identity(false, &dirs));
        let grace = Duration::from_millis(300);
        let events = status.take_withdrawal_events().unwrap();
        let task = tokio::spawn(follow(
            events,
            Withdrawals {
                identity: watch,
                grace,
                ..withdrawals(&graph, &status)
            },
        ));
        status.send_withdrawal_event(td("partner.example"));
        // The next update brings the bundle back.
        sender.send_replace(identity(true, &dirs));
        tokio::time::sleep(grace * 3).await;
        assert_eq!(state(&graph, "theirs"), TaskState::Active);
        assert!(status.withdrawals().is_empty());

        // Gone for good this time: revoked once the grace is over.
        sender.send_replace(identity(false, &dirs));
        status.send_withdrawal_event(td("partner.example"));
        tokio::time::sleep(grace / 3).await;
        assert_eq!(state(&graph, "theirs"), TaskState::Active);
        for _ in 0..100 {
            if state(&graph, "theirs") == TaskState::Revoked {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        task.abort();
        assert_eq!(state(&graph, "theirs"), TaskState::Revoked);
    }
}
