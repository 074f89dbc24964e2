//! `mandate audit trail ROOT_TASK`: a root task's trail as a tree. Each
//! task shows who delegated it to whom and for what; under it, in order,
//! its tokens, approvals, revocations and the calls made with its tokens
//! (decision and policies), and the tasks delegated from it.

use std::collections::{BTreeMap, BTreeSet};

use clap::Args;

use super::query::{decision_json, decision_line};
use super::{Failure, client, clock_time, status};
use crate::cli::connection::ConnectArgs;
use crate::proto::v1::{GetTaskTrailRequest, TaskEvent, TrailEntry, trail_entry::Entry};

#[derive(Debug, Args)]
pub(in crate::cli) struct TrailArgs {
    #[command(flatten)]
    connection: ConnectArgs,
    /// The root task's id.
    #[arg(value_name = "ROOT_TASK")]
    root_task: String,
    /// The entries as JSON, one object a line, in order.
    #[arg(long)]
    json: bool,
}

/// What a task's node holds, in order.
#[derive(Debug, Default)]
struct Node {
    header: Option<String>,
    items: Vec<Item>,
}

#[derive(Debug)]
enum Item {
    Line(String),
    Child(String),
}

fn event_json(e: &TaskEvent) -> serde_json::Value {
    serde_json::json!({
        "seq": e.seq,
        "event": e.event,
        "event_id": e.event_id,
        "time_ms": e.time_ms,
        "actor": e.actor,
        "task_id": e.task_id,
        "root_task_id": e.root_task_id,
        "parent_task_id": e.parent_task_id,
        "delegatee": e.delegatee,
        "originator": e.originator,
        "intent": e.intent,
        "actions": e.actions,
        "resources": e.resources,
        "max_sensitivity": e.max_sensitivity,
        "expires_at": e.expires_at,
        "token_jti": e.token_jti,
        "approval_id": e.approval_id,
        "action": e.action,
        "resource_id": e.resource_id,
        "approved": e.approved,
        "approver": e.approver,
        "revoked_task_ids": e.revoked_task_ids,
        "reason": e.reason,
        "revision": e.revision,
    })
}

/// The line of a task's creation or delegation.
fn header(e: &TaskEvent) -> String {
    let verb = if e.event == "task_created" {
        format!("created by {} for {}", e.actor, e.originator)
    } else {
        format!("delegated by {}", e.actor)
    };
    format!(
        "task {} {verb} to {}: \"{}\" [{} on {}, sensitivity <= {}]",
        e.task_id,
        e.delegatee,
        e.intent,
        e.actions.join(", "),
        e.resources.join(", "),
        e.max_sensitivity
    )
}

/// Any other event on one line.
fn event_line(e: &TaskEvent) -> String {
    let at = clock_time(e.time_ms);
    match e.event.as_str() {
        "token_issued" => format!("{at} token issued to {} (jti {})", e.delegatee, e.token_jti),
        "task_amended" => format!(
            "{at} amended by {}: [{} on {}, sensitivity <= {}]",
            e.actor,
            e.actions.join(", "),
            e.resources.join(", "),
            e.max_sensitivity
        ),
        "task_completed" => format!("{at} completed by {}", e.actor),
        "task_revoked" => format!(
            "{at} revoked by {} ({} tasks){}",
            e.actor,
            e.revoked_task_ids.len(),
            if e.reason.is_empty() {
                String::new()
            } else {
                format!(": {}", e.reason)
            }
        ),
        "approval_requested" => format!(
            "{at} approval {} asked by {} for {} {}",
            e.approval_id, e.actor, e.action, e.resource_id
        ),
        "approval_decided" => format!(
            "{at} approval {} {} by {} (relayed by {})",
            e.approval_id,
            if e.approved { "granted" } else { "refused" },
            e.approver,
            e.actor
        ),
        "approval_revoked" => format!("{at} approval {} revoked by {}", e.approval_id, e.actor),
        other => format!("{at} {other} by {}", e.actor),
    }
}

/// The tree's lines, two spaces a level: what `mandate audit trail` prints
/// for `GetTaskTrail`'s entries, for other clients to print the same.
pub fn render(root: &str, entries: &[TrailEntry]) -> Vec<String> {
    let mut nodes: BTreeMap<String, Node> = BTreeMap::new();
    let mut children = BTreeSet::new();
    for entry in entries.iter().filter_map(|e| e.entry.as_ref()) {
        match entry {
            Entry::Event(e) if e.event == "task_created" || e.event == "task_delegated" => {
                nodes.entry(e.task_id.clone()).or_default().header = Some(header(e));
                if !e.parent_task_id.is_empty() {
                    children.insert(e.task_id.clone());
                    nodes
                        .entry(e.parent_task_id.clone())
                        .or_default()
                        .items
                        .push(Item::Child(e.task_id.clone()));
                }
            }
            Entry::Event(e) => nodes
                .entry(e.task_id.clone())
                .or_default()
                .items
                .push(Item::Line(event_line(e))),
            Entry::Decision(d) => nodes
                .entry(d.task_id.clone())
                .or_default()
                .items
                .push(Item::Line(decision_line(d))),
        }
    }
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    print_node(root, &nodes, 0, &mut out, &mut seen);
    // Tasks whose delegation fell out of the window still show.
    for id in nodes.keys() {
        if !seen.contains(id) && !children.contains(id) {
            print_node(id, &nodes, 0, &mut out, &mut seen);
        }
    }
    out
}

fn print_node(
    id: &str,
    nodes: &BTreeMap<String, Node>,
    depth: usize,
    out: &mut Vec<String>,
    seen: &mut BTreeSet<String>,
) {
    // INVARIANT: each task prints once, so a malformed trail (a task its
    // own descendant) cannot recurse forever.
    if !seen.insert(id.to_owned()) {
        return;
    }
    let indent = "  ".repeat(depth);
    let Some(node) = nodes.get(id) else {
        out.push(format!("{indent}task {id} (nothing recorded)"));
        return;
    };
    out.push(format!(
        "{indent}{}",
        node.header
            .clone()
            .unwrap_or_else(|| format!("task {id} (its creation is outside the window)"))
    ));
    for item in &node.items {
        match item {
            Item::Line(line) => out.push(format!("{indent}  {line}")),
            Item::Child(child) => print_node(child, nodes, depth + 1, out, seen),
        }
    }
}

pub(super) async fn run(args: TrailArgs) -> Result<(), Failure> {
    let response = client(&args.connection)
        .await?
        .get_task_trail(GetTaskTrailRequest {
            root_task_id: args.root_task.clone(),
        })
        .await
        .map_err(status)?
        .into_inner();
    if args.json {
        for entry in response.entries.iter().filter_map(|e| e.entry.as_ref()) {
            let json = match entry {
                Entry::Decision(d) => decision_json(d),
                Entry::Event(e) => event_json(e),
            };
            println!("{json}");
        }
        return Ok(());
    }
    if response.entries.is_empty() {
        println!("nothing recorded for root task `{}`", args.root_task);
    }
    for line in render(&args.root_task, &response.entries) {
        println!("{line}");
    }
    if response.window_start_ms != 0 {
        println!(
            "(the server's audit window starts at {} UTC; older entries are only in its files)",
            clock_time(response.window_start_ms)
        );
    }
    Ok(())
}
