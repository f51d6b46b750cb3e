//! The manifests under `deploy/` against the Kubernetes API's own types
//! (k8s-openapi): every document of every file the kustomization lists
//! parses as its kind and survives a round trip unchanged, so a misspelled
//! or misplaced field (which the API server would drop or refuse) fails
//! here. Plus what pave needs of them: the RBAC rules the executor uses, the
//! pod template, the Deployment wired to both, and the execution API's
//! Service that task pods reach it through.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, PersistentVolumeClaim, Pod, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text)
        .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()));
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

/// `doc` as a `T`, serialized back: equal to `doc` when every field is one
/// the API knows, in the right place and of the right type.
fn round_trip<T: DeserializeOwned + Serialize>(doc: &Value, what: &str) -> T {
    let typed: T = serde_json::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("{what}: not a valid object of its kind: {e}"));
    let back = serde_json::to_value(&typed).expect("serialize");
    assert_eq!(
        &back, doc,
        "{what}: fields the API does not know were dropped (a typo or a misplaced field?)"
    );
    typed
}

fn check(doc: &Value, what: &str) {
    let kind = doc["kind"].as_str().unwrap_or_default();
    let api = doc["apiVersion"].as_str().unwrap_or_default();
    match (api, kind) {
        ("v1", "Namespace") => drop(round_trip::<Namespace>(doc, what)),
        ("v1", "ServiceAccount") => drop(round_trip::<ServiceAccount>(doc, what)),
        ("v1", "ConfigMap") => drop(round_trip::<ConfigMap>(doc, what)),
        ("v1", "Secret") => drop(round_trip::<Secret>(doc, what)),
        ("v1", "Service") => drop(round_trip::<Service>(doc, what)),
        ("v1", "PersistentVolumeClaim") => drop(round_trip::<PersistentVolumeClaim>(doc, what)),
        ("apps/v1", "Deployment") => drop(round_trip::<Deployment>(doc, what)),
        ("rbac.authorization.k8s.io/v1", "Role") => drop(round_trip::<Role>(doc, what)),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => {
            drop(round_trip::<RoleBinding>(doc, what))
        }
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => {
            drop(round_trip::<ClusterRole>(doc, what))
        }
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
            drop(round_trip::<ClusterRoleBinding>(doc, what))
        }
        _ => panic!("{what}: {api} {kind} is not a kind this test knows; add it"),
    }
}

/// Every listed resource, as (file, document).
fn listed() -> Vec<(String, Value)> {
    let kustomization = documents(&deploy_dir().join("kustomization.yaml"));
    let resources = kustomization[0]["resources"]
        .as_array()
        .expect("kustomization.yaml lists resources");
    let mut out = Vec::new();
    for r in resources {
        let file = r.as_str().expect("a resource is a file name");
        let path = deploy_dir().join(file);
        assert!(
            path.is_file(),
            "kustomization.yaml lists {file}, which is missing"
        );
        for doc in documents(&path) {
            out.push((file.to_owned(), doc));
        }
    }
    out
}

fn find<'a>(docs: &'a [(String, Value)], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .map(|(_, d)| d)
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in deploy/"))
}

#[test]
fn every_listed_manifest_is_a_valid_object_of_its_kind() {
    let docs = listed();
    assert!(docs.len() >= 10, "{} documents", docs.len());
    for (file, doc) in &docs {
        let what = format!("deploy/{file}: {} {}", doc["kind"], doc["metadata"]["name"]);
        check(doc, &what);
    }
    // Every YAML file in deploy/ (not examples/) is listed.
    for entry in std::fs::read_dir(deploy_dir()).expect("deploy/") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        if name.ends_with(".yaml") && name != "kustomization.yaml" {
            assert!(
                docs.iter().any(|(f, _)| *f == name),
                "deploy/{name} is not listed in kustomization.yaml"
            );
        }
    }
}

#[test]
fn the_executor_may_do_what_it_does_and_the_deployment_is_wired() {
    let docs = listed();
    let role: Role = round_trip(find(&docs, "Role", "pave-executor"), "Role");
    let allowed = |resource: &str, verb: &str| {
        role.rules.iter().flatten().any(|r| {
            r.resources.iter().flatten().any(|x| x == resource) && r.verbs.iter().any(|v| v == verb)
        })
    };
    for verb in ["create", "get", "list", "watch", "delete"] {
        assert!(allowed("pods", verb), "the executor needs pods/{verb}");
    }
    assert!(allowed("pods/log", "get"), "the executor streams pod logs");
    assert!(allowed("pods/eviction", "create"), "the executor evicts");
    let nodes: ClusterRole = round_trip(find(&docs, "ClusterRole", "pave-node-reader"), "nodes");
    assert!(nodes.rules.iter().flatten().any(|r| {
        r.resources.iter().flatten().any(|x| x == "nodes") && r.verbs.iter().any(|v| v == "list")
    }));

    // The pod template is a Pod whose container `base` runs the task.
    let cm: ConfigMap = round_trip(find(&docs, "ConfigMap", "pave-pod-template"), "ConfigMap");
    let text = cm
        .data
        .as_ref()
        .and_then(|d| d.get("pod-template.yaml"))
        .expect("the ConfigMap has pod-template.yaml");
    let pod_doc: Value = serde_saphyr::from_str(text).expect("the pod template is YAML");
    let pod: Pod = round_trip(&pod_doc, "the pod template");
    let spec = pod.spec.expect("a pod spec");
    assert!(spec.containers.iter().any(|c| c.name == "base"));
    assert_eq!(spec.restart_policy.as_deref(), Some("Never"));

    // The Deployment runs one pave with the executor's identity, mounts the
    // template where it points PAVE's --pod-template, and keeps its home.
    let dep: Deployment = round_trip(find(&docs, "Deployment", "pave"), "Deployment");
    let dspec = dep.spec.expect("spec");
    assert_eq!(dspec.replicas, Some(1), "SQLite has one writer");
    let pod_spec = dspec.template.spec.expect("pod spec");
    assert_eq!(pod_spec.service_account_name.as_deref(), Some("pave"));
    let c = &pod_spec.containers[0];
    let args = c.args.clone().unwrap_or_default();
    assert!(
        args.iter().any(|a| a == "--executor=kubernetes"),
        "{args:?}"
    );
    let template_arg = args
        .iter()
        .find_map(|a| a.strip_prefix("--pod-template="))
        .expect("--pod-template");
    let mounts = c.volume_mounts.clone().unwrap_or_default();
    assert!(
        mounts
            .iter()
            .any(|m| template_arg.starts_with(&m.mount_path)),
        "{template_arg} is not under a mount: {mounts:?}"
    );
    let sa = find(&docs, "ServiceAccount", "pave");
    assert_eq!(sa["metadata"]["namespace"], "pave");

    // Task pods reach the execution API through the `pave-execution`
    // Service: pave listens off loopback on the port the Service targets
    // and advertises the Service's address to pods.
    let flag = |name: &str| {
        args.iter()
            .find_map(|a| a.strip_prefix(name))
            .unwrap_or_else(|| panic!("{name} in {args:?}"))
            .to_owned()
    };
    let listen = flag("--execution-api-listen=");
    let url = flag("--execution-api-url=");
    let port = c
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some("execution"))
        .expect("a container port named execution")
        .container_port;
    assert_eq!(listen, format!("0.0.0.0:{port}"));
    let svc: Service = round_trip(find(&docs, "Service", "pave-execution"), "Service");
    let svc_port = svc
        .spec
        .and_then(|s| s.ports)
        .and_then(|p| p.into_iter().next())
        .expect("a port");
    assert_eq!(
        svc_port.target_port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("execution".into()))
    );
    assert_eq!(
        url,
        format!(
            "http://pave-execution.pave.svc:{}/execution/v1",
            svc_port.port
        )
    );
}

#[test]
fn the_example_gpu_node_pool_matches_the_simulator_and_the_spot_label() {
    let docs = documents(&deploy_dir().join("examples/gpu-nodepool.yaml"));
    let pool = &docs[0];
    assert_eq!(pool["kind"], "NodePool");
    assert_eq!(
        pool["spec"]["template"]["spec"]["taints"][0]["key"],
        "nvidia.com/gpu"
    );
    let cm: ConfigMap = round_trip(&docs[1], "simulated pool");
    let nodes = cm
        .data
        .as_ref()
        .and_then(|d| d.get("nodes.yaml"))
        .expect("nodes.yaml");
    let parsed = pave_kube_sim::parse_yaml(nodes).expect("the simulator reads the node list");
    let total: u32 = parsed.iter().map(|n| n.count.unwrap_or(1)).sum();
    assert_eq!(total, 3, "{parsed:?}");
    assert!(
        parsed
            .iter()
            .any(|n| n.capacity == pave_kube_sim::CapacityType::Spot),
        "{parsed:?}"
    );
    let product = &pool["spec"]["template"]["metadata"]["labels"]["nvidia.com/gpu.product"];
    assert!(
        parsed
            .iter()
            .all(|n| n.gpu_product.as_deref() == product.as_str()),
        "the simulated nodes carry the pool's GPU product {product}"
    );
}
