//! Signing keys kept in the store, so replicas share them: a writer makes
//! a key when rotation is due, commits it sealed, and every replica (the
//! writer too) opens it and adds it to its key ring when the change is
//! applied. Nothing signs with a key the store does not hold. The journal
//! writes through these steps ([`Journal::keep_keys`],
//! [`Journal::rotate_key_if_due`]).

use std::sync::Arc;
use std::time::Duration;

use super::Journal;
use crate::credential::SigningKeys;
use crate::store::StoreError;
use crate::store::seal::{KeyRecord, Sealer};

/// The key ring a journal fills, and how it opens stored keys.
#[derive(Debug)]
pub(super) struct StoredKeys {
    pub(super) ring: Arc<SigningKeys>,
    pub(super) sealer: Sealer,
}

/// Puts every stored key in `ring`. Keys that do not open with `sealer`
/// are refused: the store holds keys of another deployment.
pub(super) fn open_stored(
    ring: &SigningKeys,
    sealer: &Sealer,
    stored: &[KeyRecord],
) -> Result<(), StoreError> {
    for record in stored {
        let pkcs8 = sealer.open(record)?;
        ring.insert(&pkcs8, record.created_at)
            .map_err(|e| StoreError::Key(e.to_string()))?;
    }
    Ok(())
}

/// A new key, sealed, when the newest in the ring is due for rotation (or
/// there is none).
pub(super) fn plan_rotation(keys: &StoredKeys) -> Result<Option<KeyRecord>, StoreError> {
    if !keys.ring.due() {
        return Ok(None);
    }
    let (kid, pkcs8) = SigningKeys::generate_pkcs8().map_err(|e| StoreError::Key(e.to_string()))?;
    keys.sealer.seal(&kid, keys.ring.now(), &pkcs8).map(Some)
}

/// Adds a committed signing key to the ring, when keys live in the store
/// on this replica (`keys`).
pub(super) fn apply_key(keys: Option<&StoredKeys>, record: &KeyRecord) {
    let Some(keys) = keys else {
        // Keys come from files on this replica; stored ones are not ours
        // to use.
        return;
    };
    let inserted = keys.sealer.open(record).and_then(|pkcs8| {
        keys.ring
            .insert(&pkcs8, record.created_at)
            .map_err(|e| StoreError::Key(e.to_string()))
    });
    match inserted {
        Ok(kid) => tracing::info!(kid = %kid, "signing key added from the store"),
        Err(e) => {
            tracing::error!(kid = %record.kid, error = %e, "a stored signing key cannot be used")
        }
    }
}

/// Rotates the stored signing keys when due, checking every `every`.
pub async fn rotate_keys(journal: Arc<Journal>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        if let Err(e) = journal.rotate_key_if_due().await {
            tracing::warn!(error = %e, "signing key rotation failed; the current key keeps signing");
        }
    }
}
