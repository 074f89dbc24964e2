//! `mandate approval ...`: ask for, decide, list and revoke approvals.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::authorize::parse_resource;
use super::connection::ConnectArgs;
use super::failure::{Failure, refused, run_client};
use crate::proto::v1::approval_service_client::ApprovalServiceClient;
use crate::proto::v1::{
    Approval, ApprovalResource, ApprovalState, DecideApprovalRequest, ListApprovalsRequest,
    RequestApprovalRequest, RevokeApprovalRequest,
};

#[derive(Debug, Subcommand)]
pub(super) enum ApprovalCommand {
    /// Ask for an approval of an action on a resource for your task.
    Request(RequestArgs),
    /// Approve or deny a pending approval for a user (front ends).
    Decide(DecideArgs),
    /// List the approvals you may read.
    List(ListArgs),
    /// Withdraw an approval.
    Revoke(RevokeArgs),
}

#[derive(Debug, Args)]
pub(super) struct RequestArgs {
    #[command(flatten)]
    connection: ConnectArgs,
    /// Your task.
    #[arg(long, value_name = "TASK_ID")]
    task: String,
    /// The action, such as `delete`.
    #[arg(long)]
    action: String,
    /// The resource: `Type::"id"` or a bare `Mandate::Resource` id.
    #[arg(long)]
    resource: String,
    /// Why, for the approver.
    #[arg(long, default_value = "")]
    justification: String,
    /// Your checksum, when you are an agent registered with one.
    #[arg(long, value_name = "sha256:HEX")]
    agent_proof: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
#[group(id = "verdict", required = true, multiple = false, args = ["approve", "deny"])]
pub(super) struct DecideArgs {
    #[command(flatten)]
    connection: ConnectArgs,
    /// The approval.
    #[arg(long, value_name = "APPROVAL_ID")]
    approval: String,
    /// Approve it.
    #[arg(long)]
    approve: bool,
    /// Deny it.
    #[arg(long)]
    deny: bool,
    /// The user whose decision you relay.
    #[arg(long, value_name = "USER")]
    approver: String,
    /// How long the decision counts, seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    valid_for: i64,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(super) struct ListArgs {
    #[command(flatten)]
    connection: ConnectArgs,
    /// Only approvals in this state: pending, approved, denied or revoked.
    #[arg(long)]
    state: Option<String>,
    /// Only approvals of this task.
    #[arg(long, value_name = "TASK_ID")]
    task: Option<String>,
    /// Only approvals decided by this user.
    #[arg(long, value_name = "USER")]
    approver: Option<String>,
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

#[derive(Debug, Args)]
pub(super) struct RevokeArgs {
    #[command(flatten)]
    connection: ConnectArgs,
    /// The approval.
    #[arg(long, value_name = "APPROVAL_ID")]
    approval: String,
    /// Why, for the log.
    #[arg(long, default_value = "")]
    reason: String,
}

fn state_name(state: i32) -> &'static str {
    match ApprovalState::try_from(state) {
        Ok(ApprovalState::Pending) => "pending",
        Ok(ApprovalState::Approved) => "approved",
        Ok(ApprovalState::Denied) => "denied",
        Ok(ApprovalState::Revoked) => "revoked",
        _ => "unknown",
    }
}

fn approval_json(a: &Approval) -> serde_json::Value {
    let resource = a.resource.clone().unwrap_or_default();
    serde_json::json!({
        "id": a.id,
        "task_id": a.task_id,
        "action": a.action,
        "resource": { "type": resource.r#type, "id": resource.id },
        "justification": a.justification,
        "requested_by": a.requested_by,
        "requested_at": a.requested_at,
        "state": state_name(a.state),
        "approver": a.approver,
        "decided_by": a.decided_by,
        "decided_at": a.decided_at,
        "expires_at": a.expires_at,
        "scope_digest": a.scope_digest,
        "current": a.current,
    })
}

fn print(approval: Option<&Approval>, json: bool) {
    let Some(a) = approval else { return };
    if json {
        println!("{}", approval_json(a));
        return;
    }
    let resource = a.resource.clone().unwrap_or_default();
    println!(
        "{}  {}{}\n  task:        {}\n  asks:        {} on {}\n  by:          {}\n  why:         {}",
        a.id,
        state_name(a.state),
        if a.current { " (current)" } else { "" },
        a.task_id,
        a.action,
        resource.id,
        a.requested_by,
        a.justification,
    );
    if !a.approver.is_empty() {
        println!(
            "  decided by:  {} (via {}), until {}",
            a.approver, a.decided_by, a.expires_at
        );
    }
}

async fn client(
    connection: &ConnectArgs,
) -> Result<ApprovalServiceClient<tonic::transport::Channel>, Failure> {
    Ok(ApprovalServiceClient::new(connection.channel().await?))
}

pub(super) fn run(command: ApprovalCommand) -> ExitCode {
    run_client(execute(command))
}

async fn execute(command: ApprovalCommand) -> Result<(), Failure> {
    match command {
        ApprovalCommand::Request(args) => {
            let resource = parse_resource(&args.resource);
            let response = client(&args.connection)
                .await?
                .request_approval(RequestApprovalRequest {
                    task_id: args.task,
                    action: args.action,
                    resource: Some(ApprovalResource {
                        r#type: resource.r#type,
                        id: resource.id,
                    }),
                    justification: args.justification,
                    agent_proof: args.agent_proof.unwrap_or_default(),
                })
                .await
                .map_err(refused)?
                .into_inner();
            print(response.approval.as_ref(), args.json);
        }
        ApprovalCommand::Decide(args) => {
            let response = client(&args.connection)
                .await?
                .decide_approval(DecideApprovalRequest {
                    approval_id: args.approval,
                    approve: args.approve && !args.deny,
                    valid_for_seconds: args.valid_for,
                    approver: args.approver,
                })
                .await
                .map_err(refused)?
                .into_inner();
            print(response.approval.as_ref(), args.json);
        }
        ApprovalCommand::List(args) => {
            let state = match args.state.as_deref() {
                None => ApprovalState::Unspecified,
                Some("pending") => ApprovalState::Pending,
                Some("approved") => ApprovalState::Approved,
                Some("denied") => ApprovalState::Denied,
                Some("revoked") => ApprovalState::Revoked,
                Some(other) => {
                    return Err(Failure::Usage(format!(
                        "`--state {other}`: use pending, approved, denied or revoked"
                    )));
                }
            };
            let response = client(&args.connection)
                .await?
                .list_approvals(ListApprovalsRequest {
                    state: state as i32,
                    task_id: args.task.unwrap_or_default(),
                    approver: args.approver.unwrap_or_default(),
                    page_size: args.page_size,
                    page_token: args.page_token.unwrap_or_default(),
                })
                .await
                .map_err(refused)?
                .into_inner();
            if args.json {
                let approvals: Vec<_> = response.approvals.iter().map(approval_json).collect();
                println!(
                    "{}",
                    serde_json::json!({ "approvals": approvals, "next_page_token": response.next_page_token })
                );
            } else {
                for a in &response.approvals {
                    let resource = a.resource.clone().unwrap_or_default();
                    println!(
                        "{}  {:<8}  {} on {}  (task {})",
                        a.id,
                        state_name(a.state),
                        a.action,
                        resource.id,
                        a.task_id
                    );
                }
                if !response.next_page_token.is_empty() {
                    println!("(more: --page-token {})", response.next_page_token);
                }
            }
        }
        ApprovalCommand::Revoke(args) => {
            let response = client(&args.connection)
                .await?
                .revoke_approval(RevokeApprovalRequest {
                    approval_id: args.approval,
                    reason: args.reason,
                })
                .await
                .map_err(refused)?
                .into_inner();
            println!("revoked at revision {}", response.revision);
        }
    }
    Ok(())
}
