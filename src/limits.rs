//! Bounds on what one caller may ask of the server, so hostile input costs
//! a clear error instead of memory, CPU or a stuck connection. Each limit
//! is configurable in `[limits]` of `mandate.toml`; the defaults fit the
//! requests the API is for with a wide margin.
//!
//! Limits that predate this table stay where they were: `max_batch_size`,
//! `max_delegation_depth` and `handshake_timeout_secs` at the top level.

use std::time::Duration;

/// The defaults of `[limits]`.
pub mod defaults {
    /// One gRPC message, bytes (tonic's own default is 4 MiB).
    pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;
    /// A task token, bytes; ours are well under 2 KiB.
    pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
    /// A request context, bytes of its protobuf encoding.
    pub const MAX_CONTEXT_BYTES: usize = 64 * 1024;
    /// Nesting of records and lists in a request context.
    pub const MAX_CONTEXT_DEPTH: usize = 8;
    /// Entity references (`__entity`) in a request context.
    pub const MAX_CONTEXT_ENTITIES: usize = 32;
    /// Concurrent HTTP/2 streams on one connection.
    pub const MAX_CONCURRENT_STREAMS: u32 = 256;
    /// One call, from its headers to its answer, milliseconds.
    pub const REQUEST_TIMEOUT_MS: u64 = 10_000;
}

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

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_request_bytes: defaults::MAX_REQUEST_BYTES,
            max_token_bytes: defaults::MAX_TOKEN_BYTES,
            max_context_bytes: defaults::MAX_CONTEXT_BYTES,
            max_context_depth: defaults::MAX_CONTEXT_DEPTH,
            max_context_entities: defaults::MAX_CONTEXT_ENTITIES,
            max_concurrent_streams: defaults::MAX_CONCURRENT_STREAMS,
            request_timeout: Duration::from_millis(defaults::REQUEST_TIMEOUT_MS),
        }
    }
}
