//! What surrounds every decision, whichever door it came in by: the
//! request limits, the state gate (`min_revision`, a replica out of
//! contact with the store), the [`Pipeline`], the pending approval a
//! "needs approval" names (an awaited store write), the decision record,
//! the log line and the metrics. A door is an adapter: wire → [`Request`],
//! [`Answer`] → wire.

use std::sync::Arc;
use std::time::{Duration, Instant};

use spiffe::SpiffeId;
use tracing::Instrument;

use super::limits::{self, LimitExceeded};
use super::pipeline::{ApprovalAsk, Decided, Pipeline};
use super::{Decision, Reason, Request, View};
use crate::approval::ApprovalError;
use crate::audit::{
    DecisionLog, DecisionRecord, EventKind, HistoryRecord, RECORD_VERSION, TaskEvent,
};
use crate::clock::Clock;
use crate::identity::IdentityWatch;
use crate::journal::StoreHandle;
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::policy::PolicyStore;
use crate::registry::Registry;
use crate::revision::Revision;
use crate::store::StoreError;

/// How often a decision waiting for its `min_revision` looks again.
const REVISION_POLL: Duration = Duration::from_millis(2);

/// Runs decisions for every door.
#[derive(Debug)]
pub struct Runner(RunnerParts);

/// What a [`Runner`] is built from.
#[derive(Debug)]
pub struct RunnerParts {
    /// The decision itself.
    pub pipeline: Pipeline,
    /// The policy set in use, swapped whole on reload.
    pub policies: Arc<PolicyStore>,
    /// Agents, workloads, users, groups and resources.
    pub registry: Arc<Registry>,
    /// Our identity, for the trust bundles forwarded certificates verify
    /// against.
    pub identity: IdentityWatch,
    /// The revision every live store bumps.
    pub revision: Arc<Revision>,
    /// The clock of the decision path.
    pub clock: Arc<dyn Clock>,
    /// Where pending approvals are written, and whether this replica is in
    /// contact with the store.
    pub store: StoreHandle,
    /// Where decision records go, when configured.
    pub decision_log: Option<DecisionLog>,
    /// Prometheus metrics, when served.
    pub metrics: Option<Arc<Metrics>>,
    /// Bounds on one request's token and context.
    pub limits: Limits,
    /// Most requests accepted in one batch.
    pub max_batch_size: usize,
}

/// A decision as a door answers it.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The decision.
    pub decision: Decision,
    /// Its id, in its record and in the answer.
    pub decision_id: String,
    /// The pending approval a "needs approval" names.
    pub approval_id: Option<String>,
    /// The task of the token, if any.
    pub task_id: Option<String>,
    /// The revision the state was at.
    pub revision: u64,
    /// The hash of the policy set decided with.
    pub policy_hash: String,
}

impl BatchRefused {
    /// The reason code of the refusal.
    pub fn reason(&self) -> Reason {
        match self {
            Self::TooLarge { .. } | Self::Limit { .. } => Reason::LimitExceeded,
        }
    }
}

/// A batch refused before any of it was decided.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchRefused {
    /// More requests than the limit.
    #[error("batch has {found} requests; the limit is {limit}")]
    TooLarge {
        /// Requests in the batch.
        found: usize,
        /// `max_batch_size`.
        limit: usize,
    },
    /// One request is over a limit.
    #[error("requests[{index}]: {error}")]
    Limit {
        /// Its place in the batch.
        index: usize,
        /// Which limit.
        error: LimitExceeded,
    },
}

/// What a request refused before a [`Request`] could be built is about,
/// as far as it is known (Envoy's `no-route`, say).
#[derive(Debug, Clone, Copy, Default)]
pub struct Target<'a> {
    /// The subject's SPIFFE ID, when known.
    pub subject: &'a str,
    /// The action, when known.
    pub action: &'a str,
    /// The resource type, when known.
    pub resource_type: &'a str,
    /// The resource id, when known.
    pub resource_id: &'a str,
}

/// Why an approval a decision asked for was not recorded.
#[derive(Debug, thiserror::Error)]
enum AskError {
    #[error(transparent)]
    Approval(#[from] ApprovalError),
    #[error("the store did not take the approval request: {0}")]
    Store(#[from] StoreError),
}

impl Runner {
    /// A runner over these parts.
    pub fn new(parts: RunnerParts) -> Self {
        Self(parts)
    }

    /// Drops what the decision path's caches hold past its age.
    pub fn sweep_caches(&self) {
        self.0.pipeline.sweep();
    }

    /// Checks `request` against the limits, as [`Runner::run`] does: for a
    /// door that refuses a whole batch before deciding any of it.
    pub fn check_limits(&self, request: &Request) -> Result<(), LimitExceeded> {
        limits::check(&self.0.limits, request)
    }

    /// Most requests accepted in one batch.
    pub fn max_batch_size(&self) -> usize {
        self.0.max_batch_size
    }

    /// The decision path, for control-plane questions and tests.
    pub fn pipeline(&self) -> &Pipeline {
        &self.0.pipeline
    }

    /// The state as a decision made now reads it.
    // INVARIANT: the revision is read before the state it describes, so a
    // client waiting for revision N never sees a decision made before N;
    // the policies before the registry (see `Registry::revalidate`).
    pub fn view(&self) -> View {
        let revision = self.0.revision.current();
        let engine = self.0.policies.current();
        let registry = self.0.registry.snapshot();
        View {
            revision,
            engine,
            registry,
            bundles: self.0.identity.borrow().bundles.clone(),
            now: self.0.clock.now(),
        }
    }

    /// Decides one request. `Err` only for a request over a limit, which
    /// is refused unread and unrecorded; every other problem is a deny.
    pub async fn run(&self, request: Request) -> Result<Answer, LimitExceeded> {
        limits::check(&self.0.limits, &request)?;
        let gate = self.gate(request.min_revision).await;
        let view = self.view();
        Ok(self.answer(&request, &view, gate).await)
    }

    /// Decides a batch against one view of the state. Every request is
    /// checked against the limits before any is decided (and recorded):
    /// an oversized one refuses the batch with nothing done.
    pub async fn run_batch(&self, requests: &[Request]) -> Result<Vec<Answer>, BatchRefused> {
        if requests.len() > self.0.max_batch_size {
            return Err(BatchRefused::TooLarge {
                found: requests.len(),
                limit: self.0.max_batch_size,
            });
        }
        for (index, request) in requests.iter().enumerate() {
            limits::check(&self.0.limits, request)
                .map_err(|error| BatchRefused::Limit { index, error })?;
        }
        let min_revision = requests.iter().map(|r| r.min_revision).max();
        let gate = self.gate(min_revision.unwrap_or(0)).await;
        let view = self.view();
        let mut answers = Vec::with_capacity(requests.len());
        for request in requests {
            answers.push(self.answer(request, &view, gate.clone()).await);
        }
        Ok(answers)
    }

    /// A deny for a request a door refused before it could build a
    /// [`Request`] (Envoy's `no-route`, a malformed header), recorded like
    /// any other decision.
    pub fn refuse(
        &self,
        caller: &SpiffeId,
        target: Target<'_>,
        reason: Reason,
        error: impl Into<String>,
    ) -> Answer {
        let view = self.view();
        let decision_id = uuid::Uuid::now_v7().to_string();
        let decided = Decided::early(Decision::deny(reason, error));
        let span = tracing::info_span!("decision", decision_id = %decision_id);
        span.in_scope(|| {
            self.conclude(
                Concluded {
                    caller,
                    target,
                    context_keys: Vec::new(),
                    decided,
                    approval_id: None,
                    latency: None,
                },
                &view,
                decision_id,
            )
        })
    }

    /// `None` when decisions may go ahead; else the reason and message to
    /// deny with. A replica out of contact with the store denies
    /// everything (`state-unavailable`, fail closed); one behind
    /// `min_revision` waits up to the configured bound for it, then denies
    /// (`stale-state`).
    async fn gate(&self, min_revision: u64) -> Option<(Reason, String)> {
        let health = self.0.store.health();
        if !health.available() {
            let since = health.since_contact().unwrap_or_default();
            return Some((
                Reason::StateUnavailable,
                format!(
                    "no contact with the store for `{}` ms; denying until caught up",
                    since.as_millis()
                ),
            ));
        }
        if self.0.revision.current() >= min_revision {
            return None;
        }
        let deadline = Instant::now() + self.0.store.min_revision_wait();
        // INVARIANT: the revision only moves once a change is applied to
        // memory, so reaching `min_revision` means every write up to it is
        // visible to the decision that follows.
        while self.0.revision.current() < min_revision {
            if Instant::now() >= deadline {
                return Some((
                    Reason::StaleState,
                    format!(
                        "this replica is at revision `{}`, the request asks for `{min_revision}`",
                        self.0.revision.current()
                    ),
                ));
            }
            tokio::time::sleep(REVISION_POLL).await;
        }
        // Contact may have been lost while waiting.
        (!health.available()).then(|| {
            (
                Reason::StateUnavailable,
                "lost contact with the store".to_owned(),
            )
        })
    }

    /// Decides `request` (or denies it for the gate's reason), makes sure
    /// the approval it names exists, and records it.
    async fn answer(
        &self,
        request: &Request,
        view: &View,
        gate: Option<(Reason, String)>,
    ) -> Answer {
        let started = Instant::now();
        let decision_id = uuid::Uuid::now_v7().to_string();
        // Every log line of the decision, its record's included, carries
        // its id.
        let span = tracing::info_span!("decision", decision_id = %decision_id);
        async move {
            let mut decided = match gate {
                Some((reason, error)) => Decided::early(Decision::deny(reason, error)),
                None => self.0.pipeline.decide(view, request),
            };
            let mut approval_id = None;
            if let Some(ask) = decided.ask.take() {
                match self.ask_for_approval(ask).await {
                    Ok(id) => approval_id = Some(id),
                    Err(error) => {
                        decided.decision = decided
                            .decision
                            .refuse_approval(Reason::ApprovalNotRequested, error.to_string());
                    }
                }
            }
            let resource = &request.resource;
            let subject = request.subject_name();
            self.conclude(
                Concluded {
                    caller: &request.caller.spiffe_id,
                    target: Target {
                        subject: &subject,
                        action: &request.action,
                        resource_type: &resource.type_name,
                        resource_id: &resource.id,
                    },
                    context_keys: request.context.fields.keys().map(String::as_str).collect(),
                    decided,
                    approval_id,
                    latency: Some(started.elapsed()),
                },
                view,
                decision_id,
            )
        }
        .instrument(span)
        .await
    }

    /// Creates the pending approval a decision asks for, or finds the one
    /// pending already; waits for the store, so the caller can act on the
    /// id at once.
    async fn ask_for_approval(&self, ask: ApprovalAsk) -> Result<String, AskError> {
        let ApprovalAsk {
            subject,
            justification,
            requested_by,
            scope_digest,
        } = ask;
        let (approval, created, revision) = self
            .0
            .store
            .journal()
            .request_approval::<AskError>(
                subject,
                &justification,
                &requested_by,
                &scope_digest,
                self.0.clock.now(),
            )
            .await?;
        if created {
            tracing::info!(approval_id = %approval.id, task_id = %approval.subject.task_id, action = %approval.subject.action, resource_id = %approval.subject.resource_id, spiffe_id = %requested_by, "approval requested by a decision");
            if let Some(log) = &self.0.decision_log {
                let task_id = &approval.subject.task_id;
                let root = self
                    .0
                    .pipeline
                    .root_of(task_id)
                    .unwrap_or_else(|| task_id.clone());
                log.event(TaskEvent::for_approval(
                    EventKind::ApprovalRequested,
                    &requested_by,
                    &approval,
                    &root,
                    revision,
                ));
            }
        }
        Ok(approval.id)
    }

    /// Records, logs and counts a decision; the answer.
    fn conclude(&self, concluded: Concluded<'_>, view: &View, decision_id: String) -> Answer {
        let Concluded {
            caller,
            target,
            context_keys,
            decided,
            approval_id,
            latency,
        } = concluded;
        let Decided {
            decision,
            evaluated,
            chain,
            token_jti,
            ask: _,
            history,
        } = decided;
        let grounds = decision.grounds();
        let policy_hash = view.engine.hash().to_string();
        if let Some(metrics) = &self.0.metrics {
            metrics.decision(
                decision.name(),
                decision.first_reason().map_or("none", Reason::as_str),
                latency,
            );
        }
        let subject = target.subject.to_owned();
        let task_id = chain.first().map(|t| t.id.to_string());
        tracing::info!(
            decision_id = %decision_id,
            spiffe_id = %caller,
            subject = %subject,
            action = target.action,
            resource_type = target.resource_type,
            resource_id = target.resource_id,
            allowed = decision.is_allowed(),
            decision = decision.name(),
            approval_id = approval_id.as_deref(),
            policies = ?grounds.determining_policies,
            reasons = ?grounds.reasons,
            revision = view.revision,
            policy_hash = %policy_hash,
            "decision"
        );
        if let Some(log) = &self.0.decision_log {
            let chain: Vec<String> = chain.iter().map(|t| t.id.to_string()).collect();
            log.record_request(
                DecisionRecord {
                    version: RECORD_VERSION,
                    decision_id: decision_id.clone(),
                    time_ms: crate::audit::unix_ms(),
                    caller: caller.to_string(),
                    subject,
                    action: target.action.to_owned(),
                    resource_type: target.resource_type.to_owned(),
                    resource_id: target.resource_id.to_owned(),
                    task_id: chain.first().cloned(),
                    root_task_id: chain.last().cloned(),
                    chain,
                    token_jti,
                    decision: decision.name().to_owned(),
                    approval_id: approval_id.clone(),
                    determining_policies: grounds.determining_policies.clone(),
                    reasons: grounds
                        .reasons
                        .iter()
                        .map(|r| r.as_str().to_owned())
                        .collect(),
                    errors: grounds.errors.clone(),
                    policy_hash: policy_hash.clone(),
                    revision: view.revision,
                    latency_us: latency
                        .map_or(0, |l| u64::try_from(l.as_micros()).unwrap_or(u64::MAX)),
                    history: history.map(|seen| HistoryRecord {
                        task: (*seen.task).clone(),
                        tree: (*seen.tree).clone(),
                    }),
                    cedar: None,
                },
                evaluated,
                context_keys,
            );
        }
        Answer {
            task_id,
            decision,
            decision_id,
            approval_id,
            revision: view.revision,
            policy_hash,
        }
    }
}

/// A decision about to be concluded, and what it was about.
struct Concluded<'a> {
    caller: &'a SpiffeId,
    target: Target<'a>,
    context_keys: Vec<&'a str>,
    decided: Decided,
    approval_id: Option<String>,
    latency: Option<Duration>,
}
