//! Opt-in API keys (`[[authzen.api_keys]]`) for enforcement points that
//! have no SVID: each key stands for one workload's SPIFFE ID, and policy
//! decides what that workload may ask, as for any caller. Only the
//! SHA-256 of a key is configured, so the configuration holds no secret.

use std::collections::HashMap;

use sha2::{Digest, Sha256};
use spiffe::SpiffeId;

/// One configured key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// SHA-256 of the key.
    pub sha256: [u8; 32],
    /// The workload the key stands for.
    pub spiffe_id: SpiffeId,
}

/// The configured keys, by digest.
#[derive(Debug, Clone, Default)]
pub struct ApiKeys(HashMap<[u8; 32], SpiffeId>);

impl ApiKeys {
    /// The keys; a digest given twice keeps the last.
    pub fn new(keys: impl IntoIterator<Item = ApiKey>) -> Self {
        Self(keys.into_iter().map(|k| (k.sha256, k.spiffe_id)).collect())
    }

    /// Whether any key is configured (then client certificates are
    /// optional on the listener).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The workload an `Authorization` header's key stands for: the value
    /// is `Bearer <key>` or the key alone.
    // Compared by digest: what a timing difference could reveal is about
    // the SHA-256 of a key, not the key.
    pub fn caller(&self, authorization: &str) -> Result<&SpiffeId, String> {
        let value = authorization.trim();
        let key = match value.split_once(' ') {
            Some((scheme, key)) if scheme.eq_ignore_ascii_case("bearer") => key.trim(),
            _ => value,
        };
        if key.is_empty() {
            return Err("the `Authorization` header carries no API key".to_owned());
        }
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        self.0
            .get(&digest)
            .ok_or_else(|| "the API key is not one of `authzen.api_keys`".to_owned())
    }
}

/// Parses a configured digest: 64 hex digits.
pub fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(hex.as_bytes().chunks(2)) {
        let text = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> ApiKeys {
        let digest = Sha256::digest(b"s3cret");
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        ApiKeys::new([ApiKey {
            sha256: parse_sha256(&hex).unwrap(),
            spiffe_id: SpiffeId::new("spiffe://mandate.local/workloads/pep").unwrap(),
        }])
    }

    #[test]
    fn a_key_stands_for_its_workload_with_or_without_bearer() {
        let keys = keys();
        for header in ["Bearer s3cret", "bearer  s3cret", "s3cret"] {
            assert_eq!(
                keys.caller(header).unwrap().path(),
                "/workloads/pep",
                "{header}"
            );
        }
        assert!(keys.caller("Bearer other").is_err());
        assert!(keys.caller("Bearer ").is_err());
        assert!(keys.caller("").is_err());
    }

    #[test]
    fn digests_are_64_hex_digits() {
        assert!(parse_sha256(&"ab".repeat(32)).is_some());
        assert!(parse_sha256(&"ab".repeat(31)).is_none());
        assert!(parse_sha256(&"zz".repeat(32)).is_none());
    }
}
