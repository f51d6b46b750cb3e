//! Turning what an attempt printed into its XCom result and flow decision.
//!
//! A command task's result is its last non-empty stdout line (Airflow's
//! BashOperator pushes the same line). Branch tasks name the task ids to
//! follow on that line; short-circuit tasks proceed when it is truthy.

use pave_core::model::{Flow, OutputFormat};
use serde_json::Value;
use std::collections::BTreeMap;

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
    #[error(
        "the XCom `{key}` of task `{task_id}` is {size} bytes, over the limit of {cap} bytes; \
         write the data to object storage (or a file) and push its URI instead, \
         or raise the limit with PAVE_XCOM_MAX_BYTES"
    )]
    XcomTooLarge {
        task_id: String,
        key: String,
        size: usize,
        cap: usize,
    },
    #[error(
        "task `{task_id}` returned an XCom key `{key}` that {problem}; use a non-empty name without `/`"
    )]
    BadXcomKey {
        task_id: String,
        key: String,
        problem: String,
    },
}

/// Checks the XComs that came with a Python attempt's end (its result
/// file's `xcoms`: its return value and, with `multiple_outputs`, each key
/// of it) as the execution API checks a push: a key it would take
/// ([`pave_core::ids::xcom_name_problem`]), a value within the XCom limit.
pub fn check_ended_xcoms(
    task_id: &str,
    xcoms: &BTreeMap<String, Value>,
    cap: usize,
) -> Result<(), ResultError> {
    for (key, value) in xcoms {
        if let Some(problem) = pave_core::ids::xcom_name_problem(key) {
            return Err(ResultError::BadXcomKey {
                task_id: task_id.to_owned(),
                key: key.escape_debug().to_string(),
                problem,
            });
        }
        check_xcom_size(task_id, key, value, cap)?;
    }
    Ok(())
}

/// Refuses an XCom whose JSON is over the limit (`PAVE_XCOM_MAX_BYTES`),
/// pushed through the execution API or come with an attempt's end.
pub fn check_xcom_size(
    task_id: &str,
    key: &str,
    value: &Value,
    cap: usize,
) -> Result<(), ResultError> {
    let size = serde_json::to_vec(value).map_or(usize::MAX, |v| v.len());
    if size > cap {
        return Err(ResultError::XcomTooLarge {
            task_id: task_id.to_owned(),
            key: key.to_owned(),
            size,
            cap,
        });
    }
    Ok(())
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
        OutputFormat::Json => {
            serde_json::from_str(line)
                .map(Some)
                .map_err(|e| ResultError::NotJson {
                    task_id: task_id.to_owned(),
                    line: truncate(line, 200),
                    error: e.to_string(),
                })
        }
    }
}

/// The value a command's result line stands for when a branch or
/// short-circuit task reads it: a branch's line names task ids (a JSON list,
/// or ids separated by commas or spaces); a short circuit's line is read as
/// JSON when it is JSON (`false`, `0`, `null`, `[]` are falsy) and as text
/// otherwise (only an empty line is falsy), following Python's truthiness.
pub fn flow_value(flow: &Flow, result: Option<&Value>) -> Value {
    let text = match result {
        Some(Value::String(s)) => s.trim(),
        Some(other) => return other.clone(),
        None => return Value::Null,
    };
    match flow {
        Flow::Branch => {
            if text.starts_with('[')
                && let Ok(v @ Value::Array(_)) = serde_json::from_str::<Value>(text)
            {
                return v;
            }
            Value::Array(
                text.split(|c: char| c == ',' || c.is_whitespace())
                    .filter(|p| !p.is_empty())
                    .map(|p| Value::String(p.to_owned()))
                    .collect(),
            )
        }
        Flow::ShortCircuit { .. } => {
            serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
        }
        Flow::Normal => Value::String(text.to_owned()),
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
    fn the_return_value_that_came_with_an_end_is_checked_as_a_push_is() {
        let ok = BTreeMap::from([("return_value".to_owned(), json!({"a": [1, 2]}))]);
        assert_eq!(check_ended_xcoms("t", &ok, 11), Ok(())); // {"a":[1,2]}
        let err = check_ended_xcoms("t", &ok, 10).expect_err("over the limit");
        assert_eq!(
            err,
            ResultError::XcomTooLarge {
                task_id: "t".into(),
                key: "return_value".into(),
                size: 11,
                cap: 10
            }
        );
        assert!(err.to_string().contains("PAVE_XCOM_MAX_BYTES"), "{err}");
        let outputs = BTreeMap::from([
            ("return_value".to_owned(), json!({"model": "s3://m"})),
            ("model".to_owned(), json!("s3://m")),
        ]);
        assert_eq!(check_ended_xcoms("t", &outputs, 100), Ok(()));
        for (bad, says) in [
            ("a/b", "contains `/`"),
            ("", "is empty"),
            ("a\nb", "control"),
        ] {
            let keys = BTreeMap::from([(bad.to_owned(), json!(1))]);
            let err = check_ended_xcoms("t", &keys, 100).expect_err("a bad key");
            assert!(err.to_string().contains(says), "{err}");
        }
        assert_eq!(check_ended_xcoms("t", &BTreeMap::new(), 0), Ok(()));
    }

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
        let err =
            command_result("extract", Some("oops"), OutputFormat::Json, 100).expect_err("not json");
        let msg = err.to_string();
        assert!(
            msg.contains("`extract`") && msg.contains("output: text"),
            "{msg}"
        );
    }

    #[test]
    fn oversized_result_says_use_object_storage() {
        let line = "x".repeat(101);
        let err = command_result("big", Some(&line), OutputFormat::Text, 100).expect_err("cap");
        let msg = err.to_string();
        assert!(
            msg.contains("101 bytes") && msg.contains("object storage"),
            "{msg}"
        );
    }

    #[test]
    fn branch_lines_name_task_ids() {
        assert_eq!(
            flow_value(&Flow::Branch, Some(&json!("a, b"))),
            json!(["a", "b"])
        );
        assert_eq!(
            flow_value(&Flow::Branch, Some(&json!("[\"a\"]"))),
            json!(["a"])
        );
        assert_eq!(flow_value(&Flow::Branch, Some(&json!(""))), json!([]));
        assert_eq!(flow_value(&Flow::Branch, None), Value::Null);
    }

    #[test]
    fn short_circuit_lines_read_as_json_when_they_are() {
        let sc = Flow::ShortCircuit {
            ignore_downstream_trigger_rules: true,
        };
        assert_eq!(flow_value(&sc, Some(&json!("false"))), json!(false));
        assert_eq!(flow_value(&sc, Some(&json!("0"))), json!(0));
        assert_eq!(flow_value(&sc, Some(&json!("yes"))), json!("yes"));
    }
}
