//! The configuration as a whole: problems reported together and named one
//! way, unknown and old keys refused, and the default file, the example
//! and the reference in docs/configuration.md held to the structs.

use std::collections::BTreeSet;
use std::path::Path;

use super::reference::{self, SECTIONS};
use super::*;

fn parse(text: &str) -> Result<Config, ConfigErrors> {
    Config::from_toml(text, Path::new("mandate.toml"))
}

#[test]
fn every_problem_is_reported_each_naming_its_key() {
    let mut config = Config::default();
    config.server.listen = "nowhere".into();
    config.server.max_batch_size = 0;
    config.policies.dir = "/nonexistent/policies".into();
    config.identity.svid_cert = Some("/nonexistent/cert.pem".into());
    config.tokens.ttl_secs = 0;
    config.limits.max_token_bytes = 0;
    let errors = config.validate_with_env(None).unwrap_err();
    let keys: BTreeSet<_> = errors.0.iter().filter_map(ConfigError::key_name).collect();
    for key in [
        "server.listen",
        "server.max_batch_size",
        "policies.dir",
        "identity.svid_cert",
        "tokens.ttl_secs",
        "limits.max_token_bytes",
    ] {
        assert!(keys.contains(key), "{key}: {errors}");
    }
    assert!(
        errors
            .lines()
            .iter()
            .any(|l| l.starts_with("`server.listen` `nowhere` is not an address")),
        "{errors}"
    );
    // One spelling: every key named is one the file has.
    let known = reference::all_keys();
    for key in keys {
        let base = key.split(['[', '.']).take(2).collect::<Vec<_>>().join(".");
        assert!(
            known.contains(&base),
            "`{key}` is not a key of mandate.toml"
        );
    }
}

#[test]
fn the_defaults_are_valid_and_the_same_as_the_runtime_ones() {
    let mut config = Config::default();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    config.policies.dir = root.join("policies");
    config.policies.schema = root.join("schemas/mandate.cedarschema");
    let settings = config.validate_with_env(None).unwrap();
    assert_eq!(settings.limits, crate::limits::Limits::default());
    assert_eq!(settings.replica, crate::journal::ReplicaSettings::default());
    assert_eq!(settings.envoy, EnvoySettings::default());
    assert_eq!(settings.sensitivity, SensitivityScale::default());
    assert_eq!(settings.listen.to_string(), LISTEN);
    assert_eq!(
        settings.decision_log_capacity,
        crate::audit::AuditSettings::default().capacity
    );
}

#[test]
fn unknown_keys_are_refused_with_the_key_named() {
    let errors = parse(
        "listn = \"x\"\n[server]\nlisen = \"y\"\n[ui.webhook]\nurl = \"https://x\"\nretries = 2\n",
    )
    .unwrap_err();
    let keys: Vec<_> = errors.0.iter().filter_map(ConfigError::key_name).collect();
    assert_eq!(
        keys,
        ["listn", "server.lisen", "ui.webhook.retries"],
        "{errors}"
    );
    assert!(
        errors.lines()[1].contains("unknown key `server.lisen`; known here: listen,"),
        "{errors}"
    );
    // A value of the wrong type is named by serde, with the line.
    let errors = parse("[server]\nlisten = 7443\n").unwrap_err();
    assert!(errors.to_string().contains("line 2"), "{errors}");
}

#[test]
fn keys_of_the_old_flat_layout_are_refused_with_their_new_names() {
    let errors = parse(
        "listen = \"127.0.0.1:1\"\nidentity = \"dev\"\nstore = \"sqlite://x.db\"\ndecision_log = \"d.jsonl\"\n[trust_bundles]\n\"a.org\" = \"b.pem\"\n",
    )
    .unwrap_err();
    let lines = errors.lines();
    assert_eq!(lines.len(), 5, "{errors}");
    for (old, new) in [
        (
            "listen",
            "`server.listen` (write `listen` under `[server]`)",
        ),
        ("identity", "`identity.source`"),
        ("store", "`store.url`"),
        ("decision_log", "`audit.file`"),
        ("trust_bundles", "`identity.trust_bundles`"),
    ] {
        assert!(
            lines.iter().any(|l| l.contains(&format!(
                "`{old}` is a key of the old flat layout; it is now {new}"
            ))),
            "{old}: {errors}"
        );
    }
}

#[test]
fn the_default_file_is_the_defaults() {
    let text = reference::default_file();
    assert_eq!(parse(&text).unwrap(), Config::default());
    // Every key of the structs has its line, and every line is a key.
    let values = toml::Table::try_from(Config::default()).unwrap();
    let mut serialized = BTreeSet::new();
    collect(&values, "", &mut serialized);
    let documented: BTreeSet<String> = reference::all_keys().into_iter().collect();
    let missing: Vec<_> = serialized.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "keys without a line in reference.rs: {missing:?}"
    );
    for key in documented {
        let (section, name) = key.rsplit_once('.').unwrap();
        let spec = SECTIONS
            .iter()
            .find(|s| s.name == section)
            .and_then(|s| s.keys.iter().find(|k| k.name == name))
            .unwrap();
        assert!(
            spec.example.is_some() || serialized.contains(&key),
            "`{key}` has no default value: give it an example"
        );
    }
}

/// `section.key` of every value, without descending into maps that are
/// values themselves (none is serialized at its default).
fn collect(table: &toml::Table, prefix: &str, out: &mut BTreeSet<String>) {
    for (key, value) in table {
        let name = format!("{prefix}{key}");
        match value.as_table() {
            Some(inner) if SECTIONS.iter().any(|s| s.name == name) => {
                collect(inner, &format!("{name}."), out);
            }
            _ => {
                out.insert(name);
            }
        }
    }
}

#[test]
fn every_example_is_a_key_of_its_struct_with_a_value_it_accepts() {
    let mut text = String::new();
    for section in SECTIONS {
        text.push_str(&format!("[{}]\n", section.name));
        for key in section.keys {
            let value = key
                .example
                .map(str::to_owned)
                .or_else(|| reference::default_value(section.name, key.name))
                .unwrap();
            text.push_str(&format!("{} = {value}\n", key.name));
        }
    }
    let config = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_ne!(config, Config::default());
    assert!(config.identity.source.is_some());
    // The optional section shows its defaults as its examples.
    let webhook = config.ui.webhook.unwrap();
    assert_eq!(
        WebhookConfig {
            url: None,
            ..webhook
        },
        WebhookConfig::default()
    );
}

#[test]
fn the_shipped_example_is_the_default_file() {
    let example = include_str!("../../mandate.toml.example");
    assert!(
        example == reference::default_file(),
        "mandate.toml.example is not `mandate config print-default`; run\n  cargo run -- config print-default > mandate.toml.example"
    );
}

#[test]
fn the_reference_in_the_docs_lists_every_key_with_its_default() {
    let docs = include_str!("../../docs/configuration.md");
    let start = docs.find("## Reference").unwrap();
    let mut listed = BTreeSet::new();
    for row in docs[start..].lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = row.split(" | ").collect();
        let key = cells[0].trim_start_matches("| ").trim_matches('`');
        let (section, name) = key.rsplit_once('.').unwrap_or(("", key));
        if let Some(value) = reference::default_value(section, name) {
            assert_eq!(cells[2], format!("`{value}`"), "the default of `{key}`");
        }
        assert!(listed.insert(key.to_owned()), "`{key}` listed twice");
    }
    let keys: BTreeSet<String> = reference::all_keys().into_iter().collect();
    let missing: Vec<_> = keys.difference(&listed).collect();
    let unknown: Vec<_> = listed.difference(&keys).collect();
    assert!(
        missing.is_empty(),
        "not in docs/configuration.md: {missing:?}"
    );
    assert!(unknown.is_empty(), "not keys of mandate.toml: {unknown:?}");
}
