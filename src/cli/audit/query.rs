//! `mandate audit query`: decisions from the server's audit window.

use clap::Args;
use tokio_stream::StreamExt;

use super::{Failure, client, clock_time, status};
use crate::cli::connection::ConnectArgs;
use crate::proto::v1::{DecisionEntry, QueryDecisionsRequest};

#[derive(Debug, Args)]
pub(in crate::cli) struct QueryArgs {
    #[command(flatten)]
    connection: ConnectArgs,
    /// Decisions made with a token of this task.
    #[arg(long, value_name = "TASK_ID")]
    task: Option<String>,
    /// Decisions anywhere in this root task's chain.
    #[arg(long, value_name = "TASK_ID")]
    root_task: Option<String>,
    /// The subject's (or caller's) SPIFFE ID.
    #[arg(long, value_name = "SPIFFE_ID")]
    subject: Option<String>,
    /// `allow`, `deny` or `needs_approval`.
    #[arg(long, value_parser = ["allow", "deny", "needs_approval"])]
    decision: Option<String>,
    /// Not before: Unix milliseconds, or an age such as `90s`, `15m`, `2h`,
    /// `1d`.
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Before: Unix milliseconds, or an age.
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// Decisions this policy id determined.
    #[arg(long, value_name = "POLICY_ID")]
    policy: Option<String>,
    /// Most decisions [default: 1000].
    #[arg(long, default_value_t = 0)]
    limit: u32,
    /// One JSON object a line.
    #[arg(long)]
    json: bool,
}

/// Unix milliseconds of `value`: a number, or an age before now.
fn parse_time(value: &str, now_ms: i64) -> Result<i64, String> {
    if let Ok(ms) = value.parse::<i64>() {
        return Ok(ms);
    }
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let n: i64 = number
        .parse()
        .map_err(|_| format!("`{value}` is not Unix milliseconds or an age like `15m`"))?;
    let unit_ms = match unit {
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("`{value}`: the unit must be `s`, `m`, `h` or `d`")),
    };
    Ok(now_ms.saturating_sub(n.saturating_mul(unit_ms)))
}

/// A decision as one JSON object.
pub(super) fn decision_json(d: &DecisionEntry) -> serde_json::Value {
    serde_json::json!({
        "seq": d.seq,
        "decision_id": d.decision_id,
        "time_ms": d.time_ms,
        "caller": d.caller,
        "subject": d.subject,
        "action": d.action,
        "resource_type": d.resource_type,
        "resource_id": d.resource_id,
        "task_id": d.task_id,
        "root_task_id": d.root_task_id,
        "chain": d.chain,
        "token_jti": d.token_jti,
        "decision": d.decision,
        "approval_id": d.approval_id,
        "determining_policies": d.determining_policies,
        "reasons": d.reasons,
        "errors": d.errors,
        "policy_hash": d.policy_hash,
        "revision": d.revision,
        "latency_us": d.latency_us,
    })
}

/// A decision on one line: time, verdict, action, resource, who, why.
pub(super) fn decision_line(d: &DecisionEntry) -> String {
    let mut why = d.determining_policies.join(", ");
    if !d.reasons.is_empty() {
        if !why.is_empty() {
            why.push_str("; ");
        }
        why.push_str(&d.reasons.join(", "));
    }
    let resource = if d.resource_type.is_empty() {
        d.resource_id.clone()
    } else {
        format!("{}::\"{}\"", d.resource_type, d.resource_id)
    };
    format!(
        "{} {} {} {} by {}{} ({})",
        clock_time(d.time_ms),
        d.decision,
        d.action,
        resource,
        d.subject,
        if d.caller == d.subject {
            String::new()
        } else {
            format!(" via {}", d.caller)
        },
        if why.is_empty() { "no policy" } else { &why }
    )
}

pub(super) async fn run(args: QueryArgs) -> Result<(), Failure> {
    let now = crate::audit::AuditEntry::now_ms();
    let time = |value: &Option<String>| {
        value
            .as_deref()
            .map(|v| parse_time(v, now))
            .transpose()
            .map(Option::unwrap_or_default)
            .map_err(Failure::Usage)
    };
    let request = QueryDecisionsRequest {
        task_id: args.task.clone().unwrap_or_default(),
        root_task_id: args.root_task.clone().unwrap_or_default(),
        subject: args.subject.clone().unwrap_or_default(),
        decision: args.decision.clone().unwrap_or_default(),
        since_ms: time(&args.since)?,
        until_ms: time(&args.until)?,
        policy_id: args.policy.clone().unwrap_or_default(),
        limit: args.limit,
    };
    let mut stream = client(&args.connection)
        .await?
        .query_decisions(request)
        .await
        .map_err(status)?
        .into_inner();
    while let Some(decision) = stream.next().await {
        let decision = decision.map_err(status)?;
        if args.json {
            println!("{}", decision_json(&decision));
        } else {
            println!("{}", decision_line(&decision));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_milliseconds_or_ages() {
        assert_eq!(parse_time("1700000000000", 0), Ok(1_700_000_000_000));
        assert_eq!(parse_time("15m", 1_000_000), Ok(100_000));
        assert!(parse_time("15w", 0).is_err());
    }
}
