//! What records never hold. Tokens are never recorded (only their `jti`)
//! and agents' checksums are always replaced (see `record.rs`); on top of
//! that the configuration names request context keys and HTTP headers
//! whose values are replaced by [`REDACTED`] before any sink or the query
//! index sees the record.

use std::collections::BTreeSet;

use serde_json::Value;

use super::record::{CedarRequest, REDACTED};

/// What a record shows instead of an error that may quote a redacted value.
pub const REDACTED_ERROR: &str = "(redacted: the error may quote a redacted context value)";

/// Headers never recorded, whatever the configuration says: they carry
/// credentials.
pub const ALWAYS_REDACTED_HEADERS: &[&str] = &["authorization", "proxy-authorization", "cookie"];

/// Query parameters never recorded, whatever the configuration says:
/// clients put credentials there (OAuth, signed URLs, API keys).
pub const ALWAYS_REDACTED_QUERY: &[&str] = &[
    "access_token",
    "api_key",
    "apikey",
    "client_secret",
    "code",
    "id_token",
    "password",
    "refresh_token",
    "signature",
    "token",
];

/// The Cedar type and ids of the entities holding the selected headers and
/// the query parameters (see `envoy/context.rs`).
const FIELDS_TYPE: &str = "Mandate::HttpFields";
const HEADERS_ID: &str = "headers";
const QUERY_ID: &str = "query";

/// Context keys and headers to keep out of records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Redaction {
    /// Top-level keys of the request context.
    pub context_keys: BTreeSet<String>,
    /// Header names, lowercase.
    pub headers: BTreeSet<String>,
    /// Query parameter names, lowercase.
    pub query_params: BTreeSet<String>,
}

impl Redaction {
    /// The configured keys and headers plus [`ALWAYS_REDACTED_HEADERS`].
    pub fn new(
        context_keys: impl IntoIterator<Item = String>,
        headers: impl IntoIterator<Item = String>,
    ) -> Self {
        Self {
            context_keys: context_keys.into_iter().collect(),
            headers: headers
                .into_iter()
                .map(|h| h.to_ascii_lowercase())
                .chain(ALWAYS_REDACTED_HEADERS.iter().map(|h| (*h).to_owned()))
                .collect(),
            query_params: ALWAYS_REDACTED_QUERY
                .iter()
                .map(|q| (*q).to_owned())
                .collect(),
        }
    }

    /// Also keeps `params` (query parameter names) out of records.
    #[must_use]
    pub fn with_query_params(mut self, params: impl IntoIterator<Item = String>) -> Self {
        self.query_params
            .extend(params.into_iter().map(|p| p.to_ascii_lowercase()));
        self
    }

    /// Cedar's messages about an invalid context print the context, values
    /// included, so a record of a request whose context held a listed key
    /// keeps none of its errors' text (the reasons still say what went
    /// wrong; the caller's own response keeps the details).
    pub fn scrub_errors<'a>(
        &self,
        errors: &mut [String],
        context_keys: impl IntoIterator<Item = &'a str>,
    ) {
        if errors.is_empty() || self.context_keys.is_empty() {
            return;
        }
        if context_keys
            .into_iter()
            .any(|key| self.context_keys.contains(key))
        {
            for error in errors {
                REDACTED_ERROR.clone_into(error);
            }
        }
    }

    /// Replaces the listed context values and header values of a recorded
    /// Cedar request. Keys stay, so a replay still sees that they were
    /// there.
    pub fn apply(&self, cedar: &mut CedarRequest) {
        if let Some(context) = cedar.context.as_object_mut() {
            for (key, value) in context.iter_mut() {
                if self.context_keys.contains(key) {
                    *value = Value::String(REDACTED.to_owned());
                }
            }
        }
        for entity in cedar.entities.as_array_mut().into_iter().flatten() {
            let uid = entity.get("uid");
            if uid.and_then(|u| u.get("type")).and_then(Value::as_str) != Some(FIELDS_TYPE) {
                continue;
            }
            let listed = match uid.and_then(|u| u.get("id")).and_then(Value::as_str) {
                Some(HEADERS_ID) => &self.headers,
                Some(QUERY_ID) => &self.query_params,
                _ => continue,
            };
            if let Some(tags) = entity.get_mut("tags").and_then(Value::as_object_mut) {
                for (name, value) in tags.iter_mut() {
                    if listed.contains(&name.to_ascii_lowercase()) {
                        *value = Value::String(REDACTED.to_owned());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_of_requests_with_a_listed_key_are_replaced() {
        let redaction = Redaction::new(["ssn".to_owned()], []);
        let quoted = || vec!["context `{ssn: {n: \"123\"}}` is not valid".to_owned()];
        let mut errors = quoted();
        redaction.scrub_errors(&mut errors, ["purpose", "ssn"]);
        assert_eq!(errors, [REDACTED_ERROR]);
        // Without a listed key in the request, errors stay as they are.
        let mut errors = quoted();
        redaction.scrub_errors(&mut errors, ["purpose"]);
        assert_eq!(errors, quoted());
        let mut errors = quoted();
        Redaction::default().scrub_errors(&mut errors, ["ssn"]);
        assert_eq!(errors, quoted());
    }

    #[test]
    fn listed_context_keys_and_headers_are_replaced() {
        let mut cedar = CedarRequest {
            principal: String::new(),
            action: String::new(),
            resource: String::new(),
            context: serde_json::json!({"ssn": "123", "purpose": "fix"}),
            entities: serde_json::json!([
                {"uid": {"type": "Mandate::HttpFields", "id": "headers"}, "attrs": {}, "parents": [],
                 "tags": {"x-secret": "s", "authorization": "Bearer t", "x-env": "prod"}},
                {"uid": {"type": "Mandate::HttpFields", "id": "query"}, "attrs": {}, "parents": [],
                 "tags": {"x-secret": "kept: not a header", "access_token": "qt",
                          "Session": "sess-9", "page": "2"}}
            ]),
        };
        Redaction::new(["ssn".to_owned()], ["X-Secret".to_owned()])
            .with_query_params(["session".to_owned()])
            .apply(&mut cedar);
        let text = cedar.context.to_string() + &cedar.entities.to_string();
        assert!(
            !text.contains("123") && !text.contains("Bearer t") && !text.contains("\"s\""),
            "{text}"
        );
        // Query parameters: the always-listed credential and the
        // configured one (matched without regard to case).
        assert!(
            !text.contains("\"qt\"") && !text.contains("sess-9"),
            "{text}"
        );
        assert!(text.contains("\"2\""), "{text}");
        assert!(
            text.contains("prod") && text.contains("fix") && text.contains("kept"),
            "{text}"
        );
    }
}
