//! The threat suite: one named test per threat an agent system faces, each
//! through the real server over mTLS (rcgen PKI, real gRPC on a socket,
//! real Cedar). `docs/threats.md` says, for each threat, what the attack
//! is, what Mandate does, which tests prove it and what is not covered.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

mod common;

#[path = "threats/spoofing.rs"]
mod spoofing;

#[path = "threats/replay.rs"]
mod replay;

#[path = "threats/tampering.rs"]
mod tampering;

#[path = "threats/injection.rs"]
mod injection;

#[path = "threats/workflow.rs"]
mod workflow;

#[path = "threats/escalation.rs"]
mod escalation;

#[path = "threats/bypass.rs"]
mod bypass;

#[path = "threats/inflation.rs"]
mod inflation;

#[path = "threats/origin.rs"]
mod origin;

#[path = "threats/chain.rs"]
mod chain;

#[path = "threats/exposure.rs"]
mod exposure;
