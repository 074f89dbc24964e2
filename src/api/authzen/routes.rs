//! The endpoints of the HTTPS binding. Each request: the caller's SVID is
//! checked again, the body parsed (400 with a message when it is not an
//! AuthZEN request), each evaluation mapped and decided by the runner,
//! and the answer written; a deny is a 200 with `"decision": false`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use spiffe::SpiffeId;

use super::mapping::{self, MIN_REVISION_HEADER};
use super::profile;
use super::requests::{self, Asked, RequestBook};
use super::search::{self, Searched};
use super::wire::{self, BadRequest, Evaluation, Semantic};
use super::{ApiKeys, AuthzenParts, TypeMap};
use crate::api::https::HttpsPeer;
use crate::approval::ApprovalBook;
use crate::decision::{Answer, Decision};
use crate::graph::TaskGraph;

/// The request identification header, echoed on the answer.
const REQUEST_ID: &str = "x-request-id";
/// Paths of the endpoints, as the specification names them.
const EVALUATION: &str = "/access/v1/evaluation";
const EVALUATIONS: &str = "/access/v1/evaluations";
const METADATA: &str = "/.well-known/authzen-configuration";
const SEARCH_SUBJECT: &str = "/access/v1/search/subject";
const SEARCH_RESOURCE: &str = "/access/v1/search/resource";
const SEARCH_ACTION: &str = "/access/v1/search/action";
/// The access request endpoint (the profile's example path); a task's
/// status is under it.
pub(super) const REQUESTS: &str = "/access/v1/requests";

/// What every handler holds.
#[derive(Debug, Clone)]
pub struct Door {
    parts: AuthzenParts,
    types: Arc<TypeMap>,
    keys: Arc<ApiKeys>,
    public_url: Arc<str>,
    book: Arc<RequestBook>,
}

impl Door {
    /// The door over `parts`, publishing `public_url`.
    pub fn new(parts: AuthzenParts, types: TypeMap, keys: ApiKeys, public_url: String) -> Self {
        Self {
            parts,
            types: Arc::new(types),
            keys: Arc::new(keys),
            public_url: public_url.into(),
            book: Arc::default(),
        }
    }

    /// The requestable denials answered and the tasks submitted.
    pub(super) fn book(&self) -> &RequestBook {
        &self.book
    }

    /// The live approvals.
    pub(super) fn approvals(&self) -> &ApprovalBook {
        &self.parts.approvals
    }

    /// The live tasks.
    pub(super) fn graph(&self) -> &TaskGraph {
        &self.parts.graph
    }

    /// Now, by the decision path's clock.
    pub(super) fn now(&self) -> i64 {
        self.parts.clock.now()
    }

    /// The published base URL.
    pub(super) fn public_url(&self) -> &str {
        &self.public_url
    }

    /// The enforcement point asking: its SVID, checked again now (expiry,
    /// a withdrawn bundle, a replaced CA), or without one the workload its
    /// API key stands for.
    pub(super) fn caller(
        &self,
        peer: &HttpsPeer,
        headers: &HeaderMap,
    ) -> Result<SpiffeId, Refusal> {
        let Some(svid) = &peer.svid else {
            return self.key_holder(peer, headers);
        };
        let bundles = self.parts.identity.borrow().bundles.clone();
        svid.recheck(&bundles, self.parts.clock.now())
            .map_err(|e| {
                tracing::warn!(remote_addr = %peer.remote_addr, error = %e, "authzen caller refused");
                Refusal::new(StatusCode::UNAUTHORIZED, e)
            })?;
        Ok(svid.spiffe_id.clone())
    }

    /// The workload an API key stands for; 401 without a known one.
    fn key_holder(&self, peer: &HttpsPeer, headers: &HeaderMap) -> Result<SpiffeId, Refusal> {
        let refuse = |message: String| {
            tracing::info!(remote_addr = %peer.remote_addr, error = %message, "authzen caller refused");
            Refusal::new(StatusCode::UNAUTHORIZED, message)
        };
        if self.keys.is_empty() {
            return Err(refuse("a client SVID is required".to_owned()));
        }
        let authorization = headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| {
                refuse(
                    "a client SVID or an API key (`Authorization: Bearer KEY`) is required"
                        .to_owned(),
                )
            })?
            .to_str()
            .map_err(|_| refuse("the `Authorization` header is not text".to_owned()))?;
        self.keys.caller(authorization).cloned().map_err(refuse)
    }

    /// The candidates of a search, sorted: the registry's entities of the
    /// type searched for, or the schema's actions. None for a type that
    /// maps to no entity type.
    fn candidates(&self, asked: &search::Search, searched: Searched) -> Vec<String> {
        let view = self.parts.runner.view();
        let type_name = match searched {
            Searched::Action => {
                let mut names: Vec<String> = view
                    .engine
                    .action_names()
                    .filter_map(|id| self.types.action_name(id))
                    .map(str::to_owned)
                    .collect();
                names.sort();
                names.dedup();
                return names;
            }
            Searched::Subject => {
                let kind = asked.request.subject.kind.as_str();
                match kind {
                    "agent" => "Mandate::Agent".parse().ok(),
                    "workload" => "Mandate::Workload".parse().ok(),
                    _ => self.types.subjects.get(kind).cloned(),
                }
            }
            Searched::Resource => {
                let kind = asked.request.resource.kind.as_str();
                self.types
                    .resources
                    .get(kind)
                    .cloned()
                    .or_else(|| kind.parse().ok())
            }
        };
        let Some(type_name) = type_name else {
            return Vec::new();
        };
        let mut ids: Vec<String> = view
            .registry
            .entities()
            .iter()
            .filter(|e| e.uid().type_name() == &type_name)
            .map(|e| e.uid().id().unescaped().to_owned())
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// Decides one evaluation and answers it with the profile's additions.
    async fn evaluate(
        &self,
        caller: &SpiffeId,
        evaluation: Evaluation,
        min_revision: u64,
    ) -> Result<wire::Decision, Refusal> {
        let (asked, question) = self.ask(caller, evaluation, min_revision)?;
        let answer = self.answer(caller, question).await?;
        Ok(self.decision(caller, answer, &asked))
    }

    /// The approval reference taken out of the context, and the question.
    fn ask(
        &self,
        caller: &SpiffeId,
        mut evaluation: Evaluation,
        min_revision: u64,
    ) -> Result<
        (
            Asked,
            Result<crate::decision::Request, Box<mapping::Refused>>,
        ),
        BadRequest,
    > {
        let presented = profile::take_approval(&mut evaluation.context)?;
        let mut asked = Asked {
            subject: evaluation.subject.clone(),
            action: evaluation.action.clone(),
            resource: evaluation.resource.clone(),
            presented,
            decided: None,
        };
        let question = mapping::question(caller, evaluation, &self.types, min_revision);
        if let Ok(question) = &question {
            asked.decided = Some((
                question.action.clone(),
                question.resource.type_name.clone(),
                question.resource.id.clone(),
            ));
        }
        Ok((asked, question))
    }

    /// A decision on the wire, with the profile's additions (see
    /// [`requests::annotate`]).
    fn decision(&self, caller: &SpiffeId, answer: Answer, asked: &Asked) -> wire::Decision {
        let needs_approval = matches!(answer.decision, Decision::NeedsApproval(_));
        let facts = requests::Facts {
            needs_approval,
            evaluation_id: answer.decision_id.clone(),
            approval_id: answer.approval_id.clone(),
            task_id: answer.task_id.clone(),
        };
        let mut out = decision(answer);
        requests::annotate(self, caller, &mut out, facts, asked);
        out
    }

    /// Decides one evaluation (or records why it could not be asked).
    async fn decide(
        &self,
        caller: &SpiffeId,
        evaluation: Evaluation,
        min_revision: u64,
    ) -> Result<Answer, Refusal> {
        let asked = mapping::question(caller, evaluation, &self.types, min_revision);
        self.answer(caller, asked).await
    }

    /// Decides a mapped evaluation, or records the refusal of one that
    /// could not be mapped. A question over a limit is a 400, unrecorded.
    async fn answer(
        &self,
        caller: &SpiffeId,
        asked: Result<crate::decision::Request, Box<mapping::Refused>>,
    ) -> Result<Answer, Refusal> {
        let runner = &self.parts.runner;
        match asked {
            Ok(question) => runner
                .run(question)
                .await
                .map_err(|limit| Refusal::new(StatusCode::BAD_REQUEST, limit.to_string())),
            Err(refused) => Ok(runner.refuse(
                caller,
                refused.target(),
                refused.reason,
                refused.error.clone(),
            )),
        }
    }
}

/// The router of the AuthZEN listener.
pub fn router(door: Door) -> Router {
    let max_bytes = door.parts.max_request_bytes;
    Router::new()
        .route(EVALUATION, post(evaluation))
        .route(EVALUATIONS, post(evaluations))
        .route(METADATA, get(metadata))
        .route(SEARCH_SUBJECT, post(search_subject))
        .route(SEARCH_RESOURCE, post(search_resource))
        .route(SEARCH_ACTION, post(search_action))
        .route(REQUESTS, post(requests::submit))
        .route(&format!("{REQUESTS}/{{id}}"), get(requests::poll))
        .layer(DefaultBodyLimit::max(max_bytes))
        .layer(axum::middleware::from_fn(echo_request_id))
        .with_state(door)
}

/// `X-Request-ID` from the request on the answer, whatever it is.
async fn echo_request_id(request: Request, next: Next) -> Response {
    let id = request.headers().get(REQUEST_ID).cloned();
    let mut response = next.run(request).await;
    if let Some(id) = id {
        response.headers_mut().insert(REQUEST_ID, id);
    }
    response
}

/// An error answer: the status and a message for people, as plain text.
#[derive(Debug)]
pub(super) struct Refusal {
    status: StatusCode,
    message: String,
}

impl Refusal {
    fn new(status: StatusCode, message: String) -> Self {
        Self { status, message }
    }
}

impl From<BadRequest> for Refusal {
    fn from(error: BadRequest) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error.0)
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (
            self.status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            self.message,
        )
            .into_response()
    }
}

/// The body must be declared JSON.
pub(super) fn json_body(headers: &HeaderMap) -> Result<(), BadRequest> {
    let declared = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let essence = declared.split(';').next().unwrap_or_default().trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(BadRequest(format!(
            "`Content-Type` must be `application/json`, not `{declared}`"
        )))
    }
}

/// The consistency token, as through Envoy; 0 without one.
fn min_revision(headers: &HeaderMap) -> Result<u64, BadRequest> {
    match headers.get(MIN_REVISION_HEADER) {
        None => Ok(0),
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .ok_or_else(|| {
                BadRequest(format!(
                    "`{MIN_REVISION_HEADER}` must be a revision number, not `{}`",
                    String::from_utf8_lossy(value.as_bytes())
                ))
            }),
    }
}

/// A decision on the wire, as Mandate explains it.
// INVARIANT: only an explicit allow is `"decision": true`.
fn decision(answer: Answer) -> wire::Decision {
    let allowed = answer.decision.is_allowed();
    let grounds = answer.decision.into_grounds();
    wire::Decision {
        decision: allowed,
        context: wire::DecisionContext {
            decision_id: answer.decision_id,
            reasons: grounds
                .reasons
                .iter()
                .map(|r| r.as_str().to_owned())
                .collect(),
            determining_policies: grounds.determining_policies,
            errors: grounds.errors,
            approval_id: answer.approval_id,
            ..wire::DecisionContext::default()
        },
    }
}

async fn evaluation(
    State(door): State<Door>,
    ConnectInfo(peer): ConnectInfo<HttpsPeer>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let caller = match door.caller(&peer, &headers) {
        Ok(caller) => caller,
        Err(refused) => return refused.into_response(),
    };
    let parsed = json_body(&headers)
        .and_then(|()| min_revision(&headers))
        .and_then(|at| wire::evaluation(&body).map(|e| (e, at)));
    let (evaluation, min_revision) = match parsed {
        Ok(parsed) => parsed,
        Err(error) => return Refusal::from(error).into_response(),
    };
    match door.evaluate(&caller, evaluation, min_revision).await {
        Ok(decided) => axum::Json(decided).into_response(),
        Err(refused) => refused.into_response(),
    }
}

async fn evaluations(
    State(door): State<Door>,
    ConnectInfo(peer): ConnectInfo<HttpsPeer>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let caller = match door.caller(&peer, &headers) {
        Ok(caller) => caller,
        Err(refused) => return refused.into_response(),
    };
    let parsed = json_body(&headers)
        .and_then(|()| min_revision(&headers))
        .and_then(|at| wire::evaluations(&body).map(|e| (e, at)));
    let (list, semantic, min_revision) = match parsed {
        Ok((wire::Asked::Many(list, semantic), at)) => (list, semantic, at),
        Ok((wire::Asked::One(evaluation), at)) => {
            return match door.evaluate(&caller, *evaluation, at).await {
                Ok(decided) => axum::Json(decided).into_response(),
                Err(refused) => refused.into_response(),
            };
        }
        Err(error) => return Refusal::from(error).into_response(),
    };
    let limit = door.parts.runner.max_batch_size();
    if list.len() > limit {
        return Refusal::from(BadRequest(format!(
            "`evaluations` has {} entries; the limit is {limit} (`max_batch_size` in mandate.toml)",
            list.len()
        )))
        .into_response();
    }
    run_all(&door, &caller, list, semantic, min_revision).await
}

/// Decides the evaluations in order, stopping where `semantic` says.
async fn run_all(
    door: &Door,
    caller: &SpiffeId,
    list: Vec<Evaluation>,
    semantic: Semantic,
    min_revision: u64,
) -> Response {
    // Every evaluation is mapped and held to the limits before any is
    // decided (and recorded): one over a limit refuses the request with
    // nothing done, as `BatchAuthorize` does.
    let mut asked = Vec::with_capacity(list.len());
    for (i, evaluation) in list.into_iter().enumerate() {
        match door.ask(caller, evaluation, min_revision) {
            Ok(one) => asked.push(one),
            Err(error) => {
                return Refusal::from(BadRequest(format!("evaluations[{i}]: {error}")))
                    .into_response();
            }
        }
    }
    for (i, (_, question)) in asked.iter().enumerate() {
        if let Ok(question) = question
            && let Err(limit) = door.parts.runner.check_limits(question)
        {
            return Refusal::new(
                StatusCode::BAD_REQUEST,
                format!("evaluations[{i}]: {limit}"),
            )
            .into_response();
        }
    }
    let mut answers = Vec::with_capacity(asked.len());
    for (evaluation, question) in asked {
        let answer = match door.answer(caller, question).await {
            Ok(answer) => answer,
            Err(refused) => return refused.into_response(),
        };
        let allowed = answer.decision.is_allowed();
        answers.push(door.decision(caller, answer, &evaluation));
        if semantic.stops_after(allowed) {
            break;
        }
    }
    axum::Json(wire::Evaluations {
        evaluations: answers,
    })
    .into_response()
}

/// The metadata document: the base URL and every endpoint served.
async fn metadata(
    State(door): State<Door>,
    ConnectInfo(peer): ConnectInfo<HttpsPeer>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = door.caller(&peer, &headers) {
        return refused.into_response();
    }
    let base = &door.public_url;
    let body = serde_json::json!({
        "policy_decision_point": base.as_ref(),
        "access_evaluation_endpoint": format!("{base}{EVALUATION}"),
        "access_evaluations_endpoint": format!("{base}{EVALUATIONS}"),
        "search_subject_endpoint": format!("{base}{SEARCH_SUBJECT}"),
        "search_resource_endpoint": format!("{base}{SEARCH_RESOURCE}"),
        "search_action_endpoint": format!("{base}{SEARCH_ACTION}"),
        "access_request_endpoint": format!("{base}{REQUESTS}"),
        "capabilities": [profile::CAPABILITY],
    });
    let mut response = axum::Json(body).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=300"),
    );
    response
}

async fn search_subject(
    State(door): State<Door>,
    ConnectInfo(peer): ConnectInfo<HttpsPeer>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    search(&door, &peer, &headers, &body, Searched::Subject).await
}

async fn search_resource(
    State(door): State<Door>,
    ConnectInfo(peer): ConnectInfo<HttpsPeer>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    search(&door, &peer, &headers, &body, Searched::Resource).await
}

async fn search_action(
    State(door): State<Door>,
    ConnectInfo(peer): ConnectInfo<HttpsPeer>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    search(&door, &peer, &headers, &body, Searched::Action).await
}

/// Decides every candidate of a search; answers the page asked for.
async fn search(
    door: &Door,
    peer: &HttpsPeer,
    headers: &HeaderMap,
    body: &[u8],
    searched: Searched,
) -> Response {
    let caller = match door.caller(peer, headers) {
        Ok(caller) => caller,
        Err(refused) => return refused.into_response(),
    };
    let parsed = json_body(headers)
        .and_then(|()| min_revision(headers))
        .and_then(|at| search::parse(body, searched).map(|s| (s, at)));
    let (asked, min_revision) = match parsed {
        Ok(parsed) => parsed,
        Err(error) => return Refusal::from(error).into_response(),
    };
    let candidates = door.candidates(&asked, searched);
    if candidates.len() > search::MAX_CANDIDATES {
        return Refusal::from(BadRequest(format!(
            "the search has {} candidates; the limit is {}: narrow it, or ask evaluations",
            candidates.len(),
            search::MAX_CANDIDATES
        )))
        .into_response();
    }
    let mut permitted = Vec::new();
    for candidate in candidates {
        let evaluation = asked.evaluation(searched, &candidate);
        match door.decide(&caller, evaluation, min_revision).await {
            Ok(answer) if answer.decision.is_allowed() => permitted.push(candidate),
            Ok(_) => {}
            Err(refused) => return refused.into_response(),
        }
    }
    axum::Json(asked.page(searched, &permitted)).into_response()
}
