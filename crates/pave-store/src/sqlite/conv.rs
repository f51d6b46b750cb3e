//! Conversions between records and SQLite columns: INTEGER microseconds for
//! timestamps, TEXT for JSON and state names, INTEGER for counts.
//!
//! Decoding functions return a message naming the column; the row
//! converters prefix it with the row's identity and wrap it in
//! `StoreError::Corrupt`.

use crate::error::StoreError;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::str::FromStr;

/// A column decoding problem, before the row's identity is known.
pub(crate) type ColResult<T> = std::result::Result<T, String>;

pub(crate) fn ts(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub(crate) fn ts_opt(t: Option<DateTime<Utc>>) -> Option<i64> {
    t.map(ts)
}

pub(crate) fn time(col: &str, v: i64) -> ColResult<DateTime<Utc>> {
    DateTime::from_timestamp_micros(v)
        .ok_or_else(|| format!("column `{col}`: timestamp {v} out of range"))
}

pub(crate) fn time_opt(col: &str, v: Option<i64>) -> ColResult<Option<DateTime<Utc>>> {
    v.map(|v| time(col, v)).transpose()
}

/// Compact JSON text of a value (what the store keeps and hashes).
pub(crate) fn json_text<T: Serialize + ?Sized>(v: &T) -> String {
    // Serializing plain data (serde_json::Value, derive(Serialize) enums) to
    // a String cannot fail: no map has non-string keys, no IO is involved.
    serde_json::to_string(v).unwrap_or_else(|e| format!("\"unserializable: {e}\""))
}

pub(crate) fn json<T: DeserializeOwned>(col: &str, text: &str) -> ColResult<T> {
    serde_json::from_str(text).map_err(|e| format!("column `{col}`: invalid JSON: {e}"))
}

pub(crate) fn json_opt<T: DeserializeOwned>(col: &str, text: Option<&str>) -> ColResult<Option<T>> {
    text.map(|t| json(col, t)).transpose()
}

pub(crate) fn parse<T: FromStr>(col: &str, text: &str) -> ColResult<T>
where
    T::Err: std::fmt::Display,
{
    text.parse().map_err(|e| format!("column `{col}`: {e}"))
}

pub(crate) fn unsigned<T: TryFrom<i64>>(col: &str, v: i64) -> ColResult<T> {
    T::try_from(v).map_err(|_| format!("column `{col}`: {v} out of range"))
}

/// Attaches the row's identity to a column problem.
pub(crate) fn corrupt_row<T>(row: impl std::fmt::Display, r: ColResult<T>) -> crate::Result<T> {
    r.map_err(|e| StoreError::corrupt(format!("{row}: {e}")))
}

/// The error's SQLite extended code is a UNIQUE or PRIMARY KEY violation.
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db.is_unique_violation(),
        _ => false,
    }
}

/// The error is a FOREIGN KEY violation (the row refers to something missing).
pub(crate) fn is_foreign_key_violation(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db.is_foreign_key_violation(),
        _ => false,
    }
}
