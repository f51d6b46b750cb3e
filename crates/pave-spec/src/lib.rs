//! pave-spec: the versioned wire form of a DAG — JSON spec v1, and the same
//! schema in YAML for DAG files of plain commands — read, validated and
//! converted into `pave_core`'s model, and written back out.
//!
//! The flow is: text -> an order-preserving document tree (`node`) ->
//! field-by-field readers that report every problem with its place
//! (`read`, `wire`, `document`) -> defaults and task-group expansion
//! (`convert`) -> model-level checks (`validate`). `emit` is the reverse.
//! Nothing here touches the filesystem: callers read files and pass text.
//! The full schema is documented in `docs/dag-spec.md`.

// Tests may unwrap; library code may not (workspace lint).
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod convert;
mod document;
mod emit;
mod error;
mod node;
mod placement;
mod quantity;
mod read;
mod validate;
mod wire;

pub use document::SUPPORTED_SPEC_VERSIONS;
pub use emit::to_spec_json;
pub use error::{SpecError, SpecErrors};
pub use placement::{EXECUTORS, check_image, check_mig};

use error::{Diag, Place};
use node::Node;
use pave_core::Dag;
use std::collections::BTreeSet;

/// What validation needs to know about the installation.
#[derive(Clone, Debug, Default)]
pub struct ValidateOptions {
    /// Pools that exist. `None` skips the check; `default_pool` always exists.
    pub known_pools: Option<BTreeSet<String>>,
}

/// Reads a JSON spec document (`{"spec_version": 1, "dags": [...]}`, or a
/// single DAG object) into validated DAGs. `file` names the file in errors.
pub fn parse_json(text: &str, file: &str, opts: &ValidateOptions) -> Result<Vec<Dag>, SpecErrors> {
    match serde_json::from_str::<Node>(text) {
        Ok(node) => from_node(&node, file, opts),
        Err(e) => Err(syntax_error(file, format!("invalid JSON: {e}"))),
    }
}

/// Reads a YAML DAG file (a single DAG, or the full document with
/// `spec_version` and `dags`) into validated DAGs.
pub fn parse_yaml(text: &str, file: &str, opts: &ValidateOptions) -> Result<Vec<Dag>, SpecErrors> {
    if text.trim().is_empty() {
        return Err(syntax_error(
            file,
            "the file is empty; write a DAG (a mapping with `dag_id` and `tasks`)".to_owned(),
        ));
    }
    // YAML 1.2 booleans only: a task named `on` or `no` stays a string.
    let mut yaml_opts = serde_saphyr::Options::default();
    yaml_opts.strict_booleans = true;
    match serde_saphyr::from_str_with_options::<Node>(text, yaml_opts) {
        Ok(node) => from_node(&node, file, opts),
        Err(e) => Err(syntax_error(file, format!("invalid YAML: {e}"))),
    }
}

/// Reads a DAG file's contents by the extension of `path_text`: `.json`,
/// `.yaml` or `.yml`. The caller reads the file; this does no IO.
pub fn load_file(
    path_text: &str,
    contents: &str,
    opts: &ValidateOptions,
) -> Result<Vec<Dag>, SpecErrors> {
    let lower = path_text.to_ascii_lowercase();
    if lower.ends_with(".json") {
        parse_json(contents, path_text, opts)
    } else if lower.ends_with(".yaml") || lower.ends_with(".yml") {
        parse_yaml(contents, path_text, opts)
    } else {
        Err(syntax_error(
            path_text,
            "not a DAG spec file: the name must end in .json, .yaml or .yml".to_owned(),
        ))
    }
}

/// Reads a spec document that is already a JSON value (e.g. a stored DAG version).
pub fn from_spec_value(
    value: &serde_json::Value,
    file: &str,
    opts: &ValidateOptions,
) -> Result<Vec<Dag>, SpecErrors> {
    from_node(&Node::from_value(value), file, opts)
}

/// Model-level checks of DAGs however they were built: cycles, unknown
/// upstream tasks, groups, pools, mapping, setup/teardown, schedules, time
/// zones, dates and params. Each error names the DAG's `fileloc`.
pub fn validate(dags: &[Dag], opts: &ValidateOptions) -> Vec<SpecError> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for dag in dags {
        let mut diag = Diag::new(dag.fileloc.as_deref().unwrap_or("<unknown file>"));
        if !seen.insert(dag.dag_id.as_str()) {
            diag.err(
                &Place::dag(dag.dag_id.as_str()),
                Some("dag_id"),
                format!("DAG id `{}` is defined more than once", dag.dag_id),
                Some("give each DAG its own `dag_id`".to_owned()),
            );
        }
        validate::validate_dag(dag, opts, &mut diag);
        out.extend(diag.errors);
    }
    out
}

fn from_node(node: &Node, file: &str, opts: &ValidateOptions) -> Result<Vec<Dag>, SpecErrors> {
    let mut diag = Diag::new(file);
    let raw = document::read_document(node, &mut diag);
    let dags: Vec<Dag> = raw
        .into_iter()
        .map(|r| convert::convert(r, &mut diag))
        .collect();
    validate::validate_dags(&dags, opts, &mut diag);
    if diag.errors.is_empty() {
        Ok(dags)
    } else {
        Err(SpecErrors(diag.errors))
    }
}

fn syntax_error(file: &str, message: String) -> SpecErrors {
    SpecErrors(vec![SpecError {
        file: file.to_owned(),
        dag_id: None,
        task_id: None,
        field: None,
        message,
        hint: None,
    }])
}
