//! `mandate authorize`: one decision from a running server.
//!
//! Exit codes: 0 allow, 1 deny, 2 error (bad arguments, no connection).

use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;

use cedar_policy::EntityUid;
use clap::Args;
use prost_types::value::Kind;

use super::connection::ConnectArgs;
use super::failure::refused;
use super::{EXIT_USAGE, init_logging, runtime};
use crate::decision::Reason;
use crate::proto::v1::authorization_service_client::AuthorizationServiceClient;
use crate::proto::v1::{AuthorizeRequest, AuthorizeResponse, Decision, Resource, Subject};

#[derive(Debug, Args)]
pub(super) struct AuthorizeArgs {
    #[command(flatten)]
    connection: ConnectArgs,
    /// Action id, such as `read`.
    #[arg(long)]
    action: String,
    /// Resource as `TYPE::"ID"` (Cedar syntax), `TYPE::ID`, or just `ID`
    /// for a `Mandate::Resource`.
    #[arg(long)]
    resource: String,
    /// Context as a JSON object.
    #[arg(long, value_name = "JSON")]
    context: Option<String>,
    /// Ask on behalf of this SPIFFE ID (enforcement points only).
    #[arg(long, value_name = "SPIFFE_ID")]
    subject: Option<String>,
    /// The subject's SVID (PEM), verified by the server.
    #[arg(long, value_name = "FILE", requires = "subject")]
    subject_cert: Option<PathBuf>,
    /// A task token (from `mandate task token`), presented over the same
    /// SVID it was issued to.
    #[arg(long)]
    token: Option<String>,
    /// A revision a write returned: the server decides on state at least
    /// that new, or denies `stale-state`.
    #[arg(long, value_name = "REVISION", default_value_t = 0)]
    min_revision: u64,
    /// Print the response as JSON.
    #[arg(long)]
    json: bool,
}

fn usage(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(EXIT_USAGE)
}

/// Splits `TYPE::"ID"`, `TYPE::ID` or `ID` into a resource.
pub(super) fn parse_resource(text: &str) -> Resource {
    if let Ok(uid) = EntityUid::from_str(text) {
        return Resource {
            r#type: uid.type_name().to_string(),
            id: uid.id().unescaped().to_owned(),
        };
    }
    match text.rsplit_once("::") {
        Some((type_name, id)) => Resource {
            r#type: type_name.to_owned(),
            id: id.trim_matches('"').to_owned(),
        },
        None => Resource {
            r#type: String::new(),
            id: text.to_owned(),
        },
    }
}

fn json_to_value(json: serde_json::Value) -> prost_types::Value {
    use serde_json::Value;
    let kind = match json {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => Kind::StringValue(s),
        Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.into_iter().map(json_to_value).collect(),
        }),
        Value::Object(fields) => Kind::StructValue(prost_types::Struct {
            fields: fields
                .into_iter()
                .map(|(k, v)| (k, json_to_value(v)))
                .collect(),
        }),
    };
    prost_types::Value { kind: Some(kind) }
}

fn parse_context(text: &str) -> Result<prost_types::Struct, String> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(fields)) => Ok(prost_types::Struct {
            fields: fields
                .into_iter()
                .map(|(k, v)| (k, json_to_value(v)))
                .collect(),
        }),
        Ok(_) => Err("`--context` must be a JSON object".to_owned()),
        Err(e) => Err(format!("`--context` is not JSON: {e}")),
    }
}

pub(super) fn run(args: AuthorizeArgs) -> ExitCode {
    init_logging("warn");
    let context = match args.context.as_deref().map(parse_context).transpose() {
        Ok(context) => context,
        Err(e) => return usage(e),
    };
    let subject = match (&args.subject, &args.subject_cert) {
        (Some(id), cert) => Subject {
            spiffe_id: id.clone(),
            certificate_pem: match cert.as_ref().map(std::fs::read_to_string).transpose() {
                Ok(pem) => pem.unwrap_or_default(),
                Err(e) => return usage(format!("`--subject-cert`: {e}")),
            },
        }
        .into(),
        (None, _) => None,
    };
    let request = AuthorizeRequest {
        action: args.action.clone(),
        resource: Some(parse_resource(&args.resource)),
        context,
        token: args.token.clone().unwrap_or_default(),
        subject,
        min_revision: args.min_revision,
    };

    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let result = runtime.block_on(async {
        let mut client = AuthorizationServiceClient::new(args.connection.channel().await?);
        client
            .authorize(request)
            .await
            .map(tonic::Response::into_inner)
            .map_err(refused)
    });
    match result {
        Ok(response) => {
            if args.json {
                println!("{}", to_json(&response));
            } else {
                print!("{}", to_text(&response));
            }
            ExitCode::from(exit_code_of(&response))
        }
        Err(failure) => failure.report(),
    }
}

/// 0 for an allow; for a deny, what its first reason's kind says (1 for a
/// refusal, 3 when the server could not decide: `stale-state`, say).
fn exit_code_of(response: &AuthorizeResponse) -> u8 {
    if response.decision == Decision::Allow as i32 {
        return crate::exit_code::SUCCESS;
    }
    response
        .reasons
        .first()
        .and_then(|code| Reason::parse(code))
        .map_or(crate::exit_code::DENY, |reason| reason.kind().exit_code())
}

fn decision_name(response: &AuthorizeResponse) -> &'static str {
    match Decision::try_from(response.decision) {
        Ok(Decision::Allow) => "ALLOW",
        Ok(Decision::Deny) => "DENY",
        Ok(Decision::NeedsApproval) => "NEEDS APPROVAL (denied until approved)",
        _ => "UNSPECIFIED (treated as deny)",
    }
}

fn to_text(response: &AuthorizeResponse) -> String {
    let mut out = format!(
        "{}\n  decision id: {}\n",
        decision_name(response),
        response.decision_id
    );
    if !response.approval_id.is_empty() {
        out.push_str(&format!("  approval:    {}\n", response.approval_id));
    }
    if !response.determining_policies.is_empty() {
        out.push_str(&format!(
            "  policies:    {}\n",
            response.determining_policies.join(", ")
        ));
    }
    if !response.reasons.is_empty() {
        out.push_str(&format!("  reasons:     {}\n", response.reasons.join(", ")));
    }
    for error in &response.errors {
        out.push_str(&format!("  error:       {error}\n"));
    }
    out
}

fn to_json(response: &AuthorizeResponse) -> serde_json::Value {
    serde_json::json!({
        "decision": match Decision::try_from(response.decision) {
            Ok(Decision::Allow) => "allow",
            Ok(Decision::NeedsApproval) => "needs_approval",
            _ => "deny",
        },
        "decision_id": response.decision_id,
        "approval_id": response.approval_id,
        "determining_policies": response.determining_policies,
        "reasons": response.reasons,
        "errors": response.errors,
        "revision": response.revision,
    })
}

#[cfg(test)]
mod tests {
    use super::parse_resource;

    #[test]
    fn resources_parse_in_every_accepted_form() {
        let r = parse_resource(r#"Mandate::Resource::"repo:acme/payments""#);
        assert_eq!(
            (r.r#type.as_str(), r.id.as_str()),
            ("Mandate::Resource", "repo:acme/payments")
        );
        let r = parse_resource("Mandate::Resource::handbook");
        assert_eq!(
            (r.r#type.as_str(), r.id.as_str()),
            ("Mandate::Resource", "handbook")
        );
        let r = parse_resource("handbook");
        assert_eq!((r.r#type.as_str(), r.id.as_str()), ("", "handbook"));
    }
}
