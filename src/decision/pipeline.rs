//! The decision, in one place (DESIGN §4 steps 3-6): from a [`Request`] and
//! a consistent [`View`] of the state to a [`Decision`]. Synchronous, no
//! I/O, no writes but the task's memory ledger: what must be written (a
//! pending approval) comes back as an [`ApprovalAsk`] for the runner.
//!
//! In order: enforcement-point mode (the caller may `check` for the
//! subject, whose certificate verifies), the agent proof, the task token
//! and its live chain, the task's execution history, the current approval,
//! a task as the resource, Cedar, for a "needs approval" whether one may be
//! asked for, and the outcome added to the history.

use std::sync::Arc;

use cedar_policy::{Entity, EntityUid};
use rustls_pki_types::UnixTime;
use spiffe::SpiffeId;

use super::answer_cache::{AnswerCache, Question};
use super::check_cache::{CheckCache, CheckKey};
use super::task::TaskFacts;
use super::{
    ApprovalView, DEFAULT_RESOURCE_TYPE, Decision, Evaluator, HistoryQuery, OnBehalfOf, Principal,
    Query, Reason, Request, Subject, View, task_entities,
};
use crate::approval::{
    APPROVAL_TYPE, Approval, ApprovalBook, ApprovalState, Subject as ApprovalSubject,
    approval_entity,
};
use crate::credential::{TaskTokens, TokenError};
use crate::graph::{Chain, TaskGraph};
use crate::identity::ForwardedSubjects;
use crate::ledger::{Outcome, Pair, Seen, Touched};
use crate::policy::Evaluated;
use crate::registry::Snapshot;

/// The Cedar type of tasks.
const TASK_TYPE: &str = "Mandate::Task";
/// The action an enforcement point needs to ask on behalf of a subject.
const CHECK_ACTION: &str = "check";
/// The action an agent needs to ask a human for an approval.
const REQUEST_APPROVAL: &str = "request_approval";

/// The decision path over live state.
#[derive(Debug)]
pub struct Pipeline {
    evaluator: Arc<Evaluator>,
    tokens: Arc<TaskTokens>,
    graph: Arc<TaskGraph>,
    approvals: Arc<ApprovalBook>,
    forwarded: ForwardedSubjects,
    checks: CheckCache,
    answers: AnswerCache,
}

/// A decision and what its record keeps.
#[derive(Debug)]
pub struct Decided {
    /// The answer.
    pub decision: Decision,
    /// The Cedar request and entity slice, when the policies were
    /// reached; shared with the answer cache.
    pub evaluated: Option<Arc<Evaluated>>,
    /// The token's task first, its root last; empty without a token.
    pub chain: Chain,
    /// The token's id.
    pub token_jti: Option<String>,
    /// For a "needs approval": the pending approval the runner must make
    /// sure exists before answering.
    pub ask: Option<ApprovalAsk>,
    /// The task's and its tree's history before this call, when the
    /// policies of its action read it; `None` otherwise and without a token.
    pub history: Option<Seen>,
}

impl Decided {
    /// A decision that never reached the policies.
    pub(super) fn early(decision: Decision) -> Self {
        Self {
            decision,
            evaluated: None,
            chain: Vec::new(),
            token_jti: None,
            ask: None,
            history: None,
        }
    }
}

/// A pending approval a decision asks for.
#[derive(Debug, Clone)]
pub struct ApprovalAsk {
    /// The (task, action, resource) it is about.
    pub subject: ApprovalSubject,
    /// The caller's `purpose`.
    pub justification: String,
    /// The principal that asks.
    pub requested_by: String,
    /// The task's scope digest now.
    pub scope_digest: String,
}

impl Pipeline {
    /// A pipeline evaluating with `evaluator` over this live state.
    pub fn new(
        evaluator: Arc<Evaluator>,
        tokens: Arc<TaskTokens>,
        graph: Arc<TaskGraph>,
        approvals: Arc<ApprovalBook>,
    ) -> Self {
        Self {
            evaluator,
            tokens,
            graph,
            approvals,
            forwarded: ForwardedSubjects::default(),
            checks: CheckCache::default(),
            answers: AnswerCache::default(),
        }
    }

    /// Drops what every cache of the decision path holds past its age
    /// (see [`crate::cache::Bounded`]).
    pub fn sweep(&self) {
        self.evaluator.sweep();
        self.tokens.sweep();
        self.forwarded.sweep();
        self.checks.sweep();
        self.answers.sweep();
    }

    /// The evaluator, for control-plane questions.
    pub fn evaluator(&self) -> &Arc<Evaluator> {
        &self.evaluator
    }

    /// The root of `task_id`'s chain, if the task exists.
    pub fn root_of(&self, task_id: &str) -> Option<String> {
        self.graph
            .chain(task_id)
            .and_then(|chain| chain.last().map(|t| t.id.to_string()))
    }

    /// Decides `request` against `view`. Never fails: every problem is a
    /// deny with a reason.
    pub fn decide(&self, view: &View, request: &Request) -> Decided {
        // Enforcement-point mode: the subject is the principal, and its
        // certificate (or a forwarded hash of it) binds the token.
        let (principal, binding) = match &request.on_behalf_of {
            None => (
                Principal::Workload(&request.caller.spiffe_id),
                request.caller.thumbprint.clone(),
            ),
            Some(Subject::Workload(subject)) => {
                match self.enforcement_point(view, request, subject) {
                    Ok(binding) => (Principal::Workload(&subject.spiffe_id), binding),
                    Err(refused) => return *refused,
                }
            }
            Some(Subject::Entity(uid)) => {
                let checked = CheckSubject {
                    key: uid.to_string(),
                    certificate_verified: false,
                    context: entity_check_context(uid),
                };
                if let Err(refused) = self.may_check(view, request, checked) {
                    return *refused;
                }
                (Principal::Entity(uid), None)
            }
        };
        let task = match (&request.token, principal) {
            (None, Principal::Workload(id)) => match agent_proof(&view.registry, id, None) {
                Ok(()) => None,
                Err(refused) => return Decided::early(refused),
            },
            (None, Principal::Entity(_)) => None,
            (Some(token), Principal::Workload(id)) => {
                match self.task_facts(view, token, id, binding.as_deref()) {
                    Ok(facts) => Some(facts),
                    Err(refused) => return Decided::early(refused),
                }
            }
            // INVARIANT: a task token is bound to a workload's SVID; an
            // entity without one can never present it.
            (Some(_), Principal::Entity(uid)) => {
                return Decided::early(Decision::deny(
                    Reason::InvalidRequest,
                    format!(
                        "a task token is bound to a workload's SVID; `{uid}` is not a workload"
                    ),
                ));
            }
        };
        let resource = &request.resource;
        let resource_type = if resource.type_name.is_empty() {
            DEFAULT_RESOURCE_TYPE
        } else {
            resource.type_name.as_str()
        };
        let asked = task.as_ref().and_then(|facts| {
            facts.chain.first().map(|t| {
                (
                    ApprovalSubject {
                        task_id: t.id.to_string(),
                        action: request.action.clone(),
                        resource_type: resource_type.to_owned(),
                        resource_id: resource.id.clone(),
                    },
                    t.scope_digest.clone(),
                )
            })
        });
        let now = view.now;
        let current = asked
            .as_ref()
            .and_then(|(subject, digest)| self.approvals.current(subject, digest, now));
        let approval = current.as_ref().map(|a| ApprovalView {
            granted: a.state == ApprovalState::Approved,
            approver: a.approver.clone().unwrap_or_default(),
            age_seconds: now.saturating_sub(a.decided_at.unwrap_or(now)),
        });
        let ledger = match &task {
            Some(facts) => match self.graph.ledger(&facts.chain) {
                Some(pair) => Some(pair),
                None => {
                    return Decided::early(Decision::deny(
                        Reason::TaskNotActive,
                        "the task left memory during the decision; it is no longer active",
                    ));
                }
            },
            None => None,
        };
        // A decision whose policies read the history holds its ledgers
        // until its outcome is added: the next call of the tree sees it.
        let mut held = if view.engine.reads_history(&request.action) {
            ledger.as_ref().map(Pair::lock)
        } else {
            None
        };
        let read = held.as_ref().map(|locked| locked.seen());
        let history = task.as_ref().zip(read.as_ref()).and_then(|(facts, seen)| {
            Some(HistoryQuery {
                task_id: &facts.chain.first()?.id,
                root_id: &facts.chain.last()?.id,
                seen,
            })
        });
        // INVARIANT: an answer that read the history is never cached (see
        // `answer_cache`): every decided call moves the history.
        let question = match history {
            Some(_) => None,
            None => question(view, request, principal, task.as_ref()),
        };
        let remembered = question
            .as_ref()
            .and_then(|q| self.answers.get(q, &view.engine, &view.registry));
        let (decision, evaluated) = match remembered {
            Some(answer) => answer,
            None => match self.evaluate(view, request, principal, task.as_ref(), approval, history)
            {
                Ok((decision, evaluated)) => {
                    let evaluated = evaluated.map(Arc::new);
                    if let Some(question) = question {
                        self.answers.put(
                            question,
                            &view.engine,
                            &view.registry,
                            decision.clone(),
                            evaluated.clone(),
                        );
                    }
                    (decision, evaluated)
                }
                Err(refused) => (refused, None),
            },
        };
        // What the record keeps of the task, moved, not copied.
        let (chain, token_jti) = task.map_or((Vec::new(), None), |f| (f.chain, Some(f.token_jti)));
        let approval_denied = current.is_some_and(|a| a.state == ApprovalState::Denied);
        let decision = decision.settle_approval(asked.is_some(), approval_denied);
        let (decision, ask) = match (decision, asked) {
            (decision @ Decision::NeedsApproval(_), Some((subject, scope_digest))) => {
                let ask = ApprovalAsk {
                    subject,
                    justification: request.context.purpose().to_owned(),
                    requested_by: principal.to_string(),
                    scope_digest,
                };
                match self.may_ask(view, principal, &ask) {
                    Ok(()) => (decision, Some(ask)),
                    Err(error) => (
                        decision.refuse_approval(Reason::ApprovalNotRequested, error),
                        None,
                    ),
                }
            }
            (decision, _) => (decision, None),
        };
        // Only a decision that read the history keeps a copy of it for its
        // record: the others update the ledger in place, without a copy per
        // call, and an audit record of a `read` does not carry two histories.
        if let Some(pair) = ledger.as_ref() {
            let mut locked = held.take().unwrap_or_else(|| pair.lock());
            let (sensitivity, labels) = match &decision {
                Decision::Allow(_) => touched(evaluated.as_deref()),
                _ => (None, Vec::new()),
            };
            locked.record(match &decision {
                Decision::Allow(_) => Outcome::Allowed {
                    action: &request.action,
                    resource: Touched {
                        sensitivity,
                        labels: &labels,
                    },
                },
                Decision::Deny(_) => Outcome::Denied,
                Decision::NeedsApproval(_) => Outcome::Pending,
            });
        }
        Decided {
            decision,
            evaluated,
            chain,
            token_jti,
            ask,
            history: read,
        }
    }

    /// Cedar on the request: the entities of a task as the resource (from
    /// the live graph, never from files) and the door's, the context, the
    /// policies.
    fn evaluate(
        &self,
        view: &View,
        request: &Request,
        principal: Principal<'_>,
        task: Option<&TaskFacts>,
        approval: Option<ApprovalView>,
        history: Option<HistoryQuery<'_>>,
    ) -> Result<(Decision, Option<Evaluated>), Decision> {
        let resource = &request.resource;
        let mut entities = if resource.type_name == TASK_TYPE {
            match self
                .graph
                .chain(&resource.id)
                .map(|chain| task_entities(&chain, view.now))
            {
                Some(Ok(entities)) => entities,
                Some(Err(e)) => return Err(Decision::deny(Reason::InternalError, e)),
                None => Vec::new(),
            }
        } else {
            Vec::new()
        };
        entities.extend(request.door.entities.iter().cloned());
        Ok(self.evaluator.evaluate(
            &view.engine,
            &view.registry,
            Query {
                task,
                entities,
                approval,
                history,
                mandate_context: request.door.pairs.clone(),
                described: request.door.described.clone(),
                ..Query::new(
                    principal,
                    &request.action,
                    &resource.type_name,
                    &resource.id,
                    serde_json::Value::Object(request.context.fields.clone()),
                )
            },
        ))
    }

    /// The subject's trust domain must be trusted, its certificate (when
    /// sent) must verify, and the caller must be allowed `check` on the
    /// resource for it. Returns what binds the subject's token.
    fn enforcement_point(
        &self,
        view: &View,
        request: &Request,
        subject: &OnBehalfOf,
    ) -> Result<Option<String>, Box<Decided>> {
        let id = &subject.spiffe_id;
        if !view.bundles.trusts(id.trust_domain()) {
            return Err(Box::new(Decided::early(Decision::deny(
                Reason::UntrustedSubject,
                format!(
                    "subject trust domain `{}` is not trusted",
                    id.trust_domain_name()
                ),
            ))));
        }
        let verified = match &subject.certificate_pem {
            None => None,
            Some(pem) => Some(
                self.verify_subject_certificate(view, pem, id)
                    .map_err(|e| {
                        Box::new(Decided::early(Decision::deny(
                            Reason::SubjectCertificateInvalid,
                            e,
                        )))
                    })?,
            ),
        };
        let checked = CheckSubject {
            key: id.to_string(),
            certificate_verified: verified.is_some(),
            context: serde_json::json!({
                "spiffe_id": id.to_string(),
                "trust_domain": id.trust_domain_name(),
                "path": id.path(),
                "certificate_verified": verified.is_some(),
            }),
        };
        self.may_check(view, request, checked)?;
        Ok(verified.or_else(|| subject.forwarded_thumbprint.clone()))
    }

    /// The caller must be allowed `check` on the resource for `subject`
    /// (remembered until the policies or the registry change).
    fn may_check(
        &self,
        view: &View,
        request: &Request,
        subject: CheckSubject,
    ) -> Result<(), Box<Decided>> {
        let caller = &request.caller.spiffe_id;
        let resource = &request.resource;
        let key = CheckKey {
            caller: caller.to_string(),
            resource: (resource.type_name.clone(), resource.id.clone()),
            subject: subject.key,
            certificate_verified: subject.certificate_verified,
        };
        if !self.checks.allowed(&view.engine, &view.registry, &key) {
            let (check, evaluated) = self.evaluator.evaluate(
                &view.engine,
                &view.registry,
                Query::new(
                    caller,
                    CHECK_ACTION,
                    &resource.type_name,
                    &resource.id,
                    serde_json::json!({ "subject": subject.context }),
                ),
            );
            if !check.is_allowed() {
                // The record keeps the `check` request: a policy change
                // that would let this enforcement point ask shows in a
                // replay.
                return Err(Box::new(Decided {
                    evaluated: evaluated.map(Arc::new),
                    ..Decided::early(check.led_by(Reason::NotAnEnforcementPoint))
                }));
            }
            self.checks.remember(&view.engine, &view.registry, key);
        }
        Ok(())
    }

    /// Verifies a forwarded subject SVID against our bundles; returns the
    /// thumbprint of its leaf.
    fn verify_subject_certificate(
        &self,
        view: &View,
        pem: &str,
        expected: &SpiffeId,
    ) -> Result<String, String> {
        let verified = self.forwarded.verify(&view.bundles, pem, UnixTime::now())?;
        if verified.spiffe_id != *expected {
            return Err(format!(
                "subject certificate is for `{}`, not `{expected}`",
                verified.spiffe_id
            ));
        }
        Ok(verified.thumbprint)
    }

    /// Verifies a task token and reads its task's live chain.
    // INVARIANT: a token that does not verify, or names no task, never
    // reaches the policies: it is a deny with the token's reason.
    fn task_facts(
        &self,
        view: &View,
        token: &str,
        subject: &SpiffeId,
        binding: Option<&str>,
    ) -> Result<TaskFacts, Decision> {
        let claims = self
            .tokens
            .verify_bound(token, subject, binding)
            .map_err(|e: TokenError| Decision::deny(Reason::from(&e), e.to_string()))?;
        agent_proof(&view.registry, subject, Some(claims.agent_proof.as_deref()))?;
        let chain = self.graph.chain(&claims.task).ok_or_else(|| {
            if self.graph.was_evicted(&claims.task) {
                Decision::deny(
                    Reason::TaskNotActive,
                    format!(
                        "task `{}` ended and was archived after its retention period; it is no longer active",
                        claims.task
                    ),
                )
            } else {
                Decision::deny(
                    Reason::UnknownTask,
                    format!("task `{}` does not exist", claims.task),
                )
            }
        })?;
        Ok(TaskFacts {
            chain,
            now: view.now,
            token_jti: claims.jti,
        })
    }

    /// Asking a human is a `request_approval` like any other: policy may
    /// refuse it. `Err` says why it may not.
    fn may_ask(
        &self,
        view: &View,
        principal: Principal<'_>,
        ask: &ApprovalAsk,
    ) -> Result<(), String> {
        let would_be = Approval {
            id: "(new)".to_owned(),
            subject: ask.subject.clone(),
            justification: ask.justification.clone(),
            requested_by: ask.requested_by.clone(),
            requested_at: view.now,
            state: ApprovalState::Pending,
            approver: None,
            decided_by: None,
            decided_at: None,
            expires_at: None,
            scope_digest: ask.scope_digest.clone(),
        };
        let chain = self
            .graph
            .chain(&ask.subject.task_id)
            .ok_or_else(|| format!("task `{}` no longer exists", ask.subject.task_id))?;
        let entities = approval_entities(&would_be, &chain, view.now)?;
        let (decision, _) = self.evaluator.evaluate(
            &view.engine,
            &view.registry,
            Query {
                entities,
                ..Query::new(
                    principal,
                    REQUEST_APPROVAL,
                    APPROVAL_TYPE,
                    &would_be.id,
                    serde_json::json!({}),
                )
            },
        );
        if decision.is_allowed() {
            return Ok(());
        }
        Err(format!(
            "`{principal}` may not `{REQUEST_APPROVAL}`: {}",
            decision
                .reasons()
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

/// The key of Cedar's answer to `request` (see [`super::answer_cache`]);
/// `None` when the door's context cannot be told as text.
fn question(
    view: &View,
    request: &Request,
    principal: Principal<'_>,
    task: Option<&TaskFacts>,
) -> Option<Question> {
    let door = &request.door;
    let door = match &door.digest {
        Some(digest) => digest.clone(),
        None if door.pairs.is_empty() && door.entities.is_empty() && door.described.is_empty() => {
            String::new()
        }
        None => return None,
    };
    let (engine, registry) = Question::of(&view.engine, &view.registry);
    Some(Question {
        engine,
        registry,
        revision: view.revision,
        now: view.now,
        principal: principal.to_string(),
        action: request.action.clone(),
        resource_type: request.resource.type_name.clone(),
        resource_id: request.resource.id.clone(),
        context: serde_json::Value::Object(request.context.fields.clone()).to_string(),
        task: task.and_then(|facts| {
            facts
                .chain
                .first()
                .map(|t| (t.id.clone(), facts.token_jti.clone()))
        }),
        door,
    })
}

/// The sensitivity and labels of the resource a call was decided on, as
/// its entity slice held them (what the policies saw).
fn touched(evaluated: Option<&Evaluated>) -> (Option<i64>, Vec<String>) {
    use cedar_policy::EvalResult;
    let Some(entity) =
        evaluated.and_then(|e| e.request.resource().and_then(|uid| e.entities.get(uid)))
    else {
        return (None, Vec::new());
    };
    let sensitivity = match entity.attr("sensitivity") {
        Some(Ok(EvalResult::Long(level))) => Some(level),
        _ => None,
    };
    let labels = match entity.attr("labels") {
        Some(Ok(EvalResult::Set(set))) => set
            .iter()
            .filter_map(|label| match label {
                EvalResult::String(s) => Some(s.clone()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    (sensitivity, labels)
}

/// Whom an enforcement point asks about, as its `check` sees it.
struct CheckSubject {
    /// What the check cache remembers it by.
    key: String,
    /// Whether its certificate was forwarded and verified.
    certificate_verified: bool,
    /// `context.subject` of the `check`.
    context: serde_json::Value,
}

/// `context.subject` of a `check` for an entity: it has no SPIFFE ID (the
/// workload fields are empty, its certificate is not verified) and is
/// named by `entity_type` and `entity_id`.
fn entity_check_context(uid: &EntityUid) -> serde_json::Value {
    serde_json::json!({
        "spiffe_id": "",
        "trust_domain": "",
        "path": "",
        "certificate_verified": false,
        "entity_type": uid.type_name().to_string(),
        "entity_id": uid.id().unescaped(),
    })
}

/// The entities a question about `approval` needs: the approval, then its
/// task's chain (`chain`, the task first).
pub fn approval_entities(
    approval: &Approval,
    chain: &Chain,
    now: i64,
) -> Result<Vec<Entity>, String> {
    let originator = chain
        .last()
        .map(|t| t.originator.clone())
        .unwrap_or_default();
    let mut entities = vec![approval_entity(approval, &originator)?];
    entities.extend(task_entities(chain, now)?);
    Ok(entities)
}

/// Why an agent's proof of its checksum does not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofRefusal {
    /// The agent is registered with a checksum and proved none.
    Required,
    /// It proved another checksum than the registered one.
    Mismatch,
}

/// INVARIANT: an agent registered with a checksum acts only by proving
/// it: on the decision path through its task token (`proof` is
/// `Some(token's proof)`; `None` is a call without a token), on the
/// control plane with `agent_proof`. A mismatch is logged.
pub fn check_agent_proof(
    registry: &Snapshot,
    agent: &SpiffeId,
    proof: Option<Option<&str>>,
) -> Result<(), ProofRefusal> {
    let Some(expected) = registry
        .agent(&agent.to_string())
        .and_then(|a| a.checksum.as_deref())
    else {
        return Ok(());
    };
    match proof {
        None => Err(ProofRefusal::Required),
        Some(proved) if proved == Some(expected) => Ok(()),
        Some(proved) => {
            tracing::warn!(spiffe_id = %agent, proof = proved.unwrap_or("none"), "agent checksum mismatch: call refused");
            Err(ProofRefusal::Mismatch)
        }
    }
}

/// [`check_agent_proof`] as a decision.
fn agent_proof(
    registry: &Snapshot,
    agent: &SpiffeId,
    proof: Option<Option<&str>>,
) -> Result<(), Decision> {
    check_agent_proof(registry, agent, proof).map_err(|refusal| match refusal {
        ProofRefusal::Required => Decision::deny(
            Reason::AgentProofRequired,
            format!(
                "`{agent}` is registered with a checksum: call with a task token, which carries its proof"
            ),
        ),
        ProofRefusal::Mismatch => Decision::deny(
            Reason::AgentChecksumMismatch,
            format!(
                "`{agent}` is registered with another checksum than the one its token proved; get a new token"
            ),
        ),
    })
}
