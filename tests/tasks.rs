//! Tasks, delegation and task tokens through the real server over mTLS:
//! every decision follows the live state of the task and its chain.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

mod common;

use std::time::{Duration, Instant};

use common::TestServer;
use common::party::*;
use mandate::api::v1::{
    AuthorizeRequest, AuthorizeResponse, CompleteTaskRequest, CreateTaskRequest,
    DelegateTaskRequest, GetTaskRequest, IssueTaskTokenRequest, ListTasksRequest, Resource,
    RevokeAgentRequest, RevokeTaskRequest, TaskScope, TaskState,
};
use tonic::Code;

/// The frontend starts a task for `user` with the patcher as delegatee;
/// returns its id.
async fn task_for_user(server: &TestServer, user: &str, intent: &str, scope: TaskScope) -> String {
    let mut frontend = party(server, "/workloads/frontend").await;
    frontend
        .tasks
        .create_task(CreateTaskRequest {
            intent: intent.into(),
            delegatee: PATCHER.into(),
            on_behalf_of: user.into(),
            scope: Some(scope),
        })
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap()
        .id
}

/// `policy` is among the policies that determined `r`.
fn assert_determined_by(r: &AuthorizeResponse, policy: &str) {
    assert!(
        r.determining_policies.iter().any(|p| p == policy),
        "expected `{policy}` among the determining policies: {r:?}"
    );
}

#[tokio::test]
async fn an_agent_acts_within_its_task_and_the_guards_hold_it_there() {
    let server = TestServer::start().await;
    let task = patcher_task(&server).await.id;
    let mut patcher = party(&server, "/agents/patcher").await;
    let token = token(&mut patcher, &task).await;

    let ok = call(&mut patcher, &token, "write", "repo:acme/payments").await;
    assert!(allowed(&ok), "{ok:?}");
    assert_eq!(ok.revision, server.graph.revision());
    assert_determined_by(&ok, "agents-act-within-their-task");

    for (action, resource, guard) in [
        (
            "delete",
            "repo:acme/payments",
            "mandate.guard.action-not-in-task.delete",
        ),
        (
            "read",
            "customer-db",
            "mandate.guard.resource-outside-scope",
        ),
        (
            "read",
            "nobody-registered-this",
            "mandate.guard.resource-outside-scope",
        ),
    ] {
        let denied = call(&mut patcher, &token, action, resource).await;
        assert!(!allowed(&denied), "{action} {resource}: {denied:?}");
        assert_determined_by(&denied, guard);
        assert_eq!(denied.reasons, ["forbidden-by-policy"]);
    }
}

#[tokio::test]
async fn sensitivity_above_the_tasks_maximum_is_denied() {
    let server = TestServer::start().await;
    let task = task_for_user(
        &server,
        "alice",
        "read the handbook",
        scope(&["read"], &["handbook", "repos"], 0, 600),
    )
    .await;
    let mut patcher = party(&server, "/agents/patcher").await;
    let token = token(&mut patcher, &task).await;
    assert!(allowed(
        &call(&mut patcher, &token, "read", "handbook").await
    ));
    let denied = call(&mut patcher, &token, "read", "repo:acme/payments").await;
    assert_determined_by(&denied, "mandate.guard.sensitivity-above-max");
}

#[tokio::test]
async fn sub_delegation_narrows_or_is_refused_by_name() {
    let server = TestServer::start().await;
    let root = patcher_task(&server).await.id;
    let mut patcher = party(&server, "/agents/patcher").await;
    let delegate = |scope: TaskScope, delegatee: &str| DelegateTaskRequest {
        parent_id: root.clone(),
        intent: "review the fix".into(),
        delegatee: delegatee.into(),
        scope: Some(scope),
        ..Default::default()
    };
    let child = patcher
        .tasks
        .delegate_task(delegate(
            scope(&["read"], &["repo:acme/payments"], 1, 600),
            REVIEWER,
        ))
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    assert_eq!(child.depth, 1);
    assert_eq!(child.originator, "alice");
    assert_eq!(child.delegator, PATCHER);

    for (widened, reason) in [
        (
            scope(&["read", "delete"], &["repo:acme/payments"], 1, 600),
            "widens-actions",
        ),
        (scope(&["read"], &["customer-db"], 1, 600), "widens-scope"),
        (
            scope(&["read"], &["repo:acme/payments"], 2, 600),
            "widens-sensitivity",
        ),
        (
            scope(&["read"], &["repo:acme/payments"], 1, 7200),
            "outlives-parent",
        ),
    ] {
        assert_refused(
            patcher.tasks.delegate_task(delegate(widened, TESTER)).await,
            Code::PermissionDenied,
            reason,
            "a delegation that widens its parent",
        );
    }

    // The reviewer is not the root task's delegatee.
    let mut reviewer = party(&server, "/agents/reviewer").await;
    assert_refused(
        reviewer
            .tasks
            .delegate_task(delegate(
                scope(&["read"], &["repo:acme/payments"], 1, 60),
                TESTER,
            ))
            .await,
        Code::PermissionDenied,
        "not-delegatee",
        "the reviewer delegating a task it is not the delegatee of",
    );
}

#[tokio::test]
async fn depth_is_limited_by_configuration() {
    let server = TestServer::start_with(common::Setup {
        max_delegation_depth: 1,
        ..common::Setup::default()
    })
    .await;
    let root = patcher_task(&server).await.id;
    let mut patcher = party(&server, "/agents/patcher").await;
    let child = delegate(
        &mut patcher,
        &root,
        REVIEWER,
        scope(&["read"], &["repos"], 1, 600),
    )
    .await;
    let mut reviewer = party(&server, "/agents/reviewer").await;
    let status = reviewer
        .tasks
        .delegate_task(DelegateTaskRequest {
            parent_id: child.id,
            intent: "test".into(),
            delegatee: TESTER.into(),
            scope: Some(scope(&["read"], &["repos"], 1, 60)),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        common::error_reason(&status),
        "depth-exceeded",
        "{status:?}"
    );
}

#[tokio::test]
async fn only_the_delegatee_gets_tokens_and_only_over_its_own_svid() {
    let server = TestServer::start().await;
    let task = patcher_task(&server).await.id;
    let mut reviewer = party(&server, "/agents/reviewer").await;
    let status = reviewer
        .tasks
        .issue_task_token(IssueTaskTokenRequest {
            task_id: task.clone(),
            ttl_seconds: 0,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    // Knowing a task id does not tell who works on it.
    assert!(
        !status.message().contains("/agents/patcher"),
        "{}",
        status.message()
    );

    let mut patcher = party(&server, "/agents/patcher").await;
    let token = token(&mut patcher, &task).await;
    // Stolen: the reviewer presents the patcher's token.
    let stolen = call(&mut reviewer, &token, "read", "repo:acme/payments").await;
    assert!(!allowed(&stolen));
    assert_eq!(stolen.reasons, ["token-subject-mismatch"]);
    // The patcher's ID but another certificate (another key pair).
    let mut twin = party(&server, "/agents/patcher").await;
    let replayed = call(&mut twin, &token, "read", "repo:acme/payments").await;
    assert!(!allowed(&replayed));
    assert_eq!(replayed.reasons, ["token-not-bound"]);
}

#[tokio::test]
async fn revoking_a_task_denies_its_whole_subtree_on_the_next_call() {
    let server = TestServer::start().await;
    let root = patcher_task(&server).await.id;
    let mut patcher = party(&server, "/agents/patcher").await;
    let child = delegate(
        &mut patcher,
        &root,
        REVIEWER,
        scope(&["read"], &["repos"], 1, 600),
    )
    .await;
    let mut reviewer = party(&server, "/agents/reviewer").await;
    let grandchild = delegate(
        &mut reviewer,
        &child.id,
        TESTER,
        scope(&["read"], &["repo:acme/payments"], 1, 300),
    )
    .await;
    let mut tester = party(&server, "/agents/tester").await;
    let token = token(&mut tester, &grandchild.id).await;
    assert!(allowed(
        &call(&mut tester, &token, "read", "repo:acme/payments").await
    ));

    let mut frontend = party(&server, "/workloads/frontend").await;
    let revoked = frontend
        .tasks
        .revoke_task(RevokeTaskRequest {
            task_id: root,
            reason: "user cancelled".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(revoked.revoked_task_ids.len(), 3);

    let denied = call(&mut tester, &token, "read", "repo:acme/payments").await;
    assert!(!allowed(&denied));
    assert_determined_by(&denied, "mandate.guard.task-not-active");
    assert!(denied.revision >= revoked.revision);
    let state = tester
        .tasks
        .get_task(GetTaskRequest {
            task_id: grandchild.id,
        })
        .await
        .unwrap()
        .into_inner()
        .state;
    assert_eq!(state, TaskState::Revoked as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_allow_after_revoke_returns_under_concurrent_calls() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let server = TestServer::start().await;
    let mut frontend = party(&server, "/workloads/frontend").await;
    for round in 0..20 {
        let task = patcher_task(&server).await.id;
        let mut patcher = party(&server, "/agents/patcher").await;
        let token = token(&mut patcher, &task).await;
        // The caller loops until told to stop; the revoke waits for its
        // first allow, and the stop comes only after further calls, so the
        // outcome does not hang on how fast this machine is.
        let stop = Arc::new(AtomicBool::new(false));
        let calls = Arc::new(AtomicUsize::new(0));
        let caller = tokio::spawn({
            let (stop, calls) = (stop.clone(), calls.clone());
            async move {
                let mut seen = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    let started = Instant::now();
                    let r = call(&mut patcher, &token, "read", "repo:acme/payments").await;
                    seen.push((started, allowed(&r)));
                    calls.fetch_add(1, Ordering::SeqCst);
                }
                seen
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        while calls.load(Ordering::SeqCst) == 0 {
            assert!(
                Instant::now() < deadline,
                "round {round}: the caller made no call"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        frontend
            .tasks
            .revoke_task(RevokeTaskRequest {
                task_id: task,
                reason: String::new(),
            })
            .await
            .unwrap();
        let revoked_at = Instant::now();
        let after_revoke = calls.load(Ordering::SeqCst);
        while calls.load(Ordering::SeqCst) < after_revoke + 3 {
            assert!(
                Instant::now() < deadline,
                "round {round}: the caller stopped calling"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        stop.store(true, Ordering::SeqCst);
        let seen = caller.await.unwrap();
        assert!(
            seen.iter().any(|(_, ok)| *ok),
            "round {round}: no allow before the revoke"
        );
        let late: Vec<_> = seen
            .iter()
            .filter(|(t, ok)| *t > revoked_at && *ok)
            .collect();
        assert!(
            late.is_empty(),
            "round {round}: {} allows after the revoke returned",
            late.len()
        );
        assert!(
            seen.iter().any(|(t, _)| *t > revoked_at),
            "round {round}: no call after the revoke"
        );
    }
}

#[tokio::test]
async fn completed_and_expired_tasks_deny_without_new_tokens() {
    let server = TestServer::start().await;
    let task = patcher_task(&server).await.id;
    let mut patcher = party(&server, "/agents/patcher").await;
    let token = token(&mut patcher, &task).await;
    patcher
        .tasks
        .complete_task(CompleteTaskRequest {
            task_id: task.clone(),
        })
        .await
        .unwrap();
    let denied = call(&mut patcher, &token, "read", "repo:acme/payments").await;
    assert_determined_by(&denied, "mandate.guard.task-not-active");
    let status = patcher
        .tasks
        .issue_task_token(IssueTaskTokenRequest {
            task_id: task,
            ttl_seconds: 0,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);

    // Expiry: a 60 s task, the test clock moved past its deadline but
    // within the token's leeway, so the task's state is what denies.
    let short = task_for_user(
        &server,
        "bob",
        "quick look",
        scope(&["read"], &["repos"], 1, 60),
    )
    .await;
    let token = common::party::token(&mut patcher, &short).await;
    assert!(allowed(
        &call(&mut patcher, &token, "read", "repo:acme/payments").await
    ));
    server.clock.advance(61);
    let expired = call(&mut patcher, &token, "read", "repo:acme/payments").await;
    assert_determined_by(&expired, "mandate.guard.task-not-active");
    server.clock.advance(60);
    let expired = call(&mut patcher, &token, "read", "repo:acme/payments").await;
    assert_eq!(expired.reasons, ["token-expired"]);
}

#[tokio::test]
async fn creating_tasks_is_authorized_by_policy() {
    let server = TestServer::start().await;
    // An agent is not a task creator.
    let mut reviewer = party(&server, "/agents/reviewer").await;
    let status = reviewer
        .tasks
        .create_task(CreateTaskRequest {
            intent: "do as I say".into(),
            delegatee: PATCHER.into(),
            on_behalf_of: "mallory".into(),
            scope: Some(scope(&["read"], &["repos"], 1, 60)),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(server.graph.is_empty());
}

#[tokio::test]
async fn operators_revoke_an_agent_and_tasks_are_listed_to_their_parties() {
    let server = TestServer::start().await;
    let first = patcher_task(&server).await.id;
    let second = patcher_task(&server).await.id;
    let mut patcher = party(&server, "/agents/patcher").await;
    let listed = patcher
        .tasks
        .list_tasks(ListTasksRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.tasks.len(), 1);
    assert_eq!(listed.tasks[0].id, first);
    let next = patcher
        .tasks
        .list_tasks(ListTasksRequest {
            page_size: 1,
            page_token: listed.next_page_token,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next.tasks[0].id, second);
    // Not a party, not an operator: sees nothing.
    let mut reviewer = party(&server, "/agents/reviewer").await;
    let none = reviewer
        .tasks
        .list_tasks(ListTasksRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(none.tasks.is_empty());

    let status = reviewer
        .tasks
        .revoke_agent(RevokeAgentRequest {
            spiffe_id: PATCHER.into(),
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let mut admin = party(&server, "/workloads/admin").await;
    let revoked = admin
        .tasks
        .revoke_agent(RevokeAgentRequest {
            spiffe_id: PATCHER.into(),
            reason: "compromised".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(revoked.revoked_task_ids.len(), 2);
}

#[tokio::test]
async fn the_jwks_publishes_the_signing_key() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start().await;
    let task = patcher_task(&server).await.id;
    let mut patcher = party(&server, "/agents/patcher").await;
    let token = token(&mut patcher, &task).await;
    let kid = jsonwebtoken::decode_header(&token).unwrap().kid.unwrap();
    let mut tcp = tokio::net::TcpStream::connect(server.server.http_addr())
        .await
        .unwrap();
    tcp.write_all(b"GET /.well-known/jwks.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.contains(&format!("\"kid\":\"{kid}\"")),
        "{response}"
    );
    assert!(response.contains("\"crv\":\"Ed25519\""), "{response}");
}

#[tokio::test]
async fn an_enforcement_point_forwards_the_agents_token_and_certificate() {
    use mandate::api::v1::Subject;
    let server = TestServer::start().await;
    let task = patcher_task(&server).await.id;
    let svid = server.ca.svid("/agents/patcher");
    let channel = server.channel_for(&svid).await;
    let mut patcher = Party::on(channel);
    let token = token(&mut patcher, &task).await;
    let mut envoy = party(&server, "/workloads/envoy").await;
    let on_behalf = |certificate_pem: String| AuthorizeRequest {
        action: "write".into(),
        resource: Some(Resource {
            r#type: String::new(),
            id: "repo:acme/payments".into(),
        }),
        token: token.clone(),
        subject: Some(Subject {
            spiffe_id: PATCHER.into(),
            certificate_pem,
        }),
        ..Default::default()
    };
    let ok = envoy
        .authz
        .authorize(on_behalf(svid.cert_pem.clone()))
        .await
        .unwrap()
        .into_inner();
    assert!(allowed(&ok), "{ok:?}");
    // The agent's ID with another certificate of it: the token is not bound to it.
    let other = server.ca.svid("/agents/patcher").cert_pem;
    let replayed = envoy
        .authz
        .authorize(on_behalf(other))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(replayed.reasons, ["token-not-bound"]);
    // The enforcement point using the token for itself.
    let own = call(&mut envoy, &token, "write", "repo:acme/payments").await;
    assert_eq!(own.reasons, ["token-subject-mismatch"]);
}

#[tokio::test]
async fn a_caller_cannot_set_the_task_context_itself() {
    use prost_types::value::Kind;
    let server = TestServer::start().await;
    let mut patcher = party(&server, "/agents/patcher").await;
    let mut request = AuthorizeRequest {
        action: "read".into(),
        resource: Some(Resource {
            r#type: String::new(),
            id: "repo:acme/payments".into(),
        }),
        ..Default::default()
    };
    request
        .context
        .get_or_insert_with(Default::default)
        .fields
        .insert(
            "intent".into(),
            prost_types::Value {
                kind: Some(Kind::StringValue("anything".into())),
            },
        );
    let r = patcher.authz.authorize(request).await.unwrap().into_inner();
    assert!(!allowed(&r));
    assert_eq!(r.reasons, ["invalid-context"]);
}

#[tokio::test]
async fn a_childs_token_does_not_reach_the_rest_of_the_parents_scope() {
    let server = TestServer::start().await;
    let root = patcher_task(&server).await.id;
    let mut patcher = party(&server, "/agents/patcher").await;
    let child = delegate(
        &mut patcher,
        &root,
        REVIEWER,
        scope(&["read"], &["repo:acme/payments"], 1, 600),
    )
    .await;
    let mut reviewer = party(&server, "/agents/reviewer").await;
    let token = token(&mut reviewer, &child.id).await;
    // repo:acme/web is in the parent's `repos`, not in the child's scope.
    let parent_token = common::party::token(&mut patcher, &root).await;
    assert!(allowed(
        &call(&mut patcher, &parent_token, "read", "repo:acme/web").await
    ));
    let denied = call(&mut reviewer, &token, "read", "repo:acme/web").await;
    assert_determined_by(&denied, "mandate.guard.resource-outside-scope");
}

#[tokio::test]
async fn a_token_reaches_no_resource_type_outside_its_scope() {
    let server = TestServer::start().await;
    let task = patcher_task(&server).await.id;
    let mut patcher = party(&server, "/agents/patcher").await;
    let token = token(&mut patcher, &task).await;
    // Reading a task (here its own) is not a resource in the task's scope.
    let r = patcher
        .authz
        .authorize(AuthorizeRequest {
            action: "read".into(),
            resource: Some(Resource {
                r#type: "Mandate::Task".into(),
                id: task.clone(),
            }),
            token,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!allowed(&r));
    assert_determined_by(&r, "mandate.guard.resource-outside-scope");
    // Without a token the live task is the resource, and its parties may read it.
    let r = patcher
        .authz
        .authorize(AuthorizeRequest {
            action: "read".into(),
            resource: Some(Resource {
                r#type: "Mandate::Task".into(),
                id: task,
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(allowed(&r), "{r:?}");
    assert_eq!(r.determining_policies, ["task-parties-read"]);
}

#[tokio::test]
async fn with_a_token_the_task_context_cannot_be_overridden() {
    use prost_types::value::Kind;
    let server = TestServer::start().await;
    let revoked = patcher_task(&server).await.id;
    let live = patcher_task(&server).await.id;
    let mut patcher = party(&server, "/agents/patcher").await;
    let token = token(&mut patcher, &revoked).await;
    let mut frontend = party(&server, "/workloads/frontend").await;
    frontend
        .tasks
        .revoke_task(RevokeTaskRequest {
            task_id: revoked,
            reason: String::new(),
        })
        .await
        .unwrap();
    let mut request = AuthorizeRequest {
        action: "read".into(),
        resource: Some(Resource {
            r#type: String::new(),
            id: "repo:acme/payments".into(),
        }),
        token,
        ..Default::default()
    };
    let entity = prost_types::Struct {
        fields: [(
            "__entity".to_owned(),
            prost_types::Value {
                kind: Some(Kind::StructValue(prost_types::Struct {
                    fields: [
                        (
                            "type".to_owned(),
                            prost_types::Value {
                                kind: Some(Kind::StringValue("Mandate::Task".into())),
                            },
                        ),
                        (
                            "id".to_owned(),
                            prost_types::Value {
                                kind: Some(Kind::StringValue(live)),
                            },
                        ),
                    ]
                    .into(),
                })),
            },
        )]
        .into(),
    };
    request
        .context
        .get_or_insert_with(Default::default)
        .fields
        .insert(
            "task".into(),
            prost_types::Value {
                kind: Some(Kind::StructValue(entity)),
            },
        );
    let r = patcher.authz.authorize(request).await.unwrap().into_inner();
    assert!(!allowed(&r));
    assert_eq!(r.reasons, ["invalid-context"]);
}

#[tokio::test]
async fn an_ended_chain_leaves_memory_and_its_tokens_still_deny_as_not_active() {
    let server = TestServer::start_with(common::Setup {
        task_retention: Some(mandate::graph::Retention {
            keep_ended: 0,
            remember_evicted: 3600,
        }),
        ..common::Setup::default()
    })
    .await;
    let root = patcher_task(&server).await.id;
    let mut patcher = party(&server, "/agents/patcher").await;
    let child = delegate(
        &mut patcher,
        &root,
        TESTER,
        scope(&["read"], &["repos"], 1, 600),
    )
    .await;
    let mut tester = party(&server, "/agents/tester").await;
    let child_token = token(&mut tester, &child.id).await;
    let root_token = token(&mut patcher, &root).await;
    assert!(allowed(
        &call(&mut tester, &child_token, "read", "repo:acme/payments").await
    ));
    // A live task unrelated to the revoked chain stays.
    let other = patcher_task(&server).await.id;

    let mut frontend = party(&server, "/workloads/frontend").await;
    frontend
        .tasks
        .revoke_task(RevokeTaskRequest {
            task_id: root.clone(),
            reason: "done with it".into(),
        })
        .await
        .unwrap();
    // Housekeeping sweeps every second: the first sees the revoke, the
    // next drops the chain.
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.graph.get(&child.id).is_some() {
        assert!(
            Instant::now() < deadline,
            "the revoked chain never left memory"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(server.graph.get(&root).is_none());
    assert!(server.graph.get(&other).is_some(), "an active task stays");

    for (party, token) in [(&mut tester, &child_token), (&mut patcher, &root_token)] {
        let denied = call(party, token, "read", "repo:acme/payments").await;
        assert!(!allowed(&denied), "{denied:?}");
        assert_eq!(denied.reasons, ["task-not-active"], "{denied:?}");
    }
    // GetTask still answers, from the store, and says so.
    for id in [&root, &child.id] {
        let task = patcher
            .tasks
            .get_task(GetTaskRequest {
                task_id: id.to_string(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(task.archived, "{task:?}");
        assert_eq!(task.state, TaskState::Revoked as i32, "{task:?}");
    }
    let live = patcher
        .tasks
        .get_task(GetTaskRequest {
            task_id: other.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!live.archived);
    let unknown = patcher
        .tasks
        .get_task(GetTaskRequest {
            task_id: "no-such-task".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
}
