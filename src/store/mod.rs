//! Durable state: the store behind the live graph, approvals and registry.
//!
//! A small core interface ([`Store`]) with two backends chosen by URL:
//! embedded SQLite (`sqlite://PATH`, the default under the data dir) and
//! PostgreSQL (`postgres://...`) for several replicas. Memory stays the
//! only thing decisions read; the store is written first and read at
//! start-up and, on PostgreSQL, by replicas following the change log.
//!
//! Every write is one transaction: the rows it changes plus one change-log
//! row whose primary key is the new revision. A writer claims revision
//! `N + 1` where `N` is the revision its memory is at; if another replica
//! took it first the insert conflicts, the writer catches up and plans
//! again (see [`crate::journal::Journal`], which plans, commits here and
//! applies to memory).

mod audit_sql;
mod error;
mod postgres;
pub mod record;
pub mod seal;
mod snapshot;
mod sql;
mod sqlite;

use std::sync::Arc;

use crate::approval::Approval;
use crate::graph::Task;
use crate::registry::RegistryChange;

pub use audit_sql::SqlAuditTable;
pub use error::StoreError;
pub use postgres::PostgresStore;
pub use sql::{Backend, SqlPool, SqlStore};
pub use sqlite::SqliteStore;

/// One committed write, as applied to memory.
#[derive(Debug, Clone)]
pub enum Change {
    /// Tasks put, new or replacing (a revoke puts the revoked subtree).
    Tasks(Vec<Arc<Task>>),
    /// Approvals put, new or replacing.
    Approvals(Vec<Approval>),
    /// One registry entry put or removed.
    Registry(RegistryChange),
    /// A new signing key, sealed.
    SigningKey(seal::KeyRecord),
}

/// The whole state, as read at start-up.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Every task.
    pub tasks: Vec<Arc<Task>>,
    /// Every approval, by id (creation order).
    pub approvals: Vec<Approval>,
    /// Registry writes made through the API, on top of the catalog file.
    pub registry: Vec<RegistryChange>,
    /// Signing keys, sealed, oldest first.
    pub keys: Vec<seal::KeyRecord>,
    /// The revision of the last committed write; 0 for an empty store.
    pub revision: u64,
}

impl Loaded {
    /// Rows read.
    pub fn rows(&self) -> usize {
        self.tasks.len() + self.approvals.len() + self.registry.len() + self.keys.len()
    }
}

/// A raw row for `store export` and `store import`: which table, and the
/// JSON document as stored. Exports are portable between backends.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExportRow {
    /// `task`, `approval`, `registry`, `signing_key` (sealed) or `head`.
    pub table: String,
    /// The row's revision.
    pub revision: u64,
    /// The document (`null` for the `head` row).
    pub body: serde_json::Value,
}

/// Waits for other replicas' writes.
#[async_trait::async_trait]
pub trait ChangeListener: Send {
    /// Returns when a write may have been committed elsewhere:
    /// `Ok(Some(revision))` for a notification of that revision, `Ok(None)`
    /// when the connection was lost and notifications may have been missed
    /// (the caller must catch up).
    async fn next(&mut self) -> Result<Option<u64>, StoreError>;
}

/// The durable store.
#[async_trait::async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;

    /// Whether other processes write to it too (replicas): then a writer
    /// catches up before it plans, so it judges against their writes.
    fn shared(&self) -> bool;

    /// Reads the whole state.
    async fn load(&self) -> Result<Loaded, StoreError>;

    /// Commits `change` as `revision`, with its change-log row, in one
    /// transaction. [`StoreError::Conflict`] when `revision` is taken:
    /// the caller is behind and must catch up.
    async fn commit(&self, revision: u64, change: &Change, at: i64) -> Result<(), StoreError>;

    /// Changes after `after`, in revision order, at most `limit`.
    async fn changes_since(&self, after: u64, limit: u32)
    -> Result<Vec<(u64, Change)>, StoreError>;

    /// The revision of the last committed write.
    async fn head(&self) -> Result<u64, StoreError>;

    /// One task as last committed, ended or not: the live graph drops
    /// tasks that ended after their retention, the store keeps them.
    async fn task(&self, id: &str) -> Result<Option<crate::graph::Task>, StoreError>;

    /// A listener for other writers' commits; `None` when the backend has
    /// a single writer (SQLite).
    async fn listen(&self) -> Result<Option<Box<dyn ChangeListener>>, StoreError>;

    /// Every row, for `store export`.
    async fn export(&self) -> Result<Vec<ExportRow>, StoreError>;

    /// Writes exported rows into an empty store, in one transaction.
    async fn import(&self, rows: &[ExportRow]) -> Result<(), StoreError>;

    /// The audit table of the store sink, on the same database.
    fn audit_table(&self) -> Arc<dyn crate::audit::AuditTable>;

    /// Closes every connection; later calls fail with
    /// [`StoreError::Unavailable`].
    async fn close(&self);
}

/// Opens (creating if needed) the store at `url` and runs its migrations:
/// `sqlite://PATH` or `postgres://...`. A SQLite file is refused while
/// another process has it open (see [`SqliteStore::open`]).
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    open_as(url, true).await
}

/// [`open`] for commands that only read (`store export`, `audit verify
/// --store`): they may run beside the server using a SQLite file.
pub async fn open_to_read(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    open_as(url, false).await
}

async fn open_as(url: &str, exclusive: bool) -> Result<Arc<dyn Store>, StoreError> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let path = std::path::Path::new(path);
        Ok(Arc::new(if exclusive {
            SqliteStore::open(path).await?
        } else {
            SqliteStore::open_unlocked(path).await?
        }))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PostgresStore::connect(url, None).await?))
    } else {
        Err(StoreError::BadUrl(redact(url)))
    }
}

/// `url` without a password (in its credentials or a `password=` query
/// parameter, which sqlx reads too), for messages and logs.
pub fn redact(url: &str) -> String {
    let url = match url.split_once('?') {
        Some((base, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => {
                        format!("{key}=***")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{base}?{}", query.join("&"))
        }
        None => url.to_owned(),
    };
    let url = url.as_str();
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = url.get(scheme + 3..at).unwrap_or_default();
            let user = credentials.split(':').next().unwrap_or_default();
            format!(
                "{}{user}:***{}",
                url.get(..scheme + 3).unwrap_or_default(),
                url.get(at..).unwrap_or_default()
            )
        }
        _ => url.to_owned(),
    }
}

impl ExportRow {
    fn head(revision: u64) -> Self {
        Self {
            table: "head".to_owned(),
            revision,
            body: serde_json::Value::Null,
        }
    }

    fn new(table: &str, revision: u64, body: &str) -> Result<Self, StoreError> {
        Ok(Self {
            table: table.to_owned(),
            revision,
            body: record::from_json(body)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact("postgres://mandate:s3cret@db:5432/mandate"),
            "postgres://mandate:***@db:5432/mandate"
        );
        let redacted = redact("postgres://mandate@db/mandate?sslmode=require&password=s3cret");
        assert!(!redacted.contains("s3cret"), "{redacted}");
        assert!(redacted.contains("sslmode=require"), "{redacted}");
        assert_eq!(
            redact("sqlite://data/mandate.db"),
            "sqlite://data/mandate.db"
        );
    }
}
