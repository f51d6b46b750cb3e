//! Effective priority weights of a DAG's tasks, with Airflow's weight rules.
//!
//! Airflow (`BaseOperator.priority_weight_total`): `downstream` adds the own
//! weights of every task reachable downstream (each counted once), `upstream`
//! of every task reachable upstream, `absolute` uses the task's own weight.
//! Relatives contribute their own `priority_weight` whatever their rule. The
//! result is clamped to a 32-bit integer as Airflow's `db_safe_priority` does.

use crate::model::{Dag, WeightRule};
use std::collections::HashMap;

/// Effective priority weight of every task, indexed like `dag.tasks`.
///
/// Reachability is computed once per direction with bitsets in topological
/// order, O(V·E/64) words; an upstream id that names no task is ignored. If
/// the graph has a cycle (an invalid DAG) it falls back to a search per task.
pub fn effective_weights(dag: &Dag) -> Vec<i64> {
    let n = dag.tasks.len();
    let index: HashMap<&str, usize> = dag
        .tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (t.task_id.as_str(), i))
        .collect();
    // upstream[i]: direct upstream task indexes of task i.
    let upstream: Vec<Vec<usize>> = dag
        .tasks
        .iter()
        .map(|t| {
            let mut ups: Vec<usize> = t
                .upstream
                .iter()
                .filter_map(|u| index.get(u.as_str()).copied())
                .collect();
            ups.sort_unstable();
            ups.dedup();
            ups
        })
        .collect();
    let mut downstream: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, ups) in upstream.iter().enumerate() {
        for &u in ups {
            downstream[u].push(i);
        }
    }
    let own: Vec<i64> = dag.tasks.iter().map(|t| t.priority_weight).collect();
    let needs_down = dag
        .tasks
        .iter()
        .any(|t| t.weight_rule == WeightRule::Downstream);
    let needs_up = dag
        .tasks
        .iter()
        .any(|t| t.weight_rule == WeightRule::Upstream);

    // Sums over the nodes reachable through `next`; `prev` is its reverse.
    let sums = |next: &[Vec<usize>], prev: &[Vec<usize>]| -> Vec<i64> {
        match reach_sums(next, prev, &own) {
            Some(s) => s,
            None => (0..n).map(|i| dfs_sum(i, next, &own)).collect(),
        }
    };
    let down = if needs_down {
        sums(&downstream, &upstream)
    } else {
        Vec::new()
    };
    let up = if needs_up {
        sums(&upstream, &downstream)
    } else {
        Vec::new()
    };

    dag.tasks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let total = match t.weight_rule {
                WeightRule::Absolute => own[i],
                WeightRule::Downstream => own[i].saturating_add(down[i]),
                WeightRule::Upstream => own[i].saturating_add(up[i]),
            };
            total.clamp(i64::from(i32::MIN), i64::from(i32::MAX))
        })
        .collect()
}

/// For every node, the sum of the own weights of the nodes reachable from it
/// through `next` (itself excluded). `prev` is the reverse of `next`. `None` on a cycle.
fn reach_sums(next: &[Vec<usize>], prev: &[Vec<usize>], own: &[i64]) -> Option<Vec<i64>> {
    let n = next.len();
    // Kahn's algorithm from the sinks of `next`, so a node comes after all it reaches.
    let mut pending: Vec<usize> = next.iter().map(Vec::len).collect();
    let mut order: Vec<usize> = (0..n).filter(|&i| pending[i] == 0).collect();
    let mut head = 0;
    while head < order.len() {
        let v = order[head];
        head += 1;
        for &p in &prev[v] {
            pending[p] -= 1;
            if pending[p] == 0 {
                order.push(p);
            }
        }
    }
    if order.len() != n {
        return None;
    }
    let words = n.div_ceil(64);
    let mut reach = vec![0u64; n * words];
    for &v in &order {
        for &w in &next[v] {
            // reach[v] |= reach[w] | {w}
            let (v_row, w_row) = (v * words, w * words);
            for k in 0..words {
                let bits = reach[w_row + k];
                reach[v_row + k] |= bits;
            }
            reach[v_row + w / 64] |= 1u64 << (w % 64);
        }
    }
    Some(
        (0..n)
            .map(|v| {
                let mut sum = 0i64;
                for k in 0..words {
                    let mut bits = reach[v * words + k];
                    while bits != 0 {
                        let b = bits.trailing_zeros() as usize;
                        sum = sum.saturating_add(own[k * 64 + b]);
                        bits &= bits - 1;
                    }
                }
                sum
            })
            .collect(),
    )
}

/// The sum of own weights of nodes reachable from `start` (itself excluded,
/// unless a cycle leads back to it).
fn dfs_sum(start: usize, next: &[Vec<usize>], own: &[i64]) -> i64 {
    let mut seen = vec![false; next.len()];
    let mut stack: Vec<usize> = next[start].clone();
    let mut sum = 0i64;
    while let Some(v) = stack.pop() {
        if seen[v] || v == start {
            continue;
        }
        seen[v] = true;
        sum = sum.saturating_add(own[v]);
        stack.extend(next[v].iter().copied());
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Task, TaskKind};
    use proptest::prelude::*;

    fn task(id: &str, weight: i64, rule: WeightRule, ups: &[&str]) -> Task {
        let mut t = Task::new(id, TaskKind::Empty);
        t.priority_weight = weight;
        t.weight_rule = rule;
        t.upstream = ups.iter().map(|u| (*u).into()).collect();
        t
    }

    #[test]
    fn diamond_counts_shared_descendants_once() {
        // a -> b, a -> c, b -> d, c -> d
        let mut dag = Dag::new("x");
        dag.tasks = vec![
            task("a", 1, WeightRule::Downstream, &[]),
            task("b", 2, WeightRule::Downstream, &["a"]),
            task("c", 3, WeightRule::Upstream, &["a"]),
            task("d", 4, WeightRule::Upstream, &["b", "c"]),
            task("e", 5, WeightRule::Absolute, &["d"]),
        ];
        // a: 1+2+3+4+5; b: 2+4+5; c (upstream): 3+1; d (upstream): 4+1+2+3; e: 5
        assert_eq!(effective_weights(&dag), vec![15, 11, 4, 10, 5]);
    }

    #[test]
    fn clamps_to_32_bits_and_ignores_unknown_upstreams() {
        let mut dag = Dag::new("x");
        dag.tasks = vec![
            task("a", i64::from(i32::MAX), WeightRule::Downstream, &["nope"]),
            task("b", 10, WeightRule::Downstream, &["a"]),
        ];
        assert_eq!(effective_weights(&dag), vec![i64::from(i32::MAX), 10]);
    }

    #[test]
    fn a_cycle_falls_back_to_search() {
        let mut dag = Dag::new("x");
        dag.tasks = vec![
            task("a", 1, WeightRule::Downstream, &["c"]),
            task("b", 2, WeightRule::Downstream, &["a"]),
            task("c", 4, WeightRule::Upstream, &["b"]),
        ];
        assert_eq!(effective_weights(&dag), vec![7, 7, 7]);
    }

    #[test]
    fn ten_thousand_tasks_in_a_chain() {
        let mut dag = Dag::new("x");
        for i in 0..10_000 {
            let up = format!("t{}", i.max(1) - 1);
            let ups: Vec<&str> = if i == 0 { vec![] } else { vec![up.as_str()] };
            dag.tasks
                .push(task(&format!("t{i}"), 1, WeightRule::Downstream, &ups));
        }
        let w = effective_weights(&dag);
        assert_eq!(w[0], 10_000);
        assert_eq!(w[9_999], 1);
    }

    fn naive(dag: &Dag) -> Vec<i64> {
        let n = dag.tasks.len();
        let idx = |id: &str| dag.tasks.iter().position(|t| t.task_id.as_str() == id);
        let reach = |from: usize, down: bool| -> i64 {
            let mut seen = vec![false; n];
            let mut stack = vec![from];
            while let Some(v) = stack.pop() {
                for (j, t) in dag.tasks.iter().enumerate() {
                    let linked = if down {
                        t.upstream.iter().any(|u| idx(u.as_str()) == Some(v))
                    } else {
                        dag.tasks[v]
                            .upstream
                            .iter()
                            .any(|u| idx(u.as_str()) == Some(j))
                    };
                    if linked && !seen[j] {
                        seen[j] = true;
                        stack.push(j);
                    }
                }
            }
            (0..n)
                .filter(|&j| seen[j])
                .map(|j| dag.tasks[j].priority_weight)
                .sum()
        };
        dag.tasks
            .iter()
            .enumerate()
            .map(|(i, t)| match t.weight_rule {
                WeightRule::Absolute => t.priority_weight,
                WeightRule::Downstream => t.priority_weight + reach(i, true),
                WeightRule::Upstream => t.priority_weight + reach(i, false),
            })
            .collect()
    }

    proptest! {
        #[test]
        fn matches_naive(
            weights in proptest::collection::vec((-5i64..20, 0u8..3), 1..40),
            edges in proptest::collection::vec((0usize..40, 0usize..40), 0..120),
        ) {
            let n = weights.len();
            let mut dag = Dag::new("p");
            for (i, (w, r)) in weights.iter().enumerate() {
                let rule = [WeightRule::Downstream, WeightRule::Upstream, WeightRule::Absolute][*r as usize];
                dag.tasks.push(task(&format!("t{i}"), *w, rule, &[]));
            }
            // Edges only from lower to higher index keep the graph acyclic.
            for (a, b) in edges {
                let (a, b) = (a % n, b % n);
                if a < b {
                    let up = dag.tasks[a].task_id.clone();
                    dag.tasks[b].upstream.push(up);
                }
            }
            prop_assert_eq!(effective_weights(&dag), naive(&dag));
        }
    }
}
