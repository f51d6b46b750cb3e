//! The store conformance suite run against SQLite on a file in a temporary
//! directory, plus SQLite-only checks (file settings, memory mode) and a
//! throughput report (`cargo test -p pave-store --release -- --nocapture perf`).

#![allow(clippy::unwrap_used)]

#[macro_use]
mod suite;

use async_trait::async_trait;
use pave_core::{TaskState, TryNumber};
use pave_store::{
    ChangeBatch, DagVersionId, RunFilter, SqliteStore, Store, TiChange, TiKey, TryRecord,
};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use suite::{Harness, dag_with_run, t};

struct SqliteFileHarness {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl SqliteFileHarness {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pave.db");
        SqliteFileHarness { _dir: dir, path }
    }
}

#[async_trait]
impl Harness for SqliteFileHarness {
    async fn open(&self) -> Arc<dyn Store> {
        let store = SqliteStore::open(&self.path).await.unwrap();
        store.migrate().await.unwrap();
        Arc::new(store)
    }
    async fn reopen(&self, store: Arc<dyn Store>) -> Arc<dyn Store> {
        store.close().await;
        drop(store);
        self.open().await
    }
    async fn corrupt_spec(&self, id: DagVersionId) {
        let mut conn = SqliteConnectOptions::new()
            .filename(&self.path)
            .connect()
            .await
            .unwrap();
        sqlx::query("UPDATE dag_version SET spec_json = '{\"tasks\": [' WHERE id = ?1")
            .bind(id.0)
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
    }
}

conformance_suite!(SqliteFileHarness::new());

#[tokio::test]
async fn sqlite_file_is_in_wal_mode() {
    let h = SqliteFileHarness::new().await;
    let s = h.open().await;
    let mut conn = SqliteConnectOptions::new()
        .filename(&h.path)
        .connect()
        .await
        .unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    drop(s);
}

#[tokio::test]
async fn sqlite_memory_store_works() {
    let s: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().await.unwrap());
    let run = dag_with_run(&*s, "etl", "r1", &["a", "b"]).await;
    s.apply(ChangeBatch::one(
        t(5),
        TiChange::new(TiKey::unmapped(run, "a"), TaskState::Scheduled),
    ))
    .await
    .unwrap();
    assert_eq!(s.run_tis(run).await.unwrap()[0].state, TaskState::Scheduled);
    assert_eq!(s.list_runs(&RunFilter::active()).await.unwrap().len(), 1);
    // Two stores in memory are two databases.
    let other = SqliteStore::open_in_memory().await.unwrap();
    assert!(other.list_dags().await.unwrap().is_empty());
}

/// Throughput of the hot paths on a file database. Reports, never asserts a time.
#[tokio::test]
async fn perf_report() {
    const N: usize = 10_000;
    const BATCH: usize = 500;
    let h = SqliteFileHarness::new().await;
    let s = h.open().await;
    let names: Vec<String> = (0..N).map(|i| format!("task_{i:05}")).collect();
    let tasks: Vec<&str> = names.iter().map(String::as_str).collect();

    let started = Instant::now();
    let run = dag_with_run(&*s, "big", "r1", &tasks).await;
    let create = started.elapsed();

    let keys: Vec<TiKey> = names
        .iter()
        .map(|n| TiKey::unmapped(run, n.as_str()))
        .collect();
    let started = Instant::now();
    for chunk in keys.chunks(BATCH) {
        let mut batch = ChangeBatch::new(t(10));
        for key in chunk {
            batch
                .push(TiChange::new(key.clone(), TaskState::Scheduled).expect(TaskState::NoStatus));
        }
        s.apply(batch).await.unwrap();
    }
    let update = started.elapsed();

    // What the scheduler does to queue: state + try number + try row per TI.
    let started = Instant::now();
    for chunk in keys.chunks(BATCH) {
        let mut batch = ChangeBatch::new(t(20));
        for key in chunk {
            batch.push(
                TiChange::new(key.clone(), TaskState::Queued)
                    .expect(TaskState::Scheduled)
                    .try_number(TryNumber(1))
                    .queued_at(t(20)),
            );
            batch.push(TryRecord::new(key.clone(), TryNumber(1), TaskState::Queued));
        }
        s.apply(batch).await.unwrap();
    }
    let queue = started.elapsed();

    let started = Instant::now();
    let all = s.run_tis(run).await.unwrap();
    let read = started.elapsed();
    assert_eq!(all.len(), N);
    assert!(all.iter().all(|ti| ti.state == TaskState::Queued));

    let started = Instant::now();
    let active = s.active_run_tis(&[TaskState::Queued]).await.unwrap();
    let occupancy = s.occupancy().await.unwrap();
    let admission = started.elapsed();
    assert_eq!(active.len(), N);
    assert_eq!(occupancy.pools["default_pool"].queued_slots, N as u64);

    let rate = |d: std::time::Duration| N as f64 / d.as_secs_f64();
    println!(
        "perf: create run with {N} TIs: {create:?} ({:.0} TI/s)",
        rate(create)
    );
    println!(
        "perf: {N} TI state updates (CAS) in batches of {BATCH}: {update:?} ({:.0} TI/s)",
        rate(update)
    );
    println!(
        "perf: {N} TI queue updates + try rows in batches of {BATCH}: {queue:?} ({:.0} TI/s)",
        rate(queue)
    );
    println!("perf: read {N} TIs of the run: {read:?}");
    println!("perf: active_run_tis + occupancy over {N} queued TIs: {admission:?}");
}
