//! `mandate policy replay`: re-decide recorded decisions (the server's
//! `--decision-log`, one [`DecisionRecord`] a line) with a candidate policy
//! set and report those that would change, grouped by the policies that
//! would decide them. A deny that would become an allow is a widening:
//! exit 1 unless `--allow-widening`.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::PathBuf;

use cedar_policy::Authorizer;
use clap::Args;

use super::{Failure, SetArgs};
use crate::audit::{DecisionRecord, RECORD_VERSION};
use crate::decision::{Decision, judge};

#[derive(Debug, Args)]
pub(in crate::cli) struct ReplayArgs {
    /// The decision log (JSON lines).
    #[arg(long, value_name = "FILE")]
    decisions: PathBuf,
    /// Do not fail when a deny would become an allow.
    #[arg(long)]
    allow_widening: bool,
    /// The candidate set.
    #[command(flatten)]
    set: SetArgs,
}

/// One decision that would change.
struct Change {
    decision_id: String,
    subject: String,
    action: String,
    resource: String,
}

pub(super) fn run(args: &ReplayArgs) -> Result<(), Failure> {
    let engine = args.set.load()?;
    let file = std::fs::File::open(&args.decisions)
        .map_err(|e| Failure::Usage(format!("cannot read `{}`: {e}", args.decisions.display())))?;
    let authorizer = Authorizer::new();
    let (mut replayed, mut skipped) = (0usize, 0usize);
    // (old -> new, deciding policies) -> the decisions.
    let mut changes: BTreeMap<(String, String), Vec<Change>> = BTreeMap::new();
    let mut widening = 0usize;
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| Failure::Usage(format!("line {}: {e}", n + 1)))?;
        if line.trim().is_empty() {
            continue;
        }
        // Task lifecycle events share the file; only decisions replay.
        if crate::audit::is_event_line(&line) {
            continue;
        }
        let record: DecisionRecord = serde_json::from_str(&line).map_err(|e| {
            Failure::Usage(format!(
                "{}:{}: not a decision record: {e}",
                args.decisions.display(),
                n + 1
            ))
        })?;
        if record.version > RECORD_VERSION {
            return Err(Failure::Usage(format!(
                "{}:{}: record version {} is newer than this tool reads ({RECORD_VERSION})",
                args.decisions.display(),
                n + 1,
                record.version
            )));
        }
        let Some(cedar) = &record.cedar else {
            // Denied before the policies ran (a bad token, say): no policy
            // change can alter it.
            skipped += 1;
            continue;
        };
        let (request, entities) = cedar
            .to_cedar()
            .map_err(|e| Failure::Usage(format!("{}:{}: {e}", args.decisions.display(), n + 1)))?;
        let outcome = judge(&authorizer, &engine, &request, &entities);
        let has_task = cedar.context.get("task").is_some();
        let denied = cedar
            .context
            .get("approval")
            .and_then(|a| a.get("granted"))
            .and_then(serde_json::Value::as_bool)
            == Some(false);
        let outcome = outcome.settle_approval(has_task, denied);
        replayed += 1;
        let now = outcome.name();
        // A server that could not ask for an approval answered deny; the
        // same request needing approval again is no change.
        let unasked = record.decision == "deny"
            && record.reasons.iter().any(|r| r == "approval-not-requested")
            && matches!(outcome, Decision::NeedsApproval(_));
        if now == record.decision || unasked {
            continue;
        }
        if outcome.is_allowed() {
            widening += 1;
        }
        let by = if outcome.grounds().determining_policies.is_empty() {
            outcome.grounds().codes().join(", ")
        } else {
            outcome.grounds().determining_policies.join(", ")
        };
        changes
            .entry((format!("{} -> {now}", record.decision), by))
            .or_default()
            .push(Change {
                decision_id: record.decision_id.clone(),
                subject: record.subject.clone(),
                action: record.action.clone(),
                resource: record.resource_id.clone(),
            });
    }
    let changed: usize = changes.values().map(Vec::len).sum();
    println!(
        "replayed {replayed} decision(s) with {} ({skipped} denied before any policy ran, by token or identity checks no policy changes; skipped); {changed} would change",
        engine.hash()
    );
    for ((flip, by), list) in &changes {
        println!("  {flip}, by {by}: {}", list.len());
        for c in list {
            println!(
                "    {}  {} {} {}",
                c.decision_id, c.subject, c.action, c.resource
            );
        }
    }
    if widening > 0 && !args.allow_widening {
        return Err(Failure::Failed(vec![format!(
            "{widening} decision(s) would become allows; pass --allow-widening if that is intended"
        )]));
    }
    Ok(())
}
