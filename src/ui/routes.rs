//! The UI's routes. Each handler first finds the human (see
//! [`super::human`]), then reads or writes through the same API methods,
//! and so the same Cedar decisions, as the gRPC services, with the front
//! proxy as the principal.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::csrf::{self, Keys};
use super::human::{self, DEV_COOKIE, Human, Refusal};
use super::page::{self, Detail, Row};
use super::{UiParts, UiSettings, trail};
use crate::api::ApiError;
use crate::api::https::HttpsPeer;
use crate::approval::{Approval, ApprovalFilter, ApprovalState};
use crate::audit::AuditEntry;

/// Longest validity a grant may be given from the page: a week.
const MAX_VALID_FOR: i64 = 7 * 24 * 3600;
/// Most approvals the inbox reads, newest kept.
const MAX_LISTED: usize = 10_000;
/// Approvals shown at once.
const SHOWN: usize = 500;
/// Recent calls shown on an approval's page.
const RECENT_CALLS: usize = 10;
/// Recent calls shown in an inbox row.
const RECENT_IN_INBOX: usize = 3;
/// Most trails read for one inbox page.
const RECENT_ROOTS: usize = 20;

/// What every handler holds.
#[derive(Debug, Clone)]
pub struct AppState {
    settings: Arc<UiSettings>,
    parts: UiParts,
    keys: Arc<Keys>,
}

impl AppState {
    /// The state of a UI with a fresh signing key.
    pub fn new(settings: Arc<UiSettings>, parts: UiParts, keys: Keys) -> Self {
        Self {
            settings,
            parts,
            keys: Arc::new(keys),
        }
    }
}

/// The router of the UI listener.
pub fn router(state: AppState) -> Router {
    let mut router = Router::new()
        .route("/", get(inbox))
        .route("/approvals/{id}", get(approval))
        .route("/approvals/{id}/decide", post(decide))
        .route("/trail/{root}", get(trail_page))
        .route("/revision", get(revision))
        .route("/assets/ui.css", get(css))
        .route("/assets/ui.js", get(js));
    if state.settings.dev_login {
        router = router.route("/dev-login", get(dev_login_form).post(dev_login));
    }
    router
        .layer(axum::middleware::map_response(secure_headers))
        .with_state(state)
}

/// No framing, no sniffing, no caching, no referrer, nothing but our own
/// scripts and styles.
async fn secure_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (
            "content-security-policy",
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

async fn css() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("assets/ui.css"),
    )
}

async fn js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("assets/ui.js"),
    )
}

/// A page answering `status`.
fn html(status: StatusCode, title: &str, human: Option<&Human>, body: &str) -> Response {
    (status, Html(page::layout(title, human, None, body))).into_response()
}

/// The human behind the request, or the answer for a request without one.
fn who(state: &AppState, peer: &HttpsPeer, headers: &HeaderMap) -> Result<Human, Box<Response>> {
    let now = state.parts.clock.now();
    // Cloned out: a watch borrow must not be held while verifying.
    let bundles = state.parts.identity.borrow().bundles.clone();
    human::identify(&state.settings, &state.keys, peer, headers, &bundles, now).map_err(|refusal| {
        Box::new(match refusal {
            Refusal::NeedsDevLogin => Redirect::to("/dev-login").into_response(),
            Refusal::NotLoopback => html(
                StatusCode::FORBIDDEN,
                "Refused",
                None,
                &page::error("the dev login answers on loopback only"),
            ),
            Refusal::NotAProxy(why) => {
                tracing::info!(remote = %peer.remote_addr, why, "ui request refused");
                html(StatusCode::FORBIDDEN, "Refused", None, &page::error(&why))
            }
            Refusal::NoUser(why) => html(
                StatusCode::UNAUTHORIZED,
                "Refused",
                None,
                &page::error(&why),
            ),
        })
    })
}

/// The HTTP status of an API refusal; internals are not shown.
fn refusal(error: &ApiError) -> (StatusCode, String) {
    let status = match error.code() {
        tonic::Code::InvalidArgument => StatusCode::BAD_REQUEST,
        tonic::Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        tonic::Code::PermissionDenied => StatusCode::FORBIDDEN,
        tonic::Code::NotFound => StatusCode::NOT_FOUND,
        tonic::Code::AlreadyExists | tonic::Code::FailedPrecondition => StatusCode::CONFLICT,
        tonic::Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let message = if status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!(error = %error, "ui request failed");
        "internal error".to_owned()
    } else {
        error.to_string()
    };
    (status, message)
}

#[derive(Debug, Deserialize)]
struct InboxQuery {
    state: Option<String>,
}

async fn inbox(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<HttpsPeer>,
    headers: HeaderMap,
    Query(query): Query<InboxQuery>,
) -> Response {
    let human = match who(&state, &peer, &headers) {
        Ok(h) => h,
        Err(response) => return *response,
    };
    let filter_name = query.state.unwrap_or_else(|| "all".to_owned());
    if !page::FILTERS.contains(&filter_name.as_str()) {
        return html(
            StatusCode::BAD_REQUEST,
            "Refused",
            Some(&human),
            &page::error(&format!("unknown filter `{filter_name}`")),
        );
    }
    let revision = state.parts.revision.current();
    let stored = match filter_name.as_str() {
        "pending" => Some(ApprovalState::Pending),
        "approved" | "expired" => Some(ApprovalState::Approved),
        "denied" => Some(ApprovalState::Denied),
        "revoked" => Some(ApprovalState::Revoked),
        _ => None,
    };
    let filter = ApprovalFilter {
        state: stored,
        ..ApprovalFilter::default()
    };
    let mut approvals: Vec<Approval> = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let (page, next) =
            state
                .parts
                .approvals
                .list_readable(&human.principal, &filter, after.as_deref(), 500);
        approvals.extend(page);
        match next {
            Some(next) if approvals.len() < MAX_LISTED => after = Some(next),
            _ => break,
        }
    }
    let now = state.parts.clock.now();
    let chains: Vec<_> = approvals
        .iter()
        .map(|a| {
            state
                .parts
                .graph
                .chain(&a.subject.task_id)
                .unwrap_or_default()
        })
        .collect();
    let recent = recent_calls(&state, &human, &approvals, &chains).await;
    let mut rows: Vec<Row<'_>> = approvals
        .iter()
        .zip(&chains)
        .map(|(a, chain)| {
            let task = chain.first().map(|t| &**t);
            let (sensitivity, labels) =
                super::resource_facts(&state.parts.registry, &a.subject.resource_id);
            Row {
                approval: a,
                task,
                state: page::shown_state(a, task, now),
                sensitivity,
                labels,
                chain: chain_summary(chain),
                recent: recent.get(&a.subject.task_id).cloned().unwrap_or_default(),
            }
        })
        .filter(|r| filter_name == "all" || r.state == filter_name)
        .collect();
    // Pending first, then newest first.
    rows.reverse();
    rows.sort_by_key(|r| r.state != "pending");
    rows.truncate(SHOWN);
    let body = page::inbox(&rows, &filter_name);
    Html(page::layout(
        "Approvals",
        Some(&human),
        Some(revision),
        &body,
    ))
    .into_response()
}

/// The originating user, then each task's agent, root first.
fn chain_summary(chain: &[Arc<crate::graph::Task>]) -> Vec<String> {
    let user = chain.last().map(|root| root.originator.clone());
    user.into_iter()
        .chain(chain.iter().rev().map(|t| t.delegatee.path().to_owned()))
        .collect()
}

/// The latest calls of the tasks of pending approvals, by task id, read
/// from their roots' trails (each root once, a bounded number of them);
/// nothing when the trail may not be read.
async fn recent_calls(
    state: &AppState,
    human: &Human,
    approvals: &[Approval],
    chains: &[Vec<Arc<crate::graph::Task>>],
) -> HashMap<String, Vec<(String, String, String)>> {
    let mut wanted: HashMap<String, Vec<String>> = HashMap::new();
    for (a, chain) in approvals.iter().zip(chains) {
        if a.state != ApprovalState::Pending {
            continue;
        }
        if let Some(root) = chain.last() {
            wanted
                .entry(root.id.to_string())
                .or_default()
                .push(a.subject.task_id.clone());
        }
    }
    let mut out: HashMap<String, Vec<(String, String, String)>> = HashMap::new();
    for (root, tasks) in wanted.into_iter().take(RECENT_ROOTS) {
        let Ok((entries, _)) = state.parts.audit.trail(&human.principal, &root).await else {
            continue;
        };
        for indexed in entries.iter().rev() {
            let AuditEntry::Decision(d) = &*indexed.entry else {
                continue;
            };
            let Some(task) = d.task_id.as_ref().filter(|t| tasks.contains(t)) else {
                continue;
            };
            let calls = out.entry(task.clone()).or_default();
            if calls.len() < RECENT_IN_INBOX {
                calls.push((d.decision.clone(), d.action.clone(), d.resource_id.clone()));
            }
        }
    }
    out
}

#[derive(Debug, Deserialize)]
struct DetailQuery {
    done: Option<String>,
}

async fn approval(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<HttpsPeer>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<DetailQuery>,
) -> Response {
    let human = match who(&state, &peer, &headers) {
        Ok(h) => h,
        Err(response) => return *response,
    };
    let notice = match query.done.as_deref() {
        Some("approved") => Some((true, "Approved.".to_owned())),
        Some("denied") => Some((true, "Denied.".to_owned())),
        _ => None,
    };
    detail_page(&state, &human, &id, notice, StatusCode::OK).await
}

async fn detail_page(
    state: &AppState,
    human: &Human,
    id: &str,
    notice: Option<(bool, String)>,
    status: StatusCode,
) -> Response {
    let revision = state.parts.revision.current();
    let approval = match state.parts.approvals.read(&human.principal, id) {
        Ok(a) => a,
        Err(e) => {
            let (status, message) = refusal(&e);
            return html(status, "Refused", Some(human), &page::error(&message));
        }
    };
    let chain = state
        .parts
        .graph
        .chain(&approval.subject.task_id)
        .unwrap_or_default();
    let task = chain.first().cloned();
    let root = chain.last().map(|t| t.id.clone());
    let trail = match &root {
        Some(root) => state.parts.audit.trail(&human.principal, root).await,
        None => Err(ApiError::NotFound("the task is no longer held".to_owned())),
    };
    let calls = match &trail {
        Ok((entries, _)) => Ok(entries
            .iter()
            .rev()
            .filter_map(|i| match &*i.entry {
                AuditEntry::Decision(d)
                    if d.task_id.as_deref() == Some(approval.subject.task_id.as_str()) =>
                {
                    Some(&**d)
                }
                _ => None,
            })
            .take(RECENT_CALLS)
            .collect()),
        Err(e) => Err(format!(
            "The task's calls cannot be shown: {}",
            refusal(e).1
        )),
    };
    let (sensitivity, labels) =
        super::resource_facts(&state.parts.registry, &approval.subject.resource_id);
    let now = state.parts.clock.now();
    let csrf = state
        .keys
        .csrf_token(&human.user, &human.principal.to_string());
    let detail = Detail {
        row: Row {
            approval: &approval,
            task: task.as_deref(),
            state: page::shown_state(&approval, task.as_deref(), now),
            sensitivity,
            labels,
            chain: Vec::new(),
            recent: Vec::new(),
        },
        chain: &chain,
        calls,
        csrf: &csrf,
        now,
        notice,
    };
    let live = (status == StatusCode::OK).then_some(revision);
    let title = format!("Approval {}", approval.id);
    (
        status,
        Html(page::layout(
            &title,
            Some(human),
            live,
            &page::detail(&detail),
        )),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
struct DecideForm {
    csrf: String,
    decision: String,
    valid_for: Option<String>,
}

async fn decide(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<HttpsPeer>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<DecideForm>,
) -> Response {
    let human = match who(&state, &peer, &headers) {
        Ok(h) => h,
        Err(response) => return *response,
    };
    let refuse =
        |status: StatusCode, why: &str| html(status, "Refused", Some(&human), &page::error(why));
    if !csrf::same_site(&headers)
        || !state
            .keys
            .csrf_ok(&human.user, &human.principal.to_string(), &form.csrf)
    {
        tracing::warn!(user = %human.user, approval_id = %id, "ui decision without a valid CSRF token refused");
        return refuse(
            StatusCode::FORBIDDEN,
            "this form did not come from this page (CSRF check failed); reload the page and try again",
        );
    }
    let approve = match form.decision.as_str() {
        "approve" => true,
        "deny" => false,
        other => {
            return refuse(
                StatusCode::BAD_REQUEST,
                &format!("`decision` `{other}` is not `approve` or `deny`"),
            );
        }
    };
    let valid_for = match form.valid_for.as_deref().map(str::parse::<i64>) {
        None => 0,
        Some(Ok(secs)) if (1..=MAX_VALID_FOR).contains(&secs) => secs,
        Some(_) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                &format!("`valid_for` must be 1 to {MAX_VALID_FOR} seconds"),
            );
        }
    };
    match state
        .parts
        .approvals
        .decide(&human.principal, &human.user, &id, approve, valid_for)
        .await
    {
        Ok((approval, _)) => {
            tracing::info!(user = %human.user, spiffe_id = %human.principal, approval_id = %approval.id, approved = approve, dev_login = human.dev, "approval decided in the ui");
            let done = if approve { "approved" } else { "denied" };
            Redirect::to(&format!(
                "/approvals/{}?done={done}",
                super::path_segment(&approval.id)
            ))
            .into_response()
        }
        Err(e) => {
            let (status, message) = refusal(&e);
            tracing::info!(user = %human.user, approval_id = %id, %status, "ui decision refused");
            detail_page(&state, &human, &id, Some((false, message)), status).await
        }
    }
}

async fn trail_page(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<HttpsPeer>,
    headers: HeaderMap,
    Path(root): Path<String>,
) -> Response {
    let human = match who(&state, &peer, &headers) {
        Ok(h) => h,
        Err(response) => return *response,
    };
    let (entries, window) = match state.parts.audit.trail(&human.principal, &root).await {
        Ok(found) => found,
        Err(e) => {
            let (status, message) = refusal(&e);
            return html(status, "Refused", Some(&human), &page::error(&message));
        }
    };
    if entries.is_empty() {
        return html(
            StatusCode::NOT_FOUND,
            "Trail",
            Some(&human),
            &page::error(&format!("no trail recorded for task `{root}`")),
        );
    }
    let (rows, records) =
        trail::build(&root, &entries, &state.parts.graph, state.parts.clock.now());
    let mut body = format!(
        "<h1>Trail of task <code>{}</code></h1><p class=\"legend\"><span class=\"key allow\"></span> allow <span class=\"key deny\"></span> deny <span class=\"key needs_approval\"></span> needs approval <span class=\"key revoked\"></span> revoked <span class=\"key approval-granted\"></span> approval</p>",
        page::esc(&root)
    );
    if let Some(start) = window {
        body.push_str(&format!(
            "<p class=\"notice\">Entries before {} may be missing (the audit window).</p>",
            page::utc(start.div_euclid(1000))
        ));
    }
    body.push_str("<div class=\"picture\">");
    body.push_str(&trail::svg(&rows));
    body.push_str(
        "</div><aside id=\"record\" class=\"record\" data-testid=\"record\" hidden></aside>",
    );
    body.push_str("<script type=\"application/json\" id=\"records\">");
    body.push_str(&trail::records_json(&records));
    body.push_str("</script>");
    let title = format!("Trail {root}");
    Html(page::layout(&title, Some(&human), None, &body)).into_response()
}

/// The live revision, which the pages poll to refresh when it moves.
async fn revision(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<HttpsPeer>,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = who(&state, &peer, &headers) {
        return *response;
    }
    state.parts.revision.current().to_string().into_response()
}

async fn dev_login_form(ConnectInfo(peer): ConnectInfo<HttpsPeer>) -> Response {
    if !peer.remote_addr.ip().is_loopback() || peer.svid.is_some() {
        return html(
            StatusCode::FORBIDDEN,
            "Refused",
            None,
            &page::error("the dev login answers on loopback only, without a client certificate"),
        );
    }
    html(StatusCode::OK, "Dev login", None, &page::dev_login())
}

async fn dev_login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<HttpsPeer>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if !peer.remote_addr.ip().is_loopback() || peer.svid.is_some() || !csrf::same_site(&headers) {
        return html(
            StatusCode::FORBIDDEN,
            "Refused",
            None,
            &page::error("the dev login answers on loopback only, from its own form"),
        );
    }
    let Some(user) = form
        .get("user")
        .map(|u| u.trim())
        .filter(|u| human::valid_user(u))
    else {
        return html(
            StatusCode::BAD_REQUEST,
            "Dev login",
            None,
            &page::error("a user id is one word"),
        );
    };
    tracing::warn!(user, "dev login: a user id nobody checked");
    let cookie = format!(
        "{DEV_COOKIE}={}; Path=/; Secure; HttpOnly; SameSite=Strict",
        state.keys.dev_cookie(user)
    );
    ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
}
