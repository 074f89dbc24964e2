//! The operator's files from arbitrary text: `mandate.toml` (parsed and
//! resolved as `serve` does) and the Envoy route map (parsed, checked
//! against the schema, and asked for routes). Never a panic; a file
//! accepted must hold what validation promises; a refusal says why.

use std::path::Path;

use crate::config::Config;
use crate::envoy::RouteMap;
use crate::policy::PolicyEngine;

use super::{Outcome, ensure};

/// Parses and resolves a `mandate.toml`.
pub fn check_config(data: &[u8]) -> Result<Outcome, String> {
    let Ok(text) = std::str::from_utf8(data) else {
        return Outcome::refused("not UTF-8");
    };
    let settings = match Config::from_toml(text, Path::new("mandate.toml"))
        .and_then(|config| config.validate_with_env(None))
    {
        Ok(settings) => settings,
        Err(errors) => {
            ensure(!errors.is_empty(), || {
                "refused without a problem".to_owned()
            })?;
            return Outcome::refused(errors.to_string());
        }
    };
    let tokens = &settings.tokens;
    ensure(
        1 <= tokens.default_ttl && tokens.default_ttl <= tokens.max_ttl,
        || format!("token lifetimes accepted: {tokens:?}"),
    )?;
    let rotation = &settings.key_rotation;
    ensure(
        rotation.rotate_after >= 60
            && rotation.overlap >= tokens.max_ttl.saturating_add(tokens.leeway),
        || format!("key rotation accepted: {rotation:?}"),
    )?;
    ensure((1..=10_000).contains(&settings.max_batch_size), || {
        format!("max batch size {} accepted", settings.max_batch_size)
    })?;
    ensure(
        settings.max_delegation_depth >= 1
            && settings.decision_log_capacity >= 1
            && !settings.handshake_timeout.is_zero(),
        || "a zero bound accepted".to_owned(),
    )?;
    ensure(settings.envoy.validate().is_empty(), || {
        format!("envoy settings accepted: {:?}", settings.envoy)
    })?;
    ensure(
        settings.listen != settings.http_listen || settings.listen.port() == 0,
        || "`server.listen` and `server.http_listen` are the same".to_owned(),
    )?;
    Ok(Outcome::Accepted)
}

/// Parses a route map: the text before the first NUL is the file; each
/// line after it, `METHOD HOST /PATH`, is looked up in the map.
pub fn check_route_map(data: &[u8], engine: Option<&PolicyEngine>) -> Result<Outcome, String> {
    let (file, requests) = match data.iter().position(|b| *b == 0) {
        Some(nul) => data.split_at(nul),
        None => (data, &[][..]),
    };
    let Ok(text) = std::str::from_utf8(file) else {
        return Outcome::refused("not UTF-8");
    };
    let map = match RouteMap::parse(text) {
        Ok(map) => map,
        Err(problems) => {
            ensure(!problems.is_empty(), || {
                "refused without a problem".to_owned()
            })?;
            return Outcome::refused(problems.join("\n"));
        }
    };
    if let Some(engine) = engine {
        // Names the schema lacks are refused at load; never a panic.
        let _ = map.check_names(engine);
    }
    let requests = String::from_utf8_lossy(requests);
    for line in requests.lines() {
        let mut words = line.trim_start_matches('\0').splitn(3, ' ');
        let (method, host) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        let path = words.next().unwrap_or("");
        let segments: Vec<String> = path
            .strip_prefix('/')
            .unwrap_or(path)
            .split('/')
            .map(str::to_owned)
            .collect();
        let Some(found) = map.find(host, method, &segments) else {
            continue;
        };
        ensure(map.routes().iter().any(|r| r.name == found.route), || {
            format!("matched an unknown route `{}`", found.route)
        })?;
        for (name, value) in &found.params {
            ensure(!value.is_empty() && segments.contains(value), || {
                format!("capture `{name}` = `{value}` is not a segment of `{path}`")
            })?;
        }
        ensure(
            !found.action.is_empty() && !found.resource_id.is_empty(),
            || format!("matched an empty action or resource: {found:?}"),
        )?;
    }
    Ok(Outcome::Accepted)
}
