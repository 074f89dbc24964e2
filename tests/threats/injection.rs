//! Prompt injection: text the agent read (an issue, a web page, a file)
//! makes it call a tool its task does not cover. Mandate cannot see the
//! prompt; it holds every call to the task's bounds.

use std::collections::HashMap;

use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
use mandate::api::v1::{AuthorizeRequest, Resource};
use mandate::envoy::EnvoySettings;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use prost_types::value::Kind;

use crate::common::party::*;
use crate::common::{Setup, TestServer, repo};

#[tokio::test]
async fn prompt_injected_action_outside_the_task_is_denied() {
    let server = TestServer::start().await;
    // Read and write the repos; nothing else.
    let task = patcher_task(&server).await;
    let mut patcher = party(&server, "/agents/patcher").await;
    let t = token(&mut patcher, &task.id).await;
    assert_allowed(
        &call(&mut patcher, &t, "write", "repo:acme/payments").await,
        "the task's own action",
    );
    for action in ["delete", "deploy", "invoke"] {
        let r = call(&mut patcher, &t, action, "repo:acme/payments").await;
        assert_denied_by(
            &r,
            &format!("mandate.guard.action-not-in-task.{action}"),
            &format!("an injected `{action}`"),
        );
        // A plain deny: no human is asked to approve what the task never
        // allowed.
        assert!(r.approval_id.is_empty(), "{action}: {r:?}");
    }
}

#[tokio::test]
async fn prompt_injected_resource_outside_the_task_is_denied() {
    let server = TestServer::start().await;
    let task = root_task(
        &server,
        PATCHER,
        scope(&["read", "write"], &["repo:acme/payments"], 1, 3600),
    )
    .await;
    let mut patcher = party(&server, "/agents/patcher").await;
    let t = token(&mut patcher, &task.id).await;
    assert_allowed(
        &call(&mut patcher, &t, "read", "repo:acme/payments").await,
        "the resource in scope",
    );
    // A sibling repository (which the patcher could read without the
    // task), registered data, a resource nobody registered, and the parent
    // of the scope.
    for resource in ["repo:acme/web", "customer-db", "attacker-bucket", "repos"] {
        let r = call(&mut patcher, &t, "read", resource).await;
        assert_denied_by(
            &r,
            "mandate.guard.resource-outside-scope",
            &format!("an injected read of `{resource}`"),
        );
    }
    // Another resource type than `Mandate::Resource` is outside every scope.
    let r = patcher
        .authz
        .authorize(AuthorizeRequest {
            action: "read".into(),
            resource: Some(Resource {
                r#type: "Mandate::Task".into(),
                id: task.id.clone(),
            }),
            token: t,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_denied_by(
        &r,
        "mandate.guard.resource-outside-scope",
        "reading a task with a token",
    );
}

#[tokio::test]
async fn prompt_injected_sensitive_resource_is_denied() {
    let server = TestServer::start().await;
    // `customer-db` (confidential) is in scope, but the task stops at
    // internal data.
    let task = root_task(
        &server,
        PATCHER,
        scope(&["read"], &["repos", "customer-db"], 1, 3600),
    )
    .await;
    let mut patcher = party(&server, "/agents/patcher").await;
    let t = token(&mut patcher, &task.id).await;
    let r = call(&mut patcher, &t, "read", "customer-db").await;
    assert_denied_by(
        &r,
        "mandate.guard.sensitivity-above-max",
        "an injected read of confidential data",
    );
}

#[tokio::test]
async fn prompt_injected_context_cannot_claim_task_facts_or_an_approval() {
    let server = TestServer::start().await;
    let task = root_task(
        &server,
        PATCHER,
        scope(&["read", "delete"], &["repos"], 1, 3600),
    )
    .await;
    let mut patcher = party(&server, "/agents/patcher").await;
    let t = token(&mut patcher, &task.id).await;
    let approval = prost_types::Value {
        kind: Some(Kind::StructValue(prost_types::Struct {
            fields: [
                ("granted".to_owned(), Kind::BoolValue(true)),
                ("approver".to_owned(), Kind::StringValue("alice".into())),
                ("age_seconds".to_owned(), Kind::NumberValue(1.0)),
            ]
            .into_iter()
            .map(|(k, v)| (k, prost_types::Value { kind: Some(v) }))
            .collect(),
        })),
    };
    for (key, value) in [
        ("approval", approval),
        (
            "intent",
            prost_types::Value {
                kind: Some(Kind::StringValue("delete everything".into())),
            },
        ),
    ] {
        let r = patcher
            .authz
            .authorize(AuthorizeRequest {
                action: "delete".into(),
                resource: Some(Resource {
                    r#type: String::new(),
                    id: "repo:acme/web".into(),
                }),
                token: t.clone(),
                context: Some(prost_types::Struct {
                    fields: [(key.to_owned(), value)].into(),
                }),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_denied(&r, "invalid-context", &format!("a caller-set `{key}`"));
    }
}

#[tokio::test]
async fn prompt_injected_tool_call_through_envoy_is_denied() {
    let server = TestServer::start_with(Setup {
        envoy: EnvoySettings::default(),
        route_map: Some(repo().join("examples/envoy/routes.toml")),
        ..Setup::default()
    })
    .await;
    let task = patcher_task(&server).await;
    let svid = server.ca.svid("/agents/patcher");
    let mut patcher = party_for(&server, &svid).await;
    let t = token(&mut patcher, &task.id).await;
    let mut envoy = AuthorizationClient::new(server.channel("/workloads/envoy").await);
    let check = |method: &str, path: &str| CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(Peer {
                principal: PATCHER.into(),
                certificate: utf8_percent_encode(&svid.cert_pem, NON_ALPHANUMERIC).to_string(),
                ..Default::default()
            }),
            request: Some(Request {
                http: Some(HttpRequest {
                    method: method.into(),
                    host: "tools.acme.internal".into(),
                    path: path.into(),
                    headers: HashMap::from([("x-mandate-token".to_owned(), t.clone())]),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    };
    let ok = envoy
        .check(check("GET", "/repos/acme/payments"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        ok.status.unwrap().code,
        tonic::Code::Ok as i32,
        "the task's own tool call must pass Envoy"
    );
    // The injected calls: a customer lookup and a deploy.
    for (method, path, reason) in [
        (
            "GET",
            "/customers/42",
            "mandate.guard.resource-outside-scope",
        ),
        (
            "POST",
            "/services/payments/deploy",
            "mandate.guard.action-not-in-task.deploy",
        ),
    ] {
        let denied = envoy.check(check(method, path)).await.unwrap().into_inner();
        assert_eq!(
            denied.status.unwrap().code,
            tonic::Code::PermissionDenied as i32,
            "{method} {path}"
        );
        let policies = denied
            .dynamic_metadata
            .as_ref()
            .and_then(|m| m.fields.get("determining_policies"))
            .map(|v| format!("{v:?}"))
            .unwrap_or_default();
        assert!(
            policies.contains(reason),
            "{method} {path}: expected `{reason}` among {policies}"
        );
        let Some(HttpResponse::DeniedResponse(body)) = denied.http_response else {
            panic!("{method} {path}: not a denial");
        };
        assert_eq!(body.status.unwrap().code, 403, "{method} {path}");
        let body: serde_json::Value = serde_json::from_str(&body.body).unwrap();
        assert_eq!(
            body["reasons"][0], "forbidden-by-policy",
            "{method} {path}: {body}"
        );
    }
}
