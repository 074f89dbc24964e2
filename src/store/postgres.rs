//! The shared backend: PostgreSQL, for several replicas. Each commit also
//! sends `NOTIFY mandate_changes` (delivered at commit), which wakes the
//! other replicas' followers.

use std::str::FromStr;
use std::time::Duration;

use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};

use super::error::{from_db, to_db};
use super::record::{self, ChangeRecord};
use super::sqlite::rows_of;
use super::{Change, ChangeListener, ExportRow, Loaded, Store, StoreError};

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// The channel commits notify on.
pub const CHANNEL: &str = "mandate_changes";

/// A PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to `url` and migrates. With `schema`, every connection
    /// works in that schema (created when missing), so tests and tenants
    /// can share a database.
    pub async fn connect(url: &str, schema: Option<&str>) -> Result<Self, StoreError> {
        let fail = |e: &dyn std::fmt::Display| StoreError::Open {
            url: super::redact(url),
            message: e.to_string(),
        };
        // A session stalled inside a transaction (a paused process, a
        // half-open connection) holds the change log's next key; without
        // these, every other replica's write would wait on it for ever,
        // holding its journal and so its follower too.
        let mut options = PgConnectOptions::from_str(url)
            .map_err(|e| fail(&e))?
            .options([
                ("lock_timeout", "5s"),
                ("idle_in_transaction_session_timeout", "15s"),
            ]);
        if let Some(schema) = schema {
            if !schema
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return Err(fail(&format!("bad schema name `{schema}`")));
            }
            let pool = PgPoolOptions::new()
                .max_connections(1)
                .connect_with(options.clone())
                .await
                .map_err(|e| fail(&e))?;
            sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
                .execute(&pool)
                .await
                .map_err(|e| fail(&e))?;
            pool.close().await;
            options = options.options([("search_path", schema)]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(2))
            .connect_with(options)
            .await
            .map_err(|e| fail(&e))?;
        MIGRATIONS
            .run(&pool)
            .await
            .map_err(|e| StoreError::Migrate(e.to_string()))?;
        Ok(Self { pool })
    }

    /// The pool, for tests that cut connections and benchmarks that fill
    /// a store in bulk.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

struct Listener(PgListener);

#[async_trait::async_trait]
impl ChangeListener for Listener {
    async fn next(&mut self) -> Result<Option<u64>, StoreError> {
        // `try_recv` answers `None` when the connection dropped; the next
        // call reconnects and listens again, but what was sent meanwhile
        // is lost, hence `false`: the caller catches up.
        match self.0.try_recv().await {
            // A payload that is no revision still means "catch up".
            Ok(Some(notification)) => Ok(Some(notification.payload().parse().unwrap_or(0))),
            Ok(None) => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }
}

fn unavailable(e: sqlx::Error) -> StoreError {
    StoreError::query(e, None)
}

#[async_trait::async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn shared(&self) -> bool {
        true
    }

    async fn load(&self) -> Result<Loaded, StoreError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        // Nothing can change what this transaction reads.
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        let loaded = super::snapshot::load::<sqlx::Postgres>(&mut tx).await?;
        tx.rollback().await.map_err(unavailable)?;
        Ok(loaded)
    }

    async fn commit(&self, revision: u64, change: &Change, at: i64) -> Result<(), StoreError> {
        let conflict = |e| StoreError::query(e, Some(revision));
        let rev = to_db(revision);
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let body = record::to_json(&ChangeRecord::from(change))?;
        sqlx::query("INSERT INTO change_log (revision, recorded_at, body) VALUES ($1, $2, $3)")
            .bind(rev)
            .bind(at)
            .bind(body)
            .execute(&mut *tx)
            .await
            .map_err(conflict)?;
        for (table, key, body) in rows_of(change)? {
            let sql = match table {
                "tasks" => {
                    "INSERT INTO tasks (id, revision, body) VALUES ($1, $2, $3) \
                     ON CONFLICT (id) DO UPDATE SET revision = excluded.revision, body = excluded.body"
                }
                "approvals" => {
                    "INSERT INTO approvals (id, revision, body) VALUES ($1, $2, $3) \
                     ON CONFLICT (id) DO UPDATE SET revision = excluded.revision, body = excluded.body"
                }
                "signing_keys" => {
                    "INSERT INTO signing_keys (kid, revision, body) VALUES ($1, $2, $3) \
                     ON CONFLICT (kid) DO UPDATE SET revision = excluded.revision, body = excluded.body"
                }
                _ => {
                    "INSERT INTO registry (key, revision, body) VALUES ($1, $2, $3) \
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
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(revision.to_string())
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)
    }

    async fn changes_since(
        &self,
        after: u64,
        limit: u32,
    ) -> Result<Vec<(u64, Change)>, StoreError> {
        let rows = sqlx::query(
            "SELECT revision, body FROM change_log WHERE revision > $1 ORDER BY revision LIMIT $2",
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
        let body: Option<String> = sqlx::query_scalar("SELECT body FROM tasks WHERE id = $1")
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
        let mut listener = PgListener::connect_with(&self.pool)
            .await
            .map_err(unavailable)?;
        listener.listen(CHANNEL).await.map_err(unavailable)?;
        Ok(Some(Box::new(Listener(listener))))
    }

    fn audit_table(&self) -> std::sync::Arc<dyn crate::audit::AuditTable> {
        super::SqlAuditTable::postgres(self.pool.clone())
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
            sqlx::query(sql)
                .bind(key)
                .bind(to_db(revision))
                .bind(body)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
        }
        let (head, empty) = super::import_head(rows)?;
        if head > 0 {
            sqlx::query("INSERT INTO change_log (revision, recorded_at, body) VALUES ($1, 0, $2)")
                .bind(to_db(head))
                .bind(empty)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)
    }
}
