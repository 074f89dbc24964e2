//! Envoy's ext_authz `Check` through the real server over mTLS, asked with
//! an `envoy-types` client as Envoy would: the caller is the enforcement
//! point's SVID, the subject the downstream agent Envoy authenticated.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use common::party::{PATCHER, party_for, root_task, scope, token};
use common::{Leaf, Setup, TestCa, TestServer};
use envoy_types::pb::envoy::config::core::v3::HeaderValueOption;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest, CheckResponse};
use envoy_types::pb::google::protobuf::value::Kind;
use mandate::envoy::EnvoySettings;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use tonic::transport::Channel;

const REVIEWER: &str = "spiffe://mandate.local/agents/reviewer";
const HOST: &str = "tools.acme.internal";

fn example_routes() -> PathBuf {
    common::repo().join("examples/envoy/routes.toml")
}

async fn server_with(envoy: EnvoySettings, policies: Option<PathBuf>) -> TestServer {
    let mut setup = Setup {
        envoy,
        route_map: Some(example_routes()),
        ..Setup::default()
    };
    if let Some(policies) = policies {
        setup.policies = policies;
    }
    TestServer::start_with(setup).await
}

/// The enforcement point's client: Envoy's SVID, in `enforcement-points`.
async fn envoy(server: &TestServer) -> AuthorizationClient<Channel> {
    AuthorizationClient::new(server.channel("/workloads/envoy").await)
}

/// An agent SVID, a task for it with `actions` on the repos, and a token
/// bound to that SVID.
async fn agent_with_token(server: &TestServer, actions: &[&str]) -> (Leaf, String, String) {
    let leaf = server.ca.svid("/agents/patcher");
    let task = root_task(server, PATCHER, scope(actions, &["repos"], 1, 3600))
        .await
        .id;
    let token = token(&mut party_for(server, &leaf).await, &task).await;
    (leaf, task, token)
}

/// A request as Envoy sends it with `include_peer_certificate: true`.
fn request(
    principal: &str,
    certificate: Option<&Leaf>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> CheckRequest {
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(Peer {
                principal: principal.into(),
                certificate: certificate
                    .map(|leaf| utf8_percent_encode(&leaf.cert_pem, NON_ALPHANUMERIC).to_string())
                    .unwrap_or_default(),
                ..Default::default()
            }),
            request: Some(Request {
                http: Some(HttpRequest {
                    method: method.into(),
                    host: format!("{HOST}:8443"),
                    path: path.into(),
                    headers: headers
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect::<HashMap<_, _>>(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

async fn check(client: &mut AuthorizationClient<Channel>, request: CheckRequest) -> CheckResponse {
    client.check(request).await.unwrap().into_inner()
}

fn code(response: &CheckResponse) -> tonic::Code {
    tonic::Code::from(response.status.as_ref().unwrap().code)
}

/// A denied response's HTTP status and JSON body.
fn denial(response: &CheckResponse) -> (i32, serde_json::Value) {
    match &response.http_response {
        Some(HttpResponse::DeniedResponse(denied)) => (
            denied.status.as_ref().unwrap().code,
            serde_json::from_str(&denied.body).unwrap(),
        ),
        other => panic!("not a denial: {other:?}"),
    }
}

fn reasons(body: &serde_json::Value) -> Vec<String> {
    body["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect()
}

fn header<'a>(headers: &'a [HeaderValueOption], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .filter_map(|h| h.header.as_ref())
        .find(|h| h.key == name)
        .map(|h| h.value.as_str())
}

fn metadata(response: &CheckResponse, key: &str) -> Option<String> {
    match &response.dynamic_metadata.as_ref()?.fields.get(key)?.kind {
        Some(Kind::StringValue(s)) => Some(s.clone()),
        _ => None,
    }
}

#[tokio::test]
async fn allowed_request_gets_decision_headers_and_loses_the_token() {
    let envoy_settings = EnvoySettings {
        task_header: true,
        ..EnvoySettings::default()
    };
    let server = server_with(envoy_settings, None).await;
    let (leaf, task, token) = agent_with_token(&server, &["read"]).await;
    let mut envoy = envoy(&server).await;

    let response = check(
        &mut envoy,
        request(
            PATCHER,
            Some(&leaf),
            "GET",
            "/repos/acme/payments?ref=main",
            &[("x-mandate-token", &token), ("x-mandate-task", "forged")],
        ),
    )
    .await;
    assert_eq!(code(&response), tonic::Code::Ok, "{response:?}");
    let Some(HttpResponse::OkResponse(ok)) = &response.http_response else {
        panic!("not an OK response: {response:?}");
    };
    let decision_id = header(&ok.headers, "x-mandate-decision-id").unwrap();
    assert_eq!(decision_id.len(), 36, "a UUID: {decision_id}");
    assert_eq!(header(&ok.headers, "x-mandate-task"), Some(task.as_str()));
    assert!(ok.headers_to_remove.contains(&"x-mandate-token".to_owned()));
    assert_eq!(
        metadata(&response, "decision_id").as_deref(),
        Some(decision_id)
    );
    assert_eq!(metadata(&response, "task_id"), Some(task));
    assert_eq!(metadata(&response, "decision").as_deref(), Some("allow"));
}

#[tokio::test]
async fn denied_by_policy_answers_403_with_the_reasons() {
    let server = server_with(EnvoySettings::default(), None).await;
    let (leaf, _, token) = agent_with_token(&server, &["read"]).await;
    let mut envoy = envoy(&server).await;
    // The task allows reading the repos, not writing them.
    let response = check(
        &mut envoy,
        request(
            PATCHER,
            Some(&leaf),
            "PUT",
            "/repos/acme/payments/contents/src/lib.rs",
            &[("x-mandate-token", &token)],
        ),
    )
    .await;
    assert_eq!(code(&response), tonic::Code::PermissionDenied);
    let (status, body) = denial(&response);
    assert_eq!(status, 403);
    assert_eq!(body["decision"], "deny");
    assert!(
        reasons(&body).contains(&"forbidden-by-policy".to_owned()),
        "{body}"
    );
    assert_eq!(
        body["decision_id"].as_str(),
        metadata(&response, "decision_id").as_deref()
    );
}

#[tokio::test]
async fn missing_token_is_401() {
    let server = server_with(EnvoySettings::default(), None).await;
    let leaf = server.ca.svid("/agents/patcher");
    let mut envoy = envoy(&server).await;
    let response = check(
        &mut envoy,
        request(PATCHER, Some(&leaf), "GET", "/repos/acme/payments", &[]),
    )
    .await;
    assert_eq!(code(&response), tonic::Code::Unauthenticated);
    let (status, body) = denial(&response);
    assert_eq!(status, 401);
    assert_eq!(reasons(&body), ["token-required"]);
}

#[tokio::test]
async fn a_stolen_token_is_401() {
    let server = server_with(EnvoySettings::default(), None).await;
    let (_, _, token) = agent_with_token(&server, &["read"]).await;
    let mut envoy = envoy(&server).await;
    // Another agent presents the patcher's token.
    let reviewer = server.ca.svid("/agents/reviewer");
    let response = check(
        &mut envoy,
        request(
            REVIEWER,
            Some(&reviewer),
            "GET",
            "/repos/acme/payments",
            &[("x-mandate-token", &token)],
        ),
    )
    .await;
    let (status, body) = denial(&response);
    assert_eq!(
        (status, reasons(&body)),
        (401, vec!["token-subject-mismatch".to_owned()])
    );
    // Same SPIFFE ID, another certificate: the token is bound to the one
    // it was issued for.
    let other_patcher = server.ca.svid("/agents/patcher");
    let response = check(
        &mut envoy,
        request(
            PATCHER,
            Some(&other_patcher),
            "GET",
            "/repos/acme/payments",
            &[("x-mandate-token", &token)],
        ),
    )
    .await;
    assert_eq!(code(&response), tonic::Code::Unauthenticated);
    let (status, body) = denial(&response);
    assert_eq!(
        (status, reasons(&body)),
        (401, vec!["token-not-bound".to_owned()])
    );
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_401() {
    let server = server_with(EnvoySettings::default(), None).await;
    let (_, _, token) = agent_with_token(&server, &["read"]).await;
    let mut envoy = envoy(&server).await;
    let impostor_ca = TestCa::new(common::TRUST_DOMAIN);
    let impostor = impostor_ca.svid("/agents/patcher");
    let response = check(
        &mut envoy,
        request(
            PATCHER,
            Some(&impostor),
            "GET",
            "/repos/acme/payments",
            &[("x-mandate-token", &token)],
        ),
    )
    .await;
    let (status, body) = denial(&response);
    assert_eq!(status, 401);
    assert_eq!(reasons(&body), ["subject-certificate-invalid"]);
}

#[tokio::test]
async fn only_enforcement_points_may_check() {
    let server = server_with(EnvoySettings::default(), None).await;
    let (leaf, _, token) = agent_with_token(&server, &["read"]).await;
    // The agent itself asks, as if it were Envoy.
    let mut agent = AuthorizationClient::new(server.channel_for(&leaf).await);
    let response = check(
        &mut agent,
        request(
            PATCHER,
            Some(&leaf),
            "GET",
            "/repos/acme/payments",
            &[("x-mandate-token", &token)],
        ),
    )
    .await;
    assert_eq!(code(&response), tonic::Code::PermissionDenied);
    let (status, body) = denial(&response);
    assert_eq!(status, 403);
    assert_eq!(reasons(&body)[0], "not-an-enforcement-point");
}

#[tokio::test]
async fn unmatched_routes_and_unsafe_paths_are_refused() {
    let server = server_with(EnvoySettings::default(), None).await;
    let (leaf, _, token) = agent_with_token(&server, &["read"]).await;
    let mut envoy = envoy(&server).await;
    let headers = [("x-mandate-token", token.as_str())];
    let response = check(
        &mut envoy,
        request(PATCHER, Some(&leaf), "GET", "/admin/users", &headers),
    )
    .await;
    let (status, body) = denial(&response);
    assert_eq!((status, reasons(&body)), (403, vec!["no-route".to_owned()]));
    // The right path with a method no rule maps is unmatched too.
    let response = check(
        &mut envoy,
        request(
            PATCHER,
            Some(&leaf),
            "OPTIONS",
            "/repos/acme/payments",
            &headers,
        ),
    )
    .await;
    assert_eq!(reasons(&denial(&response).1), ["no-route"]);
    for path in [
        "/repos/acme/../payments",
        "/repos/acme/pay%2Fments",
        "/repos//acme/payments",
    ] {
        let response = check(
            &mut envoy,
            request(PATCHER, Some(&leaf), "GET", path, &headers),
        )
        .await;
        assert_eq!(code(&response), tonic::Code::InvalidArgument, "{path}");
        let (status, body) = denial(&response);
        assert_eq!(
            (status, reasons(&body)),
            (400, vec!["invalid-path".to_owned()]),
            "{path}"
        );
    }
}

#[tokio::test]
async fn grpc_paths_are_routed() {
    let server = server_with(EnvoySettings::default(), None).await;
    let (leaf, _, token) = agent_with_token(&server, &["invoke"]).await;
    let mut envoy = envoy(&server).await;
    let response = check(
        &mut envoy,
        request(
            PATCHER,
            Some(&leaf),
            "POST",
            "/acme.tools.v1.CodeSearch/Search",
            &[
                ("x-mandate-token", &token),
                ("content-type", "application/grpc"),
            ],
        ),
    )
    .await;
    assert_eq!(code(&response), tonic::Code::Ok, "{response:?}");
}

#[tokio::test]
async fn needs_approval_names_the_approval() {
    let server = server_with(EnvoySettings::default(), None).await;
    let (leaf, _, token) = agent_with_token(&server, &["read", "delete"]).await;
    let mut envoy = envoy(&server).await;
    let response = check(
        &mut envoy,
        request(
            PATCHER,
            Some(&leaf),
            "DELETE",
            "/repos/acme/payments",
            &[("x-mandate-token", &token)],
        ),
    )
    .await;
    assert_eq!(code(&response), tonic::Code::PermissionDenied);
    let (status, body) = denial(&response);
    assert_eq!(status, 403);
    assert_eq!(body["decision"], "needs_approval");
    let approval_id = body["approval_id"].as_str().unwrap();
    assert!(!approval_id.is_empty());
    let pending = server.approvals.get(approval_id);
    assert!(pending.is_some(), "the approval the body names exists");
}

#[tokio::test]
async fn bearer_tokens_are_taken_and_removed_when_configured() {
    let envoy_settings = EnvoySettings {
        accept_bearer: true,
        ..EnvoySettings::default()
    };
    let server = server_with(envoy_settings, None).await;
    let (leaf, _, token) = agent_with_token(&server, &["read"]).await;
    let mut envoy = envoy(&server).await;
    let bearer = format!("Bearer {token}");
    let response = check(
        &mut envoy,
        request(
            PATCHER,
            Some(&leaf),
            "GET",
            "/repos/acme/payments",
            &[("authorization", &bearer)],
        ),
    )
    .await;
    let Some(HttpResponse::OkResponse(ok)) = &response.http_response else {
        panic!("not an OK response: {response:?}");
    };
    assert!(ok.headers_to_remove.contains(&"authorization".to_owned()));
    assert!(ok.headers_to_remove.contains(&"x-mandate-token".to_owned()));
}

#[tokio::test]
async fn a_required_certificate_must_be_forwarded() {
    let envoy_settings = EnvoySettings {
        require_certificate: true,
        ..EnvoySettings::default()
    };
    let server = server_with(envoy_settings, None).await;
    let (_, _, token) = agent_with_token(&server, &["read"]).await;
    let mut envoy = envoy(&server).await;
    let response = check(
        &mut envoy,
        request(
            PATCHER,
            None,
            "GET",
            "/repos/acme/payments",
            &[("x-mandate-token", &token)],
        ),
    )
    .await;
    let (status, body) = denial(&response);
    assert_eq!(
        (status, reasons(&body)),
        (401, vec!["subject-certificate-required".to_owned()])
    );
}

#[tokio::test]
async fn forwarded_client_cert_is_read_only_when_trusted() {
    let server = server_with(EnvoySettings::default(), None).await;
    let (leaf, _, token) = agent_with_token(&server, &["read"]).await;
    let xfcc = format!(
        "By=spiffe://mandate.local/workloads/envoy;URI={PATCHER};Cert=\"{}\"",
        utf8_percent_encode(&leaf.cert_pem, NON_ALPHANUMERIC)
    );
    let headers = [
        ("x-mandate-token", token.as_str()),
        ("x-forwarded-client-cert", &xfcc),
    ];
    // Not trusted: a client's header is no identity.
    let mut envoy_client = envoy(&server).await;
    let response = check(
        &mut envoy_client,
        request("", None, "GET", "/repos/acme/payments", &headers),
    )
    .await;
    assert_eq!(reasons(&denial(&response).1), ["no-subject"]);

    let trusting = server_with(
        EnvoySettings {
            trust_xfcc: true,
            ..EnvoySettings::default()
        },
        None,
    )
    .await;
    let (leaf, _, token) = agent_with_token(&trusting, &["read"]).await;
    let xfcc = format!(
        "By=spiffe://mandate.local/workloads/envoy;URI={PATCHER};Cert=\"{}\"",
        utf8_percent_encode(&leaf.cert_pem, NON_ALPHANUMERIC)
    );
    let mut envoy_client = envoy(&trusting).await;
    let response = check(
        &mut envoy_client,
        request(
            "",
            None,
            "GET",
            "/repos/acme/payments",
            &[
                ("x-mandate-token", &token),
                ("x-forwarded-client-cert", &xfcc),
            ],
        ),
    )
    .await;
    assert_eq!(code(&response), tonic::Code::Ok, "{response:?}");
    // A principal that disagrees with the header is refused.
    let response = check(
        &mut envoy_client,
        request(
            REVIEWER,
            None,
            "GET",
            "/repos/acme/payments",
            &[
                ("x-mandate-token", &token),
                ("x-forwarded-client-cert", &xfcc),
            ],
        ),
    )
    .await;
    assert_eq!(reasons(&denial(&response).1), ["no-subject"]);
}

#[tokio::test]
async fn policies_see_the_http_request() {
    let policies = common::policies_with(&[(
        "no-prod-writes.cedar",
        r#"@id("no-reads-marked-prod")
forbid (principal, action, resource)
when {
  context has http &&
  context.http.headers.hasTag("x-env") &&
  context.http.headers.getTag("x-env") == "prod" &&
  context.http.params.hasTag("owner") &&
  context.http.params.getTag("owner") == "acme" &&
  context.http.query.hasTag("ref") &&
  context.http.route == "read a repository"
};
"#,
    )]);
    let envoy_settings = EnvoySettings {
        context_headers: vec!["x-env".into()],
        ..EnvoySettings::default()
    };
    let server = server_with(envoy_settings, Some(policies.path().to_owned())).await;
    let (leaf, _, token) = agent_with_token(&server, &["read"]).await;
    let mut envoy = envoy(&server).await;
    let ask = |env: &'static str| {
        request(
            PATCHER,
            Some(&leaf),
            "GET",
            "/repos/acme/payments?ref=main",
            &[("x-mandate-token", token.as_str()), ("x-env", env)],
        )
    };
    let response = check(&mut envoy, ask("prod")).await;
    let (_, body) = denial(&response);
    assert!(
        reasons(&body).contains(&"forbidden-by-policy".to_owned()),
        "{body}"
    );
    assert_eq!(
        metadata(&response, "decision").as_deref(),
        Some("deny"),
        "{response:?}"
    );
    let response = check(&mut envoy, ask("staging")).await;
    assert_eq!(code(&response), tonic::Code::Ok, "{response:?}");
}

#[tokio::test]
async fn a_route_map_change_is_taken_on_reload_and_a_broken_one_refused() {
    let dir = tempfile::tempdir().unwrap();
    let routes = dir.path().join("routes.toml");
    std::fs::write(
        &routes,
        "[[route]]\npath = \"/handbook\"\naction = \"read\"\nresource = \"handbook\"\n",
    )
    .unwrap();
    let server = TestServer::start_with(Setup {
        envoy: EnvoySettings {
            require_token: false,
            ..EnvoySettings::default()
        },
        route_map: Some(routes.clone()),
        ..Setup::default()
    })
    .await;
    let leaf = server.ca.svid("/workloads/frontend");
    let mut envoy = envoy(&server).await;
    let ask = |path: &'static str| {
        request(
            "spiffe://mandate.local/workloads/frontend",
            Some(&leaf),
            "GET",
            path,
            &[],
        )
    };
    assert_eq!(
        code(&check(&mut envoy, ask("/handbook")).await),
        tonic::Code::Ok
    );
    assert_eq!(
        reasons(&denial(&check(&mut envoy, ask("/manual")).await).1),
        ["no-route"]
    );

    std::fs::write(
        &routes,
        "[[route]]\npath = \"/manual\"\naction = \"read\"\nresource = \"handbook\"\n",
    )
    .unwrap();
    assert_eq!(server.server.reload_routes().await, Ok(true));
    assert_eq!(
        code(&check(&mut envoy, ask("/manual")).await),
        tonic::Code::Ok
    );
    assert_eq!(
        reasons(&denial(&check(&mut envoy, ask("/handbook")).await).1),
        ["no-route"]
    );

    std::fs::write(
        &routes,
        "[[route]]\nname = \"typo\"\npath = \"/manual\"\naction = \"raed\"\nresource = \"handbook\"\n",
    )
    .unwrap();
    let problems = server.server.reload_routes().await.unwrap_err();
    assert!(
        problems[0].contains("route `typo`: action `raed` is not declared"),
        "{problems:?}"
    );
    // The previous map stays in use.
    assert_eq!(
        code(&check(&mut envoy, ask("/manual")).await),
        tonic::Code::Ok
    );
}

#[tokio::test]
async fn an_enforcement_point_taken_out_of_its_group_is_refused_at_once() {
    let server = server_with(EnvoySettings::default(), None).await;
    let (leaf, _, token) = agent_with_token(&server, &["read"]).await;
    let mut envoy = envoy(&server).await;
    let ask = || {
        request(
            PATCHER,
            Some(&leaf),
            "GET",
            "/repos/acme/payments",
            &[("x-mandate-token", token.as_str())],
        )
    };
    // Allowed twice: the second answer may come from the remembered
    // `check`.
    for _ in 0..2 {
        assert_eq!(code(&check(&mut envoy, ask()).await), tonic::Code::Ok);
    }
    server
        .registry
        .update::<mandate::registry::RegistryError>(
            mandate::registry::Entry::Workload(mandate::registry::WorkloadEntry {
                spiffe_id: "spiffe://mandate.local/workloads/envoy".into(),
                groups: Default::default(),
            }),
            |_| Ok(()),
        )
        .unwrap();
    let response = check(&mut envoy, ask()).await;
    let (status, body) = denial(&response);
    assert_eq!(status, 403);
    assert_eq!(reasons(&body)[0], "not-an-enforcement-point");
}

#[tokio::test]
async fn a_min_revision_header_ahead_of_the_replica_is_denied_stale_state() {
    let server = server_with(EnvoySettings::default(), None).await;
    let (leaf, _, token) = agent_with_token(&server, &["read"]).await;
    let mut envoy = envoy(&server).await;
    let with_revision = |revision: &str| {
        request(
            PATCHER,
            Some(&leaf),
            "GET",
            "/repos/acme/payments",
            &[
                ("x-mandate-token", &token),
                ("x-mandate-min-revision", revision),
            ],
        )
    };
    let current = server.journal.revision();
    let reached = check(&mut envoy, with_revision(&current.to_string())).await;
    assert_eq!(code(&reached), tonic::Code::Ok, "{reached:?}");

    // Nobody writes that revision: after the wait (1 s), a deny that
    // says "try again later" (503), not "forbidden".
    let ahead = check(&mut envoy, with_revision(&(current + 5).to_string())).await;
    let (status, body) = denial(&ahead);
    assert_eq!(status, 503);
    assert_eq!(code(&ahead), tonic::Code::Unavailable, "{ahead:?}");
    assert_eq!(reasons(&body), ["stale-state"], "{body}");

    let garbled = check(&mut envoy, with_revision("soon")).await;
    let (status, body) = denial(&garbled);
    assert_eq!(status, 400);
    assert_eq!(reasons(&body), ["invalid-check-request"], "{body}");
}

#[tokio::test]
async fn an_oversized_token_header_is_400_limit_exceeded() {
    let server = server_with(EnvoySettings::default(), None).await;
    let (leaf, _, _) = agent_with_token(&server, &["read"]).await;
    let mut envoy = envoy(&server).await;
    let huge = "x".repeat(mandate::limits::Limits::default().max_token_bytes + 1);
    let response = check(
        &mut envoy,
        request(
            PATCHER,
            Some(&leaf),
            "GET",
            "/repos/acme/payments",
            &[("x-mandate-token", &huge)],
        ),
    )
    .await;
    assert_eq!(code(&response), tonic::Code::InvalidArgument);
    let (status, body) = denial(&response);
    assert_eq!(status, 400);
    assert_eq!(reasons(&body), ["limit-exceeded"]);
}
