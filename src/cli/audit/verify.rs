//! `mandate audit verify FILE...`: checks a decision log's hash chain,
//! offline. Rotated files are given oldest first
//! (`decisions.jsonl.2 decisions.jsonl.1 decisions.jsonl`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::audit::{GENESIS, verify_files};

#[derive(Debug, Args)]
pub(in crate::cli) struct VerifyArgs {
    /// Decision log files, oldest first.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
}

pub(super) fn run(args: &VerifyArgs) -> ExitCode {
    match verify_files(&args.files) {
        Ok(verified) => {
            println!(
                "ok: {} records, seq {} to {}, intact",
                verified.lines, verified.first_seq, verified.last_seq
            );
            if verified.anchor == GENESIS {
                println!("the chain starts in the first file");
            } else {
                println!(
                    "the first record continues a chain from an earlier file (its `prev_hash` is `{}`); give that file first to check the link",
                    verified.anchor
                );
            }
            println!("last hash: {}", verified.last_hash);
            ExitCode::SUCCESS
        }
        Err(broken) if broken.line == 0 => {
            eprintln!("error: {broken}");
            ExitCode::from(super::super::EXIT_USAGE)
        }
        Err(broken) => {
            println!("broken: {broken}");
            ExitCode::from(1)
        }
    }
}
