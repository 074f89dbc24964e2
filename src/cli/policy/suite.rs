//! Policy test suites (`mandate policy test`) and single-request
//! explanations (`mandate policy explain`), decided in-process by the same
//! decision code as the server, over a registry and task chains the suite
//! describes.
//!
//! A suite is a JSON file:
//!
//! ```json
//! {
//!   "description": "what this suite covers",
//!   "catalog": "../../examples/catalog.toml",
//!   "now": 1800000000,
//!   "tasks": [{ "id": "t1", "delegator": "spiffe://mandate.local/workloads/frontend",
//!               "delegatee": "spiffe://mandate.local/agents/patcher", "originator": "alice",
//!               "actions": ["read"], "resources": ["repos"], "max_sensitivity": 1 }],
//!   "cases": [{ "name": "the patcher reads a repo within its task",
//!               "principal": "spiffe://mandate.local/agents/patcher",
//!               "action": "read", "resource": "repo:acme/payments", "task": "t1",
//!               "expect": "allow", "policies": ["agents-act-within-their-task"] }]
//! }
//! ```
//!
//! A case with a `task` may state what was done before it: `history` for
//! the task's own calls, `history_root` for its tree's (the task's
//! `history` when not given), each with optional `calls` (allowed calls
//! per action), `denials`, `sensitivity_read`, `labels_read` and
//! `last_actions` (oldest first). As on the server, the policies see them
//! only for an action some policy reads them for.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cedar_policy::Entities;
use clap::Args;
use serde::Deserialize;
use spiffe::{SpiffeId, TrustDomain};

use super::{Failure, SetArgs};
use crate::cli::authorize::parse_resource;
use crate::decision::{
    AgentPattern, ApprovalView, DEFAULT_AGENT_PATH_PREFIXES, Decision, Evaluator, HistoryQuery,
    Query, TaskFacts,
};
use crate::graph::{Task, TaskSpec, TaskState};
use crate::ledger::{History, Seen};
use crate::policy::PolicyEngine;
use crate::registry::{Catalog, Registry, SensitivityScale, Snapshot};

/// Default time of a suite, so expiries are reproducible.
const DEFAULT_NOW: i64 = 1_800_000_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Suite {
    #[serde(default)]
    description: String,
    /// A catalog file, relative to the suite file.
    catalog: Option<PathBuf>,
    /// Registry entries given in the suite, in the catalog's shape.
    registry: Option<Catalog>,
    /// Mandate's own trust domain.
    #[serde(default = "default_trust_domain")]
    trust_domain: String,
    /// The time of every case, Unix seconds.
    #[serde(default = "default_now")]
    now: i64,
    #[serde(default)]
    tasks: Vec<SuiteTask>,
    cases: Vec<Case>,
}

fn default_trust_domain() -> String {
    crate::config::DEV_TRUST_DOMAIN.to_owned()
}

fn default_now() -> i64 {
    DEFAULT_NOW
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SuiteTask {
    id: String,
    #[serde(default)]
    intent: String,
    delegator: String,
    delegatee: String,
    /// The user at the root; children inherit it.
    #[serde(default)]
    originator: String,
    parent: Option<String>,
    actions: BTreeSet<String>,
    resources: BTreeSet<String>,
    max_sensitivity: i64,
    /// Seconds after `now`; default an hour.
    #[serde(default = "default_expires_in")]
    expires_in: i64,
    /// `active` (default), `completed` or `revoked`.
    #[serde(default)]
    state: Option<String>,
}

fn default_expires_in() -> i64 {
    3600
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    principal: String,
    action: String,
    /// `Type::"id"` or a `Mandate::Resource` id.
    resource: String,
    #[serde(default = "empty_object")]
    context: serde_json::Value,
    /// The task whose token the call presents.
    task: Option<String>,
    /// A current approval of this task, action and resource.
    approval: Option<CaseApproval>,
    /// What the task did before this call.
    history: Option<CaseHistory>,
    /// What its tree did; the task's `history` when not given.
    history_root: Option<CaseHistory>,
    expect: Expect,
    /// The exact determining policy ids, when given.
    policies: Option<Vec<String>>,
    /// The exact reason codes, when given.
    reasons: Option<Vec<String>>,
}

fn empty_object() -> serde_json::Value {
    serde_json::json!({})
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseApproval {
    granted: bool,
    approver: String,
    #[serde(default)]
    age_seconds: i64,
}

/// A [`History`] as a case states it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct CaseHistory {
    calls: BTreeMap<String, u64>,
    denials: u64,
    sensitivity_read: i64,
    labels_read: BTreeSet<String>,
    last_actions: Vec<String>,
}

impl From<&CaseHistory> for History {
    fn from(h: &CaseHistory) -> Self {
        Self {
            calls: h.calls.clone(),
            denials: h.denials,
            sensitivity_read: h.sensitivity_read,
            labels_read: h.labels_read.clone(),
            last_actions: h.last_actions.iter().cloned().collect(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Expect {
    Allow,
    Deny,
    NeedsApproval,
}

/// A suite made ready to decide: its registry and task chains.
struct World {
    registry: Arc<Snapshot>,
    tasks: HashMap<String, Arc<Task>>,
    evaluator: Evaluator,
    now: i64,
}

fn load_suite(path: &Path) -> Result<Suite, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::Usage(format!("cannot read `{}`: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| Failure::Usage(format!("`{}`: {e}", path.display())))
}

fn world(
    path: &Path,
    suite: &Suite,
    engine: &PolicyEngine,
    scale: SensitivityScale,
) -> Result<World, Failure> {
    let usage = |e: String| Failure::Usage(format!("`{}`: {e}", path.display()));
    let mut entries = Vec::new();
    if let Some(catalog) = &suite.catalog {
        let file = path.parent().unwrap_or(Path::new(".")).join(catalog);
        entries.extend(
            Catalog::load(&file)
                .map_err(usage)?
                .into_entries()
                .map_err(|p| usage(p.join("; ")))?,
        );
    }
    if let Some(inline) = &suite.registry {
        entries.extend(
            inline
                .clone()
                .into_entries()
                .map_err(|p| usage(p.join("; ")))?,
        );
    }
    let registry = Registry::new(
        entries,
        &Entities::empty(),
        engine.schema(),
        scale,
        &suite.trust_domain,
        Arc::default(),
    )
    .map_err(|p| usage(p.join("; ")))?;
    let mut tasks: HashMap<String, Arc<Task>> = HashMap::new();
    for t in &suite.tasks {
        let parent = match &t.parent {
            Some(p) => Some(tasks.get(p).cloned().ok_or_else(|| {
                usage(format!(
                    "task `{}` names parent `{p}` before it is listed",
                    t.id
                ))
            })?),
            None => None,
        };
        let id =
            |s: &str| SpiffeId::new(s).map_err(|e| usage(format!("task `{}`: `{s}`: {e}", t.id)));
        let spec = TaskSpec {
            intent: t.intent.clone(),
            delegatee: id(&t.delegatee)?,
            actions: t.actions.clone(),
            scope: t.resources.clone(),
            max_sensitivity: t.max_sensitivity,
            expires_at: suite.now.saturating_add(t.expires_in),
        };
        let mut task = Task::new(
            t.id.as_str().into(),
            spec,
            id(&t.delegator)?,
            t.originator.clone(),
            parent.as_deref(),
            suite.now,
        );
        task.state = match t.state.as_deref() {
            None | Some("active") => TaskState::Active,
            Some("completed") => TaskState::Completed,
            Some("revoked") => TaskState::Revoked,
            Some(other) => {
                return Err(usage(format!(
                    "task `{}`: state `{other}` must be active, completed or revoked",
                    t.id
                )));
            }
        };
        tasks.insert(t.id.clone(), Arc::new(task));
    }
    let trust_domain = TrustDomain::new(&suite.trust_domain).map_err(|e| usage(e.to_string()))?;
    Ok(World {
        registry: registry.snapshot(),
        tasks,
        evaluator: Evaluator::new(AgentPattern::new(
            DEFAULT_AGENT_PATH_PREFIXES.iter().map(|p| (*p).to_owned()),
            [trust_domain],
        )),
        now: suite.now,
    })
}

impl World {
    fn chain(&self, id: &str) -> Option<Vec<Arc<Task>>> {
        let mut chain = Vec::new();
        let mut next = Some(id.to_owned());
        while let Some(id) = next {
            let task = self.tasks.get(&id)?.clone();
            next = task.parent.as_deref().map(str::to_owned);
            chain.push(task);
        }
        Some(chain)
    }

    /// Decides a case as the server would, approval rules included.
    fn decide(
        &self,
        engine: &PolicyEngine,
        case: &Case,
    ) -> Result<(Decision, Option<Entities>), String> {
        let principal = SpiffeId::new(&case.principal)
            .map_err(|e| format!("principal `{}`: {e}", case.principal))?;
        let resource = parse_resource(&case.resource);
        let task = match &case.task {
            Some(id) => Some(TaskFacts {
                chain: self
                    .chain(id)
                    .ok_or_else(|| format!("task `{id}` is not in the suite"))?,
                now: self.now,
                token_jti: "test".to_owned(),
            }),
            None => None,
        };
        let has_task = task.is_some();
        if !has_task && (case.history.is_some() || case.history_root.is_some()) {
            return Err(
                "a history needs a `task`: only calls with a task token have one".to_owned(),
            );
        }
        let seen = task.as_ref().map(|_| {
            let task = case.history.as_ref().map(History::from).unwrap_or_default();
            let tree = case
                .history_root
                .as_ref()
                .map_or_else(|| task.clone(), History::from);
            Seen {
                task: task.into(),
                tree: tree.into(),
            }
        });
        let history = task
            .as_ref()
            .zip(seen.as_ref())
            .filter(|_| engine.reads_history(&case.action))
            .and_then(|(facts, seen)| {
                Some(HistoryQuery {
                    task_id: &facts.chain.first()?.id,
                    root_id: &facts.chain.last()?.id,
                    seen,
                })
            });
        let (outcome, evaluated) = self.evaluator.evaluate(
            engine,
            &self.registry,
            Query {
                task: task.as_ref(),
                approval: case.approval.as_ref().map(|a| ApprovalView {
                    granted: a.granted,
                    approver: a.approver.clone(),
                    age_seconds: a.age_seconds,
                }),
                history,
                ..Query::new(
                    &principal,
                    &case.action,
                    &resource.r#type,
                    &resource.id,
                    case.context.clone(),
                )
            },
        );
        let denied = case.approval.as_ref().is_some_and(|a| !a.granted);
        let outcome = outcome.settle_approval(has_task, denied);
        Ok((outcome, evaluated.map(|e| e.entities)))
    }
}

#[derive(Debug, Args)]
pub(in crate::cli) struct TestArgs {
    /// A suite file or a directory of them [default: ./policies/tests].
    #[arg(default_value = "./policies/tests")]
    path: PathBuf,
    #[command(flatten)]
    set: SetArgs,
}

fn suite_files(path: &Path) -> Result<Vec<PathBuf>, Failure> {
    if path.is_file() {
        return Ok(vec![path.to_owned()]);
    }
    let entries = std::fs::read_dir(path)
        .map_err(|e| Failure::Usage(format!("cannot read `{}`: {e}", path.display())))?;
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Failure::Usage(format!(
            "no `*.json` suites in `{}`",
            path.display()
        )));
    }
    Ok(files)
}

fn describe(outcome: &Decision) -> String {
    let mut out = format!(
        "{} (policies: [{}]",
        outcome.name(),
        outcome.grounds().determining_policies.join(", ")
    );
    if !outcome.reasons().is_empty() {
        out.push_str(&format!(
            "; reasons: {}",
            outcome.grounds().codes().join(", ")
        ));
    }
    if !outcome.grounds().errors.is_empty() {
        out.push_str(&format!(
            "; errors: {}",
            outcome.grounds().errors.join(" | ")
        ));
    }
    out.push(')');
    out
}

/// What is wrong with `outcome` for `case`, if anything.
fn mismatch(case: &Case, outcome: &Decision) -> Option<String> {
    let verdict = outcome.name();
    let expected = match case.expect {
        Expect::Allow => "allow",
        Expect::Deny => "deny",
        Expect::NeedsApproval => "needs_approval",
    };
    let mut sorted = outcome.grounds().determining_policies.clone();
    sorted.sort();
    let policies_differ = case.policies.as_ref().is_some_and(|p| {
        let mut p = p.clone();
        p.sort();
        p != sorted
    });
    let reasons_differ = case.reasons.as_ref().is_some_and(|r| {
        *r != outcome
            .reasons()
            .iter()
            .map(|s| s.as_str().to_owned())
            .collect::<Vec<_>>()
    });
    if verdict == expected && !policies_differ && !reasons_differ {
        return None;
    }
    let mut want = expected.to_owned();
    if let Some(p) = &case.policies {
        want.push_str(&format!(" (policies: [{}])", p.join(", ")));
    }
    if let Some(r) = &case.reasons {
        want.push_str(&format!(" (reasons: {})", r.join(", ")));
    }
    Some(format!(
        "        expected: {want}\n        actual:   {}",
        describe(outcome)
    ))
}

pub(super) fn run_tests(args: &TestArgs) -> Result<(), Failure> {
    let engine = args.set.load()?;
    let (mut passed, mut failed) = (0, 0);
    for file in suite_files(&args.path)? {
        let suite = load_suite(&file)?;
        let world = world(&file, &suite, &engine, args.set.scale()?)?;
        println!("{}  {}", file.display(), suite.description);
        for case in &suite.cases {
            let result = world.decide(&engine, case).map_err(|e| {
                Failure::Usage(format!("`{}`: case `{}`: {e}", file.display(), case.name))
            })?;
            match mismatch(case, &result.0) {
                None => {
                    passed += 1;
                    println!("  ok    {}", case.name);
                }
                Some(diff) => {
                    failed += 1;
                    println!("  FAIL  {}\n{diff}", case.name);
                }
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        return Err(Failure::Failed(vec![format!("{failed} case(s) failed")]));
    }
    Ok(())
}

#[derive(Debug, Args)]
pub(in crate::cli) struct ExplainArgs {
    /// A suite file holding the request (as a case).
    #[arg(long, value_name = "FILE")]
    request: PathBuf,
    /// The case to explain [default: the first].
    #[arg(long, value_name = "NAME")]
    case: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    set: SetArgs,
}

pub(super) fn explain(args: &ExplainArgs) -> Result<(), Failure> {
    let engine = args.set.load()?;
    let suite = load_suite(&args.request)?;
    let world = world(&args.request, &suite, &engine, args.set.scale()?)?;
    let case = match &args.case {
        Some(name) => suite.cases.iter().find(|c| &c.name == name),
        None => suite.cases.first(),
    }
    .ok_or_else(|| Failure::Usage("no such case in the request file".to_owned()))?;
    let (outcome, entities) = world
        .decide(&engine, case)
        .map_err(|e| Failure::Usage(format!("case `{}`: {e}", case.name)))?;
    let slice = entities
        .map(|e| e.to_json_value().map_err(|e| e.to_string()))
        .transpose()
        .map_err(|e| Failure::Usage(format!("cannot show the entity slice: {e}")))?
        .unwrap_or(serde_json::Value::Null);
    let policies: Vec<serde_json::Value> = outcome
        .grounds()
        .determining_policies
        .iter()
        .map(|id| {
            let source = engine
                .source_of(&cedar_policy::PolicyId::new(id))
                .unwrap_or_default();
            serde_json::json!({ "id": id, "source": source })
        })
        .collect();
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "case": case.name,
                "decision": outcome.name(),
                "determining_policies": policies,
                "reasons": outcome.grounds().codes(),
                "errors": outcome.grounds().errors,
                "policy_hash": engine.hash().as_ref(),
                "entities": slice,
            })
        );
        return Ok(());
    }
    println!(
        "{}\n  decision:   {}",
        case.name,
        outcome.name().to_uppercase()
    );
    for p in &policies {
        println!(
            "  policy:     {} at {}",
            p["id"].as_str().unwrap_or_default(),
            p["source"].as_str().unwrap_or_default()
        );
    }
    if !outcome.reasons().is_empty() {
        println!("  reasons:    {}", outcome.grounds().codes().join(", "));
    }
    for error in &outcome.grounds().errors {
        println!("  error:      {error}");
    }
    println!("  policy set: {}", engine.hash());
    println!(
        "  entities:\n{}",
        serde_json::to_string_pretty(&slice).unwrap_or_default()
    );
    Ok(())
}
