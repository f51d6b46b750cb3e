//! Timetable tests: Airflow 3's trigger timetables (the default), the
//! data-interval variants, DST in Europe/Berlin and America/New_York, catchup,
//! end_date, @once and fixed intervals.

use chrono::{DateTime, Utc};
use pave_core::schedule::{
    DagRunInfo, DataInterval, SchedulePolicy, manual_run_info, next_dagrun_info, parse_cron,
};
use pave_core::{Dag, Schedule};
use proptest::prelude::*;
use std::time::Duration;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("bad time {s}: {e}"))
        .with_timezone(&Utc)
}

fn dag(schedule: Schedule, tz: &str, start: Option<&str>, catchup: bool) -> Dag {
    let mut d = Dag::new("d");
    d.schedule = schedule;
    d.timezone = tz.to_owned();
    d.start_date = start.map(t);
    d.catchup = catchup;
    d
}

fn cron(expr: &str) -> Schedule {
    Schedule::Cron {
        expr: expr.to_owned(),
    }
}

const TRIGGER: SchedulePolicy = SchedulePolicy {
    data_intervals: false,
};
const INTERVALS: SchedulePolicy = SchedulePolicy {
    data_intervals: true,
};

/// Up to `n` successive scheduled runs, each after the previous one.
fn runs(d: &Dag, policy: SchedulePolicy, now: &str, n: usize) -> Vec<DagRunInfo> {
    let mut out: Vec<DagRunInfo> = Vec::new();
    while out.len() < n {
        let last = out.last().map(|i| i.data_interval);
        match next_dagrun_info(d, last.as_ref(), t(now), &policy).expect("schedule") {
            Some(info) => out.push(info),
            None => break,
        }
    }
    out
}

fn logical(infos: &[DagRunInfo]) -> Vec<String> {
    infos.iter().map(|i| i.logical_date.to_rfc3339()).collect()
}

struct Case {
    name: &'static str,
    schedule: Schedule,
    tz: &'static str,
    start: Option<&'static str>,
    end: Option<&'static str>,
    catchup: bool,
    policy: SchedulePolicy,
    now: &'static str,
    /// Expected logical dates (UTC, RFC 3339).
    expect: &'static [&'static str],
}

fn check(c: &Case) {
    let mut d = dag(c.schedule.clone(), c.tz, c.start, c.catchup);
    d.end_date = c.end.map(t);
    let got = runs(&d, c.policy, c.now, c.expect.len() + 1);
    let want: Vec<String> = c.expect.iter().map(|s| t(s).to_rfc3339()).collect();
    let got_dates = logical(&got);
    let n = want.len().min(got_dates.len());
    assert_eq!(
        got_dates[..n],
        want[..],
        "case `{}`: logical dates differ",
        c.name
    );
    if c.end.is_some() {
        assert_eq!(
            got_dates.len(),
            want.len(),
            "case `{}`: ran past end_date",
            c.name
        );
    }
    for info in &got {
        assert_eq!(
            info.logical_date, info.data_interval.start,
            "case `{}`",
            c.name
        );
        if c.policy.data_intervals && !matches!(c.schedule, Schedule::Once) {
            assert_eq!(info.run_after, info.data_interval.end, "case `{}`", c.name);
        } else {
            assert_eq!(
                info.data_interval,
                DataInterval::exact(info.logical_date),
                "case `{}`",
                c.name
            );
            assert_eq!(info.run_after, info.logical_date, "case `{}`", c.name);
        }
    }
}

const FAR: &str = "2030-01-01T00:00:00Z";

#[test]
fn timetables_table() {
    let cases = [
        Case {
            name: "hourly",
            schedule: cron("@hourly"),
            tz: "UTC",
            start: Some("2026-01-01T00:00:00Z"),
            end: None,
            catchup: true,
            policy: TRIGGER,
            now: FAR,
            expect: &[
                "2026-01-01T00:00:00Z",
                "2026-01-01T01:00:00Z",
                "2026-01-01T02:00:00Z",
            ],
        },
        Case {
            name: "hourly, start between ticks",
            schedule: cron("0 * * * *"),
            tz: "UTC",
            start: Some("2026-01-01T00:10:00Z"),
            end: None,
            catchup: true,
            policy: TRIGGER,
            now: FAR,
            expect: &["2026-01-01T01:00:00Z", "2026-01-01T02:00:00Z"],
        },
        Case {
            name: "daily with data intervals",
            schedule: cron("@daily"),
            tz: "UTC",
            start: Some("2026-01-01T00:00:00Z"),
            end: None,
            catchup: true,
            policy: INTERVALS,
            now: FAR,
            expect: &["2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"],
        },
        Case {
            name: "weekly (Sunday midnight)",
            schedule: cron("@weekly"),
            tz: "UTC",
            start: Some("2026-01-01T00:00:00Z"),
            end: None,
            catchup: true,
            policy: TRIGGER,
            now: FAR,
            expect: &["2026-01-04T00:00:00Z", "2026-01-11T00:00:00Z"],
        },
        Case {
            name: "monthly",
            schedule: cron("0 0 1 * *"),
            tz: "UTC",
            start: Some("2026-01-15T00:00:00Z"),
            end: None,
            catchup: true,
            policy: TRIGGER,
            now: FAR,
            expect: &[
                "2026-02-01T00:00:00Z",
                "2026-03-01T00:00:00Z",
                "2026-04-01T00:00:00Z",
            ],
        },
        Case {
            name: "quarterly preset",
            schedule: cron("@quarterly"),
            tz: "UTC",
            start: Some("2026-02-01T00:00:00Z"),
            end: None,
            catchup: true,
            policy: TRIGGER,
            now: FAR,
            expect: &["2026-04-01T00:00:00Z", "2026-07-01T00:00:00Z"],
        },
        Case {
            name: "yearly",
            schedule: cron("@yearly"),
            tz: "UTC",
            start: Some("2026-03-01T00:00:00Z"),
            end: None,
            catchup: true,
            policy: TRIGGER,
            now: FAR,
            expect: &["2027-01-01T00:00:00Z", "2028-01-01T00:00:00Z"],
        },
        Case {
            name: "every 15 minutes",
            schedule: cron("*/15 * * * *"),
            tz: "UTC",
            start: Some("2026-01-01T00:00:00Z"),
            end: None,
            catchup: true,
            policy: TRIGGER,
            now: FAR,
            expect: &[
                "2026-01-01T00:00:00Z",
                "2026-01-01T00:15:00Z",
                "2026-01-01T00:30:00Z",
            ],
        },
        Case {
            name: "weekdays at 09:00 (Friday, then Monday)",
            schedule: cron("0 9 * * MON-FRI"),
            tz: "UTC",
            start: Some("2026-01-02T00:00:00Z"),
            end: None,
            catchup: true,
            policy: TRIGGER,
            now: FAR,
            expect: &[
                "2026-01-02T09:00:00Z",
                "2026-01-05T09:00:00Z",
                "2026-01-06T09:00:00Z",
            ],
        },
        Case {
            name: "Berlin daily 02:30 across spring forward: the skipped tick fires at 03:30 CEST",
            schedule: cron("30 2 * * *"),
            tz: "Europe/Berlin",
            start: Some("2026-03-28T00:00:00Z"),
            end: None,
            catchup: true,
            policy: TRIGGER,
            now: FAR,
            expect: &[
                "2026-03-28T01:30:00Z",
                "2026-03-29T01:30:00Z",
                "2026-03-30T00:30:00Z",
            ],
        },
        Case {
            name: "Berlin daily 02:30 across fall back: once, at the second 02:30",
            schedule: cron("30 2 * * *"),
            tz: "Europe/Berlin",
            start: Some("2026-10-24T00:00:00Z"),
            end: None,
            catchup: true,
            policy: TRIGGER,
            now: FAR,
            expect: &[
                "2026-10-24T00:30:00Z",
                "2026-10-25T01:30:00Z",
                "2026-10-26T01:30:00Z",
            ],
        },
        Case {
            name: "Berlin hourly across fall back: every real hour",
            schedule: cron("0 * * * *"),
            tz: "Europe/Berlin",
            start: Some("2026-10-24T23:00:00Z"),
            end: None,
            catchup: true,
            policy: TRIGGER,
            now: FAR,
            expect: &[
                "2026-10-24T23:00:00Z",
                "2026-10-25T00:00:00Z",
                "2026-10-25T01:00:00Z",
                "2026-10-25T02:00:00Z",
            ],
        },
        Case {
            name: "Berlin hourly across spring forward: every real hour",
            schedule: cron("0 * * * *"),
            tz: "Europe/Berlin",
            start: Some("2026-03-28T23:00:00Z"),
            end: None,
            catchup: true,
            policy: TRIGGER,
            now: FAR,
            expect: &[
                "2026-03-28T23:00:00Z",
                "2026-03-29T00:00:00Z",
                "2026-03-29T01:00:00Z",
                "2026-03-29T02:00:00Z",
            ],
        },
        Case {
            name: "New York midnight across spring forward",
            schedule: cron("0 0 * * *"),
            tz: "America/New_York",
            start: Some("2026-03-07T00:00:00Z"),
            end: None,
            catchup: true,
            policy: TRIGGER,
            now: FAR,
            expect: &[
                "2026-03-07T05:00:00Z",
                "2026-03-08T05:00:00Z",
                "2026-03-09T04:00:00Z",
            ],
        },
        Case {
            name: "New York 02:30 in the gap, and in the repeated hour",
            schedule: cron("30 2 8 3,11 *"),
            tz: "America/New_York",
            start: Some("2026-03-01T00:00:00Z"),
            end: None,
            catchup: true,
            policy: TRIGGER,
            now: FAR,
            // 2026-11-01 is the fall-back day, the 8th is not: 02:30 EST.
            expect: &["2026-03-08T07:30:00Z", "2026-11-08T07:30:00Z"],
        },
        Case {
            name: "New York fall back, 01:30 repeated: the second one (EST)",
            schedule: cron("30 1 1 11 *"),
            tz: "America/New_York",
            start: Some("2026-10-01T00:00:00Z"),
            end: None,
            catchup: true,
            policy: TRIGGER,
            now: FAR,
            expect: &["2026-11-01T06:30:00Z"],
        },
        Case {
            name: "Berlin daily with data intervals: logical date is local midnight",
            schedule: cron("@daily"),
            tz: "Europe/Berlin",
            start: Some("2026-01-01T00:00:00Z"),
            end: None,
            catchup: true,
            policy: INTERVALS,
            now: FAR,
            expect: &["2026-01-01T23:00:00Z", "2026-01-02T23:00:00Z"],
        },
        Case {
            name: "catchup=false (trigger): the latest tick that has passed",
            schedule: cron("@daily"),
            tz: "UTC",
            start: Some("2026-01-01T00:00:00Z"),
            end: None,
            catchup: false,
            policy: TRIGGER,
            now: "2026-01-10T10:30:00Z",
            expect: &[
                "2026-01-10T00:00:00Z",
                "2026-01-11T00:00:00Z",
                "2026-01-12T00:00:00Z",
            ],
        },
        Case {
            name: "catchup=false (data intervals): the latest interval that has ended",
            schedule: cron("@daily"),
            tz: "UTC",
            start: Some("2026-01-01T00:00:00Z"),
            end: None,
            catchup: false,
            policy: INTERVALS,
            now: "2026-01-10T10:30:00Z",
            expect: &["2026-01-09T00:00:00Z", "2026-01-10T00:00:00Z"],
        },
        Case {
            name: "catchup=false with a future start date",
            schedule: cron("@daily"),
            tz: "UTC",
            start: Some("2026-02-01T12:00:00Z"),
            end: None,
            catchup: false,
            policy: TRIGGER,
            now: "2026-01-10T10:30:00Z",
            expect: &["2026-02-02T00:00:00Z"],
        },
        Case {
            name: "end_date is inclusive (trigger)",
            schedule: cron("@hourly"),
            tz: "UTC",
            start: Some("2026-01-01T00:00:00Z"),
            end: Some("2026-01-01T02:00:00Z"),
            catchup: true,
            policy: TRIGGER,
            now: FAR,
            expect: &[
                "2026-01-01T00:00:00Z",
                "2026-01-01T01:00:00Z",
                "2026-01-01T02:00:00Z",
            ],
        },
        Case {
            name: "end_date bounds interval starts (data intervals)",
            schedule: cron("@hourly"),
            tz: "UTC",
            start: Some("2026-01-01T00:00:00Z"),
            end: Some("2026-01-01T01:30:00Z"),
            catchup: true,
            policy: INTERVALS,
            now: FAR,
            expect: &["2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z"],
        },
        Case {
            name: "@once at start_date",
            schedule: Schedule::Once,
            tz: "UTC",
            start: Some("2026-01-05T08:00:00Z"),
            end: Some("2027-01-01T00:00:00Z"),
            catchup: false,
            policy: TRIGGER,
            now: FAR,
            expect: &["2026-01-05T08:00:00Z"],
        },
        Case {
            name: "@once after end_date never runs",
            schedule: Schedule::Once,
            tz: "UTC",
            start: Some("2026-01-05T08:00:00Z"),
            end: Some("2026-01-01T00:00:00Z"),
            catchup: true,
            policy: TRIGGER,
            now: FAR,
            expect: &[],
        },
        Case {
            name: "every 6 hours from start (trigger)",
            schedule: Schedule::Interval {
                every: Duration::from_secs(6 * 3600),
            },
            tz: "UTC",
            start: Some("2026-01-01T01:00:00Z"),
            end: None,
            catchup: true,
            policy: TRIGGER,
            now: FAR,
            expect: &[
                "2026-01-01T01:00:00Z",
                "2026-01-01T07:00:00Z",
                "2026-01-01T13:00:00Z",
            ],
        },
        Case {
            name: "every 6 hours (data intervals)",
            schedule: Schedule::Interval {
                every: Duration::from_secs(6 * 3600),
            },
            tz: "UTC",
            start: Some("2026-01-01T01:00:00Z"),
            end: None,
            catchup: true,
            policy: INTERVALS,
            now: FAR,
            expect: &["2026-01-01T01:00:00Z", "2026-01-01T07:00:00Z"],
        },
        Case {
            name: "every 6 hours, catchup=false (data intervals): rounded to the epoch",
            schedule: Schedule::Interval {
                every: Duration::from_secs(6 * 3600),
            },
            tz: "UTC",
            start: Some("2026-01-01T01:00:00Z"),
            end: None,
            catchup: false,
            policy: INTERVALS,
            now: "2026-01-02T10:00:00Z",
            expect: &["2026-01-02T00:00:00Z", "2026-01-02T06:00:00Z"],
        },
        Case {
            name: "every 6 hours, catchup=false (trigger): starts now",
            schedule: Schedule::Interval {
                every: Duration::from_secs(6 * 3600),
            },
            tz: "UTC",
            start: Some("2026-01-01T01:00:00Z"),
            end: None,
            catchup: false,
            policy: TRIGGER,
            now: "2026-01-02T10:00:00Z",
            expect: &["2026-01-02T10:00:00Z", "2026-01-02T16:00:00Z"],
        },
        Case {
            name: "no schedule",
            schedule: Schedule::None,
            tz: "UTC",
            start: Some("2026-01-01T00:00:00Z"),
            end: None,
            catchup: true,
            policy: TRIGGER,
            now: FAR,
            expect: &[],
        },
    ];
    for c in &cases {
        check(c);
    }
}

#[test]
fn data_interval_runs_cover_contiguous_intervals() {
    let d = dag(cron("@daily"), "UTC", Some("2026-01-01T00:00:00Z"), true);
    let got = runs(&d, INTERVALS, FAR, 3);
    assert_eq!(got[0].data_interval.end, t("2026-01-02T00:00:00Z"));
    assert_eq!(got[0].run_after, t("2026-01-02T00:00:00Z"));
    assert_eq!(got[1].data_interval.start, got[0].data_interval.end);
    assert_eq!(got[2].data_interval.start, got[1].data_interval.end);
}

#[test]
fn first_run_without_start_date_prefers_a_recent_tick() {
    let d = dag(cron("@hourly"), "UTC", None, true);
    let recent = next_dagrun_info(&d, None, t("2026-01-01T10:03:00Z"), &TRIGGER).expect("ok");
    assert_eq!(
        recent.map(|i| i.logical_date),
        Some(t("2026-01-01T10:00:00Z"))
    );
    let later = next_dagrun_info(&d, None, t("2026-01-01T10:30:00Z"), &TRIGGER).expect("ok");
    assert_eq!(
        later.map(|i| i.logical_date),
        Some(t("2026-01-01T11:00:00Z"))
    );
}

#[test]
fn once_without_start_date_runs_now() {
    let d = dag(Schedule::Once, "UTC", None, false);
    let now = t("2026-05-05T05:05:05Z");
    let info = next_dagrun_info(&d, None, now, &TRIGGER).expect("ok");
    assert_eq!(info, Some(DagRunInfo::exact(now)));
    let again = next_dagrun_info(&d, Some(&DataInterval::exact(now)), now, &TRIGGER).expect("ok");
    assert_eq!(again, None);
}

#[test]
fn manual_runs() {
    let now = t("2026-01-25T01:00:00Z");
    let d = dag(cron("@daily"), "UTC", Some("2026-01-01T00:00:00Z"), false);
    let none = manual_run_info(&d, None, now, &TRIGGER).expect("ok");
    assert_eq!(
        (none.logical_date, none.data_interval, none.run_after),
        (None, None, now)
    );

    let at = t("2026-01-25T01:00:00Z");
    let trigger = manual_run_info(&d, Some(at), now, &TRIGGER).expect("ok");
    assert_eq!(trigger.logical_date, Some(at));
    assert_eq!(trigger.data_interval, Some(DataInterval::exact(at)));

    // Data-interval cron: the last complete interval before the logical date.
    let interval = manual_run_info(&d, Some(at), now, &INTERVALS).expect("ok");
    assert_eq!(interval.logical_date, Some(at));
    assert_eq!(
        interval.data_interval,
        Some(DataInterval {
            start: t("2026-01-24T00:00:00Z"),
            end: t("2026-01-25T00:00:00Z"),
        })
    );

    let every = dag(
        Schedule::Interval {
            every: Duration::from_secs(3600),
        },
        "UTC",
        None,
        false,
    );
    let delta = manual_run_info(&every, Some(at), now, &INTERVALS).expect("ok");
    assert_eq!(
        delta.data_interval,
        Some(DataInterval {
            start: t("2026-01-25T00:00:00Z"),
            end: at,
        })
    );
}

#[test]
fn cron_errors_name_the_expression_and_the_problem() {
    let cases = [
        ("61 * * * *", "UTC", "invalid cron expression `61 * * * *`"),
        ("* * * *", "UTC", "expected 5 fields"),
        ("0 0 0 * * *", "UTC", "found 6"),
        ("0 0 30 2 *", "UTC", "never matches"),
        ("@once", "UTC", "use the `once` schedule"),
        ("@fortnightly", "UTC", "unknown preset"),
        ("@daily", "Mars/Olympus", "unknown time zone `Mars/Olympus`"),
    ];
    for (expr, tz, want) in cases {
        let err = parse_cron(expr, tz).expect_err(expr).to_string();
        assert!(err.contains(want), "`{expr}`: got `{err}`, want `{want}`");
    }
    assert!(
        parse_cron("0/10 * * * *", "UTC").is_ok(),
        "croniter accepts 0/10"
    );
    let mut d = dag(cron("bogus"), "UTC", None, true);
    assert!(next_dagrun_info(&d, None, t(FAR), &TRIGGER).is_err());
    d.schedule = Schedule::Interval {
        every: Duration::ZERO,
    };
    assert!(next_dagrun_info(&d, None, t(FAR), &TRIGGER).is_err());
}

const EXPRS: [&str; 8] = [
    "@hourly",
    "*/15 * * * *",
    "30 2 * * *",
    "0 */2 * * *",
    "0 9 * * 1-5",
    "0 0 1 * *",
    "15 1,2,3 * * 0",
    "@daily",
];
const ZONES: [&str; 3] = ["UTC", "Europe/Berlin", "America/New_York"];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]
    #[test]
    fn successive_runs_increase_and_respect_end_date(
        expr in 0..EXPRS.len() + 2,
        zone in 0..ZONES.len(),
        start_min in 0i64..(3 * 365 * 24 * 60),
        end_after_min in proptest::option::of(0i64..(60 * 24 * 60)),
        now_after_min in 0i64..(90 * 24 * 60),
        catchup in any::<bool>(),
        data_intervals in any::<bool>(),
    ) {
        let base = t("2025-01-01T00:00:00Z");
        let start = base + chrono::Duration::minutes(start_min);
        let schedule = match expr {
            i if i < EXPRS.len() => cron(EXPRS[i]),
            i if i == EXPRS.len() => Schedule::Interval { every: Duration::from_secs(5400) },
            _ => Schedule::Once,
        };
        let mut d = Dag::new("p");
        d.schedule = schedule;
        d.timezone = ZONES[zone].to_owned();
        d.start_date = Some(start);
        d.end_date = end_after_min.map(|m| start + chrono::Duration::minutes(m));
        d.catchup = catchup;
        let now = start + chrono::Duration::minutes(now_after_min);
        let policy = SchedulePolicy { data_intervals };
        let mut last: Option<DagRunInfo> = None;
        for _ in 0..60 {
            let next = next_dagrun_info(&d, last.as_ref().map(|l| &l.data_interval), now, &policy)
                .expect("valid schedule");
            let Some(info) = next else { break };
            if let Some(prev) = &last {
                prop_assert!(info.logical_date > prev.logical_date,
                    "not increasing: {} then {}", prev.logical_date, info.logical_date);
            }
            if let Some(end) = d.end_date {
                prop_assert!(info.logical_date <= end, "{} after end {}", info.logical_date, end);
            }
            prop_assert!(info.run_after >= info.logical_date);
            prop_assert!(info.data_interval.end >= info.data_interval.start);
            last = Some(info);
        }
    }
}
