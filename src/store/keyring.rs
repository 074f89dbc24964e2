//! Signing keys kept in the store, so replicas share them: a writer makes
//! a key when rotation is due, commits it sealed, and every replica (the
//! writer too) opens it and adds it to its key ring when the change is
//! applied. Nothing signs with a key the store does not hold.

use std::sync::Arc;
use std::time::Duration;

use super::seal::{KeyRecord, Sealer, StoredKeys};
use super::{Change, Journal, StoreError};
use crate::credential::SigningKeys;

impl Journal {
    /// Keeps signing keys in the store: `ring` (made with
    /// [`SigningKeys::from_store`]) gets every stored key now and every new
    /// one as it is committed. Keys that do not open with `sealer` are
    /// refused: the store holds keys of another deployment.
    pub fn keep_keys(
        &self,
        ring: Arc<SigningKeys>,
        sealer: Sealer,
        stored: &[KeyRecord],
    ) -> Result<(), StoreError> {
        for record in stored {
            let pkcs8 = sealer.open(record)?;
            ring.insert(&pkcs8, record.created_at)
                .map_err(|e| StoreError::Key(e.to_string()))?;
        }
        self.keys
            .set(StoredKeys { ring, sealer })
            .map_err(|_| StoreError::Key("signing keys are already kept".to_owned()))
    }

    /// Makes, seals and commits a new signing key when the newest is due
    /// for rotation (or there is none); returns whether it did. Another
    /// replica may have rotated meanwhile: the plan runs after catching
    /// up, so one rotation is enough.
    pub async fn rotate_key_if_due(&self) -> Result<bool, StoreError> {
        let Some(keys) = self.keys.get() else {
            return Ok(false);
        };
        // Whether this call rotated: the revision may also move when the
        // write catches up with other replicas' changes.
        let (rotated, _) = self
            .write(|| -> Result<_, StoreError> {
                if !keys.ring.due() {
                    return Ok((None, false));
                }
                let (kid, pkcs8) =
                    SigningKeys::generate_pkcs8().map_err(|e| StoreError::Key(e.to_string()))?;
                let record = keys.sealer.seal(&kid, keys.ring.now(), &pkcs8)?;
                Ok((Some(Change::SigningKey(record)), true))
            })
            .await?;
        Ok(rotated)
    }
}

impl super::journal::JournalState {
    /// Adds a committed signing key to the ring, when keys live in the
    /// store on this replica.
    pub(super) fn apply_key(&self, record: &KeyRecord) {
        let Some(keys) = self.keys.get() else {
            // Keys come from files on this replica; stored ones are not
            // ours to use.
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
