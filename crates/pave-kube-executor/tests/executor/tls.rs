//! The executor over TLS: `pave kube-sim --tls` serves HTTPS with a CA it
//! generated; the kubeconfig carries the CA, and the executor's own client
//! (`client_from_kubeconfig`: kube with rustls and ring) runs a pod, follows
//! its log and reports it.

use crate::common::{Fx, config, nodes};
use pave_executor::{Executor, ExecutorEvent};
use pave_kube_executor::KubernetesExecutor;
use pave_kube_sim::{Cluster, ClusterConfig, KubeletMode, PodMatch, Script};
use std::time::Duration;

#[tokio::test]
async fn the_executor_runs_a_pod_over_tls() {
    let cluster = Cluster::start(ClusterConfig {
        kubelet: KubeletMode::Script,
        ..ClusterConfig::default()
    });
    cluster.add_nodes(&nodes());
    let (addr, identity) = pave_kube_sim::serve_tls_on_loopback(cluster.clone())
        .await
        .expect("serve tls");
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    pave_kube_sim::write_kubeconfig_with_ca(
        &kubeconfig,
        &format!("https://{addr}"),
        Some(identity.ca_pem()),
    )
    .expect("kubeconfig");
    let client = pave_kube_executor::client_from_kubeconfig(Some(&kubeconfig))
        .await
        .expect("client");
    let cfg = config("tls");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let exec = KubernetesExecutor::new(client, cfg.clone(), tx)
        .await
        .expect("executor over tls");
    let mut fx = Fx {
        cluster,
        exec: std::sync::Arc::new(exec),
        events: rx,
        dir,
        cfg,
    };
    let name = fx.pod_name("secure", 1);
    fx.cluster.script(
        PodMatch::name(&name),
        Script::succeed_after(Duration::from_millis(300)).log_line("trained over tls"),
    );
    let req = fx.request("secure", 1);
    let log = req.log_path.clone();
    fx.exec.start(req).await.expect("start over tls");
    match fx.next().await {
        ExecutorEvent::Finished { result, .. } => {
            assert!(result.is_success(), "{result:?}");
            assert_eq!(result.last_line.as_deref(), Some("trained over tls"));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("trained over tls"),
        "the log streamed over tls"
    );
    fx.cluster
        .wait_for_pod_gone("default", &name, Duration::from_secs(10))
        .await
        .expect("deleted over tls");
}
