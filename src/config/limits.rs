//! `[limits]`: bounds on hostile input (see [`crate::limits`]). Each must
//! be at least 1: a zero would refuse every call.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigErrors;
use super::reference::{Section, key};
use crate::limits::Limits;

/// Upper bound on `max_request_bytes`: beyond it one call could hold a
/// large share of memory while it is decoded.
const MAX_REQUEST_BYTES_LIMIT: usize = 64 * 1024 * 1024;

/// The `[limits]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest gRPC message, bytes.
    pub max_request_bytes: usize,
    /// Largest task token, bytes.
    pub max_token_bytes: usize,
    /// Largest request context (protobuf encoding), bytes.
    pub max_context_bytes: usize,
    /// Deepest nesting of a request context.
    pub max_context_depth: usize,
    /// Most entity references in a request context.
    pub max_context_entities: usize,
    /// Concurrent HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
    /// Deadline of one call, milliseconds.
    pub request_timeout_ms: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let base = Limits::default();
        Self {
            max_request_bytes: base.max_request_bytes,
            max_token_bytes: base.max_token_bytes,
            max_context_bytes: base.max_context_bytes,
            max_context_depth: base.max_context_depth,
            max_context_entities: base.max_context_entities,
            max_concurrent_streams: base.max_concurrent_streams,
            request_timeout_ms: u64::try_from(base.request_timeout.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

impl LimitsConfig {
    /// The limits; a zero or an out-of-range value names its key.
    pub(super) fn validate(&self, errors: &mut ConfigErrors) -> Limits {
        for (key, value) in [
            ("limits.max_request_bytes", self.max_request_bytes),
            ("limits.max_token_bytes", self.max_token_bytes),
            ("limits.max_context_bytes", self.max_context_bytes),
            ("limits.max_context_depth", self.max_context_depth),
            ("limits.max_context_entities", self.max_context_entities),
        ] {
            errors.at_least_one(key, value as u64);
        }
        errors.at_least_one(
            "limits.max_concurrent_streams",
            u64::from(self.max_concurrent_streams),
        );
        errors.at_least_one("limits.request_timeout_ms", self.request_timeout_ms);
        if self.max_request_bytes > MAX_REQUEST_BYTES_LIMIT {
            errors.bad(
                "limits.max_request_bytes",
                self.max_request_bytes,
                format!("is above {MAX_REQUEST_BYTES_LIMIT}"),
            );
        }
        Limits {
            max_request_bytes: self.max_request_bytes,
            max_token_bytes: self.max_token_bytes,
            max_context_bytes: self.max_context_bytes,
            max_context_depth: self.max_context_depth,
            max_context_entities: self.max_context_entities,
            max_concurrent_streams: self.max_concurrent_streams,
            request_timeout: Duration::from_millis(self.request_timeout_ms),
        }
    }
}

pub(super) const SECTION: Section = Section {
    name: "limits",
    doc: "Bounds on hostile input; over one, a call is refused with a message naming\nthe key (docs/operations.md, \"Limits under hostile input\").",
    optional: false,
    keys: &[
        key(
            "max_request_bytes",
            "One gRPC message (RESOURCE_EXHAUSTED), at most 67108864.",
        ),
        key("max_token_bytes", "A task token (INVALID_ARGUMENT)."),
        key("max_context_bytes", "A request context, protobuf bytes."),
        key(
            "max_context_depth",
            "Nesting of records and lists in a request context.",
        ),
        key(
            "max_context_entities",
            "Entity references in a request context.",
        ),
        key("max_concurrent_streams", "HTTP/2 streams per connection."),
        key("request_timeout_ms", "One call (DEADLINE_EXCEEDED)."),
    ],
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_and_zero_is_named() {
        let mut errors = ConfigErrors::default();
        assert_eq!(
            LimitsConfig::default().validate(&mut errors),
            Limits::default()
        );
        assert!(errors.is_empty(), "{errors}");

        let raw = LimitsConfig {
            max_token_bytes: 0,
            request_timeout_ms: 0,
            max_request_bytes: usize::MAX,
            ..LimitsConfig::default()
        };
        raw.validate(&mut errors);
        for key in ["max_token_bytes", "request_timeout_ms", "max_request_bytes"] {
            assert!(
                errors
                    .lines()
                    .iter()
                    .any(|p| p.starts_with(&format!("`limits.{key}`"))),
                "{key}: {errors}"
            );
        }
    }
}
