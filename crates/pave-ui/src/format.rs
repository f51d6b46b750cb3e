//! How times, durations and states read on the page.

use chrono::{DateTime, Utc};
use pave_core::TaskState;
use std::time::Duration;

/// `2026-11-28 18:35:02` (UTC; the page says so once, in the footer).
pub(crate) fn time(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

/// `1h 02m`, `3m 07s`, `12.3s`, `0.42s`.
pub(crate) fn duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 3600 {
        format!("{}h {:02}m", secs / 3600, (secs % 3600) / 60)
    } else if secs >= 60 {
        format!("{}m {:02}s", secs / 60, secs % 60)
    } else if secs >= 10 {
        format!("{secs}s")
    } else {
        format!("{:.2}s", d.as_secs_f64())
    }
}

/// The duration between two times, if both are known (and `end` is not
/// before `start`).
pub(crate) fn span(start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>) -> String {
    match (start, end) {
        (Some(s), Some(e)) => (e - s).to_std().map(duration).unwrap_or_default(),
        _ => String::new(),
    }
}

/// `in 3m`, `2h ago`: how far `t` is from `now`, roughly.
pub(crate) fn relative(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let delta = t - now;
    let secs = delta.num_seconds().unsigned_abs();
    if secs < 5 {
        return "just now".to_owned();
    }
    let text = if secs < 60 {
        format!("{secs}s")
    } else if secs < 3600 {
        format!("{}m", secs / 60)
    } else if secs < 86_400 {
        format!("{}h", secs / 3600)
    } else {
        format!("{}d", secs / 86_400)
    };
    if delta.num_seconds() >= 0 {
        format!("in {text}")
    } else {
        format!("{text} ago")
    }
}

/// Airflow's order of importance when one cell stands for several task
/// instances (a group, a mapped task): the first state found wins.
const STATE_PRIORITY: [TaskState; 13] = [
    TaskState::Failed,
    TaskState::UpstreamFailed,
    TaskState::UpForRetry,
    TaskState::UpForReschedule,
    TaskState::Queued,
    TaskState::Scheduled,
    TaskState::Deferred,
    TaskState::Running,
    TaskState::Restarting,
    TaskState::NoStatus,
    TaskState::Removed,
    TaskState::Skipped,
    TaskState::Success,
];

/// The state a cell standing for `states` shows; `None` for no instance.
pub(crate) fn summary_state(states: &[TaskState]) -> Option<TaskState> {
    STATE_PRIORITY.into_iter().find(|p| states.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(duration(Duration::from_millis(420)), "0.42s");
        assert_eq!(duration(Duration::from_secs(12)), "12s");
        assert_eq!(duration(Duration::from_secs(187)), "3m 07s");
        assert_eq!(duration(Duration::from_secs(3720)), "1h 02m");
    }

    #[test]
    fn a_failure_outweighs_successes() {
        use TaskState::*;
        assert_eq!(summary_state(&[Success, Failed, Running]), Some(Failed));
        assert_eq!(summary_state(&[Success, Running]), Some(Running));
        assert_eq!(summary_state(&[Success, Skipped]), Some(Skipped));
        assert_eq!(summary_state(&[]), None);
    }
}
