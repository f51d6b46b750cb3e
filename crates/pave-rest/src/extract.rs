//! Reading requests with errors that name what is wrong: JSON bodies
//! (`JsonBody`) and query strings (`QueryArgs`).
//!
//! axum's own extractors answer with plain text; these answer with
//! problem details: malformed JSON is 400 with the line and column, a field
//! of the wrong type or an unknown field is 422 naming the field, a body
//! over the limit is 413, a wrong content type 415, and an unknown or
//! ill-typed query parameter is 400 naming the parameter.

use crate::problem::Problem;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use std::collections::BTreeSet;
use std::str::FromStr;

/// A JSON request body, parsed into `T` (which should deny unknown fields).
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                let mime = v.split(';').next().unwrap_or("").trim();
                mime.eq_ignore_ascii_case("application/json")
                    || (mime.starts_with("application/") && mime.ends_with("+json"))
            });
        match is_json {
            Some(true) => {}
            Some(false) | None => {
                return Err(Problem::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "the request body must be JSON: send `Content-Type: application/json`",
                ));
            }
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| body_problem(e.status(), &e.body_text()))?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// The problem for a body that could not be read.
pub fn body_problem(status: StatusCode, text: &str) -> Problem {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the request body is larger than the limit of {} bytes",
                crate::MAX_BODY_BYTES
            ),
        )
    } else {
        Problem::bad_request(format!("cannot read the request body: {text}"))
    }
}

/// Parses a JSON body: 400 if it is not JSON, 422 naming the field if it
/// does not fit `T`.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed: Result<T, _> = serde_path_to_error::deserialize(&mut de);
    let value = match parsed {
        Ok(v) => v,
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            return Err(match inner.classify() {
                serde_json::error::Category::Data => {
                    let field = if path == "." { None } else { Some(path) };
                    let detail = match &field {
                        Some(f) => format!("field `{f}`: {}", strip_position(&inner)),
                        None => format!("the request body: {}", strip_position(&inner)),
                    };
                    let p = Problem::unprocessable(detail);
                    match field {
                        Some(f) => p.with_field(f),
                        None => p,
                    }
                }
                _ => Problem::bad_request(format!("the request body is not valid JSON: {inner}")),
            });
        }
    };
    de.end()
        .map_err(|e| Problem::bad_request(format!("the request body is not valid JSON: {e}")))?;
    Ok(value)
}

/// serde_json's message without " at line 1 column 12" (the field is named instead).
fn strip_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

/// The query string of a request as name/value pairs, checked against the
/// parameters an endpoint takes.
#[derive(Clone, Debug, Default)]
pub struct QueryArgs {
    pairs: Vec<(String, String)>,
}

impl<S: Send + Sync> FromRequestParts<S> for QueryArgs {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let pairs = form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        Ok(QueryArgs { pairs })
    }
}

impl QueryArgs {
    /// Query args from a query string (for tests and callers without a request).
    pub fn from_query(query: &str) -> QueryArgs {
        QueryArgs {
            pairs: form_urlencoded::parse(query.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        }
    }

    /// 400 unless every parameter is one of `allowed`.
    pub fn only(&self, allowed: &[&str]) -> Result<&Self, Problem> {
        let unknown: BTreeSet<&str> = self
            .pairs
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| !allowed.contains(k))
            .collect();
        if let Some(first) = unknown.iter().next() {
            return Err(Problem::bad_request(format!(
                "unknown query parameter `{first}`; this endpoint takes: {}",
                allowed.join(", ")
            ))
            .with_field(*first));
        }
        Ok(self)
    }

    /// The value of a parameter given at most once.
    pub fn text(&self, name: &str) -> Result<Option<&str>, Problem> {
        let mut values = self.pairs.iter().filter(|(k, _)| k == name);
        let first = values.next().map(|(_, v)| v.as_str());
        if values.next().is_some() {
            return Err(
                Problem::bad_request(format!("query parameter `{name}` is given twice"))
                    .with_field(name),
            );
        }
        Ok(first)
    }

    /// A parameter parsed as `T`; `expected` describes a valid value.
    pub fn parse<T: FromStr>(&self, name: &str, expected: &str) -> Result<Option<T>, Problem> {
        match self.text(name)? {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                Problem::bad_request(format!("query parameter `{name}`: `{v}` is not {expected}"))
                    .with_field(name)
            }),
        }
    }

    /// Every value of a parameter that may repeat (`state=a&state=b`) or
    /// hold a comma-separated list (`state=a,b`).
    pub fn list(&self, name: &str) -> Vec<String> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == name)
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// A list parameter whose values parse as `T`.
    pub fn parse_list<T: FromStr>(&self, name: &str, expected: &str) -> Result<Vec<T>, Problem> {
        self.list(name)
            .into_iter()
            .map(|v| {
                v.parse().map_err(|_| {
                    Problem::bad_request(format!(
                        "query parameter `{name}`: `{v}` is not {expected}"
                    ))
                    .with_field(name)
                })
            })
            .collect()
    }

    /// A boolean parameter (`true`/`false`).
    pub fn boolean(&self, name: &str) -> Result<Option<bool>, Problem> {
        self.parse(name, "`true` or `false`")
    }

    /// A time parameter in RFC 3339.
    pub fn time(&self, name: &str) -> Result<Option<DateTime<Utc>>, Problem> {
        match self.text(name)? {
            None => Ok(None),
            Some(v) => DateTime::parse_from_rfc3339(v)
                .map(|t| Some(t.with_timezone(&Utc)))
                .map_err(|e| {
                    Problem::bad_request(format!(
                        "query parameter `{name}`: `{v}` is not an RFC 3339 time ({e}), e.g. 2026-01-31T00:00:00Z"
                    ))
                    .with_field(name)
                }),
        }
    }
}
