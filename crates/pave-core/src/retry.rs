//! Retry policy: what the end of one attempt means for its task instance.
//!
//! Airflow's rules (`TaskInstance.handle_failure`, `is_eligible_to_retry`,
//! `next_retry_datetime`), as pure functions of the task, the try number, the outcome and
//! `now`. One deliberate addition: an attempt killed by something outside the task
//! (preemption, node loss, eviction) goes back to be retried without spending a retry.

use crate::model::{RetryPolicy, Task};
use crate::run::AttemptOutcome;
use crate::state::TaskState;
use chrono::{DateTime, Utc};
use std::time::Duration;

/// Airflow's ceiling on an exponential-backoff delay (`MAX_RETRY_DELAY`, 24 hours).
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(24 * 60 * 60);

/// What happens to a task instance after one of its attempts ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptResolution {
    /// success, skipped, failed or up_for_retry.
    pub state: TaskState,
    /// For up_for_retry: the earliest time the next attempt may be scheduled.
    pub next_retry_at: Option<DateTime<Utc>>,
    /// Whether this attempt counted against the task's `retries`. False for a success,
    /// a skip, and a disruption; true for every failure.
    pub retry_spent: bool,
    /// Why the task instance ended up in `state`, for logs and the UI.
    pub reason: String,
}

/// Resolve the end of an attempt.
///
/// `try_number` is the try number of the attempt that ended *counted against `retries`*:
/// Airflow's try_number (1 for the first attempt) less the earlier attempts of the same
/// task instance that ended `Disrupted` (those do not count; see
/// [`AttemptResolution::retry_spent`]). In a run without disruptions it is exactly
/// Airflow's try_number. As in Airflow, a failed attempt is retried while
/// `try_number <= retries`, so a task with `retries: 2` runs at most three times.
pub fn on_attempt_end(
    task: &Task,
    try_number: u32,
    outcome: &AttemptOutcome,
    now: DateTime<Utc>,
) -> AttemptResolution {
    match outcome {
        AttemptOutcome::Success => AttemptResolution {
            state: TaskState::Success,
            next_retry_at: None,
            retry_spent: false,
            reason: "the attempt succeeded".to_owned(),
        },
        AttemptOutcome::Skipped => AttemptResolution {
            state: TaskState::Skipped,
            next_retry_at: None,
            retry_spent: false,
            reason: "the task skipped itself".to_owned(),
        },
        AttemptOutcome::Failed {
            retryable: false,
            reason,
        } => AttemptResolution {
            state: TaskState::Failed,
            next_retry_at: None,
            retry_spent: true,
            reason: format!("failed without retry (fail exception): {reason}"),
        },
        AttemptOutcome::Failed {
            retryable: true,
            reason,
        } => {
            let retries = task.retry.retries;
            // Airflow: `self.task.retries and self.try_number <= self.max_tries`.
            if retries > 0 && try_number <= retries {
                let delay = retry_delay(&task.retry, try_number, &jitter_key(task, try_number));
                AttemptResolution {
                    state: TaskState::UpForRetry,
                    next_retry_at: Some(add_saturating(now, delay)),
                    retry_spent: true,
                    reason: format!(
                        "attempt {try_number} failed, retry {try_number} of {retries} in {}s: {reason}",
                        delay.as_secs()
                    ),
                }
            } else {
                AttemptResolution {
                    state: TaskState::Failed,
                    next_retry_at: None,
                    retry_spent: true,
                    reason: if retries == 0 {
                        format!("attempt {try_number} failed and the task has no retries: {reason}")
                    } else {
                        format!(
                            "attempt {try_number} failed and all {retries} retries are spent: {reason}"
                        )
                    },
                }
            }
        }
        // Not the task's fault: try again at once, without spending a retry.
        AttemptOutcome::Disrupted { reason } => AttemptResolution {
            state: TaskState::UpForRetry,
            next_retry_at: Some(now),
            retry_spent: false,
            reason: format!("attempt was disrupted ({reason}); retrying without spending a retry"),
        },
    }
}

/// The delay before the retry that follows the failure of attempt `try_number`.
///
/// Without exponential backoff this is `retry_delay`, unbounded: Airflow applies neither
/// `max_retry_delay` nor its 24-hour cap in that case. With it, Airflow's formula:
/// `min_backoff = max(1, ceil(retry_delay_seconds * 2^(try_number - 1)))`, plus a
/// deterministic jitter in `[0, min_backoff)`, capped at 24 hours and then at
/// `max_retry_delay`. Whole seconds, as in Airflow.
///
/// The jitter is `hash(jitter_key) % min_backoff`. Airflow hashes
/// `"{dag_id}#{task_id}#{logical_date}#{try_number}"` with SHA-1; pave hashes whatever
/// key the caller passes with FNV-1a (see [`jitter_key`]), so the delay lies in the same
/// range as Airflow's but is not the same number of seconds.
pub fn retry_delay(policy: &RetryPolicy, try_number: u32, jitter_key: &str) -> Duration {
    if !policy.retry_exponential_backoff {
        return policy.retry_delay;
    }
    let cap = MAX_RETRY_DELAY.as_secs();
    let exponent = i32::try_from(try_number.saturating_sub(1)).unwrap_or(i32::MAX);
    let raw = (policy.retry_delay.as_secs_f64() * 2f64.powi(exponent)).ceil();
    // Past the cap the exact value no longer matters (Airflow caps on overflow too).
    let min_backoff = if raw.is_finite() && raw < cap as f64 {
        (raw as u64).max(1)
    } else {
        cap
    };
    let modded = min_backoff + fnv1a(jitter_key.as_bytes()) % min_backoff;
    let delay = Duration::from_secs(modded.min(cap));
    match policy.max_retry_delay {
        Some(max) if !max.is_zero() => delay.min(max),
        _ => delay,
    }
}

/// The jitter key [`on_attempt_end`] uses: `"{task_id}#{try_number}"`, stable across
/// schedulers and restarts (Airflow also includes the DAG id and logical date, which the
/// core's attempt-end signature does not carry).
pub fn jitter_key(task: &Task, try_number: u32) -> String {
    format!("{}#{try_number}", task.task_id)
}

/// 64-bit FNV-1a: tiny, deterministic, and good enough to spread retries.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// `now + d`, saturating at the latest representable time instead of overflowing.
fn add_saturating(now: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TaskKind;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("valid date")
    }

    fn task(retries: u32, delay_s: u64, exp: bool, max_s: Option<u64>) -> Task {
        let mut t = Task::new("t", TaskKind::Empty);
        t.retry = RetryPolicy {
            retries,
            retry_delay: Duration::from_secs(delay_s),
            retry_exponential_backoff: exp,
            max_retry_delay: max_s.map(Duration::from_secs),
        };
        t
    }

    fn failed() -> AttemptOutcome {
        AttemptOutcome::Failed {
            retryable: true,
            reason: "boom".into(),
        }
    }

    #[test]
    fn success_and_skip_are_final_and_spend_nothing() {
        let t = task(3, 10, false, None);
        let r = on_attempt_end(&t, 1, &AttemptOutcome::Success, t0());
        assert_eq!(
            (r.state, r.next_retry_at, r.retry_spent),
            (TaskState::Success, None, false)
        );
        let r = on_attempt_end(&t, 1, &AttemptOutcome::Skipped, t0());
        assert_eq!(
            (r.state, r.next_retry_at, r.retry_spent),
            (TaskState::Skipped, None, false)
        );
    }

    #[test]
    fn failures_retry_while_try_number_is_within_retries() {
        // (retries, try_number, expected state)
        let table = [
            (0, 1, TaskState::Failed),
            (1, 1, TaskState::UpForRetry),
            (1, 2, TaskState::Failed),
            (2, 2, TaskState::UpForRetry),
            (2, 3, TaskState::Failed),
        ];
        for (retries, try_number, want) in table {
            let r = on_attempt_end(&task(retries, 60, false, None), try_number, &failed(), t0());
            assert_eq!(r.state, want, "retries={retries} try={try_number}");
            assert!(r.retry_spent);
            let want_at =
                (want == TaskState::UpForRetry).then(|| t0() + chrono::Duration::seconds(60));
            assert_eq!(r.next_retry_at, want_at);
        }
    }

    #[test]
    fn fail_exception_never_retries() {
        let out = AttemptOutcome::Failed {
            retryable: false,
            reason: "nope".into(),
        };
        let r = on_attempt_end(&task(5, 1, false, None), 1, &out, t0());
        assert_eq!(r.state, TaskState::Failed);
    }

    #[test]
    fn disruption_retries_at_once_without_spending() {
        let out = AttemptOutcome::Disrupted {
            reason: "spot reclaim".into(),
        };
        let r = on_attempt_end(&task(0, 300, false, None), 7, &out, t0());
        assert_eq!(r.state, TaskState::UpForRetry);
        assert_eq!(r.next_retry_at, Some(t0()));
        assert!(!r.retry_spent);
    }

    #[test]
    fn plain_delay_ignores_max_retry_delay_like_airflow() {
        let p = task(1, 600, false, Some(60)).retry;
        assert_eq!(retry_delay(&p, 3, "k"), Duration::from_secs(600));
    }

    #[test]
    fn exponential_delay_lies_between_one_and_two_times_the_backoff() {
        let p = task(10, 10, true, None).retry;
        for try_number in 1..=8u32 {
            let min = 10u64 * 2u64.pow(try_number - 1);
            for key in ["a", "b", "t#1", "t#2", "zzz"] {
                let d = retry_delay(&p, try_number, key).as_secs();
                assert!(d >= min && d < 2 * min, "try {try_number} key {key}: {d}s");
            }
        }
    }

    #[test]
    fn exponential_delay_is_deterministic() {
        let p = task(10, 7, true, None).retry;
        assert_eq!(retry_delay(&p, 3, "x#3"), retry_delay(&p, 3, "x#3"));
    }

    #[test]
    fn exponential_delay_is_capped_by_max_retry_delay_and_24h() {
        let p = task(10, 10, true, Some(100)).retry;
        assert_eq!(retry_delay(&p, 6, "k"), Duration::from_secs(100));
        let p = task(100, 3600, true, None).retry;
        assert_eq!(retry_delay(&p, 60, "k"), MAX_RETRY_DELAY);
        assert_eq!(retry_delay(&p, u32::MAX, "k"), MAX_RETRY_DELAY);
    }

    #[test]
    fn zero_delay_with_backoff_is_at_least_one_second() {
        let p = task(3, 0, true, None).retry;
        assert_eq!(retry_delay(&p, 1, "k"), Duration::from_secs(1));
        let p = task(3, 0, false, None).retry;
        assert_eq!(retry_delay(&p, 1, "k"), Duration::ZERO);
    }

    #[test]
    fn far_future_retry_saturates_instead_of_overflowing() {
        let t = task(1, u64::MAX / 4, false, None);
        let r = on_attempt_end(&t, 1, &failed(), t0());
        assert_eq!(r.next_retry_at, Some(DateTime::<Utc>::MAX_UTC));
    }
}
