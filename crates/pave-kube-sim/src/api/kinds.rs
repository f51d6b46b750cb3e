//! What differs between pods and nodes in the API: scope, selectable
//! fields, defaulting and validation on create, what an update may change,
//! deletion, and the Table columns.

use super::table;
use crate::error::ApiError;
use crate::lifecycle;
use crate::selector::FieldSet;
use crate::store::{Key, SimObject, State};
use crate::validate;
use k8s_openapi::api::core::v1::{Node, NodeStatus, Pod, PodStatus};
use serde_json::Value;
use std::sync::Arc;

/// Which part of an object a write addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    /// The object: metadata and spec; status is kept.
    Main,
    /// The `/status` subresource: only status changes.
    Status,
}

pub(crate) trait ApiKind: SimObject {
    const NAMESPACED: bool;
    const FIELDS: FieldSet;
    /// Defaults and validates a new object (name and namespace are set).
    fn prepare_create(state: &mut State, obj: &mut Self) -> Result<(), ApiError>;
    /// Makes `new` keep what `part` may not change, and validates it.
    fn prepare_update(old: &Self, new: &mut Self, part: Part) -> Result<(), ApiError>;
    /// Deletes, returning the object as the API answers it and whether it is gone.
    fn delete(
        state: &mut State,
        key: &Key,
        grace: Option<i64>,
    ) -> Result<(Arc<Value>, bool), ApiError>;
    /// A `meta.k8s.io/v1` Table of these objects.
    fn to_table(items: &[Arc<Value>], rv: u64, full_object: bool) -> Value;
}

impl ApiKind for Pod {
    const NAMESPACED: bool = true;
    const FIELDS: FieldSet = FieldSet::Pod;

    fn prepare_create(_state: &mut State, pod: &mut Pod) -> Result<(), ApiError> {
        validate::default_pod(pod);
        let errs = validate::validate_pod(pod);
        if !errs.is_empty() {
            return Err(ApiError::invalid(
                "Pod",
                pod.metadata.name.as_deref().unwrap_or(""),
                &errs,
            ));
        }
        let qos = validate::qos_class(pod);
        pod.status = Some(PodStatus {
            phase: Some("Pending".into()),
            qos_class: Some(qos.into()),
            ..Default::default()
        });
        if let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) {
            // Created already bound (no scheduler involved).
            let _ = node;
            lifecycle::set_condition(pod, "PodScheduled", "True", "", "");
        }
        Ok(())
    }

    fn prepare_update(old: &Pod, new: &mut Pod, part: Part) -> Result<(), ApiError> {
        let name = old.metadata.name.clone().unwrap_or_default();
        match part {
            Part::Status => {
                new.metadata = old.metadata.clone();
                new.spec = old.spec.clone();
            }
            Part::Main => {
                new.status = old.status.clone();
                if let Some(spec) = new.spec.as_mut() {
                    let mut probe = Pod {
                        spec: Some(spec.clone()),
                        ..Default::default()
                    };
                    validate::default_pod(&mut probe);
                    *spec = probe.spec.unwrap_or_default();
                }
                let (Some(o), Some(n)) = (old.spec.as_ref(), new.spec.as_ref()) else {
                    return Err(ApiError::invalid(
                        "Pod",
                        &name,
                        &[crate::error::FieldError::required("spec", "")],
                    ));
                };
                if let Some(e) = validate::validate_spec_update(o, n) {
                    return Err(ApiError::invalid("Pod", &name, &[e]));
                }
                let errs = validate::validate_meta(&name, new.metadata.labels.as_ref());
                if !errs.is_empty() {
                    return Err(ApiError::invalid("Pod", &name, &errs));
                }
            }
        }
        Ok(())
    }

    fn delete(
        state: &mut State,
        key: &Key,
        grace: Option<i64>,
    ) -> Result<(Arc<Value>, bool), ApiError> {
        let json = lifecycle::delete_pod(state, key, grace)?;
        let gone = state.get::<Pod>(key).is_none_or(|s| {
            s.obj.metadata.uid.as_deref() != json.pointer("/metadata/uid").and_then(Value::as_str)
        });
        Ok((json, gone))
    }

    fn to_table(items: &[Arc<Value>], rv: u64, full_object: bool) -> Value {
        table::pods(items, rv, full_object)
    }
}

impl ApiKind for Node {
    const NAMESPACED: bool = false;
    const FIELDS: FieldSet = FieldSet::Node;

    fn prepare_create(_state: &mut State, node: &mut Node) -> Result<(), ApiError> {
        let name = node.metadata.name.clone().unwrap_or_default();
        let errs = validate::validate_meta(&name, node.metadata.labels.as_ref());
        if !errs.is_empty() {
            return Err(ApiError::invalid("Node", &name, &errs));
        }
        // The simulated kubelet adopts nodes created through the API: they are Ready.
        let st = node.status.get_or_insert_with(NodeStatus::default);
        if st.conditions.as_ref().is_none_or(Vec::is_empty) {
            st.conditions = Some(crate::nodes::ready_conditions());
        }
        if st.allocatable.is_none() {
            st.allocatable.clone_from(&st.capacity);
        }
        Ok(())
    }

    fn prepare_update(old: &Node, new: &mut Node, part: Part) -> Result<(), ApiError> {
        match part {
            Part::Status => {
                new.metadata = old.metadata.clone();
                new.spec = old.spec.clone();
            }
            Part::Main => new.status = old.status.clone(),
        }
        let name = old.metadata.name.clone().unwrap_or_default();
        let errs = validate::validate_meta(&name, new.metadata.labels.as_ref());
        if !errs.is_empty() {
            return Err(ApiError::invalid("Node", &name, &errs));
        }
        Ok(())
    }

    fn delete(
        state: &mut State,
        key: &Key,
        _grace: Option<i64>,
    ) -> Result<(Arc<Value>, bool), ApiError> {
        let json = state
            .remove::<Node>(key)
            .ok_or_else(|| ApiError::not_found("nodes", &key.1))?;
        Ok((json, true))
    }

    fn to_table(items: &[Arc<Value>], rv: u64, full_object: bool) -> Value {
        table::nodes(items, rv, full_object)
    }
}
