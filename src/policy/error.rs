//! Errors of the policy boundary, each pointing at a file and line.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in a policy, schema or entities file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file.
    pub file: PathBuf,
    /// 1-based line and column, when the error has a location.
    pub location: Option<(usize, usize)>,
    /// What is wrong, and how to fix it when Cedar says.
    pub message: String,
}

impl Problem {
    /// A problem located by a miette diagnostic's first label in `text`.
    pub fn from_diagnostic(file: &Path, text: &str, diagnostic: &dyn miette::Diagnostic) -> Self {
        let location = diagnostic
            .labels()
            .and_then(|mut labels| labels.next())
            .map(|label| line_column(text, label.offset()));
        let mut message = diagnostic.to_string();
        if let Some(help) = diagnostic.help() {
            message.push_str(&format!(" (help: {help})"));
        }
        Self {
            file: file.to_owned(),
            location,
            message,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.location {
            Some((line, column)) => write!(
                f,
                "{}:{line}:{column}: {}",
                self.file.display(),
                self.message
            ),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// 1-based line and column of a byte offset.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(before.chars().count(), |nl| {
        before.get(nl + 1..).map_or(0, |l| l.chars().count())
    }) + 1;
    (line, column)
}

/// Why a policy snapshot could not be loaded.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum PolicyError {
    /// A file or directory could not be read.
    #[error("cannot read `{path}`: {source}")]
    Read {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The schema is invalid.
    #[error("schema `{path}` is invalid: {message}")]
    Schema {
        /// The schema file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Policies or entities do not parse or do not validate.
    #[error("{}", problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid {
        /// Every problem found, one per line.
        problems: Vec<Problem>,
    },
}

#[cfg(test)]
mod tests {
    use super::line_column;

    #[test]
    fn line_column_is_one_based() {
        let text = "ab\ncd\nef";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 4), (2, 2));
        assert_eq!(line_column(text, 6), (3, 1));
    }
}
