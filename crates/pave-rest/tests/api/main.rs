//! In-process tests of the REST API: the router is a `tower::Service`,
//! called with `oneshot`, over an in-memory store with a manual clock.
//!
//! `Api::new()` sets up three DAGs, one user per role with an API token,
//! and a logs folder; the test modules cover the endpoints (`resources`),
//! authentication and roles (`auth`), bad input (`bad_input`) and the
//! OpenAPI document (`openapi`).

mod auth;
mod bad_input;
mod openapi;
mod resources;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use chrono::{DateTime, TimeZone, Utc};
use http_body_util::BodyExt;
use pave_core::{DagId, TaskState, TryNumber};
use pave_rest::auth::{issue_api_token, secret};
use pave_rest::{RestConfig, RestState, SchedulerLink};
use pave_scheduler::ManualClock;
use pave_store::{
    ApiStore, AuthStore, ChangeBatch, NewUser, ParsedDag, Role, RunFilter, SqliteStore, Store,
    TiChange, TiKey, TryRecord,
};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use tower::ServiceExt;

/// The DAG most tests use: `extract >> train >> report`, with a param.
const ETL: &str = "
dag_id: etl
description: the test pipeline
tags: [ml, nightly]
params:
  epochs: {default: 1, type: integer}
tasks:
  extract: {command: echo extract}
  train: {command: echo train, upstream: extract, retries: 2}
  report: {command: echo report, upstream: train}
";

const OTHERS: [&str; 2] = [
    "
dag_id: hello
tags: [demo]
tasks:
  say: {command: echo hello}
",
    "
dag_id: zeta
tasks:
  only: {command: echo zeta}
",
];

/// The start of the manual clock.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0)
        .single()
        .expect("a valid time")
}

/// A response, read whole.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.text)
    }
}

impl Reply {
    /// Asserts the status, and that an error is a problem+json naming `needle`.
    pub fn expect(&self, status: StatusCode) -> &Self {
        assert_eq!(self.status, status, "unexpected reply: {self:?}");
        if !status.is_success() {
            let ct = self
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            assert_eq!(ct, "application/problem+json", "{self:?}");
            assert_eq!(self.body["status"], status.as_u16(), "{self:?}");
            assert!(self.body["detail"].as_str().is_some_and(|d| !d.is_empty()));
        }
        self
    }
    /// Asserts the problem's detail mentions `needle`.
    pub fn mentions(&self, needle: &str) -> &Self {
        let detail = self.body["detail"].as_str().unwrap_or("");
        assert!(
            detail.contains(needle),
            "the problem should mention `{needle}`: {self:?}"
        );
        self
    }
}

/// A request to build.
pub struct Call {
    pub method: Method,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
}

impl Call {
    pub fn new(method: Method, path: &str) -> Call {
        Call {
            method,
            path: path.to_owned(),
            headers: Vec::new(),
            body: None,
        }
    }
    pub fn bearer(mut self, token: &str) -> Call {
        self.headers
            .push(("authorization".into(), format!("Bearer {token}")));
        self
    }
    pub fn header(mut self, name: &str, value: &str) -> Call {
        self.headers.push((name.into(), value.into()));
        self
    }
    pub fn json(mut self, body: &Value) -> Call {
        self.headers
            .push(("content-type".into(), "application/json".into()));
        self.body = Some(serde_json::to_vec(body).expect("serialize"));
        self
    }
    pub fn raw(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> Call {
        self.headers
            .push(("content-type".into(), content_type.into()));
        self.body = Some(body.into());
        self
    }
}

/// The API under test and what it runs on.
pub struct Api {
    pub app: Router,
    pub store: Arc<SqliteStore>,
    pub clock: Arc<ManualClock>,
    pub link: SchedulerLink,
    pub logs: tempfile::TempDir,
    pub dags_dir: tempfile::TempDir,
    /// API token per role.
    pub tokens: BTreeMap<Role, String>,
}

impl Api {
    pub async fn new() -> Api {
        Api::with_config(RestConfig::default()).await
    }

    pub async fn with_config(config: RestConfig) -> Api {
        let store = Arc::new(SqliteStore::open_in_memory().await.expect("store"));
        let clock = Arc::new(ManualClock::new(t0()));
        let logs = tempfile::tempdir().expect("logs dir");
        let dags_dir = tempfile::tempdir().expect("dags dir");
        for text in std::iter::once(ETL).chain(OTHERS) {
            let dag = pave_spec::load_file("dag.yaml", text, &Default::default())
                .expect("a valid DAG")
                .remove(0);
            let file = dags_dir.path().join(format!("{}.yaml", dag.dag_id));
            std::fs::write(&file, text).expect("write the DAG file");
            store
                .upsert_dag(ParsedDag {
                    dag_id: dag.dag_id.clone(),
                    fileloc: Some(file.display().to_string()),
                    spec: pave_scheduler::dags::encode(&dag),
                    parsed_at: t0(),
                    paused_at_creation: false,
                })
                .await
                .expect("store the DAG");
        }
        let link = SchedulerLink::default();
        let api_store: Arc<dyn ApiStore> = store.clone();
        let state = RestState::new(api_store, clock.clone(), logs.path(), link.clone(), config);
        let mut tokens = BTreeMap::new();
        for role in Role::ALL {
            let user = store
                .create_user(NewUser {
                    username: role.as_str().to_owned(),
                    role,
                    password_hash: None,
                    created_at: t0(),
                })
                .await
                .expect("create a user");
            let (token, _) = issue_api_token(store.as_ref(), &user, "tests", t0(), None)
                .await
                .expect("issue a token");
            tokens.insert(role, token);
        }
        Api {
            app: pave_rest::router(state),
            store,
            clock,
            link,
            logs,
            dags_dir,
            tokens,
        }
    }

    pub fn token(&self, role: Role) -> &str {
        &self.tokens[&role]
    }

    /// Sends a request and reads the whole answer.
    pub async fn send(&self, call: Call) -> Reply {
        let mut req = Request::builder().method(call.method).uri(&call.path);
        for (k, v) in &call.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let req = req
            .body(call.body.map(Body::from).unwrap_or_else(Body::empty))
            .expect("a request");
        let response = self.app.clone().oneshot(req).await.expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("the body")
            .to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            text,
        }
    }

    /// GET as `role`.
    pub async fn get(&self, role: Role, path: &str) -> Reply {
        self.send(Call::new(Method::GET, path).bearer(self.token(role)))
            .await
    }

    /// A JSON request as `role`.
    pub async fn with_body(&self, role: Role, method: Method, path: &str, body: Value) -> Reply {
        self.send(Call::new(method, path).bearer(self.token(role)).json(&body))
            .await
    }

    /// Triggers `etl` as the admin and returns the run id.
    pub async fn trigger(&self, run_id: &str) -> String {
        let r = self
            .with_body(
                Role::Admin,
                Method::POST,
                "/api/v1/dags/etl/dagRuns",
                json!({"dag_run_id": run_id, "logical_date": self.clock_now_plus(run_id)}),
            )
            .await;
        r.expect(StatusCode::OK);
        r.body["dag_run_id"].as_str().expect("a run id").to_owned()
    }

    /// A distinct logical date per run id (runs of a DAG need distinct dates).
    fn clock_now_plus(&self, run_id: &str) -> String {
        let n = run_id.bytes().map(i64::from).sum::<i64>();
        (t0() + chrono::Duration::minutes(n)).to_rfc3339()
    }

    /// Moves a task instance of an `etl` run as the scheduler would: to
    /// `state` at try `try_number`, with a try row.
    pub async fn set_ti(&self, run_id: &str, task: &str, state: TaskState, try_number: u32) {
        let run = self
            .store
            .find_run(&DagId::new("etl"), &run_id.into())
            .await
            .expect("the run");
        let key = TiKey::unmapped(run.key, task);
        let mut batch = ChangeBatch::new(t0());
        batch.push(
            TiChange::new(key.clone(), state)
                .try_number(TryNumber(try_number))
                .start_date(t0()),
        );
        batch.push(TryRecord::new(key, TryNumber(try_number), state));
        self.store.apply(batch).await.expect("apply");
    }

    /// Where the log of a try of an `etl` task instance lives.
    pub async fn log_path(&self, run_id: &str, task: &str, try_number: u32) -> PathBuf {
        pave_scheduler::paths::log_path(
            self.logs.path(),
            &DagId::new("etl"),
            &run_id.into(),
            &task.into(),
            pave_core::MapIndex::UNMAPPED,
            try_number,
        )
    }

    /// Everything a write could change, as one comparable value.
    pub async fn snapshot(&self) -> Value {
        let mut runs = Vec::new();
        for r in self
            .store
            .list_runs(&RunFilter::default())
            .await
            .expect("runs")
        {
            let tis: Vec<Value> = self
                .store
                .run_tis(r.key)
                .await
                .expect("tis")
                .iter()
                .map(|t| json!([t.key.task_id, t.state, t.try_number.0, t.max_tries]))
                .collect();
            runs.push(json!([r.run_id, r.state, r.note, tis]));
        }
        let dags: Vec<Value> = self
            .store
            .list_dags()
            .await
            .expect("dags")
            .iter()
            .map(|d| json!([d.dag_id, d.is_paused]))
            .collect();
        let pools: Vec<Value> = self
            .store
            .list_pools()
            .await
            .expect("pools")
            .iter()
            .map(|p| json!([p.name, p.slots, p.description]))
            .collect();
        let users: Vec<Value> = self
            .store
            .list_users()
            .await
            .expect("users")
            .iter()
            .map(|u| json!([u.username, u.role, u.password_hash.is_some()]))
            .collect();
        json!({"runs": runs, "dags": dags, "pools": pools, "users": users})
    }

    /// Gives `username` a password (argon2) so it can log in.
    pub async fn set_password(&self, username: &str, password: &str) {
        let hash = secret::hash_password(password).expect("hash");
        self.store
            .set_password(username, &hash)
            .await
            .expect("set the password");
    }
}
