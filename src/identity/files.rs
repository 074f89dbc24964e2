//! The `files` identity source: PEM files as written by spiffe-helper or
//! cert-manager's csi-driver-spiffe, reloaded when their content changes.
//!
//! A trust domain cannot be withdrawn through files: a bundle file that is
//! deleted or emptied is a bad file like any other, refused, and the
//! previous bundles stay in use (so neither its callers are refused nor
//! its agents' tasks revoked). To stop trusting a federated trust domain,
//! take it out of `trust_bundles` or `trusted_trust_domains` and restart.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use spiffe::TrustDomain;

use super::publish::{Offered, Publisher};
use super::{FollowOptions, Identity, IdentityError, IdentityStatus, IdentityWatch, TrustBundles};

/// Paths of our SVID, its key and the bundle of each trusted trust domain.
#[derive(Debug, Clone)]
pub struct FilesSource {
    /// Our SVID chain, leaf first (PEM).
    pub svid_cert: PathBuf,
    /// The key of our SVID (PEM, PKCS#8, SEC1 or PKCS#1).
    pub svid_key: PathBuf,
    /// One CA bundle (PEM) per trusted trust domain.
    pub bundles: Vec<(TrustDomain, PathBuf)>,
}

impl FilesSource {
    /// Reads and checks every file.
    pub fn load(&self) -> Result<Identity, IdentityError> {
        let chain = load_certs(&self.svid_cert)?;
        let key = load_private_key(&self.svid_key)?;
        let mut bundles = TrustBundles::default();
        for (trust_domain, path) in &self.bundles {
            bundles.add(trust_domain.clone(), &load_certs(path)?)?;
        }
        Identity::new(chain, key, bundles)
    }

    /// A digest of every file's content. An unreadable file counts as its
    /// own state, so a file that disappears and comes back is a change.
    pub fn fingerprint(&self) -> Vec<u8> {
        let mut hasher = Sha256::new();
        let paths = [&self.svid_cert, &self.svid_key]
            .into_iter()
            .chain(self.bundles.iter().map(|(_, path)| path));
        for path in paths {
            hasher.update(path.as_os_str().as_encoded_bytes());
            match std::fs::read(path) {
                Ok(content) => {
                    hasher.update(b"\0ok\0");
                    hasher.update(Sha256::digest(&content));
                }
                Err(e) => {
                    hasher.update(b"\0err\0");
                    hasher.update(e.kind().to_string().as_bytes());
                }
            }
        }
        hasher.finalize().to_vec()
    }

    /// Loads the files and, when `options.poll` is set, keeps a task
    /// reloading them when they change.
    pub(crate) fn follow(
        self,
        options: &FollowOptions,
        status: IdentityStatus,
    ) -> Result<IdentityWatch, IdentityError> {
        // Taken before reading, so a write during the first load is seen
        // as a change at the next poll.
        let seen = self.fingerprint();
        let (publisher, watch) = Publisher::start(
            self.load()?,
            options.trust.clone(),
            status,
            options.clock.clone(),
        )?;
        if let Some(interval) = options.poll {
            tokio::spawn(self.watch(publisher, seen, interval));
        }
        Ok(watch)
    }

    /// Polls the content every `interval` and reloads once a change has
    /// settled (see [`Changes`]). Polling content rather than file-system
    /// events also sees a Kubernetes secret's symlink swap, which writes no
    /// file.
    async fn watch(self, mut publisher: Publisher, seen: Vec<u8>, interval: Duration) {
        let mut changes = Changes::new(seen);
        loop {
            tokio::select! {
                () = publisher.closed() => return,
                () = tokio::time::sleep(interval) => {}
            }
            let files = self.clone();
            let Ok(now) = tokio::task::spawn_blocking(move || files.fingerprint()).await else {
                continue;
            };
            let Some(settled) = changes.settled(now) else {
                continue;
            };
            let files = self.clone();
            let loaded = tokio::task::spawn_blocking(move || files.load())
                .await
                .unwrap_or_else(|e| Err(IdentityError::Reload(e.to_string())));
            match publisher.offer(loaded) {
                Offered::Published => {
                    tracing::info!(cert = %self.svid_cert.display(), "SVID files reloaded");
                }
                // Not valid yet (clock skew; csi-driver-spiffe issues with
                // `notBefore` = now): the same files are tried again.
                Offered::Refused { retry: true } => continue,
                Offered::Unchanged | Offered::Refused { retry: false } => {}
            }
            // INVARIANT: `seen` moves on when a load is refused for good, so
            // a bad file is reported once and the next write is tried.
            changes.loaded(settled);
        }
    }
}

/// When to reload: once the content differs from what was last loaded and
/// has stayed the same for one more poll. spiffe-helper writes the
/// certificate and the key one after the other, and a pair caught
/// half-written would be refused.
#[derive(Debug)]
struct Changes {
    /// The fingerprint last loaded (published or refused for good).
    seen: Vec<u8>,
    /// A new fingerprint seen once, waiting for the next poll.
    pending: Option<Vec<u8>>,
}

impl Changes {
    fn new(seen: Vec<u8>) -> Self {
        Self {
            seen,
            pending: None,
        }
    }

    /// The fingerprint to load now, if `now` is a change that has settled.
    fn settled(&mut self, now: Vec<u8>) -> Option<Vec<u8>> {
        if now == self.seen {
            self.pending = None;
            return None;
        }
        if self.pending.as_ref() == Some(&now) {
            self.pending = None;
            return Some(now);
        }
        self.pending = Some(now);
        None
    }

    /// The content of `fingerprint` was loaded; only a later change counts.
    fn loaded(&mut self, fingerprint: Vec<u8>) {
        self.seen = fingerprint;
    }
}

fn read(path: &Path) -> Result<Vec<u8>, IdentityError> {
    std::fs::read(path).map_err(|source| IdentityError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Reads every certificate of a PEM file; an empty file is an error.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, IdentityError> {
    let pem = read(path)?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| IdentityError::Pem {
            path: path.to_owned(),
            what: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(IdentityError::Pem {
            path: path.to_owned(),
            what: "no certificate found".to_owned(),
        });
    }
    Ok(certs)
}

/// Reads the first private key of a PEM file.
pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, IdentityError> {
    let pem = read(path)?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| IdentityError::Pem {
            path: path.to_owned(),
            what: e.to_string(),
        })?
        .ok_or_else(|| IdentityError::Pem {
            path: path.to_owned(),
            what: "no private key found".to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn print(state: &str) -> Vec<u8> {
        state.as_bytes().to_vec()
    }

    #[test]
    fn a_half_written_pair_is_never_loaded() {
        let mut changes = Changes::new(print("old cert, old key"));
        // The certificate is written; one poll sees it before the key.
        assert_eq!(changes.settled(print("new cert, old key")), None);
        assert_eq!(changes.settled(print("new cert, new key")), None);
        assert_eq!(
            changes.settled(print("new cert, new key")),
            Some(print("new cert, new key"))
        );
        changes.loaded(print("new cert, new key"));
        assert_eq!(changes.settled(print("new cert, new key")), None);
    }

    #[test]
    fn content_that_is_not_loaded_is_offered_again() {
        let mut changes = Changes::new(print("old"));
        assert_eq!(changes.settled(print("early")), None);
        assert_eq!(changes.settled(print("early")), Some(print("early")));
        // Refused for now (not valid yet): `loaded` is not called.
        assert_eq!(changes.settled(print("early")), None);
        assert_eq!(changes.settled(print("early")), Some(print("early")));
        // Back to what was loaded: nothing to do.
        assert_eq!(changes.settled(print("old")), None);
    }
}
