//! The audit table in SQL, for both backends (`migrations/*/0003_audit.sql`).
//! The statements are the same text for SQLite and PostgreSQL (`$N`
//! placeholders), so one body of code serves both through [`with_pool!`],
//! which expands it once per backend.

use std::sync::Arc;

use sqlx::{QueryBuilder, Row};

use super::StoreError;
use super::error::{from_db, to_db};
use super::sql::{SqlPool, with_pool};
use crate::audit::{AuditTable, Chain, DecisionFilter, Indexed, Pruned, StoredRow, indexed};

/// The audit table of a store.
#[derive(Debug, Clone)]
pub struct SqlAuditTable {
    pool: SqlPool,
}

impl SqlAuditTable {
    /// The table in the store's database.
    pub(super) fn on(pool: SqlPool) -> Arc<dyn AuditTable> {
        Arc::new(Self { pool })
    }
}

fn unavailable(e: sqlx::Error) -> StoreError {
    StoreError::query(e, None)
}

const ROW_COLUMNS: &str = "chain, seq, prev_hash, hash, kind, time_ms, task_id, root_task_id, subject, caller, decision, body";
/// Rows of policies per insert, well under either backend's bind limit.
const POLICY_CHUNK: usize = 1000;

#[async_trait::async_trait]
impl AuditTable for SqlAuditTable {
    async fn head(&self, chain: &str) -> Result<Option<Chain>, StoreError> {
        with_pool!(&self.pool, |pool| {
            let last = sqlx::query(
                "SELECT seq, hash FROM audit_records WHERE chain = $1 ORDER BY seq DESC LIMIT 1",
            )
            .bind(chain)
            .fetch_optional(pool)
            .await
            .map_err(unavailable)?;
            let row = match last {
                Some(row) => Some(row),
                None => {
                    sqlx::query("SELECT pruned_seq, pruned_hash FROM audit_chains WHERE chain = $1")
                        .bind(chain)
                        .fetch_optional(pool)
                        .await
                        .map_err(unavailable)?
                }
            };
            Ok(row.map(|row| Chain {
                seq: from_db(row.get(0)),
                last_hash: row.get(1),
            }))
        })
    }

    async fn insert(&self, rows: &[StoredRow]) -> Result<(), StoreError> {
        let Some(first) = rows.first() else {
            return Ok(());
        };
        let mut policies: Vec<(&str, &str, i64)> = rows
            .iter()
            .flat_map(|r| {
                r.policies
                    .iter()
                    .map(|p| (p.as_str(), r.chain.as_str(), to_db(r.seq)))
            })
            .collect();
        policies.sort_unstable();
        policies.dedup();
        with_pool!(&self.pool, |pool| {
            let mut tx = pool.begin().await.map_err(unavailable)?;
            let mut insert =
                QueryBuilder::new(format!("INSERT INTO audit_records ({ROW_COLUMNS}) "));
            insert.push_values(rows, |mut b, r| {
                b.push_bind(r.chain.clone())
                    .push_bind(to_db(r.seq))
                    .push_bind(r.prev_hash.clone())
                    .push_bind(r.hash.clone())
                    .push_bind(r.kind.clone())
                    .push_bind(r.time_ms)
                    .push_bind(r.task_id.clone())
                    .push_bind(r.root_task_id.clone())
                    .push_bind(r.subject.clone())
                    .push_bind(r.caller.clone())
                    .push_bind(r.decision.clone())
                    .push_bind(r.body.clone());
            });
            insert
                .build()
                .execute(&mut *tx)
                .await
                .map_err(|e| StoreError::query(e, Some(first.seq)))?;
            for chunk in policies.chunks(POLICY_CHUNK) {
                let mut insert =
                    QueryBuilder::new("INSERT INTO audit_policies (policy_id, chain, seq) ");
                insert.push_values(chunk, |mut b, (policy, chain, seq)| {
                    b.push_bind((*policy).to_owned())
                        .push_bind((*chain).to_owned())
                        .push_bind(*seq);
                });
                insert
                    .build()
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| StoreError::query(e, Some(first.seq)))?;
            }
            tx.commit().await.map_err(unavailable)
        })
    }

    async fn prune(&self, before_ms: i64, batch: u32, now_ms: i64) -> Result<u64, StoreError> {
        let mut total = 0u64;
        with_pool!(&self.pool, |pool| {
            loop {
                let chains: Vec<String> = sqlx::query_scalar(
                    "SELECT DISTINCT chain FROM audit_records WHERE time_ms < $1",
                )
                .bind(before_ms)
                .fetch_all(pool)
                .await
                .map_err(unavailable)?;
                let mut deleted_now = 0u64;
                for chain in &chains {
                    let bounds = sqlx::query(
                        "SELECT MAX(CASE WHEN time_ms < $2 THEN seq END), MIN(seq) FROM audit_records WHERE chain = $1",
                    )
                    .bind(chain)
                    .bind(before_ms)
                    .fetch_one(pool)
                    .await
                    .map_err(unavailable)?;
                    let (Some(cut), Some(lowest)) = (
                        bounds.get::<Option<i64>, _>(0),
                        bounds.get::<Option<i64>, _>(1),
                    ) else {
                        continue;
                    };
                    // INVARIANT: everything up to the cut goes, whatever
                    // its own time, so the rows kept are a whole suffix.
                    let upto = cut.min(lowest.saturating_add(i64::from(batch.max(1)) - 1));
                    let mut tx = pool.begin().await.map_err(unavailable)?;
                    let last = sqlx::query(
                        "SELECT seq, hash FROM audit_records WHERE chain = $1 AND seq <= $2 ORDER BY seq DESC LIMIT 1",
                    )
                    .bind(chain)
                    .bind(upto)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(unavailable)?;
                    let Some(last) = last else {
                        continue;
                    };
                    let (last_seq, last_hash): (i64, String) = (last.get(0), last.get(1));
                    sqlx::query("DELETE FROM audit_policies WHERE chain = $1 AND seq <= $2")
                        .bind(chain)
                        .bind(last_seq)
                        .execute(&mut *tx)
                        .await
                        .map_err(unavailable)?;
                    let deleted =
                        sqlx::query("DELETE FROM audit_records WHERE chain = $1 AND seq <= $2")
                            .bind(chain)
                            .bind(last_seq)
                            .execute(&mut *tx)
                            .await
                            .map_err(unavailable)?
                            .rows_affected();
                    // Two replicas may prune at once: the cut only moves on.
                    sqlx::query(
                        "INSERT INTO audit_chains (chain, pruned_seq, pruned_hash, pruned_at_ms) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (chain) DO UPDATE SET pruned_seq = excluded.pruned_seq, \
                         pruned_hash = excluded.pruned_hash, pruned_at_ms = excluded.pruned_at_ms \
                         WHERE excluded.pruned_seq > audit_chains.pruned_seq",
                    )
                    .bind(chain)
                    .bind(last_seq)
                    .bind(last_hash)
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await
                    .map_err(unavailable)?;
                    tx.commit().await.map_err(unavailable)?;
                    deleted_now += deleted;
                }
                total += deleted_now;
                if deleted_now == 0 {
                    return Ok(total);
                }
            }
        })
    }

    async fn decisions(
        &self,
        filter: &DecisionFilter,
        limit: usize,
    ) -> Result<Vec<Indexed>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        with_pool!(&self.pool, |pool| {
            let mut q = QueryBuilder::new(
                "SELECT r.seq, r.body FROM audit_records r WHERE r.kind = 'decision'",
            );
            if let Some(task) = &filter.task_id {
                q.push(" AND r.task_id = ").push_bind(task.clone());
            }
            if let Some(root) = &filter.root_task_id {
                q.push(" AND r.root_task_id = ").push_bind(root.clone());
            }
            if let Some(subject) = &filter.subject {
                q.push(" AND (r.subject = ")
                    .push_bind(subject.clone())
                    .push(" OR r.caller = ")
                    .push_bind(subject.clone())
                    .push(")");
            }
            if let Some(decision) = &filter.decision {
                q.push(" AND r.decision = ").push_bind(decision.clone());
            }
            if let Some(since) = filter.since_ms {
                q.push(" AND r.time_ms >= ").push_bind(since);
            }
            if let Some(until) = filter.until_ms {
                q.push(" AND r.time_ms < ").push_bind(until);
            }
            if let Some(policy) = &filter.policy_id {
                q.push(" AND EXISTS (SELECT 1 FROM audit_policies p WHERE p.policy_id = ")
                    .push_bind(policy.clone())
                    .push(" AND p.chain = r.chain AND p.seq = r.seq)");
            }
            q.push(" ORDER BY r.time_ms, r.chain, r.seq LIMIT ")
                .push_bind(limit);
            let rows = q.build().fetch_all(pool).await.map_err(unavailable)?;
            rows.iter()
                .map(|row| indexed(from_db(row.get(0)), row.get(1)))
                .collect()
        })
    }

    async fn trail(&self, root_task_id: &str, limit: usize) -> Result<Vec<Indexed>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        with_pool!(&self.pool, |pool| {
            let rows = sqlx::query(
                "SELECT seq, body FROM audit_records WHERE root_task_id = $1 \
                 ORDER BY time_ms, chain, seq LIMIT $2",
            )
            .bind(root_task_id)
            .bind(limit)
            .fetch_all(pool)
            .await
            .map_err(unavailable)?;
            rows.iter()
                .map(|row| indexed(from_db(row.get(0)), row.get(1)))
                .collect()
        })
    }

    async fn window_start(&self) -> Result<Option<i64>, StoreError> {
        with_pool!(&self.pool, |pool| {
            let cuts: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_chains")
                .fetch_one(pool)
                .await
                .map_err(unavailable)?;
            if cuts == 0 {
                return Ok(None);
            }
            let oldest: Option<i64> = sqlx::query_scalar("SELECT MIN(time_ms) FROM audit_records")
                .fetch_one(pool)
                .await
                .map_err(unavailable)?;
            Ok(Some(
                oldest.unwrap_or_else(crate::audit::AuditEntry::now_ms),
            ))
        })
    }

    async fn chains(&self) -> Result<Vec<String>, StoreError> {
        with_pool!(&self.pool, |pool| {
            sqlx::query_scalar(
                "SELECT DISTINCT chain FROM audit_records UNION SELECT chain FROM audit_chains ORDER BY 1",
            )
            .fetch_all(pool)
            .await
            .map_err(unavailable)
        })
    }

    async fn pruned(&self, chain: &str) -> Result<Option<Pruned>, StoreError> {
        with_pool!(&self.pool, |pool| {
            let row =
                sqlx::query("SELECT pruned_seq, pruned_hash FROM audit_chains WHERE chain = $1")
                    .bind(chain)
                    .fetch_optional(pool)
                    .await
                    .map_err(unavailable)?;
            Ok(row.map(|row| Pruned {
                seq: from_db(row.get(0)),
                hash: row.get(1),
            }))
        })
    }

    async fn rows(
        &self,
        chain: &str,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<StoredRow>, StoreError> {
        with_pool!(&self.pool, |pool| {
            let rows = sqlx::query(&format!(
                "SELECT {ROW_COLUMNS} FROM audit_records WHERE chain = $1 AND seq > $2 ORDER BY seq LIMIT $3"
            ))
            .bind(chain)
            .bind(to_db(after_seq))
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await
            .map_err(unavailable)?;
            let mut out: Vec<StoredRow> = rows
                .iter()
                .map(|row| StoredRow {
                    chain: row.get(0),
                    seq: from_db(row.get(1)),
                    prev_hash: row.get(2),
                    hash: row.get(3),
                    kind: row.get(4),
                    time_ms: row.get(5),
                    task_id: row.get(6),
                    root_task_id: row.get(7),
                    subject: row.get(8),
                    caller: row.get(9),
                    decision: row.get(10),
                    policies: Vec::new(),
                    body: row.get(11),
                })
                .collect();
            if let (Some(first), Some(last)) = (out.first(), out.last()) {
                let policies = sqlx::query(
                    "SELECT seq, policy_id FROM audit_policies WHERE chain = $1 AND seq >= $2 AND seq <= $3",
                )
                .bind(chain)
                .bind(to_db(first.seq))
                .bind(to_db(last.seq))
                .fetch_all(pool)
                .await
                .map_err(unavailable)?;
                for policy in policies {
                    let seq = from_db(policy.get(0));
                    if let Ok(at) = out.binary_search_by_key(&seq, |r| r.seq)
                        && let Some(row) = out.get_mut(at)
                    {
                        row.policies.push(policy.get(1));
                    }
                }
            }
            Ok(out)
        })
    }
}
