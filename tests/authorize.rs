//! Decisions over real mTLS, driven by the shipped example policies.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "tests"
)]

mod common;

use common::{Setup, TestServer};
use mandate::api::v1::{
    AuthorizeRequest, AuthorizeResponse, BatchAuthorizeRequest, Decision, Resource, Subject,
};
use prost_types::value::Kind;
use tonic::Code;

fn request(action: &str, resource: &str) -> AuthorizeRequest {
    AuthorizeRequest {
        action: action.to_owned(),
        resource: Some(Resource {
            r#type: String::new(),
            id: resource.to_owned(),
        }),
        ..Default::default()
    }
}

fn with_context(mut request: AuthorizeRequest, key: &str, kind: Kind) -> AuthorizeRequest {
    request
        .context
        .get_or_insert_with(Default::default)
        .fields
        .insert(key.to_owned(), prost_types::Value { kind: Some(kind) });
    request
}

fn allowed(response: &AuthorizeResponse) -> bool {
    response.decision == Decision::Allow as i32
}

fn denied(response: &AuthorizeResponse) -> bool {
    response.decision == Decision::Deny as i32
}

#[tokio::test]
async fn agent_reads_low_sensitivity_resource_and_policies_are_named() {
    let server = TestServer::start().await;
    let mut patcher = server.client("/agents/patcher").await;
    let response = patcher
        .authorize(request("read", "repo:acme/payments"))
        .await
        .unwrap()
        .into_inner();
    assert!(allowed(&response), "{response:?}");
    assert_eq!(
        response.determining_policies,
        ["agents-read-low-sensitivity"]
    );
    assert!(response.reasons.is_empty());
    assert!(response.errors.is_empty());
    assert_eq!(response.revision, 0);
}

#[tokio::test]
async fn agent_cannot_read_restricted_data() {
    let server = TestServer::start().await;
    let mut patcher = server.client("/agents/patcher").await;
    let response = patcher
        .authorize(request("read", "payroll"))
        .await
        .unwrap()
        .into_inner();
    assert!(denied(&response), "{response:?}");
    // The approval policy matches, but nothing would permit the read
    // without it either: a plain deny, never "needs approval".
    assert_eq!(response.reasons, ["forbidden-by-policy"]);
    assert_eq!(
        response.determining_policies,
        ["restricted-data-needs-approval"]
    );
    assert!(response.approval_id.is_empty());

    let response = patcher
        .authorize(request("read", "customer-db"))
        .await
        .unwrap()
        .into_inner();
    assert!(denied(&response), "{response:?}");
    assert_eq!(response.reasons, ["no-permit"]);
    assert!(response.determining_policies.is_empty());
}

#[tokio::test]
async fn unregistered_resource_is_denied() {
    let server = TestServer::start().await;
    let mut patcher = server.client("/agents/patcher").await;
    let response = patcher
        .authorize(request("read", "nobody-registered-this"))
        .await
        .unwrap()
        .into_inner();
    assert!(denied(&response));
    assert_eq!(response.reasons, ["no-permit"]);
}

#[tokio::test]
async fn workload_that_is_not_an_agent_gets_no_agent_permissions() {
    let server = TestServer::start().await;
    // Same resource the patcher agent may read; `/services/...` is a Workload.
    let mut service = server.client("/services/billing").await;
    let response = service
        .authorize(request("read", "repo:acme/payments"))
        .await
        .unwrap()
        .into_inner();
    assert!(denied(&response), "{response:?}");
}

#[tokio::test]
async fn agent_writes_only_what_it_owns() {
    let server = TestServer::start().await;
    let mut patcher = server.client("/agents/patcher").await;
    let mut reviewer = server.client("/agents/reviewer").await;
    let own = patcher
        .authorize(request("write", "repo:acme/payments"))
        .await
        .unwrap()
        .into_inner();
    let other = reviewer
        .authorize(request("write", "repo:acme/payments"))
        .await
        .unwrap()
        .into_inner();
    assert!(allowed(&own), "{own:?}");
    assert_eq!(own.determining_policies, ["agents-write-own-resources"]);
    assert!(denied(&other), "{other:?}");
}

#[tokio::test]
async fn forbid_overrides_permit_and_is_named() {
    let server = TestServer::start().await;
    let mut admin = server.client("/workloads/admin").await;
    let response = admin
        .authorize(request("delete", "payroll"))
        .await
        .unwrap()
        .into_inner();
    assert!(denied(&response), "{response:?}");
    assert_eq!(
        response.determining_policies,
        ["restricted-delete-needs-ticket"]
    );
    assert_eq!(response.reasons, ["forbidden-by-policy"]);

    let with_ticket = with_context(
        request("delete", "payroll"),
        "ticket",
        Kind::StringValue("CHG-42".into()),
    );
    let response = admin.authorize(with_ticket).await.unwrap().into_inner();
    assert!(allowed(&response), "{response:?}");
    assert_eq!(
        response.determining_policies,
        ["operators-manage-resources"]
    );
}

#[tokio::test]
async fn decision_ids_are_unique_and_sortable() {
    let server = TestServer::start().await;
    let mut patcher = server.client("/agents/patcher").await;
    let mut ids = Vec::new();
    for _ in 0..50 {
        let response = patcher
            .authorize(request("read", "handbook"))
            .await
            .unwrap()
            .into_inner();
        ids.push(uuid::Uuid::parse_str(&response.decision_id).unwrap());
    }
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), ids.len(), "decision ids repeat");
    assert_eq!(sorted, ids, "decision ids are not in time order");
    assert_eq!(ids[0].get_version_num(), 7);
}

#[tokio::test]
async fn context_outside_the_schema_is_a_deny_with_a_reason() {
    let server = TestServer::start().await;
    let mut admin = server.client("/workloads/admin").await;
    let cases = [
        ("tickt", Kind::StringValue("typo".into())),
        ("ticket", Kind::NumberValue(5.0)),
        ("ticket", Kind::NullValue(0)),
        ("purpose", Kind::NumberValue(0.5)),
    ];
    for (key, kind) in cases {
        let response = admin
            .authorize(with_context(request("read", "handbook"), key, kind.clone()))
            .await
            .unwrap()
            .into_inner();
        assert!(denied(&response), "{key}={kind:?}: {response:?}");
        assert_eq!(response.reasons, ["invalid-context"], "{key}={kind:?}");
        assert!(!response.errors.is_empty(), "{key}={kind:?}");
    }
}

#[tokio::test]
async fn unknown_action_and_resource_type_are_denied() {
    let server = TestServer::start().await;
    let mut admin = server.client("/workloads/admin").await;
    let response = admin
        .authorize(request("launch-missiles", "handbook"))
        .await
        .unwrap()
        .into_inner();
    assert!(denied(&response));
    assert_eq!(response.reasons, ["unknown-action"]);

    let mut typed = request("read", "handbook");
    typed.resource.as_mut().unwrap().r#type = "Acme::Thing".into();
    let response = admin.authorize(typed).await.unwrap().into_inner();
    assert!(denied(&response));
    assert_eq!(response.reasons, ["unknown-resource-type"]);

    // A type the schema knows but the action does not apply to.
    let mut task = request("write", "t-1");
    task.resource.as_mut().unwrap().r#type = "Mandate::Task".into();
    let response = admin.authorize(task).await.unwrap().into_inner();
    assert!(denied(&response));
    assert_eq!(response.reasons, ["invalid-request"]);
}

#[tokio::test]
async fn malformed_requests_are_invalid_argument() {
    let server = TestServer::start().await;
    let mut admin = server.client("/workloads/admin").await;
    let mut no_resource = request("read", "handbook");
    no_resource.resource = None;
    let status = admin.authorize(no_resource).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("resource"),
        "{}",
        status.message()
    );

    let status = admin.authorize(request("", "handbook")).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn an_unsigned_token_never_allows() {
    let server = TestServer::start().await;
    let mut patcher = server.client("/agents/patcher").await;
    let mut with_token = request("read", "handbook");
    with_token.token = "eyJhbGciOiJub25lIn0.e30.".into();
    let response = patcher.authorize(with_token).await.unwrap().into_inner();
    assert!(denied(&response));
    assert_eq!(response.reasons, ["token-wrong-algorithm"]);
}

#[tokio::test]
async fn batch_returns_one_decision_per_request_in_order() {
    let server = TestServer::start().await;
    let mut patcher = server.client("/agents/patcher").await;
    let batch = BatchAuthorizeRequest {
        requests: vec![
            request("read", "handbook"),
            request("read", "payroll"),
            request("fly", "handbook"),
            request("write", "repo:acme/payments"),
        ],
    };
    let responses = patcher
        .batch_authorize(batch)
        .await
        .unwrap()
        .into_inner()
        .responses;
    assert_eq!(responses.len(), 4);
    assert!(allowed(&responses[0]));
    assert!(denied(&responses[1]));
    assert_eq!(responses[1].reasons, ["forbidden-by-policy"]);
    assert_eq!(responses[2].reasons, ["unknown-action"]);
    assert!(allowed(&responses[3]));
    let mut ids: Vec<_> = responses.iter().map(|r| r.decision_id.clone()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 4);
}

#[tokio::test]
async fn batch_over_the_limit_is_invalid_argument() {
    let server = TestServer::start_with(Setup {
        max_batch_size: 2,
        ..Setup::default()
    })
    .await;
    let mut patcher = server.client("/agents/patcher").await;
    let batch = BatchAuthorizeRequest {
        requests: vec![request("read", "handbook"); 3],
    };
    let status = patcher.batch_authorize(batch).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("limit is 2"),
        "{}",
        status.message()
    );

    let at_limit = BatchAuthorizeRequest {
        requests: vec![request("read", "handbook"); 2],
    };
    assert_eq!(
        patcher
            .batch_authorize(at_limit)
            .await
            .unwrap()
            .into_inner()
            .responses
            .len(),
        2
    );
}

fn on_behalf_of(id: &str, certificate_pem: &str) -> AuthorizeRequest {
    let mut request = request("read", "repo:acme/payments");
    request.subject = Some(Subject {
        spiffe_id: id.into(),
        certificate_pem: certificate_pem.into(),
    });
    request
}

#[tokio::test]
async fn enforcement_point_asks_on_behalf_of_a_verified_subject() {
    let server = TestServer::start().await;
    let mut envoy = server.client("/workloads/envoy").await;
    let patcher = "spiffe://mandate.local/agents/patcher";
    let patcher_pem = server.ca.svid("/agents/patcher").cert_pem;

    let response = envoy
        .authorize(on_behalf_of(patcher, &patcher_pem))
        .await
        .unwrap()
        .into_inner();
    assert!(allowed(&response), "{response:?}");
    // The determining policy is the subject's, not the `check`.
    assert_eq!(
        response.determining_policies,
        ["agents-read-low-sensitivity"]
    );

    // The subject asks nothing the subject itself could not: a restricted
    // resource stays denied through the enforcement point.
    let mut payroll = on_behalf_of(patcher, &patcher_pem);
    payroll.resource.as_mut().unwrap().id = "payroll".into();
    let response = envoy.authorize(payroll).await.unwrap().into_inner();
    assert!(denied(&response));
    assert_eq!(response.reasons, ["forbidden-by-policy"]);
}

#[tokio::test]
async fn only_enforcement_points_may_ask_for_others() {
    let server = TestServer::start().await;
    let patcher_pem = server.ca.svid("/agents/patcher").cert_pem;
    let mut reviewer = server.client("/agents/reviewer").await;
    let response = reviewer
        .authorize(on_behalf_of(
            "spiffe://mandate.local/agents/patcher",
            &patcher_pem,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(denied(&response));
    assert_eq!(response.reasons, ["not-an-enforcement-point", "no-permit"]);
}

#[tokio::test]
async fn an_unverified_subject_is_not_honoured_by_the_example_policy() {
    let server = TestServer::start().await;
    let mut envoy = server.client("/workloads/envoy").await;
    let response = envoy
        .authorize(on_behalf_of("spiffe://mandate.local/workloads/admin", ""))
        .await
        .unwrap()
        .into_inner();
    assert!(denied(&response), "{response:?}");
    assert_eq!(response.reasons[0], "not-an-enforcement-point");
}

#[tokio::test]
async fn a_subject_certificate_must_verify_and_match() {
    let server = TestServer::start().await;
    let mut envoy = server.client("/workloads/envoy").await;
    let patcher = "spiffe://mandate.local/agents/patcher";
    let someone_else = server.ca.svid("/agents/reviewer").cert_pem;
    let untrusted_ca = common::TestCa::new("mandate.local")
        .svid("/agents/patcher")
        .cert_pem;
    for (case, pem) in [
        ("someone else's", someone_else.as_str()),
        ("untrusted CA", untrusted_ca.as_str()),
        ("not PEM", "hello"),
    ] {
        let response = envoy
            .authorize(on_behalf_of(patcher, pem))
            .await
            .unwrap()
            .into_inner();
        assert!(denied(&response), "{case}: {response:?}");
        assert_eq!(response.reasons, ["subject-certificate-invalid"], "{case}");
    }
}

#[tokio::test]
async fn a_subject_outside_our_trust_bundles_is_denied() {
    let server = TestServer::start().await;
    let mut envoy = server.client("/workloads/envoy").await;
    let response = envoy
        .authorize(on_behalf_of("spiffe://evil.example/agents/patcher", ""))
        .await
        .unwrap()
        .into_inner();
    assert!(denied(&response));
    assert_eq!(response.reasons, ["untrusted-subject"]);

    let status = envoy
        .authorize(on_behalf_of("spiffe://mandate.local", ""))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn a_federated_partners_agents_do_not_get_our_agents_permissions() {
    let partner = common::TestCa::new("partner.example");
    let server = TestServer::start_with(Setup {
        extra_bundles: vec![(partner.td(), partner.cert.clone())],
        ..Setup::default()
    })
    .await;
    let identity = partner.identity(&partner.svid("/agents/patcher"));
    // The partner's bundle does not verify our server, so trust both.
    let mut bundles = partner.bundles();
    bundles
        .add(server.ca.td(), std::slice::from_ref(&server.ca.cert))
        .unwrap();
    let identity =
        mandate::identity::Identity::new(identity.chain.clone(), identity.key.clone_key(), bundles)
            .unwrap();
    let mut client = mandate::client::connect(&server.addr, &identity, None)
        .await
        .unwrap();
    for action in ["read", "write"] {
        let response = client
            .authorize(request(action, "repo:acme/payments"))
            .await
            .unwrap()
            .into_inner();
        assert!(denied(&response), "{action}: {response:?}");
    }
    // It is still an authenticated workload: the public handbook is readable.
    let response = client
        .authorize(request("read", "handbook"))
        .await
        .unwrap()
        .into_inner();
    assert!(allowed(&response));
}

#[tokio::test]
async fn health_and_reflection_are_served_on_the_grpc_port() {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
    let server = TestServer::start().await;
    let identity = server.ca.identity(&server.ca.svid("/workloads/monitor"));
    let channel = mandate::client::channel(&server.addr, &identity, None)
        .await
        .unwrap();
    let status = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: "mandate.v1.AuthorizationService".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(status, ServingStatus::Serving as i32);

    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection response");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(
        names.contains(&"mandate.v1.AuthorizationService"),
        "{names:?}"
    );
    assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");
}

#[tokio::test]
async fn readyz_reports_ready_while_serving() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start().await;
    let mut tcp = tokio::net::TcpStream::connect(server.server.http_addr())
        .await
        .unwrap();
    tcp.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    tcp.read_to_string(&mut body).await.unwrap();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    server.server.shutdown().await.unwrap();
}
