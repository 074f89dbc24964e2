//! What the end-to-end tests do over the wire: parties with all the service
//! clients on one SVID, scopes, tasks started by the example front end,
//! delegations, tokens, calls, and assertions on decisions and on the
//! `ErrorInfo` reasons of refused calls.

use mandate::api::v1::approval_service_client::ApprovalServiceClient;
use mandate::api::v1::audit_service_client::AuditServiceClient;
use mandate::api::v1::authorization_service_client::AuthorizationServiceClient;
use mandate::api::v1::registry_service_client::RegistryServiceClient;
use mandate::api::v1::task_service_client::TaskServiceClient;
use mandate::api::v1::{
    Approval, AuthorizeResponse, CreateTaskRequest, DecideApprovalRequest, Decision,
    DelegateTaskRequest, IssueTaskTokenRequest, Task, TaskScope,
};
use tonic::transport::Channel;
use tonic::{Code, Status};

use super::{Leaf, TestCa, TestServer};

pub const PATCHER: &str = "spiffe://mandate.local/agents/patcher";
pub const REVIEWER: &str = "spiffe://mandate.local/agents/reviewer";
pub const TESTER: &str = "spiffe://mandate.local/agents/tester";
pub const ANALYST: &str = "spiffe://mandate.local/agents/analyst";
pub const LINTER: &str = "spiffe://mandate.local/agents/linter";

/// One workload's connection, with every client on the same SVID (a task
/// token is bound to that SVID). A clone shares the connection.
#[derive(Clone)]
pub struct Party {
    pub tasks: TaskServiceClient<Channel>,
    pub authz: AuthorizationServiceClient<Channel>,
    pub approvals: ApprovalServiceClient<Channel>,
    pub registry: RegistryServiceClient<Channel>,
    pub audit: AuditServiceClient<Channel>,
}

impl Party {
    /// Every client on `channel`.
    pub fn on(channel: Channel) -> Self {
        Self {
            tasks: TaskServiceClient::new(channel.clone()),
            authz: AuthorizationServiceClient::new(channel.clone()),
            approvals: ApprovalServiceClient::new(channel.clone()),
            registry: RegistryServiceClient::new(channel.clone()),
            audit: AuditServiceClient::new(channel),
        }
    }

    /// A party presenting `leaf` to the server at `addr` that trusts `ca`
    /// (a server in another process).
    pub async fn connect(ca: &TestCa, leaf: &Leaf, addr: &str) -> Self {
        let channel = mandate::client::channel(addr, &ca.identity(leaf), None)
            .await
            .unwrap();
        Self::on(channel)
    }
}

/// A party presenting a fresh SVID for `spiffe://mandate.local<path>`.
pub async fn party(server: &TestServer, path: &str) -> Party {
    Party::on(server.channel(path).await)
}

/// A party presenting `leaf` (a new connection each time).
pub async fn party_for(server: &TestServer, leaf: &Leaf) -> Party {
    Party::on(server.channel_for(leaf).await)
}

/// What a task may do: `actions` on `resources` up to `max_sensitivity`,
/// for `ttl` seconds.
pub fn scope(actions: &[&str], resources: &[&str], max_sensitivity: i64, ttl: i64) -> TaskScope {
    TaskScope {
        actions: actions.iter().map(|s| (*s).to_owned()).collect(),
        resources: resources.iter().map(|s| (*s).to_owned()).collect(),
        max_sensitivity,
        expires_at: 0,
        ttl_seconds: ttl,
    }
}

/// The example front end (a `task-creators` workload) starts a task for
/// alice with `delegatee` doing the work.
pub async fn root_task(server: &TestServer, delegatee: &str, scope: TaskScope) -> Task {
    create_root(
        &mut party(server, "/workloads/frontend").await,
        delegatee,
        scope,
    )
    .await
}

/// `frontend` (a `task-creators` workload, on any server) starts a task for
/// alice with `delegatee` doing the work.
pub async fn create_root(frontend: &mut Party, delegatee: &str, scope: TaskScope) -> Task {
    frontend
        .tasks
        .create_task(CreateTaskRequest {
            intent: "fix the payments build".into(),
            delegatee: delegatee.into(),
            on_behalf_of: "alice".into(),
            scope: Some(scope),
        })
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap()
}

/// The patcher's usual root task: read and write the repos (internal data)
/// for an hour.
pub async fn patcher_task(server: &TestServer) -> Task {
    root_task(
        server,
        PATCHER,
        scope(&["read", "write"], &["repos"], 1, 3600),
    )
    .await
}

/// `party` delegates part of `parent` to `delegatee`.
pub async fn try_delegate(
    party: &mut Party,
    parent: &str,
    delegatee: &str,
    scope: TaskScope,
) -> Result<Task, Status> {
    party
        .tasks
        .delegate_task(DelegateTaskRequest {
            parent_id: parent.into(),
            intent: format!("a part of {parent}"),
            delegatee: delegatee.into(),
            scope: Some(scope),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().task.unwrap())
}

pub async fn delegate(party: &mut Party, parent: &str, delegatee: &str, scope: TaskScope) -> Task {
    try_delegate(party, parent, delegatee, scope).await.unwrap()
}

pub async fn try_token(party: &mut Party, task: &str) -> Result<String, Status> {
    party
        .tasks
        .issue_task_token(IssueTaskTokenRequest {
            task_id: task.into(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().token)
}

pub async fn token(party: &mut Party, task: &str) -> String {
    try_token(party, task).await.unwrap()
}

/// One `Authorize` of `action` on the `Mandate::Resource` `resource`.
pub async fn call(
    party: &mut Party,
    token: &str,
    action: &str,
    resource: &str,
) -> AuthorizeResponse {
    super::call(&mut party.authz, token, action, resource).await
}

/// `frontend` (an approval front end) relays `approver`'s decision on an
/// approval, good for `valid_for` seconds (0: the default).
pub async fn decide_approval(
    frontend: &mut Party,
    approval_id: &str,
    approve: bool,
    approver: &str,
    valid_for: i64,
) -> Result<Approval, Status> {
    frontend
        .approvals
        .decide_approval(DecideApprovalRequest {
            approval_id: approval_id.into(),
            approve,
            valid_for_seconds: valid_for,
            approver: approver.into(),
        })
        .await
        .map(|r| r.into_inner().approval.unwrap())
}

/// The decision of `r`, as the enum.
pub fn decision(r: &AuthorizeResponse) -> Decision {
    Decision::try_from(r.decision).unwrap()
}

/// Whether `r` is an allow.
pub fn allowed(r: &AuthorizeResponse) -> bool {
    decision(r) == Decision::Allow
}

/// The control of a threat test: the legitimate call is allowed, so a deny
/// after it comes from the attack and not from the set-up.
#[track_caller]
pub fn assert_allowed(r: &AuthorizeResponse, what: &str) {
    assert_eq!(
        decision(r),
        Decision::Allow,
        "{what} must be allowed: {r:?}"
    );
}

/// A plain deny (not "needs approval") naming `reason`.
#[track_caller]
pub fn assert_denied(r: &AuthorizeResponse, reason: &str, what: &str) {
    assert_eq!(decision(r), Decision::Deny, "{what} must be denied: {r:?}");
    assert!(
        r.reasons.iter().any(|x| x == reason),
        "{what}: expected reason `{reason}`: {r:?}"
    );
}

/// A deny determined by the policy `policy` (a guard, usually).
#[track_caller]
pub fn assert_denied_by(r: &AuthorizeResponse, policy: &str, what: &str) {
    assert_denied(r, "forbidden-by-policy", what);
    assert!(
        r.determining_policies.iter().any(|p| p == policy),
        "{what}: expected `{policy}` among the determining policies: {r:?}"
    );
}

/// A refused RPC: `code`, and `reason` in its `ErrorInfo`; returns the
/// status for further checks.
#[track_caller]
pub fn assert_refused<T: std::fmt::Debug>(
    result: Result<T, Status>,
    code: Code,
    reason: &str,
    what: &str,
) -> Status {
    let status = match result {
        Ok(value) => panic!("{what} must be refused, got {value:?}"),
        Err(status) => status,
    };
    assert_eq!(status.code(), code, "{what}: {status:?}");
    assert_eq!(super::error_reason(&status), reason, "{what}: {status:?}");
    status
}
