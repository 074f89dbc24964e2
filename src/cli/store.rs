//! `mandate store`: bring a store's schema up to date, and export or import
//! its state as JSON lines, for backups and for moving between backends
//! (SQLite to PostgreSQL and back). Signing keys travel sealed.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::{EXIT_USAGE, runtime};
use crate::config::{DATA_DIR, STORE_FILE};
use crate::store::{ExportRow, StoreError};

#[derive(Debug, Subcommand)]
pub(super) enum StoreCommand {
    /// Create the store or bring its schema up to date, then exit.
    Migrate(StoreArgs),
    /// Write every row as JSON lines (stdout or `--output`).
    Export {
        #[command(flatten)]
        store: StoreArgs,
        /// Write here instead of stdout.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Read JSON lines (stdin or `--input`) into an empty store.
    Import {
        #[command(flatten)]
        store: StoreArgs,
        /// Read from here instead of stdin.
        #[arg(long, value_name = "FILE")]
        input: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub(super) struct StoreArgs {
    /// The store: `sqlite://PATH` or `postgres://...` [default:
    /// sqlite://DATA_DIR/mandate.db].
    #[arg(long, env = "MANDATE_STORE", value_name = "URL")]
    store: Option<String>,
    /// Data directory, for the default store.
    #[arg(long, value_name = "DIR", default_value = DATA_DIR)]
    data_dir: PathBuf,
}

impl StoreArgs {
    fn url(&self) -> String {
        self.store
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join(STORE_FILE).display()))
    }
}

/// Why a store command failed.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Io(String),
    #[error("line {line}: {message}")]
    BadLine { line: usize, message: String },
}

pub(super) fn run(command: StoreCommand) -> ExitCode {
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let result = runtime.block_on(async {
        match command {
            StoreCommand::Migrate(args) => migrate(&args).await,
            StoreCommand::Export { store, output } => export(&store, output).await,
            StoreCommand::Import { store, input } => import(&store, input).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Store(e @ StoreError::BadUrl(_))) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn migrate(args: &StoreArgs) -> Result<(), Failure> {
    // Opening runs the migrations.
    let store = crate::store::open(&args.url()).await?;
    eprintln!(
        "store `{}` ({}) is up to date at revision {}",
        crate::store::redact(&args.url()),
        store.backend(),
        store.head().await?
    );
    Ok(())
}

async fn export(args: &StoreArgs, output: Option<PathBuf>) -> Result<(), Failure> {
    // Reads only: a backup may be taken while the server runs.
    let store = crate::store::open_to_read(&args.url()).await?;
    let rows = store.export().await?;
    let mut out: Box<dyn Write> = match &output {
        Some(path) => Box::new(std::io::BufWriter::new(
            // The backup holds every task and approval: the owner's alone.
            std::os::unix::fs::OpenOptionsExt::mode(
                std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true),
                0o600,
            )
            .open(path)
            .map_err(|e| Failure::Io(format!("cannot create `{}`: {e}", path.display())))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    for row in &rows {
        let line = serde_json::to_string(row).map_err(|e| Failure::Io(e.to_string()))?;
        writeln!(out, "{line}").map_err(|e| Failure::Io(e.to_string()))?;
    }
    out.flush().map_err(|e| Failure::Io(e.to_string()))?;
    eprintln!("exported {} rows", rows.len());
    Ok(())
}

async fn import(args: &StoreArgs, input: Option<PathBuf>) -> Result<(), Failure> {
    let reader: Box<dyn BufRead> = match &input {
        Some(path) => Box::new(std::io::BufReader::new(
            std::fs::File::open(path)
                .map_err(|e| Failure::Io(format!("cannot open `{}`: {e}", path.display())))?,
        )),
        None => Box::new(std::io::BufReader::new(std::io::stdin().lock())),
    };
    let mut rows = Vec::new();
    for (index, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| Failure::Io(e.to_string()))?;
        if line.trim().is_empty() {
            continue;
        }
        let row: ExportRow = serde_json::from_str(&line).map_err(|e| Failure::BadLine {
            line: index + 1,
            message: e.to_string(),
        })?;
        rows.push(row);
    }
    let store = crate::store::open(&args.url()).await?;
    store.import(&rows).await?;
    eprintln!(
        "imported {} rows; the store is at revision {}",
        rows.len(),
        store.head().await?
    );
    Ok(())
}
