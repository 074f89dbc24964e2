//! Bounds on what one caller may ask of the server, so hostile input costs
//! a clear error instead of memory, CPU or a stuck connection. Each limit
//! is configurable in `[limits]` of `mandate.toml`; the defaults fit the
//! requests the API is for with a wide margin.
//!
//! Three more bounds live in the sections they belong to:
//! `server.max_batch_size`, `tasks.max_delegation_depth` and
//! `server.handshake_timeout_secs`.

use std::time::Duration;

/// Request and connection limits, already validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest gRPC message accepted; larger is `RESOURCE_EXHAUSTED`.
    pub max_request_bytes: usize,
    /// Largest task token; larger is `INVALID_ARGUMENT`.
    pub max_token_bytes: usize,
    /// Largest request context (protobuf encoding); `INVALID_ARGUMENT`.
    pub max_context_bytes: usize,
    /// Deepest nesting in a request context; `INVALID_ARGUMENT`.
    pub max_context_depth: usize,
    /// Most entity references in a request context; `INVALID_ARGUMENT`.
    pub max_context_entities: usize,
    /// HTTP/2 streams one connection may have open at once (advertised
    /// in SETTINGS; a peer opening more has them refused).
    pub max_concurrent_streams: u32,
    /// A call not answered in this time is `DEADLINE_EXCEEDED`, a slow
    /// sender included; streamed answers are bounded until their first
    /// message.
    pub request_timeout: Duration,
}

/// The defaults of `[limits]` (`config::LimitsConfig` starts from these).
impl Default for Limits {
    fn default() -> Self {
        Self {
            // tonic's own default is 4 MiB.
            max_request_bytes: 1024 * 1024,
            // Ours are well under 2 KiB.
            max_token_bytes: 8 * 1024,
            max_context_bytes: 64 * 1024,
            max_context_depth: 8,
            max_context_entities: 32,
            max_concurrent_streams: 256,
            request_timeout: Duration::from_secs(10),
        }
    }
}
