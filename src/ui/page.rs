//! HTML of the inbox and the approval page. Plain strings with every
//! value escaped through [`esc`]; no template engine, no inline script
//! (the content security policy forbids it), assets from the binary.

use std::fmt::Write as _;

use crate::approval::{Approval, ApprovalState};
use crate::audit::DecisionRecord;
use crate::graph::Task;

use super::human::Human;

/// `text` escaped for HTML text and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS` UTC.
pub fn utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rest = secs.rem_euclid(86_400);
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// A whole page: the header names the user and how they reached us, and
/// a dev login says so in a banner on every page. With `live` set to the
/// revision it was made at, `ui.js` refreshes it when the state moves.
pub fn layout(title: &str, human: Option<&Human>, live: Option<u64>, body: &str) -> String {
    let who = match human {
        Some(h) if h.dev => format!(
            "<div class=\"dev-banner\" data-testid=\"dev-banner\">DEV LOGIN: not authenticated; loopback only, in the dev trust domain. Signed in as <b>{}</b>, acting through <code>{}</code>.</div>",
            esc(&h.user),
            esc(&h.principal.to_string())
        ),
        _ => String::new(),
    };
    let user = human.map_or(String::new(), |h| {
        format!(
            "<span class=\"who\" data-testid=\"user\">{}</span>",
            esc(&h.user)
        )
    });
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>{} · Mandate</title><link rel=\"stylesheet\" href=\"/assets/ui.css\"><script src=\"/assets/ui.js\" defer></script></head><body>{who}<header><a href=\"/\" class=\"brand\">Mandate</a><nav><a href=\"/\">Approvals</a></nav>{user}</header><main id=\"main\"{live}>{body}</main></body></html>\n",
        esc(title),
        live = live.map_or(String::new(), |r| format!(" data-revision=\"{r}\""))
    )
}

/// What the page shows of an approval's state: "expired" for a granted
/// approval past its end or whose task's scope changed since.
pub fn shown_state(approval: &Approval, task: Option<&Task>, now: i64) -> &'static str {
    match approval.state {
        ApprovalState::Approved
            if !task.is_some_and(|t| approval.is_current(&t.scope_digest, now)) =>
        {
            "expired"
        }
        state => state.as_str(),
    }
}

/// The filters of the inbox, as `?state=`.
pub const FILTERS: &[&str] = &["pending", "approved", "denied", "expired", "revoked", "all"];

/// One row of the inbox.
pub struct Row<'a> {
    /// The approval.
    pub approval: &'a Approval,
    /// Its task, while the graph holds it.
    pub task: Option<&'a Task>,
    /// What [`shown_state`] says.
    pub state: &'static str,
    /// The resource's sensitivity name and labels.
    pub sensitivity: String,
    /// The resource's labels.
    pub labels: Vec<String>,
    /// The delegation chain, the originating user first, then each task's
    /// agent down to this one.
    pub chain: Vec<String>,
    /// The task's latest calls, newest first: (decision, action, resource).
    pub recent: Vec<(String, String, String)>,
}

/// The inbox: a filter bar and one row per approval.
pub fn inbox(rows: &[Row<'_>], filter: &str) -> String {
    let mut out = String::from("<h1>Approvals</h1><p class=\"filters\">");
    for f in FILTERS {
        let class = if *f == filter { " class=\"on\"" } else { "" };
        let _ = write!(out, "<a href=\"/?state={f}\"{class}>{f}</a> ");
    }
    out.push_str("</p>");
    if rows.is_empty() {
        out.push_str("<p class=\"empty\" data-testid=\"empty\">Nothing here.</p>");
        return out;
    }
    out.push_str("<table class=\"inbox\"><thead><tr><th>state</th><th>agent</th><th>wants to</th><th>on</th><th>sensitivity</th><th>intent</th><th>delegation chain</th><th>recent calls</th><th>asked</th></tr></thead><tbody>");
    for row in rows {
        let a = row.approval;
        let _ = write!(
            out,
            "<tr class=\"approval\" data-approval-id=\"{id}\" data-state=\"{state}\"><td><span class=\"state {state}\">{state}</span></td><td><code>{agent}</code></td><td><a href=\"/approvals/{link}\">{action}</a></td><td><code>{resource}</code></td><td>{sens}{labels}</td><td>{intent}</td><td class=\"chain-summary\">{chain}</td><td class=\"recent\">{recent}</td><td>{at}</td></tr>",
            id = esc(&a.id),
            link = esc(&super::path_segment(&a.id)),
            state = row.state,
            agent = esc(&a.requested_by),
            action = esc(&a.subject.action),
            resource = esc(&a.subject.resource_id),
            sens = esc(&row.sensitivity),
            labels = labels(&row.labels),
            intent = esc(row.task.map_or("", |t| t.intent.as_str())),
            chain = row
                .chain
                .iter()
                .map(|link| esc(link))
                .collect::<Vec<_>>()
                .join(" → "),
            recent = row
                .recent
                .iter()
                .map(|(decision, action, resource)| format!(
                    "<span class=\"state {d}\" title=\"{d} {a} {r}\">{a}</span>",
                    d = esc(decision),
                    a = esc(action),
                    r = esc(resource)
                ))
                .collect::<Vec<_>>()
                .join(" "),
            at = utc(a.requested_at),
        );
    }
    out.push_str("</tbody></table>");
    out
}

fn labels(labels: &[String]) -> String {
    labels
        .iter()
        .map(|l| format!(" <span class=\"label\">{}</span>", esc(l)))
        .collect()
}

/// Everything the approval page shows.
pub struct Detail<'a> {
    /// The inbox row of the approval.
    pub row: Row<'a>,
    /// The task's chain, the task first, the root last.
    pub chain: &'a [std::sync::Arc<Task>],
    /// The task's recent calls, newest first; `None` when the trail
    /// cannot be read (with why).
    pub calls: Result<Vec<&'a DecisionRecord>, String>,
    /// The form's CSRF token.
    pub csrf: &'a str,
    /// Now, Unix seconds: tasks past their deadline show as expired.
    pub now: i64,
    /// What just happened, or why the decision was refused.
    pub notice: Option<(bool, String)>,
}

/// Validities offered for a grant, seconds and label.
const VALIDITIES: &[(i64, &str)] = &[
    (900, "15 minutes"),
    (3600, "1 hour"),
    (4 * 3600, "4 hours"),
    (24 * 3600, "1 day"),
];

/// The approval page: what is asked, through which chain, what the task
/// did so far, and the decision form while it is pending.
pub fn detail(d: &Detail<'_>) -> String {
    let a = d.row.approval;
    let mut out = String::new();
    if let Some((ok, text)) = &d.notice {
        let class = if *ok { "notice ok" } else { "notice refused" };
        let _ = write!(
            out,
            "<p class=\"{class}\" data-testid=\"notice\">{}</p>",
            esc(text)
        );
    }
    let _ = write!(
        out,
        "<h1><code>{agent}</code> wants to <b>{action}</b> <code>{resource}</code></h1><dl class=\"facts\" data-approval-id=\"{id}\"><dt>state</dt><dd><span class=\"state {state}\" data-testid=\"state\">{state}</span></dd><dt>sensitivity</dt><dd>{sens}{labels}</dd><dt>justification</dt><dd>{just}</dd><dt>asked</dt><dd>{at}</dd>",
        agent = esc(&a.requested_by),
        action = esc(&a.subject.action),
        resource = esc(&a.subject.resource_id),
        id = esc(&a.id),
        state = d.row.state,
        sens = esc(&d.row.sensitivity),
        labels = labels(&d.row.labels),
        just = esc(&a.justification),
        at = utc(a.requested_at),
    );
    if let Some(by) = &a.approver {
        let _ = write!(out, "<dt>decided by</dt><dd>{}</dd>", esc(by));
    }
    if let Some(until) = a.expires_at {
        let _ = write!(out, "<dt>valid until</dt><dd>{}</dd>", utc(until));
    }
    out.push_str("</dl>");
    if a.state == ApprovalState::Pending {
        let _ = write!(
            out,
            "<form method=\"post\" action=\"/approvals/{id}/decide\" class=\"decide\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><label>valid for <select name=\"valid_for\">",
            id = esc(&super::path_segment(&a.id)),
            csrf = esc(d.csrf),
        );
        for (secs, label) in VALIDITIES {
            let selected = if *secs == 3600 { " selected" } else { "" };
            let _ = write!(out, "<option value=\"{secs}\"{selected}>{label}</option>");
        }
        out.push_str("</select></label> <button name=\"decision\" value=\"approve\" class=\"approve\" data-testid=\"approve\">Approve</button> <button name=\"decision\" value=\"deny\" class=\"deny\" data-testid=\"deny\">Deny</button></form>");
    }
    out.push_str("<h2>Delegation chain</h2><ol class=\"chain\" data-testid=\"chain\">");
    if let Some(root) = d.chain.last() {
        let _ = write!(
            out,
            "<li class=\"user\">user <b>{}</b>, through <code>{}</code></li>",
            esc(&root.originator),
            esc(&root.delegator.to_string())
        );
    }
    for (i, task) in d.chain.iter().enumerate().rev() {
        let above = d.chain.get(i..).unwrap_or_default();
        let _ = write!(
            out,
            "<li><code>{agent}</code>: {intent} <span class=\"bounds\">[{actions} on {scope}, sensitivity ≤ {max}]</span> <span class=\"state {st}\">{st}</span></li>",
            agent = esc(&task.delegatee.to_string()),
            intent = esc(&task.intent),
            actions = esc(&join(&task.actions)),
            scope = esc(&join(&task.scope)),
            max = task.max_sensitivity,
            st = crate::graph::chain_state(above, d.now).as_str(),
        );
    }
    out.push_str("</ol>");
    if let Some(root) = d.chain.last() {
        let _ = write!(
            out,
            "<p><a href=\"/trail/{}\" data-testid=\"trail-link\">The whole trail of this task tree</a></p>",
            esc(&super::path_segment(&root.id))
        );
    }
    out.push_str("<h2>Recent calls of this task</h2>");
    match &d.calls {
        Err(why) => {
            let _ = write!(out, "<p class=\"empty\">{}</p>", esc(why));
        }
        Ok(calls) if calls.is_empty() => out.push_str("<p class=\"empty\">None yet.</p>"),
        Ok(calls) => {
            out.push_str("<table class=\"calls\"><thead><tr><th>time</th><th>decision</th><th>action</th><th>resource</th><th>policies</th></tr></thead><tbody>");
            for c in calls {
                let _ = write!(
                    out,
                    "<tr><td>{}</td><td><span class=\"state {d}\">{d}</span></td><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
                    utc(c.time_ms.div_euclid(1000)),
                    esc(&c.action),
                    esc(&c.resource_id),
                    esc(&c.determining_policies.join(", ")),
                    d = esc(&c.decision),
                );
            }
            out.push_str("</tbody></table>");
        }
    }
    out
}

fn join(names: &crate::graph::Names) -> String {
    names.iter().collect::<Vec<_>>().join(", ")
}

/// The dev login form.
pub fn dev_login() -> String {
    "<h1>Dev login</h1><p>The dev trust domain has no identity provider: say who you are. Nothing checks it; it is refused anywhere but on loopback.</p><form method=\"post\" action=\"/dev-login\"><label>user id <input name=\"user\" required autofocus></label> <button>Sign in</button></form>".to_owned()
}

/// An error page body.
pub fn error(message: &str) -> String {
    format!(
        "<h1>Refused</h1><p class=\"notice refused\" data-testid=\"notice\">{}</p>",
        esc(message)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn formats_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_709_251_199), "2024-02-29 23:59:59");
        assert_eq!(utc(1_795_000_000), "2026-11-18 11:06:40");
    }
}
