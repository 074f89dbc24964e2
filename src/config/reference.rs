//! The shape of `mandate.toml` as data: every section and key with the line
//! that explains it. From it come `mandate config print-default` (and so
//! `mandate.toml.example`), the unknown-key check that names `section.key`,
//! and the tests that hold docs/configuration.md and the structs to it.
//! Default values are not written here: they come from serializing
//! [`Config::default`](super::Config).

use std::fmt::Write as _;
use std::path::Path;

use super::{Config, ConfigError, ConfigErrors};

/// One key of a section.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// The key as written in its section.
    pub name: &'static str,
    /// What it does, one or more comment lines.
    pub doc: &'static str,
    /// For a key without a default value (or whose default depends on
    /// other keys): a value to show, printed commented out.
    pub example: Option<&'static str>,
}

/// One table of `mandate.toml`.
#[derive(Debug, Clone, Copy)]
pub struct Section {
    /// Its name (`server`, `ui.webhook`).
    pub name: &'static str,
    /// What it is for, comment lines.
    pub doc: &'static str,
    /// Off unless written: printed commented out, keys and all.
    pub optional: bool,
    /// Its keys, in the order they are printed.
    pub keys: &'static [Key],
}

/// A key with a default value.
pub(super) const fn key(name: &'static str, doc: &'static str) -> Key {
    Key {
        name,
        doc,
        example: None,
    }
}

/// A key shown with an example value, commented out.
pub(super) const fn example(name: &'static str, doc: &'static str, value: &'static str) -> Key {
    Key {
        name,
        doc,
        example: Some(value),
    }
}

/// Every section, in the order of the file.
pub const SECTIONS: &[Section] = &[
    super::server::SECTION,
    super::identity::SECTION,
    super::store::SECTION,
    super::tokens::TOKENS,
    super::tokens::TASKS,
    super::policies::SECTION,
    super::audit::SECTION,
    super::envoy::SECTION,
    super::limits::SECTION,
    super::telemetry::SECTION,
    super::authzen::SECTION,
    super::ui::SECTION,
    super::ui::WEBHOOK,
];

/// The keys of the flat layout that came before the sections, and where
/// they went. Kept for one release, so an old file is refused with the new
/// name rather than a bare "unknown key"; remove in the release after the
/// one that introduced the sections.
const OLD_KEYS: &[(&str, &str)] = &[
    ("listen", "server.listen"),
    ("http_listen", "server.http_listen"),
    ("data_dir", "server.data_dir"),
    ("max_batch_size", "server.max_batch_size"),
    ("handshake_timeout_secs", "server.handshake_timeout_secs"),
    ("shutdown_grace_secs", "server.shutdown_grace_secs"),
    ("log_format", "server.log_format"),
    ("identity", "identity.source"),
    ("workload_api_socket", "identity.workload_api_socket"),
    (
        "workload_api_timeout_secs",
        "identity.workload_api_timeout_secs",
    ),
    ("identity_poll_ms", "identity.poll_ms"),
    ("trusted_trust_domains", "identity.trusted_trust_domains"),
    (
        "revoke_on_trust_withdrawal",
        "identity.revoke_on_trust_withdrawal",
    ),
    ("withdrawal_grace_secs", "identity.withdrawal_grace_secs"),
    ("svid_cert", "identity.svid_cert"),
    ("svid_key", "identity.svid_key"),
    ("trust_bundles", "identity.trust_bundles"),
    ("dev_trust_domain", "identity.dev_trust_domain"),
    ("agent_path_prefixes", "identity.agent_path_prefixes"),
    ("agent_trust_domains", "identity.agent_trust_domains"),
    ("store", "store.url"),
    ("store_key_file", "store.key_file"),
    ("store_stale_after_ms", "store.stale_after_ms"),
    ("min_revision_wait_ms", "store.min_revision_wait_ms"),
    ("store_poll_ms", "store.poll_ms"),
    ("token_ttl_secs", "tokens.ttl_secs"),
    ("token_max_ttl_secs", "tokens.max_ttl_secs"),
    ("key_rotation_secs", "tokens.key_rotation_secs"),
    ("key_overlap_secs", "tokens.key_overlap_secs"),
    ("max_delegation_depth", "tasks.max_delegation_depth"),
    ("task_retention_secs", "tasks.retention_secs"),
    ("policies", "policies.dir"),
    ("schema", "policies.schema"),
    ("entities", "policies.entities"),
    ("catalog", "policies.catalog"),
    ("sensitivity_levels", "policies.sensitivity_levels"),
    ("policy_poll_ms", "policies.poll_ms"),
    ("policy_validation_level", "policies.validation_level"),
    ("decision_log", "audit.file"),
    ("decision_log_capacity", "audit.capacity"),
];

/// Every key, as `section.key`.
pub fn all_keys() -> Vec<String> {
    SECTIONS
        .iter()
        .flat_map(|s| s.keys.iter().map(move |k| format!("{}.{}", s.name, k.name)))
        .collect()
}

/// Refuses keys no section has, old flat keys with their new names, and
/// top-level values where a section belongs; every one is reported.
pub(super) fn check_keys(table: &toml::Table, path: &Path) -> Result<(), ConfigErrors> {
    let mut errors = ConfigErrors::default();
    let top: Vec<&str> = SECTIONS
        .iter()
        .filter(|s| !s.name.contains('.'))
        .map(|s| s.name)
        .collect();
    for (name, value) in table {
        match (value.as_table(), top.contains(&name.as_str())) {
            (Some(inner), true) => check_section(name, inner, path, &mut errors),
            _ => match OLD_KEYS.iter().find(|(old, _)| old == name) {
                Some((old, new)) => errors.push(ConfigError::OldKey {
                    path: path.to_owned(),
                    old: (*old).to_owned(),
                    new,
                }),
                None => errors.push(ConfigError::UnknownKey {
                    path: path.to_owned(),
                    key: name.clone(),
                    known: top.clone(),
                }),
            },
        }
    }
    errors.or_ok(())
}

fn check_section(name: &str, table: &toml::Table, path: &Path, errors: &mut ConfigErrors) {
    let Some(section) = SECTIONS.iter().find(|s| s.name == name) else {
        return;
    };
    let prefix = format!("{name}.");
    let subsections: Vec<&str> = SECTIONS
        .iter()
        .filter_map(|s| s.name.strip_prefix(prefix.as_str()))
        .collect();
    for (key, value) in table {
        if let (Some(inner), true) = (value.as_table(), subsections.contains(&key.as_str())) {
            check_section(&format!("{name}.{key}"), inner, path, errors);
        } else if !section.keys.iter().any(|k| k.name == key) {
            errors.push(ConfigError::UnknownKey {
                path: path.to_owned(),
                key: format!("{name}.{key}"),
                known: section.keys.iter().map(|k| k.name).collect(),
            });
        }
    }
}

/// The complete default file: every section and key, with its comment;
/// keys without a default value commented out, with an example.
pub fn default_file() -> String {
    let values = toml::Table::try_from(Config::default()).unwrap_or_default();
    let mut out = String::from(HEADER);
    for section in SECTIONS {
        let off = if section.optional { "# " } else { "" };
        out.push('\n');
        comment(&mut out, section.doc);
        let _ = writeln!(out, "{off}[{}]", section.name);
        let table = lookup(&values, section.name);
        for key in section.keys {
            comment(&mut out, key.doc);
            match (key.example, table.and_then(|t| t.get(key.name))) {
                (None, Some(value)) => {
                    let _ = writeln!(out, "{off}{} = {}", key.name, inline(value));
                }
                // A key without a value to show is caught by the tests.
                (example, _) => {
                    let _ = writeln!(out, "# {} = {}", key.name, example.unwrap_or("?"));
                }
            }
        }
    }
    out
}

/// The value of `key` in the default file, as written there; `None` for a
/// key shown only as an example.
pub fn default_value(section: &str, key: &str) -> Option<String> {
    let values = toml::Table::try_from(Config::default()).ok()?;
    let spec = SECTIONS
        .iter()
        .find(|s| s.name == section)?
        .keys
        .iter()
        .find(|k| k.name == key)?;
    if spec.example.is_some() {
        return None;
    }
    lookup(&values, section)?.get(key).map(inline)
}

const HEADER: &str = "\
# mandate.toml: the configuration of `mandate serve`, every key at its
# default (`mandate config print-default` writes this file). Copy it to
# `mandate.toml` (read from the working directory when present) or pass
# `--config FILE`; keep only what you change. Flags win over this file;
# docs/configuration.md maps each flag to its key. Unknown keys are refused.
";

fn lookup<'a>(values: &'a toml::Table, dotted: &str) -> Option<&'a toml::Table> {
    dotted
        .split('.')
        .try_fold(values, |table, part| table.get(part)?.as_table())
}

fn comment(out: &mut String, doc: &str) {
    for line in doc.lines() {
        let _ = writeln!(out, "# {line}");
    }
}

/// A value as one line of TOML.
fn inline(value: &toml::Value) -> String {
    match value {
        toml::Value::Table(table) if table.is_empty() => "{}".to_owned(),
        other => other.to_string(),
    }
}
