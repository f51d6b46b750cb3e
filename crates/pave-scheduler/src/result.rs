//! Turning what an attempt printed into its XCom result and flow decision.
//!
//! A command task's result is its last non-empty stdout line (Airflow's
//! BashOperator pushes the same line). Branch tasks name the task ids to
//! follow on that line; short-circuit tasks proceed when it is truthy.

use pave_core::model::{Flow, OutputFormat};
use pave_core::run::FlowResult;
use serde_json::Value;

/// Why a result could not be turned into an XCom value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResultError {
    #[error(
        "the result of task `{task_id}` is {size} bytes, over the XCom limit of {cap} bytes; \
         write the data to object storage (or a file) and return its URI instead, \
         or raise the limit with PAVE_XCOM_MAX_BYTES"
    )]
    TooLarge {
        task_id: String,
        size: usize,
        cap: usize,
    },
    #[error(
        "task `{task_id}` has `output: json` but its last stdout line is not JSON ({error}): `{line}`; \
         print a JSON value on the last line, or use `output: text`"
    )]
    NotJson {
        task_id: String,
        line: String,
        error: String,
    },
}

/// The XCom value of a command's last stdout line.
pub fn command_result(
    task_id: &str,
    last_line: Option<&str>,
    format: OutputFormat,
    cap: usize,
) -> Result<Option<Value>, ResultError> {
    let Some(line) = last_line else {
        return Ok(None);
    };
    let size = line.len();
    if size > cap {
        return Err(ResultError::TooLarge {
            task_id: task_id.to_owned(),
            size,
            cap,
        });
    }
    match format {
        OutputFormat::Text => Ok(Some(Value::String(line.to_owned()))),
        OutputFormat::Json => serde_json::from_str(line)
            .map(Some)
            .map_err(|e| ResultError::NotJson {
                task_id: task_id.to_owned(),
                line: truncate(line, 200),
                error: e.to_string(),
            }),
    }
}

/// What a branch or short-circuit task decided, from its result value.
pub fn flow_result(flow: &Flow, value: Option<&Value>) -> Option<FlowResult> {
    match flow {
        Flow::Normal => None,
        Flow::Branch => Some(FlowResult::Branch {
            follow: branch_ids(value),
        }),
        Flow::ShortCircuit { .. } => Some(FlowResult::ShortCircuit {
            proceed: truthy(value),
        }),
    }
}

/// Task ids named by a branch result: a JSON list of strings, one string,
/// or a text line of ids separated by commas or whitespace.
fn branch_ids(value: Option<&Value>) -> Vec<String> {
    match value {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        Some(Value::String(s)) => {
            let s = s.trim();
            if s.starts_with('[')
                && let Ok(Value::Array(items)) = serde_json::from_str::<Value>(s)
            {
                return items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect();
            }
            s.split(|c: char| c == ',' || c.is_whitespace())
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect()
        }
        Some(other) => vec![other.to_string()],
    }
}

/// Python's truthiness, extended to the text a command prints: an empty
/// line, `0`, `false`, `False`, `none`, `None` and `null` are falsy.
pub fn truthy(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        Some(Value::String(s)) => !matches!(
            s.trim(),
            "" | "0" | "false" | "False" | "FALSE" | "none" | "None" | "null"
        ),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_result_is_a_string() {
        let v = command_result("t", Some("42"), OutputFormat::Text, 100);
        assert_eq!(v, Ok(Some(json!("42"))));
    }

    #[test]
    fn json_result_is_parsed() {
        let v = command_result("t", Some("[1, 2]"), OutputFormat::Json, 100);
        assert_eq!(v, Ok(Some(json!([1, 2]))));
    }

    #[test]
    fn bad_json_names_task_and_fix() {
        let err = command_result("extract", Some("oops"), OutputFormat::Json, 100)
            .expect_err("not json");
        let msg = err.to_string();
        assert!(msg.contains("`extract`") && msg.contains("output: text"), "{msg}");
    }

    #[test]
    fn oversized_result_says_use_object_storage() {
        let line = "x".repeat(101);
        let err = command_result("big", Some(&line), OutputFormat::Text, 100).expect_err("cap");
        let msg = err.to_string();
        assert!(msg.contains("101 bytes") && msg.contains("object storage"), "{msg}");
    }

    #[test]
    fn branch_ids_forms() {
        assert_eq!(branch_ids(Some(&json!("a, b"))), vec!["a", "b"]);
        assert_eq!(branch_ids(Some(&json!("[\"a\",\"b\"]"))), vec!["a", "b"]);
        assert_eq!(branch_ids(Some(&json!(["x"]))), vec!["x"]);
        assert!(branch_ids(None).is_empty());
    }

    #[test]
    fn truthiness() {
        for falsy in [json!(""), json!("0"), json!("False"), json!(0), json!([]), json!(null)] {
            assert!(!truthy(Some(&falsy)), "{falsy} should be falsy");
        }
        for t in [json!("yes"), json!("1"), json!(1), json!([0]), json!(true)] {
            assert!(truthy(Some(&t)), "{t} should be truthy");
        }
    }
}
