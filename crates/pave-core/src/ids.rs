//! Newtype identifiers, so a task id can never be passed where a DAG id is meant.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            pub fn new(s: impl Into<String>) -> Self {
                Self(s.into())
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}

string_id!(
    /// A DAG's id, unique in an installation.
    DagId
);
string_id!(
    /// A task's id inside its DAG; tasks in a task group are `group.task`, as in Airflow.
    TaskId
);
string_id!(
    /// A DAG run's id, unique within its DAG (e.g. `manual__2026-01-01T00:00:00+00:00`).
    RunId
);

/// The map index of a task instance: -1 for an unmapped task (Airflow's value),
/// 0..n for the expanded instances of a mapped task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MapIndex(pub i32);

impl MapIndex {
    pub const UNMAPPED: MapIndex = MapIndex(-1);
    pub fn is_unmapped(self) -> bool {
        self.0 < 0
    }
}

impl fmt::Display for MapIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The try number of an attempt, starting at 1 for the first attempt, as in Airflow 3.
/// A task instance that has never been attempted has try number 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TryNumber(pub u32);

impl fmt::Display for TryNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The longest XCom key (or task id in an execution API path), in bytes:
/// Airflow's limit on XCom keys (the column is 512 characters).
pub const MAX_XCOM_NAME_LEN: usize = 512;

/// What is wrong with `name` as an XCom key (or a task id in an execution
/// API path), if anything: it must be non-empty, hold no `/` and no control
/// characters, and take at most [`MAX_XCOM_NAME_LEN`] bytes. The same rule
/// for a push through the API and for a value that comes with an
/// attempt's end.
pub fn xcom_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        Some("is empty".to_owned())
    } else if name.contains('/') {
        Some("contains `/`".to_owned())
    } else if name.chars().any(char::is_control) {
        Some("contains control characters".to_owned())
    } else if name.len() > MAX_XCOM_NAME_LEN {
        Some(format!("is longer than {MAX_XCOM_NAME_LEN} bytes"))
    } else {
        None
    }
}
