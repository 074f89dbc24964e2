//! The `[limits]` table of `mandate.toml`: bounds on hostile input (see
//! [`crate::limits`]). Every key is optional; each must be at least 1.

use std::time::Duration;

use serde::Deserialize;

use crate::limits::{Limits, defaults};

/// Upper bound on `max_request_bytes`: beyond it one call could hold a
/// large share of memory while it is decoded.
const MAX_REQUEST_BYTES_LIMIT: usize = 64 * 1024 * 1024;

/// The `[limits]` table.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Largest gRPC message, bytes.
    pub max_request_bytes: Option<usize>,
    /// Largest task token, bytes.
    pub max_token_bytes: Option<usize>,
    /// Largest request context (protobuf encoding), bytes.
    pub max_context_bytes: Option<usize>,
    /// Deepest nesting of a request context.
    pub max_context_depth: Option<usize>,
    /// Most entity references in a request context.
    pub max_context_entities: Option<usize>,
    /// Concurrent HTTP/2 streams per connection.
    pub max_concurrent_streams: Option<u32>,
    /// Deadline of one call, milliseconds.
    pub request_timeout_ms: Option<u64>,
}

impl RawLimits {
    /// `self` with every unset key taken from `file`.
    pub fn or(self, file: Self) -> Self {
        Self {
            max_request_bytes: self.max_request_bytes.or(file.max_request_bytes),
            max_token_bytes: self.max_token_bytes.or(file.max_token_bytes),
            max_context_bytes: self.max_context_bytes.or(file.max_context_bytes),
            max_context_depth: self.max_context_depth.or(file.max_context_depth),
            max_context_entities: self.max_context_entities.or(file.max_context_entities),
            max_concurrent_streams: self.max_concurrent_streams.or(file.max_concurrent_streams),
            request_timeout_ms: self.request_timeout_ms.or(file.request_timeout_ms),
        }
    }

    /// The limits with defaults applied; a zero (which would refuse every
    /// call) or an out-of-range value is a problem naming its key.
    pub fn resolve(self, problems: &mut Vec<String>) -> Limits {
        let mut at_least_one = |key: &str, value: u64| {
            if value == 0 {
                problems.push(format!("`limits.{key}` must be at least 1"));
            }
        };
        let limits = Limits {
            max_request_bytes: self
                .max_request_bytes
                .unwrap_or(defaults::MAX_REQUEST_BYTES),
            max_token_bytes: self.max_token_bytes.unwrap_or(defaults::MAX_TOKEN_BYTES),
            max_context_bytes: self
                .max_context_bytes
                .unwrap_or(defaults::MAX_CONTEXT_BYTES),
            max_context_depth: self
                .max_context_depth
                .unwrap_or(defaults::MAX_CONTEXT_DEPTH),
            max_context_entities: self
                .max_context_entities
                .unwrap_or(defaults::MAX_CONTEXT_ENTITIES),
            max_concurrent_streams: self
                .max_concurrent_streams
                .unwrap_or(defaults::MAX_CONCURRENT_STREAMS),
            request_timeout: Duration::from_millis(
                self.request_timeout_ms
                    .unwrap_or(defaults::REQUEST_TIMEOUT_MS),
            ),
        };
        for (key, value) in [
            ("max_request_bytes", limits.max_request_bytes),
            ("max_token_bytes", limits.max_token_bytes),
            ("max_context_bytes", limits.max_context_bytes),
            ("max_context_depth", limits.max_context_depth),
            ("max_context_entities", limits.max_context_entities),
        ] {
            at_least_one(key, value as u64);
        }
        at_least_one(
            "max_concurrent_streams",
            u64::from(limits.max_concurrent_streams),
        );
        at_least_one(
            "request_timeout_ms",
            limits.request_timeout.as_millis() as u64,
        );
        if limits.max_request_bytes > MAX_REQUEST_BYTES_LIMIT {
            problems.push(format!(
                "`limits.max_request_bytes` {} is above {MAX_REQUEST_BYTES_LIMIT}",
                limits.max_request_bytes
            ));
        }
        limits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_and_zero_is_named() {
        let mut problems = Vec::new();
        assert_eq!(
            RawLimits::default().resolve(&mut problems),
            Limits::default()
        );
        assert!(problems.is_empty(), "{problems:?}");

        let raw = RawLimits {
            max_token_bytes: Some(0),
            request_timeout_ms: Some(0),
            max_request_bytes: Some(usize::MAX),
            ..RawLimits::default()
        };
        raw.resolve(&mut problems);
        for key in ["max_token_bytes", "request_timeout_ms", "max_request_bytes"] {
            assert!(
                problems
                    .iter()
                    .any(|p| p.contains(&format!("`limits.{key}`"))),
                "{key}: {problems:?}"
            );
        }
    }
}
