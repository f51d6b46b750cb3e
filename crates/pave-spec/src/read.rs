//! Typed readers for single fields of a document tree. Each reports a
//! problem naming the field and returns `None`, so that the caller can go on
//! and find the next problem.

use crate::error::{Diag, Place, did_you_mean, one_of};
use crate::node::Node;
use crate::quantity;
use pave_core::TaskId;
use std::time::Duration;

/// The reader for one mapping of a document, at one place.
pub(crate) struct Fields<'a> {
    pub entries: &'a [(String, Node)],
    pub place: Place,
    /// Prefix of field paths in messages (`""`, `"resources."`, `"default_args."`).
    pub prefix: String,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(entries: &'a [(String, Node)], place: Place, prefix: &str) -> Fields<'a> {
        Fields {
            entries,
            place,
            prefix: prefix.to_owned(),
        }
    }

    /// The value of `key`; `null` counts as absent.
    pub(crate) fn get(&self, key: &str) -> Option<&'a Node> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
            .filter(|v| **v != Node::Null)
    }

    /// Whether `key` is written at all (even as null).
    pub(crate) fn has(&self, key: &str) -> bool {
        self.entries.iter().any(|(k, _)| k == key)
    }

    pub(crate) fn path(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Reports every key that is not in `known`. `what` names the kind of
    /// field ("task field"); `special` gives a specific hint for names that
    /// users bring from Airflow.
    pub(crate) fn check_keys(
        &self,
        diag: &mut Diag,
        what: &str,
        known: &[&str],
        special: &[(&str, &str)],
    ) {
        for (key, _) in self.entries {
            if known.contains(&key.as_str()) {
                continue;
            }
            let hint = special
                .iter()
                .find(|(name, _)| name == key)
                .map(|(_, h)| (*h).to_owned())
                .or_else(|| did_you_mean(key, known))
                .or_else(|| {
                    Some(if known.len() <= 10 {
                        format!("the {what}s are {}", one_of(known))
                    } else {
                        format!("see docs/dag-spec.md for the {what}s")
                    })
                });
            let path = self.path(key);
            diag.err(
                &self.place,
                Some(&path),
                format!("unknown {what} `{path}`"),
                hint,
            );
        }
    }

    pub(crate) fn err(&self, diag: &mut Diag, key: &str, message: String, hint: Option<String>) {
        let path = self.path(key);
        diag.err(&self.place, Some(&path), message, hint);
    }

    /// Reports `key` as having the wrong type.
    pub(crate) fn wrong(&self, diag: &mut Diag, key: &str, expected: &str, node: &Node) {
        let path = self.path(key);
        diag.err(
            &self.place,
            Some(&path),
            format!(
                "`{path}` must be {expected}, got {} {}",
                node.kind(),
                node.show()
            ),
            None,
        );
    }

    pub(crate) fn string(&self, diag: &mut Diag, key: &str) -> Option<String> {
        match self.get(key)? {
            Node::Str(s) => Some(s.clone()),
            other => {
                self.wrong(diag, key, "a string", other);
                None
            }
        }
    }

    pub(crate) fn boolean(&self, diag: &mut Diag, key: &str) -> Option<bool> {
        match self.get(key)? {
            Node::Bool(b) => Some(*b),
            other => {
                self.wrong(diag, key, "true or false", other);
                None
            }
        }
    }

    /// An integer in `min..=u32::MAX`.
    pub(crate) fn uint(&self, diag: &mut Diag, key: &str, min: u32) -> Option<u32> {
        let node = self.get(key)?;
        let expected = if min == 0 {
            "a non-negative integer".to_owned()
        } else {
            format!("an integer of at least {min}")
        };
        match node {
            Node::Int(i) if *i >= i128::from(min) && *i <= i128::from(u32::MAX) => {
                u32::try_from(*i).ok()
            }
            Node::Float(f) if f.fract() == 0.0 && *f >= f64::from(min) && *f <= 4e9 => {
                // `3.0` from a JSON emitter that writes every number as a float.
                Some(*f as u32)
            }
            other => {
                self.wrong(diag, key, &expected, other);
                None
            }
        }
    }

    pub(crate) fn int(&self, diag: &mut Diag, key: &str) -> Option<i64> {
        match self.get(key)? {
            Node::Int(i) => match i64::try_from(*i) {
                Ok(v) => Some(v),
                Err(_) => {
                    self.wrong(diag, key, "a 64-bit integer", &Node::Int(*i));
                    None
                }
            },
            other => {
                self.wrong(diag, key, "an integer", other);
                None
            }
        }
    }

    pub(crate) fn duration(&self, diag: &mut Diag, key: &str) -> Option<Duration> {
        let node = self.get(key)?;
        match quantity::parse_duration(node) {
            Ok(d) => Some(d),
            Err(msg) => {
                let path = self.path(key);
                self.err(diag, key, format!("`{path}` {msg}"), None);
                None
            }
        }
    }

    /// A string or a list of strings (`upstream: a` or `upstream: [a, b]`).
    pub(crate) fn names(&self, diag: &mut Diag, key: &str) -> Vec<String> {
        match self.get(key) {
            None => Vec::new(),
            Some(Node::Str(s)) => vec![s.clone()],
            Some(Node::Seq(items)) => {
                let mut out = Vec::new();
                for item in items {
                    match item {
                        Node::Str(s) => out.push(s.clone()),
                        other => self.wrong(diag, key, "a string or a list of strings", other),
                    }
                }
                out
            }
            Some(other) => {
                self.wrong(diag, key, "a string or a list of strings", other);
                Vec::new()
            }
        }
    }

    pub(crate) fn task_ids(&self, diag: &mut Diag, key: &str) -> Vec<TaskId> {
        self.names(diag, key)
            .into_iter()
            .map(TaskId::from)
            .collect()
    }
}

/// A mapping's entries, or a problem naming `what` when the node is not a mapping.
pub(crate) fn as_map<'a>(
    node: &'a Node,
    diag: &mut Diag,
    place: &Place,
    field: Option<&str>,
    what: &str,
) -> Option<&'a [(String, Node)]> {
    match node {
        Node::Map(entries) => Some(entries),
        other => {
            diag.err(
                place,
                field,
                format!(
                    "{what} must be a mapping, got {} {}",
                    other.kind(),
                    other.show()
                ),
                None,
            );
            None
        }
    }
}

/// Items of a field that may be written as a list of mappings that carry
/// their id in `id_key`, or as a mapping from id to item (the id key inside
/// is then optional). Returns `(id, entries)` pairs in document order;
/// `null` items count as empty mappings.
pub(crate) fn keyed_items<'a>(
    node: &'a Node,
    diag: &mut Diag,
    place: &Place,
    field: &str,
    id_key: &str,
) -> Vec<(String, &'a [(String, Node)])> {
    let mut out = Vec::new();
    match node {
        Node::Null => {}
        Node::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                let Some(entries) =
                    as_map(item, diag, place, Some(field), &format!("`{field}[{i}]`"))
                else {
                    continue;
                };
                match entries.iter().find(|(k, _)| k == id_key).map(|(_, v)| v) {
                    Some(Node::Str(id)) if !id.is_empty() => out.push((id.clone(), entries)),
                    Some(other) => diag.err(
                        place,
                        Some(&format!("{field}[{i}].{id_key}")),
                        format!(
                            "`{field}[{i}].{id_key}` must be a non-empty string, got {} {}",
                            other.kind(),
                            other.show()
                        ),
                        None,
                    ),
                    None => diag.err(
                        place,
                        Some(&format!("{field}[{i}]")),
                        format!("`{field}[{i}]` has no `{id_key}`"),
                        Some(format!(
                            "add `{id_key}`, or write `{field}` as a mapping from id to item"
                        )),
                    ),
                }
            }
        }
        Node::Map(entries) => {
            static EMPTY: [(String, Node); 0] = [];
            for (id, item) in entries {
                let body: &[(String, Node)] = match item {
                    Node::Map(e) => e,
                    Node::Null => &EMPTY,
                    other => {
                        diag.err(
                            place,
                            Some(&format!("{field}.{id}")),
                            format!(
                                "`{field}.{id}` must be a mapping, got {} {}",
                                other.kind(),
                                other.show()
                            ),
                            None,
                        );
                        continue;
                    }
                };
                if let Some(inner) = body.iter().find(|(k, _)| k == id_key).map(|(_, v)| v)
                    && *inner != Node::Str(id.clone())
                {
                    diag.err(
                        place,
                        Some(&format!("{field}.{id}.{id_key}")),
                        format!(
                            "`{field}.{id}.{id_key}` is {} but the item is listed under `{id}`",
                            inner.show()
                        ),
                        Some(format!("remove `{id_key}` or make the two agree")),
                    );
                    continue;
                }
                out.push((id.clone(), body));
            }
        }
        other => diag.err(
            place,
            Some(field),
            format!(
                "`{field}` must be a list or a mapping from id to item, got {} {}",
                other.kind(),
                other.show()
            ),
            None,
        ),
    }
    out
}
