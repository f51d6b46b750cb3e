//! Pod specs rendered exactly, compared with golden files under
//! `tests/golden/` (`UPDATE_GOLDEN=1` rewrites them; review the diff).

use crate::common::{Fx, H100, key};
use pave_core::{Placement, Resources, SpotPolicy};
use pave_executor::{CommandLine, StartRequest};
use pave_kube_executor::render::{RenderInput, render_pod};
use pave_kube_executor::{KubeExecutorConfig, parse_pod_template};
use std::collections::BTreeMap;
use std::path::PathBuf;

fn golden(name: &str, value: &serde_json::Value) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.json"));
    let text = format!(
        "{}\n",
        serde_json::to_string_pretty(value).expect("serialize")
    );
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &text).expect("write golden");
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} is missing; run with UPDATE_GOLDEN=1", path.display()));
    assert_eq!(text, want, "{name} differs from its golden file");
}

fn cfg() -> KubeExecutorConfig {
    KubeExecutorConfig {
        installation: "prod".into(),
        default_image: "ghcr.io/acme/ml:1.4".into(),
        ..KubeExecutorConfig::default()
    }
}

fn request(task: &str) -> StartRequest {
    StartRequest {
        key: key(task, 1),
        command: CommandLine::Argv {
            argv: vec!["python3".into(), "-m".into(), "pave.runtime".into()],
        },
        env: BTreeMap::from([
            (
                "PAVE_API_URL".to_owned(),
                "http://pave:8080/execution".to_owned(),
            ),
            ("PAVE_TASK_TOKEN".to_owned(), "token".to_owned()),
        ]),
        cwd: None,
        execution_timeout: None,
        resources: Resources::default(),
        log_path: "/logs/x.log".into(),
        result_path: "/logs/x.json".into(),
        placement: Placement::default(),
    }
}

fn render(req: &StartRequest, cfg: &KubeExecutorConfig, products: &[String]) -> serde_json::Value {
    let pod = render_pod(&RenderInput {
        req,
        cfg,
        spot: req.placement.spot,
        spot_fallback: false,
        gpu_products: products,
    })
    .expect("renders");
    serde_json::to_value(pod).expect("json")
}

#[test]
fn gpu_requests_are_rendered_exactly() {
    let mut req = request("train");
    req.resources = Resources {
        cpu_millis: 8000,
        memory_bytes: 64 << 30,
        gpu: 8,
        gpu_type: Some("H100".into()),
        mig: None,
    };
    req.placement.image = Some("ghcr.io/acme/trainer:2.0".into());
    golden("gpu_h100", &render(&req, &cfg(), &[H100.to_owned()]));
}

#[test]
fn mig_slices_spot_preference_and_overrides_are_rendered_exactly() {
    let mut req = request("infer");
    req.resources = Resources {
        cpu_millis: 1500,
        memory_bytes: 3 << 29,
        gpu: 0,
        gpu_type: Some("A100".into()),
        mig: Some("1g.10gb".into()),
    };
    req.placement.spot = SpotPolicy::Prefer;
    req.placement.pod_override = Some(serde_json::json!({
        "metadata": {"labels": {"team": "search"}, "annotations": {"cost-center": "42"}},
        "spec": {
            "priorityClassName": "batch-high",
            "serviceAccountName": "trainer",
            "containers": [{"name": "base", "env": [{"name": "HF_HOME", "value": "/cache"}],
                            "volumeMounts": [{"name": "cache", "mountPath": "/cache"}]}],
            "volumes": [{"name": "cache", "emptyDir": {}}]
        }
    }));
    let products = [
        "NVIDIA-A100-SXM4-40GB".to_owned(),
        "NVIDIA-A100-SXM4-80GB".to_owned(),
    ];
    golden("mig_spot_override", &render(&req, &cfg(), &products));
}

#[test]
fn the_pod_template_is_the_base_of_every_pod() {
    let template = parse_pod_template(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  labels: {platform: pave}\nspec:\n  serviceAccountName: pave-task\n  tolerations:\n  - {key: dedicated, operator: Equal, value: ml, effect: NoSchedule}\n  containers:\n  - name: base\n    image: ghcr.io/acme/base:1\n    env:\n    - {name: TZ, value: UTC}\n  - name: sidecar\n    image: ghcr.io/acme/proxy:1\n",
    )
    .expect("template");
    let cfg = KubeExecutorConfig {
        pod_template: Some(template),
        ..cfg()
    };
    let mut req = request("extract");
    req.command = CommandLine::Shell {
        script: "echo {{ ds }}".into(),
    };
    req.placement.spot = SpotPolicy::Never;
    req.resources.cpu_millis = 250;
    req.resources.memory_bytes = 512 << 20;
    golden("template_command", &render(&req, &cfg, &[]));
}

#[tokio::test]
async fn rendered_gpu_pods_are_accepted_and_bound_by_the_cluster() {
    let fx = Fx::new(crate::common::config("render-accept")).await;
    let mut req = fx.request("train", 1);
    req.resources.gpu = 2;
    req.resources.gpu_type = Some("h100".into());
    req.resources.memory_bytes = 8 << 30;
    pave_executor::Executor::start(fx.exec.as_ref(), req)
        .await
        .expect("accepted (no 422)");
    let pod = fx
        .cluster
        .wait_for_pod(
            "default",
            &fx.pod_name("train", 1),
            std::time::Duration::from_secs(10),
            |p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some("gpu-0"),
        )
        .await
        .expect("bound to the H100 node");
    let limits = pod.spec.expect("spec").containers[0]
        .resources
        .clone()
        .and_then(|r| r.limits)
        .unwrap_or_default();
    assert_eq!(
        limits.get("nvidia.com/gpu").map(|q| q.0.as_str()),
        Some("2")
    );
}

fn env_of(pod: &k8s_openapi::api::core::v1::Pod, name: &str) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    spec.containers[0]
        .env
        .as_ref()?
        .iter()
        .find(|e| e.name == name)?
        .value
        .clone()
}

#[test]
fn pods_get_the_advertised_execution_api_url_and_the_timeout() {
    let mut req = request("score");
    req.execution_timeout = Some(std::time::Duration::from_millis(1500));
    // Without a configured URL, the scheduler's own one passes through.
    let plain: k8s_openapi::api::core::v1::Pod =
        serde_json::from_value(render(&req, &cfg(), &[])).expect("pod");
    assert_eq!(
        env_of(&plain, "PAVE_API_URL").as_deref(),
        Some("http://pave:8080/execution")
    );
    assert_eq!(
        pave_kube_executor::naming::execution_timeout_of(&plain),
        Some(std::time::Duration::from_millis(1500))
    );
    let cfg = KubeExecutorConfig {
        execution_api_url: Some("http://pave-execution.pave.svc:8793/execution/v1".into()),
        ..cfg()
    };
    let pod: k8s_openapi::api::core::v1::Pod =
        serde_json::from_value(render(&req, &cfg, &[])).expect("pod");
    assert_eq!(
        env_of(&pod, "PAVE_API_URL").as_deref(),
        Some("http://pave-execution.pave.svc:8793/execution/v1")
    );
    assert_eq!(env_of(&pod, "PAVE_TASK_TOKEN").as_deref(), Some("token"));
}

#[tokio::test]
async fn the_executor_creates_pods_with_the_configured_execution_api_url() {
    let mut cfg = crate::common::config("render-api-url");
    cfg.execution_api_url = Some("http://pave-execution.pave.svc:8793/execution/v1".into());
    let fx = Fx::new(cfg).await;
    let mut req = fx.request("score", 1);
    req.env.insert(
        "PAVE_API_URL".into(),
        "http://127.0.0.1:40123/execution/v1".into(),
    );
    crate::common::annotate(&mut req, "run-forever");
    pave_executor::Executor::start(fx.exec.as_ref(), req)
        .await
        .expect("start");
    let pod = fx
        .cluster
        .pod("default", &fx.pod_name("score", 1))
        .expect("created");
    assert_eq!(
        env_of(&pod, "PAVE_API_URL").as_deref(),
        Some("http://pave-execution.pave.svc:8793/execution/v1")
    );
}
