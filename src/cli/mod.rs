//! Command-line interface; one file per subcommand.
//!
//! Exit codes: 0 success (or allow), 1 a deny or a runtime failure,
//! 2 bad usage or bad configuration.

mod agent;
mod approval;
mod audit;
mod authorize;
mod config;
mod connection;
mod dev;
mod failure;
mod policy;
mod registry;
mod serve;
mod store;
mod task;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use audit::render_trail;

/// Exit code for bad usage or configuration (see [`crate::exit_code`]).
pub const EXIT_USAGE: u8 = crate::exit_code::USAGE;

#[derive(Debug, Parser)]
#[command(
    name = "mandate",
    version,
    about = "Live Cedar authorization for AI agents and workloads, over SPIFFE mTLS"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the authorization server.
    Serve(Box<serve::ServeArgs>),
    /// The configuration file: print the default one.
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// Development helpers.
    #[command(subcommand)]
    Dev(dev::DevCommand),
    /// Ask a Mandate server for one decision.
    Authorize(authorize::AuthorizeArgs),
    /// Create, delegate, amend, get tokens for, complete, revoke and list
    /// tasks.
    #[command(subcommand)]
    Task(task::TaskCommand),
    /// Ask for, decide, list and revoke human approvals.
    #[command(subcommand)]
    Approval(approval::ApprovalCommand),
    /// List and change a server's registry.
    #[command(subcommand)]
    Registry(registry::RegistryCommand),
    /// Agent helpers: the integrity checksum.
    #[command(subcommand)]
    Agent(agent::AgentCommand),
    /// Policy authors' tools: validate, fmt, test, explain, replay.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// The audit trail: query decisions, show a task's trail, verify a
    /// decision log's hash chain.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// The store: migrate, export and import (JSON lines).
    #[command(subcommand)]
    Store(store::StoreCommand),
}

/// Parses arguments and runs the subcommand.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.command {
        Command::Serve(args) => serve::run(*args),
        Command::Config(command) => config::run(command),
        Command::Dev(command) => dev::run(command),
        Command::Authorize(args) => authorize::run(args),
        Command::Task(command) => task::run(command),
        Command::Approval(command) => approval::run(command),
        Command::Registry(command) => registry::run(command),
        Command::Agent(command) => agent::run(command),
        Command::Policy(command) => policy::run(command),
        Command::Audit(command) => audit::run(command),
        Command::Store(command) => store::run(command),
    }
}

fn init_logging(default: &str) {
    init_logging_as(default, false);
}

/// Logs to stderr, filtered by `RUST_LOG` (else `default`), as JSON lines
/// (with the current spans, so `decision_id` is on every line of a
/// decision) or for humans.
fn init_logging_as(default: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().with_current_span(true).try_init()
    } else {
        builder.try_init()
    };
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        })
}
