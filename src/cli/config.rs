//! `mandate config print-default`: every section and key of `mandate.toml`
//! at its default, with its comment; what `mandate.toml.example` holds.

use std::process::ExitCode;

use clap::Subcommand;

use crate::config::reference;

#[derive(Debug, Subcommand)]
pub(super) enum ConfigCommand {
    /// Print the complete default `mandate.toml`, every key commented.
    PrintDefault,
}

pub(super) fn run(command: ConfigCommand) -> ExitCode {
    match command {
        ConfigCommand::PrintDefault => {
            print!("{}", reference::default_file());
            ExitCode::SUCCESS
        }
    }
}
