//! What can be wrong with a configuration: each problem names its key as
//! `section.key`, the way `mandate.toml` spells it, whether the value came
//! from the file or from a flag (docs/configuration.md maps flags to keys).

use std::fmt;
use std::path::PathBuf;

/// One problem with the configuration.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read config `{}`: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not TOML, or a value has the wrong type.
    #[error("config `{}`: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message, with the line.
        message: String,
    },
    /// A key no section has.
    #[error("config `{}`: unknown key `{key}`{}", path.display(), known_hint(known))]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// The key, as `section.key`.
        key: String,
        /// The keys (or sections) that are known where it was found.
        known: Vec<&'static str>,
    },
    /// A key of the flat layout that came before the sections.
    #[error(
        "config `{}`: `{old}` is a key of the old flat layout; it is now `{new}` (write `{}` under `[{}]`)",
        path.display(),
        leaf(new),
        section(new)
    )]
    OldKey {
        /// The file.
        path: PathBuf,
        /// The old key.
        old: String,
        /// Its new name, `section.key`.
        new: &'static str,
    },
    /// A value that is not acceptable.
    #[error("`{key}` `{value}` {problem}")]
    BadValue {
        /// The key, as `section.key`.
        key: String,
        /// The value given.
        value: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A file that does not exist.
    #[error("`{key}` `{}` does not exist", path.display())]
    NoSuchFile {
        /// The key, as `section.key`.
        key: String,
        /// The path given.
        path: PathBuf,
    },
    /// A rule about a key (a bound, a key missing or out of place).
    #[error("`{key}` {problem}")]
    Key {
        /// The key, as `section.key`.
        key: String,
        /// What is wrong.
        problem: String,
    },
    /// A command-line flag that cannot be read.
    #[error("`{flag}` {problem}")]
    Flag {
        /// The flag as given.
        flag: String,
        /// What is wrong.
        problem: String,
    },
}

impl ConfigError {
    /// A problem with `key`.
    pub fn key(key: impl Into<String>, problem: impl Into<String>) -> Self {
        Self::Key {
            key: key.into(),
            problem: problem.into(),
        }
    }

    /// A bad `value` of `key`.
    pub fn bad(
        key: impl Into<String>,
        value: impl fmt::Display,
        problem: impl Into<String>,
    ) -> Self {
        Self::BadValue {
            key: key.into(),
            value: value.to_string(),
            problem: problem.into(),
        }
    }

    /// `path`, the value of `key`, is not there.
    pub fn no_file(key: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        Self::NoSuchFile {
            key: key.into(),
            path: path.into(),
        }
    }

    /// The key this problem is about, as `section.key`, if one.
    pub fn key_name(&self) -> Option<&str> {
        match self {
            Self::UnknownKey { key, .. }
            | Self::BadValue { key, .. }
            | Self::NoSuchFile { key, .. }
            | Self::Key { key, .. } => Some(key),
            Self::OldKey { old, .. } => Some(old),
            Self::Read { .. } | Self::Syntax { .. } | Self::Flag { .. } => None,
        }
    }
}

fn known_hint(known: &[&str]) -> String {
    if known.is_empty() {
        String::new()
    } else {
        format!("; known here: {}", known.join(", "))
    }
}

fn section(key: &str) -> &str {
    key.rsplit_once('.').map_or(key, |(section, _)| section)
}

fn leaf(key: &str) -> &str {
    key.rsplit_once('.').map_or(key, |(_, leaf)| leaf)
}

/// Every problem found, reported together so one run shows them all.
#[derive(Debug, Default, thiserror::Error, miette::Diagnostic)]
#[error("{}", self.0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// Adds one.
    pub fn push(&mut self, error: ConfigError) {
        self.0.push(error);
    }

    /// A problem with `key`.
    pub fn key(&mut self, key: impl Into<String>, problem: impl Into<String>) {
        self.push(ConfigError::key(key, problem));
    }

    /// A bad `value` of `key`.
    pub fn bad(
        &mut self,
        key: impl Into<String>,
        value: impl fmt::Display,
        problem: impl Into<String>,
    ) {
        self.push(ConfigError::bad(key, value, problem));
    }

    /// `path`, the value of `key`, must exist as a file.
    pub fn file(&mut self, key: &str, path: &std::path::Path) {
        if !path.is_file() {
            self.push(ConfigError::no_file(key, path));
        }
    }

    /// `value` of `key` must be at least 1.
    pub fn at_least_one(&mut self, key: &str, value: u64) {
        if value == 0 {
            self.key(key, "must be at least 1");
        }
    }

    /// No problem found.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(value)` when no problem was found.
    pub fn or_ok<T>(self, value: T) -> Result<T, Self> {
        if self.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }

    /// The messages, one a line, as printed after `error: `.
    pub fn lines(&self) -> Vec<String> {
        self.0.iter().map(ToString::to_string).collect()
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        Self(vec![error])
    }
}
