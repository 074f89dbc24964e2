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
    /// The text the problem is in and the byte span it points at, for a
    /// caret excerpt.
    pub excerpt: Option<Excerpt>,
}

/// Where in a file's text a problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Excerpt {
    /// The whole text of the file.
    pub text: std::sync::Arc<str>,
    /// Byte offset of the span.
    pub offset: usize,
    /// Byte length of the span (at least 1 when rendered).
    pub len: usize,
}

impl Problem {
    /// A problem with no location.
    pub fn unlocated(file: &Path, message: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            location: None,
            message: message.into(),
            excerpt: None,
        }
    }

    /// The problem rendered with a caret excerpt of its source (miette's
    /// graphical report, without colour), or its one-line form.
    pub fn render(&self) -> String {
        let Some(excerpt) = &self.excerpt else {
            return format!("error: {self}");
        };
        let label =
            miette::LabeledSpan::at(excerpt.offset..excerpt.offset + excerpt.len.max(1), "here");
        let diagnostic = miette::MietteDiagnostic::new(format!("{self}")).with_labels([label]);
        let report = miette::Report::new(diagnostic).with_source_code(miette::NamedSource::new(
            self.file.display().to_string(),
            excerpt.text.to_string(),
        ));
        let mut out = String::new();
        let handler =
            miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor());
        match handler.render_report(&mut out, report.as_ref()) {
            Ok(()) => out,
            Err(_) => format!("error: {self}"),
        }
    }
}

impl Problem {
    /// A problem located by a miette diagnostic's first label in `text`.
    pub fn from_diagnostic(file: &Path, text: &str, diagnostic: &dyn miette::Diagnostic) -> Self {
        let label = diagnostic.labels().and_then(|mut labels| labels.next());
        let location = label
            .as_ref()
            .map(|label| line_column(text, label.offset()));
        let mut message = diagnostic.to_string();
        if let Some(help) = diagnostic.help() {
            message.push_str(&format!(" (help: {help})"));
        }
        Self {
            file: file.to_owned(),
            location,
            message,
            excerpt: label.map(|label| Excerpt {
                text: text.into(),
                offset: label.offset(),
                len: label.len(),
            }),
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
