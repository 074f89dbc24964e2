//! Identity snapshots and the sources that produce them.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use spiffe::{SpiffeId, TrustDomain};
use tokio::sync::watch;

use super::svid::{spiffe_id_of_leaf, validity_of};
use super::{
    FilesSource, IdentityError, IdentityStatus, TrustBundles, TrustPolicy, WorkloadApiSource, dev,
};
use crate::clock::{Clock, SystemClock};

/// Our own SVID and the bundles we trust, as one consistent snapshot.
pub struct Identity {
    /// Our SPIFFE ID, read from our own leaf certificate.
    pub spiffe_id: SpiffeId,
    /// Our SVID chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The private key of our leaf.
    pub key: PrivateKeyDer<'static>,
    /// The bundles of every trust domain we accept.
    pub bundles: Arc<TrustBundles>,
    /// Start of our leaf's validity, Unix seconds.
    pub not_before: i64,
    /// End of our leaf's validity, Unix seconds.
    pub not_after: i64,
    /// Why the SPIRE agent withdrew this material (it answered
    /// `PermissionDenied`: Mandate's registration entry is gone), if it did.
    /// The material stays for open connections, but it is no longer valid:
    /// health is NOT_SERVING and `/readyz` 503 until the agent issues again.
    pub withdrawn: Option<String>,
    /// The server TLS configuration built from this snapshot when it was
    /// published, so it is built once per snapshot.
    tls: Option<Arc<ServerConfig>>,
}

impl Identity {
    /// Checks that `chain` is an X.509-SVID and assembles a snapshot.
    pub fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        bundles: TrustBundles,
    ) -> Result<Self, IdentityError> {
        let leaf = chain.first().ok_or(IdentityError::NoCertificate)?;
        let spiffe_id = spiffe_id_of_leaf(leaf)?;
        let (not_before, not_after) = validity_of(leaf)?;
        Ok(Self {
            spiffe_id,
            chain,
            key,
            bundles: Arc::new(bundles),
            not_before,
            not_after,
            withdrawn: None,
            tls: None,
        })
    }

    /// Whether our SVID is inside its validity window at `now` (Unix
    /// seconds) and not withdrawn by the agent: what health and readiness
    /// are judged by.
    pub fn is_valid_at(&self, now: i64) -> bool {
        self.withdrawn.is_none() && self.is_within_validity(now)
    }

    /// Whether `now` (Unix seconds) is inside our leaf's validity window.
    pub fn is_within_validity(&self, now: i64) -> bool {
        self.not_before <= now && now < self.not_after
    }

    /// The same material, marked as withdrawn by the agent for `reason`.
    pub(crate) fn withdrawn(&self, reason: String) -> Self {
        Self {
            spiffe_id: self.spiffe_id.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            bundles: self.bundles.clone(),
            not_before: self.not_before,
            not_after: self.not_after,
            withdrawn: Some(reason),
            tls: self.tls.clone(),
        }
    }

    /// The server TLS configuration for this snapshot: the one built when
    /// it was published, or a new one for material handed over whole.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, IdentityError> {
        match &self.tls {
            Some(config) => Ok(config.clone()),
            None => super::server_config(self),
        }
    }

    /// Builds and keeps the server TLS configuration (which checks that the
    /// key fits the certificate).
    pub(crate) fn with_server_config(mut self) -> Result<Self, IdentityError> {
        self.tls = Some(super::server_config(&self)?);
        Ok(self)
    }

    /// Our trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        self.spiffe_id.trust_domain()
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the key.
        f.debug_struct("Identity")
            .field("spiffe_id", &self.spiffe_id.to_string())
            .field("chain_len", &self.chain.len())
            .field("bundles", &self.bundles.trust_domains())
            .field("not_after", &self.not_after)
            .field("withdrawn", &self.withdrawn)
            .finish_non_exhaustive()
    }
}

/// The latest identity snapshot; the TLS layer reads it at each handshake.
pub type IdentityWatch = watch::Receiver<Arc<Identity>>;

/// An open identity source: the snapshots and how keeping them fresh goes.
#[derive(Debug, Clone)]
pub struct IdentityFeed {
    /// The newest valid snapshot.
    pub watch: IdentityWatch,
    /// Rotations, refused updates and withdrawals, for `/readyz` and logs.
    pub status: IdentityStatus,
}

/// How long a withdrawn trust bundle must stay away before its agents'
/// tasks are revoked: a flapping agent update must not revoke anything.
pub const DEFAULT_WITHDRAWAL_GRACE: Duration = Duration::from_secs(30);

/// How an open source is kept fresh.
#[derive(Debug, Clone)]
pub struct FollowOptions {
    /// Which trust domains are accepted at all.
    pub trust: TrustPolicy,
    /// How often PEM files are checked for changes (`files` and `dev`);
    /// `None` reads them once.
    pub poll: Option<Duration>,
    /// What validity windows are judged by; tests move it instead of
    /// waiting for a certificate to expire or become valid.
    pub clock: Arc<dyn Clock>,
    /// How long a withdrawn trust domain's bundle must stay away before
    /// its agents' tasks are revoked: revocation cannot be undone, and an
    /// agent may send one update without a bundle and the next with it.
    /// Its callers are refused from the withdrawal on, regardless.
    pub withdrawal_grace: Duration,
}

impl Default for FollowOptions {
    /// Only our own trust domain, files read once, the system clock.
    fn default() -> Self {
        Self {
            trust: TrustPolicy::default(),
            poll: None,
            clock: Arc::new(SystemClock),
            withdrawal_grace: DEFAULT_WITHDRAWAL_GRACE,
        }
    }
}

/// Where our SVID and trust bundles come from.
#[derive(Debug, Clone)]
pub enum IdentitySource {
    /// PEM files: our SVID chain and key, one bundle per trusted trust domain.
    Files(FilesSource),
    /// A local development trust domain under `dir`, created when missing.
    Dev {
        /// Directory holding the dev CA and SVIDs.
        dir: PathBuf,
        /// The dev trust domain.
        trust_domain: TrustDomain,
    },
    /// The SPIFFE Workload API of a local SPIRE agent.
    WorkloadApi(WorkloadApiSource),
}

impl IdentitySource {
    /// The name of the source in config, logs and `/readyz`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Files(_) => "files",
            Self::Dev { .. } => "dev",
            Self::WorkloadApi(_) => "workload-api",
        }
    }

    /// Opens the source with the default [`FollowOptions`] (only our own
    /// trust domain; files read once, while the workload API keeps
    /// following the agent) and returns the channel of snapshots, for tools
    /// and benches; the server uses [`IdentitySource::follow`].
    pub async fn open(&self) -> Result<IdentityWatch, IdentityError> {
        Ok(self.follow(&FollowOptions::default()).await?.watch)
    }

    /// Loads and validates the first snapshot, then keeps a task publishing
    /// newer valid ones until every receiver is gone. A source that cannot
    /// produce a valid first snapshot is an error: nothing is served.
    pub async fn follow(&self, options: &FollowOptions) -> Result<IdentityFeed, IdentityError> {
        let status = IdentityStatus::new(self.kind());
        status.set_withdrawal_grace(options.withdrawal_grace);
        let watch = match self {
            Self::Files(files) => files.clone().follow(options, status.clone())?,
            Self::Dev { dir, trust_domain } => {
                dev::DevTrustDomain::open_or_init(dir, trust_domain)?
                    .files_source()
                    .follow(options, status.clone())?
            }
            Self::WorkloadApi(api) => api.follow(options, status.clone()).await?,
        };
        Ok(IdentityFeed { watch, status })
    }
}
