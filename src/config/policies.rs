//! `[policies]`: the Cedar policies and schema, what they are evaluated
//! over at start (the registry catalog, entities), the sensitivity scale,
//! and how the set is reloaded and validated. `mandate policy` reads the
//! same section (`--config`), so its checks match the server's.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigErrors;
use super::reference::{Section, example, key};
use crate::registry::SensitivityScale;
use crate::registry::sensitivity::DEFAULT_LEVELS;

/// The policies directory when nothing says otherwise.
pub const POLICIES: &str = "./policies";
/// The schema file when nothing says otherwise.
pub const SCHEMA: &str = "./schemas/mandate.cedarschema";
/// The catalog looked for beside the config file.
pub const CATALOG_FILE: &str = "catalog.toml";

/// The `[policies]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoliciesConfig {
    /// Directory of `*.cedar` policies.
    pub dir: PathBuf,
    /// Cedar schema file.
    pub schema: PathBuf,
    /// Registry catalog (TOML); `None`: `catalog.toml` beside the config
    /// file, if there is one.
    pub catalog: Option<PathBuf>,
    /// Cedar entities JSON file, for types a user schema adds.
    pub entities: Option<PathBuf>,
    /// Sensitivity level names, lowest first.
    pub sensitivity_levels: Vec<String>,
    /// How often policy files are checked for changes, ms; 0 turns it off.
    pub poll_ms: u64,
    /// Cedar level-based validation of the policies at this level.
    pub validation_level: Option<u32>,
}

impl Default for PoliciesConfig {
    fn default() -> Self {
        Self {
            dir: POLICIES.into(),
            schema: SCHEMA.into(),
            catalog: None,
            entities: None,
            sensitivity_levels: DEFAULT_LEVELS.iter().map(|l| (*l).to_owned()).collect(),
            poll_ms: 1000,
            validation_level: None,
        }
    }
}

impl PoliciesConfig {
    /// The sensitivity scale; a bad one is an error naming the key.
    pub fn scale(&self) -> Result<SensitivityScale, super::ConfigError> {
        SensitivityScale::new(self.sensitivity_levels.clone())
            .map_err(|e| super::ConfigError::key("policies.sensitivity_levels", e.to_string()))
    }

    /// Checks the files exist; the scale and the poll interval.
    pub(super) fn validate(
        &self,
        errors: &mut ConfigErrors,
    ) -> (SensitivityScale, Option<Duration>) {
        if !self.dir.is_dir() {
            errors.push(super::ConfigError::key(
                "policies.dir",
                format!("`{}` is not a directory", self.dir.display()),
            ));
        }
        errors.file("policies.schema", &self.schema);
        if let Some(entities) = &self.entities {
            errors.file("policies.entities", entities);
        }
        if let Some(catalog) = &self.catalog {
            errors.file("policies.catalog", catalog);
        }
        let scale = self.scale().unwrap_or_else(|e| {
            errors.push(e);
            SensitivityScale::default()
        });
        let poll = (self.poll_ms > 0).then(|| Duration::from_millis(self.poll_ms));
        (scale, poll)
    }
}

pub(super) const SECTION: Section = Section {
    name: "policies",
    doc: "Cedar policies, the schema, and what they are evaluated over at start.",
    optional: false,
    keys: &[
        key("dir", "Every *.cedar below this directory is loaded."),
        key("schema", "The Cedar schema."),
        example(
            "catalog",
            "The registry at start: groups, users, workloads, agents and resources\n(default: catalog.toml beside this file, when there is one).",
            "\"./examples/catalog.toml\"",
        ),
        example(
            "entities",
            "Cedar entities JSON, only for entity types a user schema adds.",
            "\"./entities.json\"",
        ),
        key(
            "sensitivity_levels",
            "Sensitivity levels, lowest first: a level's number is its position.",
        ),
        key(
            "poll_ms",
            "Policy files are reloaded when they change, checked this often (0: only\non SIGHUP and PolicyService.Reload).",
        ),
        example(
            "validation_level",
            "Cedar level-based validation of the policies at this level.",
            "2",
        ),
    ],
};
