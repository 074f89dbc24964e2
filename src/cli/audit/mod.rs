//! `mandate audit ...`: query a server's recent decisions, show a root
//! task's trail as a tree, and verify the hash chain of a decision log
//! file or of a store's audit table (offline).
//!
//! Exit codes: 0 done (verify: the chain is intact), 1 refused by the
//! server (verify: a broken link), 2 bad usage or no connection.

mod query;
mod trail;
mod verify;

use std::process::ExitCode;

use clap::Subcommand;

use super::connection::ConnectArgs;
use super::failure::{Failure, refused};
use crate::proto::v1::audit_service_client::AuditServiceClient;

pub use trail::render as render_trail;

#[derive(Debug, Subcommand)]
pub(super) enum AuditCommand {
    /// Decisions in the server's audit window matching every filter given.
    Query(query::QueryArgs),
    /// A root task's tree: who delegated to whom, tokens, approvals,
    /// revocations and each call with its decision and policies.
    Trail(trail::TrailArgs),
    /// Check the hash chain of decision log files (oldest first) or of the
    /// store's audit chains (`--store URL`); report the first broken link.
    Verify(verify::VerifyArgs),
}

pub(super) fn run(command: AuditCommand) -> ExitCode {
    match command {
        AuditCommand::Query(args) => super::failure::run_client(query::run(args)),
        AuditCommand::Trail(args) => super::failure::run_client(trail::run(args)),
        AuditCommand::Verify(args) => verify::run(&args),
    }
}

async fn client(
    connection: &ConnectArgs,
) -> Result<AuditServiceClient<tonic::transport::Channel>, Failure> {
    Ok(AuditServiceClient::new(connection.channel().await?))
}

/// `Refused` for policy refusals, `Usage` for the rest.
fn status(status: tonic::Status) -> Failure {
    refused(status)
}

/// `HH:MM:SS.mmm` (UTC) of Unix milliseconds.
fn clock_time(ms: i64) -> String {
    let day_ms = ms.rem_euclid(86_400_000);
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        day_ms / 3_600_000,
        day_ms / 60_000 % 60,
        day_ms / 1000 % 60,
        day_ms % 1000
    )
}
