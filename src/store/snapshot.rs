//! Reading the whole state for start-up, in one transaction, with the same
//! SQL on both backends: [`super::sql`] opens the transaction (with the
//! isolation the backend needs) and hands it here.

use sqlx::{ColumnIndex, Database, Decode, Executor, IntoArguments, Row, Type};
use tokio_stream::StreamExt;

use super::error::from_db;
use super::record;
use super::{Loaded, StoreError};

fn unavailable(e: sqlx::Error) -> StoreError {
    StoreError::query(e, None)
}

/// The revision and every row as of one moment (the transaction `conn` is
/// in), so catching up from that revision replays exactly what the rows
/// lack and never an older write over a newer row. Tasks are decoded as
/// they stream in: a million of them never sit in memory twice.
pub(super) async fn load<DB>(tx: &mut sqlx::Transaction<'_, DB>) -> Result<Loaded, StoreError>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'r> i64: Decode<'r, DB> + Type<DB>,
    for<'r> String: Decode<'r, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    let conn: &mut DB::Connection = tx;
    let head: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(revision), 0) FROM change_log")
        .fetch_one(&mut *conn)
        .await
        .map_err(unavailable)?;
    let mut loaded = Loaded {
        revision: from_db(head),
        ..Loaded::default()
    };
    {
        let mut rows = sqlx::query::<DB>("SELECT body FROM tasks").fetch(&mut *conn);
        while let Some(row) = rows.next().await {
            let body: String = row.and_then(|r| r.try_get(0)).map_err(unavailable)?;
            let task = record::from_json::<record::TaskRecord>(&body)?.into_task()?;
            loaded.tasks.push(std::sync::Arc::new(task));
        }
    }
    for body in bodies::<DB>(conn, "SELECT body FROM approvals ORDER BY id").await? {
        let approval = record::from_json::<record::ApprovalRecord>(&body)?;
        loaded.approvals.push(approval.into_approval()?);
    }
    for body in bodies::<DB>(conn, "SELECT body FROM registry ORDER BY revision").await? {
        let entry = record::from_json::<record::RegistryRecord>(&body)?;
        loaded.registry.push(entry.into());
    }
    for body in bodies::<DB>(conn, "SELECT body FROM signing_keys ORDER BY revision").await? {
        loaded.keys.push(record::from_json(&body)?);
    }
    Ok(loaded)
}

async fn bodies<DB>(conn: &mut DB::Connection, sql: &str) -> Result<Vec<String>, StoreError>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'r> String: Decode<'r, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    let rows = sqlx::query::<DB>(sql)
        .fetch_all(&mut *conn)
        .await
        .map_err(unavailable)?;
    rows.iter()
        .map(|r| r.try_get(0).map_err(unavailable))
        .collect()
}
