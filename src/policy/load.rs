//! Reading policy, schema and entities files into Cedar values.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use cedar_policy::{Entities, PolicyId, PolicySet, Schema, ValidationMode, Validator};

use super::{PolicyError, Problem};

/// Where a policy came from, for error messages and explanations.
#[derive(Debug, Clone)]
pub(crate) struct PolicySource {
    pub file: PathBuf,
    pub line: usize,
    text: std::sync::Arc<str>,
}

fn read(path: &Path) -> Result<String, PolicyError> {
    std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
        path: path.to_owned(),
        source,
    })
}

/// The text of a policy set: every policy file and the schema, read once,
/// so a set can be loaded from disk or from a request (`Validate`) alike.
#[derive(Debug, Clone)]
pub struct Sources {
    /// The directory policy ids are named relative to.
    pub dir: PathBuf,
    /// `*.cedar` files and their text, in a stable order.
    pub files: Vec<(PathBuf, std::sync::Arc<str>)>,
    /// The schema file's name.
    pub schema_path: PathBuf,
    /// The schema's text (Cedar schema syntax).
    pub schema_text: String,
}

impl Sources {
    /// Reads every `*.cedar` under `dir` (recursively) and the schema.
    pub fn read(dir: &Path, schema_file: &Path) -> Result<Self, PolicyError> {
        let files = cedar_files(dir)?
            .into_iter()
            .map(|f| read(&f).map(|text| (f, text.into())))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            dir: dir.to_owned(),
            files,
            schema_path: schema_file.to_owned(),
            schema_text: read(schema_file)?,
        })
    }

    /// `sha256:` and hex over every file's name (relative to `dir`) and
    /// text, then the schema's text: the id of a policy set in decisions,
    /// status and logs.
    pub fn hash(&self, unknown_sensitivity: i64) -> String {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        let mut files: Vec<(String, &str)> = self
            .files
            .iter()
            .map(|(path, text)| {
                let name = path.strip_prefix(&self.dir).unwrap_or(path);
                (name.to_string_lossy().into_owned(), text.as_ref())
            })
            .collect();
        files.sort();
        for (name, text) in files {
            for part in [name.as_bytes(), b"\0", text.as_bytes(), b"\0"] {
                hasher.update(part);
            }
        }
        hasher.update(b"schema\0");
        hasher.update(self.schema_text.as_bytes());
        hasher.update(format!("\0unknown-sensitivity={unknown_sensitivity}").as_bytes());
        let hex: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("sha256:{hex}")
    }
}

/// Parses a schema in the Cedar schema syntax.
pub(super) fn schema(path: &Path, text: &str) -> Result<Schema, PolicyError> {
    match Schema::from_cedarschema_str(text) {
        Ok((schema, warnings)) => {
            for warning in warnings {
                tracing::warn!(file = %path.display(), %warning, "schema warning");
            }
            Ok(schema)
        }
        Err(e) => Err(PolicyError::Invalid {
            problems: vec![Problem::from_diagnostic(path, text, &e)],
        }),
    }
}

/// Every `*.cedar` file under `dir`, recursively, in a stable order.
/// Hidden entries (`.git`, Kubernetes ConfigMap's `..data` and its
/// timestamped directories) are skipped, and symbolic links to directories
/// are not followed, so a ConfigMap's files load once and a link loop
/// cannot trap the walk; links to files are read.
pub(crate) fn cedar_files(dir: &Path) -> Result<Vec<PathBuf>, PolicyError> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(current) = pending.pop() {
        let entries = std::fs::read_dir(&current).map_err(|source| PolicyError::Read {
            path: current.clone(),
            source,
        })?;
        for entry in entries {
            let path = entry
                .map_err(|source| PolicyError::Read {
                    path: current.clone(),
                    source,
                })?
                .path();
            let hidden = path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'));
            let linked_dir =
                std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_symlink()) && path.is_dir();
            if hidden || linked_dir {
                continue;
            }
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "cedar") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Parses every policy file, giving each policy a stable id: its
/// `@id("...")` annotation, else `file-stem.N` (N counts from 0 in the file;
/// files in subdirectories keep their relative path, as in `team/file.N`,
/// so equal file names in two folders cannot collide).
pub(super) fn policies(
    dir: &Path,
    files: &[(PathBuf, std::sync::Arc<str>)],
) -> Result<(PolicySet, HashMap<PolicyId, PolicySource>), PolicyError> {
    let mut set = PolicySet::new();
    let mut sources = HashMap::new();
    let mut problems = Vec::new();

    for (file, text) in files {
        let (file, text) = (file.clone(), text.clone());
        let parsed = match PolicySet::from_str(&text) {
            Ok(parsed) => parsed,
            Err(errors) => {
                problems.extend(
                    errors
                        .iter()
                        .map(|e| Problem::from_diagnostic(&file, &text, e)),
                );
                continue;
            }
        };
        if parsed.templates().next().is_some() {
            problems.push(Problem {
                excerpt: None,
                file: file.clone(),
                location: None,
                message: "policy templates are not supported yet".to_owned(),
            });
            continue;
        }
        let stem = file
            .strip_prefix(dir)
            .unwrap_or(&file)
            .with_extension("")
            .to_string_lossy()
            .into_owned();
        // Cedar names parsed policies `policy0`, `policy1`, ... in file order.
        let mut in_file: Vec<_> = parsed.policies().collect();
        in_file.sort_by_key(|p| {
            p.id()
                .to_string()
                .trim_start_matches("policy")
                .parse::<usize>()
                .unwrap_or(usize::MAX)
        });
        let mut search_from = 0;
        for (n, policy) in in_file.into_iter().enumerate() {
            let id = policy
                .annotation("id")
                .map_or_else(|| format!("{stem}.{n}"), ToOwned::to_owned);
            let policy_text = policy.to_string();
            let offset = text
                .get(search_from..)
                .and_then(|rest| rest.find(policy_text.as_str()))
                .map_or(search_from, |found| search_from + found);
            search_from = offset + policy_text.len().min(text.len() - offset);
            let (line, _) = super::error::line_column(&text, offset);
            if id.starts_with(super::guards::RESERVED_PREFIX) {
                problems.push(Problem {
                    excerpt: None,
                    file: file.clone(),
                    location: Some((line, 1)),
                    message: format!(
                        "policy id `{id}` is reserved: ids starting with `{}` belong to built-in guards",
                        super::guards::RESERVED_PREFIX
                    ),
                });
                continue;
            }
            let id = PolicyId::new(id);
            if let Some(existing) = sources.get(&id) {
                let existing: &PolicySource = existing;
                problems.push(Problem {
                    excerpt: None,
                    file: file.clone(),
                    location: Some((line, 1)),
                    message: format!(
                        "policy id `{id}` is already used at {}:{}",
                        existing.file.display(),
                        existing.line
                    ),
                });
                continue;
            }
            if let Err(e) = set.add(policy.new_id(id.clone())) {
                problems.push(Problem {
                    excerpt: None,
                    file: file.clone(),
                    location: Some((line, 1)),
                    message: e.to_string(),
                });
                continue;
            }
            sources.insert(
                id,
                PolicySource {
                    file: file.clone(),
                    line,
                    text: text.clone(),
                },
            );
        }
    }
    if problems.is_empty() {
        Ok((set, sources))
    } else {
        Err(PolicyError::Invalid { problems })
    }
}

/// Strict validation of the whole set against the schema. Warnings (such as
/// a policy that can never apply) are returned; errors refuse the set.
pub(super) fn validate(
    schema: &Schema,
    policies: &PolicySet,
    sources: &HashMap<PolicyId, PolicySource>,
    level: Option<u32>,
) -> Result<Vec<Problem>, PolicyError> {
    let validator = Validator::new(schema.clone());
    // Level-based validation also bounds how deep policies may follow
    // entity references, which bounds the entity slice a decision needs.
    let result = match level {
        Some(level) => validator.validate_with_level(policies, ValidationMode::Strict, level),
        None => validator.validate(policies, ValidationMode::Strict),
    };
    let problem = |id: &PolicyId, diagnostic: &dyn miette::Diagnostic| match sources.get(id) {
        Some(source) => Problem::from_diagnostic(&source.file, &source.text, diagnostic),
        None => Problem {
            excerpt: None,
            file: PathBuf::from(id.to_string()),
            location: None,
            message: diagnostic.to_string(),
        },
    };
    let warnings: Vec<Problem> = result
        .validation_warnings()
        .map(|warning| problem(warning.policy_id(), warning))
        .collect();
    let problems: Vec<Problem> = result
        .validation_errors()
        .map(|error| problem(error.policy_id(), error))
        .collect();
    if problems.is_empty() {
        Ok(warnings)
    } else {
        Err(PolicyError::Invalid { problems })
    }
}

/// The entities file is for types a user schema adds in its own
/// namespace: `Mandate::` entities come from the catalog (registry) or from
/// live state (tasks, approvals), where they are checked and kept in one
/// place.
const MANAGED_NAMESPACE: &str = "Mandate::";

/// Reads a Cedar entities JSON file, checked against the schema.
pub(super) fn entities(path: &Path, schema: &Schema) -> Result<Entities, PolicyError> {
    let text = read(path)?;
    let entities =
        Entities::from_json_str(&text, Some(schema)).map_err(|e| PolicyError::Invalid {
            problems: vec![Problem::from_diagnostic(path, &text, &e)],
        })?;
    // Parsing against the schema adds the schema's action entities; they
    // are the engine's (`PolicyEngine::action_slice`), not the file's.
    let actions: std::collections::HashSet<_> = schema.actions().collect();
    let declared: Vec<cedar_policy::Entity> = entities
        .into_iter()
        .filter(|e| !actions.contains(&e.uid()))
        .collect();
    let problems: Vec<Problem> = declared
        .iter()
        .filter(|e| e.uid().type_name().to_string().starts_with(MANAGED_NAMESPACE))
        .map(|e| Problem {
            excerpt: None,
            file: path.to_owned(),
            location: None,
            message: format!(
                "`{}` cannot be declared here: agents, workloads, users, groups and resources belong in the catalog, tasks and approvals come from live state only",
                e.uid()
            ),
        })
        .collect();
    if !problems.is_empty() {
        return Err(PolicyError::Invalid { problems });
    }
    Entities::from_entities(declared, None).map_err(|e| PolicyError::Invalid {
        problems: vec![Problem::unlocated(path, e.to_string())],
    })
}
