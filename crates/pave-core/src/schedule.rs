//! Timetables: when a DAG gets its next scheduled run, with Airflow 3's semantics.
//!
//! Every `model::Schedule` maps to one of Airflow's timetables
//! (`airflow-core/src/airflow/timetables/`):
//!
//! | schedule | default (`create_cron_data_intervals = False`) | with [`SchedulePolicy::data_intervals`] |
//! |---|---|---|
//! | `None` | `NullTimetable`: never | same |
//! | `Once` | `OnceTimetable`: one run at start_date (or now) | same |
//! | `Cron { expr }` | `CronTriggerTimetable`: a run at each tick, zero-length data interval | `CronDataIntervalTimetable`: a run after each interval `[tick, next tick)` ends |
//! | `Interval { every }` | `DeltaTriggerTimetable` | `DeltaDataIntervalTimetable` |
//!
//! Airflow 3.0 changed `[scheduler] create_cron_data_intervals` to `False`: a cron
//! string or a timedelta builds a *trigger* timetable whose logical date is
//! the tick itself and whose data interval is `[tick, tick]`, and Airflow reads
//! the same option for timedelta schedules (its `create_delta_data_intervals`
//! is documented but not consulted). pave's default is the same;
//! [`SchedulePolicy::data_intervals`] selects Airflow 2's data-interval
//! timetables for the whole installation, like setting the option to `True`.
//!
//! Time is a parameter: `now` replaces Airflow's `utcnow()`. With
//! `catchup = false` the answer depends on `now`, so the caller computes it once
//! (when the DAG is first seen and after each scheduled run is created) and
//! stores it, as Airflow stores `DagModel.next_dagrun`.
//!
//! # Cron expressions and daylight saving time
//! Expressions are 5-field Vixie cron (croner, with `0/10` style steps allowed
//! as croniter does), plus Airflow's presets (`@hourly`, `@daily`, `@weekly`,
//! `@monthly`, `@quarterly`, `@yearly`, and `@annually`/`@midnight`). Like
//! Airflow's `CronMixin`, ticks are found on the wall clock of the DAG's time
//! zone and then placed on the time line:
//! - If the hour field is `*` (the expression fires every hour), the distance
//!   between wall-clock ticks is added in absolute time, so `0 * * * *` fires
//!   every real hour through both transitions: 25 runs on a fall-back day,
//!   23 on a spring-forward day.
//! - Otherwise a tick in a skipped hour (spring forward, e.g. `30 2 * * *` in
//!   Europe/Berlin on the last Sunday of March) is read with the offset before
//!   the transition, so it fires as much later as the gap is long (03:30 CEST,
//!   01:30 UTC); a tick in a repeated hour (fall back) fires once, at its second
//!   occurrence (02:30 CET, 01:30 UTC), as pendulum's `fold=1` does.

use crate::model::{Dag, Schedule};
use chrono::{
    DateTime, Duration, LocalResult, NaiveDateTime, Offset as _, TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The interval of data a DAG run is about; `start == end` for a point in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DataInterval {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl DataInterval {
    /// An "interval" holding one instant (Airflow's `DataInterval.exact`).
    pub fn exact(at: DateTime<Utc>) -> DataInterval {
        DataInterval { start: at, end: at }
    }
}

/// When and for what the next scheduled run is (Airflow's `DagRunInfo`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DagRunInfo {
    /// The run's logical date: always `data_interval.start`, as in Airflow.
    pub logical_date: DateTime<Utc>,
    pub data_interval: DataInterval,
    /// The earliest time the run may be created and its tasks scheduled.
    pub run_after: DateTime<Utc>,
}

impl DagRunInfo {
    /// A run at one instant (Airflow's `DagRunInfo.exact`).
    pub fn exact(at: DateTime<Utc>) -> DagRunInfo {
        DagRunInfo {
            logical_date: at,
            data_interval: DataInterval::exact(at),
            run_after: at,
        }
    }

    /// A run over `[start, end)`, due when the interval ends (Airflow's `DagRunInfo.interval`).
    pub fn interval(start: DateTime<Utc>, end: DateTime<Utc>) -> DagRunInfo {
        DagRunInfo {
            logical_date: start,
            data_interval: DataInterval { start, end },
            run_after: end,
        }
    }
}

/// What a manually triggered run gets (Airflow 3's trigger API): without a
/// logical date the run has neither logical date nor data interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManualRunInfo {
    pub logical_date: Option<DateTime<Utc>>,
    pub data_interval: Option<DataInterval>,
    pub run_after: DateTime<Utc>,
}

/// Installation-wide choices that change what a schedule means.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchedulePolicy {
    /// Airflow's `[scheduler] create_cron_data_intervals` (default `false`, as
    /// in Airflow 3): `true` makes cron and interval schedules cover data
    /// intervals, each run due when its interval ends (Airflow 2's behaviour).
    pub data_intervals: bool,
}

/// A schedule that cannot be evaluated.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("invalid cron expression `{expr}`: {reason}")]
    InvalidCron { expr: String, reason: String },
    #[error("unknown time zone `{name}`: use an IANA name such as `UTC` or `Europe/Berlin`")]
    UnknownTimezone { name: String },
    #[error("invalid schedule interval {every:?}: it must be at least one second")]
    InvalidInterval { every: std::time::Duration },
}

/// A parsed cron expression bound to a time zone.
#[derive(Clone)]
pub struct CronSchedule {
    expr: String,
    cron: Cron,
    tz: Tz,
    /// The hour field matches every hour (croniter normalises it to `*`):
    /// ticks are then spaced in absolute time across DST transitions.
    every_hour: bool,
}

impl fmt::Debug for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CronSchedule")
            .field("expr", &self.expr)
            .field("tz", &self.tz)
            .finish()
    }
}

/// Airflow's `cron_presets`, plus the two croniter aliases Airflow users meet.
const PRESETS: [(&str, &str); 8] = [
    ("@hourly", "0 * * * *"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@weekly", "0 0 * * 0"),
    ("@monthly", "0 0 1 * *"),
    ("@quarterly", "0 0 1 */3 *"),
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
];

fn cron_parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .sloppy_ranges(true)
        .build()
}

/// Parses an IANA time zone name.
pub fn parse_timezone(name: &str) -> Result<Tz, ScheduleError> {
    name.parse::<Tz>()
        .map_err(|_| ScheduleError::UnknownTimezone {
            name: name.to_owned(),
        })
}

/// Parses a 5-field cron expression (or preset) evaluated in time zone `tz`.
pub fn parse_cron(expr: &str, tz: &str) -> Result<CronSchedule, ScheduleError> {
    let tz = parse_timezone(tz)?;
    let invalid = |reason: String| ScheduleError::InvalidCron {
        expr: expr.to_owned(),
        reason,
    };
    let trimmed = expr.trim();
    let expanded = match PRESETS.iter().find(|(name, _)| *name == trimmed) {
        Some((_, cron)) => *cron,
        None if trimmed.starts_with('@') => {
            return Err(invalid(match trimmed {
                "@once" => "`@once` is not a cron expression: use the `once` schedule".into(),
                "@continuous" => "`@continuous` schedules are not supported by pave".into(),
                _ => format!(
                    "unknown preset; use one of {}",
                    PRESETS.map(|(n, _)| n).join(", ")
                ),
            }));
        }
        None => trimmed,
    };
    let fields = expanded.split_whitespace().count();
    if fields != 5 {
        return Err(invalid(format!(
            "expected 5 fields (minute hour day-of-month month day-of-week), found {fields}"
        )));
    }
    let cron = cron_parser()
        .parse(expanded)
        .map_err(|e| invalid(e.to_string()))?;
    // An expression such as `0 0 30 2 *` parses but never fires.
    let probe = DateTime::<Utc>::UNIX_EPOCH.naive_utc();
    if cron.find_next_occurrence(&probe, false).is_err() {
        return Err(invalid("it never matches any date".into()));
    }
    let hour_field = expanded.split_whitespace().nth(1).unwrap_or("*");
    let every_hour = match cron_parser().parse(&format!("0 {hour_field} * * *")) {
        Ok(hours) => (0..24).all(|h| {
            let at = probe.with_hour(h).unwrap_or(probe);
            hours.is_time_matching(&at).unwrap_or(false)
        }),
        Err(_) => false,
    };
    Ok(CronSchedule {
        expr: expr.to_owned(),
        cron,
        tz,
        every_hour,
    })
}

impl CronSchedule {
    /// The expression as written.
    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The time zone the expression is evaluated in.
    pub fn timezone(&self) -> Tz {
        self.tz
    }

    fn naive(&self, at: DateTime<Utc>) -> NaiveDateTime {
        at.with_timezone(&self.tz).naive_local()
    }

    /// The first tick strictly after `current` (Airflow's `CronMixin._get_next`).
    /// `None` when the expression has no tick left before the year 5000.
    pub fn next_after(&self, current: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let naive = self.naive(current);
        let mut from = naive;
        // Bounded: a tick merged into an earlier instant by a DST gap is skipped.
        for _ in 0..4 {
            let scheduled = self.cron.find_next_occurrence(&from, false).ok()?;
            let at = if self.every_hour {
                current + (scheduled - naive)
            } else {
                make_aware(scheduled, self.tz)
            };
            if at > current {
                return Some(at);
            }
            from = scheduled;
        }
        None
    }

    /// The last tick strictly before `current` (Airflow's `CronMixin._get_prev`).
    pub fn prev_before(&self, current: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let naive = self.naive(current);
        let mut from = naive;
        for _ in 0..4 {
            let scheduled = self.cron.find_previous_occurrence(&from, false).ok()?;
            let at = if self.every_hour {
                current - (naive - scheduled)
            } else {
                make_aware(scheduled, self.tz)
            };
            if at < current {
                return Some(at);
            }
            from = scheduled;
        }
        None
    }
}

/// Places a wall-clock time of `tz` on the time line like Airflow's
/// `make_aware` (pendulum with `fold=1`): a repeated time takes its second
/// occurrence; a skipped time is read with the offset in force before the gap.
fn make_aware(naive: NaiveDateTime, tz: Tz) -> DateTime<Utc> {
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(at) => at.with_timezone(&Utc),
        LocalResult::Ambiguous(_, later) => later.with_timezone(&Utc),
        LocalResult::None => {
            // Find the offset before the gap by stepping back to a wall time that exists.
            for minutes in (30..=48 * 60).step_by(30) {
                let earlier = naive - Duration::minutes(minutes);
                if let Some(at) = tz.from_local_datetime(&earlier).latest() {
                    let offset = at.offset().fix().local_minus_utc();
                    return (naive - Duration::seconds(i64::from(offset))).and_utc();
                }
            }
            naive.and_utc()
        }
    }
}

/// The arithmetic one timetable needs (Airflow's `_get_next`, `_get_prev`,
/// `_align_to_next`, `_align_to_prev`).
enum Steps<'a> {
    Cron(&'a CronSchedule),
    Delta(Duration),
}

impl Steps<'_> {
    fn next(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Steps::Cron(c) => c.next_after(at),
            Steps::Delta(d) => at.checked_add_signed(*d),
        }
    }

    fn prev(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Steps::Cron(c) => c.prev_before(at),
            Steps::Delta(d) => at.checked_sub_signed(*d),
        }
    }

    /// `at` if it is a tick, else the next tick.
    fn align_to_next(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Steps::Delta(_) => Some(at),
            Steps::Cron(_) => {
                let next = self.next(at)?;
                if self.prev(next) == Some(at) {
                    Some(at)
                } else {
                    Some(next)
                }
            }
        }
    }

    /// `at` if it is a tick, else the previous tick.
    fn align_to_prev(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Steps::Delta(_) => Some(at),
            Steps::Cron(_) => {
                let Some(prev) = self.prev(at) else {
                    return Some(at);
                };
                if self.next(prev) == Some(at) {
                    Some(at)
                } else {
                    Some(prev)
                }
            }
        }
    }
}

/// The start/end/catchup restriction of a DAG (Airflow's `TimeRestriction`).
/// Both bounds are inclusive.
#[derive(Clone, Copy, Debug)]
struct Restriction {
    earliest: Option<DateTime<Utc>>,
    latest: Option<DateTime<Utc>>,
    catchup: bool,
}

fn interval_duration(every: std::time::Duration) -> Result<Duration, ScheduleError> {
    let d = Duration::from_std(every).map_err(|_| ScheduleError::InvalidInterval { every })?;
    if d < Duration::seconds(1) {
        return Err(ScheduleError::InvalidInterval { every });
    }
    Ok(d)
}

/// Checks that a DAG's schedule and time zone can be evaluated.
pub fn validate(dag: &Dag) -> Result<(), ScheduleError> {
    parse_timezone(&dag.timezone)?;
    match &dag.schedule {
        Schedule::None | Schedule::Once => Ok(()),
        Schedule::Cron { expr } => parse_cron(expr, &dag.timezone).map(|_| ()),
        Schedule::Interval { every } => interval_duration(*every).map(|_| ()),
    }
}

/// The next run the scheduler should create for `dag` (Airflow's
/// `DAG.next_dagrun_info`), given the data interval of its last scheduled run
/// (manual runs do not count). `Ok(None)`: no further scheduled run, ever, or
/// not until the DAG changes. The caller creates the run once `run_after <= now`.
pub fn next_dagrun_info(
    dag: &Dag,
    last_automated: Option<&DataInterval>,
    now: DateTime<Utc>,
    policy: &SchedulePolicy,
) -> Result<Option<DagRunInfo>, ScheduleError> {
    let restriction = Restriction {
        earliest: dag.start_date,
        latest: dag.end_date,
        catchup: dag.catchup,
    };
    match &dag.schedule {
        Schedule::None => Ok(None),
        Schedule::Once => Ok(once(last_automated, restriction, now)),
        Schedule::Cron { expr } => {
            let cron = parse_cron(expr, &dag.timezone)?;
            let steps = Steps::Cron(&cron);
            Ok(if policy.data_intervals {
                data_interval_next(&steps, last_automated, restriction, now)
            } else {
                trigger_next(&steps, last_automated, restriction, now)
            })
        }
        Schedule::Interval { every } => {
            parse_timezone(&dag.timezone)?;
            let steps = Steps::Delta(interval_duration(*every)?);
            Ok(if policy.data_intervals {
                data_interval_next(&steps, last_automated, restriction, now)
            } else {
                trigger_next(&steps, last_automated, restriction, now)
            })
        }
    }
}

/// Airflow's `OnceTimetable`: one run at start_date (or now), catchup or not.
fn once(last: Option<&DataInterval>, r: Restriction, now: DateTime<Utc>) -> Option<DagRunInfo> {
    if last.is_some() {
        return None;
    }
    let run_after = r.earliest.unwrap_or(now);
    if r.latest.is_some_and(|latest| run_after > latest) {
        return None;
    }
    Some(DagRunInfo::exact(run_after))
}

/// Airflow's `_TriggerTimetable.next_dagrun_info` with `interval = 0` and
/// `run_immediately = False` (what a bare cron string or timedelta builds).
fn trigger_next(
    steps: &Steps<'_>,
    last: Option<&DataInterval>,
    r: Restriction,
    now: DateTime<Utc>,
) -> Option<DagRunInfo> {
    let next = if r.catchup {
        match (last, r.earliest) {
            (Some(last), _) => steps.next(last.end)?,
            (None, None) => first_trigger_run(steps, now)?,
            (None, Some(earliest)) => steps.align_to_next(earliest)?,
        }
    } else {
        let mut candidates = vec![steps.align_to_prev(now)?];
        match last {
            Some(last) => candidates.push(steps.next(last.end)?),
            None if r.earliest.is_none() => candidates.push(first_trigger_run(steps, now)?),
            None => {}
        }
        if let Some(earliest) = r.earliest {
            candidates.push(steps.align_to_next(earliest)?);
        }
        candidates.into_iter().max()?
    };
    if r.latest.is_some_and(|latest| latest < next) {
        return None;
    }
    Some(DagRunInfo::exact(next))
}

/// Without a start date: the tick just passed if it is recent (within a tenth
/// of the gap between ticks, at least five minutes), else the next one
/// (`CronTriggerTimetable._calc_first_run`); an interval starts now
/// (`DeltaTriggerTimetable._calc_first_run`).
fn first_trigger_run(steps: &Steps<'_>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    match steps {
        Steps::Delta(_) => steps.align_to_prev(now),
        Steps::Cron(_) => {
            let past = steps.align_to_prev(now)?;
            let next = steps.align_to_next(now)?;
            let buffer = ((next - past) / 10).max(Duration::minutes(5));
            Some(if now - past <= buffer { past } else { next })
        }
    }
}

/// Airflow's `_DataIntervalTimetable.next_dagrun_info`.
fn data_interval_next(
    steps: &Steps<'_>,
    last: Option<&DataInterval>,
    r: Restriction,
    now: DateTime<Utc>,
) -> Option<DagRunInfo> {
    let earliest = if !r.catchup {
        Some(skip_to_latest(steps, r.earliest, now)?)
    } else {
        match r.earliest {
            Some(e) => Some(steps.align_to_next(e)?),
            None => None,
        }
    };
    let start = match last {
        None => earliest?,
        Some(last) => {
            let aligned = steps.align_to_prev(last.end)?;
            match earliest {
                Some(e) => aligned.max(e),
                None => aligned,
            }
        }
    };
    if r.latest.is_some_and(|latest| start > latest) {
        return None;
    }
    let end = steps.next(start)?;
    Some(DagRunInfo::interval(start, end))
}

/// With catchup off, the start of the latest interval that has ended by `now`
/// (or `earliest`, if later).
fn skip_to_latest(
    steps: &Steps<'_>,
    earliest: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    match steps {
        Steps::Cron(_) => {
            let last_start = steps.prev(now)?;
            let next_start = steps.next(last_start)?;
            // On a boundary the interval that starts now is wanted, not the one ending now.
            let new_start = if next_start == now {
                last_start
            } else {
                steps.prev(last_start)?
            };
            match earliest {
                None => Some(new_start),
                Some(e) => Some(new_start.max(steps.align_to_next(e)?)),
            }
        }
        Steps::Delta(delta) => {
            // Round now down to a multiple of the interval since the epoch.
            let step = delta.num_microseconds()?;
            let us = now.timestamp_micros();
            let rounded = DateTime::<Utc>::from_timestamp_micros(us - us.rem_euclid(step))?;
            let new_start = steps.prev(rounded)?;
            Some(match earliest {
                None => new_start,
                Some(e) => new_start.max(e),
            })
        }
    }
}

/// The run a manual trigger creates (Airflow 3's `TriggerDAGRunPostBody`):
/// with a logical date, the timetable infers its data interval
/// (`infer_manual_data_interval(run_after=logical_date)`); without one the
/// run has no logical date and no data interval. `run_after` is `now`.
pub fn manual_run_info(
    dag: &Dag,
    logical_date: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    policy: &SchedulePolicy,
) -> Result<ManualRunInfo, ScheduleError> {
    let Some(at) = logical_date else {
        return Ok(ManualRunInfo {
            logical_date: None,
            data_interval: None,
            run_after: now,
        });
    };
    let exact = DataInterval::exact(at);
    let data_interval = match &dag.schedule {
        Schedule::None | Schedule::Once => exact,
        // Trigger timetables: `[run_after - interval, run_after]` with interval 0.
        _ if !policy.data_intervals => {
            validate(dag)?;
            exact
        }
        Schedule::Cron { expr } => {
            let cron = parse_cron(expr, &dag.timezone)?;
            let steps = Steps::Cron(&cron);
            // The last complete interval before `at`.
            match steps
                .align_to_prev(at)
                .and_then(|end| Some((steps.prev(end)?, end)))
            {
                Some((start, end)) => DataInterval { start, end },
                None => exact,
            }
        }
        Schedule::Interval { every } => {
            let d = interval_duration(*every)?;
            DataInterval {
                start: at.checked_sub_signed(d).unwrap_or(at),
                end: at,
            }
        }
    };
    Ok(ManualRunInfo {
        logical_date: Some(at),
        data_interval: Some(data_interval),
        run_after: now,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn make_aware_follows_pendulum_fold_1() {
        let tz: Tz = "Europe/Berlin".parse().expect("tz");
        let gap = NaiveDateTime::parse_from_str("2026-03-29 02:30", "%Y-%m-%d %H:%M").expect("t");
        assert_eq!(
            make_aware(gap, tz).to_rfc3339(),
            "2026-03-29T01:30:00+00:00"
        );
        let fold = NaiveDateTime::parse_from_str("2026-10-25 02:30", "%Y-%m-%d %H:%M").expect("t");
        assert_eq!(
            make_aware(fold, tz).to_rfc3339(),
            "2026-10-25T01:30:00+00:00"
        );
    }

    #[test]
    fn every_hour_detection() {
        assert!(parse_cron("*/15 * * * *", "UTC").expect("cron").every_hour);
        assert!(parse_cron("0 0-23 * * *", "UTC").expect("cron").every_hour);
        assert!(!parse_cron("0 */2 * * *", "UTC").expect("cron").every_hour);
        assert!(!parse_cron("@daily", "UTC").expect("cron").every_hour);
    }
}
