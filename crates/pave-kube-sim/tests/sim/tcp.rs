//! Over TCP: the kube client from a kubeconfig, and kubectl get/list/watch.

use crate::common::*;
use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{ListParams, LogParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config, ResourceExt};
use pave_kube_sim::{Cluster, PodMatch, Script, serve_on_loopback, write_kubeconfig};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncBufReadExt;

async fn tcp_client(c: &Cluster, dir: &Path) -> (Client, std::path::PathBuf) {
    let addr = serve_on_loopback(c.clone()).await.expect("serve");
    let path = dir.join("kubeconfig");
    write_kubeconfig(&path, &format!("http://{addr}")).expect("kubeconfig");
    let kc = Kubeconfig::read_from(&path).expect("read kubeconfig");
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("config");
    (Client::try_from(config).expect("client"), path)
}

#[tokio::test]
async fn kube_client_over_tcp_with_a_kubeconfig() {
    let c = scripted();
    c.script(
        PodMatch::name("hello"),
        Script::succeed_after(Duration::from_millis(200)).log_line("hi"),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let (client, _) = tcp_client(&c, dir.path()).await;
    let api: Api<Pod> = Api::default_namespaced(client.clone());
    let rv = api
        .list(&ListParams::default())
        .await
        .expect("list")
        .metadata
        .resource_version
        .expect("rv");
    api.create(&PostParams::default(), &pod("hello", &["true"]))
        .await
        .expect("create");
    let mut events = api
        .watch(&WatchParams::default().timeout(10), &rv)
        .await
        .expect("watch")
        .boxed();
    let mut phases = Vec::new();
    while let Some(ev) = events.try_next().await.expect("event") {
        if let WatchEvent::Added(p) | WatchEvent::Modified(p) = ev {
            phases.push(phase(&p).to_string());
            if phase(&p) == "Succeeded" {
                break;
            }
        }
    }
    assert_eq!(phases.first().map(String::as_str), Some("Pending"));
    assert!(phases.contains(&"Running".to_string()), "{phases:?}");
    assert_eq!(
        api.logs("hello", &LogParams::default())
            .await
            .expect("logs"),
        "hi\n"
    );
    let nodes: Api<Node> = Api::all(client);
    assert_eq!(
        nodes
            .list(&ListParams::default())
            .await
            .expect("nodes")
            .items
            .len(),
        3
    );
    assert_eq!(api.get("hello").await.expect("get").name_any(), "hello");
}

fn kubectl() -> Option<&'static str> {
    let ok = std::process::Command::new("kubectl")
        .args(["version", "--client"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Some("kubectl")
    } else {
        eprintln!("skipping: kubectl is not installed (apt-get install kubernetes-client)");
        None
    }
}

async fn run_kubectl(kubeconfig: &Path, args: &[&str]) -> String {
    let out = tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .await
        .expect("run kubectl");
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn kubectl_get_list_and_watch() {
    let Some(kubectl) = kubectl() else { return };
    let c = scripted();
    c.script(PodMatch::All, Script::run_forever());
    let dir = tempfile::tempdir().expect("tempdir");
    let (client, kubeconfig) = tcp_client(&c, dir.path()).await;
    let api: Api<Pod> = Api::default_namespaced(client);
    api.create(&PostParams::default(), &pod("first", &["true"]))
        .await
        .expect("create");
    c.wait_for_phase("default", "first", "Running", T)
        .await
        .expect("running");

    let table = run_kubectl(&kubeconfig, &["get", "pods"]).await;
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("first") && l.contains("Running")),
        "{table}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&run_kubectl(&kubeconfig, &["get", "nodes", "-o", "json"]).await)
            .expect("kubectl -o json");
    assert_eq!(json["items"].as_array().map(Vec::len), Some(3));
    assert_eq!(
        json["items"][2]["metadata"]["labels"]["nvidia.com/gpu.product"],
        "NVIDIA-H100-80GB-HBM3"
    );

    let mut watch = tokio::process::Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["get", "pods", "--watch"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("kubectl --watch");
    let mut lines = tokio::io::BufReader::new(watch.stdout.take().expect("stdout")).lines();
    let first = tokio::time::timeout(T, lines.next_line())
        .await
        .expect("header in time")
        .expect("read");
    assert!(first.is_some_and(|l| l.starts_with("NAME")));
    api.create(&PostParams::default(), &pod("second", &["true"]))
        .await
        .expect("create");
    let found = tokio::time::timeout(T, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.starts_with("second") && line.contains("Running") {
                return true;
            }
        }
        false
    })
    .await
    .expect("watch output in time");
    assert!(found, "kubectl --watch showed the new pod running");
    let _ = watch.kill().await;
}
