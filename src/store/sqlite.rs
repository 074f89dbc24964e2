//! The embedded backend: one SQLite file, in WAL mode with
//! `synchronous=FULL`, so a commit is on disk before it is acknowledged and
//! survives a crash of the process and of the machine. Opening it is
//! SQLite's own; the rest is [`SqlStore`]'s.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqliteSynchronous};

use super::sql::{Backend, SqlPool, SqlStore};
use super::{ChangeListener, StoreError};

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// A SQLite store.
pub type SqliteStore = SqlStore<sqlx::Sqlite>;

impl SqlStore<sqlx::Sqlite> {
    /// Opens (creating) the database at `path` and migrates it, refusing
    /// when another process has it open.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, true).await
    }

    /// [`SqliteStore::open`] without the process lock: for commands that
    /// only read beside a running server, and tests holding several
    /// handles on one file; never for a server or anything that writes
    /// state.
    pub async fn open_unlocked(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, false).await
    }

    async fn open_with(path: &Path, locked: bool) -> Result<Self, StoreError> {
        let fail = |e: &dyn std::fmt::Display| StoreError::Open {
            url: format!("sqlite://{}", path.display()),
            message: e.to_string(),
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| fail(&e))?;
        }
        // Created the owner's alone (SQLite gives its WAL and shared
        // memory files the database's mode); an existing file keeps its.
        if !path.exists() {
            std::os::unix::fs::OpenOptionsExt::mode(
                std::fs::OpenOptions::new().write(true).create_new(true),
                0o600,
            )
            .open(path)
            .map_err(|e| fail(&e))?;
        }
        let lock = if locked {
            Some(exclusive_lock(path).map_err(|message| StoreError::Open {
                url: format!("sqlite://{}", path.display()),
                message,
            })?)
        } else {
            None
        };
        let options = SqliteConnectOptions::from_str("sqlite:")
            .map_err(|e| fail(&e))?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: the WAL is synced at every commit, so an acknowledged
            // write survives power loss, not only a crash of the process.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = sqlx::pool::PoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|e| fail(&e))?;
        Self::migrated(pool, &MIGRATIONS, lock).await
    }
}

/// Takes the lock that makes one process at a time use the file at
/// `path`; the operating system lets it go when the process ends, however
/// it ends.
fn exclusive_lock(path: &Path) -> Result<std::fs::File, String> {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let file = std::os::unix::fs::OpenOptionsExt::mode(
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true),
        0o600,
    )
    .open(&name)
    .map_err(|e| {
        format!(
            "cannot open the lock file `{}`: {e}",
            Path::new(&name).display()
        )
    })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(
            "another process (a running `mandate serve`?) has this SQLite store open; \
             one process at a time may use it: stop that one first, or share a \
             PostgreSQL store between replicas"
                .to_owned(),
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(format!("cannot lock `{}`: {e}", Path::new(&name).display()))
        }
    }
}

#[async_trait::async_trait]
impl Backend for sqlx::Sqlite {
    const BACKEND: &'static str = "sqlite";
    const SHARED: bool = false;
    // In WAL mode the first read fixes what the transaction sees.
    const LOAD_ISOLATION: Option<&'static str> = None;
    // One process per file: nobody to wake.
    const ANNOUNCE_COMMIT: Option<&'static str> = None;

    fn pool(pool: &SqlitePool) -> SqlPool {
        SqlPool::Sqlite(pool.clone())
    }

    async fn listen(_: &SqlitePool) -> Result<Option<Box<dyn ChangeListener>>, StoreError> {
        Ok(None)
    }
}
