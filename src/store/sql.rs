//! One implementation of [`Store`] in SQL, for SQLite and PostgreSQL alike.
//! The statements are the same text on both (`$N` placeholders, which
//! SQLite takes too), and one body of code serves both through
//! [`with_pool!`], which expands it once per backend. [`Backend`] is what
//! really differs: how a load's transaction reads one moment, how a commit
//! wakes the other replicas, and whether there are any to listen to.
//! Opening a database stays with each backend (`sqlite.rs`, `postgres.rs`).

use std::sync::Arc;

use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;

use super::error::{from_db, to_db};
use super::record::{self, ChangeRecord};
use super::{Change, ChangeListener, ExportRow, Loaded, Store, StoreError};

/// A store's pool, as the backend it is. Cloning it clones a handle.
#[derive(Debug, Clone)]
pub enum SqlPool {
    /// An embedded SQLite file.
    Sqlite(SqlitePool),
    /// A PostgreSQL database, shared by replicas.
    Postgres(PgPool),
}

/// Runs `$body` with `$p` bound to the backend's own pool, once per
/// backend: the same text, type-checked against each.
macro_rules! with_pool {
    ($pool:expr, |$p:ident| $body:expr) => {
        match $pool {
            $crate::store::sql::SqlPool::Sqlite($p) => $body,
            $crate::store::sql::SqlPool::Postgres($p) => $body,
        }
    };
}
pub(super) use with_pool;

/// What differs between the SQL backends.
#[async_trait::async_trait]
pub trait Backend: sqlx::Database {
    /// `sqlite` or `postgres`, for `/readyz` and messages.
    const BACKEND: &'static str;
    /// Whether other processes write to the same database (replicas).
    const SHARED: bool;
    /// Run first in a load's transaction, so that it reads one moment;
    /// `None` where the transaction alone does.
    const LOAD_ISOLATION: Option<&'static str>;
    /// Run last in a commit's transaction, binding the revision as text,
    /// to wake the other replicas' followers; `None` without replicas.
    const ANNOUNCE_COMMIT: Option<&'static str>;

    /// The pool as the backend it is.
    fn pool(pool: &sqlx::Pool<Self>) -> SqlPool;

    /// A listener for the other replicas' commits; `None` with a single
    /// writer.
    async fn listen(pool: &sqlx::Pool<Self>)
    -> Result<Option<Box<dyn ChangeListener>>, StoreError>;
}

/// A store in a SQL database: [`super::SqliteStore`] or
/// [`super::PostgresStore`].
#[derive(Debug, Clone)]
pub struct SqlStore<DB: Backend> {
    pool: sqlx::Pool<DB>,
    /// SQLite's exclusive lock on `<file>.lock`, held while the store is
    /// open: nothing follows a SQLite file's change log, so a second
    /// process on the same file would never see this one's writes.
    _lock: Option<Arc<std::fs::File>>,
}

impl<DB: Backend> SqlStore<DB> {
    /// A store over `pool`, once `migrations` brought its schema up to
    /// date; `lock` is held as long as the store.
    pub(super) async fn migrated(
        pool: sqlx::Pool<DB>,
        migrations: &sqlx::migrate::Migrator,
        lock: Option<std::fs::File>,
    ) -> Result<Self, StoreError> {
        with_pool!(DB::pool(&pool), |p| migrations.run(&p).await)
            .map_err(|e| StoreError::Migrate(e.to_string()))?;
        Ok(Self {
            pool,
            _lock: lock.map(Arc::new),
        })
    }

    /// The pool, for tools and tests that cut connections and benchmarks
    /// that fill a store in bulk.
    pub fn pool(&self) -> &sqlx::Pool<DB> {
        &self.pool
    }
}

fn unavailable(e: sqlx::Error) -> StoreError {
    StoreError::query(e, None)
}

const INSERT_CHANGE: &str =
    "INSERT INTO change_log (revision, recorded_at, body) VALUES ($1, $2, $3)";

/// A table of state rows, each a key, the revision that wrote it and a
/// JSON body.
struct Table {
    /// Its name in `store export`.
    export: &'static str,
    name: &'static str,
    /// The key column, also the body's field that holds the key (but for
    /// the registry's, see [`registry_key`]).
    key: &'static str,
}

const TASKS: Table = Table {
    export: "task",
    name: "tasks",
    key: "id",
};
const APPROVALS: Table = Table {
    export: "approval",
    name: "approvals",
    key: "id",
};
const REGISTRY: Table = Table {
    export: "registry",
    name: "registry",
    key: "key",
};
const SIGNING_KEYS: Table = Table {
    export: "signing_key",
    name: "signing_keys",
    key: "kid",
};
const TABLES: [Table; 4] = [TASKS, APPROVALS, REGISTRY, SIGNING_KEYS];

impl Table {
    /// Inserts a row, binding key, revision and body.
    fn insert(&self) -> String {
        let Self { name, key, .. } = self;
        format!("INSERT INTO {name} ({key}, revision, body) VALUES ($1, $2, $3)")
    }

    /// Inserts or replaces a row, binding key, revision and body.
    fn upsert(&self) -> String {
        format!(
            "{} ON CONFLICT ({}) DO UPDATE SET revision = excluded.revision, body = excluded.body",
            self.insert(),
            self.key
        )
    }
}

#[async_trait::async_trait]
impl<DB: Backend> Store for SqlStore<DB> {
    fn backend(&self) -> &'static str {
        DB::BACKEND
    }

    fn shared(&self) -> bool {
        DB::SHARED
    }

    async fn load(&self) -> Result<Loaded, StoreError> {
        with_pool!(DB::pool(&self.pool), |pool| {
            let mut tx = pool.begin().await.map_err(unavailable)?;
            if let Some(isolation) = DB::LOAD_ISOLATION {
                sqlx::query(isolation)
                    .execute(&mut *tx)
                    .await
                    .map_err(unavailable)?;
            }
            let loaded = super::snapshot::load(&mut tx).await?;
            tx.rollback().await.map_err(unavailable)?;
            Ok(loaded)
        })
    }

    async fn commit(&self, revision: u64, change: &Change, at: i64) -> Result<(), StoreError> {
        let rev = to_db(revision);
        let body = record::to_json(&ChangeRecord::from(change))?;
        let rows = rows_of(change)?;
        with_pool!(DB::pool(&self.pool), |pool| {
            let mut tx = pool.begin().await.map_err(unavailable)?;
            sqlx::query(INSERT_CHANGE)
                .bind(rev)
                .bind(at)
                .bind(&body)
                .execute(&mut *tx)
                .await
                .map_err(|e| StoreError::query(e, Some(revision)))?;
            for (sql, key, body) in &rows {
                sqlx::query(sql.as_str())
                    .bind(key)
                    .bind(rev)
                    .bind(body)
                    .execute(&mut *tx)
                    .await
                    .map_err(unavailable)?;
            }
            if let Some(announce) = DB::ANNOUNCE_COMMIT {
                sqlx::query(announce)
                    .bind(revision.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(unavailable)?;
            }
            tx.commit().await.map_err(unavailable)
        })
    }

    async fn changes_since(
        &self,
        after: u64,
        limit: u32,
    ) -> Result<Vec<(u64, Change)>, StoreError> {
        let rows: Vec<(i64, String)> = with_pool!(DB::pool(&self.pool), |pool| {
            sqlx::query_as(
                "SELECT revision, body FROM change_log WHERE revision > $1 \
                 ORDER BY revision LIMIT $2",
            )
            .bind(to_db(after))
            .bind(i64::from(limit))
            .fetch_all(&pool)
            .await
            .map_err(unavailable)?
        });
        rows.into_iter()
            .map(|(revision, body)| {
                let change = record::from_json::<ChangeRecord>(&body)?.into_change()?;
                Ok((from_db(revision), change))
            })
            .collect()
    }

    async fn task(&self, id: &str) -> Result<Option<crate::graph::Task>, StoreError> {
        let body: Option<String> = with_pool!(DB::pool(&self.pool), |pool| {
            sqlx::query_scalar("SELECT body FROM tasks WHERE id = $1")
                .bind(id)
                .fetch_optional(&pool)
                .await
                .map_err(unavailable)?
        });
        body.map(|b| record::from_json::<record::TaskRecord>(&b)?.into_task())
            .transpose()
    }

    async fn head(&self) -> Result<u64, StoreError> {
        let head: i64 = with_pool!(DB::pool(&self.pool), |pool| {
            sqlx::query_scalar("SELECT COALESCE(MAX(revision), 0) FROM change_log")
                .fetch_one(&pool)
                .await
                .map_err(unavailable)?
        });
        Ok(from_db(head))
    }

    async fn listen(&self) -> Result<Option<Box<dyn ChangeListener>>, StoreError> {
        DB::listen(&self.pool).await
    }

    fn audit_table(&self) -> Arc<dyn crate::audit::AuditTable> {
        super::SqlAuditTable::on(DB::pool(&self.pool))
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    async fn export(&self) -> Result<Vec<ExportRow>, StoreError> {
        let mut out = vec![ExportRow::head(self.head().await?)];
        for table in TABLES {
            let sql = format!(
                "SELECT revision, body FROM {} ORDER BY revision",
                table.name
            );
            let rows: Vec<(i64, String)> = with_pool!(DB::pool(&self.pool), |pool| {
                sqlx::query_as(&sql)
                    .fetch_all(&pool)
                    .await
                    .map_err(unavailable)?
            });
            for (revision, body) in rows {
                out.push(ExportRow::new(table.export, from_db(revision), &body)?);
            }
        }
        Ok(out)
    }

    async fn import(&self, rows: &[ExportRow]) -> Result<(), StoreError> {
        let head = self.head().await?;
        if head > 0 {
            return Err(StoreError::NotEmpty(head));
        }
        let inserts = import_rows(rows)?;
        let (head, empty) = import_head(rows)?;
        with_pool!(DB::pool(&self.pool), |pool| {
            let mut tx = pool.begin().await.map_err(unavailable)?;
            for (sql, key, revision, body) in &inserts {
                sqlx::query(sql.as_str())
                    .bind(key)
                    .bind(to_db(*revision))
                    .bind(body)
                    .execute(&mut *tx)
                    .await
                    .map_err(unavailable)?;
            }
            if head > 0 {
                sqlx::query(INSERT_CHANGE)
                    .bind(to_db(head))
                    .bind(0_i64)
                    .bind(&empty)
                    .execute(&mut *tx)
                    .await
                    .map_err(unavailable)?;
            }
            tx.commit().await.map_err(unavailable)
        })
    }
}

/// The inserts an import makes: (statement, key, revision, body), binding
/// key, revision and body; the `head` row is left to [`import_head`].
fn import_rows(rows: &[ExportRow]) -> Result<Vec<(String, String, u64, String)>, StoreError> {
    let text = |row: &ExportRow, field: &str| {
        row.body
            .get(field)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .ok_or_else(|| StoreError::Corrupt(format!("a `{}` row without `{field}`", row.table)))
    };
    let mut out = Vec::with_capacity(rows.len());
    for row in rows.iter().filter(|r| r.table != "head") {
        let Some(table) = TABLES.iter().find(|t| t.export == row.table) else {
            return Err(StoreError::Corrupt(format!(
                "unknown table `{}`",
                row.table
            )));
        };
        let key = if table.name == REGISTRY.name {
            registry_key(text(row, "kind")?, &text(row, "id")?)
        } else {
            text(row, table.key)?
        };
        out.push((
            table.insert(),
            key,
            row.revision,
            record::to_json(&row.body)?,
        ));
    }
    Ok(out)
}

/// The exported revision: the `head` row's. Imported, it becomes an empty
/// change-log row, so revisions go on from there.
fn import_head(rows: &[ExportRow]) -> Result<(u64, String), StoreError> {
    let head = rows
        .iter()
        .filter(|r| r.table == "head")
        .map(|r| r.revision)
        .max()
        .unwrap_or(0);
    let empty = record::to_json(&ChangeRecord::Tasks { tasks: Vec::new() })?;
    Ok((head, empty))
}

/// The upserts a change makes: (statement, key, JSON body), binding key,
/// revision and body.
fn rows_of(change: &Change) -> Result<Vec<(String, String, String)>, StoreError> {
    Ok(match change {
        Change::Tasks(tasks) => tasks
            .iter()
            .map(|t| {
                let body = record::to_json(&record::TaskRecord::from(t.as_ref()))?;
                Ok((TASKS.upsert(), t.id.to_string(), body))
            })
            .collect::<Result<_, StoreError>>()?,
        Change::Approvals(approvals) => approvals
            .iter()
            .map(|a| {
                let body = record::to_json(&record::ApprovalRecord::from(a))?;
                Ok((APPROVALS.upsert(), a.id.clone(), body))
            })
            .collect::<Result<_, StoreError>>()?,
        Change::Registry(change) => vec![(
            REGISTRY.upsert(),
            registry_key(change.kind, &change.id),
            record::to_json(&record::RegistryRecord::from(change))?,
        )],
        Change::SigningKey(key) => vec![(
            SIGNING_KEYS.upsert(),
            key.kid.clone(),
            record::to_json(key)?,
        )],
    })
}

/// The registry table's key: kind and id, which ids cannot make ambiguous
/// since the kind has no `/`.
pub(super) fn registry_key(kind: impl std::fmt::Display, id: &str) -> String {
    format!("{kind}/{id}")
}
