//! Envoy's ext_authz adapter: what a `CheckRequest` asks (subject, token,
//! action and resource through the route map) and how the answer goes
//! back to Envoy. The gRPC service itself is in `api::envoy`; it decides
//! through the same path as `Authorize`.

mod context;
mod glob;
mod request;
mod response;
mod routes;
mod settings;
mod table;
mod watch;
mod xfcc;

pub use context::http_context;
pub use request::{HttpAttributes, Mapped, Refusal, header, map_check};
pub use response::{Answer, allowed, denied};
pub use routes::{Route, RouteMap, RouteMatch};
pub use settings::{EnvoySettings, headers};
pub use table::RouteTable;
pub use watch::watch_routes;
pub use xfcc::ForwardedCert;
