//! Where an attempt's log and result files live, derived only from the
//! attempt's identity so that a restarted scheduler finds them again.
//! The layout follows Airflow's log folders.

use pave_core::{DagId, MapIndex, RunId, TaskId};
use std::path::{Path, PathBuf};

/// The folder of one task instance's attempts.
pub fn ti_dir(
    logs: &Path,
    dag: &DagId,
    run: &RunId,
    task: &TaskId,
    map_index: MapIndex,
) -> PathBuf {
    let mut p = logs
        .join(format!("dag_id={}", safe(dag.as_str())))
        .join(format!("run_id={}", safe(run.as_str())))
        .join(format!("task_id={}", safe(task.as_str())));
    if !map_index.is_unmapped() {
        p = p.join(format!("map_index={}", map_index.0));
    }
    p
}

/// The log file of one try.
pub fn log_path(
    logs: &Path,
    dag: &DagId,
    run: &RunId,
    task: &TaskId,
    map_index: MapIndex,
    try_number: u32,
) -> PathBuf {
    ti_dir(logs, dag, run, task, map_index).join(format!("attempt={try_number}.log"))
}

/// The result file the supervisor writes when the try ends.
pub fn result_path(
    logs: &Path,
    dag: &DagId,
    run: &RunId,
    task: &TaskId,
    map_index: MapIndex,
    try_number: u32,
) -> PathBuf {
    ti_dir(logs, dag, run, task, map_index).join(format!("attempt={try_number}.result.json"))
}

/// The claim file of one try: created exclusively by the try's supervisor
/// before the task runs, or by the executor to fence the try off (see
/// `pave_executor::Claim`). Always next to the result file.
pub fn claim_path(
    logs: &Path,
    dag: &DagId,
    run: &RunId,
    task: &TaskId,
    map_index: MapIndex,
    try_number: u32,
) -> PathBuf {
    pave_executor::claim_path(&result_path(logs, dag, run, task, map_index, try_number))
}

/// Ids are validated by the spec, but a run id comes from users: never let
/// one climb out of the logs folder.
fn safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c == '/' || c == '\\' || c == '\0' {
                '_'
            } else {
                c
            }
        })
        .collect::<String>()
        .replace("..", "__")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_cannot_escape_the_logs_folder() {
        let p = log_path(
            Path::new("/logs"),
            &"d".into(),
            &"../../etc".into(),
            &"t".into(),
            MapIndex(2),
            1,
        );
        assert!(!p.to_string_lossy().contains(".."), "{}", p.display());
        assert_eq!(p.components().count(), 7, "{}", p.display());
        assert!(p.ends_with("task_id=t/map_index=2/attempt=1.log"));
    }

    #[test]
    fn the_claim_lies_next_to_the_result() {
        let (dag, run, task) = ("d".into(), "r".into(), "t".into());
        let claim = claim_path(Path::new("/logs"), &dag, &run, &task, MapIndex::UNMAPPED, 3);
        assert_eq!(
            claim,
            Path::new("/logs/dag_id=d/run_id=r/task_id=t/attempt=3.claim")
        );
        let result = result_path(Path::new("/logs"), &dag, &run, &task, MapIndex::UNMAPPED, 3);
        assert_eq!(claim.parent(), result.parent());
    }
}
