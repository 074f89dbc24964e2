//! `mandate policy fmt`: Cedar's own formatter (`cedar-policy-formatter`).

use std::path::{Path, PathBuf};

use cedar_policy_formatter::{Config, policies_str_to_pretty};
use clap::Args;

use super::Failure;
use crate::config::POLICIES;

#[derive(Debug, Args)]
pub(in crate::cli) struct FmtArgs {
    /// Directory of `*.cedar` policies (or one file) [default: ./policies].
    #[arg(default_value = POLICIES)]
    path: PathBuf,
    /// Change nothing; list the files that would change and exit 1 if any.
    #[arg(long)]
    check: bool,
    /// Line width.
    #[arg(long, default_value_t = 80)]
    line_width: usize,
    /// Indentation width.
    #[arg(long, default_value_t = 2)]
    indent: isize,
}

fn cedar_files(path: &Path) -> Result<Vec<PathBuf>, Failure> {
    if path.is_file() {
        return Ok(vec![path.to_owned()]);
    }
    if !path.is_dir() {
        return Err(Failure::Usage(format!(
            "`{}` does not exist",
            path.display()
        )));
    }
    let mut files = Vec::new();
    let mut pending = vec![path.to_owned()];
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| Failure::Usage(format!("cannot read `{}`: {e}", dir.display())))?;
        for entry in entries.flatten() {
            let p = entry.path();
            if p.is_dir() {
                pending.push(p);
            } else if p.extension().is_some_and(|e| e == "cedar") {
                files.push(p);
            }
        }
    }
    files.sort();
    Ok(files)
}

pub(super) fn run(args: &FmtArgs) -> Result<(), Failure> {
    let config = Config {
        line_width: args.line_width,
        indent_width: args.indent,
    };
    let mut changed = Vec::new();
    let mut broken = Vec::new();
    for file in cedar_files(&args.path)? {
        let text = std::fs::read_to_string(&file)
            .map_err(|e| Failure::Usage(format!("cannot read `{}`: {e}", file.display())))?;
        let pretty = match policies_str_to_pretty(&text, &config) {
            Ok(pretty) => pretty,
            Err(e) => {
                broken.push(format!("{}: cannot format: {e}", file.display()));
                continue;
            }
        };
        if pretty != text {
            if !args.check {
                std::fs::write(&file, &pretty).map_err(|e| {
                    Failure::Usage(format!("cannot write `{}`: {e}", file.display()))
                })?;
            }
            changed.push(file);
        }
    }
    for file in &changed {
        println!(
            "{}{}",
            if args.check {
                "would reformat "
            } else {
                "formatted "
            },
            file.display()
        );
    }
    if !broken.is_empty() {
        return Err(Failure::Failed(broken));
    }
    if args.check && !changed.is_empty() {
        return Err(Failure::Failed(vec![format!(
            "{} file(s) are not formatted; run `mandate policy fmt`",
            changed.len()
        )]));
    }
    Ok(())
}
