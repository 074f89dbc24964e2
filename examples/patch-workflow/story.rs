//! How the driver runs the agent processes and holds each call to what the
//! story expects: every call is printed as it happens (who asked what, the
//! answer, the policies and reasons behind it), and every answer that is
//! not the expected one is counted, so the example fails instead of
//! rotting.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use crate::protocol::{self, Call, Report};

/// What a call should answer.
pub enum Expect {
    /// A task or approval API call that succeeds.
    Done,
    /// `Authorize` allows.
    Allow,
    /// `Authorize` denies, determined by this policy.
    Deny(&'static str),
    /// `Authorize` needs approval, because of this policy.
    NeedsApproval(&'static str),
}

impl Expect {
    fn describe(&self) -> String {
        match self {
            Self::Done => "OK".to_owned(),
            Self::Allow => "ALLOW".to_owned(),
            Self::Deny(policy) => format!("DENY by {policy}"),
            Self::NeedsApproval(policy) => format!("NEEDS_APPROVAL by {policy}"),
        }
    }

    fn matches(&self, call: &Call) -> bool {
        let by = |policy: &str| call.why.iter().any(|p| p == policy);
        match self {
            Self::Done => call.outcome == "OK",
            Self::Allow => call.outcome == "ALLOW",
            Self::Deny(policy) => call.outcome == "DENY" && by(policy),
            Self::NeedsApproval(policy) => call.outcome == "NEEDS_APPROVAL" && by(policy),
        }
    }
}

/// The calls so far and those that went otherwise than expected.
#[derive(Default)]
pub struct Story {
    chapter: usize,
    calls: usize,
    surprises: Vec<String>,
    /// The id of every decision made, to find in the audit trail.
    pub decisions: BTreeSet<String>,
}

impl Story {
    /// Starts the next part of the story.
    pub fn chapter(&mut self, title: &str) {
        self.chapter += 1;
        println!("\n{}. {title}", self.chapter);
    }

    /// Prints `call`, made by `who`, and holds it to `expect`.
    pub fn check(&mut self, who: &str, call: &Call, expect: Option<&Expect>) {
        self.calls += 1;
        if !call.decision_id.is_empty() {
            self.decisions.insert(call.decision_id.clone());
        }
        println!("   {who:<10}  {}", call.what);
        let mut answer = call.outcome.clone();
        if !call.produced.is_empty() {
            answer = format!("{answer}: {}", call.produced);
        }
        if !call.why.is_empty() {
            answer = format!("{answer:<6}  {}", call.why.join(", "));
        }
        if !call.reasons.is_empty() {
            answer = format!("{answer} ({})", call.reasons.join(", "));
        }
        println!("   {:<10}  -> {answer}", "");
        let surprise = match expect {
            Some(expect) if expect.matches(call) => None,
            Some(expect) => Some(format!("expected {}", expect.describe())),
            None => Some("a call the story does not expect".to_owned()),
        };
        if let Some(surprise) = surprise {
            println!("   {:<10}  !! {surprise}", "");
            self.surprises.push(format!(
                "{who}: {}: {} ({surprise})",
                call.what, call.outcome
            ));
        }
    }

    /// Records a surprise that is not one call's answer.
    pub fn surprise(&mut self, what: String) {
        println!("   !! {what}");
        self.surprises.push(what);
    }

    /// Has `agent` carry out `step` (taking on `task` when not empty),
    /// printing and checking its calls against `expect`, in order; answers
    /// the step's results.
    pub fn step(
        &mut self,
        agent: &mut AgentProcess,
        step: &str,
        task: &str,
        expect: &[Expect],
    ) -> Result<Steps, String> {
        let command = protocol::Command {
            step: step.to_owned(),
            task: task.to_owned(),
        };
        let line = serde_json::to_string(&command).map_err(|e| e.to_string())?;
        writeln!(agent.stdin, "{line}")
            .and_then(|()| agent.stdin.flush())
            .map_err(|e| format!("the {} is gone: {e}", agent.name))?;
        let mut calls = Vec::new();
        loop {
            let mut line = String::new();
            let read = agent
                .stdout
                .read_line(&mut line)
                .map_err(|e| format!("reading the {}: {e}", agent.name))?;
            if read == 0 {
                return Err(format!("the {} exited during `{step}`", agent.name));
            }
            let report: Report = serde_json::from_str(&line).map_err(|e| {
                format!("the {} said something unreadable: {e}: {line}", agent.name)
            })?;
            match report {
                Report::Call(call) => {
                    self.check(agent.name, &call, expect.get(calls.len()));
                    calls.push(call);
                }
                Report::Done { result } => {
                    if calls.len() < expect.len() {
                        self.surprise(format!(
                            "{}: `{step}` made {} calls, the story expects {}",
                            agent.name,
                            calls.len(),
                            expect.len()
                        ));
                    }
                    return Ok(Steps { calls, result });
                }
                Report::Failed { message } => {
                    return Err(format!("the {} could not `{step}`: {message}", agent.name));
                }
            }
        }
    }

    /// Prints the verdict; whether everything went as the story says.
    pub fn finish(&self) -> bool {
        println!();
        if self.surprises.is_empty() {
            println!(
                "story: {} calls, every answer as expected, every decision in the trail",
                self.calls
            );
            return true;
        }
        println!(
            "story FAILED: {} thing(s) not as expected, in {} calls:",
            self.surprises.len(),
            self.calls
        );
        for surprise in &self.surprises {
            println!("  {surprise}");
        }
        false
    }
}

/// What a step did.
pub struct Steps {
    /// Its calls, in order.
    pub calls: Vec<Call>,
    /// Its named results.
    pub result: BTreeMap<String, String>,
}

/// An agent process: this binary run as `agent ROLE SERVER DEV_DIR`, with
/// the role's SVID. Killed when dropped.
pub struct AgentProcess {
    name: &'static str,
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl AgentProcess {
    /// Starts the agent `name`.
    pub fn spawn(name: &'static str, server: &str, dev: &Path) -> Result<Self, String> {
        let mut child = Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
            .args(["agent", name, server])
            .arg(dev)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start the {name}: {e}"))?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        Ok(Self {
            name,
            child,
            stdin,
            stdout,
        })
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
