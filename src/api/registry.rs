//! `mandate.v1.RegistryService`: register, update, remove and list agents,
//! workloads, users, groups and resources, each write authorized by Cedar
//! against the registry as it would be after the write.

use std::sync::Arc;

use spiffe::SpiffeId;
use tonic::{Request, Response, Status};

use super::ApiError;
use super::authorization::caller;
use super::control::ControlGate;
use super::control::ControlRequest;
use super::v1::registry_service_server::RegistryService;
use super::v1::{
    self, EntryKind, ListRequest, ListResponse, RegisterRequest, RegistryWriteResponse,
    RemoveRequest, UpdateRequest,
};
use crate::decision::AgentPattern;
use crate::journal::Journal;
use crate::proto::registry::{entry_from_proto, entry_to_proto};
use crate::registry::{AgentEntry, Entry, Kind, Registry, Snapshot};

/// What a caller that may not update an agent sees of its checksum.
const REDACTED: &str = "(redacted)";

/// The gRPC service.
#[derive(Debug, Clone)]
pub struct RegistryApi {
    pub(crate) gate: ControlGate,
    pub(crate) registry: Arc<Registry>,
    pub(crate) journal: Arc<Journal>,
}

impl RegistryApi {
    /// Asks Cedar whether `caller` may `action` the entry as `snapshot`
    /// holds it.
    fn authorize(
        &self,
        caller: &SpiffeId,
        action: &str,
        kind: Kind,
        id: &str,
        snapshot: &Snapshot,
    ) -> Result<(), ApiError> {
        self.gate.authorize_control(
            caller,
            ControlRequest {
                action,
                resource_type: kind.cedar_type(),
                resource_id: id,
                entities: snapshot.entity_with_ancestors(kind, id),
                context: Vec::new(),
            },
        )
    }

    async fn write(
        &self,
        caller: &SpiffeId,
        entry: Option<&v1::Entry>,
        update: bool,
    ) -> Result<u64, ApiError> {
        let entry = entry_from_proto(entry).map_err(ApiError::InvalidArgument)?;
        entry.check().map_err(|e| {
            ApiError::InvalidArgument(format!("{} `{}`: {e}", entry.kind(), entry.id()))
        })?;
        refuse_workload_on_agent_path(&entry, self.gate.agents())?;
        let (kind, id) = (entry.kind(), entry.id().to_owned());
        let action = if update { "update" } else { "register" };
        let authorize = |candidate: &Snapshot| self.authorize(caller, action, kind, &id, candidate);
        let revision = self.journal.put_entry(entry, authorize, update).await?;
        tracing::info!(kind = %kind, id = %id, spiffe_id = %caller, revision, "registry {action}");
        Ok(revision)
    }
}

/// A SPIFFE ID the agent pattern makes an agent cannot be registered as a
/// workload: it would escape every policy written for agents.
pub fn refuse_workload_on_agent_path(entry: &Entry, agents: &AgentPattern) -> Result<(), ApiError> {
    if let Entry::Workload(workload) = entry
        && SpiffeId::new(&workload.spiffe_id).is_ok_and(|id| agents.matches(&id))
    {
        return Err(ApiError::InvalidArgument(format!(
            "workload `{}` has an agent's SPIFFE ID (the agent path pattern); register it as an agent",
            workload.spiffe_id
        )));
    }
    Ok(())
}

fn kind_from_proto(kind: i32) -> Result<Kind, ApiError> {
    match EntryKind::try_from(kind) {
        Ok(EntryKind::Agent) => Ok(Kind::Agent),
        Ok(EntryKind::Workload) => Ok(Kind::Workload),
        Ok(EntryKind::User) => Ok(Kind::User),
        Ok(EntryKind::Group) => Ok(Kind::Group),
        Ok(EntryKind::Resource) => Ok(Kind::Resource),
        Ok(EntryKind::Unspecified) | Err(_) => Err(ApiError::InvalidArgument(format!(
            "`kind` must be one of agent, workload, user, group, resource (got {kind})"
        ))),
    }
}

#[tonic::async_trait]
impl RegistryService for RegistryApi {
    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<RegistryWriteResponse>, Status> {
        let caller = caller(&request)?.spiffe_id;
        let revision = self
            .write(&caller, request.get_ref().entry.as_ref(), false)
            .await?;
        Ok(Response::new(RegistryWriteResponse { revision }))
    }

    async fn update(
        &self,
        request: Request<UpdateRequest>,
    ) -> Result<Response<RegistryWriteResponse>, Status> {
        let caller = caller(&request)?.spiffe_id;
        let revision = self
            .write(&caller, request.get_ref().entry.as_ref(), true)
            .await?;
        Ok(Response::new(RegistryWriteResponse { revision }))
    }

    async fn remove(
        &self,
        request: Request<RemoveRequest>,
    ) -> Result<Response<RegistryWriteResponse>, Status> {
        let caller = caller(&request)?.spiffe_id;
        let r = request.get_ref();
        let kind = kind_from_proto(r.kind)?;
        if r.id.is_empty() {
            return Err(ApiError::InvalidArgument("`id` is required".to_owned()).into());
        }
        let revision = self
            .journal
            .remove_entry(kind, &r.id, |current: &Snapshot| {
                self.authorize(&caller, "remove", kind, &r.id, current)
            })
            .await?;
        tracing::info!(kind = %kind, id = %r.id, spiffe_id = %caller, revision, "registry remove");
        Ok(Response::new(RegistryWriteResponse { revision }))
    }

    async fn list(&self, request: Request<ListRequest>) -> Result<Response<ListResponse>, Status> {
        let caller = caller(&request)?.spiffe_id;
        let r = request.get_ref();
        let kind = kind_from_proto(r.kind)?;
        let limit = super::page_limit(r.page_size);
        let snapshot = self.registry.snapshot();
        let after = (!r.page_token.is_empty()).then_some(r.page_token.as_str());
        let page = snapshot.list(kind, after, limit);
        let next_page_token = if page.len() == limit {
            page.last().map(|e| e.id().to_owned()).unwrap_or_default()
        } else {
            String::new()
        };
        // Entries the caller may not inspect are left out of the page. An
        // agent's checksum is shown only to who may update the entry: an
        // agent that could read its own would only have to replay it.
        let entries = page
            .into_iter()
            .filter(|e| {
                self.authorize(&caller, "inspect", kind, e.id(), &snapshot)
                    .is_ok()
            })
            .map(|e| match e {
                Entry::Agent(agent)
                    if agent.checksum.is_some()
                        && self
                            .authorize(&caller, "update", kind, e.id(), &snapshot)
                            .is_err() =>
                {
                    entry_to_proto(&Entry::Agent(AgentEntry {
                        checksum: Some(REDACTED.to_owned()),
                        ..agent.clone()
                    }))
                }
                other => entry_to_proto(other),
            })
            .collect();
        Ok(Response::new(ListResponse {
            entries,
            next_page_token,
        }))
    }
}
