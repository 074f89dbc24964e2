//! `mandate audit verify --store`: checks every chain of the audit table,
//! row by row: the body hashes to the `hash` column, the columns agree
//! with the body, `seq` counts on by one and `prev_hash` is the hash of the
//! row before. A chain cut by retention is checked from its first row
//! kept, which must link to the recorded cut; one never cut must start at
//! `seq` 1 from [`GENESIS`].

use super::chain::GENESIS;
use super::table::{AuditTable, Pruned, StoredRow};
use crate::store::StoreError;

/// Rows read per query.
const PAGE: u32 = 1000;

/// An intact chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedChain {
    /// The chain's name.
    pub chain: String,
    /// Rows checked.
    pub rows: u64,
    /// `seq` of the first and last row kept (0, 0 when none is).
    pub first_seq: u64,
    /// See `first_seq`.
    pub last_seq: u64,
    /// Where retention cut it, if it did.
    pub pruned: Option<Pruned>,
    /// Hash of the last row.
    pub last_hash: String,
}

/// The first broken link of a chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, miette::Diagnostic)]
#[error("chain `{chain}`, seq {seq}: {problem}")]
pub struct BrokenRow {
    /// The chain.
    pub chain: String,
    /// The row's `seq` column.
    pub seq: u64,
    /// What is wrong.
    pub problem: String,
}

/// Checks `chain`, or every chain when `None`; one answer per chain, by
/// name. A store failure is an error, a broken chain an answer.
pub async fn verify_table(
    table: &dyn AuditTable,
    chain: Option<&str>,
) -> Result<Vec<Result<VerifiedChain, BrokenRow>>, StoreError> {
    let chains = match chain {
        Some(chain) => vec![chain.to_owned()],
        None => table.chains().await?,
    };
    let mut out = Vec::with_capacity(chains.len());
    for chain in chains {
        out.push(verify_chain(table, &chain).await?);
    }
    Ok(out)
}

async fn verify_chain(
    table: &dyn AuditTable,
    chain: &str,
) -> Result<Result<VerifiedChain, BrokenRow>, StoreError> {
    let pruned = table.pruned(chain).await?;
    let (mut last_seq, mut last_hash) = match &pruned {
        Some(cut) => (cut.seq, cut.hash.clone()),
        None => (0, GENESIS.to_owned()),
    };
    let mut verified = VerifiedChain {
        chain: chain.to_owned(),
        rows: 0,
        first_seq: 0,
        last_seq: 0,
        pruned: pruned.clone(),
        last_hash: last_hash.clone(),
    };
    // From seq 0, not from the cut: rows the cut should have removed are
    // a broken link too.
    let mut after = 0;
    loop {
        let rows = table.rows(chain, after, PAGE).await?;
        let Some(last) = rows.last() else {
            break;
        };
        after = last.seq;
        for row in rows {
            let broken = |problem: String| BrokenRow {
                chain: chain.to_owned(),
                seq: row.seq,
                problem,
            };
            if let Err(problem) = check_row(&row, last_seq, &last_hash, pruned.as_ref()) {
                return Ok(Err(broken(problem)));
            }
            if verified.rows == 0 {
                verified.first_seq = row.seq;
            }
            verified.rows += 1;
            last_seq = row.seq;
            last_hash = row.hash.clone();
        }
    }
    if verified.rows == 0 && pruned.is_none() {
        return Ok(Err(BrokenRow {
            chain: chain.to_owned(),
            seq: 0,
            problem: "no rows".to_owned(),
        }));
    }
    verified.last_seq = last_seq;
    verified.last_hash = last_hash;
    Ok(Ok(verified))
}

/// Checks one row against the row before (`last_seq`, `last_hash`).
fn check_row(
    row: &StoredRow,
    last_seq: u64,
    last_hash: &str,
    pruned: Option<&Pruned>,
) -> Result<(), String> {
    let from_body = StoredRow::of_line(&row.chain, &row.body)
        .map_err(|e| format!("the body is not a chained record ({e}): the row was edited"))?;
    if from_body.hash != row.hash {
        return Err(format!(
            "the body hashes to `{}`, not to its `hash` column `{}`: the row was edited",
            from_body.hash, row.hash
        ));
    }
    if let Some(column) = disagreeing_column(row, &from_body) {
        return Err(format!(
            "column `{column}` does not match the record's body: the row was edited"
        ));
    }
    let first_after_cut = pruned.is_some_and(|cut| last_seq == cut.seq);
    if row.seq != last_seq.saturating_add(1) {
        return Err(if first_after_cut {
            format!(
                "retention cut the chain after seq {last_seq}, but the first row kept is seq {}: rows were deleted",
                row.seq
            )
        } else if row.seq <= last_seq {
            format!(
                "seq {} follows {last_seq}: a row was left behind by retention or reordered",
                row.seq
            )
        } else {
            format!("seq {} follows {last_seq}: rows were deleted", row.seq)
        });
    }
    if row.prev_hash != last_hash {
        return Err(format!(
            "`prev_hash` `{}` is not the hash of the row before (`{last_hash}`): that row was edited, or rows were deleted or reordered",
            row.prev_hash
        ));
    }
    Ok(())
}

/// The first column whose value is not the one the body gives.
fn disagreeing_column(row: &StoredRow, body: &StoredRow) -> Option<&'static str> {
    [
        ("seq", row.seq == body.seq),
        ("prev_hash", row.prev_hash == body.prev_hash),
        ("kind", row.kind == body.kind),
        ("time_ms", row.time_ms == body.time_ms),
        ("task_id", row.task_id == body.task_id),
        ("root_task_id", row.root_task_id == body.root_task_id),
        ("subject", row.subject == body.subject),
        ("caller", row.caller == body.caller),
        ("decision", row.decision == body.decision),
        ("policies", {
            let (mut a, mut b) = (row.policies.clone(), body.policies.clone());
            a.sort();
            a.dedup();
            b.sort();
            b.dedup();
            a == b
        }),
    ]
    .into_iter()
    .find_map(|(name, same)| (!same).then_some(name))
}
