//! Cedar's answers, remembered for exactly the inputs they were computed
//! from. An agent repeats the same call (same token, action, resource and
//! context) many times a second; building the context, the entity slice
//! and the request and evaluating the policies is most of a decision's
//! cost, and its result cannot differ while none of its inputs does.
//!
//! INVARIANT: an answer is reused only for a question with the same
//! inputs to Cedar: the same policy set and registry snapshot (the very
//! instances, so a reload or a registry write is a miss), the same state
//! revision (every task, approval and registry write bumps it, so a
//! revoke, an amendment or an approval is a miss on the very next call),
//! the same second (expiry, token time and approval age are judged by the
//! second), and the same principal, action, resource, caller context,
//! task token and door context. Token verification, the agent proof and
//! the enforcement-point check run before it on every call.
//!
//! INVARIANT: the execution history (`context.history`,
//! `context.history_root`) is an input no key holds: every decided call
//! of a task moves it, so an answer computed against it could only be
//! reused against an older history. A decision whose action has a policy
//! that reads the history is therefore never looked up nor remembered
//! here; the other actions' decisions do not see the history at all, so
//! their answers stay cacheable (see `Pipeline::decide` and
//! [`crate::policy::reads_history`]).

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::Decision;
use crate::cache::Bounded;
use crate::policy::{Evaluated, PolicyEngine};
use crate::registry::Snapshot;

/// Most answers remembered; each is good for one second at most.
const CAPACITY: usize = 2048;
/// An answer's key holds its second, so it is of no use after two.
const MAX_AGE: Duration = Duration::from_secs(2);

/// Everything a question to Cedar is built from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Question {
    /// The addresses of the policy set and the registry snapshot; the
    /// answer holds them weakly, so the addresses cannot be reused while
    /// it is remembered.
    pub engine: usize,
    pub registry: usize,
    pub revision: u64,
    pub now: i64,
    pub principal: String,
    pub action: String,
    pub resource_type: String,
    pub resource_id: String,
    /// The caller's context as JSON text.
    pub context: String,
    /// The token's task and id.
    pub task: Option<(crate::graph::TaskId, String)>,
    /// What the door added, as the door describes it.
    pub door: String,
}

impl Question {
    /// The identity half of the key.
    pub fn of(engine: &Arc<PolicyEngine>, registry: &Arc<Snapshot>) -> (usize, usize) {
        (Arc::as_ptr(engine).addr(), Arc::as_ptr(registry).addr())
    }
}

#[derive(Debug, Clone)]
struct Answer {
    engine: Weak<PolicyEngine>,
    registry: Weak<Snapshot>,
    decision: Decision,
    evaluated: Option<Arc<Evaluated>>,
}

/// Remembered answers.
#[derive(Debug)]
pub(super) struct AnswerCache {
    answers: Bounded<Question, Answer>,
}

impl Default for AnswerCache {
    fn default() -> Self {
        Self {
            answers: Bounded::new(CAPACITY, MAX_AGE),
        }
    }
}

impl AnswerCache {
    /// The answer to `question`, if it was given under these very
    /// instances.
    pub fn get(
        &self,
        question: &Question,
        engine: &Arc<PolicyEngine>,
        registry: &Arc<Snapshot>,
    ) -> Option<(Decision, Option<Arc<Evaluated>>)> {
        let answer = self.answers.get(question)?;
        let same = Weak::ptr_eq(&answer.engine, &Arc::downgrade(engine))
            && Weak::ptr_eq(&answer.registry, &Arc::downgrade(registry));
        same.then_some((answer.decision, answer.evaluated))
    }

    /// Remembers an answer.
    pub fn put(
        &self,
        question: Question,
        engine: &Arc<PolicyEngine>,
        registry: &Arc<Snapshot>,
        decision: Decision,
        evaluated: Option<Arc<Evaluated>>,
    ) {
        self.answers.insert(
            question,
            Answer {
                engine: Arc::downgrade(engine),
                registry: Arc::downgrade(registry),
                decision,
                evaluated,
            },
        );
    }

    /// Drops answers past their age.
    pub fn sweep(&self) {
        self.answers.sweep();
    }
}
