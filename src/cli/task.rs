//! `mandate task ...`: the task API from the command line.
//!
//! Exit codes: 0 done, 1 refused by the server (policy, an invariant, no
//! such task, a task that is not active), 2 bad usage or no connection.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::connection::ConnectArgs;
use super::failure::{Failure, refused, run_client};
use crate::proto::v1::task_service_client::TaskServiceClient;
use crate::proto::v1::{
    AmendTaskRequest, CompleteTaskRequest, CreateTaskRequest, DelegateTaskRequest, GetTaskRequest,
    IssueTaskTokenRequest, ListTasksRequest, RevokeAgentRequest, RevokeTaskRequest, Task,
    TaskScope, TaskState,
};

#[derive(Debug, Subcommand)]
pub(super) enum TaskCommand {
    /// Start a root task on behalf of a user (front ends, as policy allows).
    Create(CreateArgs),
    /// Delegate part of your own task to another agent.
    Delegate(DelegateArgs),
    /// Change the bounds of a task you delegated (approvals given before
    /// stop counting).
    Amend(AmendArgs),
    /// Get a token for your task; prints the token alone (for scripts).
    Token(TokenArgs),
    /// Mark a task done.
    Complete(TaskIdArgs),
    /// Revoke a task and its subtree, or every task of an agent.
    Revoke(RevokeArgs),
    /// Show one task.
    Get(TaskIdArgs),
    /// List the tasks you may read.
    List(ListArgs),
}

#[derive(Debug, Args)]
pub(super) struct ScopeArgs {
    /// What the task is for.
    #[arg(long)]
    intent: String,
    /// SPIFFE ID of the agent that will do it.
    #[arg(long, value_name = "SPIFFE_ID")]
    delegatee: String,
    #[command(flatten)]
    bounds: BoundsArgs,
}

impl ScopeArgs {
    fn scope(&self) -> TaskScope {
        self.bounds.scope()
    }
}

/// What a task allows.
#[derive(Debug, Args)]
pub(super) struct BoundsArgs {
    /// An allowed action; repeatable.
    #[arg(long = "action", value_name = "ACTION", required = true)]
    actions: Vec<String>,
    /// A resource id in scope (its descendants too); repeatable.
    #[arg(long = "resource", value_name = "ID", required = true)]
    resources: Vec<String>,
    /// Highest resource sensitivity allowed.
    #[arg(long, default_value_t = 0)]
    max_sensitivity: i64,
    /// Lifetime in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    ttl: i64,
}

impl BoundsArgs {
    fn scope(&self) -> TaskScope {
        TaskScope {
            actions: self.actions.clone(),
            resources: self.resources.clone(),
            max_sensitivity: self.max_sensitivity,
            expires_at: 0,
            ttl_seconds: self.ttl,
        }
    }
}

#[derive(Debug, Args)]
pub(super) struct CreateArgs {
    #[command(flatten)]
    connection: ConnectArgs,
    #[command(flatten)]
    scope: ScopeArgs,
    /// The user you act for.
    #[arg(long, value_name = "USER")]
    on_behalf_of: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(super) struct DelegateArgs {
    #[command(flatten)]
    connection: ConnectArgs,
    #[command(flatten)]
    scope: ScopeArgs,
    /// Your task, to delegate from.
    #[arg(long, value_name = "TASK_ID")]
    parent: String,
    /// Your checksum, when you are an agent registered with one.
    #[arg(long, value_name = "sha256:HEX")]
    agent_proof: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(super) struct AmendArgs {
    #[command(flatten)]
    connection: ConnectArgs,
    /// The task to amend.
    #[arg(long, value_name = "TASK_ID")]
    task: String,
    /// Your checksum, when you are an agent registered with one.
    #[arg(long, value_name = "sha256:HEX")]
    agent_proof: Option<String>,
    #[command(flatten)]
    bounds: BoundsArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(super) struct TokenArgs {
    #[command(flatten)]
    connection: ConnectArgs,
    /// The task.
    #[arg(long, value_name = "TASK_ID")]
    task: String,
    /// Requested lifetime in seconds (capped by the server and the task).
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    ttl: i64,
    /// The agent's checksum (`mandate agent checksum` prints it); required
    /// when the agent is registered with one.
    #[arg(long, value_name = "sha256:HEX")]
    agent_proof: Option<String>,
}

#[derive(Debug, Args)]
pub(super) struct TaskIdArgs {
    #[command(flatten)]
    connection: ConnectArgs,
    /// The task.
    #[arg(long, value_name = "TASK_ID")]
    task: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
#[group(id = "target", required = true, multiple = false, args = ["task", "agent"])]
pub(super) struct RevokeArgs {
    #[command(flatten)]
    connection: ConnectArgs,
    /// The task to revoke, with its subtree.
    #[arg(long, value_name = "TASK_ID")]
    task: Option<String>,
    /// Revoke every task delegated to this SPIFFE ID.
    #[arg(long, value_name = "SPIFFE_ID")]
    agent: Option<String>,
    /// Why, for the log.
    #[arg(long, default_value = "")]
    reason: String,
}

#[derive(Debug, Args)]
pub(super) struct ListArgs {
    #[command(flatten)]
    connection: ConnectArgs,
    /// Only tasks delegated to this SPIFFE ID.
    #[arg(long, value_name = "SPIFFE_ID")]
    delegatee: Option<String>,
    /// Only tasks of this chain.
    #[arg(long, value_name = "TASK_ID")]
    root: Option<String>,
    /// Only tasks in this state: active, completed, revoked or expired.
    #[arg(long)]
    state: Option<String>,
    /// Page size.
    #[arg(long, default_value_t = 50)]
    page_size: u32,
    /// Continue after this page token.
    #[arg(long)]
    page_token: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

fn state_name(state: i32) -> &'static str {
    match TaskState::try_from(state) {
        Ok(TaskState::Active) => "active",
        Ok(TaskState::Completed) => "completed",
        Ok(TaskState::Revoked) => "revoked",
        Ok(TaskState::Expired) => "expired",
        _ => "unknown",
    }
}

fn task_json(task: &Task) -> serde_json::Value {
    serde_json::json!({
        "id": task.id,
        "intent": task.intent,
        "delegator": task.delegator,
        "delegatee": task.delegatee,
        "originator": task.originator,
        "parent_id": task.parent_id,
        "root_id": task.root_id,
        "depth": task.depth,
        "actions": task.actions,
        "resources": task.resources,
        "max_sensitivity": task.max_sensitivity,
        "created_at": task.created_at,
        "expires_at": task.expires_at,
        "state": state_name(task.state),
        "scope_digest": task.scope_digest,
        "version": task.version,
    })
}

fn task_text(task: &Task) -> String {
    format!(
        "{}  {}\n  intent:      {}\n  delegatee:   {}\n  delegator:   {}\n  originator:  {}\n  parent:      {}\n  actions:     {}\n  resources:   {}\n  sensitivity: <= {}\n  expires at:  {}\n",
        task.id,
        state_name(task.state),
        task.intent,
        task.delegatee,
        task.delegator,
        task.originator,
        if task.parent_id.is_empty() {
            "(root)"
        } else {
            &task.parent_id
        },
        task.actions.join(", "),
        task.resources.join(", "),
        task.max_sensitivity,
        task.expires_at,
    )
}

fn print_task(task: Option<&Task>, json: bool) {
    if let Some(task) = task {
        if json {
            println!("{}", task_json(task));
        } else {
            print!("{}", task_text(task));
        }
    }
}

async fn client(
    connection: &ConnectArgs,
) -> Result<TaskServiceClient<tonic::transport::Channel>, Failure> {
    Ok(TaskServiceClient::new(connection.channel().await?))
}

pub(super) fn run(command: TaskCommand) -> ExitCode {
    run_client(execute(command))
}

async fn execute(command: TaskCommand) -> Result<(), Failure> {
    match command {
        TaskCommand::Create(args) => {
            let response = client(&args.connection)
                .await?
                .create_task(CreateTaskRequest {
                    intent: args.scope.intent.clone(),
                    delegatee: args.scope.delegatee.clone(),
                    on_behalf_of: args.on_behalf_of,
                    scope: Some(args.scope.scope()),
                })
                .await
                .map_err(refused)?
                .into_inner();
            print_task(response.task.as_ref(), args.json);
        }
        TaskCommand::Delegate(args) => {
            let response = client(&args.connection)
                .await?
                .delegate_task(DelegateTaskRequest {
                    parent_id: args.parent,
                    intent: args.scope.intent.clone(),
                    delegatee: args.scope.delegatee.clone(),
                    scope: Some(args.scope.scope()),
                    agent_proof: args.agent_proof.unwrap_or_default(),
                })
                .await
                .map_err(refused)?
                .into_inner();
            print_task(response.task.as_ref(), args.json);
        }
        TaskCommand::Amend(args) => {
            let response = client(&args.connection)
                .await?
                .amend_task(AmendTaskRequest {
                    task_id: args.task,
                    scope: Some(args.bounds.scope()),
                    agent_proof: args.agent_proof.unwrap_or_default(),
                })
                .await
                .map_err(refused)?
                .into_inner();
            print_task(response.task.as_ref(), args.json);
        }
        TaskCommand::Token(args) => {
            let response = client(&args.connection)
                .await?
                .issue_task_token(IssueTaskTokenRequest {
                    task_id: args.task,
                    ttl_seconds: args.ttl,
                    agent_proof: args.agent_proof.unwrap_or_default(),
                })
                .await
                .map_err(refused)?
                .into_inner();
            println!("{}", response.token);
        }
        TaskCommand::Complete(args) => {
            let response = client(&args.connection)
                .await?
                .complete_task(CompleteTaskRequest { task_id: args.task })
                .await
                .map_err(refused)?
                .into_inner();
            println!("completed at revision {}", response.revision);
        }
        TaskCommand::Revoke(args) => {
            let mut client = client(&args.connection).await?;
            let response = match (args.task, args.agent) {
                (Some(task_id), _) => {
                    client
                        .revoke_task(RevokeTaskRequest {
                            task_id,
                            reason: args.reason,
                        })
                        .await
                }
                (None, Some(spiffe_id)) => {
                    client
                        .revoke_agent(RevokeAgentRequest {
                            spiffe_id,
                            reason: args.reason,
                        })
                        .await
                }
                (None, None) => return Err(Failure::Usage("give --task or --agent".to_owned())),
            }
            .map_err(refused)?
            .into_inner();
            println!(
                "revoked {} task(s) at revision {}: {}",
                response.revoked_task_ids.len(),
                response.revision,
                response.revoked_task_ids.join(", ")
            );
        }
        TaskCommand::Get(args) => {
            let task = client(&args.connection)
                .await?
                .get_task(GetTaskRequest { task_id: args.task })
                .await
                .map_err(refused)?
                .into_inner();
            print_task(Some(&task), args.json);
        }
        TaskCommand::List(args) => {
            let state = match args.state.as_deref() {
                None => TaskState::Unspecified,
                Some("active") => TaskState::Active,
                Some("completed") => TaskState::Completed,
                Some("revoked") => TaskState::Revoked,
                Some("expired") => TaskState::Expired,
                Some(other) => {
                    return Err(Failure::Usage(format!(
                        "`--state {other}`: use active, completed, revoked or expired"
                    )));
                }
            };
            let response = client(&args.connection)
                .await?
                .list_tasks(ListTasksRequest {
                    delegatee: args.delegatee.unwrap_or_default(),
                    root_id: args.root.unwrap_or_default(),
                    state: state as i32,
                    page_size: args.page_size,
                    page_token: args.page_token.unwrap_or_default(),
                })
                .await
                .map_err(refused)?
                .into_inner();
            if args.json {
                let tasks: Vec<_> = response.tasks.iter().map(task_json).collect();
                println!(
                    "{}",
                    serde_json::json!({ "tasks": tasks, "next_page_token": response.next_page_token })
                );
            } else {
                for task in &response.tasks {
                    println!(
                        "{}  {:<9}  {}  {}",
                        task.id,
                        state_name(task.state),
                        task.delegatee,
                        task.intent
                    );
                }
                if !response.next_page_token.is_empty() {
                    println!("(more: --page-token {})", response.next_page_token);
                }
            }
        }
    }
    Ok(())
}
