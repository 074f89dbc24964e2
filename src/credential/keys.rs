//! Ed25519 signing keys: created under the data dir (mode 0600), rotated on
//! a schedule, and kept for verification for an overlap after rotation.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{DecodingKey, EncodingKey};
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::CredentialError;
use crate::clock::Clock;

/// When keys rotate and how long a retired key still verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyRotation {
    /// A key signs for this long (seconds), then a new one takes over.
    pub rotate_after: i64,
    /// A retired key still verifies for this long (seconds); keep it above
    /// the longest token lifetime.
    pub overlap: i64,
}

impl Default for KeyRotation {
    fn default() -> Self {
        Self {
            rotate_after: 24 * 3600,
            overlap: 3600,
        }
    }
}

/// One signing key.
pub struct SigningKey {
    /// Key id: the first 16 characters of the base64url SHA-256 of the
    /// public key.
    pub kid: String,
    /// Created, Unix seconds.
    pub created_at: i64,
    public: Vec<u8>,
    pub(super) encoding: EncodingKey,
    pub(super) decoding: DecodingKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
struct KeyFile {
    kid: String,
    created_at: i64,
    pkcs8: String,
}

impl SigningKey {
    fn from_pkcs8(pkcs8: &[u8], created_at: i64) -> Result<Self, CredentialError> {
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8)
            .map_err(|e| CredentialError::Signing(format!("bad Ed25519 key: {e}")))?;
        let public = pair.public_key().as_ref().to_vec();
        let kid: String = URL_SAFE_NO_PAD
            .encode(Sha256::digest(&public))
            .chars()
            .take(16)
            .collect();
        Ok(Self {
            kid,
            created_at,
            encoding: EncodingKey::from_ed_der(pkcs8),
            decoding: DecodingKey::from_ed_der(&public),
            public,
        })
    }

    /// The public key as a JWK.
    pub fn jwk(&self) -> serde_json::Value {
        serde_json::json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "alg": "EdDSA",
            "use": "sig",
            "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(&self.public),
        })
    }
}

/// The key ring: the newest key signs; older keys verify until their
/// successor is `overlap` seconds old.
#[derive(Debug)]
pub struct SigningKeys {
    dir: Option<PathBuf>,
    /// Whether `current` makes a key when rotation is due; off when keys
    /// come from the store, where a writer commits them first.
    generate: bool,
    keys: RwLock<Vec<Arc<SigningKey>>>,
    rotation: KeyRotation,
    clock: Arc<dyn Clock>,
}

impl SigningKeys {
    /// Loads the keys in `dir` (created when missing).
    pub fn open(
        dir: &Path,
        rotation: KeyRotation,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, CredentialError> {
        let fail = |path: &Path, e: &dyn std::fmt::Display| CredentialError::KeyFile {
            path: path.to_owned(),
            message: e.to_string(),
        };
        std::fs::create_dir_all(dir).map_err(|e| fail(dir, &e))?;
        let mut keys = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| fail(dir, &e))? {
            let path = entry.map_err(|e| fail(dir, &e))?.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let text = std::fs::read_to_string(&path).map_err(|e| fail(&path, &e))?;
            let file: KeyFile = serde_json::from_str(&text).map_err(|e| fail(&path, &e))?;
            let pkcs8 = STANDARD.decode(&file.pkcs8).map_err(|e| fail(&path, &e))?;
            keys.push(Arc::new(SigningKey::from_pkcs8(&pkcs8, file.created_at)?));
        }
        keys.sort_by_key(|k| k.created_at);
        Ok(Self {
            dir: Some(dir.to_owned()),
            generate: true,
            keys: RwLock::new(keys),
            rotation,
            clock,
        })
    }

    /// A key ring that lives only in memory (keys are lost at exit).
    pub fn ephemeral(rotation: KeyRotation, clock: Arc<dyn Clock>) -> Self {
        Self {
            dir: None,
            generate: true,
            keys: RwLock::new(Vec::new()),
            rotation,
            clock,
        }
    }

    /// A key ring filled from the store: it never makes keys itself (see
    /// [`crate::journal::Journal::rotate_key_if_due`]); until the first one
    /// is inserted, signing fails.
    pub fn from_store(rotation: KeyRotation, clock: Arc<dyn Clock>) -> Self {
        Self {
            generate: false,
            ..Self::ephemeral(rotation, clock)
        }
    }

    /// Whether a new key should sign from now: none yet, or the newest is
    /// older than the rotation period.
    pub fn due(&self) -> bool {
        let now = self.clock.now();
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        keys.last()
            .is_none_or(|k| now >= k.created_at.saturating_add(self.rotation.rotate_after))
    }

    /// Adds a key (PKCS#8) made at `created_at`, unless it is there
    /// already; keys past their overlap are dropped.
    pub fn insert(&self, pkcs8: &[u8], created_at: i64) -> Result<String, CredentialError> {
        let key = SigningKey::from_pkcs8(pkcs8, created_at)?;
        let kid = key.kid.clone();
        let mut keys = self.keys.write().unwrap_or_else(|e| e.into_inner());
        if !keys.iter().any(|k| k.kid == kid) {
            keys.push(Arc::new(key));
            keys.sort_by_key(|k| k.created_at);
            self.prune(&mut keys, self.clock.now());
        }
        Ok(kid)
    }

    /// A new Ed25519 key as PKCS#8, with its key id.
    pub fn generate_pkcs8() -> Result<(String, Vec<u8>), CredentialError> {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
            .map_err(|e| CredentialError::Signing(format!("cannot generate a key: {e}")))?;
        let kid = SigningKey::from_pkcs8(pkcs8.as_ref(), 0)?.kid;
        Ok((kid, pkcs8.as_ref().to_vec()))
    }

    /// The clock's now, for the time a new key is made at.
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// The key to sign with now, rotating first when the newest is due.
    pub fn current(&self) -> Result<Arc<SigningKey>, CredentialError> {
        let now = self.clock.now();
        {
            let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
            if let Some(newest) = keys.last()
                && now < newest.created_at.saturating_add(self.rotation.rotate_after)
            {
                return Ok(newest.clone());
            }
            // A store-backed ring signs with its newest key until the
            // rotation task commits the next one.
            if !self.generate {
                return keys.last().cloned().ok_or_else(|| {
                    CredentialError::Signing("no signing key yet; the store has none".to_owned())
                });
            }
        }
        let mut keys = self.keys.write().unwrap_or_else(|e| e.into_inner());
        // Another caller may have rotated while we waited for the lock.
        if let Some(newest) = keys.last()
            && now < newest.created_at.saturating_add(self.rotation.rotate_after)
        {
            return Ok(newest.clone());
        }
        let key = Arc::new(self.generate(now)?);
        tracing::info!(kid = %key.kid, "signing key rotated");
        keys.push(key.clone());
        self.prune(&mut keys, now);
        Ok(key)
    }

    fn generate(&self, now: i64) -> Result<SigningKey, CredentialError> {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
            .map_err(|e| CredentialError::Signing(format!("cannot generate a key: {e}")))?;
        let key = SigningKey::from_pkcs8(pkcs8.as_ref(), now)?;
        if let Some(dir) = &self.dir {
            let path = dir.join(format!("key-{}.json", key.kid));
            let file = KeyFile {
                kid: key.kid.clone(),
                created_at: now,
                pkcs8: STANDARD.encode(pkcs8.as_ref()),
            };
            let text = serde_json::to_string(&file)
                .map_err(|e| CredentialError::Signing(e.to_string()))?;
            write_private(&path, text.as_bytes()).map_err(|e| CredentialError::KeyFile {
                path: path.clone(),
                message: e.to_string(),
            })?;
        }
        Ok(key)
    }

    /// Drops keys whose overlap has ended, from memory and disk.
    fn prune(&self, keys: &mut Vec<Arc<SigningKey>>, now: i64) {
        let verifying = verifying_at(keys, now, self.rotation.overlap);
        keys.retain(|k| {
            let keep = verifying.iter().any(|v| v.kid == k.kid);
            if !keep && let Some(dir) = &self.dir {
                let _ = std::fs::remove_file(dir.join(format!("key-{}.json", k.kid)));
            }
            keep
        });
    }

    /// The key with this id, if it verifies now.
    pub fn verifying(&self, kid: &str) -> Option<Arc<SigningKey>> {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        verifying_at(&keys, self.clock.now(), self.rotation.overlap)
            .into_iter()
            .find(|k| k.kid == kid)
    }

    /// Every key that verifies now, as a JWKS document.
    pub fn jwks(&self) -> serde_json::Value {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        let jwks: Vec<_> = verifying_at(&keys, self.clock.now(), self.rotation.overlap)
            .iter()
            .map(|k| k.jwk())
            .collect();
        serde_json::json!({ "keys": jwks })
    }
}

/// Keys that verify at `now`: the newest, and each older key until its
/// successor is `overlap` seconds old.
fn verifying_at(keys: &[Arc<SigningKey>], now: i64, overlap: i64) -> Vec<Arc<SigningKey>> {
    keys.iter()
        .enumerate()
        .filter(|(i, _)| {
            keys.get(i + 1)
                .is_none_or(|successor| now < successor.created_at.saturating_add(overlap))
        })
        .map(|(_, key)| key.clone())
        .collect()
}

fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}
