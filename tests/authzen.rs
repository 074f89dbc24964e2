//! AuthZEN 1.0 over HTTPS with SPIFFE mTLS, against a real server: the
//! public interop suites of `openid/authzen` (Todo and API gateway, see
//! tests/authzen/README.md), each with its own Cedar schema, policies and
//! entities, and the binding's structural rules (400s, `X-Request-ID`,
//! order and semantics of evaluations, the metadata document).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

mod common;

use std::collections::BTreeMap;

use common::authzen::*;
use common::{Setup, TestServer};
use mandate::api::authzen::{ApiKey, ApiKeys, AuthzenSettings, TypeMap};
use serde_json::{Value, json};

fn cases(scenario: &str) -> Value {
    let text = std::fs::read_to_string(scenario_dir(scenario).join("decisions.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Every single evaluation of a suite: the failures, and how many ran.
async fn run_evaluations(pep: &Pep, suite: &Value) -> (Vec<String>, usize) {
    let mut failures = Vec::new();
    let list = suite["evaluation"].as_array().unwrap();
    for case in list {
        let answer = pep.decide("/access/v1/evaluation", &case["request"]).await;
        if answer["decision"] != case["expected"] {
            failures.push(format!(
                "{} -> {answer} (expected {})",
                case["request"], case["expected"]
            ));
        }
        // Every answer names its decision record.
        assert!(answer["context"]["decision_id"].is_string(), "{answer}");
    }
    (failures, list.len())
}

#[tokio::test]
async fn the_todo_interop_suite_passes() {
    let (server, _dir) = start(&TODO, ApiKeys::default()).await;
    let pep = Pep::new(&server, "/workloads/todo-backend");
    let suite = cases("todo");
    let (mut failures, ran) = run_evaluations(&pep, &suite).await;
    let boxcars = suite["evaluations"].as_array().unwrap();
    for case in boxcars {
        let answer = pep.decide("/access/v1/evaluations", &case["request"]).await;
        let decisions: Vec<Value> = answer["evaluations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| json!({"decision": d["decision"]}))
            .collect();
        if Value::Array(decisions.clone()) != case["expected"] {
            failures.push(format!(
                "{} -> {decisions:?} (expected {})",
                case["request"], case["expected"]
            ));
        }
    }
    assert_eq!(ran + boxcars.len(), 43, "the suite has 43 cases");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    server.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_api_gateway_interop_suite_passes_over_http2() {
    let (server, _dir) = start(&GATEWAY, ApiKeys::default()).await;
    let pep = Pep::over(&server, "/workloads/gateway", true);
    let (failures, ran) = run_evaluations(&pep, &cases("gateway")).await;
    assert_eq!(ran, 25, "the suite has 25 cases");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    server.server.shutdown().await.unwrap();
}

const MORTY: &str = "CiRmZDE2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs";

/// Morty (an editor) updating his own todo, Rick's, then his own again.
fn mortys_updates(semantic: Option<&str>) -> Value {
    let todo = |id: &str, owner: &str| json!({"resource": {"type": "todo", "id": id, "properties": {"ownerID": owner}}});
    let mut body = json!({
        "subject": {"type": "user", "id": MORTY},
        "action": {"name": "can_update_todo"},
        "evaluations": [
            todo("t1", "morty@the-citadel.com"),
            todo("t2", "rick@the-citadel.com"),
            todo("t3", "morty@the-citadel.com"),
        ],
    });
    if let Some(semantic) = semantic {
        body["options"] = json!({"evaluations_semantic": semantic});
    }
    body
}

fn decisions(answer: &Value) -> Vec<bool> {
    answer["evaluations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["decision"].as_bool().unwrap())
        .collect()
}

#[tokio::test]
async fn evaluations_answer_in_order_and_stop_where_the_semantic_says() {
    let (server, _dir) = start(&TODO, ApiKeys::default()).await;
    let pep = Pep::new(&server, "/workloads/todo-backend");
    let path = "/access/v1/evaluations";
    for (semantic, expected) in [
        (None, vec![true, false, true]),
        (Some("execute_all"), vec![true, false, true]),
        (Some("deny_on_first_deny"), vec![true, false]),
        (Some("permit_on_first_permit"), vec![true]),
    ] {
        let answer = pep.decide(path, &mortys_updates(semantic)).await;
        assert_eq!(decisions(&answer), expected, "{semantic:?}: {answer}");
    }
    // The deny says why, and each answer has its own decision record.
    let answer = pep.decide(path, &mortys_updates(None)).await;
    let list = answer["evaluations"].as_array().unwrap();
    assert_eq!(list[1]["context"]["reasons"], json!(["no-permit"]));
    assert_ne!(
        list[0]["context"]["decision_id"],
        list[2]["context"]["decision_id"]
    );
    // No list, or an empty one: the defaults are one evaluation, answered
    // as the evaluation endpoint answers.
    let mut one = mortys_updates(None);
    one["resource"] = one["evaluations"][1]["resource"].clone();
    for list in [None, Some(json!([]))] {
        match list {
            None => one.as_object_mut().unwrap().remove("evaluations"),
            Some(list) => one
                .as_object_mut()
                .unwrap()
                .insert("evaluations".into(), list),
        };
        let answer = pep.decide(path, &one).await;
        assert_eq!(answer["decision"], false, "{answer}");
        assert!(answer.get("evaluations").is_none(), "{answer}");
    }
    server.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_requests_are_400_with_a_message_and_the_request_id_is_echoed() {
    let (server, _dir) = start(&TODO, ApiKeys::default()).await;
    let pep = Pep::new(&server, "/workloads/todo-backend");
    let url = format!("{}/access/v1/evaluation", pep.base);
    let good = json!({
        "subject": {"type": "user", "id": MORTY},
        "action": {"name": "can_read_todos"},
        "resource": {"type": "todo", "id": "t1"},
        "unknown": {"fields": "are ignored"},
    });
    let cases: Vec<(&str, &str, String, &str)> = vec![
        (
            "malformed JSON",
            "application/json",
            "{\"subject\":".into(),
            "not a JSON object",
        ),
        (
            "not an object",
            "application/json",
            "[1, 2]".into(),
            "invalid type",
        ),
        (
            "wrong content type",
            "text/plain",
            good.to_string(),
            "`Content-Type` must be `application/json`",
        ),
        (
            "a missing subject",
            "application/json",
            json!({"action": {"name": "x"}, "resource": {"type": "todo", "id": "1"}}).to_string(),
            "missing field `subject`",
        ),
        (
            "a mistyped id",
            "application/json",
            json!({"subject": {"type": "user", "id": 1}, "action": {"name": "x"},
                "resource": {"type": "todo", "id": "1"}})
            .to_string(),
            "invalid type: integer `1`, expected a string",
        ),
        (
            "an empty action name",
            "application/json",
            json!({"subject": {"type": "user", "id": "a"}, "action": {"name": ""},
                "resource": {"type": "todo", "id": "1"}})
            .to_string(),
            "`action.name` must not be empty",
        ),
    ];
    for (name, content_type, body, message) in cases {
        let response = pep
            .http
            .post(&url)
            .header("content-type", content_type)
            .header("x-request-id", "req-400")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{name}");
        assert_eq!(response.headers()["x-request-id"], "req-400", "{name}");
        let text = response.text().await.unwrap();
        assert!(text.contains(message), "{name}: {text}");
    }
    let response = pep
        .http
        .post(&url)
        .header("content-type", "application/json; charset=utf-8")
        .header("x-request-id", "bfe9eb29-ab87-4ca3-be83-a1d5d8305716")
        .body(good.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["x-request-id"],
        "bfe9eb29-ab87-4ca3-be83-a1d5d8305716"
    );
    let answer: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(answer["decision"], true, "{answer}");
    // A gap in a list without a default names the entry.
    let response = pep
        .post(
            "/access/v1/evaluations",
            &json!({"evaluations": [{"subject": {"type": "user", "id": "a"}, "action": {"name": "x"}}]}),
        )
        .await;
    assert_eq!(response.status(), 400);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("`evaluations[0].resource` is missing"),
    );
    // One evaluation over a limit refuses the list before any is decided.
    let mut deep = json!("leaf");
    for _ in 0..12 {
        deep = json!({ "nested": deep });
    }
    let mut over = mortys_updates(None);
    over["evaluations"][1]["context"] = json!({ "deep": deep });
    let response = pep.post("/access/v1/evaluations", &over).await;
    assert_eq!(response.status(), 400);
    let text = response.text().await.unwrap();
    assert!(text.starts_with("evaluations[1]: "), "{text}");
    assert!(text.contains("limits."), "{text}");
    // More evaluations than `max_batch_size` (4 in tests).
    let mut many = mortys_updates(None);
    many["evaluations"] = json!(vec![many["evaluations"][0].clone(); 5]);
    let response = pep.post("/access/v1/evaluations", &many).await;
    assert_eq!(response.status(), 400);
    assert!(response.text().await.unwrap().contains("max_batch_size"));
    server.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn what_cannot_be_mapped_or_asked_is_a_deny_with_a_reason() {
    let decision_log = tempfile::tempdir().unwrap();
    let log_file = decision_log.path().join("decisions.jsonl");
    let dir = scenario_dir(GATEWAY.dir);
    let mut policies_text = std::fs::read_to_string(dir.join("policies.cedar")).unwrap();
    // The gateway may also ask for plain `Mandate::User`s.
    policies_text.push_str(
        r#"
@id("gateway-checks-mandate-users")
permit (
  principal == Mandate::Workload::"spiffe://mandate.local/workloads/gateway",
  action == Mandate::Action::"check",
  resource is Todo::Route
)
when { context.subject has entity_type && context.subject.entity_type == "Mandate::User" };
"#,
    );
    let policies = common::policies_with(&[("scenario.cedar", &policies_text)]);
    let schema = scenario_schema(&GATEWAY, policies.path());
    let server = TestServer::start_with(Setup {
        policies: policies.path().to_owned(),
        schema: Some(schema),
        entities: Some(dir.join("entities.json")),
        decision_log: Some(log_file.clone()),
        authzen: Some(AuthzenSettings {
            listen: "127.0.0.1:0".parse().unwrap(),
            public_url: Some("https://pdp.example.test".into()),
            types: TypeMap {
                subjects: type_map(&[("user", "Mandate::User"), ("identity", "Todo::User")]),
                resources: type_map(GATEWAY.resources),
                actions: BTreeMap::new(),
            },
            api_keys: ApiKeys::default(),
        }),
        ..Setup::default()
    })
    .await;
    let gateway = Pep::new(&server, "/workloads/gateway");
    let ask = |subject: Value, action: &str| {
        json!({"subject": subject, "action": {"name": action},
            "resource": {"type": "route", "id": "/todos"}})
    };
    let rick = json!({"type": "identity", "id": "CiRmZDA2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs"});
    let cases = [
        (
            "an unknown subject type",
            ask(json!({"type": "robot", "id": "r2"}), "GET"),
            "unknown-subject-type",
        ),
        (
            "a workload subject that is no SPIFFE ID",
            ask(json!({"type": "workload", "id": "envoy"}), "GET"),
            "unknown-subject-type",
        ),
        (
            "an unknown action",
            ask(rick.clone(), "PATCH"),
            "unknown-action",
        ),
        (
            // `user` is `Mandate::User`, which the gateway's actions do not
            // apply to.
            "a Mandate::User where the schema wants a Todo::User",
            ask(json!({"type": "user", "id": "alice"}), "GET"),
            "invalid-request",
        ),
        (
            "an unknown resource type",
            json!({"subject": rick, "action": {"name": "GET"}, "resource": {"type": "page", "id": "/"}}),
            "unknown-resource-type",
        ),
        (
            "properties Cedar cannot hold",
            ask(
                json!({"type": "identity", "id": "x", "properties": {"n": 1.5}}),
                "GET",
            ),
            "invalid-properties",
        ),
    ];
    let mut ids = Vec::new();
    for (name, body, reason) in cases {
        let answer = gateway.decide("/access/v1/evaluation", &body).await;
        assert_eq!(answer["decision"], false, "{name}: {answer}");
        // The enforcement point's `check` comes first: a resource type the
        // schema does not declare fails there already.
        let reasons = answer["context"]["reasons"].as_array().unwrap();
        assert!(reasons.contains(&json!(reason)), "{name}: {answer}");
        ids.push(
            answer["context"]["decision_id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    // Another workload is no enforcement point for these subjects.
    let other = Pep::new(&server, "/workloads/admin");
    let answer = other
        .decide("/access/v1/evaluation", &ask(rick.clone(), "GET"))
        .await;
    assert_eq!(answer["decision"], false);
    assert_eq!(answer["context"]["reasons"][0], "not-an-enforcement-point");
    // The allow of the suite, for contrast, is recorded too.
    let allowed = gateway
        .decide("/access/v1/evaluation", &ask(rick, "GET"))
        .await;
    assert_eq!(allowed["decision"], true, "{allowed}");
    ids.push(
        allowed["context"]["decision_id"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    // The metadata names the published base URL and the endpoints.
    let metadata = gateway
        .http
        .get(format!(
            "{}/.well-known/authzen-configuration",
            gateway.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(metadata.headers()["content-type"], "application/json");
    let metadata: Value = serde_json::from_str(&metadata.text().await.unwrap()).unwrap();
    assert_eq!(
        metadata,
        json!({
            "policy_decision_point": "https://pdp.example.test",
            "access_evaluation_endpoint": "https://pdp.example.test/access/v1/evaluation",
            "access_evaluations_endpoint": "https://pdp.example.test/access/v1/evaluations",
            "search_subject_endpoint": "https://pdp.example.test/access/v1/search/subject",
            "search_resource_endpoint": "https://pdp.example.test/access/v1/search/resource",
            "search_action_endpoint": "https://pdp.example.test/access/v1/search/action",
            "access_request_endpoint": "https://pdp.example.test/access/v1/requests",
            "capabilities": ["urn:openid:authzen:capability:access-request"],
        })
    );
    server.server.shutdown().await.unwrap();
    // Every one of them was recorded like any other decision.
    let log = std::fs::read_to_string(&log_file).unwrap();
    for id in ids {
        assert!(log.contains(&id), "decision `{id}` is not in the log");
    }
}

#[tokio::test]
async fn a_caller_without_an_svid_is_refused_at_the_handshake() {
    let (server, _dir) = start(&GATEWAY, ApiKeys::default()).await;
    let addr = server.server.authzen_addr().unwrap();
    let refused = anonymous(&server)
        .get(format!("https://{addr}/.well-known/authzen-configuration"))
        .send()
        .await;
    assert!(refused.is_err(), "{refused:?}");
    server.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_agents_task_token_binds_to_its_forwarded_svid_as_on_grpc() {
    use common::party::{PATCHER, party_for, root_task, scope, token};
    let (server, _dir) = start(&GATEWAY, ApiKeys::default()).await;
    let patcher = PATCHER;
    let leaf = server.ca.svid("/agents/patcher");
    let read_delete = scope(&["read", "delete"], &["repos"], 1, 3600);
    let task = root_task(&server, patcher, read_delete).await.id;
    let token = token(&mut party_for(&server, &leaf).await, &task).await;
    // Envoy's SVID: the shipped policies let `enforcement-points` ask for
    // their trust domain's workloads whose SVID they forward.
    let envoy = Pep::new(&server, "/workloads/envoy");
    let ask = |properties: Value| {
        json!({
            "subject": {"type": "agent", "id": patcher, "properties": properties},
            "action": {"name": "read"},
            "resource": {"type": "Mandate::Resource", "id": "repos"},
        })
    };
    let cases = [
        (
            "the token with the SVID it is bound to",
            json!({"token": token, "certificate_pem": leaf.cert_pem}),
            None,
        ),
        (
            "the token with another SVID of the same agent",
            json!({"token": token, "certificate_pem": server.ca.svid("/agents/patcher").cert_pem}),
            Some("token-not-bound"),
        ),
        (
            "the token without the SVID",
            json!({"token": token}),
            Some("not-an-enforcement-point"),
        ),
        (
            "a token that is not a string",
            json!({"token": 7, "certificate_pem": leaf.cert_pem}),
            Some("invalid-properties"),
        ),
    ];
    for (name, properties, refused) in cases {
        let answer = envoy
            .decide("/access/v1/evaluation", &ask(properties))
            .await;
        match refused {
            None => assert_eq!(answer["decision"], true, "{name}: {answer}"),
            Some(reason) => {
                assert_eq!(answer["decision"], false, "{name}: {answer}");
                assert_eq!(answer["context"]["reasons"][0], reason, "{name}: {answer}");
            }
        }
    }
    // A delete needs a human's approval: a deny naming the pending
    // approval Mandate asked for.
    let answer = envoy
        .decide(
            "/access/v1/evaluation",
            &json!({
                "subject": {"type": "agent", "id": patcher,
                    "properties": {"token": token, "certificate_pem": leaf.cert_pem}},
                "action": {"name": "delete"},
                "resource": {"type": "Mandate::Resource", "id": "repo:acme/web"},
            }),
        )
        .await;
    assert_eq!(answer["decision"], false, "{answer}");
    let reasons = answer["context"]["reasons"].as_array().unwrap();
    assert!(reasons.contains(&json!("needs-approval")), "{answer}");
    let approval = answer["context"]["approval_id"].as_str().unwrap();
    let pending = server.approvals.get(approval).unwrap();
    assert_eq!(pending.subject.action, "delete");
    assert_eq!(pending.subject.resource_id, "repo:acme/web");
    server.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_api_key_stands_for_its_workload_and_policy_still_decides() {
    use sha2::Digest;
    let digest = |key: &str| -> [u8; 32] { sha2::Sha256::digest(key.as_bytes()).into() };
    let keys = ApiKeys::new([
        ApiKey {
            sha256: digest("todo-backend-key"),
            spiffe_id: mandate::identity::SpiffeId::new(
                "spiffe://mandate.local/workloads/todo-backend",
            )
            .unwrap(),
        },
        ApiKey {
            sha256: digest("admin-key"),
            spiffe_id: mandate::identity::SpiffeId::new("spiffe://mandate.local/workloads/admin")
                .unwrap(),
        },
    ]);
    let (server, _dir) = start(&TODO, keys).await;
    let addr = server.server.authzen_addr().unwrap();
    let url = format!("https://{addr}/access/v1/evaluation");
    let http = anonymous(&server);
    let ask = json!({
        "subject": {"type": "user", "id": MORTY},
        "action": {"name": "can_create_todo"},
        "resource": {"type": "todo", "id": "t1"},
    });
    let send = |authorization: Option<&'static str>| {
        let mut request = http
            .post(&url)
            .header("content-type", "application/json")
            .body(ask.to_string());
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        request.send()
    };
    // The Todo backend's key: the whole suite passes as with its SVID.
    let response = send(Some("Bearer todo-backend-key")).await.unwrap();
    assert_eq!(response.status(), 200);
    let answer: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(answer["decision"], true, "{answer}");
    let keyed = Pep {
        http: anonymous_builder(&server)
            .default_headers(
                [(
                    reqwest::header::AUTHORIZATION,
                    "todo-backend-key".parse().unwrap(),
                )]
                .into_iter()
                .collect(),
            )
            .build()
            .unwrap(),
        base: format!("https://{addr}"),
    };
    let (failures, ran) = run_evaluations(&keyed, &cases("todo")).await;
    assert_eq!(ran, 40);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The admin's key is a caller like the admin: no enforcement point for
    // the Todo users.
    let response = send(Some("Bearer admin-key")).await.unwrap();
    let answer: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(answer["decision"], false, "{answer}");
    assert_eq!(answer["context"]["reasons"][0], "not-an-enforcement-point");
    // No key, or an unknown one: 401 with a message.
    for authorization in [None, Some("Bearer guessed"), Some("Bearer ")] {
        let response = send(authorization).await.unwrap();
        assert_eq!(response.status(), 401, "{authorization:?}");
        assert!(!response.text().await.unwrap().is_empty());
    }
    // A client SVID still works, and is verified in full: a stranger's
    // certificate fails the handshake.
    let pep = Pep::new(&server, "/workloads/todo-backend");
    assert_eq!(
        pep.decide("/access/v1/evaluation", &ask).await["decision"],
        true
    );
    let stranger = common::TestCa::new("mandate.local").svid("/workloads/todo-backend");
    let forged = client(&server, &stranger, false);
    assert!(
        forged
            .post(&url)
            .body(ask.to_string())
            .send()
            .await
            .is_err()
    );
    server.server.shutdown().await.unwrap();
}

/// The Search suite's cases of one API: failures, and how many ran.
async fn run_searches(pep: &Pep, api: &str) -> (Vec<String>, usize) {
    let text = std::fs::read_to_string(scenario_dir("search").join(format!("{api}.json"))).unwrap();
    let suite: Value = serde_json::from_str(&text).unwrap();
    let sorted = |results: &Value| {
        let mut list: Vec<String> = results
            .as_array()
            .unwrap()
            .iter()
            .map(Value::to_string)
            .collect();
        list.sort();
        list
    };
    let mut failures = Vec::new();
    let cases = suite["evaluation"].as_array().unwrap();
    for case in cases {
        let answer = pep
            .decide(&format!("/access/v1/search/{api}"), &case["request"])
            .await;
        if sorted(&answer["results"]) != sorted(&case["expected"]["results"]) {
            failures.push(format!(
                "{} -> {} (expected {})",
                case["request"], answer["results"], case["expected"]["results"]
            ));
        }
    }
    (failures, cases.len())
}

#[tokio::test]
async fn the_search_interop_suite_passes() {
    let (server, _dir) = start(&SEARCH, ApiKeys::default()).await;
    let pep = Pep::new(&server, "/workloads/search-app");
    let mut failures = Vec::new();
    let mut ran = 0;
    for api in ["subject", "resource", "action"] {
        let (failed, count) = run_searches(&pep, api).await;
        failures.extend(failed);
        ran += count;
    }
    assert_eq!(ran, 198, "the suite has 198 cases");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    server.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn search_pages_follow_each_other_to_the_whole_result() {
    let (server, _dir) = start(&SEARCH, ApiKeys::default()).await;
    let pep = Pep::new(&server, "/workloads/search-app");
    let mut ask = json!({
        "subject": {"type": "user", "id": "alice"},
        "action": {"name": "view"},
        "resource": {"type": "record"},
    });
    let whole = pep.decide("/access/v1/search/resource", &ask).await;
    assert_eq!(whole["page"]["next_token"], "");
    let all = whole["results"].as_array().unwrap().clone();
    assert_eq!(all.len(), 20, "a manager views every record");
    let mut paged = Vec::new();
    ask["page"] = json!({"limit": 7});
    for round in 0.. {
        assert!(round < 5, "pages do not end");
        let page = pep.decide("/access/v1/search/resource", &ask).await;
        let results = page["results"].as_array().unwrap();
        assert!(results.len() <= 7);
        assert_eq!(page["page"]["count"], results.len());
        assert_eq!(page["page"]["total"], 20);
        paged.extend(results.iter().cloned());
        let next = page["page"]["next_token"].as_str().unwrap();
        if next.is_empty() {
            break;
        }
        ask["page"]["token"] = json!(next);
    }
    assert_eq!(paged, all);
    // A token used on another search is a 400.
    let first = pep
        .decide(
            "/access/v1/search/resource",
            &json!({"subject": {"type": "user", "id": "alice"}, "action": {"name": "view"},
                "resource": {"type": "record"}, "page": {"limit": 7}}),
        )
        .await;
    let token = first["page"]["next_token"].clone();
    let response = pep
        .post(
            "/access/v1/search/resource",
            &json!({"subject": {"type": "user", "id": "bob"}, "action": {"name": "view"},
                "resource": {"type": "record"}, "page": {"limit": 7, "token": token}}),
        )
        .await;
    assert_eq!(response.status(), 400);
    // The metadata publishes the search endpoints.
    let metadata = pep
        .http
        .get(format!("{}/.well-known/authzen-configuration", pep.base))
        .send()
        .await
        .unwrap();
    let metadata: Value = serde_json::from_str(&metadata.text().await.unwrap()).unwrap();
    for key in [
        "search_subject_endpoint",
        "search_resource_endpoint",
        "search_action_endpoint",
    ] {
        assert!(
            metadata[key].as_str().unwrap().starts_with("https://"),
            "{metadata}"
        );
    }
    server.server.shutdown().await.unwrap();
}
