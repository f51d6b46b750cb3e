//! The execution API in process (`oneshot`, no socket) over a real
//! in-memory SQLite store, plus one request over loopback TCP.

#![allow(clippy::unwrap_used)]

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use chrono::{DateTime, Duration, Utc};
use pave_api::{
    AttemptScope, ExecutionLimits, ExecutionState, TokenSigner, bind_loopback, execution_router,
    serve,
};
use pave_core::{MapIndex, RunState, TaskState, TryNumber};
use pave_scheduler::ManualClock;
use pave_store::{
    Change, ChangeBatch, DataInterval, NewRun, NewTi, NewXcom, ParsedDag, RunKey, RunType,
    SqliteStore, Store, TiChange, TiKey,
};
use serde_json::{Value, json};
use std::sync::Arc;
use tower::ServiceExt;

const DAG: &str = r#"
dag_id: etl
params:
  epochs: {default: 3, type: integer}
  lr: 0.1
tasks:
  extract: {command: "echo '[1]'", output: json}
  shard:
    expand: {part: {xcom: extract}}
    command: echo {{ args.part }}
  grid:
    expand: {a: [1, 2], b: [x, y, z]}
    args: {lit: 7}
    command: echo
  report: {upstream: shard, command: echo}
"#;

const RUN_ID: &str = "scheduled__2026-01-02T00:00:00+00:00";
const XCOM_CAP: usize = 1024;
const MAX_MAP: usize = 10;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn now0() -> DateTime<Utc> {
    at("2026-01-03T00:00:00Z")
}

struct Env {
    store: Arc<SqliteStore>,
    clock: Arc<ManualClock>,
    signer: TokenSigner,
    router: Router,
    run: RunKey,
    manual_run: RunKey,
}

struct Reply {
    status: StatusCode,
    body: Value,
    www_authenticate: Option<String>,
}

impl Reply {
    fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or_else(|| {
            panic!("not an error body: {} {}", self.status, self.body);
        })
    }
}

impl Env {
    async fn new() -> Env {
        let store = Arc::new(SqliteStore::open_in_memory().await.unwrap());
        let dag = pave_spec::parse_yaml(DAG, "etl.yaml", &Default::default())
            .unwrap()
            .remove(0);
        let version = store
            .upsert_dag(ParsedDag {
                dag_id: dag.dag_id.clone(),
                fileloc: None,
                spec: pave_scheduler::dags::encode(&dag),
                parsed_at: now0(),
                paused_at_creation: false,
            })
            .await
            .unwrap()
            .version
            .id;
        let tasks: Vec<NewTi> = dag.tasks.iter().map(NewTi::from).collect();
        let new_run = |run_id: &str, logical: Option<DateTime<Utc>>, conf: Value| NewRun {
            dag_id: dag.dag_id.clone(),
            run_id: run_id.into(),
            dag_version_id: version,
            run_type: if logical.is_some() {
                RunType::Scheduled
            } else {
                RunType::Manual
            },
            state: RunState::Running,
            logical_date: logical,
            data_interval: logical.map(|start| DataInterval {
                start,
                end: start + Duration::days(1),
            }),
            run_after: at("2026-01-03T00:00:00Z"),
            conf,
            tasks: tasks.clone(),
        };
        let run = store
            .create_run(
                now0(),
                new_run(
                    RUN_ID,
                    Some(at("2026-01-02T00:00:00Z")),
                    json!({"epochs": 5}),
                ),
            )
            .await
            .unwrap();
        let manual_run = store
            .create_run(now0(), new_run("manual__1", None, json!({})))
            .await
            .unwrap();

        let mut batch = ChangeBatch::new(now0());
        for (r, value) in [(run, json!(["s0", "s1"])), (manual_run, json!(["m0"]))] {
            batch.push(NewXcom {
                ti: TiKey::unmapped(r, "extract"),
                key: "return_value".into(),
                value,
            });
        }
        batch.push(Change::ExpandMapped {
            run,
            task_id: "grid".into(),
            count: 6,
        });
        batch.push(Change::ExpandMapped {
            run,
            task_id: "shard".into(),
            count: 2,
        });
        for i in [1, 0] {
            batch.push(NewXcom {
                ti: TiKey::new(run, "shard", MapIndex(i)),
                key: "return_value".into(),
                value: json!(format!("r{i}")),
            });
        }
        store.apply(batch).await.unwrap();

        let clock = Arc::new(ManualClock::new(now0()));
        let signer = TokenSigner::new([42; 32]);
        let state = ExecutionState::new(
            store.clone(),
            signer.clone(),
            clock.clone(),
            ExecutionLimits {
                xcom_max_bytes: XCOM_CAP,
                max_map_length: MAX_MAP,
            },
        );
        let router = Router::new().nest("/execution/v1", execution_router(state));
        let env = Env {
            store,
            clock,
            signer,
            router,
            run,
            manual_run,
        };
        for (task, index) in [("grid", 4), ("shard", 1), ("extract", -1), ("report", -1)] {
            env.start(run, task, index).await;
        }
        env.start(manual_run, "report", -1).await;
        env
    }

    /// Moves a task instance to running with try 1.
    async fn start(&self, run: RunKey, task: &str, index: i32) {
        let change = TiChange::new(TiKey::new(run, task, MapIndex(index)), TaskState::Running)
            .try_number(TryNumber(1))
            .start_date(now0());
        self.store
            .apply(ChangeBatch::one(now0(), change))
            .await
            .unwrap();
    }

    fn token_for(&self, run: RunKey, run_id: &str, task: &str, index: i32, try_: u32) -> String {
        let scope = AttemptScope {
            dag_id: "etl".into(),
            run_id: run_id.into(),
            run,
            task_id: task.into(),
            map_index: MapIndex(index),
            try_number: TryNumber(try_),
        };
        self.signer.issue(&scope, now0() + Duration::hours(1))
    }

    fn token(&self, task: &str, index: i32) -> String {
        self.token_for(self.run, RUN_ID, task, index, 1)
    }

    async fn call(
        &self,
        method: &str,
        uri: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> Reply {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("/execution/v1{uri}"));
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = match body {
            Some(b) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(b.to_owned())),
            None => req.body(Body::empty()),
        }
        .unwrap();
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let www_authenticate = resp
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap().to_owned());
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                panic!(
                    "{method} {uri}: body is not JSON ({e}): {}",
                    String::from_utf8_lossy(&bytes)
                )
            })
        };
        Reply {
            status,
            body,
            www_authenticate,
        }
    }

    async fn get(&self, uri: &str, token: &str) -> Reply {
        self.call("GET", uri, Some(token), None).await
    }

    async fn put(&self, uri: &str, token: &str, body: &str) -> Reply {
        self.call("PUT", uri, Some(token), Some(body)).await
    }

    async fn post(&self, uri: &str, token: &str, body: &str) -> Reply {
        self.call("POST", uri, Some(token), Some(body)).await
    }
}

// ---------------------------------------------------------------- context

#[tokio::test]
async fn context_of_a_mapped_instance_with_literal_expansion() {
    let env = Env::new().await;
    let r = env.get("/ti/context", &env.token("grid", 4)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.body,
        json!({
            "dag_id": "etl",
            "run_id": RUN_ID,
            "task_id": "grid",
            "map_index": 4,
            "try_number": 1,
            "logical_date": "2026-01-02T00:00:00+00:00",
            "data_interval_start": "2026-01-02T00:00:00+00:00",
            "data_interval_end": "2026-01-03T00:00:00+00:00",
            "ds": "2026-01-02",
            "ds_nodash": "20260102",
            "ts": "2026-01-02T00:00:00+00:00",
            "run_after": "2026-01-03T00:00:00+00:00",
            // conf overrides the declared default; undeclared conf keys stay in conf.
            "params": {"epochs": 5, "lr": 0.1},
            "conf": {"epochs": 5},
            // index 4 of a(1,2) x b(x,y,z), b fastest; `lit` is not mapped.
            "mapped_args": {"a": 2, "b": "y"},
        })
    );
}

#[tokio::test]
async fn context_mapped_args_from_an_upstream_xcom() {
    let env = Env::new().await;
    let r = env.get("/ti/context", &env.token("shard", 1)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["mapped_args"], json!({"part": "s1"}));
}

#[tokio::test]
async fn context_of_a_run_without_logical_date() {
    let env = Env::new().await;
    let token = env.token_for(env.manual_run, "manual__1", "report", -1, 1);
    let r = env.get("/ti/context", &token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    for field in [
        "logical_date",
        "data_interval_start",
        "data_interval_end",
        "ds",
        "ds_nodash",
        "ts",
    ] {
        assert_eq!(r.body[field], Value::Null, "{field}");
    }
    assert_eq!(r.body["params"], json!({"epochs": 3, "lr": 0.1}));
    assert_eq!(r.body["conf"], json!({}));
    assert_eq!(r.body["mapped_args"], json!({}));
    assert_eq!(r.body["map_index"], json!(-1));
}

// ---------------------------------------------------------------- XCom reads

#[tokio::test]
async fn xcom_reads() {
    let env = Env::new().await;
    let t = env.token("report", -1);

    let r = env.get("/xcom/extract", &t).await;
    assert_eq!(
        (r.status, r.body),
        (StatusCode::OK, json!({"value": ["s0", "s1"]}))
    );
    let r = env.get("/xcom/extract?key=return_value", &t).await;
    assert_eq!(r.body, json!({"value": ["s0", "s1"]}));

    // A mapped task without map_index: every instance's value, in order.
    let r = env.get("/xcom/shard", &t).await;
    assert_eq!(
        (r.status, r.body),
        (StatusCode::OK, json!({"value": ["r0", "r1"]}))
    );
    let r = env.get("/xcom/shard?map_index=1", &t).await;
    assert_eq!(r.body, json!({"value": "r1"}));

    // Another run's XComs are out of reach: the manual run's token sees its own.
    let manual = env.token_for(env.manual_run, "manual__1", "report", -1, 1);
    let r = env.get("/xcom/extract", &manual).await;
    assert_eq!(r.body, json!({"value": ["m0"]}));
    let r = env.get("/xcom/shard", &manual).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
}

#[tokio::test]
async fn missing_xcoms_are_404_naming_task_and_key() {
    let env = Env::new().await;
    let t = env.token("report", -1);
    let r = env.get("/xcom/extract?key=metrics", &t).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(
        r.error().contains("`metrics`") && r.error().contains("`extract`"),
        "{}",
        r.error()
    );
    let r = env.get("/xcom/shard?map_index=7", &t).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.error().contains("map index 7"), "{}", r.error());
    let r = env.get("/xcom/grid", &t).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.error().contains("mapped task `grid`"), "{}", r.error());
    let r = env.get("/xcom/nope", &t).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.error().contains("no task `nope`"), "{}", r.error());
    let r = env.get("/xcom/extract?map_index=x", &t).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
}

// ---------------------------------------------------------------- XCom writes

#[tokio::test]
async fn pushed_xcoms_are_readable() {
    let env = Env::new().await;
    let grid = env.token("grid", 4);
    let r = env
        .put("/xcom/metrics", &grid, r#"{"value": {"acc": 0.9}}"#)
        .await;
    assert_eq!((r.status, r.body), (StatusCode::NO_CONTENT, Value::Null));
    let t = env.token("report", -1);
    let r = env.get("/xcom/grid?key=metrics&map_index=4", &t).await;
    assert_eq!(r.body, json!({"value": {"acc": 0.9}}));
    let r = env.get("/xcom/grid?key=metrics", &t).await;
    assert_eq!(r.body, json!({"value": [{"acc": 0.9}]}));

    // Replacing a value; null is a value.
    let r = env.put("/xcom/metrics", &grid, r#"{"value": null}"#).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = env.get("/xcom/grid?key=metrics&map_index=4", &t).await;
    assert_eq!(r.body, json!({"value": null}));

    // The return value of a mapping source: a list within max_map_length.
    let r = env
        .put(
            "/xcom/return_value",
            &env.token("extract", -1),
            r#"{"value": [1, 2, 3]}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
}

#[tokio::test]
async fn oversized_xcom_is_413_with_the_way_out() {
    let env = Env::new().await;
    let big = "x".repeat(XCOM_CAP);
    let body = json!({ "value": big }).to_string();
    let r = env.put("/xcom/blob", &env.token("grid", 4), &body).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        r.error(),
        format!(
            "the XCom `blob` of task `grid` is {} bytes, over the limit of {XCOM_CAP} bytes; \
             write the data to object storage (or a file) and push its URI instead, \
             or raise the limit with PAVE_XCOM_MAX_BYTES",
            XCOM_CAP + 2
        )
    );
    // Exactly at the cap is fine (compact JSON, quotes included).
    let body = json!({ "value": "x".repeat(XCOM_CAP - 2) }).to_string();
    let r = env.put("/xcom/blob", &env.token("grid", 4), &body).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);

    // Bodies over the request limit are refused before they are parsed.
    let huge = json!({ "value": "x".repeat(pave_api::MAX_BODY_BYTES) }).to_string();
    let r = env.put("/xcom/blob", &env.token("grid", 4), &huge).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(r.error().contains("request body"), "{}", r.error());
}

#[tokio::test]
async fn bad_put_bodies_and_keys_are_400() {
    let env = Env::new().await;
    let t = env.token("grid", 4);
    for body in [
        "not json",
        "[1]",
        "42",
        r#"{"val": 1}"#,
        r#"{"value": 1, "extra": 2}"#,
        "",
    ] {
        let r = env.put("/xcom/k", &t, body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body:?}: {}", r.body);
        assert!(r.error().contains("\"value\""), "{body:?}: {}", r.error());
    }
    for path in ["/xcom/a%2Fb", "/xcom/a/b", "/xcom/", "/xcom"] {
        let r = env.put(path, &t, r#"{"value": 1}"#).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}: {}", r.body);
    }
    let r = env.put("/xcom/a%2Fb", &t, r#"{"value": 1}"#).await;
    assert!(r.error().contains("`a/b` contains `/`"), "{}", r.error());
    let r = env.get("/xcom/", &t).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
}

#[tokio::test]
async fn a_mapping_source_must_push_a_list_within_max_map_length() {
    let env = Env::new().await;
    let t = env.token("extract", -1);
    let r = env
        .put("/xcom/return_value", &t, r#"{"value": "s0"}"#)
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.error().contains("`shard`"), "{}", r.error());
    let many = json!({ "value": (0..=MAX_MAP).collect::<Vec<_>>() }).to_string();
    let r = env.put("/xcom/return_value", &t, &many).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.error().contains("max_map_length"), "{}", r.error());
    // Nothing was stored.
    let r = env.get("/xcom/extract", &t).await;
    assert_eq!(r.body, json!({"value": ["s0", "s1"]}));
}

// ---------------------------------------------------------------- render

#[tokio::test]
async fn render_uses_the_attempt_context() {
    let env = Env::new().await;
    let t = env.token("grid", 4);
    let tpl = json!({
        "template": "{{ ds }} {{ params.epochs }} {{ args.a }}{{ args.b }} {{ args.lit }} \
                     {{ ti.map_index }} {{ ti.xcom_pull(task_ids='extract') }}"
    });
    let r = env.post("/render", &t, &tpl.to_string()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.body,
        json!({"rendered": "2026-01-02 5 2y 7 4 ['s0', 's1']"})
    );
}

#[tokio::test]
async fn render_errors_are_422_naming_the_variable() {
    let env = Env::new().await;
    let t = env.token("grid", 4);
    let r = env
        .post("/render", &t, r#"{"template": "{{ nope }}"}"#)
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.error().contains("`nope`"), "{}", r.error());
    let r = env.post("/render", &t, r#"{"template": "{% if %}"}"#).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    let r = env.post("/render", &t, r#"{"template": 3}"#).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    let r = env.post("/render", &t, r#"{"tpl": "x"}"#).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
}

// ---------------------------------------------------------------- auth

#[tokio::test]
async fn requests_without_a_valid_token_are_401() {
    let env = Env::new().await;
    let r = env.call("GET", "/ti/context", None, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.error().contains("missing"), "{}", r.error());
    assert_eq!(r.www_authenticate.as_deref(), Some("Bearer"));
    // The token is checked before anything else about the request.
    let r = env.call("PUT", "/xcom/a%2Fb", None, Some("not json")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);

    let r = env.get("/ti/context", "garbage").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.error().contains("malformed"), "{}", r.error());

    let mut req = Request::builder()
        .uri("/execution/v1/ti/context")
        .header(header::AUTHORIZATION, "Basic dXNlcjpwdw==")
        .body(Body::empty())
        .unwrap();
    let resp = env.router.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    req = Request::builder()
        .uri("/execution/v1/ti/context")
        .header(header::AUTHORIZATION, "Bearer ")
        .body(Body::empty())
        .unwrap();
    let resp = env.router.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    // A token for another attempt with this one's signature.
    let good = env.token("grid", 4);
    let other = env.token("report", -1);
    let forged = format!(
        "{}.{}",
        other.split_once('.').unwrap().0,
        good.split_once('.').unwrap().1
    );
    let r = env.get("/ti/context", &forged).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.error().contains("bad signature"), "{}", r.error());

    let stranger = TokenSigner::new([1; 32]).issue(
        &AttemptScope {
            dag_id: "etl".into(),
            run_id: RUN_ID.into(),
            run: env.run,
            task_id: "grid".into(),
            map_index: MapIndex(4),
            try_number: TryNumber(1),
        },
        now0() + Duration::hours(1),
    );
    let r = env.get("/ti/context", &stranger).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.error().contains("bad signature"), "{}", r.error());

    env.clock.advance(Duration::hours(2));
    let r = env.get("/ti/context", &good).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.error().contains("expired"), "{}", r.error());
    // The same holds for every endpoint.
    let r = env.put("/xcom/k", &good, r#"{"value": 1}"#).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = env.post("/render", &good, r#"{"template": "x"}"#).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = env.get("/xcom/extract", &good).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn attempts_that_are_not_running_are_409() {
    let env = Env::new().await;
    // A token for try 2 while try 1 runs.
    let t2 = env.token_for(env.run, RUN_ID, "grid", 4, 2);
    let r = env.get("/ti/context", &t2).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(
        r.error(),
        "the attempt is no longer running (state running, try 1)"
    );

    // The attempt ended.
    let t = env.token("grid", 4);
    let done = TiChange::new(TiKey::new(env.run, "grid", MapIndex(4)), TaskState::Success)
        .end_date(now0());
    env.store
        .apply(ChangeBatch::one(now0(), done))
        .await
        .unwrap();
    for r in [
        env.get("/ti/context", &t).await,
        env.put("/xcom/k", &t, r#"{"value": 1}"#).await,
        env.post("/render", &t, r#"{"template": "x"}"#).await,
        env.get("/xcom/extract", &t).await,
    ] {
        assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
        assert_eq!(
            r.error(),
            "the attempt is no longer running (state success, try 1)"
        );
    }

    // A task instance that was never started.
    let t = env.token("grid", 0);
    let r = env.get("/ti/context", &t).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(
        r.error(),
        "the attempt is no longer running (state none, try 0)"
    );

    // A task instance that does not exist.
    let t = env.token("grid", 99);
    let r = env.get("/ti/context", &t).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
}

#[tokio::test]
async fn an_attempt_still_queued_with_the_tokens_try_is_starting() {
    // The supervisor was spawned (it holds the token) and the scheduler has
    // not committed `running` yet: a forked task may ask that early.
    let env = Env::new().await;
    let queued = TiChange::new(TiKey::new(env.run, "grid", MapIndex(0)), TaskState::Queued)
        .try_number(TryNumber(1));
    env.store
        .apply(ChangeBatch::one(now0(), queued))
        .await
        .unwrap();
    let t1 = env.token("grid", 0);
    let r = env.get("/ti/context", &t1).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // A write too: the scheduler carries the `running` write with its next
    // transaction, and the value must not wait for it.
    let r = env.put("/xcom/k", &t1, r#"{"value": 1}"#).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let ti = TiKey::new(env.run, "grid", MapIndex(0));
    assert_eq!(
        env.store.get_xcom(&ti, "k").await.unwrap().value,
        serde_json::json!(1)
    );
    // The write left the task instance as it was: queued, try 1, so the
    // scheduler's own `running` write (expecting queued) still lands.
    let stored = env.store.get_ti(&ti).await.unwrap();
    assert_eq!(
        (stored.state, stored.try_number),
        (TaskState::Queued, TryNumber(1))
    );

    // Another try's token is refused, as for a running attempt.
    let t2 = env.token_for(env.run, RUN_ID, "grid", 0, 2);
    let r = env.get("/ti/context", &t2).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(
        r.error(),
        "the attempt is no longer running (state queued, try 1)"
    );
}

#[tokio::test]
async fn unknown_paths_and_methods_answer_json() {
    let env = Env::new().await;
    let t = env.token("grid", 4);
    let r = env.get("/nope", &t).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.error().contains("/nope"), "{}", r.error());
    let r = env.call("DELETE", "/ti/context", Some(&t), None).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(r.error().contains("DELETE"), "{}", r.error());
}

// ---------------------------------------------------------------- over TCP

#[tokio::test]
async fn serves_on_loopback() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let env = Env::new().await;
    let (listener, addr) = bind_loopback(0).await.unwrap();
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, env.router.clone(), async {
        let _ = stopped.await;
    }));

    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET /execution/v1/ti/context HTTP/1.1\r\nHost: {addr}\r\n\
         Authorization: Bearer {}\r\nConnection: close\r\n\r\n",
        env.token("grid", 4)
    );
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    let (_, body) = response.split_once("\r\n\r\n").unwrap();
    let body: Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["ds"], json!("2026-01-02"));
    assert_eq!(body["mapped_args"], json!({"a": 2, "b": "y"}));

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
