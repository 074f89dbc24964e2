//! The shared backend: PostgreSQL, for several replicas. Each commit also
//! sends `NOTIFY mandate_changes` (delivered at commit), which wakes the
//! other replicas' followers. Connecting and listening are PostgreSQL's
//! own; the rest is [`SqlStore`]'s.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};

use super::sql::{Backend, SqlPool, SqlStore};
use super::{ChangeListener, StoreError};

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// The channel commits notify on (named in `ANNOUNCE_COMMIT` too).
pub const CHANNEL: &str = "mandate_changes";

/// A PostgreSQL store.
pub type PostgresStore = SqlStore<sqlx::Postgres>;

impl SqlStore<sqlx::Postgres> {
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
        Self::migrated(pool, &MIGRATIONS, None).await
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
impl Backend for sqlx::Postgres {
    const BACKEND: &'static str = "postgres";
    const SHARED: bool = true;
    // Nothing can change what this transaction reads.
    const LOAD_ISOLATION: Option<&'static str> =
        Some("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY");
    // Delivered at commit, to every replica that listens.
    const ANNOUNCE_COMMIT: Option<&'static str> = Some("SELECT pg_notify('mandate_changes', $1)");

    fn pool(pool: &PgPool) -> SqlPool {
        SqlPool::Postgres(pool.clone())
    }

    async fn listen(pool: &PgPool) -> Result<Option<Box<dyn ChangeListener>>, StoreError> {
        let mut listener = PgListener::connect_with(pool).await.map_err(unavailable)?;
        listener.listen(CHANNEL).await.map_err(unavailable)?;
        Ok(Some(Box::new(Listener(listener))))
    }
}
