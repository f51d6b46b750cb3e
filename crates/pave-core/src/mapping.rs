//! The arguments of one instance of a mapped task (Airflow's
//! `expand_input.resolve`), from the mapping and the XComs of its sources.
//!
//! `decide` works out how many instances a mapped task gets; this module
//! works out what instance `i` receives, with the same reading of the
//! sources: a literal list; the XCom list (or dict, as `[key, value]`
//! pairs) of an unmapped upstream; or one element per instance of a mapped
//! upstream, in map-index order. `.expand(a=.., b=..)` is a cartesian
//! product in which the last argument (by name) varies fastest, as Airflow
//! iterates it.

use crate::ids::{MapIndex, TaskId};
use crate::model::{MapSource, Mapping, Task, XcomRef};
use crate::run::XcomMap;
use serde_json::Value;
use std::collections::BTreeMap;

/// Why an instance's arguments cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    #[error("mapped task `{task}`: {detail}")]
    Source { task: TaskId, detail: String },
    #[error("mapped task `{task}` has no instance {index}: it expands to {len} instances")]
    OutOfRange {
        task: TaskId,
        index: i32,
        len: usize,
    },
}

/// The XCom references a mapped task expands over (none for an unmapped
/// task or one mapped over literals only).
pub fn xcom_refs(task: &Task) -> impl Iterator<Item = &XcomRef> {
    let sources: Vec<&MapSource> = match &task.mapping {
        None => Vec::new(),
        Some(Mapping::Expand { args }) => args.values().collect(),
        Some(Mapping::ExpandKwargs { source }) => vec![source],
    };
    sources.into_iter().filter_map(|s| match s {
        MapSource::Xcom(r) => Some(r),
        MapSource::Literal { .. } => None,
    })
}

/// The tasks whose XComs a mapped task expands over.
pub fn xcom_sources(task: &Task) -> impl Iterator<Item = &TaskId> {
    xcom_refs(task).map(|r| &r.task_id)
}

/// The values one mapping source supplies, in order, borrowed from the
/// task or the XComs: an instance takes one of them, and copying the whole
/// list for every instance made a map of n instances cost n² copies.
enum Values<'a> {
    /// A literal list, or the XCom list of an unmapped upstream.
    List(&'a [Value]),
    /// The XCom dict of an unmapped upstream: its `[key, value]` pairs.
    Pairs(&'a serde_json::Map<String, Value>),
    /// One element per instance of a mapped upstream, in map-index order.
    Elements(Vec<&'a Value>),
}

impl Values<'_> {
    fn len(&self) -> usize {
        match self {
            Values::List(v) => v.len(),
            Values::Pairs(m) => m.len(),
            Values::Elements(v) => v.len(),
        }
    }

    /// Element `i`, owned.
    fn get(&self, i: usize) -> Option<Value> {
        match self {
            Values::List(v) => v.get(i).cloned(),
            Values::Pairs(m) => m
                .iter()
                .nth(i)
                .map(|(k, v)| Value::Array(vec![Value::String(k.clone()), v.clone()])),
            Values::Elements(v) => v.get(i).map(|v| (*v).clone()),
        }
    }
}

fn source_values<'a>(
    task: &Task,
    source: &'a MapSource,
    source_is_mapped: bool,
    xcoms: &'a XcomMap,
) -> Result<Values<'a>, MappingError> {
    match source {
        MapSource::Literal { values } => Ok(Values::List(values)),
        MapSource::Xcom(r) if source_is_mapped => {
            // Keys sort by task, then map index: the source's are one range.
            let from = (r.task_id.clone(), MapIndex(i32::MIN), String::new());
            Ok(Values::Elements(
                xcoms
                    .range(from..)
                    .take_while(|((t, _, _), _)| t == &r.task_id)
                    .filter(|((_, mi, k), v)| k == &r.key && !mi.is_unmapped() && !v.is_null())
                    .map(|(_, v)| v)
                    .collect(),
            ))
        }
        MapSource::Xcom(r) => {
            let key = (r.task_id.clone(), MapIndex::UNMAPPED, r.key.clone());
            match xcoms.get(&key) {
                Some(Value::Array(items)) => Ok(Values::List(items)),
                Some(Value::Object(map)) => Ok(Values::Pairs(map)),
                Some(other) => Err(MappingError::Source {
                    task: task.task_id.clone(),
                    detail: format!(
                        "the XCom `{}` of `{}` is not a list or dict: {other}",
                        r.key, r.task_id
                    ),
                }),
                None => Err(MappingError::Source {
                    task: task.task_id.clone(),
                    detail: format!("the XCom `{}` of `{}` is missing", r.key, r.task_id),
                }),
            }
        }
    }
}

/// The mapped arguments of instance `map_index` of `task`.
/// `is_mapped(task_id)` tells whether a source task is itself mapped.
pub fn instance_args(
    task: &Task,
    map_index: MapIndex,
    xcoms: &XcomMap,
    is_mapped: &dyn Fn(&TaskId) -> bool,
) -> Result<BTreeMap<String, Value>, MappingError> {
    let Some(mapping) = &task.mapping else {
        return Ok(BTreeMap::new());
    };
    let index = usize::try_from(map_index.0).map_err(|_| MappingError::OutOfRange {
        task: task.task_id.clone(),
        index: map_index.0,
        len: 0,
    })?;
    let source_mapped = |s: &MapSource| match s {
        MapSource::Xcom(r) => is_mapped(&r.task_id),
        MapSource::Literal { .. } => false,
    };
    match mapping {
        Mapping::Expand { args } => {
            let mut columns = Vec::with_capacity(args.len());
            for (name, source) in args {
                let values = source_values(task, source, source_mapped(source), xcoms)?;
                columns.push((name, values));
            }
            let len: usize = columns.iter().map(|(_, v)| v.len()).product();
            if index >= len {
                return Err(MappingError::OutOfRange {
                    task: task.task_id.clone(),
                    index: map_index.0,
                    len,
                });
            }
            // Mixed-radix decomposition, last column fastest.
            let mut rest = index;
            let mut out = BTreeMap::new();
            for (name, values) in columns.iter().rev() {
                let n = values.len();
                if let Some(value) = values.get(rest % n) {
                    out.insert((*name).clone(), value);
                }
                rest /= n;
            }
            Ok(out)
        }
        Mapping::ExpandKwargs { source } => {
            let values = source_values(task, source, source_mapped(source), xcoms)?;
            let len = values.len();
            match values.get(index) {
                Some(Value::Object(map)) => Ok(map.into_iter().collect()),
                Some(other) => Err(MappingError::Source {
                    task: task.task_id.clone(),
                    detail: format!("expand_kwargs needs a list of dicts, got element {other}"),
                }),
                None => Err(MappingError::OutOfRange {
                    task: task.task_id.clone(),
                    index: map_index.0,
                    len,
                }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{TaskKind, XcomRef};
    use serde_json::json;

    fn mapped(mapping: Mapping) -> Task {
        let mut t = Task::new("m", TaskKind::Empty);
        t.mapping = Some(mapping);
        t
    }

    /// A task with `.expand(x=src's return_value)`.
    fn mapped_over_src() -> Task {
        let src = XcomRef {
            task_id: "src".into(),
            key: "return_value".into(),
        };
        mapped(Mapping::Expand {
            args: BTreeMap::from([("x".into(), MapSource::Xcom(src))]),
        })
    }

    fn lit(v: Value) -> MapSource {
        MapSource::Literal {
            values: v.as_array().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn cartesian_product_last_argument_fastest() {
        let t = mapped(Mapping::Expand {
            args: BTreeMap::from([
                ("a".into(), lit(json!([1, 2]))),
                ("b".into(), lit(json!(["x", "y", "z"]))),
            ]),
        });
        let none = XcomMap::new();
        let got: Vec<_> = (0..6)
            .map(|i| {
                instance_args(&t, MapIndex(i), &none, &|_| false)
                    .map(|m| (m["a"].clone(), m["b"].clone()))
            })
            .collect::<Result<_, _>>()
            .unwrap_or_default();
        assert_eq!(
            got,
            vec![
                (json!(1), json!("x")),
                (json!(1), json!("y")),
                (json!(1), json!("z")),
                (json!(2), json!("x")),
                (json!(2), json!("y")),
                (json!(2), json!("z")),
            ]
        );
        assert!(instance_args(&t, MapIndex(6), &none, &|_| false).is_err());
    }

    #[test]
    fn xcom_of_unmapped_and_mapped_sources() {
        let t = mapped_over_src();
        let mut x = XcomMap::new();
        x.insert(
            ("src".into(), MapIndex(-1), "return_value".into()),
            json!([10, 20]),
        );
        let got = instance_args(&t, MapIndex(1), &x, &|_| false).expect("resolves");
        assert_eq!(got["x"], json!(20));

        let mut y = XcomMap::new();
        y.insert(
            ("src".into(), MapIndex(1), "return_value".into()),
            json!("b"),
        );
        y.insert(
            ("src".into(), MapIndex(0), "return_value".into()),
            json!("a"),
        );
        let got = instance_args(&t, MapIndex(1), &y, &|_| true).expect("resolves");
        assert_eq!(got["x"], json!("b"));
    }

    #[test]
    fn a_mapped_source_gives_its_own_elements_in_map_index_order() {
        // Other tasks' XComs sort before and after the source's; its other
        // keys, its unmapped XCom and null elements are not instances.
        let t = mapped_over_src();
        let mut x = XcomMap::new();
        for (task, index, key, value) in [
            ("a", 0, "return_value", json!("other task, before")),
            ("src", -1, "return_value", json!(["unmapped"])),
            ("src", 2, "return_value", json!("third")),
            ("src", 0, "return_value", json!("first")),
            ("src", 0, "other", json!("other key")),
            ("src", 1, "return_value", Value::Null),
            ("src", 1, "return_value2", json!("other key")),
            ("src", 3, "return_value", json!("fourth")),
            ("srd", 0, "return_value", json!("other task, after")),
            ("z", 0, "return_value", json!("other task, after")),
        ] {
            x.insert((task.into(), MapIndex(index), key.into()), value);
        }
        let got: Vec<Value> = (0..3)
            .map(|i| instance_args(&t, MapIndex(i), &x, &|_| true).map(|m| m["x"].clone()))
            .collect::<Result<_, _>>()
            .unwrap_or_default();
        assert_eq!(got, vec![json!("first"), json!("third"), json!("fourth")]);
        assert_eq!(
            instance_args(&t, MapIndex(3), &x, &|_| true),
            Err(MappingError::OutOfRange {
                task: "m".into(),
                index: 3,
                len: 3
            })
        );
    }

    #[test]
    fn a_dict_xcom_gives_key_value_pairs() {
        let t = mapped_over_src();
        let mut x = XcomMap::new();
        x.insert(
            ("src".into(), MapIndex::UNMAPPED, "return_value".into()),
            json!({"k1": 1, "k2": [2]}),
        );
        let got = instance_args(&t, MapIndex(1), &x, &|_| false).expect("resolves");
        assert_eq!(got["x"], json!(["k2", [2]]));
    }

    #[test]
    fn expand_kwargs_gives_each_dict() {
        let t = mapped(Mapping::ExpandKwargs {
            source: lit(json!([{"a": 1}, {"a": 2, "b": 3}])),
        });
        let got = instance_args(&t, MapIndex(1), &XcomMap::new(), &|_| false).expect("resolves");
        assert_eq!(
            got,
            BTreeMap::from([("a".into(), json!(2)), ("b".into(), json!(3))])
        );
    }
}
