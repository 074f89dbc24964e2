//! Identity snapshots and the sources that produce them.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use spiffe::{SpiffeId, TrustDomain};
use tokio::sync::watch;

use super::{FilesSource, IdentityError, TrustBundles, dev, svid::spiffe_id_of_leaf};

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
        Ok(Self {
            spiffe_id,
            chain,
            key,
            bundles: Arc::new(bundles),
        })
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the key.
        f.debug_struct("Identity")
            .field("spiffe_id", &self.spiffe_id.to_string())
            .field("chain_len", &self.chain.len())
            .field("bundles", &self.bundles.trust_domains())
            .finish_non_exhaustive()
    }
}

/// The latest identity snapshot; the TLS layer reads it at each handshake.
pub type IdentityWatch = watch::Receiver<Arc<Identity>>;

/// Where our SVID and trust bundles come from.
///
/// A SPIFFE Workload API source will be a third variant whose `open` keeps
/// a task sending new snapshots; callers only ever see the [`IdentityWatch`].
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
}

impl IdentitySource {
    /// Loads the material and returns a channel of snapshots.
    pub async fn open(&self) -> Result<IdentityWatch, IdentityError> {
        let identity = match self {
            Self::Files(files) => files.load()?,
            Self::Dev { dir, trust_domain } => {
                dev::DevTrustDomain::open_or_init(dir, trust_domain)?
                    .files_source()
                    .load()?
            }
        };
        let (_sender, receiver) = watch::channel(Arc::new(identity));
        Ok(receiver)
    }
}
