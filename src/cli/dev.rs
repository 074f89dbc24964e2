//! `mandate dev init`: a local dev trust domain on demand.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use spiffe::TrustDomain;

use super::EXIT_USAGE;
use crate::config::DEV_TRUST_DOMAIN;
use crate::identity::dev::DevTrustDomain;

#[derive(Debug, Subcommand)]
pub(super) enum DevCommand {
    /// Create a dev CA, a server SVID and sample agent and workload SVIDs.
    Init(InitArgs),
}

#[derive(Debug, Args)]
pub(super) struct InitArgs {
    /// Directory to write to.
    #[arg(long, default_value = "./data/dev")]
    dir: PathBuf,
    /// Trust domain name.
    #[arg(long, default_value = DEV_TRUST_DOMAIN)]
    trust_domain: String,
    /// An agent to issue an SVID for (`spiffe://TD/agents/NAME`); repeatable.
    /// Default: patcher and reviewer.
    #[arg(long = "agent", value_name = "NAME")]
    agents: Vec<String>,
    /// Replace an existing dev trust domain in `--dir`.
    #[arg(long)]
    force: bool,
}

pub(super) fn run(command: DevCommand) -> ExitCode {
    let DevCommand::Init(args) = command;
    let trust_domain = match TrustDomain::new(&args.trust_domain) {
        Ok(td) => td,
        Err(e) => {
            eprintln!(
                "error: `{}` is not a trust domain name: {e}",
                args.trust_domain
            );
            return ExitCode::from(EXIT_USAGE);
        }
    };
    for agent in &args.agents {
        if agent.is_empty() || agent.contains(['/', '\\']) || agent.starts_with('.') {
            eprintln!("error: agent name `{agent}` must be one path segment");
            return ExitCode::from(EXIT_USAGE);
        }
    }
    if args.dir.join("bundle.pem").exists() && !args.force {
        eprintln!(
            "error: `{}` already holds a dev trust domain; pass --force to replace it",
            args.dir.display()
        );
        return ExitCode::from(EXIT_USAGE);
    }
    match DevTrustDomain::init(&args.dir, &trust_domain, &args.agents) {
        Ok(dev) => {
            print!("{}", describe(&dev));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Where the dev material is and how to use it.
pub(super) fn describe(dev: &DevTrustDomain) -> String {
    let mut out = format!(
        "dev trust domain `{}` in {}\n  bundle (CA):  {}\n  server SVID:  {}  ({})\n",
        dev.trust_domain.as_str(),
        dev.dir.display(),
        dev.bundle.display(),
        dev.server.spiffe_id,
        dev.server.cert.display(),
    );
    for sample in &dev.samples {
        out.push_str(&format!(
            "  sample SVID:  {}  ({}, key {})\n",
            sample.spiffe_id,
            sample.cert.display(),
            sample.key.display()
        ));
    }
    out
}
