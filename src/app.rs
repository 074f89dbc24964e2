//! The composition root: from resolved [`Settings`] to a server ready to
//! bind. `mandate serve`, the end-to-end tests and the benchmarks all build
//! through [`App::build`], so every check `serve` makes before it binds
//! (policies, schema, catalog, route map, sealed keys) runs in tests too.

use std::sync::Arc;
use std::time::Duration;

use cedar_policy::Entities;

use crate::api::refuse_workload_on_agent_path;
use crate::approval::ApprovalBook;
use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::credential::{SigningKeys, TaskTokens, TokenSettings};
use crate::decision::AgentPattern;
use crate::envoy::RouteTable;
use crate::graph::TaskGraph;
use crate::identity::dev::DevTrustDomain;
use crate::identity::{IdentityError, IdentityFeed, IdentitySource};
use crate::journal::Journal;
use crate::policy::{PolicyEngine, PolicyError, PolicyPaths, PolicyStore, Sources};
use crate::registry::{Catalog, Entry, Registry};
use crate::revision::Revision;
use crate::server::{self, RunningServer, ServerError};
use crate::store::Store;

/// What a caller may hand over instead of what the settings describe: a
/// test's clock, a test CA's identity, a store shared with another server.
pub struct Seams {
    /// The clock of tasks, tokens and approvals.
    pub clock: Arc<dyn Clock>,
    /// Our identity, instead of following `settings.identity`.
    pub identity: Option<IdentityFeed>,
    /// The store, instead of opening `settings.store`.
    pub store: Option<Arc<dyn Store>>,
}

impl Default for Seams {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            identity: None,
            store: None,
        }
    }
}

/// Why an application could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The configuration, the policies, the catalog or the route map are
    /// wrong: one line per problem, to be fixed before a retry.
    #[error("{}", .0.join("\n"))]
    Config(Vec<String>),
    /// Something the server needs does not answer (the SPIRE agent, the
    /// store): a retry later may succeed.
    #[error("{0}")]
    Unavailable(String),
}

impl BuildError {
    /// The exit code of `mandate serve` for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Config(_) => crate::exit_code::USAGE,
            Self::Unavailable(_) => crate::exit_code::FAILURE,
        }
    }

    fn config(problem: impl ToString) -> Self {
        Self::Config(vec![problem.to_string()])
    }

    fn unavailable(problem: impl ToString) -> Self {
        Self::Unavailable(problem.to_string())
    }
}

impl From<PolicyError> for BuildError {
    fn from(e: PolicyError) -> Self {
        match e {
            PolicyError::Invalid { problems } => {
                Self::Config(problems.iter().map(ToString::to_string).collect())
            }
            e => Self::config(e),
        }
    }
}

/// Mandate built and checked, not yet listening.
pub struct App {
    parts: server::Parts,
    dev: Option<DevTrustDomain>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("listen", &self.parts.listen)
            .finish_non_exhaustive()
    }
}

impl App {
    /// Loads and checks everything `settings` names, opens the store and
    /// loads its state, and builds the live state over it. Nothing is
    /// bound until [`App::start`].
    pub async fn build(settings: Settings, seams: Seams) -> Result<Self, BuildError> {
        let engine = load_policies(&settings)?;
        let (entries, static_entities) = registry_input(&settings, &engine)?;
        // The route map is checked against the schema, like the policies.
        let routes = match &settings.envoy.route_map {
            Some(path) => RouteTable::load(path, &engine).map_err(BuildError::Config)?,
            None => RouteTable::empty(),
        };
        // So are the AuthZEN type map's entity types.
        if let Some(authzen) = &settings.authzen {
            let problems = authzen.types.check(&engine);
            if !problems.is_empty() {
                return Err(BuildError::Config(problems));
            }
        }

        let dev = match &settings.identity {
            IdentitySource::Dev { dir, trust_domain } if seams.identity.is_none() => {
                Some(DevTrustDomain::open_or_init(dir, trust_domain).map_err(BuildError::config)?)
            }
            _ => None,
        };
        let feed = match seams.identity {
            Some(feed) => feed,
            None => settings
                .identity
                .follow(&settings.identity_follow)
                .await
                .map_err(|e| match e {
                    // An agent that does not answer is not a usage error.
                    e @ IdentityError::WorkloadApi(_) => BuildError::unavailable(e),
                    e => BuildError::config(e),
                })?,
        };
        // Every source built the TLS configuration before publishing (a
        // key that does not fit is refused there, before any port is bound).
        let own_trust_domain = feed.watch.borrow().trust_domain().clone();
        let own_id = feed.watch.borrow().spiffe_id.to_string();
        let agents = AgentPattern::new(
            settings.agent_path_prefixes.clone(),
            settings
                .agent_trust_domains
                .clone()
                .unwrap_or_else(|| vec![own_trust_domain.clone()]),
        );
        let misfiled: Vec<String> = entries
            .iter()
            .filter_map(|e| refuse_workload_on_agent_path(e, &agents).err())
            .map(|e| format!("catalog: {e}"))
            .collect();
        if !misfiled.is_empty() {
            return Err(BuildError::Config(misfiled));
        }

        let store = match seams.store {
            Some(store) => store,
            None => crate::store::open(&settings.store)
                .await
                .map_err(BuildError::unavailable)?,
        };
        let loaded = crate::journal::boot::load(store.as_ref())
            .await
            .map_err(BuildError::unavailable)?;
        let revision = Arc::new(Revision::starting_at(loaded.revision));
        let entry_count = entries.len();
        let registry = Registry::new(
            crate::journal::boot::overlay(entries, &loaded.registry),
            &static_entities,
            engine.schema(),
            settings.sensitivity.clone(),
            own_trust_domain.as_str(),
            revision.clone(),
        )
        .map(Arc::new)
        .map_err(|problems| {
            let catalog = settings.catalog.as_ref().map_or_else(
                || "the registry".to_owned(),
                |c| format!("catalog `{}`", c.display()),
            );
            BuildError::Config(problems.iter().map(|p| format!("{catalog}: {p}")).collect())
        })?;
        if let Some(catalog) = &settings.catalog {
            tracing::info!(entries = entry_count, file = %catalog.display(), "catalog loaded");
        }

        let clock = seams.clock;
        let sealer = crate::store::seal::Sealer::configured(settings.store_key_file.as_deref())
            .map_err(BuildError::config)?;
        let keys = match &sealer {
            Some(_) => Arc::new(SigningKeys::from_store(
                settings.key_rotation,
                clock.clone(),
            )),
            None => Arc::new(
                SigningKeys::open(
                    &settings.data_dir.join("keys"),
                    settings.key_rotation,
                    clock.clone(),
                )
                .map_err(BuildError::config)?,
            ),
        };
        // Tokens are issued by and for this Mandate: its SPIFFE ID is both.
        let tokens = Arc::new(TaskTokens::new(
            keys.clone(),
            TokenSettings {
                issuer: own_id.clone(),
                audience: own_id,
                ..settings.tokens.clone()
            },
            clock.clone(),
        ));
        let graph = Arc::new(TaskGraph::with_revision(
            settings.max_delegation_depth,
            revision.clone(),
        ));
        let approvals = Arc::new(ApprovalBook::new(revision.clone()));
        crate::journal::boot::fill(&graph, &approvals, &loaded);
        let journal = Arc::new(Journal::new(
            store,
            graph.clone(),
            approvals.clone(),
            registry.clone(),
            revision.clone(),
        ));
        // Sealed keys are shared through the store; one is made current
        // before serving, so the first token can be signed.
        let rotate_keys_every = match sealer {
            Some(sealer) => {
                // Keys the sealing key cannot open are a configuration
                // error: the wrong key file was given.
                journal
                    .keep_keys(keys, sealer, &loaded.keys)
                    .map_err(BuildError::config)?;
                journal
                    .rotate_key_if_due()
                    .await
                    .map_err(BuildError::unavailable)?;
                let every = settings.key_rotation.rotate_after.clamp(1, 60);
                Some(Duration::from_secs(u64::try_from(every).unwrap_or(60)))
            }
            None => None,
        };
        drop(loaded);

        let policies = Arc::new(PolicyStore::new(
            engine,
            Some(PolicyPaths {
                policies: settings.policies.clone(),
                schema: settings.schema.clone(),
                unknown_sensitivity: settings.sensitivity.max(),
                validation_level: settings.policy_validation_level,
            }),
            clock.now(),
        ));
        let parts = server::Parts {
            listen: settings.listen,
            http_listen: settings.http_listen,
            policies,
            graph,
            registry,
            approvals,
            revision,
            tokens,
            clock,
            identity: feed.watch,
            identity_status: feed.status,
            revoke_on_trust_withdrawal: settings.revoke_on_trust_withdrawal,
            task_retention: settings.task_retention,
            agents,
            max_batch_size: settings.max_batch_size,
            handshake_timeout: settings.handshake_timeout,
            limits: settings.limits,
            shutdown_grace: settings.shutdown_grace,
            policy_poll: settings.policy_poll,
            audit: crate::audit::AuditSettings {
                file: settings.decision_log,
                capacity: settings.decision_log_capacity,
                ..settings.audit
            },
            envoy: settings.envoy,
            routes: Arc::new(routes),
            journal,
            replica: settings.replica,
            rotate_keys_every,
            ui: settings.ui,
            authzen: settings.authzen,
        };
        Ok(Self { parts, dev })
    }

    /// The dev trust domain the identity comes from, when it does.
    pub fn dev_trust_domain(&self) -> Option<&DevTrustDomain> {
        self.dev.as_ref()
    }

    /// The live task graph, for tests and benchmarks that set up state.
    pub fn graph(&self) -> &Arc<TaskGraph> {
        &self.parts.graph
    }

    /// The live registry.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.parts.registry
    }

    /// The human approvals.
    pub fn approvals(&self) -> &Arc<ApprovalBook> {
        &self.parts.approvals
    }

    /// The durable writer of the state above.
    pub fn journal(&self) -> &Arc<Journal> {
        &self.parts.journal
    }

    /// Binds the listeners and serves.
    pub async fn start(self) -> Result<RunningServer, ServerError> {
        server::start(self.parts).await
    }
}

/// The policy set the settings name, validated against the schema.
fn load_policies(settings: &Settings) -> Result<PolicyEngine, BuildError> {
    let sources = Sources::read(&settings.policies, &settings.schema)?;
    let engine = PolicyEngine::from_sources_at_level(
        &sources,
        settings.sensitivity.max(),
        settings.policy_validation_level,
    )?;
    tracing::info!(policies = engine.len(), dir = %settings.policies.display(), policy_hash = %engine.hash(), "policies loaded");
    for warning in engine.warnings() {
        tracing::warn!("policy warning: {warning}");
    }
    if engine.is_empty() {
        tracing::warn!(dir = %settings.policies.display(), "no policies found: every request will be denied");
    }
    Ok(engine)
}

/// What the registry starts with: the catalog's entries and the entities
/// file's entities.
fn registry_input(
    settings: &Settings,
    engine: &PolicyEngine,
) -> Result<(Vec<Entry>, Entities), BuildError> {
    let static_entities = match &settings.entities {
        Some(path) => engine.load_entities(path)?,
        None => Entities::empty(),
    };
    let entries = match &settings.catalog {
        Some(path) => {
            let prefix = |p: String| format!("catalog `{}`: {p}", path.display());
            Catalog::load(path)
                .map_err(BuildError::config)?
                .into_entries()
                .map_err(|problems| {
                    BuildError::Config(problems.into_iter().map(prefix).collect())
                })?
        }
        None => Vec::new(),
    };
    Ok((entries, static_entities))
}
