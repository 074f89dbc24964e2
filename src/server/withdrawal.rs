//! When a trust domain's bundle disappears (the SPIRE server stopped
//! federating with it, or it left `trusted_trust_domains`), its agents can
//! no longer prove who they are: the tasks delegated to them are revoked,
//! and the withdrawal is logged and kept for `/readyz`.
//!
//! Refusing their handshakes and their calls on open connections is done
//! elsewhere (the verifiers and `trusted_callers`); this closes the other
//! door: a task token already minted for such an agent and presented
//! through an enforcement point.

use std::collections::BTreeSet;
use std::sync::Arc;

use spiffe::{SpiffeId, TrustDomain};

use crate::clock::{Clock, SystemClock};
use crate::graph::{TaskFilter, TaskGraph, TaskId, TaskState};
use crate::identity::{IdentityStatus, IdentityWatch, Withdrawal};
use crate::store::Journal;

/// Tasks read per page while looking for a trust domain's delegatees.
const PAGE: usize = 500;

/// Follows the snapshots until their source is gone; for every trust
/// domain that disappears, revokes its agents' tasks when `revoke` is set.
pub(super) async fn follow(
    mut identity: IdentityWatch,
    graph: Arc<TaskGraph>,
    journal: Arc<Journal>,
    status: IdentityStatus,
    revoke: bool,
) {
    let mut trusted = trust_domains(&mut identity);
    while identity.changed().await.is_ok() {
        let now_trusted = trust_domains(&mut identity);
        for trust_domain in trusted.difference(&now_trusted) {
            withdraw(trust_domain, &graph, &journal, &status, revoke).await;
        }
        trusted = now_trusted;
    }
}

fn trust_domains(identity: &mut IdentityWatch) -> BTreeSet<String> {
    identity
        .borrow_and_update()
        .bundles
        .trust_domains()
        .into_iter()
        .map(ToString::to_string)
        .collect()
}

async fn withdraw(
    trust_domain: &str,
    graph: &TaskGraph,
    journal: &Journal,
    status: &IdentityStatus,
    revoke: bool,
) {
    let now = SystemClock.now();
    let mut revoked = Vec::new();
    let mut revision = graph.revision();
    if let Ok(td) = TrustDomain::new(trust_domain)
        && revoke
    {
        for delegatee in delegatees_of(graph, &td, now) {
            match journal.revoke_agent(&delegatee).await {
                Ok((ids, at)) => {
                    revoked.extend(ids);
                    revision = at;
                }
                // The trust domain's callers are refused anyway; their
                // tasks stay active in the store, so say so loudly.
                Err(e) => {
                    tracing::error!(error = %e, spiffe_id = %delegatee, "cannot revoke the tasks of a withdrawn agent")
                }
            }
        }
    }
    tracing::warn!(
        trust_domain,
        revoke,
        revoked = revoked.len(),
        task_ids = ?revoked,
        revision,
        "trust domain withdrawn: its callers are refused and its agents' active tasks revoked"
    );
    status.withdrawn(Withdrawal {
        trust_domain: trust_domain.to_owned(),
        at: now,
        revoked_tasks: revoked.len(),
    });
}

/// Revokes every active task delegated to an agent of `trust_domain`, with
/// its subtree, in memory only (the server revokes through the journal).
#[cfg(test)]
pub(crate) fn revoke_trust_domain(
    graph: &TaskGraph,
    trust_domain: &TrustDomain,
    now: i64,
) -> (Vec<TaskId>, u64) {
    let mut revoked = Vec::new();
    let mut revision = graph.revision();
    for delegatee in delegatees_of(graph, trust_domain, now) {
        let (ids, at) = graph.revoke_agent(&delegatee);
        revoked.extend(ids);
        revision = at;
    }
    (revoked, revision)
}

/// The agents of `trust_domain` with an active task.
fn delegatees_of(graph: &TaskGraph, trust_domain: &TrustDomain, now: i64) -> Vec<SpiffeId> {
    let filter = TaskFilter {
        state: Some(TaskState::Active),
        ..TaskFilter::default()
    };
    let mut delegatees: BTreeSet<String> = BTreeSet::new();
    let mut after: Option<TaskId> = None;
    loop {
        let page = graph.list(&filter, after.as_deref(), PAGE, now);
        delegatees.extend(
            page.iter()
                .filter(|task| task.delegatee.trust_domain() == trust_domain)
                .map(|task| task.delegatee.to_string()),
        );
        match page.last() {
            Some(last) if page.len() == PAGE => after = Some(last.id.clone()),
            _ => break,
        }
    }
    delegatees
        .iter()
        .filter_map(|d| SpiffeId::new(d).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::graph::TaskSpec;

    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn task(graph: &TaskGraph, id: &str, delegatee: &str) {
        graph
            .create_root(
                id.to_owned(),
                TaskSpec {
                    intent: "fix the build".into(),
                    delegatee: SpiffeId::new(delegatee).unwrap(),
                    actions: BTreeSet::from(["read".to_owned()]),
                    scope: BTreeSet::from(["repos".to_owned()]),
                    max_sensitivity: 1,
                    expires_at: NOW + 3600,
                },
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
}
