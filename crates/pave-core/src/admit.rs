//! Admission under contention: which `scheduled` task instances to queue now.
//!
//! This reproduces the loop of Airflow's
//! `SchedulerJobRunner._executable_task_instances_to_queued`, extended with
//! executor resources (CPU, memory, GPUs):
//! - candidates are taken in order of effective priority weight (highest
//!   first), then the run's date (older first), then map index, then ids;
//! - each candidate is queued if everything it needs is free: an executor slot
//!   (parallelism), `pool_slots` of its pool, its DAG's `max_active_tasks`, its
//!   task's `max_active_tis_per_dag`, and its CPU, memory and GPUs;
//! - otherwise it waits with a reason, and later (lower-priority) candidates
//!   are still considered, as in Airflow: a small task may pass a larger one
//!   that does not fit. A candidate is never passed by a lower-priority one that
//!   needs as much or more of everything under the same limits.
//! - a candidate that could never run (more pool slots than the pool has, more
//!   CPU, memory or GPUs than the executor has in total) is reported as
//!   impossible, so the driver can fail it instead of letting it wait forever.
//!   Airflow only logs a warning and leaves such a task instance scheduled.
//!
//! "Active" counts are queued plus running task instances, as in Airflow.

use crate::ids::{DagId, MapIndex, RunId, TaskId};
use crate::model::Resources;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;

/// Identifies one task instance.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TiKey {
    pub dag_id: DagId,
    pub run_id: RunId,
    pub task_id: TaskId,
    pub map_index: MapIndex,
}

/// A `scheduled` task instance asking to be queued.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub key: TiKey,
    /// Effective priority weight (see `priority::effective_weights`).
    pub priority_weight: i64,
    /// The run's logical date (or `run_after` for a run without one): older runs go first.
    pub run_date: Option<DateTime<Utc>>,
    pub pool: String,
    pub pool_slots: u32,
    /// The task's `max_active_tis_per_dag`.
    pub max_active_tis_per_dag: Option<u32>,
    /// The DAG's effective `max_active_tasks`.
    pub dag_max_active_tasks: u32,
    pub resources: Resources,
}

/// Slots of one pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolSlots {
    pub total: u32,
    pub free: u32,
}

/// An amount of one resource the executor has; `None` where it is not tracked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Amount {
    pub total: u64,
    pub free: u64,
}

/// What is free right now.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Capacity {
    /// Executor slots left under its parallelism.
    pub executor_slots_free: u32,
    pub pools: BTreeMap<String, PoolSlots>,
    /// Queued plus running task instances per DAG.
    pub active_per_dag: BTreeMap<DagId, u32>,
    /// Queued plus running task instances per (DAG, task), over all runs.
    pub active_per_task: BTreeMap<(DagId, TaskId), u32>,
    /// CPU in millicores; `None`: not limited.
    pub cpu_millis: Option<Amount>,
    pub memory_bytes: Option<Amount>,
    pub gpu: Option<Amount>,
}

/// Why a candidate was not queued this time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WaitReason {
    ExecutorFull,
    NoSuchPool {
        pool: String,
    },
    Pool {
        pool: String,
        free: u32,
        total: u32,
        needed: u32,
    },
    DagMaxActiveTasks {
        dag_id: DagId,
        limit: u32,
    },
    TaskMaxActiveTis {
        dag_id: DagId,
        task_id: TaskId,
        limit: u32,
    },
    Resource {
        resource: ResourceKind,
        needed: u64,
        free: u64,
        total: u64,
    },
}

/// An executor resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    Cpu,
    Memory,
    Gpu,
}

impl ResourceKind {
    fn show(self, amount: u64) -> String {
        match self {
            ResourceKind::Cpu => format!("{amount}m CPU"),
            ResourceKind::Memory => show_bytes(amount),
            ResourceKind::Gpu => format!("{amount} GPU"),
        }
    }
}

fn show_bytes(b: u64) -> String {
    const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
    const MIB: f64 = 1024.0 * 1024.0;
    let f = b as f64;
    if f >= GIB {
        format!("{:.1} GiB memory", f / GIB)
    } else {
        format!("{:.0} MiB memory", f / MIB)
    }
}

impl fmt::Display for WaitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitReason::ExecutorFull => {
                write!(f, "executor parallelism reached (no free executor slot)")
            }
            WaitReason::NoSuchPool { pool } => {
                write!(
                    f,
                    "pool `{pool}` does not exist: create it or use another pool"
                )
            }
            WaitReason::Pool {
                pool,
                free,
                total,
                needed,
            } => {
                write!(f, "waiting for pool `{pool}` ({free} of {total} slots free")?;
                if *needed > 1 {
                    write!(f, ", needs {needed}")?;
                }
                write!(f, ")")
            }
            WaitReason::DagMaxActiveTasks { dag_id, limit } => {
                write!(f, "max_active_tasks of DAG `{dag_id}` reached ({limit})")
            }
            WaitReason::TaskMaxActiveTis {
                dag_id,
                task_id,
                limit,
            } => write!(
                f,
                "max_active_tis_per_dag of task `{task_id}` in DAG `{dag_id}` reached ({limit})"
            ),
            WaitReason::Resource {
                resource,
                needed,
                free,
                total,
            } => match resource {
                ResourceKind::Gpu => write!(f, "needs {needed} GPU, {free} of {total} free"),
                _ => write!(
                    f,
                    "needs {}, {} of {} free",
                    resource.show(*needed),
                    resource.show(*free),
                    resource.show(*total)
                ),
            },
        }
    }
}

/// The decision for every candidate.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Admission {
    /// To queue now, in admission order.
    pub queue: Vec<TiKey>,
    /// To leave scheduled, with the first limit each one hit.
    pub wait: Vec<(TiKey, WaitReason)>,
    /// Can never run with this executor and pool configuration.
    pub impossible: Vec<(TiKey, String)>,
}

/// Airflow's order: priority weight descending, older runs first, then map index.
pub fn admission_order(a: &Candidate, b: &Candidate) -> Ordering {
    b.priority_weight
        .cmp(&a.priority_weight)
        .then_with(|| match (a.run_date, b.run_date) {
            (Some(x), Some(y)) => x.cmp(&y),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        })
        .then_with(|| a.key.map_index.cmp(&b.key.map_index))
        .then_with(|| a.key.cmp(&b.key))
}

fn demands(c: &Candidate) -> [(ResourceKind, u64); 3] {
    [
        (ResourceKind::Cpu, c.resources.cpu_millis),
        (ResourceKind::Memory, c.resources.memory_bytes),
        (ResourceKind::Gpu, u64::from(c.resources.gpu)),
    ]
}

fn amount_mut(cap: &mut Capacity, kind: ResourceKind) -> &mut Option<Amount> {
    match kind {
        ResourceKind::Cpu => &mut cap.cpu_millis,
        ResourceKind::Memory => &mut cap.memory_bytes,
        ResourceKind::Gpu => &mut cap.gpu,
    }
}

fn impossible_reason(c: &Candidate, cap: &Capacity) -> Option<String> {
    if let Some(pool) = cap.pools.get(&c.pool)
        && c.pool_slots > pool.total
    {
        return Some(format!(
            "task `{}` needs {} slots of pool `{}`, which has only {} in total: lower pool_slots or enlarge the pool",
            c.key.task_id, c.pool_slots, c.pool, pool.total
        ));
    }
    for (kind, needed) in demands(c) {
        let total = match kind {
            ResourceKind::Cpu => cap.cpu_millis,
            ResourceKind::Memory => cap.memory_bytes,
            ResourceKind::Gpu => cap.gpu,
        };
        if let Some(a) = total
            && needed > a.total
        {
            return Some(format!(
                "task `{}` needs {} but the executor has only {} in total: lower the request or add capacity",
                c.key.task_id,
                kind.show(needed),
                kind.show(a.total)
            ));
        }
    }
    None
}

/// Chooses which candidates to queue now; never exceeds any capacity.
pub fn admit(candidates: &[Candidate], capacity: &Capacity) -> Admission {
    let mut order: Vec<&Candidate> = candidates.iter().collect();
    order.sort_by(|a, b| admission_order(a, b));
    let mut cap = capacity.clone();
    let mut out = Admission::default();
    for c in order {
        if let Some(reason) = impossible_reason(c, &cap) {
            out.impossible.push((c.key.clone(), reason));
            continue;
        }
        match check(c, &mut cap) {
            Ok(()) => out.queue.push(c.key.clone()),
            Err(reason) => out.wait.push((c.key.clone(), reason)),
        }
    }
    out
}

/// Takes what `c` needs from `cap`, or says which limit stops it.
fn check(c: &Candidate, cap: &mut Capacity) -> Result<(), WaitReason> {
    if cap.executor_slots_free == 0 {
        return Err(WaitReason::ExecutorFull);
    }
    let Some(pool) = cap.pools.get(&c.pool).copied() else {
        return Err(WaitReason::NoSuchPool {
            pool: c.pool.clone(),
        });
    };
    if pool.free < c.pool_slots {
        return Err(WaitReason::Pool {
            pool: c.pool.clone(),
            free: pool.free,
            total: pool.total,
            needed: c.pool_slots,
        });
    }
    let dag_active = cap.active_per_dag.get(&c.key.dag_id).copied().unwrap_or(0);
    if dag_active >= c.dag_max_active_tasks {
        return Err(WaitReason::DagMaxActiveTasks {
            dag_id: c.key.dag_id.clone(),
            limit: c.dag_max_active_tasks,
        });
    }
    let task_key = (c.key.dag_id.clone(), c.key.task_id.clone());
    let task_active = cap.active_per_task.get(&task_key).copied().unwrap_or(0);
    if let Some(limit) = c.max_active_tis_per_dag
        && task_active >= limit
    {
        return Err(WaitReason::TaskMaxActiveTis {
            dag_id: c.key.dag_id.clone(),
            task_id: c.key.task_id.clone(),
            limit,
        });
    }
    for (kind, needed) in demands(c) {
        if let Some(a) = amount_mut(cap, kind)
            && needed > a.free
        {
            return Err(WaitReason::Resource {
                resource: kind,
                needed,
                free: a.free,
                total: a.total,
            });
        }
    }
    // Everything fits: take it.
    cap.executor_slots_free -= 1;
    if let Some(p) = cap.pools.get_mut(&c.pool) {
        p.free -= c.pool_slots;
    }
    *cap.active_per_dag.entry(c.key.dag_id.clone()).or_insert(0) += 1;
    *cap.active_per_task.entry(task_key).or_insert(0) += 1;
    for (kind, needed) in demands(c) {
        if let Some(a) = amount_mut(cap, kind) {
            a.free -= needed;
        }
    }
    Ok(())
}
