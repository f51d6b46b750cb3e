//! `pave dags test FILE --executor kubernetes --kubeconfig PATH` against
//! `pave kube-sim` over TCP (and TLS): both real binaries, the simulator's
//! kubelet running each pod's command as a local process.

mod common;

use common::{Pave, Running, state_try, workspace_root};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A running `pave kube-sim` and the kubeconfig it wrote.
struct Sim {
    _proc: Running,
    kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

fn start_sim(pave: &Pave) -> Sim {
    start_sim_with(pave, &[])
}

fn start_sim_with(pave: &Pave, extra: &[&str]) -> Sim {
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("sim.kubeconfig");
    let nodes = workspace_root().join("crates/pave-kube-sim/examples/nodes.yaml");
    let mut args = vec![
        "kube-sim",
        "--nodes",
        nodes.to_str().expect("utf-8"),
        "--listen",
        "127.0.0.1:0",
        "--write-kubeconfig",
        kubeconfig.to_str().expect("utf-8"),
    ];
    args.extend_from_slice(extra);
    let cmd = pave.command(&args);
    let mut proc = Running::spawn(cmd);
    proc.wait_for_line("simulated Kubernetes API", Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !kubeconfig.is_file() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    Sim {
        _proc: proc,
        kubeconfig,
        _dir: dir,
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write DAG");
    path
}

#[test]
fn a_dag_runs_its_tasks_in_pods_and_locally() {
    let pave = Pave::new();
    let sim = start_sim(&pave);
    let dir = tempfile::tempdir().expect("tempdir");
    let dag = write(
        dir.path(),
        "k8s.yaml",
        r#"
dag_id: k8s_e2e
tasks:
  prepare:
    executor: local
    command: echo prepared
  train:
    upstream: prepare
    command: echo "training on $HOSTNAME"; echo 0.93
    resources: {gpu: 2, gpu_type: H100, cpu: 4, memory: 8Gi}
  report:
    upstream: train
    command: test "{{ ti.xcom_pull('train') }}" = 0.93
    spot: allow
"#,
    );
    let v = pave.json(&[
        "dags",
        "test",
        dag.to_str().expect("utf-8"),
        "--executor",
        "kubernetes",
        "--kubeconfig",
        sim.kubeconfig.to_str().expect("utf-8"),
        "--json",
    ]);
    assert_eq!(v["state"], "success", "{v:#}");
    for task in ["prepare", "train", "report"] {
        assert_eq!(
            state_try(&v, task, -1),
            ("success".to_owned(), 1),
            "{task}: {v:#}"
        );
    }
}

#[test]
fn impossible_gpu_requests_fail_the_task_naming_it() {
    let pave = Pave::new();
    let sim = start_sim(&pave);
    let dir = tempfile::tempdir().expect("tempdir");
    let dag = write(
        dir.path(),
        "big.yaml",
        "dag_id: too_big\ntasks:\n  train:\n    command: echo never\n    resources: {gpu: 64, gpu_type: H100}\n",
    );
    let v = pave.json(&[
        "dags",
        "test",
        dag.to_str().expect("utf-8"),
        "--executor",
        "kubernetes",
        "--kubeconfig",
        sim.kubeconfig.to_str().expect("utf-8"),
        "--json",
    ]);
    assert_eq!(v["state"], "failed", "{v:#}");
    assert_eq!(state_try(&v, "train", -1).0, "failed");
}

#[test]
fn unknown_executors_and_bad_images_are_refused_at_parse_time() {
    let pave = Pave::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let dag = write(
        dir.path(),
        "bad.yaml",
        "dag_id: bad\ntasks:\n  a:\n    command: echo\n    executor: kubernets\n    image: ghcr.io/acme/Trainer:1\n",
    );
    let err = pave.fails(&["dags", "test", dag.to_str().expect("utf-8")]);
    assert!(
        err.contains("unknown executor `kubernets`") && err.contains("task `a`"),
        "{err}"
    );
    assert!(err.contains("invalid reference format"), "{err}");
}

#[test]
fn tasks_asking_for_kubernetes_without_a_cluster_say_how_to_configure_one() {
    let pave = Pave::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let dag = write(
        dir.path(),
        "k.yaml",
        "dag_id: needs_k8s\ntasks:\n  a:\n    command: echo\n    executor: kubernetes\n",
    );
    let v = pave.json(&["dags", "test", dag.to_str().expect("utf-8"), "--json"]);
    assert_eq!(v["state"], "failed", "{v:#}");
}

#[test]
fn python_tasks_run_in_pods_through_the_task_runtime() {
    let pave = Pave::new();
    let sim = start_sim(&pave);
    let dir = tempfile::tempdir().expect("tempdir");
    let dag = write(
        dir.path(),
        "py_k8s.py",
        r#"
from pave import dag, task


@dag(dag_id="py_k8s", schedule=None, default_args={"executor": "kubernetes"})
def py_k8s():
    @task(resources={"cpu": 1, "memory": "1Gi"})
    def make() -> int:
        return 20

    @task(executor="local")
    def double(x: int) -> int:
        assert x == 20, x
        return x * 2

    @task(spot="allow")
    def check(y: int) -> None:
        assert y == 40, y

    check(double(make()))


py_k8s()
"#,
    );
    let v = pave.json(&[
        "dags",
        "test",
        dag.to_str().expect("utf-8"),
        "--executor",
        "kubernetes",
        "--kubeconfig",
        sim.kubeconfig.to_str().expect("utf-8"),
        "--json",
    ]);
    assert_eq!(v["state"], "success", "{v:#}");
    for task in ["make", "double", "check"] {
        assert_eq!(
            state_try(&v, task, -1),
            ("success".to_owned(), 1),
            "{task}: {v:#}"
        );
    }
}

/// `pave kube-sim --tls` and the execution API flags: the executor reaches
/// the simulator over HTTPS (CA from the kubeconfig), Python tasks in pods
/// get the advertised `--execution-api-url` and local ones the loopback URL
/// of `--execution-api-listen`.
#[test]
fn python_tasks_in_pods_over_tls_use_the_advertised_execution_api_url() {
    let pave = Pave::new();
    let sim = start_sim_with(&pave, &["--tls"]);
    let text = std::fs::read_to_string(&sim.kubeconfig).expect("kubeconfig");
    assert!(
        text.contains("server: https://") && text.contains("certificate-authority-data"),
        "{text}"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let advertised = format!("http://localhost:{port}/execution/v1");
    let dir = tempfile::tempdir().expect("tempdir");
    let dag = write(
        dir.path(),
        "py_tls.py",
        &format!(
            r#"
import os
from pave import dag, task


@dag(dag_id="py_tls", schedule=None, default_args={{"executor": "kubernetes"}})
def py_tls():
    @task
    def in_pod() -> int:
        assert os.environ["PAVE_API_URL"] == "{advertised}", os.environ["PAVE_API_URL"]
        return 21

    @task(executor="local")
    def local(x: int) -> None:
        assert os.environ["PAVE_API_URL"] == "http://127.0.0.1:{port}/execution/v1", os.environ["PAVE_API_URL"]
        assert x == 21, x

    local(in_pod())


py_tls()
"#
        ),
    );
    let listen = format!("127.0.0.1:{port}");
    let v = pave.json(&[
        "dags",
        "test",
        dag.to_str().expect("utf-8"),
        "--executor",
        "kubernetes",
        "--kubeconfig",
        sim.kubeconfig.to_str().expect("utf-8"),
        "--execution-api-listen",
        &listen,
        "--execution-api-url",
        &advertised,
        "--json",
    ]);
    assert_eq!(v["state"], "success", "{v:#}");
    for task in ["in_pod", "local"] {
        assert_eq!(
            state_try(&v, task, -1),
            ("success".to_owned(), 1),
            "{task}: {v:#}"
        );
    }
}

/// `pave standalone --executor kubernetes` killed with -9 while pods run,
/// restarted twice: the pods (run by the simulator's kubelet, which outlives
/// pave) are adopted, none is created twice, and the run succeeds.
#[test]
fn kill_9_while_pods_run_and_restart_adopts_them() {
    let pave = Pave::new();
    let sim = start_sim(&pave);
    let dags = tempfile::tempdir().expect("dags");
    let attempts = pave.home_path().join("attempts.txt");
    let file = attempts.display();
    let work = format!(
        "echo \"start {{{{ task.task_id }}}}\" >> '{file}'; sleep 0.7; echo \"end {{{{ task.task_id }}}}\" >> '{file}'"
    );
    write(
        dags.path(),
        "podcrash.yaml",
        &format!(
            "dag_id: podcrash\ntasks:\n  begin:\n    command: {work:?}\n  a:\n    upstream: begin\n    command: {work:?}\n  b:\n    upstream: begin\n    command: {work:?}\n  join:\n    upstream: [a, b]\n    command: {work:?}\n"
        ),
    );
    let kubeconfig = sim.kubeconfig.to_str().expect("utf-8").to_owned();
    let standalone = |extra: &[&str]| {
        let mut args = vec![
            "standalone",
            "--dags",
            dags.path().to_str().expect("utf-8"),
            "--port",
            "0",
            "--executor",
            "kubernetes",
            "--kubeconfig",
            &kubeconfig,
        ];
        args.extend_from_slice(extra);
        Running::spawn(pave.command(&args))
    };
    let mut first = standalone(&["--trigger-all"]);
    first.wait_for_line("triggered podcrash", Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(900));
    let mut transcript = first.kill9();
    let second = standalone(&[]);
    std::thread::sleep(Duration::from_millis(1200));
    transcript.extend(second.kill9());
    let last = standalone(&["--exit-when-idle"]);
    let (status, lines) = last.wait(Duration::from_secs(60));
    transcript.extend(lines);
    let transcript = transcript.join("\n");
    assert!(status.success(), "{status}\n{transcript}");
    let runs = pave.json(&["dags", "runs", "podcrash", "--json"]);
    let tries = pave.json(&["tasks", "list", "podcrash", "--json", "--tries"]);
    assert_eq!(
        runs[0]["state"],
        "success",
        "{tries:#}\n{transcript}\n{}",
        std::fs::read_to_string(&attempts).unwrap_or_default()
    );
    let text = std::fs::read_to_string(&attempts).unwrap_or_default();
    for task in ["begin", "a", "b", "join"] {
        let starts = text
            .lines()
            .filter(|l| *l == format!("start {task}"))
            .count();
        let ends = text.lines().filter(|l| *l == format!("end {task}")).count();
        assert_eq!(
            (starts, ends),
            (1, 1),
            "{task} ran once:\n{text}\n{transcript}"
        );
    }
}
