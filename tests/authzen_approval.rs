//! "Needs approval" the AuthZEN way (the Access Request and Approval
//! profile) against a real server over mTLS: the requestable denial, the
//! access request, the task handle polled while a human decides through
//! `ApprovalService`, re-evaluation with `context.approval`, and what does
//! not count; and the metadata document checked field by field against the
//! specification and the profile.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

mod common;

use common::authzen::{GATEWAY, Pep, start};
use common::party::{PATCHER, Party, decide_approval, party, party_for, root_task, scope, token};
use common::{Leaf, TestServer};
use mandate::api::authzen::ApiKeys;
use mandate::api::v1::RevokeApprovalRequest;
use serde_json::{Value, json};

/// Metadata parameters of Authorization API 1.0 (§ "Policy Decision
/// Point Metadata": endpoint, capabilities and signature parameters).
const SPEC_FIELDS: &[&str] = &[
    "policy_decision_point",
    "access_evaluation_endpoint",
    "access_evaluations_endpoint",
    "search_subject_endpoint",
    "search_action_endpoint",
    "search_resource_endpoint",
    "capabilities",
    "signed_metadata",
];
/// What the Access Request and Approval profile registers (§ "Discovery").
const PROFILE_FIELDS: &[&str] = &["access_request_endpoint", "jwks_uri"];
const CAPABILITY: &str = "urn:openid:authzen:capability:access-request";

async fn get(pep: &Pep, url: &str) -> (u16, Value, String) {
    let response = pep.http.get(url).send().await.unwrap();
    let status = response.status().as_u16();
    let kind = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        kind,
    )
}

async fn post_to(pep: &Pep, url: &str, body: &Value) -> (u16, Value, reqwest::header::HeaderMap) {
    let response = pep
        .http
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        headers,
    )
}

#[tokio::test]
async fn the_metadata_document_has_the_specs_fields_with_their_types() {
    let (server, _dir) = start(&GATEWAY, ApiKeys::default()).await;
    let pep = Pep::new(&server, "/workloads/envoy");
    let (status, metadata, kind) = get(
        &pep,
        &format!("{}/.well-known/authzen-configuration", pep.base),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(kind, "application/json");
    let fields = metadata.as_object().expect("a JSON object");
    for (key, value) in fields {
        assert!(
            SPEC_FIELDS.contains(&key.as_str()) || PROFILE_FIELDS.contains(&key.as_str()),
            "`{key}` is neither the specification's nor the profile's"
        );
        // Parameters without values are omitted, never null or empty.
        assert!(!value.is_null(), "`{key}` is null");
    }
    for required in [
        "policy_decision_point",
        "access_evaluation_endpoint",
        "access_request_endpoint",
    ] {
        assert!(fields.contains_key(required), "`{required}` is missing");
    }
    // The identifier is the URL the document was fetched under: https, no
    // query or fragment.
    let pdp = metadata["policy_decision_point"].as_str().unwrap();
    assert_eq!(pdp, pep.base);
    let parsed = reqwest::Url::parse(pdp).unwrap();
    assert_eq!(parsed.scheme(), "https");
    assert!(parsed.query().is_none() && parsed.fragment().is_none());
    // Every endpoint an absolute https URL under it, and served there.
    for (key, value) in fields.iter().filter(|(k, _)| k.ends_with("_endpoint")) {
        let url = value
            .as_str()
            .unwrap_or_else(|| panic!("`{key}` is not a string"));
        let parsed = reqwest::Url::parse(url).unwrap();
        assert_eq!(parsed.scheme(), "https", "{key}");
        assert!(
            url.starts_with(&format!("{pdp}/")),
            "`{key}` {url} is not under {pdp}"
        );
        // An empty object is no request of any of them: 400, not 404.
        let (status, _, _) = post_to(&pep, url, &json!({})).await;
        assert_eq!(status, 400, "`{key}` {url}");
    }
    let capabilities = metadata["capabilities"].as_array().expect("an array");
    assert!(
        capabilities
            .iter()
            .all(|c| c.as_str().is_some_and(|c| c.starts_with("urn:"))),
        "{capabilities:?}"
    );
    assert!(
        capabilities.contains(&json!(CAPABILITY)),
        "{capabilities:?}"
    );
    server.server.shutdown().await.unwrap();
}

/// A task for alice's patcher that may read and delete repos.
async fn start_task(server: &TestServer) -> String {
    root_task(
        server,
        PATCHER,
        scope(&["read", "delete"], &["repos"], 1, 3600),
    )
    .await
    .id
}

/// A token for `task`, bound to the patcher's `leaf`.
async fn issue_token(server: &TestServer, leaf: &Leaf, task: &str) -> String {
    token(&mut party_for(server, leaf).await, task).await
}

/// The patcher's delete of `resource` with `token`, as Envoy asks it.
fn delete(leaf: &Leaf, token: &str, resource: &str) -> Value {
    json!({
        "subject": {"type": "agent", "id": PATCHER,
            "properties": {"token": token, "certificate_pem": leaf.cert_pem}},
        "action": {"name": "delete"},
        "resource": {"type": "Mandate::Resource", "id": resource},
    })
}

async fn decide(frontend: &mut Party, approval_id: &str, approve: bool, valid_for: i64) {
    decide_approval(frontend, approval_id, approve, "alice", valid_for)
        .await
        .unwrap();
}

/// The requestable denial `pep` is answered for `evaluation`, checked
/// for the profile's members and Mandate's own.
async fn requestable(pep: &Pep, evaluation: &Value) -> Value {
    let answer = pep.decide("/access/v1/evaluation", evaluation).await;
    let context = &answer["context"];
    assert_eq!(answer["decision"], false, "{answer}");
    assert!(context["evaluation_id"].is_string(), "{answer}");
    assert!(
        context["evaluated_at"].as_str().unwrap().ends_with('Z'),
        "{answer}"
    );
    let hint = &context["access_request"];
    assert_eq!(
        hint["endpoint"],
        format!("{}/access/v1/requests", pep.base),
        "{answer}"
    );
    assert!(
        hint["expires_at"].as_str().unwrap().ends_with('Z'),
        "{answer}"
    );
    // Mandate's own members stay.
    assert_eq!(context["evaluation_id"], context["decision_id"], "{answer}");
    assert!(context["approval_id"].is_string(), "{answer}");
    let reasons = context["reasons"].as_array().unwrap();
    assert!(reasons.contains(&json!("needs-approval")), "{answer}");
    answer
}

/// The submission of the denial `answer` of `evaluation`.
fn submission(evaluation: &Value, answer: &Value) -> Value {
    json!({
        "subject": evaluation["subject"],
        "action": evaluation["action"],
        "resource": evaluation["resource"],
        "context": {"business_justification": "the web repo is retired"},
        "denial": {
            "evaluation_id": answer["context"]["evaluation_id"],
            "expires_at": answer["context"]["access_request"]["expires_at"],
            "reason": answer["context"]["reason"],
        },
    })
}

fn with_approval(evaluation: &Value, approval: &Value) -> Value {
    let mut evaluation = evaluation.clone();
    evaluation["context"] = json!({"approval": approval});
    evaluation
}

#[tokio::test]
async fn needs_approval_is_requested_polled_approved_and_counted_only_while_current() {
    let (server, _dir) = start(&GATEWAY, ApiKeys::default()).await;
    let mut frontend = party(&server, "/workloads/frontend").await;
    let leaf = server.ca.svid("/agents/patcher");
    let task_id = start_task(&server).await;
    let token = issue_token(&server, &leaf, &task_id).await;
    let envoy = Pep::new(&server, "/workloads/envoy");
    let web = delete(&leaf, &token, "repo:acme/web");
    let denied = requestable(&envoy, &web).await;
    assert_eq!(denied["context"]["reason"], "approval_required", "{denied}");
    assert!(denied["context"]["next_action"].is_null(), "{denied}");
    let approval_id = denied["context"]["approval_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let endpoint = denied["context"]["access_request"]["endpoint"]
        .as_str()
        .unwrap()
        .to_owned();

    // The access request: the pending approval as a task handle.
    let (status, handle, headers) = post_to(&envoy, &endpoint, &submission(&web, &denied)).await;
    assert_eq!(status, 202, "{handle}");
    let task = &handle["task"];
    assert_eq!(task["id"], approval_id.as_str(), "{handle}");
    assert_eq!(task["status"], "pending", "{handle}");
    let status_endpoint = task["status_endpoint"].as_str().unwrap().to_owned();
    assert_eq!(status_endpoint, format!("{endpoint}/{approval_id}"));
    assert_eq!(headers["location"], status_endpoint.as_str());
    assert!(handle.get("result").is_none(), "{handle}");
    let (status, polled, _) = get(&envoy, &status_endpoint).await;
    assert_eq!(
        (status, &polled["task"]["status"]),
        (200, &json!("pending"))
    );

    // Before a human decides, evaluating again is the same requestable
    // denial, naming the same approval.
    let again = requestable(&envoy, &web).await;
    assert_eq!(again["context"]["approval_id"], approval_id.as_str());
    // Presenting the pending approval changes nothing: it is no result yet.
    let early = requestable(&envoy, &with_approval(&web, &json!({"id": approval_id}))).await;
    assert_eq!(early["context"]["reason"], "approval_required", "{early}");
    assert_eq!(early["context"]["approval_id"], approval_id.as_str());

    // alice approves through ApprovalService; the poll shows it, with the
    // approval to bring back.
    decide(&mut frontend, &approval_id, true, 600).await;
    let (_, polled, _) = get(&envoy, &status_endpoint).await;
    assert_eq!(polled["task"]["status"], "approved", "{polled}");
    assert_eq!(polled["result"]["mode"], "reevaluate", "{polled}");
    let approval = polled["result"]["approval"].clone();
    assert_eq!(approval["id"], approval_id.as_str(), "{polled}");
    assert!(
        approval["approved_until"].as_str().unwrap().ends_with('Z'),
        "{polled}"
    );

    // Re-evaluated with `context.approval`: allowed, the approval echoed.
    let allowed = envoy
        .decide("/access/v1/evaluation", &with_approval(&web, &approval))
        .await;
    assert_eq!(allowed["decision"], true, "{allowed}");
    assert_eq!(
        allowed["context"]["approval"]["id"],
        approval_id.as_str(),
        "{allowed}"
    );

    // The same approval on another resource does not count: a new
    // requestable denial, out of scope.
    let payments = delete(&leaf, &token, "repo:acme/payments");
    let other = requestable(&envoy, &with_approval(&payments, &approval)).await;
    assert_eq!(other["context"]["reason"], "out_of_scope", "{other}");
    assert_eq!(other["context"]["next_action"], "request", "{other}");
    assert_ne!(other["context"]["approval_id"], approval_id.as_str());
    // Nor does an approval nobody gave.
    let made_up = requestable(&envoy, &with_approval(&payments, &json!({"id": "guessed"}))).await;
    assert_eq!(
        made_up["context"]["reason"], "approval_unverifiable",
        "{made_up}"
    );

    // Revoked, it is stale: the task is cancelled, evaluating again with
    // it is a deny that says so.
    frontend
        .approvals
        .revoke_approval(RevokeApprovalRequest {
            approval_id: approval_id.clone(),
            reason: "not that repo".into(),
        })
        .await
        .unwrap();
    let (_, polled, _) = get(&envoy, &status_endpoint).await;
    assert_eq!(polled["task"]["status"], "cancelled", "{polled}");
    let stale = requestable(&envoy, &with_approval(&web, &approval)).await;
    assert_eq!(stale["context"]["reason"], "approval_expired", "{stale}");
    assert_eq!(stale["context"]["next_action"], "request", "{stale}");

    // Asked and approved again, for a minute: the new approval counts,
    // the revoked one presented with it is not echoed as what counted.
    let second = stale["context"]["approval_id"].as_str().unwrap().to_owned();
    assert_ne!(second, approval_id);
    let (status, _, _) = post_to(&envoy, &endpoint, &submission(&web, &stale)).await;
    assert_eq!(status, 202);
    decide(&mut frontend, &second, true, 60).await;
    let (_, polled, _) = get(&envoy, &format!("{endpoint}/{second}")).await;
    let fresh = polled["result"]["approval"].clone();
    let allowed = envoy
        .decide("/access/v1/evaluation", &with_approval(&web, &approval))
        .await;
    assert_eq!(allowed["decision"], true, "{allowed}");
    assert!(allowed["context"]["approval"].is_null(), "{allowed}");

    // Past its minute it no longer counts (with a token of the same task:
    // tokens live shorter); the first denial is past its binding window.
    server.clock.advance(700);
    let denied_web = web;
    let web = delete(
        &leaf,
        &issue_token(&server, &leaf, &task_id).await,
        "repo:acme/web",
    );
    let expired = requestable(&envoy, &with_approval(&web, &fresh)).await;
    assert_eq!(
        expired["context"]["reason"], "approval_expired",
        "{expired}"
    );
    let (status, problem, headers) =
        post_to(&envoy, &endpoint, &submission(&denied_web, &denied)).await;
    assert_eq!(status, 410, "{problem}");
    assert_eq!(headers["content-type"], "application/problem+json");
    assert_eq!(
        problem["type"],
        "urn:openid:authzen:access-request:error:expired_denial"
    );

    // A human's no is the task's `denied`.
    let third = expired["context"]["approval_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _, _) = post_to(&envoy, &endpoint, &submission(&web, &expired)).await;
    assert_eq!(status, 202);
    decide(&mut frontend, &third, false, 600).await;
    let (_, polled, _) = get(&envoy, &format!("{endpoint}/{third}")).await;
    assert_eq!(polled["task"]["status"], "denied", "{polled}");
    assert!(polled.get("result").is_none(), "{polled}");
    server.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn access_requests_bind_to_their_own_denial_and_caller() {
    let (server, _dir) = start(&GATEWAY, ApiKeys::default()).await;
    let leaf = server.ca.svid("/agents/patcher");
    let task_id = start_task(&server).await;
    let token = issue_token(&server, &leaf, &task_id).await;
    let envoy = Pep::new(&server, "/workloads/envoy");
    let web = delete(&leaf, &token, "repo:acme/web");
    let denied = requestable(&envoy, &web).await;
    let endpoint = format!("{}/access/v1/requests", envoy.base);
    let problem_type = |name: &str| format!("urn:openid:authzen:access-request:error:{name}");

    // An evaluation id this server never answered.
    let mut unknown = submission(&web, &denied);
    unknown["denial"]["evaluation_id"] = json!("0190c0de-0000-7000-8000-000000000000");
    let (status, problem, headers) = post_to(&envoy, &endpoint, &unknown).await;
    assert_eq!(status, 400, "{problem}");
    assert_eq!(headers["content-type"], "application/problem+json");
    assert_eq!(problem["type"], problem_type("invalid_denial_binding"));
    assert!(
        problem["detail"].as_str().unwrap().contains("0190c0de"),
        "{problem}"
    );
    // Without an evaluation id, or for another resource than was denied.
    let mut unbound = submission(&web, &denied);
    unbound["denial"]
        .as_object_mut()
        .unwrap()
        .remove("evaluation_id");
    let (status, problem, _) = post_to(&envoy, &endpoint, &unbound).await;
    assert_eq!(
        (status, &problem["type"]),
        (400, &json!(problem_type("invalid_denial_binding")))
    );
    // A denial that was not requestable has no `access_request` to echo.
    let mut not_requestable = submission(&web, &denied);
    not_requestable["denial"]["expires_at"] = Value::Null;
    let (status, problem, _) = post_to(&envoy, &endpoint, &not_requestable).await;
    assert_eq!(
        (status, &problem["type"]),
        (400, &json!(problem_type("invalid_denial_binding"))),
        "{problem}"
    );
    let mut swapped = submission(&web, &denied);
    swapped["resource"]["id"] = json!("repo:acme/payments");
    let (status, problem, _) = post_to(&envoy, &endpoint, &swapped).await;
    assert_eq!(status, 400, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("`resource`"),
        "{problem}"
    );

    // Another enforcement point may neither submit Envoy's denial nor
    // poll Envoy's task.
    let gateway = Pep::new(&server, "/workloads/gateway");
    let (status, problem, _) = post_to(&gateway, &endpoint, &submission(&web, &denied)).await;
    assert_eq!(status, 403, "{problem}");
    let (status, handle, _) = post_to(&envoy, &endpoint, &submission(&web, &denied)).await;
    assert_eq!(status, 202, "{handle}");
    let status_endpoint = handle["task"]["status_endpoint"].as_str().unwrap();
    let (status, problem, _) = get(&gateway, status_endpoint).await;
    assert_eq!(status, 403, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("another enforcement point")
    );
    // A task nobody submitted.
    let (status, problem, _) = get(&envoy, &format!("{endpoint}/guessed")).await;
    assert_eq!(
        (status, &problem["type"]),
        (404, &json!(problem_type("unknown_task")))
    );
    // The endpoint authenticates as evaluation does: no SVID, no call.
    let anonymous = common::authzen::anonymous(&server);
    assert!(anonymous.get(status_endpoint).send().await.is_err());
    server.server.shutdown().await.unwrap();
}
