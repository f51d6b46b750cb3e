//! Node descriptions (`NodeSpec`) and the node files they come from: YAML,
//! a generic CSV, and the Alibaba GPU cluster trace
//! (`openb_node_list_gpu_node.csv`). See docs/kube-sim.md for the formats.

use crate::error::SimError;
use k8s_openapi::api::core::v1::{
    Node, NodeAddress, NodeCondition, NodeSpec as K8sNodeSpec, NodeStatus, NodeSystemInfo, Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// The label naming a node's GPU product (as NVIDIA's GPU feature discovery sets it).
pub const GPU_PRODUCT_LABEL: &str = "nvidia.com/gpu.product";
/// The label saying whether a node is spot or on-demand capacity (pave's own).
pub const CAPACITY_TYPE_LABEL: &str = "pave.dev/capacity-type";
/// Karpenter's capacity-type label, set to the same value.
pub const KARPENTER_CAPACITY_LABEL: &str = "karpenter.sh/capacity-type";
/// GKE's spot label, set to `"true"` on spot nodes only.
pub const GKE_SPOT_LABEL: &str = "cloud.google.com/gke-spot";

/// Spot (reclaimable) or on-demand capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum CapacityType {
    /// Regular capacity.
    #[default]
    #[serde(rename = "on-demand", alias = "on_demand", alias = "ondemand")]
    OnDemand,
    /// Spot / preemptible capacity: may be reclaimed.
    #[serde(rename = "spot")]
    Spot,
}

impl CapacityType {
    fn as_str(self) -> &'static str {
        match self {
            CapacityType::OnDemand => "on-demand",
            CapacityType::Spot => "spot",
        }
    }
}

/// A taint: `key[=value]:Effect` in files, or a mapping.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum TaintSpec {
    /// `nvidia.com/gpu=present:NoSchedule`.
    Short(String),
    /// `{key, value, effect}`.
    Full {
        /// The taint key.
        key: String,
        /// The taint value (may be empty).
        #[serde(default)]
        value: String,
        /// NoSchedule, PreferNoSchedule or NoExecute.
        effect: String,
    },
}

impl TaintSpec {
    fn to_taint(&self) -> Result<Taint, String> {
        let (key, value, effect) = match self {
            TaintSpec::Full { key, value, effect } => (key.clone(), value.clone(), effect.clone()),
            TaintSpec::Short(s) => {
                let (kv, effect) = s
                    .rsplit_once(':')
                    .ok_or_else(|| format!("taint {s:?}: expected key[=value]:Effect"))?;
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (k.to_string(), v.to_string(), effect.to_string())
            }
        };
        if !matches!(
            effect.as_str(),
            "NoSchedule" | "PreferNoSchedule" | "NoExecute"
        ) {
            return Err(format!(
                "taint {key:?}: effect {effect:?} is not one of NoSchedule, PreferNoSchedule, NoExecute"
            ));
        }
        Ok(Taint {
            key,
            value: (!value.is_empty()).then_some(value),
            effect,
            time_added: None,
        })
    }
}

fn default_cpu() -> String {
    "8".into()
}
fn default_memory() -> String {
    "32Gi".into()
}
fn default_pods() -> u32 {
    110
}

/// One node (or `count` identical nodes) of a simulated cluster.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// The node name; with `count`, the names are `<name>-0`, `<name>-1`, ...
    pub name: String,
    /// Allocatable CPU as a quantity (`32`, `7500m`).
    #[serde(default = "default_cpu")]
    pub cpu: String,
    /// Allocatable memory as a quantity (`256Gi`).
    #[serde(default = "default_memory")]
    pub memory: String,
    /// Whole GPUs, as `nvidia.com/gpu`.
    #[serde(default)]
    pub gpus: u32,
    /// GPU product, as the `nvidia.com/gpu.product` label (`NVIDIA-A100-SXM4-80GB`).
    #[serde(default)]
    pub gpu_product: Option<String>,
    /// MIG devices by profile, as `nvidia.com/mig-<profile>` (`1g.10gb: 7`).
    #[serde(default)]
    pub mig: BTreeMap<String, u32>,
    /// Spot or on-demand.
    #[serde(default)]
    pub capacity: CapacityType,
    /// Extra labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Taints.
    #[serde(default)]
    pub taints: Vec<TaintSpec>,
    /// Other allocatable resources (`example.com/fpga: "2"`).
    #[serde(default)]
    pub resources: BTreeMap<String, String>,
    /// Most pods on the node.
    #[serde(default = "default_pods")]
    pub pods: u32,
    /// How many identical nodes this entry stands for.
    #[serde(default)]
    pub count: Option<u32>,
}

impl NodeSpec {
    /// A CPU-only on-demand node.
    pub fn new(name: impl Into<String>, cpu: impl Into<String>, memory: impl Into<String>) -> Self {
        NodeSpec {
            name: name.into(),
            cpu: cpu.into(),
            memory: memory.into(),
            gpus: 0,
            gpu_product: None,
            mig: BTreeMap::new(),
            capacity: CapacityType::OnDemand,
            labels: BTreeMap::new(),
            taints: Vec::new(),
            resources: BTreeMap::new(),
            pods: default_pods(),
            count: None,
        }
    }

    /// Adds `n` GPUs of `product`.
    pub fn gpus(mut self, n: u32, product: impl Into<String>) -> Self {
        self.gpus = n;
        self.gpu_product = Some(product.into());
        self
    }

    /// Adds `n` MIG devices of `profile` (`1g.10gb`).
    pub fn mig(mut self, profile: impl Into<String>, n: u32) -> Self {
        self.mig.insert(profile.into(), n);
        self
    }

    /// Makes it a spot node.
    pub fn spot(mut self) -> Self {
        self.capacity = CapacityType::Spot;
        self
    }

    /// Adds a label.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Adds a taint (`key=value:NoSchedule`).
    pub fn taint(mut self, taint: impl Into<String>) -> Self {
        self.taints.push(TaintSpec::Short(taint.into()));
        self
    }

    /// Checks quantities and taints, naming the node and field.
    pub fn validate(&self) -> Result<(), String> {
        for (field, q) in [("cpu", &self.cpu), ("memory", &self.memory)] {
            if crate::quantity::parse_milli(q).is_none() {
                return Err(format!(
                    "node {}: {field} {q:?} is not a quantity",
                    self.name
                ));
            }
        }
        for (k, q) in &self.resources {
            if crate::quantity::parse_milli(q).is_none() {
                return Err(format!(
                    "node {}: resource {k} {q:?} is not a quantity",
                    self.name
                ));
            }
        }
        for t in &self.taints {
            t.to_taint()
                .map_err(|e| format!("node {}: {e}", self.name))?;
        }
        Ok(())
    }

    /// The Node objects this entry stands for.
    pub(crate) fn expand(&self) -> Vec<Node> {
        match self.count {
            None => vec![self.to_node(&self.name)],
            Some(n) => (0..n)
                .map(|i| self.to_node(&format!("{}-{i}", self.name)))
                .collect(),
        }
    }

    fn to_node(&self, name: &str) -> Node {
        let mut labels = BTreeMap::from([
            ("kubernetes.io/hostname".to_string(), name.to_string()),
            ("kubernetes.io/os".to_string(), "linux".to_string()),
            ("kubernetes.io/arch".to_string(), "amd64".to_string()),
            (
                CAPACITY_TYPE_LABEL.to_string(),
                self.capacity.as_str().to_string(),
            ),
            (
                KARPENTER_CAPACITY_LABEL.to_string(),
                self.capacity.as_str().to_string(),
            ),
        ]);
        if self.capacity == CapacityType::Spot {
            labels.insert(GKE_SPOT_LABEL.to_string(), "true".to_string());
        }
        let mut resources: BTreeMap<String, Quantity> = BTreeMap::from([
            ("cpu".to_string(), Quantity(self.cpu.clone())),
            ("memory".to_string(), Quantity(self.memory.clone())),
            ("pods".to_string(), Quantity(self.pods.to_string())),
            (
                "ephemeral-storage".to_string(),
                Quantity("100Gi".to_string()),
            ),
        ]);
        if self.gpus > 0 {
            resources.insert("nvidia.com/gpu".into(), Quantity(self.gpus.to_string()));
            labels.insert("nvidia.com/gpu.count".into(), self.gpus.to_string());
        }
        if let Some(p) = &self.gpu_product {
            labels.insert(GPU_PRODUCT_LABEL.to_string(), p.clone());
        }
        if !self.mig.is_empty() {
            labels.insert("nvidia.com/mig.strategy".into(), "mixed".into());
        }
        for (profile, n) in &self.mig {
            resources.insert(format!("nvidia.com/mig-{profile}"), Quantity(n.to_string()));
        }
        for (k, v) in &self.resources {
            resources.insert(k.clone(), Quantity(v.clone()));
        }
        labels.extend(self.labels.clone());
        let taints: Vec<Taint> = self
            .taints
            .iter()
            .filter_map(|t| t.to_taint().ok())
            .collect();
        Node {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                labels: Some(labels),
                ..Default::default()
            },
            spec: Some(K8sNodeSpec {
                taints: (!taints.is_empty()).then_some(taints),
                provider_id: Some(format!("pave-sim://{name}")),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                capacity: Some(resources.clone()),
                allocatable: Some(resources),
                conditions: Some(ready_conditions()),
                addresses: Some(vec![
                    NodeAddress {
                        type_: "InternalIP".into(),
                        address: "127.0.0.1".into(),
                    },
                    NodeAddress {
                        type_: "Hostname".into(),
                        address: name.to_string(),
                    },
                ]),
                node_info: Some(NodeSystemInfo {
                    architecture: "amd64".into(),
                    operating_system: "linux".into(),
                    os_image: "pave kube-sim".into(),
                    kernel_version: "sim".into(),
                    kubelet_version: crate::api::discovery::GIT_VERSION.into(),
                    kube_proxy_version: crate::api::discovery::GIT_VERSION.into(),
                    container_runtime_version: "pave-sim://0.1".into(),
                    machine_id: name.to_string(),
                    system_uuid: name.to_string(),
                    boot_id: name.to_string(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }
    }
}

/// The conditions of a healthy node.
pub(crate) fn ready_conditions() -> Vec<NodeCondition> {
    let now = crate::lifecycle::now();
    let cond = |t: &str, s: &str, reason: &str, message: &str| NodeCondition {
        type_: t.into(),
        status: s.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_heartbeat_time: Some(now.clone()),
        last_transition_time: Some(now.clone()),
    };
    vec![
        cond(
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
        ),
        cond(
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure",
        ),
        cond(
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
        ),
        cond(
            "Ready",
            "True",
            "KubeletReady",
            "kubelet is posting ready status",
        ),
    ]
}

/// Whether a node's Ready condition is True.
pub(crate) fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

#[derive(Deserialize)]
#[serde(untagged)]
enum YamlFile {
    Wrapped { nodes: Vec<NodeSpec> },
    List(Vec<NodeSpec>),
}

/// Reads nodes from a `.yaml`/`.yml`/`.json` or `.csv` file.
pub fn load_node_file(path: &Path) -> Result<Vec<NodeSpec>, SimError> {
    let text = std::fs::read_to_string(path).map_err(|cause| SimError::Io {
        context: format!("cannot read node file {}", path.display()),
        cause,
    })?;
    let is_csv = path.extension().and_then(|e| e.to_str()) == Some("csv");
    let parsed = if is_csv {
        parse_csv(&text)
    } else {
        parse_yaml(&text)
    };
    parsed.map_err(|message| SimError::NodeFile {
        path: path.display().to_string(),
        message,
    })
}

/// Parses the YAML form: `nodes: [...]` or a bare list.
pub fn parse_yaml(text: &str) -> Result<Vec<NodeSpec>, String> {
    let file: YamlFile = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
    let nodes = match file {
        YamlFile::Wrapped { nodes } | YamlFile::List(nodes) => nodes,
    };
    check_all(nodes)
}

fn check_all(nodes: Vec<NodeSpec>) -> Result<Vec<NodeSpec>, String> {
    let mut seen = std::collections::BTreeSet::new();
    for n in &nodes {
        n.validate()?;
        if !seen.insert(n.name.clone()) {
            return Err(format!("node {} is listed twice", n.name));
        }
    }
    Ok(nodes)
}

/// Parses a CSV node list: the Alibaba trace (`sn,cpu_milli,memory_mib,gpu,model`)
/// or the generic form (`name,cpu,memory,gpus,gpu_product,mig,capacity,labels,taints,count`,
/// any subset and order after `name`; lists inside a cell separated by `;`).
pub fn parse_csv(text: &str) -> Result<Vec<NodeSpec>, String> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let (_, header) = lines.next().ok_or("the file is empty")?;
    let cols: Vec<String> = header.split(',').map(|c| c.trim().to_string()).collect();
    let alibaba = ["sn", "cpu_milli", "memory_mib", "gpu", "model"];
    let is_alibaba = alibaba.iter().all(|c| cols.iter().any(|x| x == c));
    let known = [
        "name",
        "cpu",
        "memory",
        "gpus",
        "gpu_product",
        "mig",
        "capacity",
        "labels",
        "taints",
        "count",
    ];
    if !is_alibaba {
        if let Some(bad) = cols.iter().find(|c| !known.contains(&c.as_str())) {
            return Err(format!(
                "line 1: unknown column {bad:?}; expected the Alibaba columns {alibaba:?} or some of {known:?}"
            ));
        }
        if !cols.iter().any(|c| c == "name") {
            return Err("line 1: a `name` column is required".into());
        }
    }
    let mut nodes = Vec::new();
    for (i, line) in lines {
        let lineno = i + 1;
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        if cells.len() != cols.len() {
            return Err(format!(
                "line {lineno}: {} cells, the header has {}",
                cells.len(),
                cols.len()
            ));
        }
        let row: BTreeMap<&str, &str> = cols.iter().map(String::as_str).zip(cells).collect();
        let node = if is_alibaba {
            alibaba_row(&row)
        } else {
            generic_row(&row)
        }
        .map_err(|e| format!("line {lineno}: {e}"))?;
        nodes.push(node);
    }
    check_all(nodes)
}

fn cell<'a>(row: &BTreeMap<&str, &'a str>, k: &str) -> &'a str {
    row.get(k).copied().unwrap_or("")
}

fn num<T: std::str::FromStr>(row: &BTreeMap<&str, &str>, k: &str) -> Result<Option<T>, String> {
    let v = cell(row, k);
    if v.is_empty() {
        return Ok(None);
    }
    v.parse()
        .map(Some)
        .map_err(|_| format!("{k} {v:?} is not a whole number"))
}

/// The Alibaba trace: `cpu_milli` → cpu in millicores, `memory_mib` → memory
/// in Mi, `gpu` → `nvidia.com/gpu`, `model` → `nvidia.com/gpu.product`.
fn alibaba_row(row: &BTreeMap<&str, &str>) -> Result<NodeSpec, String> {
    let name = cell(row, "sn");
    if name.is_empty() {
        return Err("empty sn".into());
    }
    let cpu: u64 = num(row, "cpu_milli")?.ok_or("empty cpu_milli")?;
    let mem: u64 = num(row, "memory_mib")?.ok_or("empty memory_mib")?;
    let gpus: u32 = num(row, "gpu")?.unwrap_or(0);
    let model = cell(row, "model");
    let mut spec = NodeSpec::new(name, format!("{cpu}m"), format!("{mem}Mi"));
    spec.gpus = gpus;
    if gpus > 0 && !model.is_empty() && model != "nan" {
        spec.gpu_product = Some(model.to_string());
    }
    spec.labels
        .insert("pave.dev/source".into(), "alibaba-openb".into());
    Ok(spec)
}

fn generic_row(row: &BTreeMap<&str, &str>) -> Result<NodeSpec, String> {
    let name = cell(row, "name");
    if name.is_empty() {
        return Err("empty name".into());
    }
    let or = |k: &str, d: String| {
        let v = cell(row, k);
        if v.is_empty() { d } else { v.to_string() }
    };
    let mut spec = NodeSpec::new(
        name,
        or("cpu", default_cpu()),
        or("memory", default_memory()),
    );
    spec.gpus = num(row, "gpus")?.unwrap_or(0);
    let product = cell(row, "gpu_product");
    spec.gpu_product = (!product.is_empty()).then(|| product.to_string());
    spec.count = num(row, "count")?;
    spec.capacity = match cell(row, "capacity") {
        "" | "on-demand" | "ondemand" => CapacityType::OnDemand,
        "spot" => CapacityType::Spot,
        other => return Err(format!("capacity {other:?}: expected spot or on-demand")),
    };
    for item in cell(row, "labels").split(';').filter(|s| !s.is_empty()) {
        let (k, v) = item
            .split_once('=')
            .ok_or(format!("label {item:?}: expected key=value"))?;
        spec.labels.insert(k.trim().into(), v.trim().into());
    }
    for item in cell(row, "mig").split(';').filter(|s| !s.is_empty()) {
        let (k, v) = item
            .split_once('=')
            .ok_or(format!("mig {item:?}: expected profile=count"))?;
        let n = v
            .trim()
            .parse()
            .map_err(|_| format!("mig {item:?}: count is not a whole number"))?;
        spec.mig.insert(k.trim().into(), n);
    }
    for item in cell(row, "taints").split(';').filter(|s| !s.is_empty()) {
        spec.taints.push(TaintSpec::Short(item.trim().into()));
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_and_csv_forms() {
        let yaml = "nodes:\n  - name: a\n    cpu: '4'\n    memory: 16Gi\n    gpus: 2\n    gpu_product: H100\n    capacity: spot\n    taints: ['nvidia.com/gpu=present:NoSchedule']\n    mig: {1g.10gb: 7}\n";
        let nodes = parse_yaml(yaml).expect("yaml");
        assert_eq!(nodes[0].gpus, 2);
        assert_eq!(nodes[0].capacity, CapacityType::Spot);
        assert_eq!(nodes[0].mig.get("1g.10gb"), Some(&7));
        let csv = "name,cpu,memory,gpus,gpu_product,capacity,labels,taints,mig\nn1,8,32Gi,1,T4,spot,zone=a;team=ml,gpu=yes:NoSchedule,1g.5gb=2\n";
        let nodes = parse_csv(csv).expect("csv");
        assert_eq!(nodes[0].labels.get("zone").map(String::as_str), Some("a"));
        let alibaba = "sn,cpu_milli,memory_mib,gpu,model\nopenb-node-0000,64000,262144,2,P100\nopenb-node-0001,32000,262144,0,\n";
        let nodes = parse_csv(alibaba).expect("alibaba");
        assert_eq!(nodes[0].cpu, "64000m");
        assert_eq!(nodes[0].gpu_product.as_deref(), Some("P100"));
        assert_eq!(nodes[1].gpu_product, None);
        assert!(parse_csv("name,colour\nx,red\n").is_err());
        assert!(parse_yaml("nodes:\n  - name: a\n    cpu: lots\n").is_err());
    }
}

#[cfg(test)]
mod file_tests {
    use super::*;

    #[test]
    fn example_and_alibaba_files_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let nodes = load_node_file(&dir.join("examples/nodes.yaml")).expect("example nodes");
        let expanded: usize = nodes.iter().map(|n| n.expand().len()).sum();
        assert_eq!(expanded, 6);
        let alibaba =
            dir.join("../../../shared/data/alibaba-gpu-v2023/openb_node_list_gpu_node.csv");
        if alibaba.exists() {
            let nodes = load_node_file(&alibaba).expect("alibaba trace");
            assert_eq!(nodes.len(), 1213);
            assert!(nodes.iter().all(|n| n.gpus > 0 && n.gpu_product.is_some()));
        }
    }
}
