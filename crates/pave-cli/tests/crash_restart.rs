//! kill -9 the scheduler at random-ish moments and restart it: the run still
//! ends in success, no task attempt runs twice, every task succeeds exactly
//! once, and the stored try history agrees with what the tasks did.
//!
//! The moments are drawn from a seed printed at the start; rerun a failure
//! with `PAVE_CRASH_SEED=<seed> cargo test -p pave-cli --test crash_restart`.

mod common;

use common::{Pave, Running, dags_dir};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

/// How many times the scheduler is killed before the final restart.
const KILLS: usize = 4;
/// The whole test, kills and restarts included, must end within this.
const BUDGET: Duration = Duration::from_secs(90);

/// Every task appends `start T M TRY` before its work and `end T M TRY`
/// after it, to a file outside pave; `flaky` fails its first try after its
/// work; `shard` is mapped and its XComs feed `finish`.
fn dag_yaml(attempts: &Path) -> String {
    let file = attempts.display();
    let work = format!(
        r#"echo "start {{{{ task.task_id }}}} $PAVE_MAP_INDEX {{{{ ti.try_number }}}}" >> '{file}'
      echo "attempt {{{{ task.task_id }}}} $PAVE_MAP_INDEX {{{{ ti.try_number }}}}"
      sleep 0.4
      echo "end {{{{ task.task_id }}}} $PAVE_MAP_INDEX {{{{ ti.try_number }}}}" >> '{file}'"#
    );
    format!(
        r#"dag_id: crashy
tasks:
  begin:
    command: |
      {work}
  a:
    upstream: begin
    command: |
      {work}
  b:
    upstream: begin
    command: |
      {work}
  c:
    upstream: begin
    command: |
      {work}
  join:
    upstream: [a, b, c]
    command: |
      {work}
  shard:
    upstream: join
    expand: {{n: [10, 20, 30]}}
    output: json
    command: |
      {work}
      echo {{{{ args.n }}}}
  flaky:
    upstream: join
    retries: 1
    retry_delay: 0
    command: |
      {work}
      [ {{{{ ti.try_number }}}} -ge 2 ]
  finish:
    upstream: flaky
    args: {{shards: {{xcom: shard}}}}
    command: |
      {work}
      echo "shards {{{{ args.shards | join(',') }}}}"
      [ "{{{{ args.shards | join(',') }}}}" = "10,20,30" ]
"#
    )
}

/// A tiny xorshift generator: reproducible kill moments from one seed.
struct Rng(u64);

impl Rng {
    /// `stream` tells apart tests that start at the same moment.
    fn from_env_or_clock(stream: u64) -> Rng {
        let seed = std::env::var("PAVE_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            });
        eprintln!("crash_restart: PAVE_CRASH_SEED={seed}");
        let mut rng = Rng((seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15)).max(1));
        // Let nearby seeds diverge before the first draw.
        for _ in 0..8 {
            rng.next();
        }
        rng
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A delay between `lo` and `hi` milliseconds.
    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next() % (hi - lo + 1))
    }
}

/// One `(task, map_index, try)` attempt as the tasks wrote it.
type Attempt = (String, i64, u64);

/// Reads the attempts file: `start` and `end` lines, each counted.
fn read_attempts(path: &Path) -> (BTreeMap<Attempt, usize>, BTreeMap<Attempt, usize>) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut starts = BTreeMap::new();
    let mut ends = BTreeMap::new();
    for line in text.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [kind, task, map, try_number] = parts[..] else {
            panic!("malformed attempts line {line:?}");
        };
        let key = (
            task.to_owned(),
            map.parse().expect("map index"),
            try_number.parse().expect("try number"),
        );
        let counts = match kind {
            "start" => &mut starts,
            "end" => &mut ends,
            other => panic!("unknown attempts line kind {other:?}"),
        };
        *counts.entry(key).or_insert(0) += 1;
    }
    (starts, ends)
}

/// A transcript line: how far the tasks had got when kill #`round` hit.
fn progress(attempts: &Path, round: usize) -> String {
    let (starts, ends) = read_attempts(attempts);
    let running: Vec<String> = starts
        .keys()
        .filter(|a| !ends.contains_key(*a))
        .map(|(t, m, n)| format!("{t}[{m}]#{n}"))
        .collect();
    format!(
        "--- kill -9 #{round}: {} attempts started, {} ended, running: [{}] ---",
        starts.len(),
        ends.len(),
        running.join(", ")
    )
}

fn standalone(pave: &Pave, dags: &Path, extra: &[&str]) -> Running {
    let mut args = vec!["standalone", "--dags", dags.to_str().expect("utf-8")];
    args.extend_from_slice(&["--port", "0"]);
    if !extra.contains(&"--parallelism") {
        args.extend_from_slice(&["--parallelism", "2"]);
    }
    args.extend_from_slice(extra);
    Running::spawn(pave.command(&args))
}

#[test]
fn kill_9_the_scheduler_repeatedly_and_no_attempt_runs_twice() {
    crash_and_restart(KILLS, (150, 1300));
}

/// Many quick kills: most land during start-up, reconciliation and the
/// first scheduling steps after a restart.
#[test]
fn many_quick_kills_during_restarts() {
    crash_and_restart(10, (30, 400));
}

/// Starts the DAG, kills the scheduler `kills` times (each restart lives a
/// random `delay_ms` range), restarts it a last time, checks everything.
fn crash_and_restart(kills: usize, delay_ms: (u64, u64)) {
    let started = Instant::now();
    let mut rng = Rng::from_env_or_clock(kills as u64);
    let pave = Pave::new();
    let dir = dags_dir();
    let attempts = pave.home_path().join("attempts.txt");
    std::fs::write(dir.path().join("crashy.yaml"), dag_yaml(&attempts)).expect("write the DAG");

    // First start triggers the run; kill it once the run exists.
    let mut first = standalone(&pave, dir.path(), &["--trigger-all"]);
    first.wait_for_line("triggered crashy", Duration::from_secs(30));
    std::thread::sleep(rng.millis(100, 900));
    let mut transcript = first.kill9();
    transcript.push(progress(&attempts, 0));

    // Kill each restart at a random moment: during start-up, reconciliation,
    // while attempts run, or between them.
    for round in 1..kills {
        let next = standalone(&pave, dir.path(), &[]);
        std::thread::sleep(rng.millis(delay_ms.0, delay_ms.1));
        transcript.extend(next.kill9());
        transcript.push(progress(&attempts, round));
        assert!(started.elapsed() < BUDGET, "ran out of time");
    }

    // The final restart finishes the run and exits.
    let last = standalone(&pave, dir.path(), &["--exit-when-idle"]);
    let left = BUDGET.saturating_sub(started.elapsed());
    let (status, lines) = last.wait(left);
    transcript.push("--- final restart ---".into());
    transcript.extend(lines);
    let transcript = transcript.join("\n");
    eprintln!("{transcript}");
    assert!(status.success(), "final standalone: {status}\n{transcript}");

    // The run ended in success.
    let runs = pave.json(&["dags", "runs", "crashy", "--json"]);
    let runs = runs.as_array().expect("runs array");
    assert_eq!(runs.len(), 1, "exactly one run: {runs:?}\n{transcript}");
    assert_eq!(runs[0]["state"], "success", "{runs:?}\n{transcript}");

    // No attempt ran twice, and every attempt that started also finished
    // (its supervisor outlived the scheduler that started it).
    let (starts, ends) = read_attempts(&attempts);
    let twice: Vec<_> = starts
        .iter()
        .chain(ends.iter())
        .filter(|(_, n)| **n > 1)
        .collect();
    assert!(
        twice.is_empty(),
        "attempts ran more than once: {twice:?}\n{transcript}"
    );
    let started_set: BTreeSet<&Attempt> = starts.keys().collect();
    let ended_set: BTreeSet<&Attempt> = ends.keys().collect();
    assert_eq!(
        started_set, ended_set,
        "an attempt started but never finished\n{transcript}"
    );

    // The stored try history agrees with the file, try for try.
    let list = pave.json(&["tasks", "list", "crashy", "--json", "--tries"]);
    assert_eq!(list["state"], "success", "{list:#}");
    let mut history: BTreeSet<Attempt> = BTreeSet::new();
    let mut expected_tis = vec![
        ("begin", -1),
        ("a", -1),
        ("b", -1),
        ("c", -1),
        ("join", -1),
        ("flaky", -1),
        ("finish", -1),
        ("shard", 0),
        ("shard", 1),
        ("shard", 2),
    ];
    expected_tis.sort_unstable();
    let mut seen_tis = Vec::new();
    for ti in common::task_instances(&list) {
        let task = ti["task_id"].as_str().expect("task_id");
        let map = ti["map_index"].as_i64().expect("map_index");
        seen_tis.push((task, map));
        assert_eq!(ti["state"], "success", "{ti:#}\n{transcript}");
        let tries = ti["tries"].as_array().expect("tries");
        let successes: Vec<&Value> = tries.iter().filter(|t| t["state"] == "success").collect();
        assert_eq!(
            successes.len(),
            1,
            "{task}[{map}] should succeed exactly once: {tries:?}\n{transcript}"
        );
        // The successful try is the task instance's final try.
        assert_eq!(successes[0]["try_number"], ti["try_number"], "{ti:#}");
        // A kill between queueing a try and its supervisor claiming it
        // fences the try off on restart: it stays in the history as
        // `removed`, never started, and the next try runs instead.
        let (fenced, ran): (Vec<&Value>, Vec<&Value>) =
            tries.iter().partition(|t| t["state"] == "removed");
        for t in tries {
            let n = t["try_number"].as_u64().expect("try_number");
            let was_fenced = t["state"] == "removed";
            if was_fenced {
                assert!(
                    t["start_date"].is_null()
                        && t["exit_code"].is_null()
                        && t["reason"]
                            .as_str()
                            .is_some_and(|r| r.starts_with("never started")),
                    "a removed try must be one that never started: {t:#}\n{transcript}"
                );
            } else {
                assert!(
                    history.insert((task.to_owned(), map, n)),
                    "try {n} of {task}[{map}] is in the history twice: {tries:?}"
                );
            }
            // Every recorded try kept its log.
            let log = pave.ok(&[
                "tasks",
                "logs",
                "crashy",
                task,
                &format!("--map-index={map}"),
                &format!("--try={n}"),
            ]);
            let expected = if was_fenced {
                "never started".to_owned()
            } else {
                format!("attempt {task} {map} {n}")
            };
            assert!(
                log.contains(&expected),
                "log of try {n} of {task}[{map}]:\n{log}"
            );
        }
        if !fenced.is_empty() {
            eprintln!("{task}[{map}]: {} try(s) fenced off", fenced.len());
        }
        // `flaky` fails its try 1 (exit 1) and succeeds from try 2 on; the
        // others succeed on their first try that runs.
        let codes: Vec<(u64, String, Option<i64>)> = ran
            .iter()
            .map(|t| {
                (
                    t["try_number"].as_u64().expect("try_number"),
                    t["state"].as_str().expect("state").to_owned(),
                    t["exit_code"].as_i64(),
                )
            })
            .collect();
        let expected: Vec<(u64, String, Option<i64>)> = codes
            .iter()
            .map(|&(n, _, _)| {
                if task == "flaky" && n < 2 {
                    (n, "failed".into(), Some(1))
                } else {
                    (n, "success".into(), Some(0))
                }
            })
            .collect();
        assert_eq!(codes, expected, "{task}[{map}]\n{transcript}");
        if task == "flaky" {
            // Without fencing exactly [try 1 failed, try 2 succeeded].
            assert!(codes.len() <= 2, "{codes:?}\n{transcript}");
        } else {
            assert_eq!(codes.len(), 1, "{codes:?}\n{transcript}");
        }
    }
    seen_tis.sort_unstable();
    assert_eq!(seen_tis, expected_tis);
    let file: BTreeSet<Attempt> = starts.keys().cloned().collect();
    assert_eq!(
        history, file,
        "the try history and the attempts the tasks made differ\n{transcript}"
    );

    // XComs survived the crashes: `finish` saw every shard's result.
    let finish = pave.ok(&["tasks", "logs", "crashy", "finish"]);
    assert!(finish.contains("shards 10,20,30"), "{finish}");
}

/// Waits until the attempts file has a line `line`.
fn wait_for_attempt_line(path: &Path, line: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.lines().any(|l| l == line) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no line {line:?} in {} within {timeout:?}:\n{text}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `tasks list DAG --json` shows TASK (unmapped) in `state`.
fn wait_for_ti_state(pave: &Pave, dag: &str, task: &str, state: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let out = pave.run(&["tasks", "list", dag, "--json"]);
        if out.success() {
            let list = common::single_json(&out.stdout);
            let found = common::task_instances(&list)
                .iter()
                .any(|t| t["task_id"] == task && t["state"] == state);
            if found {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{dag}.{task} not {state} within {timeout:?}:\n{out}"
        );
        std::thread::sleep(Duration::from_millis(30));
    }
}

/// `slow` (about 1.5 s) then `after`; both log start/end to `attempts`.
fn slow_dag_yaml(attempts: &Path) -> String {
    let file = attempts.display();
    format!(
        r#"dag_id: slow
tasks:
  slow:
    output: json
    command: |
      echo "start slow -1 {{{{ ti.try_number }}}}" >> '{file}'
      sleep 1.5
      echo "end slow -1 {{{{ ti.try_number }}}}" >> '{file}'
      echo '{{"rows": 42}}'
  after:
    args: {{rows: {{xcom: slow}}}}
    command: |
      echo "start after -1 {{{{ ti.try_number }}}}" >> '{file}'
      echo "rows {{{{ args.rows.rows }}}}"
      echo "end after -1 {{{{ ti.try_number }}}}" >> '{file}'
"#
    )
}

/// Kills the scheduler while `slow` runs; restarts it either while `slow`
/// still runs (`restart_early`) or after it finished; checks it is adopted.
fn kill_during_slow_attempt(restart_early: bool) {
    let pave = Pave::new();
    let dir = dags_dir();
    let attempts = pave.home_path().join("attempts.txt");
    std::fs::write(dir.path().join("slow.yaml"), slow_dag_yaml(&attempts)).expect("write DAG");

    let first = standalone(&pave, dir.path(), &["--trigger-all"]);
    wait_for_attempt_line(&attempts, "start slow -1 1", Duration::from_secs(30));
    // Kill once the store knows the attempt runs (has its handle); a kill
    // between the spawn and that commit is `kill_between_spawn_and_commit`.
    wait_for_ti_state(&pave, "slow", "slow", "running", Duration::from_secs(30));
    let mut transcript = first.kill9();
    if !restart_early {
        // The attempt's supervisor outlives the scheduler and finishes it.
        wait_for_attempt_line(&attempts, "end slow -1 1", Duration::from_secs(30));
    }
    let last = standalone(&pave, dir.path(), &["--exit-when-idle"]);
    let (status, lines) = last.wait(Duration::from_secs(60));
    transcript.push("--- restart ---".into());
    transcript.extend(lines);
    let transcript = transcript.join("\n");
    assert!(status.success(), "{status}\n{transcript}");

    let text = std::fs::read_to_string(&attempts).expect("attempts file");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "start slow -1 1",
            "end slow -1 1",
            "start after -1 1",
            "end after -1 1"
        ],
        "{transcript}"
    );
    let list = pave.json(&["tasks", "list", "slow", "--json", "--tries"]);
    assert_eq!(list["state"], "success", "{list:#}\n{transcript}");
    for task in ["slow", "after"] {
        assert_eq!(
            common::state_try(&list, task, -1),
            ("success".to_owned(), 1),
            "{list:#}"
        );
        let tries = common::ti(&list, task, -1)["tries"]
            .as_array()
            .expect("tries")
            .clone();
        assert_eq!(tries.len(), 1, "{tries:?}");
        assert_eq!(tries[0]["exit_code"], 0, "{tries:?}");
    }
    // The adopted attempt's result reached its downstream as XCom.
    let log = pave.ok(&["tasks", "logs", "slow", "after"]);
    assert!(log.contains("rows 42"), "{log}");
    // It was supervised by the supervision server, which outlived the
    // scheduler (docs/local-executor.md).
    let claim = find_file(
        &pave.home_path().join("logs/dag_id=slow"),
        "attempt=1.claim",
    )
    .map(|p| std::fs::read_to_string(p).expect("claim"))
    .expect("the slow task's claim");
    let claim: serde_json::Value = serde_json::from_str(&claim).expect("claim JSON");
    assert_eq!(claim["shared"], true, "{claim}");
}

/// The first file named `name` under `dir` whose path mentions `task_id=slow`.
fn find_file(dir: &Path, name: &str) -> Option<std::path::PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = find_file(&path, name) {
                return Some(found);
            }
        } else if path.file_name().is_some_and(|n| n == name)
            && path.to_string_lossy().contains("task_id=slow")
        {
            return Some(path);
        }
    }
    None
}

#[test]
fn attempt_still_running_at_restart_is_adopted_not_rerun() {
    kill_during_slow_attempt(true);
}

#[test]
fn attempt_that_finished_while_the_scheduler_was_down_is_adopted() {
    kill_during_slow_attempt(false);
}

/// Six parallel tasks; the first one to start SIGKILLs the scheduler (its
/// supervisor's parent) while the scheduler is still starting the others
/// and has not yet recorded their handles.
fn burst_dag_yaml(attempts: &Path, once: &Path) -> String {
    let file = attempts.display();
    let once = once.display();
    let work = format!(
        r#"echo "start {{{{ task.task_id }}}} -1 {{{{ ti.try_number }}}}" >> '{file}'
      if mkdir '{once}' 2>/dev/null; then kill -9 "$(awk '{{print $4}}' /proc/$PPID/stat)"; fi
      sleep 0.5
      echo "end {{{{ task.task_id }}}} -1 {{{{ ti.try_number }}}}" >> '{file}'"#
    );
    let mut yaml = String::from("dag_id: burst\ntasks:\n");
    for t in ["t1", "t2", "t3", "t4", "t5", "t6"] {
        yaml.push_str(&format!("  {t}:\n    command: |\n      {work}\n"));
    }
    yaml
}

#[test]
fn kill_between_spawn_and_commit_does_not_run_an_attempt_twice() {
    let pave = Pave::new();
    let dir = dags_dir();
    let attempts = pave.home_path().join("attempts.txt");
    let once = pave.home_path().join("killed-once");
    std::fs::write(
        dir.path().join("burst.yaml"),
        burst_dag_yaml(&attempts, &once),
    )
    .expect("write DAG");

    // The first task kills this scheduler itself.
    let first = standalone(&pave, dir.path(), &["--trigger-all", "--parallelism", "8"]);
    let (status, mut transcript) = first.wait(Duration::from_secs(30));
    assert!(
        status.code().is_none(),
        "a task should have killed the scheduler: {status}\n{}",
        transcript.join("\n")
    );
    transcript.push(progress(&attempts, 0));

    let last = standalone(&pave, dir.path(), &["--exit-when-idle"]);
    let (status, lines) = last.wait(Duration::from_secs(60));
    transcript.extend(lines);
    let transcript = transcript.join("\n");
    assert!(status.success(), "{status}\n{transcript}");

    let (starts, ends) = read_attempts(&attempts);
    let twice: Vec<_> = starts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "attempts ran more than once: {twice:?}\n{transcript}"
    );
    assert_eq!(starts.len(), 6, "{starts:?}");
    assert_eq!(
        starts.keys().collect::<Vec<_>>(),
        ends.keys().collect::<Vec<_>>()
    );
    let runs = pave.json(&["dags", "runs", "burst", "--json"]);
    assert_eq!(runs[0]["state"], "success", "{runs:#}\n{transcript}");
}

/// Command attempts go to the supervision server unless
/// `PAVE_SUPERVISION_SERVER=0`; a clean stop removes the servers' sockets.
#[test]
fn command_attempts_are_supervised_by_the_server_unless_it_is_turned_off() {
    for server in [true, false] {
        let pave = Pave::new();
        let dir = dags_dir();
        std::fs::write(
            dir.path().join("two.yaml"),
            "dag_id: slow\ntasks:\n  slow: {command: \"echo one\"}\n  next: {command: \"echo two\", upstream: slow}\n",
        )
        .expect("write DAG");
        let mut cmd = pave.command(&[
            "standalone",
            "--dags",
            dir.path().to_str().expect("utf-8"),
            "--port",
            "0",
            "--trigger-all",
            "--exit-when-idle",
        ]);
        if !server {
            cmd.env("PAVE_SUPERVISION_SERVER", "0");
        }
        let (status, lines) = Running::spawn(cmd).wait(Duration::from_secs(60));
        assert!(status.success(), "{status}\n{}", lines.join("\n"));
        let claim = find_file(
            &pave.home_path().join("logs/dag_id=slow"),
            "attempt=1.claim",
        )
        .map(|p| std::fs::read_to_string(p).expect("claim"))
        .expect("a claim");
        let claim: serde_json::Value = serde_json::from_str(&claim).expect("claim JSON");
        assert_eq!(claim["shared"] == true, server, "server {server}: {claim}");
        let sockets: Vec<String> = std::fs::read_dir(pave.home_path().join("supervise"))
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|n| n.ends_with(".sock"))
                    .collect()
            })
            .unwrap_or_default();
        assert!(sockets.is_empty(), "left behind: {sockets:?}");
    }
}
