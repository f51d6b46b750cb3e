//! Admission tests: Airflow's order and limits, resources, impossible requests,
//! and properties (no capacity is ever exceeded; no priority inversion).

use chrono::{DateTime, TimeZone, Utc};
use pave_core::admit::{Admission, Amount, Candidate, Capacity, PoolSlots, TiKey, admit};
use pave_core::{DagId, MapIndex, Resources, RunId, TaskId};
use proptest::prelude::*;
use std::collections::BTreeMap;

fn day(d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, d, 0, 0, 0)
        .single()
        .expect("date")
}

fn cand(dag: &str, task: &str, run_day: u32, map_index: i32, weight: i64) -> Candidate {
    Candidate {
        key: TiKey {
            dag_id: DagId::new(dag),
            run_id: RunId::new(format!("scheduled__{run_day}")),
            task_id: TaskId::new(task),
            map_index: MapIndex(map_index),
        },
        priority_weight: weight,
        run_date: Some(day(run_day)),
        pool: "default_pool".into(),
        pool_slots: 1,
        max_active_tis_per_dag: None,
        dag_max_active_tasks: 16,
        resources: Resources::default(),
    }
}

fn capacity(slots: u32, pool_free: u32) -> Capacity {
    let mut pools = BTreeMap::new();
    pools.insert(
        "default_pool".to_owned(),
        PoolSlots {
            total: 128,
            free: pool_free,
        },
    );
    Capacity {
        executor_slots_free: slots,
        pools,
        ..Capacity::default()
    }
}

fn names(a: &Admission) -> Vec<String> {
    a.queue
        .iter()
        .map(|k| format!("{}[{}]@{}", k.task_id, k.map_index, k.run_id))
        .collect()
}

fn reasons(a: &Admission) -> Vec<String> {
    a.wait
        .iter()
        .map(|(k, r)| format!("{}: {r}", k.task_id))
        .collect()
}

#[test]
fn order_is_priority_then_older_run_then_map_index() {
    let cands = vec![
        cand("d", "low", 1, -1, 1),
        cand("d", "high", 2, 1, 10),
        cand("d", "high", 2, 0, 10),
        cand("d", "high", 1, 5, 10),
    ];
    let a = admit(&cands, &capacity(3, 128));
    assert_eq!(
        names(&a),
        vec![
            "high[5]@scheduled__1",
            "high[0]@scheduled__2",
            "high[1]@scheduled__2"
        ]
    );
    assert_eq!(
        reasons(&a),
        vec!["low: executor parallelism reached (no free executor slot)"]
    );
}

#[test]
fn limits_and_reasons() {
    struct Case {
        name: &'static str,
        cands: Vec<Candidate>,
        cap: Capacity,
        queued: usize,
        reasons: Vec<&'static str>,
        impossible: Vec<&'static str>,
    }
    let gpu_pool = |free| {
        let mut c = capacity(32, 128);
        c.pools.insert("gpu".into(), PoolSlots { total: 4, free });
        c
    };
    let in_pool = |mut c: Candidate, pool: &str, slots: u32| {
        c.pool = pool.into();
        c.pool_slots = slots;
        c
    };
    let with_gpu = |mut c: Candidate, gpu: u32| {
        c.resources.gpu = gpu;
        c
    };
    let cases = vec![
        Case {
            name: "pool full",
            cands: vec![in_pool(cand("d", "t", 1, -1, 1), "gpu", 1)],
            cap: gpu_pool(0),
            queued: 0,
            reasons: vec!["t: waiting for pool `gpu` (0 of 4 slots free)"],
            impossible: vec![],
        },
        Case {
            name: "pool slots: a smaller task passes a bigger one that does not fit",
            cands: vec![
                in_pool(cand("d", "big", 1, -1, 5), "gpu", 3),
                in_pool(cand("d", "small", 1, -1, 1), "gpu", 1),
            ],
            cap: gpu_pool(2),
            queued: 1,
            reasons: vec!["big: waiting for pool `gpu` (2 of 4 slots free, needs 3)"],
            impossible: vec![],
        },
        Case {
            name: "more pool slots than the pool has",
            cands: vec![in_pool(cand("d", "t", 1, -1, 1), "gpu", 5)],
            cap: gpu_pool(4),
            queued: 0,
            reasons: vec![],
            impossible: vec!["needs 5 slots of pool `gpu`, which has only 4 in total"],
        },
        Case {
            name: "unknown pool",
            cands: vec![in_pool(cand("d", "t", 1, -1, 1), "nope", 1)],
            cap: capacity(4, 4),
            queued: 0,
            reasons: vec!["t: pool `nope` does not exist: create it or use another pool"],
            impossible: vec![],
        },
        Case {
            name: "dag max_active_tasks",
            cands: vec![cand("x", "a", 1, -1, 2), cand("x", "b", 1, -1, 1)],
            cap: {
                let mut c = capacity(32, 128);
                c.active_per_dag.insert(DagId::new("x"), 15);
                c
            },
            queued: 1,
            reasons: vec!["b: max_active_tasks of DAG `x` reached (16)"],
            impossible: vec![],
        },
        Case {
            name: "task max_active_tis_per_dag across runs",
            cands: (1..=3)
                .map(|d| {
                    let mut c = cand("x", "t", d, -1, 1);
                    c.max_active_tis_per_dag = Some(2);
                    c
                })
                .collect(),
            cap: capacity(32, 128),
            queued: 2,
            reasons: vec!["t: max_active_tis_per_dag of task `t` in DAG `x` reached (2)"],
            impossible: vec![],
        },
        Case {
            name: "GPUs busy",
            cands: vec![with_gpu(cand("d", "train", 1, -1, 1), 2)],
            cap: {
                let mut c = capacity(32, 128);
                c.gpu = Some(Amount { total: 2, free: 0 });
                c
            },
            queued: 0,
            reasons: vec!["train: needs 2 GPU, 0 of 2 free"],
            impossible: vec![],
        },
        Case {
            name: "more GPUs than the executor has",
            cands: vec![with_gpu(cand("d", "train", 1, -1, 1), 4)],
            cap: {
                let mut c = capacity(32, 128);
                c.gpu = Some(Amount { total: 2, free: 2 });
                c
            },
            queued: 0,
            reasons: vec![],
            impossible: vec!["needs 4 GPU but the executor has only 2 GPU in total"],
        },
        Case {
            name: "cpu and memory",
            cands: vec![
                {
                    let mut c = cand("d", "cpu", 1, -1, 2);
                    c.resources.cpu_millis = 2000;
                    c
                },
                {
                    let mut c = cand("d", "mem", 1, -1, 1);
                    c.resources.memory_bytes = 4 << 30;
                    c
                },
            ],
            cap: {
                let mut c = capacity(32, 128);
                c.cpu_millis = Some(Amount {
                    total: 4000,
                    free: 500,
                });
                c.memory_bytes = Some(Amount {
                    total: 8 << 30,
                    free: 1 << 30,
                });
                c
            },
            queued: 0,
            reasons: vec![
                "cpu: needs 2000m CPU, 500m CPU of 4000m CPU free",
                "mem: needs 4.0 GiB memory, 1.0 GiB memory of 8.0 GiB memory free",
            ],
            impossible: vec![],
        },
    ];
    for c in cases {
        let a = admit(&c.cands, &c.cap);
        assert_eq!(a.queue.len(), c.queued, "case `{}`: {:?}", c.name, a);
        assert_eq!(reasons(&a), c.reasons, "case `{}`", c.name);
        assert_eq!(a.impossible.len(), c.impossible.len(), "case `{}`", c.name);
        for ((_, got), want) in a.impossible.iter().zip(&c.impossible) {
            assert!(
                got.contains(want),
                "case `{}`: `{got}` lacks `{want}`",
                c.name
            );
        }
    }
}

fn arb_candidate() -> impl Strategy<Value = Candidate> {
    (
        0usize..3,
        0usize..4,
        1u32..4,
        -1i32..3,
        0i64..5,
        0usize..3,
        0u32..4,
        (0u64..3000, 0u64..3, 0u32..3),
    )
        .prop_map(|(dag, task, run, mi, w, pool, slots, (cpu, mem, gpu))| {
            let mut c = cand(&format!("dag{dag}"), &format!("t{task}"), run, mi, w);
            c.pool = ["default_pool", "gpu", "small"][pool].into();
            c.pool_slots = slots;
            // One limit per task, as in a real DAG.
            c.max_active_tis_per_dag = [Some(1), Some(2), None, None][task];
            c.dag_max_active_tasks = 3;
            c.resources = Resources {
                cpu_millis: cpu,
                memory_bytes: mem << 30,
                gpu,
                ..Resources::default()
            };
            c
        })
}

fn arb_capacity() -> impl Strategy<Value = Capacity> {
    (0u32..8, 0u32..5, 0u32..3, 0u64..8000, 0u64..5, 0u64..4).prop_map(
        |(slots, gpu_pool, small_pool, cpu, mem, gpu)| {
            let mut pools = BTreeMap::new();
            pools.insert("default_pool".into(), PoolSlots { total: 8, free: 6 });
            pools.insert(
                "gpu".into(),
                PoolSlots {
                    total: 4,
                    free: gpu_pool.min(4),
                },
            );
            pools.insert(
                "small".into(),
                PoolSlots {
                    total: 2,
                    free: small_pool.min(2),
                },
            );
            let mut active_per_dag = BTreeMap::new();
            active_per_dag.insert(DagId::new("dag0"), 1);
            Capacity {
                executor_slots_free: slots,
                pools,
                active_per_dag,
                active_per_task: BTreeMap::new(),
                cpu_millis: Some(Amount {
                    total: 8000,
                    free: cpu,
                }),
                memory_bytes: Some(Amount {
                    total: 8 << 30,
                    free: mem << 30,
                }),
                gpu: Some(Amount {
                    total: 4,
                    free: gpu,
                }),
            }
        },
    )
}

proptest! {
    #[test]
    fn never_exceeds_capacity_and_never_inverts_priority(
        cands in proptest::collection::vec(arb_candidate(), 0..25),
        cap in arb_capacity(),
    ) {
        // Task instances are unique: keep the first of any duplicate key.
        let mut seen = std::collections::BTreeSet::new();
        let cands: Vec<Candidate> = cands.into_iter().filter(|c| seen.insert(c.key.clone())).collect();
        let a = admit(&cands, &cap);
        prop_assert_eq!(a.queue.len() + a.wait.len() + a.impossible.len(), cands.len());
        let by_key: BTreeMap<&TiKey, &Candidate> = cands.iter().map(|c| (&c.key, c)).collect();
        let chosen: Vec<&Candidate> = a.queue.iter().filter_map(|k| by_key.get(k).copied()).collect();

        prop_assert!(chosen.len() as u32 <= cap.executor_slots_free);
        for (name, pool) in &cap.pools {
            let used: u32 = chosen.iter().filter(|c| &c.pool == name).map(|c| c.pool_slots).sum();
            prop_assert!(used <= pool.free, "pool {} over: {} > {}", name, used, pool.free);
        }
        let sum = |f: &dyn Fn(&Candidate) -> u64| chosen.iter().map(|c| f(c)).sum::<u64>();
        prop_assert!(sum(&|c| c.resources.cpu_millis) <= cap.cpu_millis.map_or(u64::MAX, |a| a.free));
        prop_assert!(sum(&|c| c.resources.memory_bytes) <= cap.memory_bytes.map_or(u64::MAX, |a| a.free));
        prop_assert!(sum(&|c| u64::from(c.resources.gpu)) <= cap.gpu.map_or(u64::MAX, |a| a.free));
        let mut per_dag: BTreeMap<&DagId, u32> = BTreeMap::new();
        let mut per_task: BTreeMap<(&DagId, &TaskId), u32> = BTreeMap::new();
        for c in &chosen {
            *per_dag.entry(&c.key.dag_id).or_default() += 1;
            *per_task.entry((&c.key.dag_id, &c.key.task_id)).or_default() += 1;
        }
        for c in &chosen {
            let dag_total = per_dag[&c.key.dag_id] + cap.active_per_dag.get(&c.key.dag_id).copied().unwrap_or(0);
            prop_assert!(dag_total <= c.dag_max_active_tasks);
            if let Some(limit) = c.max_active_tis_per_dag {
                prop_assert!(per_task[&(&c.key.dag_id, &c.key.task_id)] <= limit);
            }
        }

        // No inversion: a waiting candidate is never passed by a lower-priority one
        // in the same pool and task (same limits) that needs as much or more of everything.
        for (key, _) in &a.wait {
            let h = by_key[key];
            for l in &chosen {
                let same_limits = l.pool == h.pool && l.key.dag_id == h.key.dag_id
                    && l.key.task_id == h.key.task_id
                    && l.max_active_tis_per_dag == h.max_active_tis_per_dag;
                let needs_more = l.pool_slots >= h.pool_slots
                    && l.resources.cpu_millis >= h.resources.cpu_millis
                    && l.resources.memory_bytes >= h.resources.memory_bytes
                    && l.resources.gpu >= h.resources.gpu;
                prop_assert!(
                    !(same_limits && needs_more && l.priority_weight < h.priority_weight),
                    "{:?} waits while lower-priority {:?} runs", h.key, l.key
                );
            }
        }
    }
}
