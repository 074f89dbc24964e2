//! Signing keys in the store, encrypted: ChaCha20-Poly1305 (`ring::aead`,
//! the AEAD of the crypto library Mandate already uses for TLS) under a
//! 32-byte key that never enters the store. A fresh random nonce per key;
//! the key id is the associated data, so a sealed key cannot be passed
//! off under another id.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use super::StoreError;

/// The environment variable that may hold the sealing key (base64).
pub const KEY_ENV: &str = "MANDATE_STORE_KEY";

/// A signing key as stored: its id, when it was made, and its PKCS#8
/// document sealed (base64 of nonce then ciphertext and tag).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// Key id.
    pub kid: String,
    /// Made, Unix seconds.
    pub created_at: i64,
    /// Nonce, ciphertext and tag, base64.
    pub sealed: String,
}

/// Seals and opens signing keys.
pub struct Sealer {
    key: LessSafeKey,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    /// A sealer from 32 bytes, given as base64 text (a file's content or
    /// the environment variable).
    pub fn from_base64(text: &str) -> Result<Self, StoreError> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|e| StoreError::Key(format!("the sealing key is not base64: {e}")))?;
        let key = UnboundKey::new(&CHACHA20_POLY1305, &bytes).map_err(|_| {
            StoreError::Key(format!(
                "the sealing key must be 32 bytes, not `{}`",
                bytes.len()
            ))
        })?;
        Ok(Self {
            key: LessSafeKey::new(key),
        })
    }

    /// The sealer named by config: the key file, else [`KEY_ENV`]; `None`
    /// when neither is set (signing keys then stay in files).
    pub fn configured(file: Option<&Path>) -> Result<Option<Self>, StoreError> {
        if let Some(file) = file {
            let text = std::fs::read_to_string(file)
                .map_err(|e| StoreError::Key(format!("cannot read `{}`: {e}", file.display())))?;
            return Self::from_base64(&text).map(Some);
        }
        match std::env::var(KEY_ENV) {
            Ok(text) => Self::from_base64(&text).map(Some),
            Err(_) => Ok(None),
        }
    }

    /// Seals `pkcs8` for `kid`.
    pub fn seal(&self, kid: &str, created_at: i64, pkcs8: &[u8]) -> Result<KeyRecord, StoreError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| StoreError::Key("no randomness for a nonce".to_owned()))?;
        let mut sealed = pkcs8.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(kid.as_bytes()),
                &mut sealed,
            )
            .map_err(|_| StoreError::Key(format!("cannot seal key `{kid}`")))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(KeyRecord {
            kid: kid.to_owned(),
            created_at,
            sealed: STANDARD.encode(out),
        })
    }

    /// The PKCS#8 document of `record`; fails for another sealing key or a
    /// record altered in the store.
    pub fn open(&self, record: &KeyRecord) -> Result<Vec<u8>, StoreError> {
        let fail = || {
            StoreError::Key(format!(
                "cannot open signing key `{}`: wrong sealing key or altered record",
                record.kid
            ))
        };
        let bytes = STANDARD.decode(&record.sealed).map_err(|_| fail())?;
        let (nonce, sealed) = bytes.split_at_checked(NONCE_LEN).ok_or_else(fail)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| fail())?;
        let mut sealed = sealed.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(record.kid.as_bytes()), &mut sealed)
            .map_err(|_| fail())?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer(byte: u8) -> Sealer {
        Sealer::from_base64(&STANDARD.encode([byte; 32])).unwrap()
    }

    #[test]
    fn a_sealed_key_opens_only_with_its_sealing_key_and_id() {
        let record = sealer(1).seal("kid-1", 7, b"secret pkcs8").unwrap();
        assert!(!record.sealed.contains("secret"));
        assert_eq!(sealer(1).open(&record).unwrap(), b"secret pkcs8");
        assert!(sealer(2).open(&record).is_err());
        let renamed = KeyRecord {
            kid: "kid-2".into(),
            ..record
        };
        assert!(sealer(1).open(&renamed).is_err());
    }

    #[test]
    fn a_short_key_is_refused() {
        assert!(Sealer::from_base64(&STANDARD.encode([1u8; 16])).is_err());
        assert!(Sealer::from_base64("not base64!").is_err());
    }
}
