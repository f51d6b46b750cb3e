//! Resource requests against the local executor, through the real binary:
//! GPU work falls back to CPU on a machine without GPUs, and a request no
//! machine slot can ever satisfy fails with a clear reason instead of
//! waiting forever.

mod common;

use common::{Pave, fixture, state_try, ti};

#[test]
fn gpu_tasks_run_on_cpu_without_gpus_and_impossible_requests_fail_clearly() {
    let pave = Pave::new();
    let file = fixture("gpu_request.yaml");
    let file = file.to_str().expect("utf-8 path");
    let v = pave.json(&["dags", "test", file, "--json"]);
    // The test machines have no GPU: the GPU task runs on CPU.
    assert_eq!(
        state_try(&v, "train", -1),
        ("success".to_owned(), 1),
        "{v:#}"
    );
    assert_eq!(state_try(&v, "too_many_cpus", -1).0, "failed", "{v:#}");
    assert_eq!(v["state"], "failed", "{v:#}");

    let text = pave.ok(&["dags", "test", file]);
    let stderr_hint = ti(&v, "too_many_cpus", -1);
    assert!(stderr_hint["try_number"] == 0, "never started: {v:#}");
    // The human-readable run names the unmet request and the fix.
    let out = pave.run(&["dags", "test", file]);
    let all = format!("{text}{}", out.stderr);
    assert!(
        all.contains("too_many_cpus") && all.contains("CPU") && all.contains("lower the request"),
        "{all}"
    );
}
