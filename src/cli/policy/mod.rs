//! `mandate policy ...`: the policy author's toolchain. Works on files, no
//! server needed: validate, format, run test suites, explain one request,
//! and replay recorded decisions against a candidate set.
//!
//! Exit codes: 0 success, 1 the policies (or tests) fail, 2 bad usage.

mod fmt;
mod replay;
mod suite;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::config::{Config, POLICIES, SCHEMA};
use crate::policy::{PolicyEngine, Problem, Sources};
use crate::registry::SensitivityScale;

#[derive(Debug, Subcommand)]
pub(super) enum PolicyCommand {
    /// Parse and strictly validate the policies with the built-in guards;
    /// print every problem with a caret excerpt.
    Validate(validate::ValidateArgs),
    /// Format `*.cedar` files in place, or list those that would change.
    Fmt(fmt::FmtArgs),
    /// Run policy test suites (`*.json`) and report passes and failures.
    Test(suite::TestArgs),
    /// Decide one request and show why: policies, errors, entity slice.
    Explain(suite::ExplainArgs),
    /// Re-decide recorded decisions with a candidate policy set and report
    /// the ones that would change.
    Replay(replay::ReplayArgs),
}

/// Where the policy set comes from, shared by the subcommands.
#[derive(Debug, Clone, Args)]
pub(in crate::cli) struct SetArgs {
    /// Directory of `*.cedar` policies [default: ./policies].
    #[arg(long, value_name = "DIR", default_value = POLICIES)]
    policies: PathBuf,
    /// Cedar schema [default: ./schemas/mandate.cedarschema].
    #[arg(long, value_name = "FILE", default_value = SCHEMA)]
    schema: PathBuf,
    /// Cedar level-based validation at this level [default: the config's
    /// `policies.validation_level`].
    #[arg(long, value_name = "N")]
    level: Option<u32>,
    /// A `mandate.toml` whose `policies.sensitivity_levels` and
    /// `policies.validation_level` to use, so the checks match the server's.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

impl SetArgs {
    /// The sensitivity scale and validation level of `--config`, if given.
    fn settings(&self) -> Result<(SensitivityScale, Option<u32>), Failure> {
        let Some(path) = &self.config else {
            return Ok((SensitivityScale::default(), self.level));
        };
        let config = Config::from_file(path).map_err(|e| Failure::Usage(e.to_string()))?;
        let scale = config
            .policies
            .scale()
            .map_err(|e| Failure::Usage(format!("`{}`: {e}", path.display())))?;
        Ok((scale, self.level.or(config.policies.validation_level)))
    }

    /// The sensitivity scale the set is checked with.
    fn scale(&self) -> Result<SensitivityScale, Failure> {
        self.settings().map(|(scale, _)| scale)
    }

    /// Loads the set; problems are returned rendered, ready to print.
    fn load(&self) -> Result<PolicyEngine, Failure> {
        let (scale, level) = self.settings()?;
        if !self.policies.is_dir() {
            return Err(Failure::Usage(format!(
                "policies directory `{}` does not exist",
                self.policies.display()
            )));
        }
        if !self.schema.is_file() {
            return Err(Failure::Usage(format!(
                "schema file `{}` does not exist",
                self.schema.display()
            )));
        }
        let sources = Sources::read(&self.policies, &self.schema).map_err(invalid)?;
        PolicyEngine::from_sources_at_level(&sources, scale.max(), level).map_err(invalid)
    }
}

/// How a policy command ends.
pub(super) enum Failure {
    /// The policies are invalid or tests failed: exit 1, after printing.
    Failed(Vec<String>),
    /// Bad usage: exit 2.
    Usage(String),
}

fn invalid(error: crate::policy::PolicyError) -> Failure {
    match error {
        crate::policy::PolicyError::Invalid { problems } => {
            Failure::Failed(problems.iter().map(Problem::render).collect())
        }
        other => Failure::Usage(other.to_string()),
    }
}

pub(super) fn run(command: PolicyCommand) -> ExitCode {
    let result = match command {
        PolicyCommand::Validate(args) => validate::run(&args),
        PolicyCommand::Fmt(args) => fmt::run(&args),
        PolicyCommand::Test(args) => suite::run_tests(&args),
        PolicyCommand::Explain(args) => suite::explain(&args),
        PolicyCommand::Replay(args) => replay::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Failed(lines)) => {
            for line in lines {
                eprintln!("{line}");
            }
            ExitCode::from(1)
        }
        Err(Failure::Usage(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(super::EXIT_USAGE)
        }
    }
}
