//! `[identity]`: which source our SVID comes from, where its material is,
//! how often it is checked, which trust domains are accepted, and which
//! SPIFFE IDs are agents.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use spiffe::TrustDomain;

use super::ConfigErrors;
use super::reference::{Section, example, key};
use crate::decision::DEFAULT_AGENT_PATH_PREFIXES;
use crate::identity::{
    DEFAULT_STARTUP_TIMEOUT, DEFAULT_WITHDRAWAL_GRACE, FilesSource, FollowOptions, IdentitySource,
    TrustPolicy, WorkloadApiSource,
};

/// The identity source kinds, as `identity.source` names them.
const KINDS: &str = "`files`, `workload-api` or `dev`";

/// The trust domain of the dev identity when nothing says otherwise; the
/// dev and policy commands' default too.
pub const DEV_TRUST_DOMAIN: &str = "mandate.local";

/// The `[identity]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdentityConfig {
    /// `files`, `workload-api` or `dev`; `None`: chosen from the keys set.
    pub source: Option<String>,
    /// The SPIRE agent's Workload API socket (`unix:///path`).
    pub workload_api_socket: Option<String>,
    /// How long start-up waits for a first SVID from the workload API, s.
    pub workload_api_timeout_secs: u64,
    /// How often SVID and bundle files are checked, ms; 0 turns it off.
    pub poll_ms: u64,
    /// Trust domains whose callers are accepted (given a bundle); `None`:
    /// only our own.
    pub trusted_trust_domains: Option<Vec<String>>,
    /// Revoke a trust domain's agents' tasks when its bundle is withdrawn.
    pub revoke_on_trust_withdrawal: bool,
    /// How long a withdrawn bundle must stay away before tasks are revoked, s.
    pub withdrawal_grace_secs: u64,
    /// Our SVID chain (PEM).
    pub svid_cert: Option<PathBuf>,
    /// Our SVID key (PEM).
    pub svid_key: Option<PathBuf>,
    /// Trust domain to bundle file (the files source).
    pub trust_bundles: BTreeMap<String, PathBuf>,
    /// Trust domain of the dev identity.
    pub dev_trust_domain: String,
    /// SPIFFE ID path prefixes that denote agents.
    pub agent_path_prefixes: Vec<String>,
    /// Trust domains the prefixes apply to; `None`: our own.
    pub agent_trust_domains: Option<Vec<String>>,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            source: None,
            workload_api_socket: None,
            workload_api_timeout_secs: DEFAULT_STARTUP_TIMEOUT.as_secs(),
            poll_ms: 1000,
            trusted_trust_domains: None,
            revoke_on_trust_withdrawal: true,
            withdrawal_grace_secs: DEFAULT_WITHDRAWAL_GRACE.as_secs(),
            svid_cert: None,
            svid_key: None,
            trust_bundles: BTreeMap::new(),
            dev_trust_domain: DEV_TRUST_DOMAIN.to_owned(),
            agent_path_prefixes: DEFAULT_AGENT_PATH_PREFIXES
                .iter()
                .map(|p| (*p).to_owned())
                .collect(),
            agent_trust_domains: None,
        }
    }
}

/// `[identity]` checked.
pub(super) struct Identity {
    pub source: IdentitySource,
    pub follow: FollowOptions,
    pub agent_trust_domains: Option<Vec<TrustDomain>>,
}

impl IdentityConfig {
    /// The source and how it is followed; `env_socket` is
    /// `SPIFFE_ENDPOINT_SOCKET`, used when no socket is configured.
    pub(super) fn validate(
        &self,
        data_dir: &Path,
        env_socket: Option<String>,
        errors: &mut ConfigErrors,
    ) -> Option<Identity> {
        let follow = FollowOptions {
            trust: self.trust_policy(errors),
            poll: (self.poll_ms > 0).then(|| Duration::from_millis(self.poll_ms)),
            withdrawal_grace: Duration::from_secs(self.withdrawal_grace_secs),
            ..FollowOptions::default()
        };
        for prefix in &self.agent_path_prefixes {
            if !prefix.starts_with('/') {
                errors.bad(
                    "identity.agent_path_prefixes",
                    prefix,
                    "must start with `/`",
                );
            }
        }
        let agent_trust_domains = self.agent_trust_domains.as_ref().map(|names| {
            names
                .iter()
                .filter_map(|name| trust_domain("identity.agent_trust_domains", name, errors))
                .collect::<Vec<_>>()
        });
        let has_svid = self.svid_cert.is_some() || self.svid_key.is_some();
        let kind = match self.source.as_deref() {
            Some(kind) => kind,
            None if has_svid => "files",
            None if self.workload_api_socket.is_some() => "workload-api",
            None => {
                // The SPIFFE convention would have us use the agent: say why we
                // do not, rather than start a dev CA silently.
                if let Some(socket) = &env_socket {
                    tracing::warn!(%socket, "SPIFFE_ENDPOINT_SOCKET is set but no identity source is configured: using the dev trust domain; set `identity.source = \"workload-api\"` (or `--identity workload-api`) to use the agent");
                }
                "dev"
            }
        };
        if kind != "workload-api" && self.workload_api_socket.is_some() {
            errors.key(
                "identity.workload_api_socket",
                format!("is set but `identity.source` is `{kind}`"),
            );
        }
        let source = match kind {
            "files" => self.files(errors),
            "workload-api" => self.workload_api(env_socket, errors),
            "dev" => self.dev(data_dir, errors),
            other => {
                errors.bad("identity.source", other, format!("is not one of {KINDS}"));
                None
            }
        };
        Some(Identity {
            source: source?,
            follow,
            agent_trust_domains,
        })
    }

    fn trust_policy(&self, errors: &mut ConfigErrors) -> TrustPolicy {
        let Some(names) = &self.trusted_trust_domains else {
            return TrustPolicy::own_only();
        };
        if names.is_empty() {
            errors.key(
                "identity.trusted_trust_domains",
                "is empty, which would refuse every caller; leave it out to trust only our own trust domain",
            );
        }
        TrustPolicy::allow(
            names
                .iter()
                .filter_map(|name| trust_domain("identity.trusted_trust_domains", name, errors)),
        )
    }

    fn files(&self, errors: &mut ConfigErrors) -> Option<IdentitySource> {
        let mut bundles = Vec::new();
        for (name, path) in &self.trust_bundles {
            let key = format!("identity.trust_bundles.\"{name}\"");
            if let Some(td) = trust_domain(&key, name, errors) {
                bundles.push((td, path.clone()));
            }
            errors.file(&key, path);
        }
        let (Some(cert), Some(key)) = (&self.svid_cert, &self.svid_key) else {
            errors.key(
                "identity.svid_cert",
                "and `identity.svid_key` must be given together",
            );
            return None;
        };
        errors.file("identity.svid_cert", cert);
        errors.file("identity.svid_key", key);
        if self.trust_bundles.is_empty() {
            errors.key(
                "identity.trust_bundles",
                "needs at least one trust domain and its bundle (`--trust-bundle TRUST_DOMAIN=FILE`) to verify callers",
            );
        }
        Some(IdentitySource::Files(FilesSource {
            svid_cert: cert.clone(),
            svid_key: key.clone(),
            bundles,
        }))
    }

    fn workload_api(
        &self,
        env_socket: Option<String>,
        errors: &mut ConfigErrors,
    ) -> Option<IdentitySource> {
        if self.svid_cert.is_some() || self.svid_key.is_some() || !self.trust_bundles.is_empty() {
            errors.key(
                "identity.source",
                "is `workload-api`, which brings its own SVID and bundles: leave out `identity.svid_cert`, `identity.svid_key` and `identity.trust_bundles`",
            );
        }
        errors.at_least_one(
            "identity.workload_api_timeout_secs",
            self.workload_api_timeout_secs,
        );
        let Some(socket) = self.workload_api_socket.clone().or(env_socket) else {
            errors.key(
                "identity.workload_api_socket",
                "is needed by the workload-api source (or SPIFFE_ENDPOINT_SOCKET)",
            );
            return None;
        };
        match WorkloadApiSource::parse_endpoint(&socket) {
            Ok(endpoint) => Some(IdentitySource::WorkloadApi(WorkloadApiSource {
                startup_timeout: Duration::from_secs(self.workload_api_timeout_secs),
                ..WorkloadApiSource::new(endpoint)
            })),
            Err(e) => {
                errors.key(
                    "identity.workload_api_socket",
                    format!("{e}; give a socket like `unix:///run/spire/agent.sock`"),
                );
                None
            }
        }
    }

    fn dev(&self, data_dir: &Path, errors: &mut ConfigErrors) -> Option<IdentitySource> {
        if self.svid_cert.is_some() || self.svid_key.is_some() {
            errors.key(
                "identity.svid_cert",
                "and `identity.svid_key` are for the files source (`identity.source = \"files\"`)",
            );
        }
        if !self.trust_bundles.is_empty() {
            errors.key(
                "identity.trust_bundles",
                "is set but no SVID: give `identity.svid_cert` and `identity.svid_key` too",
            );
        }
        let trust_domain =
            trust_domain("identity.dev_trust_domain", &self.dev_trust_domain, errors)?;
        Some(IdentitySource::Dev {
            dir: data_dir.join("dev"),
            trust_domain,
        })
    }
}

fn trust_domain(key: &str, name: &str, errors: &mut ConfigErrors) -> Option<TrustDomain> {
    TrustDomain::new(name)
        .map_err(|e| errors.bad(key, name, format!("is not a trust domain name: {e}")))
        .ok()
}

pub(super) const SECTION: Section = Section {
    name: "identity",
    doc: "Our identity and whom we trust (docs/spire.md).",
    optional: false,
    keys: &[
        example(
            "source",
            "Where our SVID comes from: \"files\" (svid_cert, svid_key, trust_bundles),\n\"workload-api\" (a SPIRE agent; examples/spire/) or \"dev\". Default: files\nwhen svid_cert is set, workload-api when workload_api_socket is set, else\ndev: a dev trust domain created under server.data_dir/dev on first start.",
            "\"workload-api\"",
        ),
        example(
            "workload_api_socket",
            "The SPIRE agent's socket, unix:// only (default: $SPIFFE_ENDPOINT_SOCKET,\nwhich alone does not select workload-api).",
            "\"unix:///run/spire/sockets/agent.sock\"",
        ),
        key(
            "workload_api_timeout_secs",
            "Start-up waits this long for a first SVID it can serve.",
        ),
        key(
            "poll_ms",
            "SVID and bundle files are reloaded when they change, checked this often\n(0: never). A bad file keeps the previous material and shows in /readyz.",
        ),
        example(
            "trusted_trust_domains",
            "Trust domains whose callers are accepted, given a bundle for them\n(default: only our own).",
            "[\"acme.org\", \"partner.example\"]",
        ),
        key(
            "revoke_on_trust_withdrawal",
            "When a federated trust domain's bundle disappears (workload-api only),\nrevoke its agents' active tasks...",
        ),
        key(
            "withdrawal_grace_secs",
            "... once it has stayed away this long (its callers are refused at once).",
        ),
        example(
            "svid_cert",
            "Our X.509-SVID chain, PEM, leaf first.",
            "\"/run/spiffe/svid.pem\"",
        ),
        example(
            "svid_key",
            "Its private key, PEM.",
            "\"/run/spiffe/svid.key\"",
        ),
        example(
            "trust_bundles",
            "The files source's bundles, one PEM file per trust domain.",
            "{ \"acme.org\" = \"/run/spiffe/bundle.pem\" }",
        ),
        key("dev_trust_domain", "The trust domain of the dev identity."),
        key(
            "agent_path_prefixes",
            "SPIFFE ID path prefixes that make a caller a Mandate::Agent.",
        ),
        example(
            "agent_trust_domains",
            "Trust domains the prefixes apply to (default: our own); other IDs are\nagents only when registered as such in the catalog.",
            "[\"mandate.local\"]",
        ),
    ],
};

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve_raw(raw: IdentityConfig, env: Option<&str>) -> Result<IdentitySource, ConfigErrors> {
        let mut errors = ConfigErrors::default();
        let resolved = raw.validate(Path::new("/data"), env.map(str::to_owned), &mut errors);
        match resolved {
            Some(identity) if errors.is_empty() => Ok(identity.source),
            _ => Err(errors),
        }
    }

    #[test]
    fn the_socket_comes_from_the_config_then_the_environment() {
        let raw = IdentityConfig {
            source: Some("workload-api".into()),
            ..IdentityConfig::default()
        };
        let Ok(IdentitySource::WorkloadApi(api)) =
            resolve_raw(raw.clone(), Some("unix:///env/agent.sock"))
        else {
            panic!("expected the workload API source");
        };
        assert_eq!(api.endpoint, "unix:///env/agent.sock");
        let configured = IdentityConfig {
            workload_api_socket: Some("/conf/agent.sock".into()),
            ..raw.clone()
        };
        let Ok(IdentitySource::WorkloadApi(api)) =
            resolve_raw(configured, Some("unix:///env/agent.sock"))
        else {
            panic!("expected the workload API source");
        };
        assert_eq!(api.endpoint, "unix:///conf/agent.sock");
        let errors = resolve_raw(raw, None).unwrap_err();
        assert!(
            errors.lines()[0].contains("SPIFFE_ENDPOINT_SOCKET"),
            "{errors}"
        );
    }

    #[test]
    fn a_socket_alone_selects_the_workload_api() {
        let raw = IdentityConfig {
            workload_api_socket: Some("unix:///run/agent.sock".into()),
            ..IdentityConfig::default()
        };
        assert!(matches!(
            resolve_raw(raw, None),
            Ok(IdentitySource::WorkloadApi(_))
        ));
    }

    #[test]
    fn mixed_and_unknown_sources_are_refused() {
        let cases = [
            IdentityConfig {
                source: Some("workload-api".into()),
                workload_api_socket: Some("/run/agent.sock".into()),
                svid_cert: Some("/a.pem".into()),
                ..IdentityConfig::default()
            },
            IdentityConfig {
                source: Some("spire".into()),
                ..IdentityConfig::default()
            },
            IdentityConfig {
                source: Some("dev".into()),
                workload_api_socket: Some("/run/agent.sock".into()),
                ..IdentityConfig::default()
            },
            IdentityConfig {
                source: Some("workload-api".into()),
                workload_api_socket: Some("agent.sock".into()),
                ..IdentityConfig::default()
            },
            // Plaintext and unauthenticated: refused.
            IdentityConfig {
                source: Some("workload-api".into()),
                workload_api_socket: Some("tcp://127.0.0.1:8081".into()),
                ..IdentityConfig::default()
            },
            IdentityConfig {
                trusted_trust_domains: Some(vec![]),
                ..IdentityConfig::default()
            },
            IdentityConfig {
                trusted_trust_domains: Some(vec!["Not A Domain".into()]),
                ..IdentityConfig::default()
            },
            IdentityConfig {
                agent_path_prefixes: vec!["agents/".into()],
                ..IdentityConfig::default()
            },
        ];
        for raw in cases {
            let description = format!("{raw:?}");
            let errors = resolve_raw(raw, None).unwrap_err();
            for line in errors.lines() {
                assert!(line.starts_with("`identity."), "{description}: {line}");
            }
        }
    }

    #[test]
    fn the_allow_list_defaults_to_our_own_trust_domain() {
        let mut errors = ConfigErrors::default();
        let identity = IdentityConfig::default()
            .validate(Path::new("/d"), None, &mut errors)
            .expect("dev identity");
        assert_eq!(identity.follow.trust, TrustPolicy::own_only());
        let raw = IdentityConfig {
            trusted_trust_domains: Some(vec!["example.org".into(), "partner.example".into()]),
            ..IdentityConfig::default()
        };
        let identity = raw
            .validate(Path::new("/d"), None, &mut errors)
            .expect("dev");
        assert_eq!(
            identity.follow.trust.allowed().map(<[TrustDomain]>::len),
            Some(2),
            "{errors}"
        );
    }

    #[test]
    fn the_spire_example_config_resolves() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut config =
            super::super::Config::from_file(&root.join("examples/spire/mandate.toml")).unwrap();
        config.policies.dir = root.join("policies");
        config.policies.schema = root.join("schemas/mandate.cedarschema");
        let settings = config.validate_with_env(None).unwrap();
        let IdentitySource::WorkloadApi(api) = &settings.identity else {
            panic!("expected the workload API source");
        };
        assert_eq!(api.endpoint, "unix:///run/spire/sockets/agent.sock");
        let allowed = settings.identity_follow.trust.allowed().unwrap_or_default();
        assert_eq!(allowed.len(), 2);
        crate::registry::Catalog::load(&root.join("examples/spire/catalog.toml"))
            .unwrap()
            .into_entries()
            .unwrap();
    }
}
