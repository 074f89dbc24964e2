//! A vulnerability-patching workflow run through Mandate: a human starts
//! the task, a supervisor agent delegates to a planner, a classifier and a
//! patcher, the patcher needs the human's approval to push, the
//! classifier's task is revoked halfway, and a prompt-injected step is
//! refused. At the end, the root task's audit trail.
//!
//! `cargo run --example patch-workflow`. The same binary is every process
//! of the story: run bare it is the driver, which starts the server
//! (`patch-workflow serve ...`, the `mandate serve` command) and one
//! process per agent (`patch-workflow agent ROLE ...`), each with its own
//! SVID. `patch-workflow checksums` prints the agents' checksums for
//! `catalog.toml`. See README.md beside this file.

mod agent;
mod classifier;
mod console;
mod driver;
mod patcher;
mod planner;
mod protocol;
mod server;
mod story;
mod supervisor;

use std::path::Path;
use std::process::ExitCode;

use tonic::transport::Channel;

/// The dev trust domain every process's SVID is from.
pub const TRUST_DOMAIN: &str = "mandate.local";

// The resources of the story, registered in `catalog.toml`.
/// The advisory being fixed.
pub const ADVISORY: &str = "advisory:CVE-2026-1234";
/// The affected repository (its branches are below it).
pub const REPO: &str = "repo:acme/payments";
/// The patcher's branch.
pub const FIX_BRANCH: &str = "repo:acme/payments@fix-cve-2026-1234";
/// The protected branch.
pub const MAIN_BRANCH: &str = "repo:acme/payments@main";
/// The CVSS scoring tool.
pub const CLASSIFIER_TOOL: &str = "tool:cvss-classifier";
/// What an injected prompt goes after.
pub const SECRETS: &str = "secrets:payments-prod";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let outcome = match args.get(1).map(String::as_str) {
        // The server: exactly `mandate serve`.
        Some("serve") => return mandate::cli::main(),
        Some("agent") => agent::main(args.get(2..).unwrap_or_default()),
        Some("checksums") => checksums(),
        None => return driver::main(false),
        // Alice approves the push on the approvals page, in a browser.
        Some("--approve-in-browser") => return driver::main(true),
        Some(other) => Err(format!(
            "unknown command `{other}`: run with no arguments for the workflow, `--approve-in-browser`, or `checksums`"
        )),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Prints each agent's checksum, as `catalog.toml` registers them.
fn checksums() -> Result<(), String> {
    for role in agent::ROLES {
        println!("{:<11} {}", role.name, role.checksum()?);
    }
    Ok(())
}

/// A channel to Mandate at `server`, presenting the SVID in `svid_dir`
/// (`svid.pem`, `svid.key`) and accepting only Mandate's own SVID.
pub async fn connect(server: &str, svid_dir: &Path, bundle: &Path) -> Result<Channel, String> {
    let identity = mandate::client::identity_from_files(
        &svid_dir.join("svid.pem"),
        &svid_dir.join("svid.key"),
        bundle,
        None,
    )
    .map_err(|e| e.to_string())?;
    let server_id = spiffe::SpiffeId::new(format!("spiffe://{TRUST_DOMAIN}/mandate"))
        .map_err(|e| e.to_string())?;
    mandate::client::channel(server, &identity, Some(server_id))
        .await
        .map_err(|e| e.to_string())
}
