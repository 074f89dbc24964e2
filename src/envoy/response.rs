//! How an answer goes back to Envoy. Allow: `OK`, the decision id (and,
//! when configured, the task id) added to the upstream request, the
//! credential headers removed, and dynamic metadata for later filters and
//! access logs. Deny: a JSON body naming the decision and its reasons,
//! with 401, 403 or 400 and the gRPC status to match.

use envoy_types::ext_authz::v3::pb::{
    CheckResponse, DeniedHttpResponse, HeaderAppendAction, HeaderValue, HeaderValueOption,
    HttpResponse, HttpStatus, OkHttpResponse,
};
use envoy_types::pb::google::protobuf::{ListValue, Struct, Value, value::Kind};
use envoy_types::pb::google::rpc;

use super::{EnvoySettings, headers};
use crate::decision::ReasonKind;

/// What was decided, as Envoy is told.
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    /// The decision id.
    pub decision_id: &'a str,
    /// `allow`, `deny` or `needs_approval`.
    pub decision: &'a str,
    /// Reason codes.
    pub reasons: &'a [String],
    /// The policies that determined the decision.
    pub determining_policies: &'a [String],
    /// The pending approval of a `needs_approval` answer.
    pub approval_id: Option<&'a str>,
    /// The task the token named, if any.
    pub task_id: Option<&'a str>,
}

fn string(s: &str) -> Value {
    Value {
        kind: Some(Kind::StringValue(s.to_owned())),
    }
}

fn header(key: &str, value: &str) -> HeaderValueOption {
    #[allow(deprecated, reason = "`append` is deprecated but still a field")]
    HeaderValueOption {
        header: Some(HeaderValue {
            key: key.to_owned(),
            value: value.to_owned(),
            raw_value: Vec::new(),
        }),
        append: None,
        // A client's own copy of our headers must never reach upstream.
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd.into(),
        keep_empty_value: false,
    }
}

fn metadata(answer: &Answer<'_>) -> Struct {
    let mut fields = std::collections::BTreeMap::new();
    fields.insert("decision_id".to_owned(), string(answer.decision_id));
    fields.insert("decision".to_owned(), string(answer.decision));
    fields.insert(
        "determining_policies".to_owned(),
        Value {
            kind: Some(Kind::ListValue(ListValue {
                values: answer
                    .determining_policies
                    .iter()
                    .map(|p| string(p))
                    .collect(),
            })),
        },
    );
    if let Some(task) = answer.task_id {
        fields.insert("task_id".to_owned(), string(task));
    }
    Struct {
        fields: fields.into_iter().collect(),
    }
}

fn status(code: tonic::Code, message: &str) -> Option<rpc::Status> {
    Some(rpc::Status {
        code: code.into(),
        message: message.to_owned(),
        details: Vec::new(),
    })
}

/// The answer to an allowed request.
pub fn allowed(answer: &Answer<'_>, settings: &EnvoySettings) -> CheckResponse {
    let mut headers = vec![header(headers::DECISION_ID_HEADER, answer.decision_id)];
    let mut headers_to_remove = settings.credential_headers();
    if settings.task_header {
        match answer.task_id {
            Some(task) => headers.push(header(headers::TASK_HEADER, task)),
            None => headers_to_remove.push(headers::TASK_HEADER.to_owned()),
        }
    }
    CheckResponse {
        status: status(tonic::Code::Ok, "allowed"),
        dynamic_metadata: Some(metadata(answer)),
        http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
            headers,
            headers_to_remove,
            ..Default::default()
        })),
    }
}

/// The answer to a refused request.
/// `kind` (of the refusal's first reason) sets the gRPC code and the HTTP
/// status Envoy answers with.
pub fn denied(answer: &Answer<'_>, kind: ReasonKind) -> CheckResponse {
    let (code, http) = (kind.grpc_code(), i32::from(kind.http_status()));
    let mut body = serde_json::json!({
        "decision_id": answer.decision_id,
        "decision": answer.decision,
        "reasons": answer.reasons,
    });
    if let (Some(approval), Some(object)) = (answer.approval_id, body.as_object_mut()) {
        object.insert("approval_id".to_owned(), approval.into());
    }
    CheckResponse {
        status: status(
            code,
            answer.reasons.first().map_or("denied", String::as_str),
        ),
        dynamic_metadata: Some(metadata(answer)),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus { code: http }),
            headers: vec![
                header("content-type", "application/json"),
                header(headers::DECISION_ID_HEADER, answer.decision_id),
            ],
            body: format!("{body}\n"),
        })),
    }
}
