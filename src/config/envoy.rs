//! `[envoy]`: how Envoy's ext_authz `Check` reads a request (route map,
//! token header, forwarded certificate) and what it adds to an allowed one.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::ConfigErrors;
use super::reference::{Section, example, key};
use crate::envoy::EnvoySettings;

/// The `[envoy]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnvoyConfig {
    /// Route map file (TOML).
    pub route_map: Option<PathBuf>,
    /// The header carrying the task token.
    pub token_header: String,
    /// Also accept `authorization: Bearer <token>`.
    pub accept_bearer: bool,
    /// Refuse requests without a task token (401).
    pub require_token: bool,
    /// Refuse requests whose downstream certificate was not forwarded.
    pub require_certificate: bool,
    /// Read the subject from `x-forwarded-client-cert`.
    pub trust_xfcc: bool,
    /// Add `x-mandate-task` to allowed requests.
    pub task_header: bool,
    /// Request headers shown to policies in `context.http.headers`.
    pub context_headers: Vec<String>,
}

impl Default for EnvoyConfig {
    fn default() -> Self {
        let base = EnvoySettings::default();
        Self {
            route_map: base.route_map,
            token_header: base.token_header,
            accept_bearer: base.accept_bearer,
            require_token: base.require_token,
            require_certificate: base.require_certificate,
            trust_xfcc: base.trust_xfcc,
            task_header: base.task_header,
            context_headers: base.context_headers,
        }
    }
}

impl EnvoyConfig {
    /// The settings, header names lowercased.
    pub(super) fn validate(&self, errors: &mut ConfigErrors) -> EnvoySettings {
        let settings = EnvoySettings {
            route_map: self.route_map.clone(),
            token_header: self.token_header.to_ascii_lowercase(),
            accept_bearer: self.accept_bearer,
            require_token: self.require_token,
            require_certificate: self.require_certificate,
            trust_xfcc: self.trust_xfcc,
            task_header: self.task_header,
            context_headers: self
                .context_headers
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
        };
        if let Some(path) = &settings.route_map {
            errors.file("envoy.route_map", path);
        }
        for error in settings.validate() {
            errors.push(error);
        }
        settings
    }
}

pub(super) const SECTION: Section = Section {
    name: "envoy",
    doc: "Envoy's ext_authz Check (envoy.service.auth.v3.Authorization) on the gRPC\nport: see examples/envoy/ and docs/envoy.md.",
    optional: false,
    keys: &[
        example(
            "route_map",
            "Method and path to action and resource, reloaded when it changes; without\none every Check is denied no-route.",
            "\"./examples/envoy/routes.toml\"",
        ),
        key(
            "token_header",
            "The task token's header, removed before the request goes upstream.",
        ),
        key(
            "accept_bearer",
            "Also take `authorization: Bearer <token>` (then removed too).",
        ),
        key("require_token", "No token: 401 token-required."),
        key(
            "require_certificate",
            "No forwarded SVID (include_peer_certificate): 401.",
        ),
        key(
            "trust_xfcc",
            "Read the subject from x-forwarded-client-cert (only if Envoy sets it).",
        ),
        key("task_header", "Add x-mandate-task to allowed requests."),
        key(
            "context_headers",
            "Headers policies see in context.http.headers, e.g. [\"x-request-id\"].",
        ),
    ],
};
