//! From Envoy's `CheckRequest` to the question Mandate decides: who the
//! subject is, which token it presented, and which action on which
//! resource the route map makes of the request. Pure and total: every
//! input maps to a question or to a [`Refusal`], never to a panic.

use envoy_types::pb::envoy::service::auth::v3::CheckRequest;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::HttpRequest;
use percent_encoding::percent_decode_str;
use spiffe::SpiffeId;

use super::routes::{RouteMap, RouteMatch};
use super::{EnvoySettings, xfcc};
use crate::decision::Reason;

/// A request answered before any policy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Why; its kind says how it is answered.
    pub reason: Reason,
    /// What went wrong, for logs.
    pub error: String,
}

impl Refusal {
    fn new(reason: Reason, error: impl Into<String>) -> Self {
        Self {
            reason,
            error: error.into(),
        }
    }
}

/// The HTTP request as policies see it in `context.http`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpAttributes {
    /// The method, as sent.
    pub method: String,
    /// The path without the query.
    pub path: String,
    /// The host, lowercase, without the port.
    pub host: String,
    /// The selected headers.
    pub headers: Vec<(String, String)>,
    /// The query parameters, decoded; repeated names joined with `,`.
    pub query: Vec<(String, String)>,
}

/// The question a `CheckRequest` asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapped {
    /// The downstream workload.
    pub subject: SpiffeId,
    /// Its certificate chain (PEM), when Envoy forwarded it.
    pub certificate_pem: Option<String>,
    /// The `x5t#S256` of its certificate when only a hash was forwarded
    /// (`x-forwarded-client-cert`'s `Hash`), for the token's `cnf`.
    pub thumbprint: Option<String>,
    /// The task token, when one was presented.
    pub token: Option<String>,
    /// What the route map makes of the request.
    pub target: RouteMatch,
    /// Request attributes for the policies.
    pub http: HttpAttributes,
}

/// Maps a `CheckRequest`.
pub fn map_check(
    request: &CheckRequest,
    settings: &EnvoySettings,
    routes: &RouteMap,
) -> Result<Mapped, Refusal> {
    let attributes = request.attributes.as_ref();
    let http = attributes
        .and_then(|a| a.request.as_ref())
        .and_then(|r| r.http.as_ref())
        .ok_or_else(|| {
            Refusal::new(
                Reason::InvalidCheckRequest,
                "the check request carries no HTTP request",
            )
        })?;
    let source = attributes.and_then(|a| a.source.as_ref());
    let principal = source.map(|s| s.principal.as_str()).unwrap_or_default();
    let certificate = source.map(|s| s.certificate.as_str()).unwrap_or_default();

    let (subject, certificate_pem, thumbprint) = subject(http, settings, principal, certificate)?;
    let token = token(http, settings);
    if token.is_none() && settings.require_token {
        return Err(Refusal::new(
            Reason::TokenRequired,
            format!(
                "no task token in `{}`{}",
                settings.token_header,
                if settings.accept_bearer {
                    " or `authorization: Bearer`"
                } else {
                    ""
                }
            ),
        ));
    }

    let (raw_path, raw_query) = http.path.split_once('?').unwrap_or((&http.path, ""));
    let segments = decode_path(raw_path)?;
    let host = host_without_port(&http.host);
    let target = routes.find(&host, &http.method, &segments).ok_or_else(|| {
        Refusal::new(
            Reason::NoRoute,
            format!(
                "no route for `{} {}{raw_path}`",
                http.method,
                if host.is_empty() { "" } else { host.as_str() }
            ),
        )
    })?;
    let headers = settings
        .context_headers
        .iter()
        .filter_map(|name| header(http, name).map(|v| (name.clone(), v)))
        .collect();
    Ok(Mapped {
        subject,
        certificate_pem,
        thumbprint,
        token,
        target,
        http: HttpAttributes {
            method: http.method.clone(),
            path: raw_path.to_owned(),
            host,
            headers,
            query: decode_query(raw_query),
        },
    })
}

type SubjectParts = (SpiffeId, Option<String>, Option<String>);

/// The subject: Envoy's `source.principal`, or the trusted
/// `x-forwarded-client-cert`; they must agree when both are there.
fn subject(
    http: &HttpRequest,
    settings: &EnvoySettings,
    principal: &str,
    certificate: &str,
) -> Result<SubjectParts, Refusal> {
    let unauthenticated = |reason, error: String| Refusal::new(reason, error);
    let forwarded = if settings.trust_xfcc {
        match header(http, "x-forwarded-client-cert") {
            Some(value) => Some(xfcc::parse(&value).ok_or_else(|| {
                unauthenticated(
                    Reason::NoSubject,
                    "`x-forwarded-client-cert` cannot be read".to_owned(),
                )
            })?),
            None => None,
        }
    } else {
        None
    };
    let forwarded = forwarded.unwrap_or_default();
    let id = match (principal, forwarded.uri.as_deref()) {
        ("", None) => {
            return Err(unauthenticated(
                Reason::NoSubject,
                "Envoy sent no downstream principal: terminate the agents' mTLS in Envoy"
                    .to_owned(),
            ));
        }
        ("", Some(uri)) => uri,
        (principal, Some(uri)) if principal != uri => {
            return Err(unauthenticated(
                Reason::NoSubject,
                format!(
                    "`source.principal` `{principal}` and `x-forwarded-client-cert` `{uri}` disagree"
                ),
            ));
        }
        (principal, _) => principal,
    };
    let subject = SpiffeId::new(id)
        .ok()
        .filter(|id| !id.path().is_empty())
        .ok_or_else(|| {
            unauthenticated(
                Reason::NoSubject,
                format!("downstream principal `{id}` is not a workload's SPIFFE ID"),
            )
        })?;
    let encoded = match (certificate, forwarded.cert.as_deref()) {
        ("", None) => None,
        ("", Some(cert)) => Some(cert),
        (certificate, _) => Some(certificate),
    };
    let certificate_pem = match encoded {
        Some(encoded) => Some(
            percent_decode_str(encoded)
                .decode_utf8()
                .map(|pem| pem.into_owned())
                .map_err(|_| {
                    unauthenticated(
                        Reason::SubjectCertificateInvalid,
                        "the forwarded certificate is not URL-encoded PEM".to_owned(),
                    )
                })?,
        ),
        None => None,
    };
    let thumbprint = match (&certificate_pem, forwarded.hash.as_deref()) {
        (None, Some(hash)) => Some(hex_sha256_to_x5t(hash).ok_or_else(|| {
            unauthenticated(
                Reason::SubjectCertificateInvalid,
                "`x-forwarded-client-cert` `Hash` is not a hex SHA-256".to_owned(),
            )
        })?),
        _ => None,
    };
    if certificate_pem.is_none() && settings.require_certificate {
        return Err(unauthenticated(
            Reason::SubjectCertificateRequired,
            "Envoy did not forward the downstream certificate: set `include_peer_certificate: true`".to_owned(),
        ));
    }
    Ok((subject, certificate_pem, thumbprint))
}

/// The token from the configured header, else from `authorization: Bearer`
/// when accepted.
fn token(http: &HttpRequest, settings: &EnvoySettings) -> Option<String> {
    let direct = header(http, &settings.token_header).filter(|t| !t.is_empty());
    if direct.is_some() || !settings.accept_bearer {
        return direct;
    }
    let value = header(http, "authorization")?;
    let (scheme, token) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty())
        .then(|| token.trim().to_owned())
}

/// A header by lowercase name, from `headers` or, when Envoy sends raw
/// headers, `header_map`.
pub fn header(http: &HttpRequest, name: &str) -> Option<String> {
    if let Some(value) = http.headers.get(name) {
        return Some(value.clone());
    }
    http.header_map.as_ref()?.headers.iter().find_map(|h| {
        if !h.key.eq_ignore_ascii_case(name) {
            return None;
        }
        if h.raw_value.is_empty() {
            Some(h.value.clone())
        } else {
            String::from_utf8(h.raw_value.clone()).ok()
        }
    })
}

fn host_without_port(host: &str) -> String {
    let host = host.to_ascii_lowercase();
    if let Some(rest) = host.strip_prefix('[') {
        // `[::1]:8080`
        return rest
            .split_once(']')
            .map_or(host.clone(), |(ip, _)| format!("[{ip}]"));
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            name.to_owned()
        }
        _ => host,
    }
}

/// The path's segments, percent-decoded. A path whose meaning upstream
/// could differ from ours is refused rather than guessed at: dot
/// segments, empty segments, and encoded separators or NULs (Envoy's
/// `normalize_path` and `merge_slashes` remove most before they get
/// here).
fn decode_path(path: &str) -> Result<Vec<String>, Refusal> {
    let invalid = |error: String| Refusal::new(Reason::InvalidPath, error);
    let rest = path
        .strip_prefix('/')
        .ok_or_else(|| invalid(format!("path `{path}` does not start with `/`")))?;
    let parts: Vec<&str> = rest.split('/').collect();
    let mut segments = Vec::with_capacity(parts.len());
    for (i, part) in parts.iter().enumerate() {
        let decoded = percent_decode_str(part)
            .decode_utf8()
            .map_err(|_| invalid(format!("path `{path}` is not UTF-8 once decoded")))?;
        let last = i + 1 == parts.len();
        if (decoded.is_empty() && !last)
            || decoded == "."
            || decoded == ".."
            || decoded.contains(['/', '\\', '\0'])
        {
            return Err(invalid(format!(
                "path `{path}` has an empty, dot or encoded-separator segment"
            )));
        }
        segments.push(decoded.into_owned());
    }
    Ok(segments)
}

fn decode_query(query: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    let mut out: Vec<(String, String)> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (name, value) = (decode(name), decode(value));
        match out.iter_mut().find(|(n, _)| *n == name) {
            Some((_, existing)) => {
                existing.push(',');
                existing.push_str(&value);
            }
            None => out.push((name, value)),
        }
    }
    out
}

/// `x5t#S256` (base64url SHA-256) from a hex SHA-256.
fn hex_sha256_to_x5t(hex: &str) -> Option<String> {
    use base64::Engine;
    // `from_str_radix` alone would take a sign: `+a` is not hex.
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let bytes = (0..32)
        .map(|i| {
            hex.get(i * 2..i * 2 + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()?;
    Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

#[cfg(test)]
mod tests;
