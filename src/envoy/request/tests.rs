use envoy_types::pb::envoy::config::core::v3::{HeaderMap, HeaderValue};
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{Peer, Request};

use super::*;
use crate::decision::Reason;

const ROUTES: &str = r#"
[[route]]
name = "read repo"
path = "/repos/{owner}/{name}"
action = "read"
resource = "repo:{owner}/{name}"
"#;

fn check(principal: &str, path: &str, headers: &[(&str, &str)]) -> CheckRequest {
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(Peer {
                principal: principal.into(),
                ..Default::default()
            }),
            request: Some(Request {
                http: Some(HttpRequest {
                    method: "GET".into(),
                    host: "Tools.Acme.Internal:8443".into(),
                    path: path.into(),
                    headers: headers
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

fn map(request: &CheckRequest, settings: &EnvoySettings) -> Result<Mapped, Refusal> {
    map_check(request, settings, &RouteMap::parse(ROUTES).unwrap())
}

const AGENT: &str = "spiffe://acme.org/agents/patcher";

#[test]
fn maps_subject_token_route_and_attributes() {
    let settings = EnvoySettings {
        context_headers: vec!["x-env".into(), "x-absent".into()],
        ..EnvoySettings::default()
    };
    let request = check(
        AGENT,
        "/repos/acme/pay%20ments?ref=main&tag=a&tag=b&q=x+y",
        &[
            ("x-mandate-token", "tok"),
            ("x-env", "prod"),
            ("x-other", "no"),
        ],
    );
    let mapped = map(&request, &settings).unwrap();
    assert_eq!(mapped.subject.to_string(), AGENT);
    assert_eq!(mapped.token.as_deref(), Some("tok"));
    assert_eq!(mapped.target.resource_id, "repo:acme/pay ments");
    assert_eq!(mapped.http.host, "tools.acme.internal");
    assert_eq!(mapped.http.path, "/repos/acme/pay%20ments");
    assert_eq!(
        mapped.http.headers,
        [("x-env".to_owned(), "prod".to_owned())]
    );
    assert_eq!(
        mapped.http.query,
        [
            ("ref".to_owned(), "main".to_owned()),
            ("tag".to_owned(), "a,b".to_owned()),
            ("q".to_owned(), "x y".to_owned()),
        ]
    );
}

#[test]
fn refusals_say_how_to_answer() {
    let settings = EnvoySettings::default();
    let cases = [
        (
            check("", "/repos/a/b", &[("x-mandate-token", "t")]),
            Reason::NoSubject,
        ),
        (
            check(
                "spiffe://acme.org",
                "/repos/a/b",
                &[("x-mandate-token", "t")],
            ),
            Reason::NoSubject,
        ),
        (
            check(
                "https://acme.org/x",
                "/repos/a/b",
                &[("x-mandate-token", "t")],
            ),
            Reason::NoSubject,
        ),
        (check(AGENT, "/repos/a/b", &[]), Reason::TokenRequired),
        (
            check(AGENT, "/repos/a/b", &[("x-mandate-token", "")]),
            Reason::TokenRequired,
        ),
        (
            check(AGENT, "/nothing/here", &[("x-mandate-token", "t")]),
            Reason::NoRoute,
        ),
        (
            check(AGENT, "/repos/a/./b", &[("x-mandate-token", "t")]),
            Reason::InvalidPath,
        ),
        (
            check(AGENT, "/repos/a/%2e%2e", &[("x-mandate-token", "t")]),
            Reason::InvalidPath,
        ),
        (
            check(AGENT, "/repos/a%5Cb/c", &[("x-mandate-token", "t")]),
            Reason::InvalidPath,
        ),
        (
            check(AGENT, "/repos/a/%00", &[("x-mandate-token", "t")]),
            Reason::InvalidPath,
        ),
        (
            check(AGENT, "/repos/a/%ff", &[("x-mandate-token", "t")]),
            Reason::InvalidPath,
        ),
        (
            check(AGENT, "repos/a/b", &[("x-mandate-token", "t")]),
            Reason::InvalidPath,
        ),
        (CheckRequest::default(), Reason::InvalidCheckRequest),
    ];
    for (request, code) in cases {
        let refusal = map(&request, &settings).unwrap_err();
        assert_eq!(refusal.reason, code, "{request:?}");
    }
}

#[test]
fn bearer_only_when_accepted() {
    let request = check(AGENT, "/repos/a/b", &[("authorization", "Bearer abc")]);
    let refused = map(&request, &EnvoySettings::default()).unwrap_err();
    assert_eq!(refused.reason, Reason::TokenRequired);
    let settings = EnvoySettings {
        accept_bearer: true,
        ..EnvoySettings::default()
    };
    assert_eq!(
        map(&request, &settings).unwrap().token.as_deref(),
        Some("abc")
    );
    let basic = check(AGENT, "/repos/a/b", &[("authorization", "Basic abc")]);
    assert_eq!(
        map(&basic, &settings).unwrap_err().reason,
        Reason::TokenRequired
    );
}

#[test]
fn raw_header_maps_are_read() {
    let mut request = check(AGENT, "/repos/a/b", &[]);
    if let Some(http) = request
        .attributes
        .as_mut()
        .and_then(|a| a.request.as_mut())
        .and_then(|r| r.http.as_mut())
    {
        http.header_map = Some(HeaderMap {
            headers: vec![HeaderValue {
                key: "x-mandate-token".into(),
                value: String::new(),
                raw_value: b"raw-token".to_vec(),
            }],
        });
    }
    let mapped = map(&request, &EnvoySettings::default()).unwrap();
    assert_eq!(mapped.token.as_deref(), Some("raw-token"));
}

#[test]
fn xfcc_hash_becomes_a_thumbprint_when_trusted() {
    let hash = "ab".repeat(32);
    let xfcc = format!("By=spiffe://acme.org/envoy;Hash={hash};URI={AGENT}");
    let request = check(
        "",
        "/repos/a/b",
        &[("x-mandate-token", "t"), ("x-forwarded-client-cert", &xfcc)],
    );
    let settings = EnvoySettings {
        trust_xfcc: true,
        ..EnvoySettings::default()
    };
    let mapped = map(&request, &settings).unwrap();
    assert_eq!(mapped.subject.to_string(), AGENT);
    assert_eq!(
        mapped.thumbprint.as_deref(),
        Some("q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s")
    );
    // `+a` parses as a hex number but is not hex (see fuzz/regressions).
    for hash in ["xyz".to_owned(), "+a".repeat(32)] {
        let bad = format!("Hash={hash};URI={AGENT}");
        let request = check(
            "",
            "/repos/a/b",
            &[("x-mandate-token", "t"), ("x-forwarded-client-cert", &bad)],
        );
        assert_eq!(
            map(&request, &settings).unwrap_err().reason,
            Reason::SubjectCertificateInvalid
        );
    }
}

#[test]
fn hosts_lose_their_port() {
    assert_eq!(host_without_port("a.b:80"), "a.b");
    assert_eq!(host_without_port("A.B"), "a.b");
    assert_eq!(host_without_port("[::1]:8080"), "[::1]");
    assert_eq!(host_without_port("a.b:"), "a.b:");
}
