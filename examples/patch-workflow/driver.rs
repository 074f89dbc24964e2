//! The plot: who does what, in which order, and what Mandate must answer.

use std::path::Path;
use std::process::ExitCode;

use crate::console::{self, Console, HUMAN};
use crate::server::{self, example_dir};
use crate::story::{AgentProcess, Expect, Story};
use crate::{ADVISORY, CLASSIFIER_TOOL, REPO, agent};

const INTENT: &str = "patch CVE-2026-1234 in repo acme/payments";

/// Runs the story; exit code 1 when any answer was not the expected one or
/// the story could not be told. With `browser`, alice approves the push on
/// the approvals page instead of the console relaying her.
pub fn main(browser: bool) -> ExitCode {
    if let Err(e) = check_checksums() {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let dir = match tempfile::Builder::new()
        .prefix("mandate-patch-workflow-")
        .tempdir()
    {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("error: cannot make a temporary directory: {e}");
            return ExitCode::FAILURE;
        }
    };
    match run(dir.path(), browser) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("the server's files are kept in {}", dir.keep().display());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e}");
            eprintln!("the server's files are kept in {}", dir.keep().display());
            ExitCode::FAILURE
        }
    }
}

fn run(dir: &Path, browser: bool) -> Result<bool, String> {
    let server = server::start(dir, browser)?;
    let dev = dir.join("data").join("dev");
    let bundle = dev.join("bundle.pem");
    println!("Mandate patch workflow: {INTENT}");
    println!(
        "server: mandate serve on {} (dev trust domain in {}, shipped policies + \
         examples/patch-workflow/policies, catalog examples/patch-workflow/catalog.toml)",
        server.addr,
        dev.display(),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let workloads = dev.join("workloads");
    let console = Console {
        channel: runtime.block_on(crate::connect(
            &server.addr,
            &workloads.join("frontend"),
            &bundle,
        ))?,
    };
    let auditor = runtime.block_on(crate::connect(
        &server.addr,
        &workloads.join("admin"),
        &bundle,
    ))?;
    let mut supervisor = AgentProcess::spawn("supervisor", &server.addr, &dev)?;
    let mut planner = AgentProcess::spawn("planner", &server.addr, &dev)?;
    let mut classifier = AgentProcess::spawn("classifier", &server.addr, &dev)?;
    let mut patcher = AgentProcess::spawn("patcher", &server.addr, &dev)?;
    let mut story = Story::default();
    use Expect::{Allow, Deny, Done, NeedsApproval};

    story.chapter(&format!(
        "{HUMAN} starts the task in the console, for the supervisor"
    ));
    let (call, root) = runtime.block_on(console.create_task(
        "supervisor",
        INTENT,
        &["read", "invoke", "write"],
        &[ADVISORY, REPO, CLASSIFIER_TOOL],
    ))?;
    story.check("console", &call, Some(&Done));

    story.chapter("the supervisor reads the advisory and delegates narrower tasks");
    let started = story.step(
        &mut supervisor,
        "start",
        &root,
        &[Done, Allow, Done, Done, Done],
    )?;
    let task_of = |role: &str| {
        started
            .result
            .get(role)
            .cloned()
            .ok_or_else(|| format!("the supervisor delegated nothing to the {role}"))
    };
    let (planner_task, classifier_task, patcher_task) = (
        task_of("planner")?,
        task_of("classifier")?,
        task_of("patcher")?,
    );

    story.chapter("the planner reads the advisory and the code");
    story.step(&mut planner, "study", &planner_task, &[Done, Allow, Allow])?;

    story.chapter("the classifier scores the flaw");
    story.step(
        &mut classifier,
        "score",
        &classifier_task,
        &[Done, Allow, Allow],
    )?;

    story.chapter("halfway, the supervisor revokes the classifier's task; its next call is denied");
    story.step(&mut supervisor, "revoke", &classifier_task, &[Done])?;
    story.step(
        &mut classifier,
        "classify-data",
        "",
        &[Deny("mandate.guard.task-not-active")],
    )?;

    story.chapter(
        "a file in the repository injects a prompt into the planner: delete the repo, read the secrets",
    );
    story.step(
        &mut planner,
        "follow-injection",
        "",
        &[
            Deny("mandate.guard.action-not-in-task.delete"),
            Deny("mandate.guard.resource-outside-scope"),
        ],
    )?;

    story.chapter("the patcher commits the fix on its branch, then pushes to main");
    story.step(&mut patcher, "fix", &patcher_task, &[Done, Allow, Allow])?;
    let push = story.step(
        &mut patcher,
        "push",
        "",
        &[NeedsApproval("protected-branches-need-approval")],
    )?;
    let asked = push
        .calls
        .first()
        .map(|c| c.approval_id.clone())
        .unwrap_or_default();

    story.chapter(&format!(
        "{HUMAN} sees the request in the console and approves it; the patcher pushes again"
    ));
    let pending = runtime.block_on(console.pending(&patcher_task))?;
    for (id, action, resource) in &pending {
        println!(
            "   {:<10}  pending approval {}: the patcher asks to {action} {resource}",
            "console",
            agent::short(id)
        );
    }
    if !pending.iter().any(|(id, ..)| *id == asked) {
        story.surprise(format!(
            "the console does not list the approval the push asked for (`{asked}`)"
        ));
    }
    match (&server.ui, pending.is_empty()) {
        (_, true) => {}
        (Some(ui), false) => {
            println!(
                "   {:<10}  open https://{ui}/approvals/{asked} and sign in as {HUMAN} (the dev login);\n               \
                 the browser warns about the certificate: it is Mandate's SVID, named by SPIFFE ID, not by host.\n               \
                 Approve the push there; waiting up to {} minutes.",
                "browser",
                console::BROWSER_WAIT.as_secs() / 60
            );
            let call = runtime.block_on(console.wait_for_decision(&patcher_task, &asked))?;
            story.check("browser", &call, Some(&Done));
        }
        (None, false) => {
            let call = runtime.block_on(console.approve(&asked))?;
            story.check("console", &call, Some(&Done));
        }
    }
    story.step(&mut patcher, "push", "", &[Allow])?;

    story.chapter("the supervisor completes the task");
    story.step(&mut supervisor, "finish", "", &[Done])?;

    story.chapter(&format!(
        "the audit trail of task {}, as `mandate audit trail` prints it",
        agent::short(&root)
    ));
    let entries = runtime.block_on(console::trail(auditor, &root, &story.decisions))?;
    for line in mandate::cli::render_trail(&root, &entries) {
        println!("   {line}");
    }
    drop(server);
    Ok(story.finish())
}

/// The agents' checksums must be those `catalog.toml` registers, or none
/// of them gets a token: say so plainly before starting anything.
fn check_checksums() -> Result<(), String> {
    let path = example_dir().join("catalog.toml");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    let catalog: toml::Table =
        toml::from_str(&text).map_err(|e| format!("`{}`: {e}", path.display()))?;
    let registered = |id: &str| {
        catalog
            .get("agents")
            .and_then(toml::Value::as_array)
            .into_iter()
            .flatten()
            .find(|a| a.get("spiffe_id").and_then(toml::Value::as_str) == Some(id))
            .and_then(|a| a.get("checksum"))
            .and_then(toml::Value::as_str)
            .map(str::to_owned)
    };
    for role in agent::ROLES {
        let checksum = role.checksum()?;
        let id = role.spiffe_id();
        if registered(&id).as_deref() != Some(checksum.as_str()) {
            return Err(format!(
                "`{}` does not register `{id}` with checksum `{checksum}` (its prompt, tools and config as built); \
                 update it (`cargo run --example patch-workflow -- checksums` prints them all)",
                path.display()
            ));
        }
    }
    Ok(())
}
