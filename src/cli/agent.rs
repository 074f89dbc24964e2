//! `mandate agent checksum`: the checksum an agent registers and proves
//! (see [`crate::integrity`] for the canonical form).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::EXIT_USAGE;
use crate::integrity::agent_checksum;

#[derive(Debug, Subcommand)]
pub(super) enum AgentCommand {
    /// Print `sha256:<hex>` over the agent's prompt, tool manifest and
    /// model configuration, as registered and as `--agent-proof`.
    Checksum(ChecksumArgs),
}

#[derive(Debug, Args)]
pub(super) struct ChecksumArgs {
    /// The system prompt (text, used byte for byte).
    #[arg(long, value_name = "FILE")]
    prompt: PathBuf,
    /// The tool manifest (JSON).
    #[arg(long, value_name = "FILE")]
    tools: PathBuf,
    /// The model configuration (JSON).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
}

fn json(path: &Path) -> Result<serde_json::Value, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("`{}` is not JSON: {e}", path.display()))
}

fn checksum(args: &ChecksumArgs) -> Result<String, String> {
    let prompt = std::fs::read_to_string(&args.prompt)
        .map_err(|e| format!("cannot read `{}`: {e}", args.prompt.display()))?;
    agent_checksum(&prompt, &json(&args.tools)?, &json(&args.config)?)
}

pub(super) fn run(command: AgentCommand) -> ExitCode {
    match command {
        AgentCommand::Checksum(args) => match checksum(&args) {
            Ok(checksum) => {
                println!("{checksum}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(EXIT_USAGE)
            }
        },
    }
}
