//! The `[authzen]` table of `mandate.toml`: the AuthZEN 1.0 listener (off
//! unless `listen` is set, here or by `--authzen-listen`), the address it
//! publishes, how AuthZEN subject and resource types name Cedar entity
//! types, and the opt-in API keys (`[[authzen.api_keys]]`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::str::FromStr;

use cedar_policy::EntityTypeName;
use serde::{Deserialize, Serialize};

use spiffe::SpiffeId;

use super::ConfigErrors;
use super::reference::{Section, example};

use crate::api::authzen::{
    ApiKey, ApiKeys, AuthzenSettings, TypeMap, WORKLOAD_TYPES, parse_sha256,
};

/// The `[authzen]` section.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthzenConfig {
    /// TLS listen address of the AuthZEN API; off without it.
    pub listen: Option<String>,
    /// The base URL enforcement points reach the listener at, published as
    /// `policy_decision_point` (default `https://` and `listen`).
    pub public_url: Option<String>,
    /// AuthZEN subject type to Cedar entity type (`user` is
    /// `Mandate::User` unless given here).
    pub subject_types: BTreeMap<String, String>,
    /// AuthZEN resource type to Cedar entity type; a type not listed is
    /// taken as a Cedar type name as written.
    pub resource_types: BTreeMap<String, String>,
    /// AuthZEN action name to `Mandate::Action` id; a name not listed is
    /// its own id.
    pub actions: BTreeMap<String, String>,
    /// Keys for enforcement points without an SVID.
    pub api_keys: Vec<ApiKeyConfig>,
}

/// One `[[authzen.api_keys]]` entry.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// SHA-256 of the key, hex (`printf %s KEY | sha256sum`).
    pub sha256: String,
    /// The workload's SPIFFE ID the key stands for.
    pub spiffe_id: String,
}

impl AuthzenConfig {
    /// The settings, or `None` when AuthZEN is off.
    pub(super) fn validate(&self, problems: &mut ConfigErrors) -> Option<AuthzenSettings> {
        let listen = self.listen.as_deref()?;
        let listen: SocketAddr = match listen.parse() {
            Ok(addr) => addr,
            Err(e) => {
                problems.bad(
                    "authzen.listen",
                    listen,
                    format!("is not an address like 127.0.0.1:7445: {e}"),
                );
                return None;
            }
        };
        let public_url = self
            .public_url
            .as_ref()
            .map(|url| url.trim_end_matches('/').to_owned());
        if let Some(url) = &public_url
            && (!url.starts_with("https://") || url.contains(['?', '#']))
        {
            problems.bad(
                "authzen.public_url",
                url,
                "must be an https URL without a query or fragment",
            );
        }
        let mut subjects = BTreeMap::from([("user".to_owned(), "Mandate::User".to_owned())]);
        subjects.extend(self.subject_types.clone());
        for reserved in WORKLOAD_TYPES {
            if subjects.contains_key(*reserved) {
                problems.key(
                    format!("authzen.subject_types.{reserved}"),
                    format!("cannot be mapped: `{reserved}` subjects are workloads by SPIFFE ID"),
                );
            }
        }
        let subject_types = type_map("subject_types", subjects, problems);
        let resource_types = type_map("resource_types", self.resource_types.clone(), problems);
        let api_keys = api_keys(&self.api_keys, problems);
        Some(AuthzenSettings {
            listen,
            public_url,
            types: TypeMap {
                subjects: subject_types,
                resources: resource_types,
                actions: self.actions.clone(),
            },
            api_keys,
        })
    }
}

/// Checks the API keys: a digest each, a workload's SPIFFE ID, no digest
/// twice.
fn api_keys(raw: &[ApiKeyConfig], problems: &mut ConfigErrors) -> ApiKeys {
    let mut keys = Vec::new();
    for (i, key) in raw.iter().enumerate() {
        let at = format!("authzen.api_keys[{i}]");
        let sha256 = parse_sha256(&key.sha256);
        if sha256.is_none() {
            problems.key(
                format!("{at}.sha256"),
                "must be the 64 hex digits of the key's SHA-256, not the key",
            );
        }
        let spiffe_id = SpiffeId::new(&key.spiffe_id)
            .ok()
            .filter(|id| !id.path().is_empty());
        if spiffe_id.is_none() {
            problems.bad(
                format!("{at}.spiffe_id"),
                &key.spiffe_id,
                "is not the SPIFFE ID of a workload",
            );
        }
        if let (Some(sha256), Some(spiffe_id)) = (sha256, spiffe_id) {
            if keys.iter().any(|k: &ApiKey| k.sha256 == sha256) {
                problems.key(
                    format!("{at}.sha256"),
                    "is the same key as an earlier entry's",
                );
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
    problems: &mut ConfigErrors,
) -> BTreeMap<String, EntityTypeName> {
    let mut map = BTreeMap::new();
    for (authzen, cedar) in raw {
        match EntityTypeName::from_str(&cedar) {
            Ok(name) => {
                map.insert(authzen, name);
            }
            Err(e) => problems.bad(
                format!("authzen.{key}.{authzen}"),
                &cedar,
                format!("is not a Cedar entity type name: {e}"),
            ),
        }
    }
    map
}

pub(super) const SECTION: Section = Section {
    name: "authzen",
    doc: "The AuthZEN 1.0 API (OpenID Authorization API, HTTPS JSON; docs/authzen.md):\na TLS listener of its own with the gRPC port's SPIFFE client-certificate\nverification, off unless `listen` is set (or `--authzen-listen`). The caller\nis an enforcement point: it must be allowed `check` for each subject.",
    optional: false,
    keys: &[
        example(
            "listen",
            "The API's TLS listen address.",
            "\"127.0.0.1:7445\"",
        ),
        example(
            "public_url",
            "The base URL published in /.well-known/authzen-configuration (default:\nhttps:// and the bound address).",
            "\"https://pdp.internal:7445\"",
        ),
        example(
            "subject_types",
            "`agent` and `workload` subjects are SPIFFE IDs; other subject types name\nentity types of the schema (`user` is Mandate::User unless set here).",
            "{ user = \"Mandate::User\", identity = \"Acme::Employee\" }",
        ),
        example(
            "resource_types",
            "Resource types; a type not listed is taken as a Cedar type name as written.",
            "{ document = \"Acme::Document\" }",
        ),
        example(
            "actions",
            "Action names to Mandate::Action ids, where a name collides with one of\nMandate's own; a name not listed is the action's id.",
            "{ delete = \"delete_document\" }",
        ),
        example(
            "api_keys",
            "For enforcement points without an SVID: API keys, each standing for a\nworkload's SPIFFE ID. Give the SHA-256 of the key (`printf %s KEY |\nsha256sum`), never the key; callers send `Authorization: Bearer KEY`. With\nany key, client certificates are optional on this listener.",
            "[{ sha256 = \"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\", spiffe_id = \"spiffe://mandate.local/workloads/todo-backend\" }]",
        ),
    ],
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_without_listen_and_user_by_default() {
        let mut problems = ConfigErrors::default();
        assert!(AuthzenConfig::default().validate(&mut problems).is_none());
        let settings = AuthzenConfig {
            listen: Some("127.0.0.1:0".into()),
            ..AuthzenConfig::default()
        }
        .validate(&mut problems)
        .unwrap();
        assert!(problems.is_empty(), "{problems}");
        assert_eq!(settings.types.subjects["user"].to_string(), "Mandate::User");
    }

    #[test]
    fn bad_keys_are_problems() {
        let mut problems = ConfigErrors::default();
        let raw = AuthzenConfig {
            listen: Some("127.0.0.1:0".into()),
            public_url: Some("http://pdp.example".into()),
            subject_types: BTreeMap::from([
                ("agent".into(), "Todo::User".into()),
                ("person".into(), "not a type".into()),
            ]),
            ..AuthzenConfig::default()
        };
        raw.validate(&mut problems);
        assert_eq!(problems.0.len(), 3, "{problems}");
        let mut problems = ConfigErrors::default();
        let keys = AuthzenConfig {
            listen: Some("127.0.0.1:0".into()),
            api_keys: vec![
                ApiKeyConfig {
                    sha256: "ab".repeat(32),
                    spiffe_id: "spiffe://mandate.local/workloads/pep".into(),
                },
                ApiKeyConfig {
                    sha256: "ab".repeat(32),
                    spiffe_id: "spiffe://mandate.local/workloads/other".into(),
                },
                ApiKeyConfig {
                    sha256: "s3cret".into(),
                    spiffe_id: "spiffe://mandate.local".into(),
                },
            ],
            ..AuthzenConfig::default()
        };
        let settings = keys.validate(&mut problems).unwrap();
        assert_eq!(problems.0.len(), 3, "{problems}");
        assert!(!settings.api_keys.is_empty());
        let mut problems = ConfigErrors::default();
        let bad = AuthzenConfig {
            listen: Some("nowhere".into()),
            ..AuthzenConfig::default()
        };
        assert!(bad.validate(&mut problems).is_none());
        assert!(problems.lines()[0].contains("authzen.listen"), "{problems}");
    }
}
