//! The route map: which action on which resource a request through Envoy
//! is. Rules are tried in file order and the first match wins, as in
//! Envoy's own route tables; a request no rule matches is denied
//! (`no-route`), so a new upstream endpoint is closed until someone maps
//! it.

use std::path::Path;
use std::str::FromStr;

use cedar_policy::EntityTypeName;
use serde::Deserialize;

use super::glob::glob_match;
use crate::decision::DEFAULT_RESOURCE_TYPE;
use crate::policy::PolicyEngine;

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRouteMap {
    #[serde(default, rename = "route")]
    routes: Vec<RawRoute>,
}

/// One `[[route]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    name: Option<String>,
    host: Option<String>,
    #[serde(default)]
    methods: Vec<String>,
    path: String,
    action: String,
    resource: String,
    resource_type: Option<String>,
}

/// One piece of a path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// Matches one segment equal to the text, or, when the text holds `*`,
    /// one segment the glob matches.
    Glob(String),
    /// `{name}`: captures one segment.
    Param(String),
    /// `**`, last only: the rest of the path, zero or more segments.
    Rest,
}

/// One piece of a resource template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Param(String),
}

/// A validated rule.
#[derive(Debug, Clone)]
pub struct Route {
    /// The rule's name (`route N` when the file gives none).
    pub name: String,
    host: Option<String>,
    methods: Vec<String>,
    path: Vec<Segment>,
    action: String,
    resource: Vec<Piece>,
    resource_type: String,
}

/// What a request maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch {
    /// The name of the rule that matched.
    pub route: String,
    /// The action, such as `read`.
    pub action: String,
    /// The resource's Cedar type.
    pub resource_type: String,
    /// The resource id with the captures filled in.
    pub resource_id: String,
    /// The `{param}` captures, in path order.
    pub params: Vec<(String, String)>,
}

/// The whole map, in rule order.
#[derive(Debug, Clone, Default)]
pub struct RouteMap {
    routes: Vec<Route>,
}

impl RouteMap {
    /// Reads and validates a route map file. Every problem names its rule.
    pub fn load(path: &Path) -> Result<Self, Vec<String>> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| vec![format!("route map `{}`: {e}", path.display())])?;
        Self::parse(&text).map_err(|problems| {
            problems
                .into_iter()
                .map(|p| format!("route map `{}`: {p}", path.display()))
                .collect()
        })
    }

    /// Parses and validates a route map (TOML with `[[route]]` tables).
    pub fn parse(text: &str) -> Result<Self, Vec<String>> {
        let raw: RawRouteMap = toml::from_str(text).map_err(|e| vec![e.to_string()])?;
        let mut routes = Vec::new();
        let mut problems = Vec::new();
        for (i, raw) in raw.routes.into_iter().enumerate() {
            let label = match &raw.name {
                Some(name) => format!("route {} (`{name}`)", i + 1),
                None => format!("route {}", i + 1),
            };
            match Route::new(raw, i + 1) {
                Ok(route) => routes.push(route),
                Err(errors) => problems.extend(errors.into_iter().map(|e| format!("{label}: {e}"))),
            }
        }
        if problems.is_empty() {
            Ok(Self { routes })
        } else {
            Err(problems)
        }
    }

    /// The rules, in order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Rules whose action or resource type the schema does not declare:
    /// they could only ever deny, which is a mistake worth refusing early.
    pub fn check_names(&self, engine: &PolicyEngine) -> Vec<String> {
        let mut problems = Vec::new();
        for route in &self.routes {
            if engine.action(&route.action).is_none() {
                problems.push(format!(
                    "route `{}`: action `{}` is not declared in the schema",
                    route.name, route.action
                ));
            }
            let known = EntityTypeName::from_str(&route.resource_type)
                .is_ok_and(|t| engine.has_entity_type(&t));
            if !known {
                problems.push(format!(
                    "route `{}`: resource type `{}` is not declared in the schema",
                    route.name, route.resource_type
                ));
            }
        }
        problems
    }

    /// The first rule matching `host` (no port, lowercase), `method` and
    /// the decoded path `segments`.
    pub fn find(&self, host: &str, method: &str, segments: &[String]) -> Option<RouteMatch> {
        self.routes.iter().find_map(|route| {
            if route.host.as_deref().is_some_and(|h| !glob_match(h, host)) {
                return None;
            }
            if !route.methods.is_empty() && !route.methods.iter().any(|m| m == method) {
                return None;
            }
            let params = match_path(&route.path, segments)?;
            let resource_id = route
                .resource
                .iter()
                .map(|piece| match piece {
                    Piece::Text(text) => text.as_str(),
                    Piece::Param(name) => params
                        .iter()
                        .find(|(n, _)| n == name)
                        .map_or("", |(_, v)| v.as_str()),
                })
                .collect();
            Some(RouteMatch {
                route: route.name.clone(),
                action: route.action.clone(),
                resource_type: route.resource_type.clone(),
                resource_id,
                params,
            })
        })
    }
}

impl Route {
    fn new(raw: RawRoute, number: usize) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        let path = parse_path(&raw.path).unwrap_or_else(|e| {
            problems.push(format!("path `{}`: {e}", raw.path));
            Vec::new()
        });
        let captured: Vec<&str> = path
            .iter()
            .filter_map(|s| match s {
                Segment::Param(name) => Some(name.as_str()),
                _ => None,
            })
            .collect();
        let resource = parse_template(&raw.resource, &captured).unwrap_or_else(|e| {
            problems.push(format!("resource `{}`: {e}", raw.resource));
            Vec::new()
        });
        if raw.resource.is_empty() {
            problems.push("`resource` is empty".to_owned());
        }
        if raw.action.is_empty() {
            problems.push("`action` is empty".to_owned());
        }
        let resource_type = raw
            .resource_type
            .unwrap_or_else(|| DEFAULT_RESOURCE_TYPE.to_owned());
        if let Err(e) = EntityTypeName::from_str(&resource_type) {
            problems.push(format!(
                "resource type `{resource_type}` is not a Cedar type name: {e}"
            ));
        }
        let mut methods = Vec::new();
        for method in raw.methods {
            if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
                problems.push(format!("method `{method}` is not an HTTP method"));
            }
            methods.push(method.to_ascii_uppercase());
        }
        if raw.host.as_deref() == Some("") {
            problems.push("`host` is empty; leave it out to match any host".to_owned());
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Self {
            name: raw.name.unwrap_or_else(|| format!("route {number}")),
            host: raw.host.map(|h| h.to_ascii_lowercase()),
            methods,
            path,
            action: raw.action,
            resource,
            resource_type,
        })
    }
}

fn is_param_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_path(pattern: &str) -> Result<Vec<Segment>, String> {
    let rest = pattern
        .strip_prefix('/')
        .ok_or("must start with `/`".to_owned())?;
    if pattern.contains('?') {
        return Err("must not hold a query (`?`)".to_owned());
    }
    let parts: Vec<&str> = rest.split('/').collect();
    let mut segments = Vec::new();
    let mut names = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let segment = if *part == "**" {
            if !last {
                return Err("`**` must be the last segment".to_owned());
            }
            Segment::Rest
        } else if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            if !is_param_name(name) {
                return Err(format!("`{{{name}}}` is not a parameter name"));
            }
            if names.contains(&name) {
                return Err(format!("`{{{name}}}` appears twice"));
            }
            names.push(name);
            Segment::Param(name.to_owned())
        } else if part.contains('{') || part.contains('}') {
            return Err(format!(
                "segment `{part}`: a `{{param}}` must be a whole segment"
            ));
        } else if part.is_empty() && !last {
            return Err("holds an empty segment (`//`)".to_owned());
        } else {
            Segment::Glob((*part).to_owned())
        };
        segments.push(segment);
    }
    Ok(segments)
}

fn parse_template(template: &str, captured: &[&str]) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let (text, after) = rest.split_at(open);
        if text.contains('}') {
            return Err("`}` without `{`".to_owned());
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text.to_owned()));
        }
        let after = after.get(1..).unwrap_or_default();
        let close = after.find('}').ok_or("unclosed `{`".to_owned())?;
        let (name, tail) = after.split_at(close);
        if !captured.contains(&name) {
            return Err(format!("`{{{name}}}` is not captured by the path"));
        }
        pieces.push(Piece::Param(name.to_owned()));
        rest = tail.get(1..).unwrap_or_default();
    }
    if rest.contains('}') {
        return Err("`}` without `{`".to_owned());
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest.to_owned()));
    }
    Ok(pieces)
}

/// The captures when `pattern` matches `segments`.
fn match_path(pattern: &[Segment], segments: &[String]) -> Option<Vec<(String, String)>> {
    let mut params = Vec::new();
    let mut remaining = segments.iter();
    for piece in pattern {
        match piece {
            Segment::Rest => return Some(params),
            Segment::Param(name) => {
                let value = remaining.next()?;
                // A capture names part of a resource id: an empty one
                // would make `repo:{owner}/{name}` name another resource.
                if value.is_empty() {
                    return None;
                }
                params.push((name.clone(), value.clone()));
            }
            Segment::Glob(glob) => {
                if !glob_match(glob, remaining.next()?) {
                    return None;
                }
            }
        }
    }
    remaining.next().is_none().then_some(params)
}

#[cfg(test)]
mod tests;
