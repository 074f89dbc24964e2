//! The identity keys: which source our SVID comes from, where its material
//! is, how often it is checked, and which trust domains are accepted.

use std::path::Path;
use std::time::Duration;

use spiffe::TrustDomain;

use super::{RawConfig, defaults};
use crate::identity::{FilesSource, FollowOptions, IdentitySource, TrustPolicy, WorkloadApiSource};

/// The identity source kinds, as `identity` names them.
const KINDS: &str = "`files`, `workload-api` or `dev`";

/// Resolves the identity keys; `env_socket` is `SPIFFE_ENDPOINT_SOCKET`,
/// used when no socket is configured.
pub(super) fn resolve(
    raw: &RawConfig,
    data_dir: &Path,
    env_socket: Option<String>,
    problems: &mut Vec<String>,
) -> Option<(IdentitySource, FollowOptions)> {
    let follow = FollowOptions {
        trust: trust_policy(raw, problems),
        poll: match raw.identity_poll_ms.unwrap_or(defaults::IDENTITY_POLL_MS) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        },
        withdrawal_grace: Duration::from_secs(
            raw.withdrawal_grace_secs
                .unwrap_or(defaults::WITHDRAWAL_GRACE_SECS),
        ),
        ..FollowOptions::default()
    };
    let has_svid = raw.svid_cert.is_some() || raw.svid_key.is_some();
    let kind = match raw.identity.as_deref() {
        Some(kind) => kind,
        None if has_svid => "files",
        None if raw.workload_api_socket.is_some() => "workload-api",
        None => {
            // The SPIFFE convention would have us use the agent: say why we
            // do not, rather than start a dev CA silently.
            if let Some(socket) = &env_socket {
                tracing::warn!(%socket, "SPIFFE_ENDPOINT_SOCKET is set but no identity source is configured: using the dev trust domain; pass `--identity workload-api` to use the agent");
            }
            "dev"
        }
    };
    if kind != "workload-api" && raw.workload_api_socket.is_some() {
        problems.push(format!(
            "`workload-api-socket` is set but the identity source is `{kind}`"
        ));
    }
    let source = match kind {
        "files" => files(raw, problems),
        "workload-api" => workload_api(raw, env_socket, problems),
        "dev" => dev(raw, data_dir, problems),
        other => {
            problems.push(format!("`identity` `{other}` is not one of {KINDS}"));
            None
        }
    };
    source.map(|source| (source, follow))
}

fn trust_policy(raw: &RawConfig, problems: &mut Vec<String>) -> TrustPolicy {
    let Some(names) = &raw.trusted_trust_domains else {
        return TrustPolicy::own_only();
    };
    if names.is_empty() {
        problems.push(
            "`trusted_trust_domains` is empty, which would refuse every caller; leave it out to trust only our own trust domain"
                .to_owned(),
        );
    }
    TrustPolicy::allow(names.iter().filter_map(|name| {
        TrustDomain::new(name)
            .map_err(|e| {
                problems.push(format!(
                    "trusted trust domain `{name}` is not a trust domain name: {e}"
                ));
            })
            .ok()
    }))
}

fn files(raw: &RawConfig, problems: &mut Vec<String>) -> Option<IdentitySource> {
    let bundles = raw.trust_bundles.clone().unwrap_or_default();
    let mut parsed_bundles = Vec::new();
    for (trust_domain, path) in &bundles {
        match TrustDomain::new(trust_domain) {
            Ok(td) => parsed_bundles.push((td, path.clone())),
            Err(e) => problems.push(format!("`{trust_domain}` is not a trust domain name: {e}")),
        }
        if !path.is_file() {
            problems.push(format!(
                "trust bundle for `{trust_domain}`: `{}` does not exist",
                path.display()
            ));
        }
    }
    let (Some(cert), Some(key)) = (&raw.svid_cert, &raw.svid_key) else {
        problems.push("`svid-cert` and `svid-key` must be given together".to_owned());
        return None;
    };
    for (flag, path) in [("svid-cert", cert), ("svid-key", key)] {
        if !path.is_file() {
            problems.push(format!("`{flag}` `{}` does not exist", path.display()));
        }
    }
    if bundles.is_empty() {
        problems.push(
            "an SVID needs at least one `--trust-bundle TRUST_DOMAIN=FILE` to verify callers"
                .to_owned(),
        );
    }
    Some(IdentitySource::Files(FilesSource {
        svid_cert: cert.clone(),
        svid_key: key.clone(),
        bundles: parsed_bundles,
    }))
}

fn workload_api(
    raw: &RawConfig,
    env_socket: Option<String>,
    problems: &mut Vec<String>,
) -> Option<IdentitySource> {
    if raw.svid_cert.is_some() || raw.svid_key.is_some() || raw.trust_bundles.is_some() {
        problems.push(
            "`svid-cert`, `svid-key` and `trust-bundle` are for the files identity; the workload API brings its own"
                .to_owned(),
        );
    }
    let timeout = raw
        .workload_api_timeout_secs
        .unwrap_or(defaults::WORKLOAD_API_TIMEOUT_SECS);
    if timeout == 0 {
        problems.push("`workload-api-timeout-secs` must be at least 1".to_owned());
    }
    let Some(socket) = raw.workload_api_socket.clone().or(env_socket) else {
        problems.push(
            "the workload-api identity needs `--workload-api-socket` or SPIFFE_ENDPOINT_SOCKET"
                .to_owned(),
        );
        return None;
    };
    match WorkloadApiSource::parse_endpoint(&socket) {
        Ok(endpoint) => Some(IdentitySource::WorkloadApi(WorkloadApiSource {
            startup_timeout: Duration::from_secs(timeout),
            ..WorkloadApiSource::new(endpoint)
        })),
        Err(e) => {
            problems.push(format!(
                "{e}; give a socket like `unix:///run/spire/agent.sock`"
            ));
            None
        }
    }
}

fn dev(raw: &RawConfig, data_dir: &Path, problems: &mut Vec<String>) -> Option<IdentitySource> {
    if raw.svid_cert.is_some() || raw.svid_key.is_some() {
        problems.push("`svid-cert` and `svid-key` are for the files identity".to_owned());
    }
    if raw.trust_bundles.is_some() {
        problems.push(
            "`trust-bundle` is set but no SVID: give `--svid-cert` and `--svid-key` too".to_owned(),
        );
    }
    let name = raw
        .dev_trust_domain
        .as_deref()
        .unwrap_or(defaults::DEV_TRUST_DOMAIN);
    match TrustDomain::new(name) {
        Ok(trust_domain) => Some(IdentitySource::Dev {
            dir: data_dir.join("dev"),
            trust_domain,
        }),
        Err(e) => {
            problems.push(format!(
                "`dev-trust-domain` `{name}` is not a trust domain name: {e}"
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve_raw(raw: RawConfig, env: Option<&str>) -> Result<IdentitySource, Vec<String>> {
        let mut problems = Vec::new();
        let resolved = resolve(
            &raw,
            Path::new("/data"),
            env.map(str::to_owned),
            &mut problems,
        );
        match resolved {
            Some((source, _)) if problems.is_empty() => Ok(source),
            _ => Err(problems),
        }
    }

    #[test]
    fn the_socket_comes_from_the_config_then_the_environment() {
        let raw = RawConfig {
            identity: Some("workload-api".into()),
            ..RawConfig::default()
        };
        let Ok(IdentitySource::WorkloadApi(api)) =
            resolve_raw(raw.clone(), Some("unix:///env/agent.sock"))
        else {
            panic!("expected the workload API source");
        };
        assert_eq!(api.endpoint, "unix:///env/agent.sock");
        let configured = RawConfig {
            workload_api_socket: Some("/conf/agent.sock".into()),
            ..raw.clone()
        };
        let Ok(IdentitySource::WorkloadApi(api)) =
            resolve_raw(configured, Some("unix:///env/agent.sock"))
        else {
            panic!("expected the workload API source");
        };
        assert_eq!(api.endpoint, "unix:///conf/agent.sock");
        let problems = resolve_raw(raw, None).unwrap_err();
        assert!(
            problems[0].contains("SPIFFE_ENDPOINT_SOCKET"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_socket_alone_selects_the_workload_api() {
        let raw = RawConfig {
            workload_api_socket: Some("unix:///run/agent.sock".into()),
            ..RawConfig::default()
        };
        assert!(matches!(
            resolve_raw(raw, None),
            Ok(IdentitySource::WorkloadApi(_))
        ));
    }

    #[test]
    fn mixed_and_unknown_sources_are_refused() {
        let cases = [
            RawConfig {
                identity: Some("workload-api".into()),
                workload_api_socket: Some("/run/agent.sock".into()),
                svid_cert: Some("/a.pem".into()),
                ..RawConfig::default()
            },
            RawConfig {
                identity: Some("spire".into()),
                ..RawConfig::default()
            },
            RawConfig {
                identity: Some("dev".into()),
                workload_api_socket: Some("/run/agent.sock".into()),
                ..RawConfig::default()
            },
            RawConfig {
                identity: Some("workload-api".into()),
                workload_api_socket: Some("agent.sock".into()),
                ..RawConfig::default()
            },
            // Plaintext and unauthenticated: refused.
            RawConfig {
                identity: Some("workload-api".into()),
                workload_api_socket: Some("tcp://127.0.0.1:8081".into()),
                ..RawConfig::default()
            },
            RawConfig {
                trusted_trust_domains: Some(vec![]),
                ..RawConfig::default()
            },
            RawConfig {
                trusted_trust_domains: Some(vec!["Not A Domain".into()]),
                ..RawConfig::default()
            },
        ];
        for raw in cases {
            let description = format!("{raw:?}");
            assert!(resolve_raw(raw, None).is_err(), "{description}");
        }
    }

    #[test]
    fn the_allow_list_defaults_to_our_own_trust_domain() {
        let mut problems = Vec::new();
        let (_, follow) = resolve(&RawConfig::default(), Path::new("/d"), None, &mut problems)
            .expect("dev identity");
        assert_eq!(follow.trust, TrustPolicy::own_only());
        let raw = RawConfig {
            trusted_trust_domains: Some(vec!["example.org".into(), "partner.example".into()]),
            ..RawConfig::default()
        };
        let (_, follow) = resolve(&raw, Path::new("/d"), None, &mut problems).expect("dev");
        assert_eq!(
            follow.trust.allowed().map(<[TrustDomain]>::len),
            Some(2),
            "{problems:?}"
        );
    }

    #[test]
    fn the_spire_example_config_resolves() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let raw = RawConfig::from_file(&root.join("examples/spire/mandate.toml")).unwrap();
        let raw = RawConfig {
            policies: Some(root.join("policies")),
            schema: Some(root.join("schemas/mandate.cedarschema")),
            ..raw
        };
        let settings = super::super::Settings::resolve_with_env(raw, None).unwrap();
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
