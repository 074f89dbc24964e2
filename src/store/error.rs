//! Why the store failed. Becomes `UNAVAILABLE` for API callers (through
//! `ApiError`), a start-up failure for `mandate serve`.

/// A store failure.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum StoreError {
    /// The URL names no backend.
    #[error("unknown store `{0}`; use `sqlite://PATH` or `postgres://...`")]
    #[diagnostic(code(mandate::store::url))]
    BadUrl(String),
    /// The database cannot be opened or reached.
    #[error("cannot open store `{url}`: {message}")]
    #[diagnostic(code(mandate::store::open))]
    Open {
        /// The store, without its password.
        url: String,
        /// Why.
        message: String,
    },
    /// The schema could not be brought up to date.
    #[error("store migration failed: {0}")]
    #[diagnostic(code(mandate::store::migrate))]
    Migrate(String),
    /// A query failed: the database is down, full or unreachable.
    #[error("store unavailable: {0}")]
    #[diagnostic(code(mandate::store::unavailable))]
    Unavailable(String),
    /// Another writer committed revision `{0}` first.
    #[error("revision `{0}` was committed by another writer")]
    #[diagnostic(code(mandate::store::conflict))]
    Conflict(u64),
    /// A row cannot be read back.
    #[error("corrupt row in the store: {0}")]
    #[diagnostic(code(mandate::store::corrupt))]
    Corrupt(String),
    /// A signing key cannot be sealed or opened.
    #[error("signing keys: {0}")]
    #[diagnostic(code(mandate::store::key))]
    Key(String),
    /// `store import` into a store that already holds state.
    #[error("the store is not empty (revision `{0}`); import only into an empty store")]
    #[diagnostic(code(mandate::store::not_empty))]
    NotEmpty(u64),
}

impl StoreError {
    /// A query error; a unique violation on the change log means another
    /// writer took `revision`.
    pub(super) fn query(error: sqlx::Error, revision: Option<u64>) -> Self {
        if let (sqlx::Error::Database(db), Some(revision)) = (&error, revision)
            && db.is_unique_violation()
        {
            return Self::Conflict(revision);
        }
        Self::Unavailable(error.to_string())
    }
}

/// Revisions are `BIGINT` in both backends; they never reach `i64::MAX`.
pub(super) fn to_db(revision: u64) -> i64 {
    i64::try_from(revision).unwrap_or(i64::MAX)
}

/// A revision read back; a negative one is corrupt and reads as 0.
pub(super) fn from_db(revision: i64) -> u64 {
    u64::try_from(revision).unwrap_or(0)
}
