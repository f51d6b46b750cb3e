//! The Pod of one attempt, rendered by a pure function from the pod
//! template, the start request and the task's placement: image, command,
//! env, exact resource requests (`nvidia.com/gpu` and MIG slices with
//! requests equal to limits), the GPU product as a node selector, spot
//! policy, pave's labels, and the task's `pod_override` merged on top.

use crate::config::KubeExecutorConfig;
use crate::merge::merge;
use crate::naming;
use k8s_openapi::api::core::v1::Pod;
use pave_core::{Resources, SpotPolicy};
use pave_executor::StartRequest;
use serde_json::{Map, Value, json};

/// The node label carrying the GPU product (NVIDIA's GPU feature discovery).
pub const GPU_PRODUCT_LABEL: &str = "nvidia.com/gpu.product";
/// The extended resource of whole GPUs.
pub const GPU_RESOURCE: &str = "nvidia.com/gpu";
/// The name of the container that runs the task, when the template has several.
pub const MAIN_CONTAINER: &str = "base";
/// The variable that tells a Python task where the execution API is.
pub const API_URL_ENV: &str = "PAVE_API_URL";

/// What rendering needs besides the request.
#[derive(Clone, Debug)]
pub struct RenderInput<'a> {
    pub req: &'a StartRequest,
    pub cfg: &'a KubeExecutorConfig,
    /// The spot policy to apply (the task's, or `Never` after a fallback).
    pub spot: SpotPolicy,
    /// The task was moved off spot after repeated disruptions.
    pub spot_fallback: bool,
    /// The node GPU products the task's `gpu_type` resolved to; empty means
    /// "use `gpu_type` verbatim".
    pub gpu_products: &'a [String],
}

/// Renders the Pod of an attempt. Errors name the task and field.
pub fn render_pod(input: &RenderInput<'_>) -> Result<Pod, String> {
    let req = input.req;
    let cfg = input.cfg;
    let task = req.key.task_id.as_str();
    let name = naming::pod_name(&cfg.installation, &req.key);
    let mut pod = match &cfg.pod_template {
        Some(t) => serde_json::to_value(t).map_err(|e| format!("pod template: {e}"))?,
        None => json!({}),
    };
    let root = object(&mut pod);
    root.insert("apiVersion".into(), json!("v1"));
    root.insert("kind".into(), json!("Pod"));
    let spec = object(root.entry("spec").or_insert_with(|| json!({})));
    spec.insert("restartPolicy".into(), json!("Never"));
    let containers = spec
        .entry("containers")
        .or_insert_with(|| json!([]))
        .as_array_mut()
        .ok_or("pod template: `spec.containers` is not a list")?;
    let idx = containers
        .iter()
        .position(|c| c.get("name").and_then(Value::as_str) == Some(MAIN_CONTAINER))
        .unwrap_or(0);
    if containers.is_empty() {
        containers.push(json!({ "name": MAIN_CONTAINER }));
    }
    let main = object(&mut containers[idx]);
    main.entry("name").or_insert_with(|| json!(MAIN_CONTAINER));
    let image = req
        .placement
        .image
        .clone()
        .or_else(|| main.get("image").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| cfg.default_image.clone());
    main.insert("image".into(), json!(image));
    main.insert("command".into(), json!(req.command.to_argv()));
    main.remove("args");
    if let Some(cwd) = &req.cwd {
        main.insert("workingDir".into(), json!(cwd.display().to_string()));
    }
    let env = main
        .entry("env")
        .or_insert_with(|| json!([]))
        .as_array_mut()
        .ok_or("pod template: the main container's `env` is not a list")?;
    for (k, v) in &req.env {
        let v = match (&cfg.execution_api_url, k.as_str()) {
            // Pods reach the execution API at the address advertised to
            // them, not the scheduler's loopback.
            (Some(url), API_URL_ENV) => url,
            _ => v,
        };
        env.retain(|e| e.get("name").and_then(Value::as_str) != Some(k));
        env.push(json!({ "name": k, "value": v }));
    }
    let (requests, limits) = resource_lists(&req.resources);
    let res = object(main.entry("resources").or_insert_with(|| json!({})));
    for (field, values) in [("requests", requests), ("limits", limits)] {
        let m = object(res.entry(field).or_insert_with(|| json!({})));
        m.extend(values);
    }
    let needs_gpu = req.resources.gpu > 0 || req.resources.mig.is_some();
    if needs_gpu {
        push_toleration(
            spec,
            json!({"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}),
        );
    }
    if let Some(gpu_type) = &req.resources.gpu_type {
        let products: Vec<String> = if input.gpu_products.is_empty() {
            vec![gpu_type.clone()]
        } else {
            input.gpu_products.to_vec()
        };
        if let [one] = products.as_slice() {
            let sel = object(spec.entry("nodeSelector").or_insert_with(|| json!({})));
            sel.insert(GPU_PRODUCT_LABEL.into(), json!(one));
        } else {
            push_required_term(
                spec,
                json!({"key": GPU_PRODUCT_LABEL, "operator": "In", "values": products}),
            );
        }
    }
    apply_spot(spec, cfg, input.spot);
    if let Some(over) = &req.placement.pod_override {
        if !over.is_object() {
            return Err(format!(
                "task `{task}`, field `pod_override`: must be a mapping with `metadata` and/or `spec`"
            ));
        }
        merge(&mut pod, over);
    }
    // pave's identity wins over the template and the override.
    let root = object(&mut pod);
    let meta = object(root.entry("metadata").or_insert_with(|| json!({})));
    meta.insert("name".into(), json!(name));
    meta.insert("namespace".into(), json!(cfg.namespace));
    meta.remove("generateName");
    let labels = object(meta.entry("labels").or_insert_with(|| json!({})));
    for (k, v) in naming::labels(&cfg.installation, &req.key) {
        labels.insert(k, json!(v));
    }
    let annotations = object(meta.entry("annotations").or_insert_with(|| json!({})));
    for (k, v) in naming::annotations(&req.key) {
        annotations.insert(k, json!(v));
    }
    if input.spot_fallback {
        annotations.insert(naming::SPOT_FALLBACK_ANNOTATION.into(), json!("on-demand"));
    }
    if let Some(limit) = req.execution_timeout {
        annotations.insert(
            naming::EXECUTION_TIMEOUT_ANNOTATION.into(),
            json!(naming::timeout_annotation(limit)),
        );
    }
    serde_json::from_value(pod).map_err(|e| {
        format!(
            "task `{task}`, field `pod_override`: the merged pod is not a valid Pod ({e}); \
             write it as a partial Pod, e.g. {{\"spec\": {{\"containers\": [{{\"name\": \"base\", ...}}]}}}}"
        )
    })
}

/// Requests and limits of the main container: cpu as a request only (a cpu
/// limit throttles), memory and every GPU resource with requests equal to
/// limits (extended resources require it).
pub fn resource_lists(r: &Resources) -> (Map<String, Value>, Map<String, Value>) {
    let mut requests = Map::new();
    let mut limits = Map::new();
    if r.cpu_millis > 0 {
        requests.insert("cpu".into(), json!(cpu_quantity(r.cpu_millis)));
    }
    if r.memory_bytes > 0 {
        let q = memory_quantity(r.memory_bytes);
        requests.insert("memory".into(), json!(q));
        limits.insert("memory".into(), json!(q));
    }
    match &r.mig {
        Some(profile) => {
            let n = r.gpu.max(1).to_string();
            let key = format!("nvidia.com/mig-{profile}");
            requests.insert(key.clone(), json!(n));
            limits.insert(key, json!(n));
        }
        None if r.gpu > 0 => {
            requests.insert(GPU_RESOURCE.into(), json!(r.gpu.to_string()));
            limits.insert(GPU_RESOURCE.into(), json!(r.gpu.to_string()));
        }
        None => {}
    }
    (requests, limits)
}

/// `500m`, `2` for whole cores.
pub fn cpu_quantity(millis: u64) -> String {
    if millis.is_multiple_of(1000) {
        (millis / 1000).to_string()
    } else {
        format!("{millis}m")
    }
}

/// `64Gi`, `512Mi`, `1Ki` or bytes.
pub fn memory_quantity(bytes: u64) -> String {
    for (unit, size) in [
        ("Ti", 1u64 << 40),
        ("Gi", 1 << 30),
        ("Mi", 1 << 20),
        ("Ki", 1 << 10),
    ] {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{}{unit}", bytes / size);
        }
    }
    bytes.to_string()
}

/// Spot policy as scheduling constraints: `never` keeps off nodes labelled
/// spot (a `NotIn` affinity, so clusters without the label still work);
/// `allow` tolerates the spot taint; `prefer` also prefers spot nodes.
fn apply_spot(spec: &mut Map<String, Value>, cfg: &KubeExecutorConfig, spot: SpotPolicy) {
    let s = &cfg.spot;
    match spot {
        SpotPolicy::Never => push_required_term(
            spec,
            json!({"key": s.capacity_label, "operator": "NotIn", "values": [s.spot_value]}),
        ),
        SpotPolicy::Allow | SpotPolicy::Prefer => {
            if let Some(taint) = &s.spot_taint {
                push_toleration(spec, json!({"key": taint, "operator": "Exists"}));
            }
            if spot == SpotPolicy::Prefer {
                let affinity = object(spec.entry("affinity").or_insert_with(|| json!({})));
                let na = object(affinity.entry("nodeAffinity").or_insert_with(|| json!({})));
                let preferred = na
                    .entry("preferredDuringSchedulingIgnoredDuringExecution")
                    .or_insert_with(|| json!([]));
                if let Some(list) = preferred.as_array_mut() {
                    list.push(json!({"weight": 100, "preference": {"matchExpressions": [
                        {"key": s.capacity_label, "operator": "In", "values": [s.spot_value]}
                    ]}}));
                }
            }
        }
    }
}

fn push_toleration(spec: &mut Map<String, Value>, toleration: Value) {
    if let Some(list) = spec
        .entry("tolerations")
        .or_insert_with(|| json!([]))
        .as_array_mut()
        && !list.contains(&toleration)
    {
        list.push(toleration);
    }
}

/// Adds a match expression to every required node-affinity term (one term
/// when there is none), since terms are ORed and expressions ANDed.
fn push_required_term(spec: &mut Map<String, Value>, expr: Value) {
    let affinity = object(spec.entry("affinity").or_insert_with(|| json!({})));
    let na = object(affinity.entry("nodeAffinity").or_insert_with(|| json!({})));
    let required = object(
        na.entry("requiredDuringSchedulingIgnoredDuringExecution")
            .or_insert_with(|| json!({})),
    );
    let terms = required
        .entry("nodeSelectorTerms")
        .or_insert_with(|| json!([]));
    let Some(terms) = terms.as_array_mut() else {
        return;
    };
    if terms.is_empty() {
        terms.push(json!({"matchExpressions": []}));
    }
    for term in terms {
        let exprs = object(term)
            .entry("matchExpressions")
            .or_insert_with(|| json!([]));
        if let Some(list) = exprs.as_array_mut() {
            list.push(expr.clone());
        }
    }
}

/// The object in `v`, making it one if it is not.
fn object(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    match v {
        Value::Object(m) => m,
        _ => unreachable!("just made an object"),
    }
}
