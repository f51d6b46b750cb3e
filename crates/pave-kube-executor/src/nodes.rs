//! What the cluster's nodes can hold: totals for the scheduler's admission,
//! and the early check that refuses a request no node could ever satisfy
//! (naming the task and field) instead of leaving a pod pending forever.

use crate::render::GPU_PRODUCT_LABEL;
use k8s_openapi::api::core::v1::Node;
use pave_core::Resources;
use std::collections::{BTreeMap, BTreeSet};

/// One node's allocatable resources.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeInfo {
    pub name: String,
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub gpus: u64,
    pub product: Option<String>,
    /// MIG slices by profile (`1g.10gb`).
    pub mig: BTreeMap<String, u64>,
}

/// Reads a node's allocatable resources and GPU product.
pub fn node_info(node: &Node) -> NodeInfo {
    let alloc = node
        .status
        .as_ref()
        .and_then(|s| s.allocatable.clone())
        .unwrap_or_default();
    let get = |k: &str| alloc.get(k).map(|q| q.0.as_str());
    let mut mig = BTreeMap::new();
    for (k, q) in &alloc {
        if let Some(profile) = k.strip_prefix("nvidia.com/mig-") {
            mig.insert(
                profile.to_owned(),
                parse_quantity(&q.0).unwrap_or(0.0) as u64,
            );
        }
    }
    NodeInfo {
        name: node.metadata.name.clone().unwrap_or_default(),
        cpu_millis: get("cpu")
            .and_then(parse_quantity)
            .map_or(0, |v| (v * 1000.0).round() as u64),
        memory_bytes: get("memory")
            .and_then(parse_quantity)
            .map_or(0, |v| v as u64),
        gpus: get("nvidia.com/gpu")
            .and_then(parse_quantity)
            .map_or(0, |v| v as u64),
        product: node
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(GPU_PRODUCT_LABEL).cloned()),
        mig,
    }
}

/// A Kubernetes quantity as a number (`7500m` = 7.5, `2Gi` = 2^31).
pub fn parse_quantity(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        s if s.starts_with(['e', 'E']) => 10f64.powi(s[1..].parse().ok()?),
        _ => return None,
    };
    Some(n * mult)
}

/// Checks that some node could hold the request; on success, the node GPU
/// products the task's `gpu_type` stands for (`H100` matches
/// `NVIDIA-H100-80GB-HBM3`). With no nodes known, everything passes.
pub fn check_fit(task: &str, r: &Resources, nodes: &[NodeInfo]) -> Result<Vec<String>, String> {
    if nodes.is_empty() {
        return Ok(Vec::new());
    }
    let mut candidates: Vec<&NodeInfo> = nodes.iter().collect();
    let mut products = Vec::new();
    if let Some(wanted) = &r.gpu_type {
        let all: BTreeSet<&str> = nodes.iter().filter_map(|n| n.product.as_deref()).collect();
        let w = wanted.to_lowercase();
        products = all
            .iter()
            .filter(|p| **p == wanted.as_str() || p.to_lowercase().contains(&w))
            .map(|p| (*p).to_owned())
            .collect();
        if products.is_empty() {
            return Err(format!(
                "asks for GPU type `{wanted}` (task `{task}`, field `resources.gpu_type`), but no node \
                 in the cluster has it (GPU types there: {})",
                list(all.iter().copied())
            ));
        }
        candidates.retain(|n| n.product.as_ref().is_some_and(|p| products.contains(p)));
    }
    let of_type = r
        .gpu_type
        .as_ref()
        .map(|t| format!(" of type {t}"))
        .unwrap_or_default();
    if let Some(profile) = &r.mig {
        let n = u64::from(r.gpu.max(1));
        let best = candidates
            .iter()
            .map(|c| c.mig.get(profile).copied().unwrap_or(0))
            .max()
            .unwrap_or(0);
        if best < n {
            let offered: BTreeSet<&str> = nodes
                .iter()
                .flat_map(|n| n.mig.keys().map(String::as_str))
                .collect();
            return Err(format!(
                "asks for {n} nvidia.com/mig-{profile}{of_type} (task `{task}`, field `resources.mig`), \
                 but no node in the cluster offers that many (MIG profiles there: {})",
                list(offered.into_iter())
            ));
        }
    } else if r.gpu > 0 {
        let best = candidates.iter().map(|c| c.gpus).max().unwrap_or(0);
        if best < u64::from(r.gpu) {
            return Err(format!(
                "asks for {} nvidia.com/gpu{of_type} (task `{task}`, field `resources.gpu`), but no node \
                 in the cluster has more than {best}",
                r.gpu
            ));
        }
    }
    let best_cpu = candidates.iter().map(|c| c.cpu_millis).max().unwrap_or(0);
    if r.cpu_millis > best_cpu {
        return Err(format!(
            "asks for {} cpu (task `{task}`, field `resources.cpu`), but no node in the cluster has \
             more than {} allocatable",
            crate::render::cpu_quantity(r.cpu_millis),
            crate::render::cpu_quantity(best_cpu)
        ));
    }
    let best_mem = candidates.iter().map(|c| c.memory_bytes).max().unwrap_or(0);
    if r.memory_bytes > best_mem {
        return Err(format!(
            "asks for {} memory (task `{task}`, field `resources.memory`), but no node in the cluster \
             has more than {} allocatable",
            crate::render::memory_quantity(r.memory_bytes),
            crate::render::memory_quantity(best_mem)
        ));
    }
    Ok(products)
}

fn list<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let v: Vec<&str> = items.collect();
    if v.is_empty() {
        "none".to_owned()
    } else {
        v.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu_node(name: &str, gpus: u64, product: &str) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            cpu_millis: 32_000,
            memory_bytes: 256 << 30,
            gpus,
            product: Some(product.into()),
            mig: BTreeMap::new(),
        }
    }

    #[test]
    fn quantities_parse() {
        assert_eq!(parse_quantity("7500m"), Some(7.5));
        assert_eq!(parse_quantity("2Gi"), Some(2.0 * 1024.0 * 1024.0 * 1024.0));
        assert_eq!(parse_quantity("1e3"), Some(1000.0));
        assert_eq!(parse_quantity("12x"), None);
    }

    #[test]
    fn impossible_gpu_requests_name_task_and_field() {
        let nodes = [
            gpu_node("a", 4, "NVIDIA-H100-80GB-HBM3"),
            gpu_node("b", 8, "Tesla-T4"),
        ];
        let r = Resources {
            gpu: 8,
            gpu_type: Some("H100".into()),
            ..Resources::default()
        };
        let err = check_fit("train", &r, &nodes).expect_err("too many");
        assert!(
            err.contains("8 nvidia.com/gpu of type H100")
                && err.contains("`train`")
                && err.contains("resources.gpu")
                && err.contains("more than 4"),
            "{err}"
        );
        let ok = Resources {
            gpu: 2,
            gpu_type: Some("h100".into()),
            ..Resources::default()
        };
        assert_eq!(
            check_fit("train", &ok, &nodes),
            Ok(vec!["NVIDIA-H100-80GB-HBM3".to_owned()])
        );
        let unknown = Resources {
            gpu: 1,
            gpu_type: Some("B200".into()),
            ..Resources::default()
        };
        let err = check_fit("train", &unknown, &nodes).expect_err("no such type");
        assert!(
            err.contains("resources.gpu_type") && err.contains("Tesla-T4"),
            "{err}"
        );
        let mig = Resources {
            mig: Some("1g.10gb".into()),
            ..Resources::default()
        };
        let err = check_fit("train", &mig, &nodes).expect_err("no MIG");
        assert!(err.contains("resources.mig"), "{err}");
        assert_eq!(check_fit("t", &r, &[]), Ok(vec![]));
    }
}
