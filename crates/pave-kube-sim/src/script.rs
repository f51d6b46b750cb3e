//! Scripted pod outcomes: what the simulated kubelet plays instead of
//! running a process (succeed after a while, exit with a code, OOMKilled,
//! image pull errors, run forever), chosen per pod by name, label or
//! annotation.

use k8s_openapi::api::core::v1::Pod;
use std::time::Duration;

/// How a scripted container ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0: phase Succeeded, reason Completed.
    Succeed,
    /// Exit with this code (non-zero: phase Failed, reason Error).
    Exit(i32),
    /// Killed for memory: exit 137, reason OOMKilled, phase Failed.
    OomKilled,
    /// The image cannot be pulled: the container waits with ErrImagePull,
    /// then ImagePullBackOff, alternating, and never starts.
    ImagePullError,
    /// Keep running until deleted, evicted or disrupted.
    RunForever,
}

/// A scripted run: the outcome, how long the container runs first, and the
/// log lines it writes at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// How the container ends.
    pub outcome: Outcome,
    /// How long it runs (or waits, for image pull errors) before the outcome.
    pub after: Duration,
    /// Lines written to the pod log when the container starts.
    pub log: Vec<String>,
}

impl Script {
    /// A script with this outcome after no delay and no log.
    pub fn new(outcome: Outcome) -> Self {
        Script {
            outcome,
            after: Duration::ZERO,
            log: Vec::new(),
        }
    }

    /// Succeed after `d`.
    pub fn succeed_after(d: Duration) -> Self {
        Script::new(Outcome::Succeed).after(d)
    }

    /// Exit with `code` (after no delay; chain [`Script::after`]).
    pub fn exit(code: i32) -> Self {
        Script::new(Outcome::Exit(code))
    }

    /// Be OOMKilled.
    pub fn oom_killed() -> Self {
        Script::new(Outcome::OomKilled)
    }

    /// Fail to pull the image.
    pub fn image_pull_error() -> Self {
        Script::new(Outcome::ImagePullError)
    }

    /// Stay Running.
    pub fn run_forever() -> Self {
        Script::new(Outcome::RunForever)
    }

    /// Sets how long the container runs before its outcome.
    pub fn after(mut self, d: Duration) -> Self {
        self.after = d;
        self
    }

    /// Adds a log line written at start.
    pub fn log_line(mut self, line: impl Into<String>) -> Self {
        self.log.push(line.into());
        self
    }

    /// Parses the annotation form: `succeed`, `exit:3`, `oom`,
    /// `image-pull-error`, `run-forever`, optionally followed by
    /// ` after 2s` / `500ms` / `1m`.
    pub fn parse(s: &str) -> Option<Script> {
        let s = s.trim();
        let (what, after) = match s.split_once(" after ") {
            Some((w, a)) => (w.trim(), Some(parse_duration(a.trim())?)),
            None => (s, None),
        };
        let outcome = match what {
            "succeed" | "success" => Outcome::Succeed,
            "oom" | "OOMKilled" => Outcome::OomKilled,
            "image-pull-error" | "ErrImagePull" => Outcome::ImagePullError,
            "run-forever" | "running" => Outcome::RunForever,
            other => Outcome::Exit(other.strip_prefix("exit:")?.trim().parse().ok()?),
        };
        Some(Script {
            outcome,
            after: after.unwrap_or(Duration::ZERO),
            log: Vec::new(),
        })
    }
}

/// Parses `250ms`, `2s`, `1.5s`, `3m`, `1h`.
pub(crate) fn parse_duration(s: &str) -> Option<Duration> {
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic())?);
    let n: f64 = num.trim().parse().ok()?;
    if !n.is_finite() || n < 0.0 {
        return None;
    }
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(secs))
}

/// Which pods a script or fault applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodMatch {
    /// Every pod.
    All,
    /// Pods with this name (in any namespace).
    Name(String),
    /// Pods carrying this label with this value.
    Label(String, String),
}

impl PodMatch {
    /// Pods named `name`.
    pub fn name(name: impl Into<String>) -> Self {
        PodMatch::Name(name.into())
    }

    /// Pods labelled `key=value`.
    pub fn label(key: impl Into<String>, value: impl Into<String>) -> Self {
        PodMatch::Label(key.into(), value.into())
    }

    /// Whether `pod` is matched.
    pub fn matches(&self, pod: &Pod) -> bool {
        match self {
            PodMatch::All => true,
            PodMatch::Name(n) => pod.metadata.name.as_deref() == Some(n.as_str()),
            PodMatch::Label(k, v) => pod
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(k))
                .is_some_and(|x| x == v),
        }
    }
}

/// A registered script: the last registered rule that matches wins.
#[derive(Debug, Clone)]
pub(crate) struct ScriptRule {
    pub matcher: PodMatch,
    pub script: Script,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_annotation_form() {
        assert_eq!(
            Script::parse("succeed"),
            Some(Script::new(Outcome::Succeed))
        );
        assert_eq!(
            Script::parse("exit:3 after 250ms"),
            Some(Script::exit(3).after(Duration::from_millis(250)))
        );
        assert_eq!(
            Script::parse("oom after 1s"),
            Some(Script::oom_killed().after(Duration::from_secs(1)))
        );
        assert_eq!(Script::parse("run-forever"), Some(Script::run_forever()));
        assert_eq!(Script::parse("explode"), None);
        assert_eq!(Script::parse("exit:x"), None);
    }
}
