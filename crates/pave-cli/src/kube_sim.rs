//! `pave kube-sim`: serves a simulated Kubernetes cluster (pave-kube-sim)
//! on a local port, for the Kubernetes executor, kubectl and demos.

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use pave_kube_sim::{Cluster, ClusterConfig, KubeletMode};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// How the simulated kubelet runs pods.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Kubelet {
    /// Run each pod's first container command as a local process.
    Process,
    /// Succeed after a moment, unless a pod's `sim.pave.dev/outcome` annotation says otherwise.
    Script,
}

#[derive(Args, Debug)]
pub struct KubeSimArgs {
    /// Node file: YAML, generic CSV, or the Alibaba GPU trace CSV (see docs/kube-sim.md).
    #[arg(long)]
    pub nodes: PathBuf,
    /// Address to serve the Kubernetes API on (plain http, or https with `--tls`).
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub listen: SocketAddr,
    /// Serve HTTPS with a certificate signed by a CA generated at start; the
    /// CA goes into the kubeconfig (`certificate-authority-data`).
    #[arg(long)]
    pub tls: bool,
    /// Extra host names or IP addresses the `--tls` certificate is valid for
    /// (besides localhost, 127.0.0.1, ::1 and the listen address). Repeatable.
    #[arg(long = "tls-san", requires = "tls")]
    pub tls_sans: Vec<String>,
    /// Write a kubeconfig for the served API here.
    #[arg(long)]
    pub write_kubeconfig: Option<PathBuf>,
    /// How pods run.
    #[arg(long, value_enum, default_value = "process")]
    pub kubelet: Kubelet,
    /// Images that fail to pull (ErrImagePull); `*` matches anything. Repeatable.
    #[arg(long = "bad-image")]
    pub bad_images: Vec<String>,
}

pub async fn run(args: KubeSimArgs) -> Result<ExitCode> {
    let nodes = pave_kube_sim::load_node_file(&args.nodes)?;
    let cluster = Cluster::start(ClusterConfig {
        kubelet: match args.kubelet {
            Kubelet::Process => KubeletMode::Process,
            Kubelet::Script => KubeletMode::Script,
        },
        bad_images: args.bad_images,
        ..Default::default()
    });
    cluster.add_nodes(&nodes);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let mut addr = listener.local_addr().context("reading the bound address")?;
    // Clients cannot connect to 0.0.0.0: the kubeconfig names loopback.
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let identity = if args.tls {
        let mut hosts = args.tls_sans.clone();
        hosts.push(args.listen.ip().to_string());
        Some(
            pave_kube_sim::TlsIdentity::generate(&hosts)
                .context("cannot make the --tls certificate")?,
        )
    } else {
        None
    };
    let url = match identity {
        Some(_) => format!("https://{addr}"),
        None => format!("http://{addr}"),
    };
    if let Some(path) = &args.write_kubeconfig {
        let ca = identity.as_ref().map(|i| i.ca_pem());
        pave_kube_sim::write_kubeconfig_with_ca(path, &url, ca)?;
        eprintln!("kubeconfig written to {}", path.display());
    }
    eprintln!(
        "simulated Kubernetes API ({} nodes) on {url}; Ctrl-C stops it",
        cluster.nodes().len()
    );
    let served = async {
        match identity {
            Some(identity) => pave_kube_sim::serve_tls(cluster.clone(), listener, identity).await,
            None => pave_kube_sim::serve(cluster.clone(), listener).await,
        }
    };
    tokio::select! {
        served = served => served?,
        _ = tokio::signal::ctrl_c() => {}
    }
    cluster.shutdown();
    Ok(ExitCode::SUCCESS)
}
