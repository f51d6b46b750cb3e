//! Control-plane benchmark: task instances per second through the real
//! scheduler driver and the real SQLite store, with an executor that runs
//! nothing (`NoopExecutor`: every attempt ends the moment it starts).
//!
//! Run: `cargo bench -p pave-scheduler --bench control_plane`
//!
//! Every case runs in a fresh child process (this executable re-run with
//! `PAVE_BENCH_CASE` set), so the peak RSS (`VmHWM`) of one case does not
//! leak into the next. Each case is repeated `PAVE_BENCH_REPS` times
//! (default 3; the 100k case `PAVE_BENCH_REPS_100K`, default 1) and the
//! median is reported. `PAVE_BENCH_CASES=a,b` picks cases by name.
//! `PAVE_BENCH_PARALLELISM=32` gives the executor that many slots (default:
//! practically unlimited), so that a wide run goes through in batches as
//! it does through `pave standalone --parallelism 32`: the scheduler's own
//! cost per batch of ends and starts, without the tasks' processes.
//!
//! Besides wall time it reports where the time went: the driver's `step`
//! (decide + admit + start) versus `wait` (handling executor completions,
//! one store transaction each), and per-method call counts and times of the
//! store (through a timing wrapper around `Arc<dyn Store>`).
//!
//! This is a benchmark, not a test: it asserts no timing.

use chrono::{Duration as ChronoDuration, TimeZone, Utc};
use pave_core::Dag;
use pave_core::model::{MapSource, Mapping, OutputFormat, Task, TaskKind};
use pave_executor::{Capacity, ExecutorEvent, NoopExecutor};
use pave_scheduler::{Scheduler, SchedulerConfig, SystemClock, TriggerRequest};
use pave_store::{ParsedDag, PoolRecord, RunFilter, RunKey, SqliteStore, Store, TimedStore};
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One benchmark case: `runs` DAG runs of a DAG of `tasks` independent tasks.
#[derive(Clone, Copy, Debug)]
struct Case {
    name: &'static str,
    runs: usize,
    tasks: usize,
    /// Trigger every run first and drive them together (else one after the other).
    concurrent: bool,
    /// Slots of `default_pool` (Airflow's default, and pave's, is 128; the
    /// throughput cases widen it so that the pool is not what limits a step).
    pool_slots: u32,
    shape: Shape,
}

/// How the `tasks` of a case's DAG relate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    /// `tasks` independent tasks.
    Independent,
    /// One task mapped over `tasks` literal values.
    Mapped,
    /// `tasks` tasks one after the other: the scheduler's turn-around per
    /// hop (an end written, the run decided, the next task admitted and
    /// started), which is what a chain of short tasks waits for.
    Chain,
}

const WIDE: u32 = 1_000_000;

const CASES: &[Case] = &[
    Case {
        name: "100:1x100-chain",
        runs: 1,
        tasks: 100,
        concurrent: false,
        pool_slots: WIDE,
        shape: Shape::Chain,
    },
    Case {
        name: "1k:1x1000-mapped",
        runs: 1,
        tasks: 1000,
        concurrent: false,
        pool_slots: WIDE,
        shape: Shape::Mapped,
    },
    Case {
        name: "10k:1x10000-mapped",
        runs: 1,
        tasks: 10_000,
        concurrent: false,
        pool_slots: WIDE,
        shape: Shape::Mapped,
    },
    Case {
        name: "1k:1x1000",
        runs: 1,
        tasks: 1000,
        concurrent: false,
        pool_slots: WIDE,
        shape: Shape::Independent,
    },
    Case {
        name: "10k:10x1000",
        runs: 10,
        tasks: 1000,
        concurrent: false,
        pool_slots: WIDE,
        shape: Shape::Independent,
    },
    Case {
        name: "10k:10x1000-concurrent",
        runs: 10,
        tasks: 1000,
        concurrent: true,
        pool_slots: WIDE,
        shape: Shape::Independent,
    },
    Case {
        name: "10k:1x10000",
        runs: 1,
        tasks: 10_000,
        concurrent: false,
        pool_slots: WIDE,
        shape: Shape::Independent,
    },
    Case {
        name: "10k:10x1000-pool128",
        runs: 10,
        tasks: 1000,
        concurrent: false,
        pool_slots: 128,
        shape: Shape::Independent,
    },
    Case {
        name: "100k:100x1000",
        runs: 100,
        tasks: 1000,
        concurrent: false,
        pool_slots: WIDE,
        shape: Shape::Independent,
    },
];

// ---------------------------------------------------------------- one case

/// What one run of one case measured (printed by the child as one line).
#[derive(Debug, Default, Clone)]
struct Measured {
    tis: usize,
    /// Triggers plus driving every run to the end.
    total: Duration,
    /// Inside `Scheduler::trigger` (creating runs and their task instances).
    trigger: Duration,
    /// Inside `Scheduler::step` (decide, admit, start).
    step: Duration,
    /// Inside `Scheduler::wait` (handling completions).
    wait: Duration,
    steps: u64,
    vm_hwm_kib: u64,
    store: BTreeMap<String, (u64, f64)>,
}

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn bench_dag(tasks: usize, shape: Shape) -> Dag {
    let mut dag = Dag::new("bench_fanout");
    dag.max_active_runs = Some(10_000);
    dag.max_active_tasks = Some(1_000_000);
    let task = |id: String| {
        Task::new(
            id,
            TaskKind::Command {
                command: "true".to_owned(),
                cwd: None,
                output: OutputFormat::Text,
                skip_exit_code: None,
            },
        )
    };
    dag.tasks = match shape {
        Shape::Mapped => {
            let mut t = task("mapped".to_owned());
            t.mapping = Some(Mapping::Expand {
                args: BTreeMap::from([(
                    "x".to_owned(),
                    MapSource::Literal {
                        values: (0..tasks).map(serde_json::Value::from).collect(),
                    },
                )]),
            });
            vec![t]
        }
        Shape::Independent => (0..tasks).map(|i| task(format!("t{i:05}"))).collect(),
        Shape::Chain => (0..tasks)
            .map(|i| {
                let mut t = task(format!("t{i:05}"));
                if i > 0 {
                    t.upstream = vec![format!("t{:05}", i - 1).into()];
                }
                t
            })
            .collect(),
    };
    dag
}

async fn run_case(case: Case) -> Measured {
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = SqliteStore::open(dir.path().join("pave.db"))
        .await
        .expect("open store");
    sqlite.migrate().await.expect("migrate");
    let timed = Arc::new(TimedStore::new(Arc::new(sqlite)));
    let store: Arc<dyn Store> = timed.clone();

    store
        .put_pool(PoolRecord {
            name: "default_pool".to_owned(),
            slots: case.pool_slots,
            description: Some("bench".to_owned()),
            include_deferred: false,
        })
        .await
        .expect("default pool");

    let dag = bench_dag(case.tasks, case.shape);
    store
        .upsert_dag(ParsedDag {
            dag_id: dag.dag_id.clone(),
            fileloc: Some("bench".to_owned()),
            spec: pave_scheduler::dags::encode(&dag),
            parsed_at: Utc::now(),
            paused_at_creation: false,
        })
        .await
        .expect("upsert dag");

    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<ExecutorEvent>();
    let executor = NoopExecutor::new(tx).with_capacity(Capacity {
        parallelism: env_usize("PAVE_BENCH_PARALLELISM", 1_000_000).max(1),
        cpu_millis: u64::MAX / 4,
        memory_bytes: u64::MAX / 4,
        gpus: Vec::new(),
    });
    let mut cfg = SchedulerConfig::new(dir.path().join("logs"));
    cfg.create_scheduled_runs = false;
    cfg.default_max_active_runs = 10_000;
    cfg.default_max_active_tasks = 1_000_000;
    cfg.max_map_length = case.tasks;
    if let Some(n) = std::env::var("PAVE_BENCH_ADMIT_CHUNK")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        cfg.admit_chunk = n;
    }
    let mut sched = Scheduler::new(
        store.clone(),
        Arc::new(executor),
        rx,
        Arc::new(SystemClock),
        cfg,
    );

    let base = Utc
        .with_ymd_and_hms(2025, 1, 1, 0, 0, 0)
        .single()
        .expect("date");
    let mut m = Measured {
        tis: case.runs * case.tasks,
        ..Default::default()
    };
    let start = Instant::now();
    let mut pending: BTreeSet<RunKey> = BTreeSet::new();
    let trigger_one = async |sched: &mut Scheduler, i: usize, m: &mut Measured| {
        let t = Instant::now();
        let run = sched
            .trigger(
                &dag.dag_id,
                TriggerRequest {
                    run_id: Some(format!("bench_{i:04}")),
                    logical_date: Some(
                        base + ChronoDuration::seconds(i64::try_from(i).unwrap_or(0)),
                    ),
                    conf: serde_json::Value::Null,
                },
            )
            .await
            .expect("trigger");
        m.trigger += t.elapsed();
        run.key
    };
    if case.concurrent {
        for i in 0..case.runs {
            let key = trigger_one(&mut sched, i, &mut m).await;
            pending.insert(key);
        }
        drive(&mut sched, &mut pending, &mut m).await;
    } else {
        for i in 0..case.runs {
            let key = trigger_one(&mut sched, i, &mut m).await;
            pending.insert(key);
            drive(&mut sched, &mut pending, &mut m).await;
        }
    }
    m.total = start.elapsed();
    m.vm_hwm_kib = vm_hwm_kib();

    // Every task instance must have succeeded, or the numbers mean nothing.
    let runs = store
        .list_runs(&RunFilter::default())
        .await
        .expect("list runs");
    assert_eq!(runs.len(), case.runs, "runs created");
    for r in &runs {
        assert_eq!(r.state, pave_core::RunState::Success, "run {}", r.run_id);
    }
    m.store = timed
        .snapshot()
        .into_iter()
        .map(|(k, (n, d))| (k, (n, d.as_secs_f64())))
        .collect();
    m
}

/// What `Scheduler::run_until` does, with `step` and `wait` timed apart.
async fn drive(sched: &mut Scheduler, pending: &mut BTreeSet<RunKey>, m: &mut Measured) {
    loop {
        let t = Instant::now();
        let report = sched.step().await.expect("step");
        m.step += t.elapsed();
        m.steps += 1;
        for r in &report.finished_runs {
            pending.remove(r);
        }
        if pending.is_empty() {
            return;
        }
        let t = Instant::now();
        sched.wait().await.expect("wait");
        m.wait += t.elapsed();
    }
}

// ---------------------------------------------------------------- reporting

fn encode_measured(m: &Measured) -> String {
    let mut out = format!(
        "RESULT tis={} total={} trigger={} step={} wait={} steps={} hwm={}",
        m.tis,
        m.total.as_secs_f64(),
        m.trigger.as_secs_f64(),
        m.step.as_secs_f64(),
        m.wait.as_secs_f64(),
        m.steps,
        m.vm_hwm_kib
    );
    for (k, (n, s)) in &m.store {
        out.push_str(&format!(" store.{k}={n}/{s}"));
    }
    out
}

fn decode_measured(line: &str) -> Option<Measured> {
    let rest = line.strip_prefix("RESULT ")?;
    let mut m = Measured::default();
    for kv in rest.split_whitespace() {
        let (k, v) = kv.split_once('=')?;
        let secs = |v: &str| v.parse::<f64>().ok().map(Duration::from_secs_f64);
        match k {
            "tis" => m.tis = v.parse().ok()?,
            "total" => m.total = secs(v)?,
            "trigger" => m.trigger = secs(v)?,
            "step" => m.step = secs(v)?,
            "wait" => m.wait = secs(v)?,
            "steps" => m.steps = v.parse().ok()?,
            "hwm" => m.vm_hwm_kib = v.parse().ok()?,
            _ => {
                let name = k.strip_prefix("store.")?;
                let (n, s) = v.split_once('/')?;
                m.store
                    .insert(name.to_owned(), (n.parse().ok()?, s.parse().ok()?));
            }
        }
    }
    Some(m)
}

fn median_by<T: Clone>(xs: &[T], key: impl Fn(&T) -> f64) -> T {
    let mut v: Vec<T> = xs.to_vec();
    v.sort_by(|a, b| key(a).total_cmp(&key(b)));
    v[v.len() / 2].clone()
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    if let Ok(name) = std::env::var("PAVE_BENCH_CASE") {
        let case = *CASES.iter().find(|c| c.name == name).expect("known case");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let m = rt.block_on(run_case(case));
        println!("{}", encode_measured(&m));
        return;
    }

    let picked: Option<Vec<String>> = std::env::var("PAVE_BENCH_CASES")
        .ok()
        .map(|s| s.split(',').map(str::to_owned).collect());
    let reps = env_usize("PAVE_BENCH_REPS", 3).max(1);
    let reps_100k = env_usize("PAVE_BENCH_REPS_100K", 1).max(1);
    let exe = std::env::current_exe().expect("current exe");

    println!(
        "control_plane: scheduler + SQLite (WAL, file in a tempdir) + NoopExecutor; \
         independent `true` command tasks; median of reps, each rep a fresh process"
    );
    let mut rows = Vec::new();
    for case in CASES {
        if picked
            .as_ref()
            .is_some_and(|p| !p.iter().any(|n| n == case.name))
        {
            continue;
        }
        let n = if case.runs * case.tasks >= 100_000 {
            reps_100k
        } else {
            reps
        };
        let mut all = Vec::new();
        for rep in 0..n {
            let out = Command::new(&exe)
                .env("PAVE_BENCH_CASE", case.name)
                .output()
                .expect("run case");
            let text = String::from_utf8_lossy(&out.stdout);
            let Some(m) = text.lines().find_map(decode_measured) else {
                eprintln!(
                    "case {} rep {rep} failed: {}\n{}",
                    case.name,
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                );
                continue;
            };
            eprintln!(
                "  {} rep {rep}: {:.3}s, {:.0} ti/s, VmHWM {:.1} MiB",
                case.name,
                m.total.as_secs_f64(),
                m.tis as f64 / m.total.as_secs_f64(),
                m.vm_hwm_kib as f64 / 1024.0
            );
            all.push(m);
        }
        if all.is_empty() {
            continue;
        }
        let med = median_by(&all, |m| m.total.as_secs_f64());
        let rates: Vec<f64> = all
            .iter()
            .map(|m| m.tis as f64 / m.total.as_secs_f64())
            .collect();
        let (lo, hi) = rates
            .iter()
            .fold((f64::MAX, 0f64), |(l, h), r| (l.min(*r), h.max(*r)));
        let hwm = median_by(&all, |m| m.vm_hwm_kib as f64).vm_hwm_kib;
        rows.push((case, all.len(), med, lo, hi, hwm));
    }

    println!();
    println!(
        "| case | reps | TIs | wall s (median) | TI/s (median) | TI/s min..max | trigger s | step s | wait s | steps | VmHWM MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for (case, n, m, lo, hi, hwm) in &rows {
        println!(
            "| {} | {} | {} | {:.3} | {:.0} | {:.0}..{:.0} | {:.3} | {:.3} | {:.3} | {} | {:.1} |",
            case.name,
            n,
            m.tis,
            m.total.as_secs_f64(),
            m.tis as f64 / m.total.as_secs_f64(),
            lo,
            hi,
            m.trigger.as_secs_f64(),
            m.step.as_secs_f64(),
            m.wait.as_secs_f64(),
            m.steps,
            *hwm as f64 / 1024.0
        );
    }
    println!();
    println!("Store calls of the median rep (calls / total s / us per call):");
    for (case, _, m, ..) in &rows {
        let mut calls: Vec<_> = m.store.iter().collect();
        calls.sort_by(|a, b| b.1.1.total_cmp(&a.1.1));
        let parts: Vec<String> = calls
            .iter()
            .take(10)
            .map(|(k, (n, s))| format!("{k} {n} / {s:.3}s / {:.0}us", s * 1e6 / (*n).max(1) as f64))
            .collect();
        println!("  {}: {}", case.name, parts.join("; "));
    }
}
