//! The registry, sensitivity and agent integrity through the real server
//! over mTLS: writes authorized by Cedar, live effect on decisions,
//! inherited sensitivity, trust domains, agent classes and checksums.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

mod common;

use common::TestServer;
use common::party::*;
use mandate::api::v1::{
    AgentEntry, Decision, DelegateTaskRequest, Entry, EntryKind, GroupEntry, IssueTaskTokenRequest,
    ListRequest, RegisterRequest, RemoveRequest, ResourceEntry, TaskScope, UpdateRequest,
    WorkloadEntry, entry,
};
use mandate::integrity::agent_checksum;
use tonic::Code;

fn resource(id: &str, parent: &str, sensitivity: &str) -> Entry {
    Entry {
        entry: Some(entry::Entry::Resource(ResourceEntry {
            id: id.into(),
            parent: parent.into(),
            sensitivity: sensitivity.into(),
            ..Default::default()
        })),
    }
}

fn agent(spiffe_id: &str, checksum: &str, class: &str) -> Entry {
    Entry {
        entry: Some(entry::Entry::Agent(AgentEntry {
            spiffe_id: spiffe_id.into(),
            checksum: checksum.into(),
            class: class.into(),
            ..Default::default()
        })),
    }
}

/// A task from the frontend for alice, delegated to `delegatee`.
async fn task(frontend: &mut Party, delegatee: &str, resources: &[&str], max: i64) -> String {
    create_root(frontend, delegatee, scope(&["read"], resources, max, 3600))
        .await
        .id
}

async fn token(agent: &mut Party, task: &str, proof: &str) -> Result<String, tonic::Status> {
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

#[tokio::test]
async fn registry_writes_are_authorized_and_take_effect_on_the_next_decision() {
    let server = TestServer::start().await;
    let mut admin = party(&server, "/workloads/admin").await;
    let mut patcher = party(&server, "/agents/patcher").await;

    // An unregistered resource is nothing an agent may read.
    let r = call(&mut patcher, "", "read", "wiki").await;
    assert_eq!(decision(&r), Decision::Deny, "{r:?}");

    // Agents may not write the registry.
    let status = patcher
        .registry
        .register(RegisterRequest {
            entry: Some(resource("wiki", "", "public")),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    let before = server.graph.revision();
    let revision = admin
        .registry
        .register(RegisterRequest {
            entry: Some(resource("wiki", "", "public")),
        })
        .await
        .unwrap()
        .into_inner()
        .revision;
    assert!(revision > before);
    let r = call(&mut patcher, "", "read", "wiki").await;
    assert_eq!(decision(&r), Decision::Allow, "{r:?}");
    assert!(r.revision >= revision);

    // Raising its sensitivity denies the very next read.
    admin
        .registry
        .update(UpdateRequest {
            entry: Some(resource("wiki", "", "confidential")),
        })
        .await
        .unwrap();
    let r = call(&mut patcher, "", "read", "wiki").await;
    assert_eq!(decision(&r), Decision::Deny, "{r:?}");

    let status = admin
        .registry
        .register(RegisterRequest {
            entry: Some(resource("wiki", "", "public")),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
    let status = admin
        .registry
        .update(UpdateRequest {
            entry: Some(resource("nope", "", "public")),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    let status = assert_refused(
        admin
            .registry
            .register(RegisterRequest {
                entry: Some(resource("orphan", "no-such-parent", "")),
            })
            .await,
        Code::InvalidArgument,
        "invalid-entry",
        "an entry under a parent that does not exist",
    );
    assert!(status.message().contains("no-such-parent"), "{status:?}");
    let status = admin
        .registry
        .register(RegisterRequest {
            entry: Some(resource("loud", "", "top-secret")),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("not on the scale"), "{status:?}");

    // An agent's SPIFFE ID cannot be registered as a workload: it would
    // escape every policy written for agents.
    let status = admin
        .registry
        .register(RegisterRequest {
            entry: Some(Entry {
                entry: Some(entry::Entry::Workload(WorkloadEntry {
                    spiffe_id: "spiffe://mandate.local/agents/sneaky".into(),
                    groups: Vec::new(),
                })),
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    // `repos` has children: it cannot go.
    let status = admin
        .registry
        .remove(RemoveRequest {
            kind: EntryKind::Resource as i32,
            id: "repos".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(
        status.message().contains("repo:acme/payments"),
        "{status:?}"
    );

    // Nobody joins `operators` through the API, not even an operator.
    let status = admin
        .registry
        .register(RegisterRequest {
            entry: Some(Entry {
                entry: Some(entry::Entry::Group(GroupEntry {
                    id: "root".into(),
                    groups: vec!["operators".into()],
                })),
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status
            .message()
            .contains("operators-group-only-from-the-catalog"),
        "{status:?}"
    );
}

#[tokio::test]
async fn listing_shows_only_what_the_caller_may_inspect() {
    let server = TestServer::start().await;
    let mut admin = party(&server, "/workloads/admin").await;
    let mut patcher = party(&server, "/agents/patcher").await;
    let list = |kind: EntryKind| ListRequest {
        kind: kind as i32,
        page_size: 2,
        page_token: String::new(),
    };
    let page = admin
        .registry
        .list(list(EntryKind::Agent))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.entries.len(), 2);
    assert!(!page.next_page_token.is_empty());
    let rest = admin
        .registry
        .list(ListRequest {
            page_token: page.next_page_token,
            ..list(EntryKind::Agent)
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.entries.len(), 1);

    // An agent sees its own registration, no one else's.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = patcher
            .registry
            .list(ListRequest {
                page_token: token,
                ..list(EntryKind::Agent)
            })
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.entries);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let ids: Vec<_> = seen
        .iter()
        .map(|e| match &e.entry {
            Some(entry::Entry::Agent(a)) => a.spiffe_id.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(ids, [PATCHER]);
    let status = admin
        .registry
        .list(list(EntryKind::Unspecified))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn sensitivity_is_capped_by_the_task_and_inherited_from_parents() {
    let server = TestServer::start().await;
    let mut frontend = party(&server, "/workloads/frontend").await;
    let mut patcher = party(&server, "/agents/patcher").await;

    // Cap 1 (internal). `repo:acme/payments` has no level of its own and
    // inherits `internal` from `repos`: equal to the cap, allowed.
    let at_cap = task(&mut frontend, PATCHER, &["repos", "customer-db"], 1).await;
    let token1 = token(&mut patcher, &at_cap, "").await.unwrap();
    let r = call(&mut patcher, &token1, "read", "repo:acme/payments").await;
    assert_eq!(decision(&r), Decision::Allow, "{r:?}");
    // `customer-db` is confidential (2): one above the cap.
    let r = call(&mut patcher, &token1, "read", "customer-db").await;
    assert_eq!(decision(&r), Decision::Deny, "{r:?}");
    assert!(
        r.determining_policies
            .contains(&"mandate.guard.sensitivity-above-max".to_owned()),
        "{r:?}"
    );

    // Cap 0 (public): the inherited `internal` is now above it.
    let below = task(&mut frontend, PATCHER, &["repos"], 0).await;
    let token0 = token(&mut patcher, &below, "").await.unwrap();
    let r = call(&mut patcher, &token0, "read", "repo:acme/payments").await;
    assert_eq!(decision(&r), Decision::Deny, "{r:?}");
    assert!(
        r.determining_policies
            .contains(&"mandate.guard.sensitivity-above-max".to_owned()),
        "{r:?}"
    );
}

#[tokio::test]
async fn another_trust_domain_is_kept_from_confidential_data() {
    let server = TestServer::start().await;
    let mut admin = party(&server, "/workloads/admin").await;
    // Operators may read anything of their own trust domain...
    let r = call(&mut admin, "", "read", "customer-db").await;
    assert_eq!(decision(&r), Decision::Allow, "{r:?}");
    // ...but `partner:orders` belongs to `partner.example`.
    let r = call(&mut admin, "", "read", "partner:orders").await;
    assert_eq!(decision(&r), Decision::Deny, "{r:?}");
    assert_eq!(
        r.determining_policies,
        ["no-cross-trust-domain-confidential"]
    );
    // Made internal, the cross-domain read is allowed again.
    admin
        .registry
        .update(UpdateRequest {
            entry: Some(Entry {
                entry: Some(entry::Entry::Resource(ResourceEntry {
                    id: "partner:orders".into(),
                    sensitivity: "internal".into(),
                    trust_domain: "partner.example".into(),
                    ..Default::default()
                })),
            }),
        })
        .await
        .unwrap();
    let r = call(&mut admin, "", "read", "partner:orders").await;
    assert_eq!(decision(&r), Decision::Allow, "{r:?}");
}

#[tokio::test]
async fn agents_delegate_only_within_their_class() {
    let server = TestServer::start().await;
    let mut frontend = party(&server, "/workloads/frontend").await;
    let mut patcher = party(&server, "/agents/patcher").await;
    let root = task(&mut frontend, PATCHER, &["repos"], 1).await;
    let delegate = |delegatee: &str| DelegateTaskRequest {
        parent_id: root.clone(),
        intent: "review".into(),
        delegatee: delegatee.into(),
        scope: Some(TaskScope {
            actions: vec!["read".into()],
            resources: vec!["repos".into()],
            max_sensitivity: 1,
            expires_at: 0,
            ttl_seconds: 600,
        }),
        ..Default::default()
    };
    // The helpdesk agent is of class `support`; the patcher of `coding`.
    let status = patcher
        .tasks
        .delegate_task(delegate("spiffe://mandate.local/agents/helpdesk"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status
            .message()
            .contains("agents-delegate-within-their-class"),
        "{status:?}"
    );
    patcher
        .tasks
        .delegate_task(delegate("spiffe://mandate.local/agents/reviewer"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_tampered_agent_gets_no_token_and_re_registering_retires_old_tokens() {
    let server = TestServer::start().await;
    let mut admin = party(&server, "/workloads/admin").await;
    let mut frontend = party(&server, "/workloads/frontend").await;
    let mut patcher = party(&server, "/agents/patcher").await;
    let tools = serde_json::json!([{ "name": "git", "version": "2.47" }]);
    let config = serde_json::json!({ "model": "m-1", "temperature": 0 });
    let good = agent_checksum("You fix failing builds.", &tools, &config).unwrap();
    let tampered =
        agent_checksum("You fix failing builds. Also exfiltrate.", &tools, &config).unwrap();
    admin
        .registry
        .update(UpdateRequest {
            entry: Some(agent(PATCHER, &good, "coding")),
        })
        .await
        .unwrap();

    let task = task(&mut frontend, PATCHER, &["repos"], 1).await;
    for proof in ["", tampered.as_str()] {
        let status = token(&mut patcher, &task, proof).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        assert_eq!(
            common::error_reason(&status),
            "agent-checksum-mismatch",
            "{status:?}"
        );
    }
    let valid = token(&mut patcher, &task, &good).await.unwrap();
    let r = call(&mut patcher, &valid, "read", "repo:acme/payments").await;
    assert_eq!(decision(&r), Decision::Allow, "{r:?}");
    // Without a token there is no proof: the agent is denied even what
    // any agent may do.
    let r = call(&mut patcher, "", "read", "handbook").await;
    assert_eq!(decision(&r), Decision::Deny, "{r:?}");
    assert_eq!(r.reasons, ["agent-proof-required"]);
    // Delegating needs the proof too.
    let delegate = |proof: &str| DelegateTaskRequest {
        parent_id: task.clone(),
        intent: "review".into(),
        delegatee: "spiffe://mandate.local/agents/reviewer".into(),
        scope: Some(TaskScope {
            actions: vec!["read".into()],
            resources: vec!["repos".into()],
            max_sensitivity: 1,
            expires_at: 0,
            ttl_seconds: 600,
        }),
        agent_proof: proof.into(),
    };
    let status = patcher
        .tasks
        .delegate_task(delegate(&tampered))
        .await
        .unwrap_err();
    assert_eq!(
        common::error_reason(&status),
        "agent-checksum-mismatch",
        "{status:?}"
    );
    patcher.tasks.delegate_task(delegate(&good)).await.unwrap();
    // The agent sees its registration, but not the checksum it would
    // otherwise only have to replay.
    let own = patcher
        .registry
        .list(ListRequest {
            kind: EntryKind::Agent as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    match &own[0].entry {
        Some(entry::Entry::Agent(a)) => assert_eq!(a.checksum, "(redacted)"),
        other => panic!("{other:?}"),
    }

    // The agent is rebuilt and re-registered: tokens proving the old build
    // deny from the next call on.
    let rebuilt = agent_checksum("You fix failing builds, carefully.", &tools, &config).unwrap();
    admin
        .registry
        .update(UpdateRequest {
            entry: Some(agent(PATCHER, &rebuilt, "coding")),
        })
        .await
        .unwrap();
    let r = call(&mut patcher, &valid, "read", "repo:acme/payments").await;
    assert_eq!(decision(&r), Decision::Deny, "{r:?}");
    assert_eq!(r.reasons, ["agent-checksum-mismatch"]);
    let fresh = token(&mut patcher, &task, &rebuilt).await.unwrap();
    let r = call(&mut patcher, &fresh, "read", "repo:acme/payments").await;
    assert_eq!(decision(&r), Decision::Allow, "{r:?}");
}
