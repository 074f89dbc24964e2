//! Exposure of agent configuration and secrets: nothing secret in the
//! tokens an agent carries (and hands to every tool it calls), in the logs,
//! in the audit trail or in error messages.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mandate::api::v1::{
    AgentEntry, AuthorizeRequest, DelegateTaskRequest, Entry, IssueTaskTokenRequest, Resource,
    UpdateRequest, entry,
};
use mandate::audit::{AuditSettings, Redaction};
use mandate::integrity::agent_checksum;
use prost_types::value::Kind;

use crate::common::party::*;
use crate::common::{Leaf, Setup, TestServer};

/// Strings that appear only in the agent's prompt, tools and model
/// config: Mandate is only ever given their checksum.
const PROMPT: &str = "You fix builds. PROMPT-MARKER-7f3a";
const TOOL: &str = "TOOL-MARKER-91cc";
const CONFIG: &str = "CONFIG-MARKER-55d0";
/// A context value the deployment marks as secret (`redaction`).
const TICKET: &str = "TICKET-SECRET-4242";

fn checksum() -> String {
    agent_checksum(
        PROMPT,
        &serde_json::json!([{ "name": TOOL }]),
        &serde_json::json!({ "model": "m-1", "system": CONFIG }),
    )
    .unwrap()
}

async fn register(server: &TestServer, checksum: &str) {
    let mut admin = party(server, "/workloads/admin").await;
    admin
        .registry
        .update(UpdateRequest {
            entry: Some(Entry {
                entry: Some(entry::Entry::Agent(AgentEntry {
                    spiffe_id: PATCHER.into(),
                    checksum: checksum.into(),
                    class: "coding".into(),
                    ..Default::default()
                })),
            }),
        })
        .await
        .unwrap();
}

async fn token_with_proof(
    agent: &mut Party,
    task: &str,
    proof: &str,
) -> Result<String, tonic::Status> {
    agent
        .tasks
        .issue_task_token(IssueTaskTokenRequest {
            task_id: task.into(),
            ttl_seconds: 0,
            agent_proof: proof.into(),
        })
        .await
        .map(|r| r.into_inner().token)
}

fn decode(part: &str) -> serde_json::Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

fn keys(value: &serde_json::Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

#[tokio::test]
async fn a_token_carries_ids_the_checksum_and_the_binding_but_no_configuration() {
    let server = TestServer::start().await;
    let proof = checksum();
    register(&server, &proof).await;
    let task = patcher_task(&server).await;
    let svid = server.ca.svid("/agents/patcher");
    let mut patcher = party_for(&server, &svid).await;
    let t = token_with_proof(&mut patcher, &task.id, &proof)
        .await
        .unwrap();
    let parts: Vec<&str> = t.split('.').collect();
    assert_eq!(parts.len(), 3, "a compact JWS");
    let (header, claims) = (decode(parts[0]), decode(parts[1]));

    assert_eq!(keys(&header), ["alg", "kid", "typ"], "{header}");
    assert_eq!(
        keys(&claims),
        [
            "act",
            "agent_proof",
            "aud",
            "cnf",
            "exp",
            "iat",
            "intent",
            "iss",
            "jti",
            "nbf",
            "sub",
            "task"
        ],
        "{claims}"
    );
    assert_eq!(claims["sub"], PATCHER);
    assert_eq!(claims["task"], task.id.as_str());
    // The task's intent, as its delegator wrote it (see docs/threats.md:
    // tokens are signed, not encrypted).
    assert_eq!(claims["intent"], task.intent.as_str());
    // The proof is the checksum, not what it was computed from.
    assert_eq!(claims["agent_proof"], proof.as_str());
    let text = claims.to_string();
    for marker in [
        PROMPT,
        TOOL,
        CONFIG,
        "PROMPT-MARKER",
        "TOOL-MARKER",
        "CONFIG-MARKER",
    ] {
        assert!(!text.contains(marker), "`{marker}` in the token: {text}");
    }
    // The binding is a hash of the public certificate, nothing of the key.
    assert_eq!(keys(&claims["cnf"]), ["x5t#S256"], "{claims}");
    assert_eq!(
        claims["cnf"]["x5t#S256"],
        mandate::credential::thumbprint(svid.cert.as_ref()).as_str()
    );
    // Only ids in the actor chain.
    assert_eq!(keys(&claims["act"]), ["act", "sub"], "{claims}");
}

#[tokio::test]
async fn the_published_signing_keys_are_public_only() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start().await;
    // Keys are made when the first token is signed.
    let task = patcher_task(&server).await;
    let mut patcher = party(&server, "/agents/patcher").await;
    token(&mut patcher, &task.id).await;
    let mut tcp = tokio::net::TcpStream::connect(server.server.http_addr())
        .await
        .unwrap();
    tcp.write_all(b"GET /.well-known/jwks.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.unwrap();
    let body = response.split_once("\r\n\r\n").unwrap().1;
    let jwks: serde_json::Value = serde_json::from_str(body).unwrap();
    let published = jwks["keys"].as_array().unwrap();
    assert!(!published.is_empty(), "{jwks}");
    for key in published {
        // `d` is the private part of an OKP (Ed25519) JWK.
        assert!(key.get("d").is_none(), "a private key is published: {key}");
        assert_eq!(key["kty"], "OKP", "{key}");
    }
}

/// Every log line any test of this binary writes while it runs: Mandate's
/// own events at every level, dependencies at the default `info`, as JSON
/// (all fields).
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink = buffer.clone();
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(tracing_subscriber::EnvFilter::new("info,mandate=trace"))
            .with_writer(move || Capture(sink.clone()))
            .try_init()
            .expect("the only subscriber of this test binary");
        buffer
    })
    .clone()
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The base64 body of a PEM private key, the part that must never show.
fn key_body(leaf: &Leaf) -> String {
    leaf.key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect()
}

fn with_ticket(value: Kind) -> prost_types::Struct {
    prost_types::Struct {
        fields: [(
            "ticket".to_owned(),
            prost_types::Value { kind: Some(value) },
        )]
        .into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_and_the_audit_trail_hold_no_token_key_or_redacted_value() {
    let logs = captured_logs();
    let dir = tempfile::tempdir().unwrap();
    let trail = dir.path().join("decisions.jsonl");
    let server = TestServer::start_with(Setup {
        decision_log: Some(trail.clone()),
        audit: AuditSettings {
            redaction: Redaction::new(["ticket".to_owned()], []),
            ..AuditSettings::default()
        },
        ..Setup::default()
    })
    .await;
    let proof = checksum();
    register(&server, &proof).await;
    let task = root_task(
        &server,
        PATCHER,
        scope(&["read", "delete"], &["repos"], 1, 3600),
    )
    .await;
    let svid = server.ca.svid("/agents/patcher");
    let mut patcher = party_for(&server, &svid).await;
    let t = token_with_proof(&mut patcher, &task.id, &proof)
        .await
        .unwrap();

    // An allowed call and a needs-approval with the secret ticket...
    for action in ["read", "delete"] {
        let r = patcher
            .authz
            .authorize(AuthorizeRequest {
                action: action.into(),
                resource: Some(Resource {
                    r#type: String::new(),
                    id: "repo:acme/payments".into(),
                }),
                token: t.clone(),
                context: Some(with_ticket(Kind::StringValue(TICKET.into()))),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(r.reasons.iter().all(|x| x != "invalid-context"), "{r:?}");
    }
    // ...and the ticket in shapes the schema refuses, with and without a
    // token: Cedar's error message then quotes the whole context.
    let mut admin = party(&server, "/workloads/admin").await;
    let not_a_string = || {
        with_ticket(Kind::StructValue(prost_types::Struct {
            fields: [(
                "id".to_owned(),
                prost_types::Value {
                    kind: Some(Kind::StringValue(TICKET.into())),
                },
            )]
            .into(),
        }))
    };
    for (caller, token) in [(&mut patcher, t.clone()), (&mut admin, String::new())] {
        let r = caller
            .authz
            .authorize(AuthorizeRequest {
                action: "read".into(),
                resource: Some(Resource {
                    r#type: String::new(),
                    id: "repo:acme/payments".into(),
                }),
                token,
                context: Some(not_a_string()),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_denied(&r, "invalid-context", "a ticket that is not a string");
    }
    // ...the token stolen, edited, and a tampered build asking for more.
    let mut reviewer = party(&server, "/agents/reviewer").await;
    let stolen = call(&mut reviewer, &t, "read", "repo:acme/payments").await;
    assert_denied(&stolen, "token-subject-mismatch", "the stolen token");
    let edited = format!("{}x", t);
    let r = call(&mut patcher, &edited, "read", "repo:acme/payments").await;
    assert_eq!(decision(&r), mandate::api::v1::Decision::Deny, "{r:?}");
    let tampered = agent_checksum(PROMPT, &serde_json::json!([]), &serde_json::json!({})).unwrap();
    token_with_proof(&mut patcher, &task.id, &tampered)
        .await
        .unwrap_err();

    server.server.shutdown().await.unwrap();
    let audit = std::fs::read_to_string(&trail).unwrap();
    let logs = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    assert!(audit.contains(&task.id), "the trail recorded this test");
    assert!(logs.contains(&task.id), "the logs captured this test");
    let signature = t.rsplit('.').next().unwrap();
    for (name, text) in [("audit trail", &audit), ("logs", &logs)] {
        assert!(!text.contains(&t), "the token in the {name}");
        assert!(
            !text.contains(signature),
            "the token's signature in the {name}"
        );
        assert!(
            !text.contains("PRIVATE KEY"),
            "a PEM private key in the {name}"
        );
        assert!(
            !text.contains(&key_body(&svid)),
            "the agent's key in the {name}"
        );
        assert!(!text.contains(TICKET), "the redacted ticket in the {name}");
    }
    // The refused tickets are recorded with their reason, without the
    // error text that quoted them.
    assert!(audit.contains(mandate::audit::REDACTED_ERROR), "{audit}");
    // Records never hold the registered checksum (an agent that read it
    // could replay it as its proof).
    assert!(
        !audit.contains(&proof),
        "the registered checksum in the audit trail"
    );
}

#[tokio::test]
async fn error_messages_hold_no_secret() {
    let server = TestServer::start().await;
    let proof = checksum();
    register(&server, &proof).await;
    let task = patcher_task(&server).await;
    let mut patcher = party(&server, "/agents/patcher").await;
    let t = token_with_proof(&mut patcher, &task.id, &proof)
        .await
        .unwrap();
    let wrong = agent_checksum(PROMPT, &serde_json::json!([]), &serde_json::json!({})).unwrap();

    // The registered checksum is what a tampered agent would need: no
    // refusal may tell it.
    let issue = token_with_proof(&mut patcher, &task.id, &wrong)
        .await
        .unwrap_err();
    let delegation = patcher
        .tasks
        .delegate_task(DelegateTaskRequest {
            parent_id: task.id.clone(),
            intent: "review".into(),
            delegatee: REVIEWER.into(),
            scope: Some(scope(&["read"], &["repos"], 1, 600)),
            agent_proof: wrong.clone(),
        })
        .await
        .unwrap_err();
    for status in [&issue, &delegation] {
        assert_eq!(
            crate::common::error_reason(status),
            "agent-checksum-mismatch",
            "{status:?}"
        );
        assert!(!status.message().contains(&proof), "{status:?}");
    }
    let no_token = call(&mut patcher, "", "read", "handbook").await;
    assert_denied(&no_token, "agent-proof-required", "a call without a token");
    // A re-registration retires the token; the deny does not say to what.
    let rebuilt = agent_checksum(
        "another prompt",
        &serde_json::json!([]),
        &serde_json::json!({}),
    )
    .unwrap();
    register(&server, &rebuilt).await;
    let retired = call(&mut patcher, &t, "read", "repo:acme/payments").await;
    assert_denied(&retired, "agent-checksum-mismatch", "a retired token");
    // Denials of a token never echo it back, whoever presents it.
    let mut reviewer = party(&server, "/agents/reviewer").await;
    let stolen = call(&mut reviewer, &t, "read", "repo:acme/payments").await;
    let signature = t.rsplit('.').next().unwrap();
    for r in [&no_token, &retired, &stolen] {
        let text = format!("{:?} {:?}", r.errors, r.reasons);
        assert!(!text.contains(&proof) && !text.contains(&rebuilt), "{text}");
        assert!(!text.contains(signature), "{text}");
    }
}
