//! `mandate policy validate`.

use clap::Args;

use super::{Failure, SetArgs};
use crate::policy::Problem;

#[derive(Debug, Args)]
pub(in crate::cli) struct ValidateArgs {
    #[command(flatten)]
    set: SetArgs,
}

pub(super) fn run(args: &ValidateArgs) -> Result<(), Failure> {
    let engine = args.set.load()?;
    for warning in engine.warnings() {
        eprintln!(
            "warning: {}",
            Problem::render(warning).trim_start_matches("error: ")
        );
    }
    println!(
        "ok: {} policies ({} yours, the rest built-in guards), {} warning(s), {}",
        engine.len(),
        engine.user_policies().count(),
        engine.warnings().len(),
        engine.hash()
    );
    Ok(())
}
