//! The store conformance suite: behaviour every `Store` backend must have.
//!
//! Each check is an async function over a `Harness`, which hands out stores
//! of one backend. A backend's test file implements `Harness` and expands
//! `conformance_suite!` with it, which makes one `#[tokio::test]` per check;
//! the PostgreSQL backend will run exactly the same checks.

pub mod dags_runs;
pub mod misc;
pub mod tis;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use pave_core::{DagId, RunId, RunState, TaskId};
use pave_store::{
    DagVersionId, NewRun, NewTi, ParsedDag, RunKey, RunType, Store, StoreError, UpsertedDag,
};
use serde_json::{Value, json};
use std::sync::Arc;

pub use dags_runs::*;
pub use misc::*;
pub use tis::*;

/// Stores of one backend for the suite.
#[async_trait]
pub trait Harness: Send + Sync {
    /// The harness's store, migrated. Calls return the same database.
    async fn open(&self) -> Arc<dyn Store>;
    /// Closes `store` (all its connections) and opens the same database anew,
    /// as a restarted process would.
    async fn reopen(&self, store: Arc<dyn Store>) -> Arc<dyn Store>;
    /// Overwrites the stored spec of a DAG version with text that is not JSON.
    async fn corrupt_spec(&self, id: DagVersionId);
}

/// Expands to one `#[tokio::test]` per check, each with a fresh harness from
/// `$make` (an expression evaluating to a future of a `Harness`).
#[macro_export]
macro_rules! conformance_suite {
    ($make:expr) => {
        $crate::conformance_suite!(@tests $make;
            migrations_are_idempotent,
            dag_upsert_deduplicates_versions,
            dag_pause_and_listing,
            run_creation_makes_task_instances,
            run_creation_rejects_bad_input,
            run_listing_filters_and_orders,
            run_state_changes_set_dates_and_check_expectations,
            ti_transition_sets_fields,
            ti_compare_and_set_prevents_double_completion,
            concurrent_reports_complete_once,
            failed_batch_changes_nothing,
            queue_many_with_try_rows_in_one_batch,
            mapped_expansion_replaces_placeholder,
            try_history_upserts_and_keeps_attempts,
            xcom_put_get_list,
            active_run_tis_and_occupancy,
            run_ti_views_match_run_tis,
            runs_tis_reads_several_runs_at_once,
            pools_crud,
            import_errors_replace_and_clear,
            scheduler_lease_is_exclusive_until_stale,
            unknown_things_are_not_found_by_name,
            reopen_keeps_everything,
            corrupt_spec_is_reported,
        );
    };
    (@tests $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let harness = $make.await;
                suite::$name(&harness).await;
            }
        )*
    };
}

/// A fixed instant plus `secs` seconds: tests never read the clock.
pub fn t(secs: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single().unwrap() + chrono::Duration::seconds(secs)
}

pub fn spec(n: i64) -> Value {
    json!({"version": 1, "dag_id": "etl", "tasks": ["a", "b", "c"], "n": n})
}

pub fn parsed(dag_id: &str, spec: Value, at: DateTime<Utc>) -> ParsedDag {
    ParsedDag {
        dag_id: DagId::new(dag_id),
        fileloc: Some(format!("/dags/{dag_id}.py")),
        spec,
        parsed_at: at,
        paused_at_creation: false,
    }
}

pub fn new_ti(task_id: &str) -> NewTi {
    NewTi {
        task_id: TaskId::new(task_id),
        pool: "default_pool".to_owned(),
        pool_slots: 1,
        priority_weight: 1,
        max_tries: 2,
    }
}

pub fn new_run(version: &UpsertedDag, run_id: &str, tasks: &[&str], at: DateTime<Utc>) -> NewRun {
    NewRun {
        dag_id: version.version.dag_id.clone(),
        run_id: RunId::new(run_id),
        dag_version_id: version.version.id,
        run_type: RunType::Manual,
        state: RunState::Queued,
        logical_date: None,
        data_interval: None,
        run_after: at,
        conf: json!({"k": run_id}),
        tasks: tasks.iter().map(|t| new_ti(t)).collect(),
    }
}

/// A DAG `dag_id` with one version and one queued run of `tasks`.
pub async fn dag_with_run(s: &dyn Store, dag_id: &str, run_id: &str, tasks: &[&str]) -> RunKey {
    let v = s.upsert_dag(parsed(dag_id, spec(0), t(0))).await.unwrap();
    s.create_run(t(1), new_run(&v, run_id, tasks, t(1)))
        .await
        .unwrap()
}

/// Asserts the error is of the expected kind and its message names `needle`.
pub fn assert_err(e: StoreError, kind: &str, needle: &str) {
    let msg = e.to_string();
    let actual = match e {
        StoreError::NotFound { .. } => "not_found",
        StoreError::Conflict { .. } => "conflict",
        StoreError::Invalid { .. } => "invalid",
        StoreError::Corrupt { .. } => "corrupt",
        StoreError::Database(_) => "database",
        StoreError::Migrate(_) => "migrate",
    };
    assert_eq!(actual, kind, "wrong error kind: {msg}");
    assert!(msg.contains(needle), "`{msg}` does not name `{needle}`");
}
