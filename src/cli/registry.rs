//! `mandate registry ...`: list, apply a catalog file to, and remove from a
//! running server's registry.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use tonic::Code;

use super::connection::ConnectArgs;
use super::failure::{Failure, refused, run_client};
use crate::proto::registry::{entry_from_proto, entry_to_proto};
use crate::proto::v1::registry_service_client::RegistryServiceClient;
use crate::proto::v1::{EntryKind, ListRequest, RegisterRequest, RemoveRequest, UpdateRequest};
use crate::registry::Catalog;

#[derive(Debug, Subcommand)]
pub(super) enum RegistryCommand {
    /// List entries of one kind (JSON lines with `--json`).
    List(ListArgs),
    /// Register every entry of a catalog file, updating those that exist.
    Apply(ApplyArgs),
    /// Remove one entry.
    Remove(RemoveArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(super) enum KindArg {
    Agent,
    Workload,
    User,
    Group,
    Resource,
}

impl From<KindArg> for EntryKind {
    fn from(kind: KindArg) -> Self {
        match kind {
            KindArg::Agent => Self::Agent,
            KindArg::Workload => Self::Workload,
            KindArg::User => Self::User,
            KindArg::Group => Self::Group,
            KindArg::Resource => Self::Resource,
        }
    }
}

#[derive(Debug, Args)]
pub(super) struct ListArgs {
    #[command(flatten)]
    connection: ConnectArgs,
    /// Which kind.
    #[arg(long, value_enum)]
    kind: KindArg,
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
pub(super) struct ApplyArgs {
    #[command(flatten)]
    connection: ConnectArgs,
    /// A catalog file (TOML), as `serve --catalog` reads.
    file: PathBuf,
}

#[derive(Debug, Args)]
pub(super) struct RemoveArgs {
    #[command(flatten)]
    connection: ConnectArgs,
    /// Which kind.
    #[arg(long, value_enum)]
    kind: KindArg,
    /// The id (the SPIFFE ID of an agent or workload).
    #[arg(long)]
    id: String,
}

async fn client(
    connection: &ConnectArgs,
) -> Result<RegistryServiceClient<tonic::transport::Channel>, Failure> {
    Ok(RegistryServiceClient::new(connection.channel().await?))
}

pub(super) fn run(command: RegistryCommand) -> ExitCode {
    run_client(execute(command))
}

async fn execute(command: RegistryCommand) -> Result<(), Failure> {
    match command {
        RegistryCommand::List(args) => {
            let response = client(&args.connection)
                .await?
                .list(ListRequest {
                    kind: EntryKind::from(args.kind) as i32,
                    page_size: args.page_size,
                    page_token: args.page_token.unwrap_or_default(),
                })
                .await
                .map_err(refused)?
                .into_inner();
            for entry in &response.entries {
                let entry = entry_from_proto(Some(entry))
                    .map_err(|e| Failure::Usage(format!("the server sent a bad entry: {e}")))?;
                if args.json {
                    println!("{}", serde_json::to_string(&entry).unwrap_or_default());
                } else {
                    println!("{}", entry.id());
                }
            }
            if !args.json && !response.next_page_token.is_empty() {
                println!("(more: --page-token {})", response.next_page_token);
            }
        }
        RegistryCommand::Apply(args) => {
            let entries = Catalog::load(&args.file)
                .map_err(Failure::Usage)?
                .into_entries()
                .map_err(|problems| Failure::Usage(problems.join("; ")))?;
            let mut client = client(&args.connection).await?;
            for entry in entries {
                let (kind, id) = (entry.kind(), entry.id().to_owned());
                let message = Some(entry_to_proto(&entry));
                let registered = client
                    .register(RegisterRequest {
                        entry: message.clone(),
                    })
                    .await;
                let (verb, response) = match registered {
                    Err(status) if status.code() == Code::AlreadyExists => (
                        "updated",
                        client.update(UpdateRequest { entry: message }).await,
                    ),
                    other => ("registered", other),
                };
                let revision = response.map_err(refused)?.into_inner().revision;
                println!("{verb} {kind} {id} at revision {revision}");
            }
        }
        RegistryCommand::Remove(args) => {
            let response = client(&args.connection)
                .await?
                .remove(RemoveRequest {
                    kind: EntryKind::from(args.kind) as i32,
                    id: args.id,
                })
                .await
                .map_err(refused)?
                .into_inner();
            println!("removed at revision {}", response.revision);
        }
    }
    Ok(())
}
