//! What every agent process shares: its role (prompt, tools, model config
//! and so its checksum), its SVID, its connection to Mandate, the task it
//! works on and that task's token, and the calls it makes with them. Each
//! call is reported to the driver as it is made.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::Path;

use mandate::api::v1::{
    AuthorizeRequest, CompleteTaskRequest, Decision, DelegateTaskRequest, IssueTaskTokenRequest,
    Resource, RevokeTaskRequest, TaskScope,
    authorization_service_client::AuthorizationServiceClient,
    task_service_client::TaskServiceClient,
};
use serde_json::Value;
use tonic::transport::Channel;

use crate::protocol::{Call, Command, Report};
use crate::{TRUST_DOMAIN, classifier, patcher, planner, supervisor};

/// The model configuration every agent of the example runs with.
const MODEL_CONFIG: &str = r#"{"model": "example-llm-1", "temperature": 0}"#;

/// What makes an agent behave as it does, hashed into the checksum the
/// catalog registers and the agent proves with every token it asks for.
pub struct Role {
    /// The agent's name: `spiffe://mandate.local/agents/NAME`.
    pub name: &'static str,
    /// Its system prompt.
    pub prompt: &'static str,
    /// Its tool manifest (JSON).
    pub tools: &'static str,
}

/// The four agents of the workflow.
pub const ROLES: [&Role; 4] = [
    &supervisor::ROLE,
    &planner::ROLE,
    &classifier::ROLE,
    &patcher::ROLE,
];

impl Role {
    /// The agent's SPIFFE ID in the dev trust domain.
    pub fn spiffe_id(&self) -> String {
        spiffe_id(self.name)
    }

    /// `sha256:...` over the prompt, tools and model config (see
    /// `mandate::integrity`).
    pub fn checksum(&self) -> Result<String, String> {
        let tools: Value = serde_json::from_str(self.tools)
            .map_err(|e| format!("{}'s tool manifest is not JSON: {e}", self.name))?;
        let config: Value = serde_json::from_str(MODEL_CONFIG)
            .map_err(|e| format!("the model config is not JSON: {e}"))?;
        mandate::integrity::agent_checksum(self.prompt, &tools, &config)
    }
}

/// The SPIFFE ID of the dev trust domain's agent `name`.
pub fn spiffe_id(name: &str) -> String {
    format!("spiffe://{TRUST_DOMAIN}/agents/{name}")
}

/// A running agent: its connection and the task it holds a token for.
pub struct Agent {
    role: &'static Role,
    checksum: String,
    channel: Channel,
    task: String,
    token: String,
}

/// The scope of a task an agent delegates.
pub struct Scope<'a> {
    pub actions: &'a [&'a str],
    pub resources: &'a [&'a str],
    pub max_sensitivity: i64,
}

impl Agent {
    /// Takes on `task`: asks for a token bound to our SVID, proving our
    /// checksum.
    pub async fn take(&mut self, task: &str) -> Result<(), String> {
        let answer = TaskServiceClient::new(self.channel.clone())
            .issue_task_token(IssueTaskTokenRequest {
                task_id: task.to_owned(),
                ttl_seconds: 600,
                agent_proof: self.checksum.clone(),
            })
            .await;
        let what = format!("token for task {}", short(task));
        match answer {
            Ok(answer) => {
                let answer = answer.into_inner();
                report_ok(what, format!("jti {}", short(&answer.jti)));
                self.task = task.to_owned();
                self.token = answer.token;
                Ok(())
            }
            Err(status) => Err(refused(what, &status)),
        }
    }

    /// Asks Mandate whether we may `action` on `resource` now, presenting
    /// our task token; `purpose` goes in the context. Every answer is
    /// reported, allow or not: what the agent does next is the story's.
    pub async fn call(&self, action: &str, resource: &str, purpose: &str) -> Result<Call, String> {
        let mut context = prost_types::Struct::default();
        context.fields.insert(
            "purpose".to_owned(),
            prost_types::Value {
                kind: Some(prost_types::value::Kind::StringValue(purpose.to_owned())),
            },
        );
        let what = format!("{action} {resource}");
        let answer = AuthorizationServiceClient::new(self.channel.clone())
            .authorize(AuthorizeRequest {
                action: action.to_owned(),
                resource: Some(Resource {
                    r#type: String::new(),
                    id: resource.to_owned(),
                }),
                context: Some(context),
                token: self.token.clone(),
                subject: None,
                min_revision: 0,
            })
            .await
            .map_err(|status| format!("{what}: {}", status.message()))?
            .into_inner();
        let outcome = match Decision::try_from(answer.decision) {
            Ok(Decision::Allow) => "ALLOW",
            Ok(Decision::NeedsApproval) => "NEEDS_APPROVAL",
            // Anything else, an unknown value included, is a deny.
            _ => "DENY",
        };
        let mut policies = answer.determining_policies;
        // Sorted, so the story reads the same at every run.
        policies.sort();
        let call = Call {
            what,
            outcome: outcome.to_owned(),
            why: policies,
            reasons: answer.reasons,
            decision_id: answer.decision_id,
            approval_id: answer.approval_id,
            produced: String::new(),
        };
        send(&Report::Call(call.clone()));
        Ok(call)
    }

    /// Delegates part of our task to the agent `to`; returns the new task's
    /// id.
    pub async fn delegate(
        &self,
        to: &str,
        intent: &str,
        scope: &Scope<'_>,
    ) -> Result<String, String> {
        let what = format!(
            "delegate to {to}: \"{intent}\" [{} on {}, sensitivity <= {}]",
            scope.actions.join(", "),
            scope.resources.join(", "),
            scope.max_sensitivity
        );
        let answer = TaskServiceClient::new(self.channel.clone())
            .delegate_task(DelegateTaskRequest {
                parent_id: self.task.clone(),
                intent: intent.to_owned(),
                delegatee: spiffe_id(to),
                scope: Some(TaskScope {
                    actions: owned(scope.actions),
                    resources: owned(scope.resources),
                    max_sensitivity: scope.max_sensitivity,
                    expires_at: 0,
                    ttl_seconds: 900,
                }),
                agent_proof: self.checksum.clone(),
            })
            .await;
        match answer {
            Ok(answer) => {
                let id = answer.into_inner().task.map(|t| t.id).unwrap_or_default();
                report_ok(what, format!("task {}", short(&id)));
                Ok(id)
            }
            Err(status) => Err(refused(what, &status)),
        }
    }

    /// Revokes a task we delegated (and its subtree).
    pub async fn revoke(&self, task: &str, reason: &str) -> Result<(), String> {
        let what = format!("revoke task {}: \"{reason}\"", short(task));
        let answer = TaskServiceClient::new(self.channel.clone())
            .revoke_task(RevokeTaskRequest {
                task_id: task.to_owned(),
                reason: reason.to_owned(),
            })
            .await;
        match answer {
            Ok(answer) => {
                let revoked = answer.into_inner().revoked_task_ids.len();
                report_ok(what, format!("{revoked} task(s) revoked"));
                Ok(())
            }
            Err(status) => Err(refused(what, &status)),
        }
    }

    /// Marks our task done.
    pub async fn complete(&self) -> Result<(), String> {
        let what = format!("complete task {}", short(&self.task));
        let answer = TaskServiceClient::new(self.channel.clone())
            .complete_task(CompleteTaskRequest {
                task_id: self.task.clone(),
            })
            .await;
        match answer {
            Ok(_) => {
                report_ok(what, String::new());
                Ok(())
            }
            Err(status) => Err(refused(what, &status)),
        }
    }
}

fn owned(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// The first characters of an id, enough to tell ids apart on screen.
pub fn short(id: &str) -> &str {
    // UUIDv7s made close together share their first 8 characters.
    id.get(..13).unwrap_or(id)
}

fn report_ok(what: String, produced: String) {
    send(&Report::Call(Call {
        what,
        outcome: "OK".to_owned(),
        why: Vec::new(),
        reasons: Vec::new(),
        decision_id: String::new(),
        approval_id: String::new(),
        produced,
    }));
}

/// A refused task API call: reported, and the step stops there.
fn refused(what: String, status: &tonic::Status) -> String {
    send(&Report::Call(Call {
        what: what.clone(),
        outcome: "REFUSED".to_owned(),
        why: vec![status.message().to_owned()],
        reasons: Vec::new(),
        decision_id: String::new(),
        approval_id: String::new(),
        produced: String::new(),
    }));
    format!("{what}: {:?}: {}", status.code(), status.message())
}

/// Writes one report line to the driver.
fn send(report: &Report) {
    let line = serde_json::to_string(report).unwrap_or_else(|e| {
        format!(r#"{{"report":"failed","message":"cannot encode a report: {e}"}}"#)
    });
    let mut out = std::io::stdout().lock();
    // A driver that went away ends the agent at its next read of stdin.
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// `agent ROLE SERVER_ADDR DEV_DIR`: connects with the role's SVID, then
/// carries out the driver's commands one by one until stdin closes.
pub fn main(args: &[String]) -> Result<(), String> {
    let [role, server, dev] = args else {
        return Err("usage: patch-workflow agent ROLE SERVER_ADDR DEV_DIR".to_owned());
    };
    let role = ROLES
        .into_iter()
        .find(|r| r.name == role)
        .ok_or_else(|| format!("no agent role `{role}`"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let dev = Path::new(dev);
    let channel = runtime.block_on(crate::connect(
        server,
        &dev.join("agents").join(role.name),
        &dev.join("bundle.pem"),
    ))?;
    let mut agent = Agent {
        role,
        checksum: role.checksum()?,
        channel,
        task: String::new(),
        token: String::new(),
    };
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(|e| format!("cannot read a command: {e}"))?;
        let report = match serde_json::from_str::<Command>(&line) {
            Ok(command) => match runtime.block_on(step(&mut agent, &command)) {
                Ok(result) => Report::Done { result },
                Err(message) => Report::Failed { message },
            },
            Err(e) => Report::Failed {
                message: format!("not a command: {e}"),
            },
        };
        send(&report);
    }
    Ok(())
}

/// Hands a command to the agent's own module.
async fn step(agent: &mut Agent, command: &Command) -> Result<BTreeMap<String, String>, String> {
    match agent.role.name {
        "supervisor" => supervisor::step(agent, command).await,
        "planner" => planner::step(agent, command).await,
        "classifier" => classifier::step(agent, command).await,
        "patcher" => patcher::step(agent, command).await,
        other => Err(format!("no agent role `{other}`")),
    }
}

/// The error of a step the agent's module does not know.
pub fn unknown_step(role: &Role, command: &Command) -> String {
    format!("the {} has no step `{}`", role.name, command.step)
}
