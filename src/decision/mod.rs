//! The decision path, whole: every door (`Authorize`, `BatchAuthorize`,
//! Envoy's `Check`) turns its message into a [`Request`] and hands it to
//! the [`Runner`], which gates it, has the [`Pipeline`] decide it over one
//! [`View`] of the state, and records it. Fail closed: every error is a
//! deny with a [`Reason`].
//!
//! To follow one decision, read `pipeline.rs`; what surrounds it is in
//! `runner.rs`; Cedar itself in `cedar.rs`.

mod answer_cache;
mod cedar;
mod check_cache;
mod history;
pub mod limits;
mod outcome;
mod pipeline;
mod principal;
mod reason;
mod request;
mod runner;
mod task;
#[cfg(test)]
mod tests;
mod view;

pub use cedar::{ApprovalView, Evaluator, Principal, Query, judge};
pub use history::HistoryQuery;
pub use outcome::{Decision, Grounds};
pub use pipeline::{
    ApprovalAsk, Decided, Pipeline, ProofRefusal, approval_entities, check_agent_proof,
};
pub use principal::{AgentPattern, DEFAULT_AGENT_PATH_PREFIXES};
pub use reason::{Reason, ReasonKind};
pub use request::{Caller, CallerContext, DoorContext, OnBehalfOf, Request, Resource, Subject};
pub use runner::{Answer, BatchRefused, Runner, RunnerParts, Target};
pub use task::{RESERVED_CONTEXT_KEYS, TaskEntityCache, TaskFacts, task_entities};
pub use view::View;

/// The resource type used when a request names none.
pub const DEFAULT_RESOURCE_TYPE: &str = "Mandate::Resource";

/// The policy-level Cedar request a decision evaluated; see
/// [`crate::policy::Evaluated`].
pub use crate::policy::Evaluated;
