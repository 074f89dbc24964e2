//! `mandate.v1.PolicyService` and policy reloads: the status of the set in
//! use, its policies, validation of a candidate set sent in the request,
//! and reloading from the files (also on a file change and on SIGHUP).

use std::path::PathBuf;
use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::ApiError;
use super::authorization::caller;
use super::control::ControlGate;
use super::control::ControlRequest;
use super::v1::policy_service_server::PolicyService;
use super::v1::{
    self, GetPolicyStatusRequest, ListPoliciesRequest, ListPoliciesResponse, PolicyFile,
    ReloadPoliciesRequest, ReloadPoliciesResponse, ValidatePoliciesRequest,
    ValidatePoliciesResponse,
};
use crate::clock::Clock;
use crate::policy::{PolicyEngine, PolicyStatus, PolicyStore, Problem, Sources, store};
use crate::registry::Registry;

/// The Cedar type and id of the policy set, the resource of these calls.
const POLICY_SET_TYPE: &str = "Mandate::PolicySet";
const POLICY_SET_ID: &str = "current";
/// Largest candidate set `Validate` accepts, in bytes of policy text.
const MAX_CANDIDATE_BYTES: usize = 4 * 1024 * 1024;

/// Puts a new policy set in use, all or nothing: the policy store and the
/// registry entities that must fit its schema change together.
#[derive(Debug, Clone)]
pub(crate) struct PolicyReload {
    policies: Arc<PolicyStore>,
    registry: Arc<Registry>,
    clock: Arc<dyn Clock>,
}

impl PolicyReload {
    /// Reloads of `policies`, checked against `registry`.
    pub(crate) fn new(
        policies: Arc<PolicyStore>,
        registry: Arc<Registry>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            policies,
            registry,
            clock,
        }
    }

    /// Reloads the policy set from its files. `Ok(false)` when nothing
    /// changed. A new set is put in use only when it parses, validates and
    /// the registry fits its schema; otherwise the set in use stays and the
    /// problems are recorded for status reports and returned.
    pub(crate) fn reload(&self, trigger: &str) -> Result<bool, Vec<String>> {
        let _one_at_a_time = self.policies.lock();
        let now = self.clock.now();
        let outcome = self.policies.read().and_then(|next| {
            let Some(engine) = next else {
                self.policies.clear_failure();
                return Ok(false);
            };
            let schema = engine.schema().clone();
            let hash = engine.hash().clone();
            self.registry
                .revalidate(&schema, || self.policies.install(engine, now))?;
            tracing::info!(trigger, policy_hash = %hash, "policies reloaded");
            Ok(true)
        });
        if let Err(problems) = &outcome {
            for problem in problems {
                tracing::warn!(trigger, "policy reload refused: {problem}");
            }
            self.policies.record_failure(problems.clone(), now);
        }
        outcome
    }
}

/// The gRPC service.
#[derive(Debug, Clone)]
pub struct PolicyApi {
    pub(crate) gate: ControlGate,
    pub(crate) policies: Arc<PolicyStore>,
    pub(crate) reload: PolicyReload,
}

impl PolicyApi {
    fn authorize<T>(&self, request: &Request<T>, action: &str) -> Result<(), ApiError> {
        let caller = caller(request)?.spiffe_id;
        self.gate.authorize_control(
            &caller,
            ControlRequest {
                action,
                resource_type: POLICY_SET_TYPE,
                resource_id: POLICY_SET_ID,
                entities: Vec::new(),
                context: Vec::new(),
            },
        )
    }
}

fn status_to_proto(status: &PolicyStatus) -> v1::PolicyStatus {
    v1::PolicyStatus {
        policy_hash: status.hash.to_string(),
        policy_count: u32::try_from(status.policy_count).unwrap_or(u32::MAX),
        loaded_at: status.loaded_at,
        last_error: status
            .last_error
            .as_ref()
            .map(|e| e.problems.join("\n"))
            .unwrap_or_default(),
        last_error_at: status.last_error.as_ref().map_or(0, |e| e.at),
        reloads: status.reloads,
        failed_reloads: status.failed_reloads,
    }
}

fn problem_to_proto(problem: &Problem) -> v1::PolicyProblem {
    let (line, column) = problem.location.unwrap_or((0, 0));
    v1::PolicyProblem {
        file: problem.file.display().to_string(),
        line: u32::try_from(line).unwrap_or(u32::MAX),
        column: u32::try_from(column).unwrap_or(u32::MAX),
        message: problem.message.clone(),
    }
}

/// Validates a candidate set from the request, against the schema sent
/// with it or else the schema in use.
fn validate_candidate(
    files: &[PolicyFile],
    schema: &str,
    current_schema_text: &str,
    unknown_sensitivity: i64,
    level: Option<u32>,
) -> Result<ValidatePoliciesResponse, ApiError> {
    let size: usize = files.iter().map(|f| f.text.len()).sum::<usize>() + schema.len();
    if size > MAX_CANDIDATE_BYTES {
        return Err(ApiError::InvalidArgument(format!(
            "the candidate set is {size} bytes; the limit is {MAX_CANDIDATE_BYTES}"
        )));
    }
    let mut seen = std::collections::HashSet::new();
    for file in files {
        if file.name.is_empty() || !file.name.ends_with(".cedar") || !seen.insert(&file.name) {
            return Err(ApiError::InvalidArgument(format!(
                "file name `{}` must be unique and end in `.cedar`",
                file.name
            )));
        }
    }
    let schema_text = if schema.is_empty() {
        current_schema_text.to_owned()
    } else {
        schema.to_owned()
    };
    let sources = Sources {
        dir: PathBuf::new(),
        files: files
            .iter()
            .map(|f| (PathBuf::from(&f.name), Arc::from(f.text.as_str())))
            .collect(),
        schema_path: PathBuf::from(if schema.is_empty() {
            "(server schema)"
        } else {
            "schema.cedarschema"
        }),
        schema_text,
    };
    Ok(
        match PolicyEngine::from_sources_at_level(&sources, unknown_sensitivity, level) {
            Ok(engine) => ValidatePoliciesResponse {
                valid: true,
                problems: Vec::new(),
                warnings: engine.warnings().iter().map(problem_to_proto).collect(),
                policy_hash: engine.hash().to_string(),
                policy_count: u32::try_from(engine.len()).unwrap_or(u32::MAX),
            },
            Err(crate::policy::PolicyError::Invalid { problems }) => ValidatePoliciesResponse {
                valid: false,
                problems: problems.iter().map(problem_to_proto).collect(),
                ..Default::default()
            },
            Err(other) => ValidatePoliciesResponse {
                valid: false,
                problems: vec![v1::PolicyProblem {
                    message: other.to_string(),
                    ..Default::default()
                }],
                ..Default::default()
            },
        },
    )
}

#[tonic::async_trait]
impl PolicyService for PolicyApi {
    async fn get_status(
        &self,
        request: Request<GetPolicyStatusRequest>,
    ) -> Result<Response<v1::PolicyStatus>, Status> {
        self.authorize(&request, "read_policies")?;
        Ok(Response::new(status_to_proto(&self.policies.status())))
    }

    async fn list_policies(
        &self,
        request: Request<ListPoliciesRequest>,
    ) -> Result<Response<ListPoliciesResponse>, Status> {
        self.authorize(&request, "read_policies")?;
        let engine = self.policies.current();
        let mut policies: Vec<v1::PolicyInfo> = engine
            .policies()
            .policies()
            .map(|p| v1::PolicyInfo {
                id: p.id().to_string(),
                effect: match p.effect() {
                    cedar_policy::Effect::Permit => "permit".to_owned(),
                    cedar_policy::Effect::Forbid => "forbid".to_owned(),
                },
                source: engine.source_of(p.id()).unwrap_or_default(),
                annotations: p
                    .annotations()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
                built_in: p
                    .id()
                    .to_string()
                    .starts_with(crate::policy::guards::RESERVED_PREFIX),
            })
            .collect();
        policies.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(Response::new(ListPoliciesResponse {
            policy_hash: engine.hash().to_string(),
            policies,
        }))
    }

    async fn validate(
        &self,
        request: Request<ValidatePoliciesRequest>,
    ) -> Result<Response<ValidatePoliciesResponse>, Status> {
        self.authorize(&request, "validate_policies")?;
        let r = request.into_inner();
        let paths = self.policies.paths();
        let unknown = paths.map_or(crate::policy::DEFAULT_UNKNOWN_SENSITIVITY, |p| {
            p.unknown_sensitivity
        });
        let level = paths.and_then(|p| p.validation_level);
        // The schema in use, not the file on disk: they differ after a
        // refused reload.
        let engine = self.policies.current();
        let response = tokio::task::spawn_blocking(move || {
            validate_candidate(&r.files, &r.schema, engine.schema_text(), unknown, level)
        })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
        Ok(Response::new(response))
    }

    async fn reload(
        &self,
        request: Request<ReloadPoliciesRequest>,
    ) -> Result<Response<ReloadPoliciesResponse>, Status> {
        self.authorize(&request, "reload_policies")?;
        let reload = self.reload.clone();
        let result = tokio::task::spawn_blocking(move || reload.reload("api"))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let (reloaded, problems) = match result {
            Ok(changed) => (changed, Vec::new()),
            Err(problems) => (false, problems),
        };
        Ok(Response::new(ReloadPoliciesResponse {
            ok: problems.is_empty(),
            reloaded,
            problems,
            status: Some(status_to_proto(&self.policies.status())),
        }))
    }
}

/// Polls the policy files every `interval` and reloads when they changed
/// and then stayed the same for one more interval (an editor's save, or a
/// `git pull` of many files, lands as one reload). Polling the content
/// rather than file-system events: it also sees a Kubernetes ConfigMap's
/// symlink swap, which replaces the files without writing them.
pub(crate) async fn watch(reload: PolicyReload, interval: std::time::Duration) {
    let Some(paths) = reload.policies.paths().cloned() else {
        return;
    };
    // Nothing seen yet: the first look reloads if the files changed since
    // the set in use was read at start (a reload of unchanged files is a
    // no-op, by hash).
    let mut seen = Vec::new();
    let mut pending: Option<Vec<_>> = None;
    loop {
        tokio::time::sleep(interval).await;
        let paths = paths.clone();
        let Ok(now) = tokio::task::spawn_blocking(move || store::fingerprint(&paths)).await else {
            continue;
        };
        if now == seen {
            pending = None;
            continue;
        }
        if pending.as_ref() != Some(&now) {
            pending = Some(now);
            continue;
        }
        seen = now;
        pending = None;
        let reload = reload.clone();
        let _ = tokio::task::spawn_blocking(move || reload.reload("file change")).await;
    }
}
