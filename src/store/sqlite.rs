//! The embedded backend: one SQLite file, in WAL mode with
//! `synchronous=FULL`, so a commit is on disk before it is acknowledged and
//! survives a crash of the process and of the machine.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqliteSynchronous};

use super::error::{from_db, to_db};
use super::record::{self, ChangeRecord};
use super::{Change, ChangeListener, ExportRow, Loaded, Store, StoreError};

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// A SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// The exclusive lock on `<file>.lock`, held while the store is open:
    /// nothing follows a SQLite file's change log, so a second process on
    /// the same file would never see this one's writes (a revoke, say).
    _lock: Option<std::sync::Arc<std::fs::File>>,
}

impl SqliteStore {
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
        MIGRATIONS
            .run(&pool)
            .await
            .map_err(|e| StoreError::Migrate(e.to_string()))?;
        Ok(Self {
            pool,
            _lock: lock.map(std::sync::Arc::new),
        })
    }

    /// The pool, for tools and benchmarks that fill a store in bulk.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
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

fn unavailable(e: sqlx::Error) -> StoreError {
    StoreError::query(e, None)
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn shared(&self) -> bool {
        false
    }

    async fn load(&self) -> Result<Loaded, StoreError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        // In WAL mode the first read fixes what the transaction sees.
        let loaded = super::snapshot::load::<sqlx::Sqlite>(&mut tx).await?;
        tx.rollback().await.map_err(unavailable)?;
        Ok(loaded)
    }

    async fn commit(&self, revision: u64, change: &Change, at: i64) -> Result<(), StoreError> {
        let conflict = |e| StoreError::query(e, Some(revision));
        let rev = to_db(revision);
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let body = record::to_json(&ChangeRecord::from(change))?;
        sqlx::query("INSERT INTO change_log (revision, recorded_at, body) VALUES (?1, ?2, ?3)")
            .bind(rev)
            .bind(at)
            .bind(body)
            .execute(&mut *tx)
            .await
            .map_err(conflict)?;
        for (table, key, body) in rows_of(change)? {
            let sql = match table {
                "tasks" => {
                    "INSERT INTO tasks (id, revision, body) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (id) DO UPDATE SET revision = excluded.revision, body = excluded.body"
                }
                "approvals" => {
                    "INSERT INTO approvals (id, revision, body) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (id) DO UPDATE SET revision = excluded.revision, body = excluded.body"
                }
                "signing_keys" => {
                    "INSERT INTO signing_keys (kid, revision, body) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (kid) DO UPDATE SET revision = excluded.revision, body = excluded.body"
                }
                _ => {
                    "INSERT INTO registry (key, revision, body) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (key) DO UPDATE SET revision = excluded.revision, body = excluded.body"
                }
            };
            sqlx::query(sql)
                .bind(key)
                .bind(rev)
                .bind(body)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)
    }

    async fn changes_since(
        &self,
        after: u64,
        limit: u32,
    ) -> Result<Vec<(u64, Change)>, StoreError> {
        let rows = sqlx::query(
            "SELECT revision, body FROM change_log WHERE revision > ?1 ORDER BY revision LIMIT ?2",
        )
        .bind(to_db(after))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.into_iter()
            .map(|row| {
                let body: String = row.try_get(1).map_err(unavailable)?;
                let change = record::from_json::<ChangeRecord>(&body)?.into_change()?;
                Ok((from_db(row.try_get(0).map_err(unavailable)?), change))
            })
            .collect()
    }

    async fn task(&self, id: &str) -> Result<Option<crate::graph::Task>, StoreError> {
        let body: Option<String> = sqlx::query_scalar("SELECT body FROM tasks WHERE id = ?1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        body.map(|b| record::from_json::<record::TaskRecord>(&b)?.into_task())
            .transpose()
    }

    async fn head(&self) -> Result<u64, StoreError> {
        let head: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(revision), 0) FROM change_log")
            .fetch_one(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(from_db(head))
    }

    async fn listen(&self) -> Result<Option<Box<dyn ChangeListener>>, StoreError> {
        Ok(None)
    }

    fn audit_table(&self) -> std::sync::Arc<dyn crate::audit::AuditTable> {
        super::SqlAuditTable::sqlite(self.pool.clone())
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    async fn export(&self) -> Result<Vec<ExportRow>, StoreError> {
        let mut out = vec![ExportRow::head(self.head().await?)];
        for (table, name) in [
            ("tasks", "task"),
            ("approvals", "approval"),
            ("registry", "registry"),
            ("signing_keys", "signing_key"),
        ] {
            let sql = format!("SELECT revision, body FROM {table} ORDER BY revision");
            let rows = sqlx::query(&sql)
                .fetch_all(&self.pool)
                .await
                .map_err(unavailable)?;
            for row in rows {
                let body: String = row.try_get(1).map_err(unavailable)?;
                let revision = from_db(row.try_get(0).map_err(unavailable)?);
                out.push(ExportRow::new(name, revision, &body)?);
            }
        }
        Ok(out)
    }

    async fn import(&self, rows: &[ExportRow]) -> Result<(), StoreError> {
        let head = self.head().await?;
        if head > 0 {
            return Err(StoreError::NotEmpty(head));
        }
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        for (sql, key, revision, body) in super::import_rows(rows)? {
            let sql = sql.replace('$', "?");
            sqlx::query(&sql)
                .bind(key)
                .bind(to_db(revision))
                .bind(body)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
        }
        let (head, empty) = super::import_head(rows)?;
        if head > 0 {
            sqlx::query("INSERT INTO change_log (revision, recorded_at, body) VALUES (?1, 0, ?2)")
                .bind(to_db(head))
                .bind(empty)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)
    }
}

/// The state rows a change writes: (table, key, JSON body).
pub(super) fn rows_of(change: &Change) -> Result<Vec<(&'static str, String, String)>, StoreError> {
    Ok(match change {
        Change::Tasks(tasks) => tasks
            .iter()
            .map(|t| {
                let body = record::to_json(&record::TaskRecord::from(t.as_ref()))?;
                Ok(("tasks", t.id.clone(), body))
            })
            .collect::<Result<_, StoreError>>()?,
        Change::Approvals(approvals) => approvals
            .iter()
            .map(|a| {
                let body = record::to_json(&record::ApprovalRecord::from(a))?;
                Ok(("approvals", a.id.clone(), body))
            })
            .collect::<Result<_, StoreError>>()?,
        Change::Registry(change) => vec![(
            "registry",
            registry_key(change.kind, &change.id),
            record::to_json(&record::RegistryRecord::from(change))?,
        )],
        Change::SigningKey(key) => vec![("signing_keys", key.kid.clone(), record::to_json(key)?)],
    })
}

/// The registry table's key: kind and id, which ids cannot make ambiguous
/// since the kind has no `/`.
pub(super) fn registry_key(kind: crate::registry::Kind, id: &str) -> String {
    format!("{kind}/{id}")
}
