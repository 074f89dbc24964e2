//! The trail picture: a root task's delegation tree laid out as SVG, one
//! row per task (indented by depth, joined to its parent), and along each
//! row the task's calls over time as marks coloured by decision, with
//! revocations and approvals marked. Three lanes per row (allow, deny,
//! needs approval) keep a few hundred marks apart; a click on a mark shows
//! its decision record (filled in by `ui.js` from the JSON beside the SVG).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::audit::{AuditEntry, DecisionRecord, EventKind, Indexed, TaskEvent};
use crate::graph::TaskGraph;

use super::page::{esc, utc};

/// Row height, the label column's width, the timeline's width.
const ROW: i64 = 64;
const LABEL_WIDTH: i64 = 480;
const TIMELINE: i64 = 760;
const INDENT: i64 = 22;
const TOP: i64 = 30;

/// One task of the tree, as the trail and the live graph tell it.
#[derive(Debug, Default)]
pub struct TaskRow {
    /// The task id.
    pub id: String,
    /// Its parent, unless it is the root.
    pub parent: Option<String>,
    /// The agent working on it.
    pub agent: String,
    /// What it is for.
    pub intent: String,
    /// Its bounds, as text.
    pub bounds: String,
    /// active, completed, revoked or expired.
    pub state: String,
    /// Depth in the tree, the root 0.
    pub depth: i64,
    /// Its calls, in order.
    pub calls: Vec<Call>,
    /// Revocations, approvals asked and decided: (time ms, kind, text).
    pub marks: Vec<(i64, &'static str, String)>,
}

/// One decision on the picture.
#[derive(Debug)]
pub struct Call {
    /// Index into the records shown on click.
    pub index: usize,
    /// When, ms.
    pub time_ms: i64,
    /// allow, deny or needs_approval.
    pub decision: String,
}

impl TaskRow {
    /// How many calls had `decision`.
    pub fn count(&self, decision: &str) -> usize {
        self.calls.iter().filter(|c| c.decision == decision).count()
    }
}

/// The tree of `root` from its trail, tasks in depth-first order, and the
/// decision records the marks refer to.
pub fn build<'a>(
    root: &str,
    entries: &'a [Indexed],
    graph: &TaskGraph,
    now: i64,
) -> (Vec<TaskRow>, Vec<&'a DecisionRecord>) {
    let mut tasks: BTreeMap<String, TaskRow> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut records = Vec::new();
    let mut row = |tasks: &mut BTreeMap<String, TaskRow>, id: &str| {
        if !tasks.contains_key(id) {
            order.push(id.to_owned());
        }
        tasks.entry(id.to_owned()).or_insert_with(|| TaskRow {
            id: id.to_owned(),
            state: "active".to_owned(),
            ..TaskRow::default()
        });
    };
    for indexed in entries {
        match &*indexed.entry {
            AuditEntry::Event(e) => {
                row(&mut tasks, &e.task_id);
                for revoked in &e.revoked_task_ids {
                    row(&mut tasks, revoked);
                }
                apply_event(&mut tasks, e);
            }
            AuditEntry::Decision(d) => {
                let Some(task) = d.task_id.as_deref() else {
                    continue;
                };
                row(&mut tasks, task);
                if let Some(t) = tasks.get_mut(task) {
                    t.calls.push(Call {
                        index: records.len(),
                        time_ms: d.time_ms,
                        decision: d.decision.clone(),
                    });
                    if t.agent.is_empty() {
                        t.agent.clone_from(&d.subject);
                    }
                }
                records.push(&**d);
            }
        }
    }
    // The live graph knows the state now (expired, revoked with a parent).
    for t in tasks.values_mut() {
        if let Some(chain) = graph.chain(&t.id) {
            t.state = crate::graph::chain_state(&chain, now).as_str().to_owned();
        }
    }
    // Depth-first from the root; tasks whose parent is unknown hang under
    // it, so nothing recorded is left out.
    let mut children: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for id in &order {
        if id == root {
            continue;
        }
        let parent = tasks
            .get(id)
            .and_then(|t| t.parent.clone())
            .filter(|p| tasks.contains_key(p) && p != id)
            .unwrap_or_else(|| root.to_owned());
        children.entry(parent).or_default().push(id.clone());
    }
    let mut out = Vec::new();
    let mut stack = vec![(root.to_owned(), 0i64)];
    while let Some((id, depth)) = stack.pop() {
        if let Some(mut t) = tasks.remove(&id) {
            t.depth = depth;
            out.push(t);
        }
        if let Some(kids) = children.remove(&id) {
            for kid in kids.into_iter().rev() {
                stack.push((kid, depth + 1));
            }
        }
    }
    (out, records)
}

fn apply_event(tasks: &mut BTreeMap<String, TaskRow>, e: &TaskEvent) {
    let time = e.time_ms;
    if let Some(t) = tasks.get_mut(&e.task_id) {
        match e.event {
            EventKind::TaskCreated | EventKind::TaskDelegated | EventKind::TaskAmended => {
                if e.event != EventKind::TaskAmended {
                    t.parent.clone_from(&e.parent_task_id);
                }
                if let Some(agent) = &e.delegatee {
                    t.agent.clone_from(agent);
                }
                if let Some(intent) = &e.intent {
                    t.intent.clone_from(intent);
                }
                t.bounds = format!(
                    "{} on {}, sensitivity ≤ {}",
                    e.actions.join(", "),
                    e.resources.join(", "),
                    e.max_sensitivity.unwrap_or_default()
                );
            }
            EventKind::TaskCompleted => t.state = "completed".to_owned(),
            EventKind::ApprovalRequested => t.marks.push((
                time,
                "approval-requested",
                format!(
                    "approval asked: {} {}",
                    e.action.as_deref().unwrap_or_default(),
                    e.resource_id.as_deref().unwrap_or_default()
                ),
            )),
            EventKind::ApprovalDecided => t.marks.push((
                time,
                if e.approved == Some(true) {
                    "approval-granted"
                } else {
                    "approval-refused"
                },
                format!(
                    "approval {} by {}",
                    if e.approved == Some(true) {
                        "granted"
                    } else {
                        "refused"
                    },
                    e.approver.as_deref().unwrap_or_default()
                ),
            )),
            EventKind::ApprovalRevoked => {
                t.marks
                    .push((time, "approval-revoked", "approval revoked".to_owned()))
            }
            EventKind::TaskRevoked | EventKind::TokenIssued => {}
        }
    }
    if e.event == EventKind::TaskRevoked {
        let reason = e.reason.as_deref().unwrap_or_default();
        for id in std::iter::once(&e.task_id).chain(&e.revoked_task_ids) {
            if let Some(t) = tasks.get_mut(id) {
                t.state = "revoked".to_owned();
                if !t.marks.iter().any(|(_, kind, _)| *kind == "revoked") {
                    t.marks.push((time, "revoked", format!("revoked {reason}")));
                }
            }
        }
    }
}

/// The SVG of `rows`.
pub fn svg(rows: &[TaskRow]) -> String {
    let times = rows.iter().flat_map(|r| {
        r.calls
            .iter()
            .map(|c| c.time_ms)
            .chain(r.marks.iter().map(|m| m.0))
    });
    let (start, end) = times.fold((i64::MAX, i64::MIN), |(lo, hi), t| (lo.min(t), hi.max(t)));
    let span = if end > start { end - start } else { 1 };
    let x =
        |t: i64| LABEL_WIDTH + 10 + (t.saturating_sub(start)).saturating_mul(TIMELINE - 20) / span;
    let height = TOP + ROW * i64::try_from(rows.len()).unwrap_or(i64::MAX / ROW - 1) + 20;
    let width = LABEL_WIDTH + TIMELINE + 10;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"trail\" data-testid=\"trail-svg\" viewBox=\"0 0 {width} {height}\" width=\"{width}\" height=\"{height}\" role=\"img\" aria-label=\"delegation tree\">"
    );
    let _ = write!(
        out,
        "<text x=\"{LABEL_WIDTH}\" y=\"16\" class=\"axis\">{}</text><text x=\"{}\" y=\"16\" class=\"axis end\">{}</text>",
        if rows
            .iter()
            .any(|r| !r.calls.is_empty() || !r.marks.is_empty())
        {
            utc(start.div_euclid(1000))
        } else {
            String::new()
        },
        width - 10,
        if end > i64::MIN {
            utc(end.div_euclid(1000))
        } else {
            String::new()
        },
    );
    let mut y_of: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    for (i, row) in rows.iter().enumerate() {
        let y = TOP + ROW * i64::try_from(i).unwrap_or_default();
        let indent = 8 + INDENT * row.depth;
        y_of.insert(&row.id, (y, indent));
        // The elbow from the parent's row.
        if let Some((py, pindent)) = row.parent.as_deref().and_then(|p| y_of.get(p)) {
            let _ = write!(
                out,
                "<path class=\"edge\" d=\"M{} {} V{} H{}\"/>",
                pindent + 4,
                py + 24,
                y + 14,
                indent - 2
            );
        }
        let _ = write!(
            out,
            "<g class=\"task {state}\" data-testid=\"task\" data-task-id=\"{id}\" data-allow=\"{a}\" data-deny=\"{d}\" data-needs-approval=\"{n}\"><rect class=\"row\" x=\"0\" y=\"{y}\" width=\"{width}\" height=\"{h}\"/><text x=\"{indent}\" y=\"{ty}\" class=\"agent\">{agent}</text><text x=\"{indent}\" y=\"{sy}\" class=\"meta\">{state} · {intent}</text><text x=\"{indent}\" y=\"{by}\" class=\"meta\" data-testid=\"counts\">{a} allowed · {d} denied · {n} needed approval · {bounds}</text>",
            state = esc(&row.state),
            id = esc(&row.id),
            a = row.count("allow"),
            d = row.count("deny"),
            n = row.count("needs_approval"),
            h = ROW - 4,
            ty = y + 16,
            sy = y + 32,
            by = y + 48,
            agent = esc(&row.agent),
            intent = esc(&shorten(&row.intent, 40)),
            bounds = esc(&shorten(&row.bounds, 34)),
        );
        let _ = write!(
            out,
            "<line class=\"lane\" x1=\"{}\" x2=\"{}\" y1=\"{}\" y2=\"{}\"/>",
            LABEL_WIDTH + 10,
            width - 10,
            y + 30,
            y + 30
        );
        for call in &row.calls {
            let lane = match call.decision.as_str() {
                "allow" => 8,
                "deny" => 26,
                _ => 44,
            };
            let _ = write!(
                out,
                "<rect class=\"call {d}\" data-record=\"{i}\" x=\"{x}\" y=\"{y}\" width=\"4\" height=\"12\" tabindex=\"0\"><title>{d}</title></rect>",
                d = esc(&call.decision),
                i = call.index,
                x = x(call.time_ms) - 2,
                y = y + lane - 6,
            );
        }
        for (time, kind, text) in &row.marks {
            let mx = x(*time);
            let _ = write!(
                out,
                "<g class=\"mark {kind}\"><line x1=\"{mx}\" x2=\"{mx}\" y1=\"{}\" y2=\"{}\"/><title>{}</title></g>",
                y + 2,
                y + ROW - 6,
                esc(text)
            );
        }
        out.push_str("</g>");
    }
    out.push_str("</svg>");
    out
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut short: String = text.chars().take(max.saturating_sub(1)).collect();
    short.push('…');
    short
}

/// The decision records shown on click, as JSON safe inside
/// `<script type="application/json">`: no token ids, no hashes.
pub fn records_json(records: &[&DecisionRecord]) -> String {
    let list: Vec<serde_json::Value> = records
        .iter()
        .map(|d| {
            serde_json::json!({
                "decision_id": d.decision_id,
                "time": utc(d.time_ms.div_euclid(1000)),
                "subject": d.subject,
                "caller": d.caller,
                "action": d.action,
                "resource": d.resource_id,
                "task": d.task_id,
                "decision": d.decision,
                "approval_id": d.approval_id,
                "determining_policies": d.determining_policies,
                "reasons": d.reasons,
                "errors": d.errors,
                "latency_us": d.latency_us,
            })
        })
        .collect();
    serde_json::Value::Array(list)
        .to_string()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn event(kind: EventKind, task: &str, parent: Option<&str>, agent: &str) -> Indexed {
        let mut e = TaskEvent::new(kind, "spiffe://td/frontend", task, "root");
        e.parent_task_id = parent.map(str::to_owned);
        e.delegatee = Some(agent.to_owned());
        e.intent = Some(format!("work on {task}"));
        Indexed {
            seq: 0,
            entry: Arc::new(AuditEntry::Event(Box::new(e))),
        }
    }

    fn decision(task: &str, decision: &str, time_ms: i64) -> Indexed {
        let record: DecisionRecord = serde_json::from_value(serde_json::json!({
            "version": 1, "decision_id": format!("d{time_ms}"), "time_ms": time_ms,
            "caller": "c", "subject": "s", "action": "read", "resource_type": "Mandate::Resource",
            "resource_id": "r", "task_id": task, "root_task_id": "root", "chain": [],
            "token_jti": "secret-jti", "decision": decision, "determining_policies": ["p"],
            "reasons": [], "errors": [], "policy_hash": "sha256:abc", "revision": 1, "latency_us": 3
        }))
        .unwrap();
        Indexed {
            seq: 0,
            entry: Arc::new(AuditEntry::Decision(Box::new(record))),
        }
    }

    #[test]
    fn the_tree_is_depth_first_with_counts_and_revocations() {
        let mut revoked = TaskEvent::new(EventKind::TaskRevoked, "a", "child", "root");
        revoked.revoked_task_ids = vec!["child".into(), "grandchild".into()];
        let entries = vec![
            event(EventKind::TaskCreated, "root", None, "spiffe://td/agents/a"),
            event(
                EventKind::TaskDelegated,
                "other",
                Some("root"),
                "spiffe://td/agents/o",
            ),
            event(
                EventKind::TaskDelegated,
                "child",
                Some("root"),
                "spiffe://td/agents/b",
            ),
            event(
                EventKind::TaskDelegated,
                "grandchild",
                Some("child"),
                "spiffe://td/agents/c",
            ),
            decision("root", "allow", 1000),
            decision("child", "deny", 2000),
            decision("child", "needs_approval", 2500),
            decision("grandchild", "allow", 3000),
            // A task the trail names without its delegation hangs under the root.
            decision("stray", "allow", 3500),
            Indexed {
                seq: 0,
                entry: Arc::new(AuditEntry::Event(Box::new(revoked))),
            },
        ];
        let graph = TaskGraph::new(8);
        let (rows, records) = build("root", &entries, &graph, 0);
        let shape: Vec<(&str, i64, usize, usize, usize, &str)> = rows
            .iter()
            .map(|r| {
                (
                    r.id.as_str(),
                    r.depth,
                    r.count("allow"),
                    r.count("deny"),
                    r.count("needs_approval"),
                    r.state.as_str(),
                )
            })
            .collect();
        assert_eq!(
            shape,
            vec![
                ("root", 0, 1, 0, 0, "active"),
                ("other", 1, 0, 0, 0, "active"),
                ("child", 1, 0, 1, 1, "revoked"),
                ("grandchild", 2, 1, 0, 0, "revoked"),
                ("stray", 1, 1, 0, 0, "active"),
            ]
        );
        assert_eq!(records.len(), 5);
        let picture = svg(&rows);
        assert_eq!(picture.matches("class=\"call ").count(), 5);
        assert_eq!(picture.matches("class=\"mark revoked\"").count(), 2);
        let json = records_json(&records);
        assert!(
            !json.contains("secret-jti") && !json.contains("sha256:abc"),
            "{json}"
        );
    }

    #[test]
    fn record_json_cannot_close_its_script_element() {
        let mut entry = decision("root", "deny", 1);
        if let AuditEntry::Decision(d) = Arc::make_mut(&mut entry.entry) {
            d.reasons = vec!["</script><script>alert(1)</script>".into()];
        }
        let AuditEntry::Decision(d) = &*entry.entry else {
            unreachable!()
        };
        let json = records_json(&[d]);
        assert!(!json.contains('<') && !json.contains('>'), "{json}");
    }
}
