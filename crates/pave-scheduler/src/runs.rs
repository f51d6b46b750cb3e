//! Creating DAG runs: manual triggers (with conf) and runs due by a DAG's schedule.
//! Every run is created by `new_run`, which gives it an instance of each task
//! whose dates hold the run's logical date (`pave_core::run_tasks`).

use crate::dags::{DagCache, LoadedDag};
use crate::error::SchedulerError;
use chrono::{DateTime, SecondsFormat, Utc};
use pave_core::run_tasks::{self, RunKind};
use pave_core::schedule::{self, SchedulePolicy};
use pave_core::{DagId, RunId, RunState};
use pave_store::{
    DataInterval, NewRun, NewTi, RunFilter, RunKey, RunRecord, RunType, Store, StoreError,
};
use serde_json::Value;

/// A manual trigger.
#[derive(Clone, Debug, Default)]
pub struct TriggerRequest {
    /// Default: `manual__<logical date or now>`.
    pub run_id: Option<String>,
    pub logical_date: Option<DateTime<Utc>>,
    /// A JSON object (or null for none).
    pub conf: Value,
}

/// Creates a queued manual run of the DAG's latest version.
pub async fn trigger(
    store: &dyn Store,
    cache: &mut DagCache,
    dag_id: &DagId,
    req: TriggerRequest,
    now: DateTime<Utc>,
    policy: &SchedulePolicy,
) -> Result<RunRecord, SchedulerError> {
    let conf = match req.conf {
        Value::Null => Value::Object(Default::default()),
        Value::Object(m) => Value::Object(m),
        other => {
            return Err(SchedulerError::BadRequest(format!(
                "the conf of a run must be a JSON object, got `{other}`; pass e.g. --conf '{{\"epochs\": 3}}'"
            )));
        }
    };
    let dag_record = store.get_dag(dag_id).await?;
    let version = dag_record.latest_version.ok_or_else(|| {
        SchedulerError::BadRequest(format!("DAG `{dag_id}` has no parsed version yet"))
    })?;
    let loaded = cache.get(store, version).await?;
    check_conf(&loaded, &conf)?;
    let info = schedule::manual_run_info(&loaded.dag, req.logical_date, now, policy)
        .map_err(|e| SchedulerError::BadRequest(format!("DAG `{dag_id}`: {e}")))?;
    let run_id = match req.run_id {
        Some(id) => validate_run_id(&id)?,
        None => format!("manual__{}", iso(info.logical_date.unwrap_or(now))),
    };
    let new = new_run(
        &loaded,
        RunId::new(run_id.clone()),
        RunType::Manual,
        info.logical_date,
        info.data_interval.map(|d| DataInterval {
            start: d.start,
            end: d.end,
        }),
        info.run_after,
        conf,
    );
    let key = match store.create_run(now, new).await {
        Ok(k) => k,
        Err(StoreError::Conflict { .. }) => {
            return Err(SchedulerError::BadRequest(format!(
                "DAG `{dag_id}` already has a run `{run_id}`; pick another --run-id"
            )));
        }
        Err(e) => return Err(e.into()),
    };
    Ok(store.get_run(key).await?)
}

/// Creates the runs that the schedules of unpaused DAGs have made due by `now`
/// (at most `limit` per DAG per call, so a long catchup does not stall the loop).
pub async fn create_due_runs(
    store: &dyn Store,
    cache: &mut DagCache,
    now: DateTime<Utc>,
    policy: &SchedulePolicy,
    limit: usize,
) -> Result<Vec<RunKey>, SchedulerError> {
    let mut created = Vec::new();
    for dag_record in store.list_dags().await? {
        if dag_record.is_paused {
            continue;
        }
        let Some(version) = dag_record.latest_version else {
            continue;
        };
        let loaded = cache.get(store, version).await?;
        if matches!(loaded.dag.schedule, pave_core::Schedule::None) {
            continue;
        }
        let mut last = last_automated(store, &dag_record.dag_id).await?;
        for _ in 0..limit {
            let info = match schedule::next_dagrun_info(&loaded.dag, last.as_ref(), now, policy) {
                Ok(Some(info)) if info.run_after <= now => info,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(dag_id = %dag_record.dag_id, "cannot schedule: {e}");
                    break;
                }
            };
            let run_id = RunId::new(format!("scheduled__{}", iso(info.logical_date)));
            let new = new_run(
                &loaded,
                run_id,
                RunType::Scheduled,
                Some(info.logical_date),
                Some(DataInterval {
                    start: info.data_interval.start,
                    end: info.data_interval.end,
                }),
                info.run_after,
                Value::Object(Default::default()),
            );
            match store.create_run(now, new).await {
                Ok(k) => created.push(k),
                // Someone (an earlier life of this scheduler) already created it.
                Err(StoreError::Conflict { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            last = Some(info.data_interval);
        }
    }
    Ok(created)
}

async fn last_automated(
    store: &dyn Store,
    dag_id: &DagId,
) -> Result<Option<schedule::DataInterval>, SchedulerError> {
    let runs = store.list_runs(&RunFilter::dag(dag_id.clone())).await?;
    Ok(runs
        .iter()
        .filter(|r| r.run_type == RunType::Scheduled)
        .filter_map(|r| r.data_interval)
        .max_by_key(|d| d.start)
        .map(|d| schedule::DataInterval {
            start: d.start,
            end: d.end,
        }))
}

/// The run and its task instances: one per task that the run's type and
/// logical date admit (Airflow's `DagRun.verify_integrity`); the others get
/// none in this run.
fn new_run(
    loaded: &LoadedDag,
    run_id: RunId,
    run_type: RunType,
    logical_date: Option<DateTime<Utc>>,
    data_interval: Option<DataInterval>,
    run_after: DateTime<Utc>,
    conf: Value,
) -> NewRun {
    NewRun {
        dag_id: loaded.dag.dag_id.clone(),
        run_id,
        dag_version_id: loaded.version,
        run_type,
        state: RunState::Queued,
        logical_date,
        data_interval,
        run_after,
        conf,
        tasks: loaded
            .dag
            .tasks
            .iter()
            .zip(&loaded.weights)
            .filter(|(t, _)| {
                let membership =
                    run_tasks::task_in_run(&loaded.dag, t, logical_date, run_kind(run_type));
                if !membership.is_included() {
                    tracing::debug!(
                        dag_id = %loaded.dag.dag_id,
                        task_id = %t.task_id,
                        "{membership}"
                    );
                }
                membership.is_included()
            })
            .map(|(t, w)| NewTi {
                priority_weight: *w,
                ..NewTi::from(t)
            })
            .collect(),
    }
}

fn run_kind(run_type: RunType) -> RunKind {
    match run_type {
        RunType::Manual => RunKind::Manual,
        RunType::Scheduled => RunKind::Scheduled,
        RunType::Backfill => RunKind::Backfill,
    }
}

/// Airflow's isoformat of a run date: `2026-01-01T00:00:00+00:00`.
pub fn iso(t: DateTime<Utc>) -> String {
    let format = if t.timestamp_subsec_nanos() == 0 {
        SecondsFormat::Secs
    } else {
        SecondsFormat::Micros
    };
    t.to_rfc3339_opts(format, false)
}

fn validate_run_id(id: &str) -> Result<String, SchedulerError> {
    let bad = id.is_empty()
        || id.len() > 250
        || id.contains('/')
        || id.contains("..")
        || id.chars().any(char::is_control);
    if bad {
        return Err(SchedulerError::BadRequest(format!(
            "invalid run id `{id}`: use 1-250 characters without `/`, `..` or control characters"
        )));
    }
    Ok(id.to_owned())
}

/// A conf key that overrides a declared param must fit the param's type.
fn check_conf(loaded: &LoadedDag, conf: &Value) -> Result<(), SchedulerError> {
    let Value::Object(map) = conf else {
        return Ok(());
    };
    let mut problems = Vec::new();
    for (name, value) in map {
        let Some(param) = loaded.dag.params.get(name) else {
            continue;
        };
        if let Some(types) = &param.type_
            && !types.iter().any(|t| json_type_matches(t, value))
        {
            problems.push(format!(
                "param `{name}` must be of type {} but conf gives `{value}`",
                types.join(" or ")
            ));
        }
        if let Some(allowed) = &param.enum_
            && !allowed.contains(value)
        {
            problems.push(format!(
                "param `{name}` must be one of {} but conf gives `{value}`",
                Value::Array(allowed.clone())
            ));
        }
        if let Some(x) = value.as_f64()
            && (param.minimum.is_some_and(|m| x < m) || param.maximum.is_some_and(|m| x > m))
        {
            problems.push(format!(
                "param `{name}` = {x} is outside [{}, {}]",
                param.minimum.map_or("-inf".into(), |m| m.to_string()),
                param.maximum.map_or("inf".into(), |m| m.to_string())
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(SchedulerError::BadRequest(format!(
            "invalid conf for DAG `{}`: {}",
            loaded.dag.dag_id,
            problems.join("; ")
        )))
    }
}

fn json_type_matches(t: &str, v: &Value) -> bool {
    match t {
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        "null" => v.is_null(),
        _ => true,
    }
}
