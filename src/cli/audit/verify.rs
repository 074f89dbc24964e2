//! `mandate audit verify FILE...` and `mandate audit verify --store URL`:
//! checks the hash chain of decision log files (rotated files oldest
//! first: `decisions.jsonl.2 decisions.jsonl.1 decisions.jsonl`) or of
//! every chain in a store's audit table, and reports the first broken link.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::audit::{GENESIS, VerifiedChain, verify_files, verify_table};
use crate::cli::EXIT_USAGE;

#[derive(Debug, Args)]
pub(in crate::cli) struct VerifyArgs {
    /// Decision log files, oldest first.
    #[arg(value_name = "FILE", required_unless_present = "store")]
    files: Vec<PathBuf>,
    /// Verify the store sink's chains in this store instead (`sqlite://PATH`
    /// or `postgres://...`; its schema is brought up to date first, as
    /// `mandate store migrate` would).
    #[arg(long, value_name = "URL")]
    store: Option<String>,
    /// Only this chain of the store (one replica's) [default: all].
    #[arg(long, value_name = "NAME", requires = "store")]
    chain: Option<String>,
}

pub(super) fn run(args: &VerifyArgs) -> ExitCode {
    let mut worst = ExitCode::SUCCESS;
    if !args.files.is_empty() {
        worst = files(&args.files);
    }
    if let Some(url) = &args.store {
        let code = store(url, args.chain.as_deref());
        if code != ExitCode::SUCCESS {
            worst = code;
        }
    }
    worst
}

fn files(files: &[PathBuf]) -> ExitCode {
    match verify_files(files) {
        Ok(verified) => {
            println!(
                "ok: {} records, seq {} to {}, intact",
                verified.lines, verified.first_seq, verified.last_seq
            );
            if verified.anchor == GENESIS {
                println!("the chain starts in the first file");
            } else {
                println!(
                    "the first record continues a chain from an earlier file (its `prev_hash` is `{}`); give that file first to check the link",
                    verified.anchor
                );
            }
            println!("last hash: {}", verified.last_hash);
            ExitCode::SUCCESS
        }
        Err(broken) if broken.line == 0 => {
            eprintln!("error: {broken}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(broken) => {
            println!("broken: {broken}");
            ExitCode::from(1)
        }
    }
}

fn store(url: &str, chain: Option<&str>) -> ExitCode {
    let runtime = match super::super::runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let answers = runtime.block_on(async {
        // Reads only: the server writing the chains may be running.
        let store = crate::store::open_to_read(url).await?;
        let answers = verify_table(store.audit_table().as_ref(), chain).await;
        store.close().await;
        answers
    });
    let answers = match answers {
        Ok(answers) => answers,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if answers.is_empty() {
        eprintln!(
            "error: no audit rows in `{}`; is `[audit] store = true`?",
            crate::store::redact(url)
        );
        return ExitCode::from(EXIT_USAGE);
    }
    let mut code = ExitCode::SUCCESS;
    for answer in answers {
        match answer {
            Ok(verified) => println!("{}", describe(&verified)),
            Err(broken) if broken.seq == 0 => {
                eprintln!("error: {broken}");
                code = ExitCode::from(EXIT_USAGE);
            }
            Err(broken) => {
                println!("broken: {broken}");
                code = ExitCode::from(1);
            }
        }
    }
    code
}

fn describe(v: &VerifiedChain) -> String {
    let start = match &v.pruned {
        None => "from its first record".to_owned(),
        Some(cut) => format!(
            "from the first row kept by retention (seq {} and before were pruned; the link to seq {} checked)",
            cut.seq, cut.seq
        ),
    };
    if v.rows == 0 {
        return format!(
            "ok: chain `{}`: no rows kept (retention pruned up to seq {})",
            v.chain,
            v.pruned.as_ref().map_or(0, |c| c.seq)
        );
    }
    format!(
        "ok: chain `{}`: {} rows, seq {} to {}, intact {start}; last hash {}",
        v.chain, v.rows, v.first_seq, v.last_seq, v.last_hash
    )
}
