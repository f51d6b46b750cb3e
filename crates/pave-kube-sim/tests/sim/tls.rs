//! Over HTTPS (`pave kube-sim --tls`): the unmodified kube client (rustls
//! with ring, no crypto provider installed by hand) and kubectl trust the
//! generated CA from the kubeconfig; a client without it is refused.

use crate::common::*;
use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{ListParams, LogParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use pave_kube_sim::{
    Cluster, PodMatch, Script, kubeconfig, serve_tls_on_loopback, write_kubeconfig_with_ca,
};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

async fn client_from(path: &Path) -> Result<Client, String> {
    let kc = Kubeconfig::read_from(path).map_err(|e| e.to_string())?;
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    Client::try_from(config).map_err(|e| e.to_string())
}

/// Serves `c` over HTTPS and writes a kubeconfig with its CA.
async fn tls_kubeconfig(c: &Cluster, dir: &Path) -> (String, PathBuf) {
    let (addr, identity) = serve_tls_on_loopback(c.clone()).await.expect("serve tls");
    let url = format!("https://{addr}");
    let path = dir.join("kubeconfig");
    write_kubeconfig_with_ca(&path, &url, Some(identity.ca_pem())).expect("kubeconfig");
    (url, path)
}

#[tokio::test]
async fn kube_client_lists_watches_and_reads_logs_over_tls() {
    let c = scripted();
    c.script(
        PodMatch::name("secure"),
        Script::succeed_after(Duration::from_millis(200)).log_line("over tls"),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, path) = tls_kubeconfig(&c, dir.path()).await;
    let text = std::fs::read_to_string(&path).expect("read kubeconfig");
    assert!(
        text.contains("certificate-authority-data: ") && text.contains("server: https://"),
        "{text}"
    );
    let client = client_from(&path).await.expect("client");
    let api: Api<Pod> = Api::default_namespaced(client.clone());
    let list = api
        .list(&ListParams::default())
        .await
        .expect("list over tls");
    assert!(list.items.is_empty());
    let rv = list.metadata.resource_version.expect("rv");
    api.create(&PostParams::default(), &pod("secure", &["true"]))
        .await
        .expect("create");
    let mut events = api
        .watch(&WatchParams::default().timeout(10), &rv)
        .await
        .expect("watch")
        .boxed();
    let mut succeeded = false;
    while let Some(ev) = events.try_next().await.expect("event") {
        if let WatchEvent::Modified(p) = ev
            && phase(&p) == "Succeeded"
        {
            succeeded = true;
            break;
        }
    }
    assert!(succeeded, "the watch over tls saw the pod succeed");
    assert_eq!(
        api.logs("secure", &LogParams::default())
            .await
            .expect("logs"),
        "over tls\n"
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
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_ca_is_refused() {
    let c = scripted();
    let dir = tempfile::tempdir().expect("tempdir");
    let (url, _) = tls_kubeconfig(&c, dir.path()).await;
    // The same server, without certificate-authority-data: the system's
    // roots do not know the generated CA.
    let path = dir.path().join("untrusted");
    std::fs::write(&path, kubeconfig(&url)).expect("write");
    let Ok(client) = client_from(&path).await else {
        return; // refused already while building the client
    };
    let api: Api<Pod> = Api::default_namespaced(client);
    let err = api
        .list(&ListParams::default())
        .await
        .expect_err("an unknown CA is refused");
    let text = format!("{err:?}").to_lowercase();
    assert!(
        text.contains("certificate") || text.contains("tls") || text.contains("ssl"),
        "{text}"
    );
}

#[tokio::test]
async fn kubectl_gets_pods_over_tls() {
    let ok = std::process::Command::new("kubectl")
        .args(["version", "--client"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("skipping: kubectl is not installed (apt-get install kubernetes-client)");
        return;
    }
    let c = scripted();
    c.script(PodMatch::All, Script::run_forever());
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, path) = tls_kubeconfig(&c, dir.path()).await;
    let api: Api<Pod> = Api::default_namespaced(client_from(&path).await.expect("client"));
    api.create(&PostParams::default(), &pod("tls-pod", &["true"]))
        .await
        .expect("create");
    c.wait_for_phase("default", "tls-pod", "Running", T)
        .await
        .expect("running");
    let out = tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&path)
        .args(["get", "pods", "--request-timeout=10s"])
        .output()
        .await
        .expect("run kubectl");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kubectl get pods over tls failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("tls-pod") && l.contains("Running")),
        "{stdout}"
    );
}
