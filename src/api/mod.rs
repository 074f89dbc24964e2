//! Mandate's network interfaces: the gRPC API over SPIFFE mTLS and the small
//! HTTP endpoint for health checks.

mod approval;
mod audit;
mod authorization;
pub mod authzen;
mod context;
mod control;
mod envoy;
mod error;
pub mod http;
pub mod https;
pub mod listener;
mod peer;
mod policy;
mod registry;
mod task;
mod trail;
mod transport_limits;

pub use approval::ApprovalApi;
pub use audit::{AuditApi, decision_to_proto, event_to_proto};
pub use authorization::AuthorizationApi;
pub(crate) use control::ControlGate;
pub use envoy::EnvoyApi;
pub use error::ApiError;
pub use peer::{MtlsStream, PeerIdentity};
pub use policy::PolicyApi;
pub(crate) use policy::{PolicyReload, watch as watch_policies};
pub use registry::{RegistryApi, refuse_workload_on_agent_path};
pub use task::TaskApi;
pub(crate) use trail::Trail;
pub use transport_limits::TransportLimitsLayer;

/// Page size of list calls that ask for none.
const DEFAULT_PAGE_SIZE: usize = 50;
/// Largest page of list calls.
const MAX_PAGE_SIZE: usize = 500;

/// The page size a list call gets for the `page_size` it asked for.
fn page_limit(requested: u32) -> usize {
    match requested {
        0 => DEFAULT_PAGE_SIZE,
        n => usize::try_from(n)
            .unwrap_or(MAX_PAGE_SIZE)
            .min(MAX_PAGE_SIZE),
    }
}

/// The wire types, which live in [`crate::proto`]; kept here so the
/// services read as before.
pub use crate::proto::v1;
