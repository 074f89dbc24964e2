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
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::{Leaf, Setup, TestServer, repo};
use mandate::api::authzen::{AuthzenSettings, TypeMap};
use serde_json::{Value, json};

/// One interop scenario: its directory under tests/authzen, the resource
/// types its enforcement point may `check`, and its type map.
struct Scenario {
    dir: &'static str,
    checked_types: &'static str,
    subjects: &'static [(&'static str, &'static str)],
    resources: &'static [(&'static str, &'static str)],
}

const TODO: Scenario = Scenario {
    dir: "todo",
    checked_types: "Todo::User, Todo::Todo",
    subjects: &[("user", "Todo::User")],
    resources: &[("user", "Todo::User"), ("todo", "Todo::Todo")],
};

const GATEWAY: Scenario = Scenario {
    dir: "gateway",
    checked_types: "Todo::Route",
    subjects: &[("identity", "Todo::User")],
    resources: &[("route", "Todo::Route")],
};

fn scenario_dir(name: &str) -> PathBuf {
    repo().join("tests/authzen").join(name)
}

/// Mandate's schema with the scenario's actions in its namespace, its
/// types beside it, and `check` applying to its resources: what a user
/// schema for the scenario looks like.
fn scenario_schema(scenario: &Scenario, into: &Path) -> PathBuf {
    let dir = scenario_dir(scenario.dir);
    let base = std::fs::read_to_string(repo().join("schemas/mandate.cedarschema")).unwrap();
    let check =
        "  action check appliesTo {\n    principal: [Agent, Workload],\n    resource: [Resource],";
    assert!(base.contains(check), "the shipped schema's `check` changed");
    let base = base.replace(
        check,
        &format!(
            "  action check appliesTo {{\n    principal: [Agent, Workload],\n    resource: [Resource, {}],",
            scenario.checked_types
        ),
    );
    let end = base.rfind('}').unwrap();
    let actions = std::fs::read_to_string(dir.join("actions.cedarschema")).unwrap();
    let types = std::fs::read_to_string(dir.join("types.cedarschema")).unwrap();
    let schema = format!("{}{actions}}}\n\n{types}", &base[..end]);
    let path = into.join("schema.cedarschema");
    std::fs::write(&path, schema).unwrap();
    path
}

fn type_map(pairs: &[(&str, &str)]) -> BTreeMap<String, cedar_policy::EntityTypeName> {
    pairs
        .iter()
        .map(|(a, c)| ((*a).to_owned(), c.parse().unwrap()))
        .collect()
}

/// A server with the shipped policies plus the scenario's, its schema and
/// entities, and AuthZEN on.
async fn start(scenario: &Scenario, extra: &[(&str, &str)]) -> (TestServer, tempfile::TempDir) {
    let dir = scenario_dir(scenario.dir);
    let policies_text = std::fs::read_to_string(dir.join("policies.cedar")).unwrap();
    let mut files = vec![("scenario.cedar", policies_text.as_str())];
    files.extend_from_slice(extra);
    let policies = common::policies_with(&files);
    // Beside the policies: only `*.cedar` files are policies.
    let schema = scenario_schema(scenario, policies.path());
    let server = TestServer::start_with(Setup {
        policies: policies.path().to_owned(),
        schema: Some(schema),
        entities: Some(dir.join("entities.json")),
        authzen: Some(AuthzenSettings {
            listen: "127.0.0.1:0".parse().unwrap(),
            public_url: None,
            types: TypeMap {
                // As `[authzen.subject_types]` resolves: the default
                // `user`, then the scenario's.
                subjects: type_map(&[("user", "Mandate::User")])
                    .into_iter()
                    .chain(type_map(scenario.subjects))
                    .collect(),
                resources: type_map(scenario.resources),
            },
        }),
        ..Setup::default()
    })
    .await;
    (server, policies)
}

/// An HTTPS client presenting `leaf`, accepting the server by its SVID;
/// HTTP/2 only when `h2`.
fn client(server: &TestServer, leaf: &Leaf, h2: bool) -> reqwest::Client {
    let verifier = Arc::new(mandate::identity::SpiffeServerVerifier::new(
        Arc::new(server.ca.bundles()),
        Some(mandate::identity::SpiffeId::new("spiffe://mandate.local/mandate").unwrap()),
    ));
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(verifier)
    .with_client_auth_cert(vec![leaf.cert.clone()], leaf.key.clone_key())
    .unwrap();
    config.alpn_protocols = if h2 {
        vec![b"h2".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    let builder = reqwest::Client::builder().use_preconfigured_tls(config);
    let builder = if h2 {
        builder.http2_prior_knowledge()
    } else {
        builder.http1_only()
    };
    builder.build().unwrap()
}

/// An enforcement point's client.
struct Pep {
    http: reqwest::Client,
    base: String,
}

impl Pep {
    fn new(server: &TestServer, path: &str) -> Self {
        Self::over(server, path, false)
    }

    fn over(server: &TestServer, path: &str, h2: bool) -> Self {
        let addr = server.server.authzen_addr().expect("authzen is on");
        Self {
            http: client(server, &server.ca.svid(path), h2),
            base: format!("https://{addr}"),
        }
    }

    async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }

    /// A 200 answer's JSON.
    async fn decide(&self, path: &str, body: &Value) -> Value {
        let response = self.post(path, body).await;
        let status = response.status();
        let text = response.text().await.unwrap();
        assert_eq!(status, 200, "{path} {body}: {text}");
        serde_json::from_str(&text).unwrap()
    }
}

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
    let (server, _dir) = start(&TODO, &[]).await;
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
    let (server, _dir) = start(&GATEWAY, &[]).await;
    let pep = Pep::over(&server, "/workloads/gateway", true);
    let (failures, ran) = run_evaluations(&pep, &cases("gateway")).await;
    assert_eq!(ran, 25, "the suite has 25 cases");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    server.server.shutdown().await.unwrap();
}
