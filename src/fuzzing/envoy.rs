//! Envoy `CheckRequest`s from arbitrary bytes (the protobuf Envoy sends),
//! through the mapping (`map_check`: subject, `x-forwarded-client-cert`,
//! token, path safety, route map, headers) and the `context.http` record
//! policies see. Never a panic; a mapped request must be one the path
//! rules allow and must not leak a credential to policies.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use envoy_types::pb::envoy::service::auth::v3::CheckRequest;
use prost::Message;
use spiffe::SpiffeId;

use super::{Outcome, ensure};
use crate::envoy::{EnvoySettings, Mapped, RouteMap, http_context, map_check};

/// Headers policies see in the harness: a plain one, and ones a careless
/// configuration might name.
const CONTEXT_HEADERS: [&str; 2] = ["x-env", "x-forwarded-client-cert"];

/// The mapping over one route map.
#[derive(Debug)]
pub struct EnvoyHarness {
    routes: RouteMap,
}

impl EnvoyHarness {
    /// A harness over this route map (TOML).
    pub fn new(route_map: &str) -> Result<Self, String> {
        let routes = RouteMap::parse(route_map).map_err(|problems| problems.join("; "))?;
        Ok(Self { routes })
    }

    /// The first byte picks the settings (one bit each), the rest is a
    /// `CheckRequest` in protobuf.
    pub fn check(&self, data: &[u8]) -> Result<Outcome, String> {
        let (flags, message) = data.split_first().unwrap_or((&0, &[]));
        let settings = settings(*flags);
        let Ok(request) = CheckRequest::decode(message) else {
            return Outcome::refused("not a CheckRequest");
        };
        match map_check(&request, &settings, &self.routes) {
            Ok(mapped) => {
                mapped_is_safe(&request, &settings, &mapped)?;
                let target = &mapped.target;
                // Building the Cedar record may refuse (a deny), never panic.
                if let Err(error) = http_context(&mapped.http, &target.route, &target.params) {
                    return Outcome::refused(error);
                }
                Ok(Outcome::Accepted)
            }
            Err(refusal) => Outcome::refused(refusal.error),
        }
    }

    /// Encodes a request with its settings byte, for seeds.
    pub fn encode(flags: u8, request: &CheckRequest) -> Vec<u8> {
        let mut bytes = vec![flags];
        bytes.extend(request.encode_to_vec());
        bytes
    }
}

/// Bit 0: trust XFCC; 1: accept bearer; 2: require a token; 3: require
/// the certificate; 4: show the context headers to policies.
fn settings(flags: u8) -> EnvoySettings {
    let bit = |n: u8| flags & (1 << n) != 0;
    EnvoySettings {
        trust_xfcc: bit(0),
        accept_bearer: bit(1),
        require_token: bit(2),
        require_certificate: bit(3),
        context_headers: if bit(4) {
            CONTEXT_HEADERS.iter().map(|h| (*h).to_owned()).collect()
        } else {
            Vec::new()
        },
        ..EnvoySettings::default()
    }
}

/// The invariants of a request the mapping let through.
fn mapped_is_safe(
    request: &CheckRequest,
    settings: &EnvoySettings,
    mapped: &Mapped,
) -> Result<(), String> {
    let principal = request
        .attributes
        .as_ref()
        .and_then(|a| a.source.as_ref())
        .map(|s| s.principal.as_str())
        .unwrap_or_default();
    let subject = mapped.subject.to_string();
    ensure(!mapped.subject.path().is_empty(), || {
        format!("subject `{subject}` has no path")
    })?;
    // Envoy's own view of the peer is never overridden by a header (the
    // trust domain is compared in its canonical lowercase).
    let vouched = SpiffeId::new(principal).map(|id| id.to_string());
    ensure(
        principal.is_empty() || vouched.as_deref() == Ok(subject.as_str()),
        || format!("subject `{subject}` is not the principal `{principal}`"),
    )?;
    ensure(!principal.is_empty() || settings.trust_xfcc, || {
        format!("subject `{subject}` came from an untrusted header")
    })?;
    ensure(mapped.token.is_some() || !settings.require_token, || {
        "mapped without the required token".to_owned()
    })?;
    ensure(
        mapped.certificate_pem.is_some() || !settings.require_certificate,
        || "mapped without the required certificate".to_owned(),
    )?;
    if let Some(thumbprint) = &mapped.thumbprint {
        ensure(
            thumbprint.len() == 43
                && thumbprint
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            || format!("thumbprint `{thumbprint}` is not a base64url SHA-256"),
        )?;
        // It must be the `Hash` Envoy sent, read as hex and nothing else.
        let hex: String = URL_SAFE_NO_PAD
            .decode(thumbprint)
            .unwrap_or_default()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let sent = request
            .attributes
            .as_ref()
            .and_then(|a| a.request.as_ref())
            .and_then(|r| r.http.as_ref())
            .and_then(|http| crate::envoy::header(http, "x-forwarded-client-cert"))
            .unwrap_or_default()
            .to_ascii_lowercase();
        ensure(hex.len() == 64 && sent.contains(&hex), || {
            format!("thumbprint `{thumbprint}` is not the `Hash` of `{sent}`")
        })?;
    }
    ensure(
        mapped.http.path.starts_with('/') && !mapped.http.path.contains('?'),
        || format!("path `{}` kept its query or lost its `/`", mapped.http.path),
    )?;
    // A capture names part of a resource id: it must be one real segment.
    for (name, value) in &mapped.target.params {
        ensure(
            !value.is_empty()
                && value != "."
                && value != ".."
                && !value.contains(['/', '\\', '\0']),
            || format!("capture `{name}` = `{value}` is not one safe segment"),
        )?;
    }
    let credentials = settings.credential_headers();
    for (name, _) in &mapped.http.headers {
        ensure(
            !credentials.contains(name) && name != "authorization",
            || format!("credential header `{name}` shown to policies"),
        )?;
    }
    Ok(())
}
