//! The documentation against the code: the reason codes of
//! `docs/reasons.md` are exactly the `Reason` enum's, every relative link
//! in the repository's Markdown reaches a file (and a heading, when it
//! names one), and the README stays a front door.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use mandate::decision::Reason;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The codes in the first column of the first table of `docs/reasons.md`.
fn documented_reasons() -> BTreeSet<String> {
    let text = std::fs::read_to_string(repo().join("docs/reasons.md")).unwrap();
    let table = text
        .lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .skip(2);
    let mut codes = BTreeSet::new();
    for row in table {
        let first = row.split('|').nth(1).unwrap();
        codes.extend(first.split('`').skip(1).step_by(2).map(str::to_owned));
    }
    codes
}

#[test]
fn the_reason_table_lists_exactly_the_reason_enum() {
    let documented = documented_reasons();
    let declared: BTreeSet<String> = Reason::ALL.iter().map(|r| r.as_str().to_owned()).collect();
    let undocumented: Vec<_> = declared.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&declared).collect();
    assert!(
        undocumented.is_empty() && unknown.is_empty(),
        "docs/reasons.md is missing {undocumented:?} and lists {unknown:?}, which `Reason` does not have"
    );
}

/// Every Markdown file of the repository, outside build output and
/// installed tools.
fn markdown_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if !(name.starts_with('.') || name == "target" || name == "node_modules") {
                markdown_files(&path, out);
            }
        } else if name.ends_with(".md") {
            out.push(path);
        }
    }
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces
/// as hyphens.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The text outside fenced code blocks.
fn prose(text: &str) -> Vec<&str> {
    let mut fenced = false;
    text.lines()
        .filter(|line| {
            if line.trim_start().starts_with("```") {
                fenced = !fenced;
                return false;
            }
            !fenced
        })
        .collect()
}

fn anchors(file: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(file).unwrap();
    prose(&text)
        .into_iter()
        .filter(|line| line.starts_with('#'))
        .map(|line| anchor(line.trim_start_matches('#')))
        .collect()
}

/// The targets of the inline links `[text](target)` of one line.
fn link_targets(line: &str) -> Vec<&str> {
    line.match_indices("](")
        .filter_map(|(at, _)| {
            let rest = &line[at + 2..];
            rest.find(')').map(|end| &rest[..end])
        })
        .collect()
}

#[test]
fn every_relative_link_reaches_its_file_and_heading() {
    let mut files = Vec::new();
    markdown_files(&repo(), &mut files);
    assert!(files.len() > 10, "found only {files:?}");
    let mut broken = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for line in prose(&text) {
            for target in link_targets(line) {
                if target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                let (path, heading) = target.split_once('#').unwrap_or((target, ""));
                let linked = if path.is_empty() {
                    file.clone()
                } else {
                    file.parent().unwrap().join(path)
                };
                let shown = file.strip_prefix(repo()).unwrap().display();
                if !linked.exists() {
                    broken.push(format!("{shown}: {target}: no such file"));
                } else if !heading.is_empty()
                    && linked.extension().is_some_and(|e| e == "md")
                    && !anchors(&linked).contains(heading)
                {
                    broken.push(format!("{shown}: {target}: no such heading"));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_readme_is_a_front_door() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    assert!(
        readme.len() < 10 * 1024,
        "README.md is {} bytes: reference material belongs in docs/",
        readme.len()
    );
    // CI runs exactly this command (`.ci/run`).
    assert!(readme.contains("\ncargo test                     # run the whole test suite"));
    let ci = std::fs::read_to_string(repo().join(".ci/run")).unwrap();
    assert!(ci.lines().any(|line| line == "cargo test"), "{ci}");
}
