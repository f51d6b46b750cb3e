//! Seeds a pave home's store for the API latency benchmark
//! (`bench/api_latency.sh`): DAGS DAGs of TASKS tasks (a chain), each with
//! RUNS finished runs whose task instances have one try each, mostly
//! successes and some failures, as a store looks after months of use.
//!
//! `cargo run --release -p pave-rest --example seed_bench_store -- DB DAGS RUNS TASKS`

use chrono::{Duration, TimeZone, Utc};
use pave_core::model::{OutputFormat, Task, TaskKind};
use pave_core::{Dag, MapIndex, RunId, RunState, TaskState, TryNumber};
use pave_store::{
    ChangeBatch, DataInterval, NewRun, NewTi, ParsedDag, RunChange, RunType, SqliteStore, Store,
    TiChange, TiKey, TryRecord,
};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [db, dags, runs, tasks] = args.as_slice() else {
        return Err("usage: seed_bench_store DB DAGS RUNS TASKS".into());
    };
    let (dags, runs, tasks): (usize, usize, usize) = (dags.parse()?, runs.parse()?, tasks.parse()?);
    let store = SqliteStore::open(db).await?;
    store.migrate().await?;
    let start = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .ok_or("bad start date")?;
    let began = std::time::Instant::now();
    for d in 0..dags {
        let mut dag = Dag::new(format!("bench_dag_{d:03}").as_str());
        dag.tags = vec!["bench".into(), format!("team{}", d % 7)];
        dag.tasks = (0..tasks)
            .map(|t| {
                let mut task = Task::new(
                    format!("task_{t:02}").as_str(),
                    TaskKind::Command {
                        command: "true".into(),
                        cwd: None,
                        output: OutputFormat::Text,
                        skip_exit_code: None,
                    },
                );
                if t > 0 {
                    task.upstream = vec![format!("task_{:02}", t - 1).as_str().into()];
                }
                task
            })
            .collect();
        let upserted = store
            .upsert_dag(ParsedDag {
                dag_id: dag.dag_id.clone(),
                fileloc: Some(format!("/bench/{}.py", dag.dag_id)),
                spec: pave_scheduler::dags::encode(&dag),
                parsed_at: start,
                paused_at_creation: false,
            })
            .await?;
        for r in 0..runs {
            let logical = start + Duration::hours(i64::try_from(r)?);
            let mut create = ChangeBatch::new(logical);
            create.push(NewRun {
                dag_id: dag.dag_id.clone(),
                run_id: RunId::new(format!("scheduled__{}", logical.to_rfc3339()).as_str()),
                dag_version_id: upserted.version.id,
                run_type: RunType::Scheduled,
                state: RunState::Running,
                logical_date: Some(logical),
                data_interval: Some(DataInterval {
                    start: logical - Duration::hours(1),
                    end: logical,
                }),
                run_after: logical,
                conf: serde_json::json!({}),
                tasks: dag.tasks.iter().map(NewTi::from).collect(),
            });
            let created = store.apply(create).await?;
            let run = *created.created_runs.first().ok_or("run not created")?;
            // One run in ten fails at its last task.
            let failed_run = r % 10 == 9;
            let end = logical + Duration::minutes(30);
            let mut finish = ChangeBatch::new(end);
            for (i, t) in dag.tasks.iter().enumerate() {
                let state = if failed_run && i + 1 == tasks {
                    TaskState::Failed
                } else {
                    TaskState::Success
                };
                let key = TiKey::new(run, t.task_id.clone(), MapIndex::UNMAPPED);
                let at = logical + Duration::seconds(i64::try_from(i)? * 60);
                finish.push(
                    TiChange::new(key.clone(), state)
                        .try_number(TryNumber(1))
                        .start_date(at)
                        .end_date(at + Duration::seconds(50))
                        .reason("seeded"),
                );
                let mut tr = TryRecord::new(key, TryNumber(1), state);
                tr.start_date = Some(at);
                tr.end_date = Some(at + Duration::seconds(50));
                tr.exit_code = Some(i32::from(state != TaskState::Success));
                finish.push(tr);
            }
            finish.push(RunChange::new(
                run,
                if failed_run {
                    RunState::Failed
                } else {
                    RunState::Success
                },
            ));
            store.apply(finish).await?;
        }
    }
    eprintln!(
        "seeded {dags} DAGs x {runs} runs x {tasks} tasks = {} task instances in {:.1}s",
        dags * runs * tasks,
        began.elapsed().as_secs_f64()
    );
    Ok(())
}
