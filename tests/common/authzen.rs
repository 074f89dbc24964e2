//! The AuthZEN door of a real server: the interop scenarios (schema,
//! policies, entities and type map of each) and an enforcement point's
//! HTTPS client over mTLS.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mandate::api::authzen::{ApiKeys, AuthzenSettings, TypeMap};
use serde_json::Value;

use super::{Leaf, Setup, TestServer, repo};

/// One interop scenario: its directory under tests/authzen, the resource
/// types its enforcement point may `check`, and its type map.
pub struct Scenario {
    pub dir: &'static str,
    pub checked_types: &'static str,
    pub subjects: &'static [(&'static str, &'static str)],
    pub resources: &'static [(&'static str, &'static str)],
    pub actions: &'static [(&'static str, &'static str)],
}

pub const TODO: Scenario = Scenario {
    dir: "todo",
    checked_types: "Todo::User, Todo::Todo",
    subjects: &[("user", "Todo::User")],
    resources: &[("user", "Todo::User"), ("todo", "Todo::Todo")],
    actions: &[],
};

pub const GATEWAY: Scenario = Scenario {
    dir: "gateway",
    checked_types: "Todo::Route",
    subjects: &[("identity", "Todo::User")],
    resources: &[("route", "Todo::Route")],
    actions: &[],
};

pub const SEARCH: Scenario = Scenario {
    dir: "search",
    checked_types: "Search::Record",
    subjects: &[("user", "Search::User")],
    resources: &[("record", "Search::Record")],
    actions: &[("delete", "delete_record")],
};

pub fn scenario_dir(name: &str) -> PathBuf {
    repo().join("tests/authzen").join(name)
}

/// Mandate's schema with the scenario's actions in its namespace, its
/// types beside it, and `check` applying to its resources: what a user
/// schema for the scenario looks like.
pub fn scenario_schema(scenario: &Scenario, into: &Path) -> PathBuf {
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

pub fn type_map(pairs: &[(&str, &str)]) -> BTreeMap<String, cedar_policy::EntityTypeName> {
    pairs
        .iter()
        .map(|(a, c)| ((*a).to_owned(), c.parse().unwrap()))
        .collect()
}

/// A server with the shipped policies plus the scenario's, its schema and
/// entities, and AuthZEN on.
pub async fn start(scenario: &Scenario, api_keys: ApiKeys) -> (TestServer, tempfile::TempDir) {
    let dir = scenario_dir(scenario.dir);
    let policies_text = std::fs::read_to_string(dir.join("policies.cedar")).unwrap();
    let policies = super::policies_with(&[("scenario.cedar", policies_text.as_str())]);
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
                actions: scenario
                    .actions
                    .iter()
                    .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                    .collect(),
            },
            api_keys,
        }),
        ..Setup::default()
    })
    .await;
    (server, policies)
}

/// An HTTPS client presenting `leaf`, accepting the server by its SVID;
/// HTTP/2 only when `h2`.
pub fn client(server: &TestServer, leaf: &Leaf, h2: bool) -> reqwest::Client {
    let alpn: &[u8] = if h2 { b"h2" } else { b"http/1.1" };
    let config = super::tls::client(server, Some(leaf), &[alpn]);
    let builder = reqwest::Client::builder().use_preconfigured_tls(config);
    let builder = if h2 {
        builder.http2_prior_knowledge()
    } else {
        builder.http1_only()
    };
    builder.build().unwrap()
}

/// An enforcement point's client.
pub struct Pep {
    pub http: reqwest::Client,
    pub base: String,
}

impl Pep {
    pub fn new(server: &TestServer, path: &str) -> Self {
        Self::over(server, path, false)
    }

    pub fn over(server: &TestServer, path: &str, h2: bool) -> Self {
        let addr = server.server.authzen_addr().expect("authzen is on");
        Self {
            http: client(server, &server.ca.svid(path), h2),
            base: format!("https://{addr}"),
        }
    }

    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }

    /// A 200 answer's JSON.
    pub async fn decide(&self, path: &str, body: &Value) -> Value {
        let response = self.post(path, body).await;
        let status = response.status();
        let text = response.text().await.unwrap();
        assert_eq!(status, 200, "{path} {body}: {text}");
        serde_json::from_str(&text).unwrap()
    }
}

/// An HTTPS client presenting no certificate.
pub fn anonymous(server: &TestServer) -> reqwest::Client {
    anonymous_builder(server).build().unwrap()
}

/// [`anonymous`], to be configured further.
pub fn anonymous_builder(server: &TestServer) -> reqwest::ClientBuilder {
    reqwest::Client::builder().use_preconfigured_tls(super::tls::client(server, None, &[]))
}
