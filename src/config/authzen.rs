//! The `[authzen]` table of `mandate.toml`: the AuthZEN 1.0 listener (off
//! unless `listen` is set, here or by `--authzen-listen`), the address it
//! publishes, how AuthZEN subject and resource types name Cedar entity
//! types, and the opt-in API keys (`[[authzen.api_keys]]`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::str::FromStr;

use cedar_policy::EntityTypeName;
use serde::Deserialize;

use spiffe::SpiffeId;

use crate::api::authzen::{
    ApiKey, ApiKeys, AuthzenSettings, TypeMap, WORKLOAD_TYPES, parse_sha256,
};

/// The `[authzen]` table.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuthzen {
    /// TLS listen address of the AuthZEN API; off without it.
    pub listen: Option<String>,
    /// The base URL enforcement points reach the listener at, published as
    /// `policy_decision_point` (default `https://` and `listen`).
    pub public_url: Option<String>,
    /// AuthZEN subject type to Cedar entity type (`user` is
    /// `Mandate::User` unless given here).
    pub subject_types: Option<BTreeMap<String, String>>,
    /// AuthZEN resource type to Cedar entity type; a type not listed is
    /// taken as a Cedar type name as written.
    pub resource_types: Option<BTreeMap<String, String>>,
    /// AuthZEN action name to `Mandate::Action` id; a name not listed is
    /// its own id.
    pub actions: Option<BTreeMap<String, String>>,
    /// Keys for enforcement points without an SVID.
    pub api_keys: Option<Vec<RawApiKey>>,
}

/// One `[[authzen.api_keys]]` entry.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApiKey {
    /// SHA-256 of the key, hex (`printf %s KEY | sha256sum`).
    pub sha256: String,
    /// The workload's SPIFFE ID the key stands for.
    pub spiffe_id: String,
}

impl RawAuthzen {
    /// `self` with every unset key taken from `file`.
    pub fn or(self, file: Self) -> Self {
        Self {
            listen: self.listen.or(file.listen),
            public_url: self.public_url.or(file.public_url),
            subject_types: self.subject_types.or(file.subject_types),
            resource_types: self.resource_types.or(file.resource_types),
            actions: self.actions.or(file.actions),
            api_keys: self.api_keys.or(file.api_keys),
        }
    }

    /// The settings, or `None` when AuthZEN is off; problems pushed.
    pub fn resolve(self, problems: &mut Vec<String>) -> Option<AuthzenSettings> {
        let listen = self.listen?;
        let listen: SocketAddr = match listen.parse() {
            Ok(addr) => addr,
            Err(e) => {
                problems.push(format!(
                    "`authzen.listen` `{listen}` is not an address like 127.0.0.1:7445: {e}"
                ));
                return None;
            }
        };
        let public_url = self
            .public_url
            .map(|url| url.trim_end_matches('/').to_owned());
        if let Some(url) = &public_url
            && (!url.starts_with("https://") || url.contains(['?', '#']))
        {
            problems.push(format!(
                "`authzen.public_url` `{url}` must be an https URL without a query or fragment"
            ));
        }
        let mut subjects = BTreeMap::from([("user".to_owned(), "Mandate::User".to_owned())]);
        subjects.extend(self.subject_types.unwrap_or_default());
        for reserved in WORKLOAD_TYPES {
            if subjects.contains_key(*reserved) {
                problems.push(format!(
                    "`authzen.subject_types`: `{reserved}` subjects are workloads by SPIFFE ID and cannot be mapped"
                ));
            }
        }
        let subject_types = type_map("subject_types", subjects, problems);
        let resource_types = type_map(
            "resource_types",
            self.resource_types.unwrap_or_default(),
            problems,
        );
        let api_keys = api_keys(self.api_keys.unwrap_or_default(), problems);
        Some(AuthzenSettings {
            listen,
            public_url,
            types: TypeMap {
                subjects: subject_types,
                resources: resource_types,
                actions: self.actions.unwrap_or_default(),
            },
            api_keys,
        })
    }
}

/// Checks the API keys: a digest each, a workload's SPIFFE ID, no digest
/// twice.
fn api_keys(raw: Vec<RawApiKey>, problems: &mut Vec<String>) -> ApiKeys {
    let mut keys = Vec::new();
    for (i, key) in raw.into_iter().enumerate() {
        let at = format!("`authzen.api_keys[{i}]`");
        let sha256 = parse_sha256(&key.sha256);
        if sha256.is_none() {
            problems.push(format!(
                "{at}: `sha256` must be the 64 hex digits of the key's SHA-256, not the key"
            ));
        }
        let spiffe_id = SpiffeId::new(&key.spiffe_id)
            .ok()
            .filter(|id| !id.path().is_empty());
        if spiffe_id.is_none() {
            problems.push(format!(
                "{at}: `spiffe_id` `{}` is not the SPIFFE ID of a workload",
                key.spiffe_id
            ));
        }
        if let (Some(sha256), Some(spiffe_id)) = (sha256, spiffe_id) {
            if keys.iter().any(|k: &ApiKey| k.sha256 == sha256) {
                problems.push(format!("{at}: the same key is configured twice"));
            }
            keys.push(ApiKey { sha256, spiffe_id });
        }
    }
    ApiKeys::new(keys)
}

/// Parses the Cedar side of a type map.
fn type_map(
    key: &str,
    raw: BTreeMap<String, String>,
    problems: &mut Vec<String>,
) -> BTreeMap<String, EntityTypeName> {
    let mut map = BTreeMap::new();
    for (authzen, cedar) in raw {
        match EntityTypeName::from_str(&cedar) {
            Ok(name) => {
                map.insert(authzen, name);
            }
            Err(e) => problems.push(format!(
                "`authzen.{key}.{authzen}`: `{cedar}` is not a Cedar entity type name: {e}"
            )),
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_without_listen_and_user_by_default() {
        let mut problems = Vec::new();
        assert!(RawAuthzen::default().resolve(&mut problems).is_none());
        let settings = RawAuthzen {
            listen: Some("127.0.0.1:0".into()),
            ..RawAuthzen::default()
        }
        .resolve(&mut problems)
        .unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(settings.types.subjects["user"].to_string(), "Mandate::User");
    }

    #[test]
    fn bad_keys_are_problems() {
        let mut problems = Vec::new();
        let raw = RawAuthzen {
            listen: Some("127.0.0.1:0".into()),
            public_url: Some("http://pdp.example".into()),
            subject_types: Some(BTreeMap::from([
                ("agent".into(), "Todo::User".into()),
                ("person".into(), "not a type".into()),
            ])),
            ..RawAuthzen::default()
        };
        raw.resolve(&mut problems);
        assert_eq!(problems.len(), 3, "{problems:?}");
        let mut problems = Vec::new();
        let keys = RawAuthzen {
            listen: Some("127.0.0.1:0".into()),
            api_keys: Some(vec![
                RawApiKey {
                    sha256: "ab".repeat(32),
                    spiffe_id: "spiffe://mandate.local/workloads/pep".into(),
                },
                RawApiKey {
                    sha256: "ab".repeat(32),
                    spiffe_id: "spiffe://mandate.local/workloads/other".into(),
                },
                RawApiKey {
                    sha256: "s3cret".into(),
                    spiffe_id: "spiffe://mandate.local".into(),
                },
            ]),
            ..RawAuthzen::default()
        };
        let settings = keys.resolve(&mut problems).unwrap();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(!settings.api_keys.is_empty());
        let mut problems = Vec::new();
        let bad = RawAuthzen {
            listen: Some("nowhere".into()),
            ..RawAuthzen::default()
        };
        assert!(bad.resolve(&mut problems).is_none());
        assert!(problems[0].contains("authzen.listen"), "{problems:?}");
    }
}
