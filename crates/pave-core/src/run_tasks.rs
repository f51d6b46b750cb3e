//! Which tasks a new run gets task instances of: Airflow 3's task-level
//! `start_date` / `end_date`.
//!
//! Airflow merges a task's dates with its DAG's when the task joins the DAG
//! (`DAG.add_task`: the later of the two start dates, the earlier of the two
//! end dates; a task without a date takes the DAG's), and creates a run's
//! task instances only for the tasks whose merged range holds the run's
//! logical date, both ends included (`DagRun.verify_integrity`'s
//! `task_filter`). Backfill runs and runs without a logical date get every
//! task. A task left out has no instance at all in that run: a downstream
//! task waits for it forever (the run deadlocks and fails unless its trigger
//! rule does not need it), while a leaf left out does not affect the run's
//! state. The model keeps each task's dates as written; the merge happens
//! here, so a DAG's dates can change without rewriting its tasks.

use crate::model::{Dag, Task};
use chrono::{DateTime, Utc};
use std::fmt;

/// How a run came to be, as far as task date ranges care.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RunKind {
    /// Triggered by someone (the UI, the REST API, `pave dags trigger`, `pave dags test`).
    Manual,
    /// Created by the DAG's schedule.
    Scheduled,
    /// A backfill: every task gets an instance whatever its dates (Airflow's
    /// `DagRunType.BACKFILL_JOB`).
    Backfill,
}

/// A task's date range after the merge with its DAG's dates (Airflow's
/// `DAG.add_task`). `None` is open on that side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DateRange {
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
}

impl DateRange {
    /// The range `task` runs in within `dag`: without a date of its own the
    /// task takes the DAG's; with both, the later start and the earlier end.
    pub fn of(dag: &Dag, task: &Task) -> DateRange {
        DateRange {
            start: merge(task.start_date, dag.start_date, DateTime::max),
            end: merge(task.end_date, dag.end_date, DateTime::min),
        }
    }
}

fn merge<T>(own: Option<T>, dag: Option<T>, pick: fn(T, T) -> T) -> Option<T> {
    match (own, dag) {
        (Some(own), Some(dag)) => Some(pick(own, dag)),
        (own, dag) => own.or(dag),
    }
}

/// Whether a task gets an instance in a run, and if not, why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Membership {
    Included,
    /// The task's (merged) `start_date` is after the run's logical date.
    NotStarted {
        start: DateTime<Utc>,
        logical_date: DateTime<Utc>,
    },
    /// The task's (merged) `end_date` is before the run's logical date.
    Ended {
        end: DateTime<Utc>,
        logical_date: DateTime<Utc>,
    },
}

impl Membership {
    pub fn is_included(self) -> bool {
        self == Membership::Included
    }
}

impl fmt::Display for Membership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Membership::Included => f.write_str("included in the run"),
            Membership::NotStarted {
                start,
                logical_date,
            } => write!(
                f,
                "no task instance: the task starts at {} (its start_date, or its DAG's if later), after the run's logical date {}",
                start.to_rfc3339(),
                logical_date.to_rfc3339()
            ),
            Membership::Ended { end, logical_date } => write!(
                f,
                "no task instance: the task ended at {} (its end_date, or its DAG's if earlier), before the run's logical date {}",
                end.to_rfc3339(),
                logical_date.to_rfc3339()
            ),
        }
    }
}

/// Whether `task` of `dag` gets a task instance in a new run of `kind` with
/// this logical date (Airflow's `task_filter` in `DagRun.verify_integrity`).
pub fn task_in_run(
    dag: &Dag,
    task: &Task,
    logical_date: Option<DateTime<Utc>>,
    kind: RunKind,
) -> Membership {
    let Some(logical_date) = logical_date else {
        return Membership::Included;
    };
    if kind == RunKind::Backfill {
        return Membership::Included;
    }
    let range = DateRange::of(dag, task);
    if let Some(start) = range.start
        && start > logical_date
    {
        return Membership::NotStarted {
            start,
            logical_date,
        };
    }
    if let Some(end) = range.end
        && end < logical_date
    {
        return Membership::Ended { end, logical_date };
    }
    Membership::Included
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TaskKind;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn day(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 0, 0, 0)
            .single()
            .expect("valid date")
    }

    fn dag(start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>) -> Dag {
        let mut d = Dag::new("d");
        d.start_date = start;
        d.end_date = end;
        d
    }

    fn task(start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>) -> Task {
        let mut t = Task::new("t", TaskKind::Empty);
        t.start_date = start;
        t.end_date = end;
        t
    }

    /// Airflow's `task_filter`, transcribed, over the merged dates of `DAG.add_task`.
    fn airflow(dag: &Dag, task: &Task, logical_date: Option<DateTime<Utc>>, kind: RunKind) -> bool {
        let start = match task.start_date {
            None => dag.start_date,
            Some(t) => Some(dag.start_date.map_or(t, |d| t.max(d))),
        };
        let end = match task.end_date {
            None => dag.end_date,
            Some(t) => Some(dag.end_date.map_or(t, |d| t.min(d))),
        };
        kind == RunKind::Backfill
            || ((start.is_none() || logical_date.is_none() || start <= logical_date)
                && (end.is_none() || logical_date.is_none() || logical_date <= end))
    }

    #[test]
    fn merge_takes_the_later_start_and_the_earlier_end() {
        let (d1, d2, d3, d4) = (
            day(2024, 1, 1),
            day(2025, 1, 1),
            day(2026, 1, 1),
            day(2027, 1, 1),
        );
        // (dag start, dag end, task start, task end) -> merged (start, end)
        let table = [
            ((None, None), (None, None), (None, None)),
            ((Some(d1), None), (None, None), (Some(d1), None)),
            ((None, Some(d4)), (None, None), (None, Some(d4))),
            ((None, None), (Some(d2), Some(d3)), (Some(d2), Some(d3))),
            // The task's start earlier than the DAG's: the DAG's wins.
            ((Some(d2), None), (Some(d1), None), (Some(d2), None)),
            ((Some(d1), None), (Some(d2), None), (Some(d2), None)),
            // The task's end later than the DAG's: the DAG's wins.
            ((None, Some(d3)), (None, Some(d4)), (None, Some(d3))),
            ((None, Some(d4)), (None, Some(d3)), (None, Some(d3))),
            // The merge may leave an empty range; then no run gets the task.
            ((Some(d3), None), (None, Some(d2)), (Some(d3), Some(d2))),
        ];
        for ((ds, de), (ts, te), (ws, we)) in table {
            let got = DateRange::of(&dag(ds, de), &task(ts, te));
            assert_eq!(
                got,
                DateRange { start: ws, end: we },
                "dag {ds:?}..{de:?}, task {ts:?}..{te:?}"
            );
        }
    }

    #[test]
    fn both_ends_of_the_range_are_included() {
        let (start, end) = (day(2025, 1, 1), day(2025, 2, 1));
        let d = dag(None, None);
        let t = task(Some(start), Some(end));
        for at in [start, end, day(2025, 1, 15)] {
            assert!(task_in_run(&d, &t, Some(at), RunKind::Manual).is_included());
        }
        let second = chrono::Duration::seconds(1);
        assert_eq!(
            task_in_run(&d, &t, Some(start - second), RunKind::Scheduled),
            Membership::NotStarted {
                start,
                logical_date: start - second
            }
        );
        assert_eq!(
            task_in_run(&d, &t, Some(end + second), RunKind::Manual),
            Membership::Ended {
                end,
                logical_date: end + second
            }
        );
    }

    #[test]
    fn a_task_start_earlier_than_the_dag_start_does_not_let_it_run_earlier() {
        let d = dag(Some(day(2025, 6, 1)), None);
        let t = task(Some(day(2020, 1, 1)), None);
        assert_eq!(
            task_in_run(&d, &t, Some(day(2025, 1, 1)), RunKind::Manual),
            Membership::NotStarted {
                start: day(2025, 6, 1),
                logical_date: day(2025, 1, 1)
            }
        );
        assert!(task_in_run(&d, &t, Some(day(2025, 6, 1)), RunKind::Manual).is_included());
    }

    #[test]
    fn a_task_without_dates_follows_the_dag() {
        let d = dag(Some(day(2025, 1, 1)), Some(day(2025, 12, 31)));
        let t = task(None, None);
        assert!(!task_in_run(&d, &t, Some(day(2024, 1, 1)), RunKind::Scheduled).is_included());
        assert!(task_in_run(&d, &t, Some(day(2025, 7, 1)), RunKind::Scheduled).is_included());
        assert!(!task_in_run(&d, &t, Some(day(2026, 1, 1)), RunKind::Scheduled).is_included());
    }

    #[test]
    fn backfills_and_runs_without_a_logical_date_get_every_task() {
        let d = dag(Some(day(2025, 1, 1)), None);
        let future = task(Some(day(2030, 1, 1)), None);
        let past = task(None, Some(day(2020, 1, 1)));
        for t in [&future, &past] {
            assert!(task_in_run(&d, t, Some(day(2025, 1, 1)), RunKind::Backfill).is_included());
            for kind in [RunKind::Manual, RunKind::Scheduled, RunKind::Backfill] {
                assert!(task_in_run(&d, t, None, kind).is_included());
            }
            assert!(!task_in_run(&d, t, Some(day(2025, 1, 1)), RunKind::Manual).is_included());
        }
    }

    #[test]
    fn the_reason_names_the_dates() {
        let d = dag(None, None);
        let t = task(Some(day(2030, 1, 1)), None);
        let why = task_in_run(&d, &t, Some(day(2025, 1, 1)), RunKind::Manual).to_string();
        assert!(why.contains("2030-01-01T00:00:00+00:00"), "{why}");
        assert!(why.contains("2025-01-01T00:00:00+00:00"), "{why}");
        let t = task(None, Some(day(2020, 1, 1)));
        let why = task_in_run(&d, &t, Some(day(2025, 1, 1)), RunKind::Manual).to_string();
        assert!(why.contains("ended at 2020-01-01"), "{why}");
    }

    #[test]
    fn old_serialized_tasks_without_dates_still_load() {
        let t = Task::new("t", TaskKind::Empty);
        let mut v = serde_json::to_value(&t).expect("serializes");
        assert!(v.get("start_date").is_none() && v.get("end_date").is_none());
        if let Some(o) = v.as_object_mut() {
            o.remove("start_date");
        }
        let back: Task = serde_json::from_value(v).expect("loads");
        assert_eq!(back, t);
        let dated = task(Some(day(2025, 1, 1)), Some(day(2026, 1, 1)));
        let v = serde_json::to_value(&dated).expect("serializes");
        let back: Task = serde_json::from_value(v).expect("loads");
        assert_eq!(back, dated);
    }

    fn date() -> impl Strategy<Value = DateTime<Utc>> {
        // A few years of seconds, so that equal dates come up often enough.
        prop_oneof![
            (0i64..6).prop_map(|d| day(2025, 1, 1) + chrono::Duration::days(d)),
            (0i64..200_000_000).prop_map(|s| day(2020, 1, 1) + chrono::Duration::seconds(s)),
        ]
    }

    fn kind() -> impl Strategy<Value = RunKind> {
        prop_oneof![
            Just(RunKind::Manual),
            Just(RunKind::Scheduled),
            Just(RunKind::Backfill)
        ]
    }

    proptest! {
        #[test]
        fn matches_airflows_task_filter(
            ds in proptest::option::of(date()),
            de in proptest::option::of(date()),
            ts in proptest::option::of(date()),
            te in proptest::option::of(date()),
            at in proptest::option::of(date()),
            kind in kind(),
        ) {
            let (d, t) = (dag(ds, de), task(ts, te));
            prop_assert_eq!(task_in_run(&d, &t, at, kind).is_included(), airflow(&d, &t, at, kind));
        }

        #[test]
        fn the_merged_range_is_within_both_ranges(
            ds in proptest::option::of(date()),
            de in proptest::option::of(date()),
            ts in proptest::option::of(date()),
            te in proptest::option::of(date()),
            at in date(),
        ) {
            let (d, t) = (dag(ds, de), task(ts, te));
            let inside = |s: Option<DateTime<Utc>>, e: Option<DateTime<Utc>>| {
                s.is_none_or(|s| s <= at) && e.is_none_or(|e| at <= e)
            };
            // A non-backfill run with a logical date gets the task exactly
            // when the date is inside the task's own range and the DAG's.
            prop_assert_eq!(
                task_in_run(&d, &t, Some(at), RunKind::Scheduled).is_included(),
                inside(ds, de) && inside(ts, te)
            );
        }
    }
}
