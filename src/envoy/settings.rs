//! How the Envoy adapter reads a `CheckRequest`: where the task token is,
//! what it needs to know about the subject, which headers policies see.

use std::path::PathBuf;

/// The headers Mandate adds to an allowed request.
pub mod headers {
    /// The header an allowed request gets with its decision id.
    pub const DECISION_ID_HEADER: &str = "x-mandate-decision-id";
    /// The header an allowed request gets with its task id, when asked for.
    pub const TASK_HEADER: &str = "x-mandate-task";
}

/// The `[envoy]` settings, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvoySettings {
    /// The route map file; without one every `Check` is `no-route`.
    pub route_map: Option<PathBuf>,
    /// Lowercase name of the header carrying the task token.
    pub token_header: String,
    /// Also take the token from `authorization: Bearer <token>`.
    pub accept_bearer: bool,
    /// A request without a token is refused (401) before any policy.
    pub require_token: bool,
    /// A request whose subject certificate Envoy did not forward is
    /// refused (401): set `include_peer_certificate: true` in Envoy.
    pub require_certificate: bool,
    /// Read the subject from `x-forwarded-client-cert` (its last element)
    /// when Envoy is configured to set it; never trust a client's copy.
    pub trust_xfcc: bool,
    /// Add `x-mandate-task` to allowed requests.
    pub task_header: bool,
    /// Lowercase names of the request headers policies see in
    /// `context.http.headers`. The token header and `authorization` are
    /// never among them.
    pub context_headers: Vec<String>,
}

/// The defaults of `[envoy]` (`config::EnvoyConfig` starts from these).
impl Default for EnvoySettings {
    fn default() -> Self {
        Self {
            route_map: None,
            token_header: "x-mandate-token".to_owned(),
            accept_bearer: false,
            require_token: true,
            require_certificate: false,
            trust_xfcc: false,
            task_header: false,
            context_headers: Vec::new(),
        }
    }
}

impl EnvoySettings {
    /// Headers that carry credentials: never shown to policies or
    /// recorded, always removed before the request goes upstream.
    pub fn credential_headers(&self) -> Vec<String> {
        let mut headers = vec![self.token_header.clone()];
        if self.accept_bearer {
            headers.push("authorization".to_owned());
        }
        headers
    }

    /// Problems with the settings, each naming its `envoy.` key.
    pub fn validate(&self) -> Vec<crate::config::ConfigError> {
        use crate::config::ConfigError;
        let mut problems = Vec::new();
        let is_token =
            |h: &str| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic() && b != b':');
        if !is_token(&self.token_header) {
            problems.push(ConfigError::bad(
                "envoy.token_header",
                &self.token_header,
                "is not a header name",
            ));
        }
        for header in &self.context_headers {
            if !is_token(header) {
                problems.push(ConfigError::bad(
                    "envoy.context_headers",
                    header,
                    "is not a header name",
                ));
            } else if self.credential_headers().contains(header) || header == "authorization" {
                problems.push(ConfigError::bad(
                    "envoy.context_headers",
                    header,
                    "carries credentials and is never shown to policies",
                ));
            }
        }
        problems
    }
}
