//! Mandate: a policy decision point for AI agents and workloads.
//!
//! Callers authenticate with SPIFFE X.509-SVIDs over mTLS; every request is
//! decided live by Cedar policies. See `docs/architecture.md` for the architecture.

#![forbid(unsafe_code)]

pub mod api;
pub mod app;
pub mod approval;
pub mod audit;
pub mod cache;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod credential;
pub mod decision;
pub mod envoy;
pub mod exit_code;
#[doc(hidden)]
pub mod fuzzing;
pub mod graph;
pub mod identity;
pub mod integrity;
pub mod journal;
pub mod ledger;
pub mod limits;
pub mod metrics;
pub mod policy;
pub mod proto;
pub mod registry;
pub mod revision;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod ui;
