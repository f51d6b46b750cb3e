//! Trigger rules: whether a task instance may run, given the states of its upstream task instances.
//!
//! This is Airflow 3's `TriggerRuleDep` (`ti_deps/deps/trigger_rule_dep.py`) as a pure
//! function. Airflow's version counts upstream states with SQL and changes the task
//! instance's state from inside the dependency check; here the counting is done by the
//! caller ([`UpstreamCounts::tally`]) and the verdict is a value ([`Readiness`]) that the
//! scheduler turns into a command. The order of the checks, the "terminal" verdicts
//! (skip / upstream_failed / removed, which Airflow applies under `flag_upstream_failed`)
//! and the waiting conditions are Airflow's, rule by rule, including its quirks: see the
//! comments on each arm.

use crate::model::TriggerRule;
use crate::state::TaskState;
use std::fmt;

/// States of the relevant upstream task instances of one task instance.
///
/// As in Airflow's `_UpstreamTIStates`, the per-state counts only include *finished*
/// upstream task instances, and the setup counts are included in the plain counts (two
/// skipped upstreams of which one is a setup: `skipped == 2`, `skipped_setup == 1`).
/// `upstream` is the number of upstream task instances whatever their state: a mapped
/// upstream task contributes each of its instances (or its one unexpanded placeholder).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct UpstreamCounts {
    /// All relevant upstream task instances, finished or not.
    pub upstream: u32,
    /// Those of `upstream` that belong to setup tasks.
    pub upstream_setup: u32,
    pub success: u32,
    pub skipped: u32,
    pub failed: u32,
    pub upstream_failed: u32,
    pub removed: u32,
    /// Finished upstream task instances (the sum of the five counts above).
    pub done: u32,
    pub success_setup: u32,
    pub skipped_setup: u32,
}

impl UpstreamCounts {
    /// Count upstream task instances given as `(state, is_setup)` pairs.
    pub fn tally(tis: impl IntoIterator<Item = (TaskState, bool)>) -> UpstreamCounts {
        let mut c = UpstreamCounts::default();
        for (state, is_setup) in tis {
            c.add(state, is_setup);
        }
        c
    }

    /// Count one more upstream task instance.
    pub fn add(&mut self, state: TaskState, is_setup: bool) {
        self.upstream += 1;
        if is_setup {
            self.upstream_setup += 1;
        }
        if !state.is_finished() {
            return;
        }
        self.done += 1;
        match state {
            TaskState::Success => {
                self.success += 1;
                if is_setup {
                    self.success_setup += 1;
                }
            }
            TaskState::Skipped => {
                self.skipped += 1;
                if is_setup {
                    self.skipped_setup += 1;
                }
            }
            TaskState::Failed => self.failed += 1,
            TaskState::UpstreamFailed => self.upstream_failed += 1,
            TaskState::Removed => self.removed += 1,
            _ => {}
        }
    }

    /// Whether every upstream task instance is finished (Airflow's `upstream_done`).
    pub fn all_done(&self) -> bool {
        self.done >= self.upstream
    }
}

impl fmt::Display for UpstreamCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} upstream: {} success, {} skipped, {} failed, {} upstream_failed, {} removed, {} not finished",
            self.upstream,
            self.success,
            self.skipped,
            self.failed,
            self.upstream_failed,
            self.removed,
            self.upstream.saturating_sub(self.done)
        )
    }
}

/// What the task instance being evaluated is, as far as the rules care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvalContext {
    /// Airflow's `ti.map_index`: for an expanded instance (>= 0) removed upstreams are
    /// not counted as non-successes, and a `removed` verdict is possible.
    pub map_index: i32,
}

impl EvalContext {
    pub const UNMAPPED: EvalContext = EvalContext { map_index: -1 };
}

/// The verdict of a trigger rule for one task instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// The rule is met: the task instance may be scheduled.
    Ready,
    /// Not yet: the reason says what is missing ("why isn't my task running?").
    Wait { reason: String },
    /// The rule can no longer be met in a way that runs the task: skip it.
    Skip { reason: String },
    /// The rule can no longer be met because something upstream failed.
    UpstreamFailed { reason: String },
    /// An expanded instance beyond the successful upstream count (Airflow's shrinking map).
    Removed { reason: String },
}

impl Readiness {
    /// Whether the verdict moves the task instance to a finished state.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Readiness::Skip { .. } | Readiness::UpstreamFailed { .. } | Readiness::Removed { .. }
        )
    }

    /// The finished state a terminal verdict moves the task instance to.
    pub fn terminal_state(&self) -> Option<TaskState> {
        match self {
            Readiness::Skip { .. } => Some(TaskState::Skipped),
            Readiness::UpstreamFailed { .. } => Some(TaskState::UpstreamFailed),
            Readiness::Removed { .. } => Some(TaskState::Removed),
            Readiness::Ready | Readiness::Wait { .. } => None,
        }
    }

    /// The reason, if the verdict has one.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Readiness::Ready => None,
            Readiness::Wait { reason }
            | Readiness::Skip { reason }
            | Readiness::UpstreamFailed { reason }
            | Readiness::Removed { reason } => Some(reason),
        }
    }
}

fn wait(rule: TriggerRule, what: impl fmt::Display, c: &UpstreamCounts) -> Readiness {
    Readiness::Wait {
        reason: format!("trigger rule `{}` {what} ({c})", rule.as_str()),
    }
}

fn skip(rule: TriggerRule, why: impl fmt::Display, c: &UpstreamCounts) -> Readiness {
    Readiness::Skip {
        reason: format!("trigger rule `{}`: {why} ({c})", rule.as_str()),
    }
}

fn upstream_failed(rule: TriggerRule, why: impl fmt::Display, c: &UpstreamCounts) -> Readiness {
    Readiness::UpstreamFailed {
        reason: format!("trigger rule `{}`: {why} ({c})", rule.as_str()),
    }
}

/// Airflow's "map index beyond the successful upstream count" removal, shared by
/// `all_success` and the setup constraint.
fn removed_if_shrunk(c: &UpstreamCounts, ctx: EvalContext) -> Option<Readiness> {
    if c.removed > 0 && c.success > 0 && ctx.map_index > -1 && ctx.map_index as u32 >= c.success {
        Some(Readiness::Removed {
            reason: format!(
                "map index {} is beyond the {} successful upstream instance(s)",
                ctx.map_index, c.success
            ),
        })
    } else {
        None
    }
}

/// Evaluate `rule` over the direct upstream task instances counted in `c`.
///
/// The caller handles the two short cuts Airflow takes before counting anything: a task
/// without upstream tasks, and the `always` rule, are ready; this function also answers
/// `Ready` for them so that it is total.
pub fn evaluate(rule: TriggerRule, c: &UpstreamCounts, ctx: EvalContext) -> Readiness {
    use TriggerRule as TR;
    if c.upstream == 0 || rule == TR::Always {
        return Readiness::Ready;
    }
    let mapped = ctx.map_index > -1;
    // Signed arithmetic: Airflow subtracts freely and compares with zero.
    let upstream = i64::from(c.upstream);
    let success = i64::from(c.success);
    let skipped = i64::from(c.skipped);
    let failed = i64::from(c.failed);
    let upstream_failed_n = i64::from(c.upstream_failed);
    let removed = i64::from(c.removed);
    let done = c.all_done();

    // First the terminal verdicts (Airflow sets these states when `flag_upstream_failed`
    // is on, which it always is in the scheduler). A terminal verdict wins over the
    // waiting conditions below, exactly as a state change does in Airflow.
    let terminal = match rule {
        TR::AllSuccess => {
            if c.upstream_failed > 0 || c.failed > 0 {
                Some(upstream_failed(rule, "an upstream task failed", c))
            } else if c.skipped > 0 {
                // Airflow skips as soon as one upstream is skipped, without waiting
                // for the others to finish.
                Some(skip(rule, "an upstream task was skipped", c))
            } else {
                removed_if_shrunk(c, ctx)
            }
        }
        TR::AllFailed => (c.success > 0 || c.skipped > 0)
            .then(|| skip(rule, "an upstream task succeeded or was skipped", c)),
        TR::OneSuccess => {
            if done && c.done == c.skipped {
                Some(skip(rule, "every upstream task was skipped", c))
            } else if done && c.success == 0 {
                Some(upstream_failed(
                    rule,
                    "every upstream task finished and none succeeded",
                    c,
                ))
            } else {
                None
            }
        }
        TR::OneFailed => (done && c.failed == 0 && c.upstream_failed == 0)
            .then(|| skip(rule, "every upstream task finished and none failed", c)),
        TR::OneDone => (done && c.failed == 0 && c.success == 0).then(|| {
            skip(
                rule,
                "every upstream task finished and none succeeded or failed",
                c,
            )
        }),
        TR::NoneFailed => (c.upstream_failed > 0 || c.failed > 0)
            .then(|| upstream_failed(rule, "an upstream task failed", c)),
        TR::NoneFailedMinOneSuccess => {
            if c.upstream_failed > 0 || c.failed > 0 {
                Some(upstream_failed(rule, "an upstream task failed", c))
            } else if skipped == upstream {
                Some(skip(rule, "every upstream task was skipped", c))
            } else {
                None
            }
        }
        TR::NoneSkipped => (c.skipped > 0).then(|| skip(rule, "an upstream task was skipped", c)),
        TR::AllSkipped => (c.success > 0 || c.failed > 0 || c.upstream_failed > 0)
            .then(|| skip(rule, "an upstream task did not skip", c)),
        TR::AllDoneMinOneSuccess => {
            // Airflow does not subtract removed upstreams here (it does below).
            let non_skipped_done = success + failed + upstream_failed_n + removed;
            let non_skipped_upstream = upstream - skipped;
            if c.skipped > 0 {
                // Surprising but Airflow's: any skipped upstream skips the task.
                Some(skip(rule, "an upstream task was skipped", c))
            } else if non_skipped_done >= non_skipped_upstream && c.success == 0 {
                Some(upstream_failed(
                    rule,
                    "every upstream task finished and none succeeded",
                    c,
                ))
            } else {
                None
            }
        }
        TR::AllDoneSetupSuccess => {
            if done && c.upstream_setup > 0 && c.skipped_setup >= c.upstream_setup {
                Some(skip(rule, "every upstream setup task was skipped", c))
            } else if done && c.upstream_setup > 0 && c.success_setup == 0 {
                Some(upstream_failed(rule, "no upstream setup task succeeded", c))
            } else {
                None
            }
        }
        TR::AllDone | TR::Always => None,
    };
    if let Some(t) = terminal {
        return t;
    }

    // Then the waiting conditions.
    match rule {
        TR::OneSuccess if c.success == 0 => wait(rule, "needs one upstream task to succeed", c),
        TR::OneFailed if c.failed == 0 && c.upstream_failed == 0 => {
            wait(rule, "needs one upstream task to fail", c)
        }
        TR::OneDone if c.success + c.failed == 0 => {
            wait(rule, "needs one upstream task to succeed or fail", c)
        }
        TR::AllSuccess => {
            let n = upstream - success - if mapped { removed } else { 0 };
            if n > 0 {
                wait(
                    rule,
                    format_args!("needs all upstream tasks to succeed; {n} have not"),
                    c,
                )
            } else {
                Readiness::Ready
            }
        }
        TR::AllFailed => {
            let n = upstream - failed - upstream_failed_n - if mapped { removed } else { 0 };
            if n > 0 {
                wait(
                    rule,
                    format_args!("needs all upstream tasks to fail; {n} have not"),
                    c,
                )
            } else {
                Readiness::Ready
            }
        }
        TR::AllDone if !done => wait(rule, "needs all upstream tasks to finish", c),
        TR::NoneFailed | TR::NoneFailedMinOneSuccess => {
            let n = upstream - success - skipped - if mapped { removed } else { 0 };
            if n > 0 {
                wait(
                    rule,
                    format_args!("needs all upstream tasks to succeed or be skipped; {n} have not"),
                    c,
                )
            } else {
                Readiness::Ready
            }
        }
        TR::NoneSkipped if !done || c.skipped > 0 => {
            wait(rule, "needs all upstream tasks to finish unskipped", c)
        }
        TR::AllSkipped => {
            let n = upstream - skipped;
            if n > 0 {
                wait(
                    rule,
                    format_args!("needs all upstream tasks to be skipped; {n} have not"),
                    c,
                )
            } else {
                Readiness::Ready
            }
        }
        TR::AllDoneSetupSuccess => {
            if !done {
                wait(rule, "needs all upstream tasks to finish", c)
            } else if c.upstream_setup > 0 && c.success_setup == 0 {
                wait(rule, "needs one upstream setup task to succeed", c)
            } else {
                Readiness::Ready
            }
        }
        TR::AllDoneMinOneSuccess => {
            let mut non_skipped_done = success + failed + upstream_failed_n + removed;
            let mut non_skipped_upstream = upstream - skipped;
            if mapped {
                non_skipped_upstream -= removed;
                non_skipped_done -= removed;
            }
            if c.skipped > 0 {
                wait(rule, "needs no upstream task to be skipped", c)
            } else if non_skipped_done < non_skipped_upstream {
                wait(rule, "needs all non-skipped upstream tasks to finish", c)
            } else if c.success == 0 {
                wait(rule, "needs one upstream task to succeed", c)
            } else {
                Readiness::Ready
            }
        }
        _ => Readiness::Ready,
    }
}

/// Airflow's setup constraint: every *indirect* relevant setup of a (non-teardown) task
/// must have succeeded before the task runs. `c` counts the instances of the relevant
/// upstream setups that are not direct upstreams of the task (those are covered by the
/// trigger rule itself). A failed setup makes the task upstream_failed and a skipped one
/// skips it, without waiting for the other setups.
pub fn evaluate_setup_constraint(c: &UpstreamCounts, ctx: EvalContext) -> Readiness {
    if c.upstream_failed > 0 || c.failed > 0 {
        return Readiness::UpstreamFailed {
            reason: format!("a setup task this task depends on failed ({c})"),
        };
    }
    if c.skipped > 0 {
        return Readiness::Skip {
            reason: format!("a setup task this task depends on was skipped ({c})"),
        };
    }
    if let Some(r) = removed_if_shrunk(c, ctx) {
        return r;
    }
    let mut non_successes = i64::from(c.upstream) - i64::from(c.success);
    if ctx.map_index > -1 {
        non_successes -= i64::from(c.removed);
    }
    if non_successes > 0 {
        return Readiness::Wait {
            reason: format!("all setup tasks must complete successfully first ({c})"),
        };
    }
    Readiness::Ready
}

#[cfg(test)]
mod tests {
    use super::*;
    use TriggerRule as TR;
    use proptest::prelude::*;

    /// Counts of direct upstreams: success, skipped, failed, upstream_failed, removed,
    /// unfinished (none of them setups).
    fn c(s: u32, sk: u32, f: u32, uf: u32, rm: u32, pending: u32) -> UpstreamCounts {
        let mut states = Vec::new();
        for (n, st) in [
            (s, TaskState::Success),
            (sk, TaskState::Skipped),
            (f, TaskState::Failed),
            (uf, TaskState::UpstreamFailed),
            (rm, TaskState::Removed),
            (pending, TaskState::Running),
        ] {
            states.extend(std::iter::repeat_n((st, false), n as usize));
        }
        UpstreamCounts::tally(states)
    }

    /// Like `c`, plus setup upstreams: (setup success, setup skipped, setup failed, setup pending).
    fn cs(base: UpstreamCounts, s: u32, sk: u32, f: u32, pending: u32) -> UpstreamCounts {
        let mut out = base;
        for (n, st) in [
            (s, TaskState::Success),
            (sk, TaskState::Skipped),
            (f, TaskState::Failed),
            (pending, TaskState::Queued),
        ] {
            for _ in 0..n {
                out.add(st, true);
            }
        }
        out
    }

    #[derive(Debug, PartialEq, Eq, Clone, Copy)]
    enum V {
        Ready,
        Wait,
        Skip,
        UpFailed,
        Removed,
    }

    fn kind(r: &Readiness) -> V {
        match r {
            Readiness::Ready => V::Ready,
            Readiness::Wait { .. } => V::Wait,
            Readiness::Skip { .. } => V::Skip,
            Readiness::UpstreamFailed { .. } => V::UpFailed,
            Readiness::Removed { .. } => V::Removed,
        }
    }

    const UNMAPPED: EvalContext = EvalContext::UNMAPPED;
    const fn at(i: i32) -> EvalContext {
        EvalContext { map_index: i }
    }

    #[test]
    fn every_rule_follows_airflow() {
        #[rustfmt::skip]
        let table: Vec<(TR, UpstreamCounts, EvalContext, V)> = vec![
            // all_success
            (TR::AllSuccess, c(3, 0, 0, 0, 0, 0), UNMAPPED, V::Ready),
            (TR::AllSuccess, c(2, 0, 0, 0, 0, 1), UNMAPPED, V::Wait),
            (TR::AllSuccess, c(0, 0, 1, 0, 0, 2), UNMAPPED, V::UpFailed),
            (TR::AllSuccess, c(1, 0, 0, 1, 0, 0), UNMAPPED, V::UpFailed),
            (TR::AllSuccess, c(0, 1, 0, 0, 0, 2), UNMAPPED, V::Skip),
            (TR::AllSuccess, c(0, 1, 1, 0, 0, 0), UNMAPPED, V::UpFailed),
            (TR::AllSuccess, c(2, 0, 0, 0, 1, 0), UNMAPPED, V::Wait),
            (TR::AllSuccess, c(2, 0, 0, 0, 1, 0), at(0), V::Ready),
            (TR::AllSuccess, c(2, 0, 0, 0, 1, 0), at(2), V::Removed),
            // all_failed
            (TR::AllFailed, c(0, 0, 2, 1, 0, 0), UNMAPPED, V::Ready),
            (TR::AllFailed, c(0, 0, 1, 0, 0, 1), UNMAPPED, V::Wait),
            (TR::AllFailed, c(1, 0, 1, 0, 0, 1), UNMAPPED, V::Skip),
            (TR::AllFailed, c(0, 1, 1, 0, 0, 0), UNMAPPED, V::Skip),
            // all_done
            (TR::AllDone, c(1, 1, 1, 1, 1, 0), UNMAPPED, V::Ready),
            (TR::AllDone, c(1, 1, 1, 0, 0, 1), UNMAPPED, V::Wait),
            (TR::AllDone, c(0, 0, 3, 0, 0, 0), UNMAPPED, V::Ready),
            // all_done_min_one_success
            (TR::AllDoneMinOneSuccess, c(1, 0, 2, 0, 0, 0), UNMAPPED, V::Ready),
            (TR::AllDoneMinOneSuccess, c(1, 0, 0, 0, 0, 1), UNMAPPED, V::Wait),
            (TR::AllDoneMinOneSuccess, c(1, 1, 0, 0, 0, 0), UNMAPPED, V::Skip),
            (TR::AllDoneMinOneSuccess, c(0, 0, 2, 1, 0, 0), UNMAPPED, V::UpFailed),
            // all_done_setup_success
            (TR::AllDoneSetupSuccess, cs(c(0, 0, 1, 0, 0, 0), 1, 0, 0, 0), UNMAPPED, V::Ready),
            (TR::AllDoneSetupSuccess, cs(c(0, 0, 1, 0, 0, 0), 1, 0, 1, 0), UNMAPPED, V::Ready),
            (TR::AllDoneSetupSuccess, cs(c(1, 0, 0, 0, 0, 0), 0, 2, 0, 0), UNMAPPED, V::Skip),
            (TR::AllDoneSetupSuccess, cs(c(1, 0, 0, 0, 0, 0), 0, 1, 1, 0), UNMAPPED, V::UpFailed),
            (TR::AllDoneSetupSuccess, cs(c(1, 0, 0, 0, 0, 0), 1, 0, 0, 1), UNMAPPED, V::Wait),
            (TR::AllDoneSetupSuccess, c(0, 0, 2, 0, 0, 0), UNMAPPED, V::Ready),
            (TR::AllDoneSetupSuccess, c(0, 0, 1, 0, 0, 1), UNMAPPED, V::Wait),
            // all_skipped
            (TR::AllSkipped, c(0, 2, 0, 0, 0, 0), UNMAPPED, V::Ready),
            (TR::AllSkipped, c(0, 1, 0, 0, 0, 1), UNMAPPED, V::Wait),
            (TR::AllSkipped, c(1, 1, 0, 0, 0, 0), UNMAPPED, V::Skip),
            (TR::AllSkipped, c(0, 0, 0, 1, 0, 1), UNMAPPED, V::Skip),
            // one_success
            (TR::OneSuccess, c(1, 0, 0, 0, 0, 2), UNMAPPED, V::Ready),
            (TR::OneSuccess, c(0, 0, 1, 0, 0, 1), UNMAPPED, V::Wait),
            (TR::OneSuccess, c(0, 2, 0, 0, 0, 0), UNMAPPED, V::Skip),
            (TR::OneSuccess, c(0, 1, 1, 0, 0, 0), UNMAPPED, V::UpFailed),
            (TR::OneSuccess, c(0, 0, 0, 2, 0, 0), UNMAPPED, V::UpFailed),
            // one_failed
            (TR::OneFailed, c(0, 0, 1, 0, 0, 2), UNMAPPED, V::Ready),
            (TR::OneFailed, c(0, 0, 0, 1, 0, 2), UNMAPPED, V::Ready),
            (TR::OneFailed, c(2, 0, 0, 0, 0, 1), UNMAPPED, V::Wait),
            (TR::OneFailed, c(2, 1, 0, 0, 0, 0), UNMAPPED, V::Skip),
            // one_done
            (TR::OneDone, c(1, 0, 0, 0, 0, 1), UNMAPPED, V::Ready),
            (TR::OneDone, c(0, 0, 1, 0, 0, 1), UNMAPPED, V::Ready),
            (TR::OneDone, c(0, 1, 0, 0, 0, 1), UNMAPPED, V::Wait),
            (TR::OneDone, c(0, 1, 0, 1, 0, 0), UNMAPPED, V::Skip),
            // none_failed
            (TR::NoneFailed, c(1, 2, 0, 0, 0, 0), UNMAPPED, V::Ready),
            (TR::NoneFailed, c(0, 3, 0, 0, 0, 0), UNMAPPED, V::Ready),
            (TR::NoneFailed, c(1, 0, 0, 0, 0, 1), UNMAPPED, V::Wait),
            (TR::NoneFailed, c(1, 0, 1, 0, 0, 1), UNMAPPED, V::UpFailed),
            (TR::NoneFailed, c(1, 0, 0, 1, 0, 0), UNMAPPED, V::UpFailed),
            // none_failed_min_one_success
            (TR::NoneFailedMinOneSuccess, c(1, 2, 0, 0, 0, 0), UNMAPPED, V::Ready),
            (TR::NoneFailedMinOneSuccess, c(0, 3, 0, 0, 0, 0), UNMAPPED, V::Skip),
            (TR::NoneFailedMinOneSuccess, c(0, 2, 0, 0, 0, 1), UNMAPPED, V::Wait),
            (TR::NoneFailedMinOneSuccess, c(0, 0, 0, 1, 0, 1), UNMAPPED, V::UpFailed),
            // none_skipped
            (TR::NoneSkipped, c(1, 0, 1, 1, 0, 0), UNMAPPED, V::Ready),
            (TR::NoneSkipped, c(1, 0, 0, 0, 0, 1), UNMAPPED, V::Wait),
            (TR::NoneSkipped, c(0, 1, 0, 0, 0, 1), UNMAPPED, V::Skip),
            // always
            (TR::Always, c(0, 0, 3, 0, 0, 2), UNMAPPED, V::Ready),
            // no upstream at all
            (TR::AllSuccess, c(0, 0, 0, 0, 0, 0), UNMAPPED, V::Ready),
        ];
        let mut covered = std::collections::HashSet::new();
        let mut failures = Vec::new();
        for (i, (rule, counts, ctx, want)) in table.iter().enumerate() {
            covered.insert(*rule);
            let got = evaluate(*rule, counts, *ctx);
            if kind(&got) != *want {
                failures.push(format!(
                    "row {i}: {} with {counts} at map index {}: got {got:?}, want {want:?}",
                    rule.as_str(),
                    ctx.map_index
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        for rule in TR::ALL {
            assert!(covered.contains(&rule), "rule {} has no row", rule.as_str());
        }
    }

    #[test]
    fn setup_constraint_follows_airflow() {
        let setups = |s, sk, f, pending| cs(UpstreamCounts::default(), s, sk, f, pending);
        let table = [
            (setups(2, 0, 0, 0), V::Ready),
            (setups(1, 0, 0, 1), V::Wait),
            (setups(0, 0, 1, 1), V::UpFailed),
            (setups(0, 1, 0, 1), V::Skip),
            (setups(0, 1, 1, 0), V::UpFailed),
        ];
        for (counts, want) in table {
            assert_eq!(
                kind(&evaluate_setup_constraint(&counts, UNMAPPED)),
                want,
                "{counts}"
            );
        }
    }

    #[test]
    fn reasons_name_the_rule_and_the_counts() {
        let r = evaluate(TR::AllSuccess, &c(1, 0, 0, 0, 0, 2), UNMAPPED);
        let reason = r.reason().expect("a wait has a reason");
        assert!(reason.contains("all_success"), "{reason}");
        assert!(reason.contains("2 not finished"), "{reason}");
    }

    fn any_counts() -> impl Strategy<Value = UpstreamCounts> {
        (
            0u32..4,
            0u32..4,
            0u32..4,
            0u32..4,
            0u32..3,
            0u32..4,
            0u32..3,
            0u32..3,
        )
            .prop_map(|(s, sk, f, uf, rm, pending, setup_ok, setup_pending)| {
                cs(c(s, sk, f, uf, rm, pending), setup_ok, 0, 0, setup_pending)
            })
    }

    fn any_rule() -> impl Strategy<Value = TriggerRule> {
        (0..TR::ALL.len()).prop_map(|i| TR::ALL[i])
    }

    proptest! {
        #[test]
        fn always_is_always_ready(counts in any_counts(), m in -1i32..3) {
            prop_assert_eq!(evaluate(TR::Always, &counts, at(m)), Readiness::Ready);
        }

        /// Rules that need every upstream finished never say Ready while one is not.
        #[test]
        fn done_dependent_rules_wait_for_unfinished_upstreams(
            counts in any_counts(),
            m in -1i32..3,
        ) {
            prop_assume!(!counts.all_done());
            for rule in [
                TR::AllSuccess, TR::AllFailed, TR::AllDone, TR::AllDoneMinOneSuccess,
                TR::AllDoneSetupSuccess, TR::AllSkipped, TR::NoneFailed,
                TR::NoneFailedMinOneSuccess, TR::NoneSkipped,
            ] {
                let got = evaluate(rule, &counts, at(m));
                prop_assert_ne!(got, Readiness::Ready, "{} with {}", rule.as_str(), counts);
            }
        }

        /// The one_* rules never give up before every upstream is finished.
        #[test]
        fn one_rules_are_not_terminal_early(counts in any_counts()) {
            prop_assume!(!counts.all_done());
            for rule in [TR::OneSuccess, TR::OneFailed, TR::OneDone] {
                let got = evaluate(rule, &counts, UNMAPPED);
                prop_assert!(!got.is_terminal(), "{} with {}: {:?}", rule.as_str(), counts, got);
            }
        }

        /// Every verdict but Ready explains itself.
        #[test]
        fn every_non_ready_verdict_has_a_reason(counts in any_counts(), rule in any_rule()) {
            let got = evaluate(rule, &counts, UNMAPPED);
            prop_assert_eq!(got.reason().is_some_and(|r| !r.is_empty()), got != Readiness::Ready);
        }
    }
}
