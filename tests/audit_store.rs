//! The store sink on real databases: SQLite always, PostgreSQL with
//! `--ignored` and `MANDATE_TEST_POSTGRES_URL` (each test in a schema of its
//! own).
//! Records land in `audit_records`; `AuditService` answers from the store
//! after a restart over mTLS; retention prunes and what remains verifies;
//! edited rows are found; two replicas on one PostgreSQL keep a chain
//! each; a failing audit table never changes a decision.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::audit::*;
use common::{Setup, TestServer};
use mandate::api::v1::QueryDecisionsRequest;
use mandate::audit::{
    AuditEntry, AuditSettings, AuditTable, DecisionLog, DecisionRecord, EventKind,
    StoreSinkSettings, StoredRow, TaskEvent, prune_once, verify_table,
};
use mandate::store::{PostgresStore, SqliteStore, Store};
use tokio_stream::StreamExt;

const DAY_MS: i64 = 24 * 3600 * 1000;

/// Where a test's store lives; [`Backend::open`] opens the same one again.
enum Backend {
    Sqlite(tempfile::TempDir),
    Postgres { url: String, schema: String },
}

impl Backend {
    fn sqlite() -> Self {
        Self::Sqlite(tempfile::tempdir().unwrap())
    }

    fn postgres() -> Self {
        let url = std::env::var("MANDATE_TEST_POSTGRES_URL").expect("MANDATE_TEST_POSTGRES_URL is not set: this test needs a PostgreSQL database URL (see the README, under the two commands)");
        let schema = format!("audit_{}", uuid::Uuid::now_v7().simple());
        Self::Postgres { url, schema }
    }

    fn url(&self) -> String {
        match self {
            Self::Sqlite(dir) => format!("sqlite://{}", dir.path().join("mandate.db").display()),
            Self::Postgres { url, .. } => url.clone(),
        }
    }

    async fn open(&self) -> Arc<dyn Store> {
        match self {
            Self::Sqlite(dir) => Arc::new(
                SqliteStore::open_unlocked(&dir.path().join("mandate.db"))
                    .await
                    .unwrap(),
            ),
            Self::Postgres { url, schema } => {
                Arc::new(PostgresStore::connect(url, Some(schema)).await.unwrap())
            }
        }
    }

    /// Runs one statement on the store, behind Mandate's back.
    async fn exec(&self, sql: &str) {
        match self {
            Self::Sqlite(dir) => {
                let store = SqliteStore::open_unlocked(&dir.path().join("mandate.db"))
                    .await
                    .unwrap();
                sqlx::query(sql).execute(store.pool()).await.unwrap();
                store.pool().close().await;
            }
            Self::Postgres { url, schema } => {
                let store = PostgresStore::connect(url, Some(schema)).await.unwrap();
                sqlx::query(sql).execute(store.pool()).await.unwrap();
                store.pool().close().await;
            }
        }
    }

    async fn drop_schema(&self) {
        if let Self::Postgres { url, schema } = self {
            let store = PostgresStore::connect(url, None).await.unwrap();
            sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                .execute(store.pool())
                .await
                .unwrap();
        }
    }
}

/// Each test against SQLite and, ignored unless asked for, PostgreSQL.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $name() {
                    super::$name(&super::Backend::sqlite()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread")]
                #[ignore = "needs PostgreSQL: set MANDATE_TEST_POSTGRES_URL and pass --ignored (see the README, under the two commands)"]
                async fn $name() {
                    let backend = super::Backend::postgres();
                    super::$name(&backend).await;
                    backend.drop_schema().await;
                }
            )*
        }
    };
}

on_both!(
    records_land_in_the_table_and_are_answered_after_a_restart,
    retention_prunes_old_rows_and_the_rest_verifies,
    an_edited_row_is_found_by_verify,
);

/// Audit settings with the store sink on, writing chain `chain`.
fn store_audit(chain: &str) -> AuditSettings {
    AuditSettings {
        store: Some(StoreSinkSettings::new(chain)),
        ..AuditSettings::default()
    }
}

async fn all_rows(table: &dyn AuditTable, chain: &str) -> Vec<StoredRow> {
    table.rows(chain, 0, 10_000).await.unwrap()
}

async fn wait_rows(table: &Arc<dyn AuditTable>, chain: &str, n: usize) {
    eventually(|| {
        let table = table.clone();
        let chain = chain.to_owned();
        async move { all_rows(table.as_ref(), &chain).await.len() >= n }
    })
    .await;
}

async fn decision_ids(admin: &mut Party, request: QueryDecisionsRequest) -> Vec<String> {
    let mut stream = admin
        .audit
        .query_decisions(request)
        .await
        .unwrap()
        .into_inner();
    let mut out = Vec::new();
    while let Some(entry) = stream.next().await {
        out.push(entry.unwrap().decision_id);
    }
    out
}

async fn create_root(frontend: &mut Party) -> String {
    common::party::create_root(
        frontend,
        PATCHER,
        scope(&["read", "write"], &["repos"], 1, 3600),
    )
    .await
    .id
}

async fn records_land_in_the_table_and_are_answered_after_a_restart(backend: &Backend) {
    let store = backend.open().await;
    let table = store.audit_table();
    let server = TestServer::start_with(Setup {
        store: Some(store.clone()),
        audit: store_audit("replica-a"),
        ..Setup::default()
    })
    .await;
    let mut frontend = party(&server, "/workloads/frontend").await;
    let root = create_root(&mut frontend).await;
    let mut patcher = party(&server, "/agents/patcher").await;
    let t = token(&mut patcher, &root).await;
    let (allowed, ok1) = call_payments(&mut patcher, &t, "read").await;
    let (denied, ok2) = call_payments(&mut patcher, &t, "delete").await;
    assert_eq!((ok1, ok2), (true, false));

    wait_rows(&table, "replica-a", 4).await;
    let rows = all_rows(table.as_ref(), "replica-a").await;
    let kinds: Vec<(u64, &str, Option<&str>)> = rows
        .iter()
        .map(|r| (r.seq, r.kind.as_str(), r.decision.as_deref()))
        .collect();
    assert_eq!(
        kinds,
        [
            (1, "task_created", None),
            (2, "token_issued", None),
            (3, "decision", Some("allow")),
            (4, "decision", Some("deny")),
        ]
    );
    assert!(
        rows.iter()
            .all(|r| r.root_task_id.as_deref() == Some(root.as_str()))
    );
    assert_eq!(rows[0].prev_hash, mandate::audit::GENESIS);
    assert_eq!(rows[1].prev_hash, rows[0].hash);
    assert!(rows[2].body.contains(&allowed));
    let deny_policy = rows[3].policies.first().cloned().unwrap();
    server.server.shutdown().await.unwrap();

    // A new process on the same store. Its in-memory audit index starts
    // empty and there is no file sink: every answer below comes from the
    // store.
    let store = backend.open().await;
    let table = store.audit_table();
    let server = TestServer::start_with(Setup {
        store: Some(store.clone()),
        audit: store_audit("replica-a"),
        ..Setup::default()
    })
    .await;
    let mut admin = party(&server, "/workloads/admin").await;
    let by_root = QueryDecisionsRequest {
        root_task_id: root.clone(),
        ..Default::default()
    };
    assert_eq!(
        decision_ids(&mut admin, by_root.clone()).await,
        [allowed.clone(), denied.clone()]
    );
    let filtered = [
        QueryDecisionsRequest {
            decision: "deny".into(),
            ..by_root.clone()
        },
        QueryDecisionsRequest {
            policy_id: deny_policy.clone(),
            ..Default::default()
        },
        QueryDecisionsRequest {
            task_id: root.clone(),
            subject: PATCHER.into(),
            decision: "deny".into(),
            ..Default::default()
        },
    ];
    for request in filtered {
        assert_eq!(
            decision_ids(&mut admin, request.clone()).await,
            std::slice::from_ref(&denied),
            "{request:?}"
        );
    }
    let after = rows[3].time_ms + 1;
    let later = QueryDecisionsRequest {
        since_ms: after,
        ..by_root.clone()
    };
    assert!(decision_ids(&mut admin, later).await.is_empty());
    let other_subject = QueryDecisionsRequest {
        subject: REVIEWER.into(),
        ..by_root
    };
    assert!(decision_ids(&mut admin, other_subject).await.is_empty());
    let steps: Vec<(String, String)> = trail(&mut admin, &root)
        .await
        .into_iter()
        .map(|(kind, _, id)| (kind, id))
        .collect();
    assert_eq!(
        steps,
        [
            ("task_created".to_owned(), String::new()),
            ("token_issued".to_owned(), String::new()),
            ("allow".to_owned(), allowed),
            ("deny".to_owned(), denied),
        ]
    );

    // The restarted writer goes on with the same chain.
    let mut patcher = party(&server, "/agents/patcher").await;
    let t = token(&mut patcher, &root).await;
    call_payments(&mut patcher, &t, "read").await;
    wait_rows(&table, "replica-a", 6).await;
    server.server.shutdown().await.unwrap();
    let verified = verify_table(table.as_ref(), None).await.unwrap();
    assert_eq!(verified.len(), 1);
    let chain = verified[0].as_ref().unwrap();
    assert_eq!(
        (
            chain.chain.as_str(),
            chain.rows,
            chain.first_seq,
            chain.last_seq
        ),
        ("replica-a", 6, 1, 6)
    );
}

fn event(root: &str, time_ms: i64) -> TaskEvent {
    let mut event = TaskEvent::new(
        EventKind::TaskCreated,
        "spiffe://mandate.local/fe",
        root,
        root,
    );
    event.time_ms = time_ms;
    event
}

fn decision(id: &str, verdict: &str) -> DecisionRecord {
    let AuditEntry::Decision(record) = AuditEntry::from_line(&format!(
        r#"{{"version":1,"decision_id":"{id}","time_ms":{},"caller":"spiffe://mandate.local/agents/patcher",
        "subject":"spiffe://mandate.local/agents/patcher","action":"read","resource_type":"Mandate::Resource",
        "resource_id":"handbook","task_id":"t1","root_task_id":"t1","decision":"{verdict}",
        "determining_policies":["p-{verdict}"],"reasons":[],"errors":[],"policy_hash":"h","revision":1,"latency_us":5}}"#,
        AuditEntry::now_ms()
    ))
    .unwrap() else {
        unreachable!()
    };
    *record
}

/// A writer of chain `chain` on `table` (no file, no index), fed by
/// `feed`, then flushed.
async fn write(table: &Arc<dyn AuditTable>, chain: &str, feed: impl FnOnce(&DecisionLog)) {
    let settings = AuditSettings {
        store: Some(StoreSinkSettings::new(chain)),
        ..AuditSettings::off()
    };
    let (log, writer) = DecisionLog::start(&settings, Some(table.clone())).unwrap();
    feed(&log);
    drop(log);
    writer.finish().await.unwrap();
}

async fn retention_prunes_old_rows_and_the_rest_verifies(backend: &Backend) {
    let store = backend.open().await;
    let table = store.audit_table();
    let now = AuditEntry::now_ms();
    let old = now - 40 * DAY_MS;
    write(&table, "r1", |log| {
        for i in 0..10 {
            log.event(event("old", old + i));
        }
        log.event(event("new", now));
        log.event(event("new", now));
        // Recorded after newer ones (times are not strictly ordered): the
        // cut takes the two before it along, so what stays is a suffix.
        log.event(event("late", old + 20));
        log.event(event("new", now));
        log.event(event("new", now));
    })
    .await;
    assert_eq!(all_rows(table.as_ref(), "r1").await.len(), 15);

    let retention = Duration::from_secs(30 * 24 * 3600);
    assert_eq!(
        prune_once(table.as_ref(), retention, now).await.unwrap(),
        13
    );
    let kept = all_rows(table.as_ref(), "r1").await;
    assert_eq!(kept.iter().map(|r| r.seq).collect::<Vec<_>>(), [14, 15]);
    assert_eq!(prune_once(table.as_ref(), retention, now).await.unwrap(), 0);

    // Verified from the first row kept, whose link to the cut is checked.
    let verified = verify_table(table.as_ref(), None).await.unwrap();
    let chain = verified[0].as_ref().unwrap();
    assert_eq!((chain.rows, chain.first_seq, chain.last_seq), (2, 14, 15));
    assert_eq!(chain.pruned.as_ref().unwrap().seq, 13);

    // A new writer on the chain goes on after it.
    write(&table, "r1", |log| log.event(event("new", now))).await;
    let verified = verify_table(table.as_ref(), Some("r1")).await.unwrap();
    assert_eq!(verified[0].as_ref().unwrap().last_seq, 16);

    // Even when retention took every row, the chain goes on from the cut.
    prune_once(table.as_ref(), Duration::ZERO, now + 1)
        .await
        .unwrap();
    assert!(all_rows(table.as_ref(), "r1").await.is_empty());
    write(&table, "r1", |log| log.event(event("new", now + 2))).await;
    let rows = all_rows(table.as_ref(), "r1").await;
    assert_eq!(rows.iter().map(|r| r.seq).collect::<Vec<_>>(), [17]);
    assert!(verify_table(table.as_ref(), None).await.unwrap()[0].is_ok());

    // Deleting the first rows kept outside retention breaks the link.
    write(&table, "r1", |log| {
        log.event(event("new", now + 3));
        log.event(event("new", now + 3));
    })
    .await;
    backend
        .exec("DELETE FROM audit_records WHERE chain = 'r1' AND seq = 17")
        .await;
    let broken = verify_table(table.as_ref(), None).await.unwrap()[0]
        .clone()
        .unwrap_err();
    assert_eq!(broken.seq, 18);
    assert!(broken.problem.contains("retention cut"), "{broken}");
}

async fn an_edited_row_is_found_by_verify(backend: &Backend) {
    let store = backend.open().await;
    let table = store.audit_table();
    write(&table, "r1", |log| {
        for (i, verdict) in ["allow", "deny", "deny", "allow"].iter().enumerate() {
            log.record(decision(&format!("d{i}"), verdict), None);
        }
    })
    .await;
    assert!(verify_table(table.as_ref(), None).await.unwrap()[0].is_ok());
    let broken = |backend_table: Arc<dyn AuditTable>| async move {
        verify_table(backend_table.as_ref(), None).await.unwrap()[0]
            .clone()
            .unwrap_err()
    };

    // A column changed alone: queries would see it, the body says no.
    backend
        .exec("UPDATE audit_records SET decision = 'allow' WHERE seq = 2")
        .await;
    let found = broken(table.clone()).await;
    assert_eq!(found.seq, 2);
    assert!(found.problem.contains("column `decision`"), "{found}");
    backend
        .exec("UPDATE audit_records SET decision = 'deny' WHERE seq = 2")
        .await;
    assert!(verify_table(table.as_ref(), None).await.unwrap()[0].is_ok());

    // The body changed: it no longer hashes to its `hash` column.
    let original = all_rows(table.as_ref(), "r1").await[1].clone();
    let forged = original
        .body
        .replace(r#""decision":"deny""#, r#""decision":"allow""#);
    assert_ne!(forged, original.body);
    backend
        .exec(&format!(
            "UPDATE audit_records SET body = '{forged}' WHERE seq = 2"
        ))
        .await;
    let found = broken(table.clone()).await;
    assert_eq!(found.seq, 2);
    assert!(found.problem.contains("hashes to"), "{found}");

    // Body, hash and columns forged together: the next row's link breaks.
    let hash = StoredRow::of_line("r1", &forged).unwrap().hash;
    backend
        .exec(&format!(
            "UPDATE audit_records SET hash = '{hash}', decision = 'allow' WHERE seq = 2"
        ))
        .await;
    let found = broken(table.clone()).await;
    assert_eq!(found.seq, 3);
    assert!(found.problem.contains("`prev_hash`"), "{found}");

    // The command line says the same, exit code 1.
    if let Backend::Sqlite(_) = backend {
        let out = common::cli::run(&["audit", "verify", "--store", &backend.url()]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{stdout}");
        assert!(stdout.contains("broken: chain `r1`, seq 3"), "{stdout}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_from_the_command_line_passes_an_intact_store() {
    let backend = Backend::sqlite();
    let store = backend.open().await;
    let table = store.audit_table();
    write(&table, "replica-a", |log| {
        log.event(event("t", AuditEntry::now_ms()))
    })
    .await;
    write(&table, "replica-b", |log| {
        log.event(event("t", AuditEntry::now_ms()))
    })
    .await;
    let out = common::cli::run(&["audit", "verify", "--store", &backend.url()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("ok: chain `replica-a`: 1 rows"), "{stdout}");
    assert!(stdout.contains("ok: chain `replica-b`: 1 rows"), "{stdout}");
}

/// A failing audit table (here: gone, renamed away) changes no decision;
/// the failures are counted, the records wait and land once it is back,
/// in an unbroken chain.
#[tokio::test(flavor = "multi_thread")]
async fn a_failing_audit_table_never_changes_a_decision() {
    let backend = Backend::sqlite();
    let store = backend.open().await;
    let table = store.audit_table();
    let server = TestServer::start_with(Setup {
        store: Some(store.clone()),
        audit: store_audit("replica-a"),
        ..Setup::default()
    })
    .await;
    let mut frontend = party(&server, "/workloads/frontend").await;
    let root = create_root(&mut frontend).await;
    let mut patcher = party(&server, "/agents/patcher").await;
    let t = token(&mut patcher, &root).await;
    wait_rows(&table, "replica-a", 2).await;

    backend
        .exec("ALTER TABLE audit_records RENAME TO audit_records_away")
        .await;
    for _ in 0..5 {
        let (_, allowed) = call_payments(&mut patcher, &t, "read").await;
        assert!(allowed, "a decision changed while the audit table was away");
    }
    eventually(|| async {
        metric(&server, "mandate_audit_store_failures_total").await >= 1.0
            && metric(&server, "mandate_audit_store_pending").await == 5.0
    })
    .await;
    assert_eq!(
        metric(&server, "mandate_audit_store_dropped_total").await,
        0.0
    );

    backend
        .exec("ALTER TABLE audit_records_away RENAME TO audit_records")
        .await;
    wait_rows(&table, "replica-a", 7).await;
    assert_eq!(metric(&server, "mandate_audit_store_pending").await, 0.0);
    server.server.shutdown().await.unwrap();
    let verified = verify_table(table.as_ref(), None).await.unwrap();
    assert_eq!(verified[0].as_ref().unwrap().last_seq, 7);
}

/// Two replicas on one PostgreSQL: each writes its own chain, both verify,
/// and either answers for the records of both.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs PostgreSQL: set MANDATE_TEST_POSTGRES_URL and pass --ignored (see the README, under the two commands)"]
async fn two_replicas_on_one_postgres_keep_a_chain_each() {
    let backend = Backend::postgres();
    let start = |chain: &'static str, store: Arc<dyn Store>| {
        TestServer::start_with(Setup {
            store: Some(store),
            audit: store_audit(chain),
            ..Setup::default()
        })
    };
    let a = start("replica-a", backend.open().await).await;
    let b = start("replica-b", backend.open().await).await;
    let mut frontend = party(&a, "/workloads/frontend").await;
    let root = create_root(&mut frontend).await;
    eventually(|| async { b.graph.get(&root).is_some() }).await;

    let mut on_a = party(&a, "/agents/patcher").await;
    let mut on_b = party(&b, "/agents/patcher").await;
    let (ta, tb) = (token(&mut on_a, &root).await, token(&mut on_b, &root).await);
    let mut made = Vec::new();
    for _ in 0..3 {
        made.push(call_payments(&mut on_a, &ta, "read").await.0);
        made.push(call_payments(&mut on_b, &tb, "read").await.0);
    }

    let table = backend.open().await.audit_table();
    wait_rows(&table, "replica-a", 5).await; // created, token, 3 calls
    wait_rows(&table, "replica-b", 4).await; // token, 3 calls
    let verified = verify_table(table.as_ref(), None).await.unwrap();
    let chains: Vec<(String, u64)> = verified
        .iter()
        .map(|v| {
            let v = v.as_ref().unwrap();
            (v.chain.clone(), v.rows)
        })
        .collect();
    assert_eq!(
        chains,
        [("replica-a".to_owned(), 5), ("replica-b".to_owned(), 4)]
    );
    // Each chain holds only its own replica's decisions.
    let a_rows = all_rows(table.as_ref(), "replica-a").await;
    for (i, id) in made.iter().enumerate() {
        assert_eq!(
            a_rows.iter().any(|r| r.body.contains(id.as_str())),
            i % 2 == 0
        );
    }

    // Either replica answers for both.
    let mut admin = party(&b, "/workloads/admin").await;
    let mut answered = decision_ids(
        &mut admin,
        QueryDecisionsRequest {
            root_task_id: root.clone(),
            ..Default::default()
        },
    )
    .await;
    answered.sort();
    made.sort();
    assert_eq!(answered, made);
    a.server.shutdown().await.unwrap();
    b.server.shutdown().await.unwrap();
    backend.drop_schema().await;
}
