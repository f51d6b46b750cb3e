//! In-process tests of the web UI: the router is a `tower::Service`, called
//! with `oneshot`, over an in-memory store with a manual clock. Sessions are
//! written straight into the store (the login tests log in through the
//! form), so the tests need no argon2 hashing on every request.
//!
//! Modules: `login` (the login form's CSRF protection), `grid` (the grid
//! fragment's cache and ETags: never a stale state), `bad_input` (what the
//! UI does with malformed, unknown, oversized and traversing requests).

mod bad_input;
mod grid;
mod login;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use chrono::{DateTime, TimeZone, Utc};
use http_body_util::BodyExt;
use pave_core::{DagId, MapIndex, RunId, TaskState, TryNumber};
use pave_rest::auth::secret;
use pave_rest::{RestConfig, RestState, SchedulerLink};
use pave_scheduler::ManualClock;
use pave_store::{
    ApiStore, AuthStore, ChangeBatch, NewUser, NewXcom, ParsedDag, Role, SessionRecord,
    SqliteStore, Store, TiChange, TiKey, TryRecord,
};
use std::sync::Arc;
use tower::ServiceExt;

/// A DAG with a task group, a mapped task and params, and text that must be
/// escaped wherever it is shown.
const ETL: &str = r#"
dag_id: etl
description: "the <script>alert('dag')</script> pipeline"
tags: [ml, "<b>bold</b>"]
params:
  epochs: {default: 1, type: integer, minimum: 1, description: "how many <i>epochs</i>"}
  model: {default: "<script>alert('param')</script>", type: string}
  fast: {default: false, type: boolean}
task_groups:
  prep: {tooltip: preparation}
tasks:
  prep.extract: {command: "echo extract {{ params.epochs }}", group: prep}
  prep.clean: {command: echo clean, group: prep, upstream: prep.extract}
  train:
    upstream: prep.clean
    expand: {shard: [1, 2, 3]}
    command: echo train
  report: {command: echo report, upstream: train}
"#;

const HELLO: &str = "
dag_id: hello
tags: [demo]
tasks:
  say: {command: echo hello}
";

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0)
        .single()
        .expect("a valid time")
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:?}\n{}", self.status, self.headers, self.text)
    }
}

impl Reply {
    fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// A logged-in browser: its session cookie and CSRF token.
struct Session {
    cookie: String,
    csrf: String,
}

struct Ui {
    app: Router,
    store: Arc<SqliteStore>,
    logs: tempfile::TempDir,
    _dags: tempfile::TempDir,
    sessions: Vec<(Role, Session)>,
    clock: Arc<ManualClock>,
}

impl Ui {
    async fn new() -> Ui {
        let store = Arc::new(SqliteStore::open_in_memory().await.expect("store"));
        let clock = Arc::new(ManualClock::new(t0()));
        let logs = tempfile::tempdir().expect("logs dir");
        let dags = tempfile::tempdir().expect("dags dir");
        for text in [ETL, HELLO] {
            let dag = pave_spec::load_file("dag.yaml", text, &Default::default())
                .expect("a valid DAG")
                .remove(0);
            let file = dags.path().join(format!("{}.yaml", dag.dag_id));
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
        let mut sessions = Vec::new();
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
            let cookie = format!("cookie-of-{role}");
            let csrf = format!("csrf-of-{role}");
            store
                .create_session(SessionRecord {
                    session_hash: secret::sha256_hex(&cookie),
                    user_id: user.id,
                    csrf_token: csrf.clone(),
                    created_at: t0(),
                    expires_at: t0() + chrono::Duration::hours(12),
                })
                .await
                .expect("create a session");
            sessions.push((role, Session { cookie, csrf }));
        }
        let api_store: Arc<dyn ApiStore> = store.clone();
        let state = RestState::new(
            api_store,
            clock.clone(),
            logs.path(),
            SchedulerLink::default(),
            RestConfig::default(),
        );
        Ui {
            app: pave_ui::ui_router(state),
            store,
            logs,
            _dags: dags,
            sessions,
            clock,
        }
    }

    /// Another UI over the same store, clock and logs, with empty caches:
    /// what a freshly started pave would show now.
    fn fresh_app(&self) -> Router {
        let api_store: Arc<dyn ApiStore> = self.store.clone();
        let state = RestState::new(
            api_store,
            self.clock.clone(),
            self.logs.path(),
            SchedulerLink::default(),
            RestConfig::default(),
        );
        pave_ui::ui_router(state)
    }

    fn session(&self, role: Role) -> &Session {
        &self
            .sessions
            .iter()
            .find(|(r, _)| *r == role)
            .expect("a session per role")
            .1
    }

    async fn send(&self, req: Request<Body>) -> Reply {
        let response = self.app.clone().oneshot(req).await.expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("the body")
            .to_bytes();
        Reply {
            status,
            headers,
            text: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    async fn get_as(&self, role: Option<Role>, path: &str) -> Reply {
        let mut req = Request::builder().method(Method::GET).uri(path);
        if let Some(role) = role {
            req = req.header(
                header::COOKIE,
                format!("pave_session={}", self.session(role).cookie),
            );
        }
        self.send(req.body(Body::empty()).expect("a request")).await
    }

    async fn get(&self, path: &str) -> Reply {
        self.get_as(Some(Role::Admin), path).await
    }

    /// POSTs a form as `role`; `csrf` adds the session's token.
    async fn post(&self, role: Role, path: &str, fields: &[(&str, &str)], csrf: bool) -> Reply {
        let mut form = form_urlencoded::Serializer::new(String::new());
        if csrf {
            form.append_pair("csrf_token", &self.session(role).csrf);
        }
        for (k, v) in fields {
            form.append_pair(k, v);
        }
        let req = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(
                header::COOKIE,
                format!("pave_session={}", self.session(role).cookie),
            )
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(form.finish()))
            .expect("a request");
        self.send(req).await
    }

    /// Triggers `etl` through the UI as the admin; returns the new run's id.
    async fn trigger(&self, fields: &[(&str, &str)]) -> String {
        let r = self
            .post(Role::Admin, "/dags/etl/trigger", fields, true)
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{r:?}");
        let runs = self
            .store
            .list_runs(&pave_store::RunFilter::dag("etl"))
            .await
            .expect("runs");
        runs.first().expect("a run").run_id.to_string()
    }

    /// Moves a task instance as the scheduler would, with a try row.
    async fn set_ti(&self, run_id: &str, task: &str, mi: i32, state: TaskState, try_number: u32) {
        let run = self
            .store
            .find_run(&DagId::new("etl"), &RunId::new(run_id))
            .await
            .expect("the run");
        let key = TiKey::new(run.key, task, MapIndex(mi));
        let mut batch = ChangeBatch::new(t0());
        batch.push(
            TiChange::new(key.clone(), state)
                .try_number(TryNumber(try_number))
                .start_date(t0()),
        );
        batch.push(TryRecord::new(key, TryNumber(try_number), state));
        self.store.apply(batch).await.expect("apply");
    }

    async fn ti_state(&self, run_id: &str, task: &str) -> TaskState {
        let run = self
            .store
            .find_run(&DagId::new("etl"), &RunId::new(run_id))
            .await
            .expect("the run");
        self.store
            .get_ti(&TiKey::unmapped(run.key, task))
            .await
            .expect("the task instance")
            .state
    }

    async fn paused(&self, dag: &str) -> bool {
        self.store
            .get_dag(&DagId::new(dag))
            .await
            .expect("the DAG")
            .is_paused
    }
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn anonymous_users_are_sent_to_the_login_page() {
    let ui = Ui::new().await;
    for path in ["/", "/dags/etl", "/dags/etl/trigger", "/dags/nope"] {
        let r = ui.get_as(None, path).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{path}: {r:?}");
        assert!(r.location().starts_with("/login?next="), "{path}: {r:?}");
    }
    // An htmx poll gets HX-Redirect, not a login page swapped into a fragment.
    let req = Request::builder()
        .uri("/ui/dags")
        .header("hx-request", "true")
        .header("hx-current-url", "http://127.0.0.1:8080/dags/etl?tab=grid")
        .body(Body::empty())
        .expect("a request");
    let r = ui.send(req).await;
    assert_eq!(
        r.headers.get("hx-redirect").and_then(|v| v.to_str().ok()),
        Some("/login?next=%2Fdags%2Fetl%3Ftab%3Dgrid"),
        "{r:?}"
    );
    // Anonymous POSTs change nothing.
    let req = Request::builder()
        .method(Method::POST)
        .uri("/dags/etl/pause")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from("paused=true"))
        .expect("a request");
    assert_eq!(ui.send(req).await.status, StatusCode::SEE_OTHER);
    assert!(!ui.paused("etl").await);
    // The login page and the assets need no session.
    let login = ui.get_as(None, "/login?next=/dags/etl").await;
    assert_eq!(login.status, StatusCode::OK);
    assert_eq!(login.headers[header::X_FRAME_OPTIONS], "DENY");
    assert!(
        login
            .text
            .contains(r#"name="next" value="&#x2f;dags&#x2f;etl""#),
        "{login:?}"
    );
    let css = ui.get_as(None, "/static/pave.css").await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(
        css.headers[header::CACHE_CONTROL]
            .to_str()
            .unwrap_or("")
            .contains("immutable")
    );
    assert_eq!(
        ui.get_as(None, "/static/nope.js").await.status,
        StatusCode::NOT_FOUND
    );
    // Browsers get assets and pages gzipped.
    let req = Request::builder()
        .uri("/static/htmx.min.js")
        .header(header::ACCEPT_ENCODING, "gzip")
        .body(Body::empty())
        .expect("a request");
    let gz = ui.send(req).await;
    assert_eq!(
        gz.headers
            .get(header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok()),
        Some("gzip"),
        "{:?}",
        gz.headers
    );
}

#[tokio::test]
async fn logging_in_sets_a_session_cookie_and_logging_out_ends_it() {
    let ui = Ui::new().await;
    let hash = secret::hash_password("s3cret").expect("hash");
    ui.store
        .set_password("admin", &hash)
        .await
        .expect("set the password");
    // The login page hands out the form's pre-session token.
    let (token_cookie, token) = login::login_token(&ui).await;
    let form = |pw: &str| {
        Request::builder()
            .method(Method::POST)
            .uri("/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::COOKIE, &token_cookie)
            .header("sec-fetch-site", "same-origin")
            .body(Body::from(format!(
                "username=admin&password={pw}&next=%2Fdags%2Fetl&csrf_token={}",
                enc(&token)
            )))
            .expect("a request")
    };
    let wrong = ui.send(form("nope")).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(
        wrong.text.contains("Wrong username or password"),
        "{wrong:?}"
    );
    let ok = ui.send(form("s3cret")).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{ok:?}");
    assert_eq!(ok.location(), "/dags/etl");
    let cookie = ok
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("pave_session="))
        .unwrap_or("")
        .to_owned();
    assert!(
        cookie.starts_with("pave_session=") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    let value = cookie.split(';').next().unwrap_or("").to_owned();
    let page = ui
        .send(
            Request::builder()
                .uri("/")
                .header(header::COOKIE, &value)
                .body(Body::empty())
                .expect("a request"),
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{page:?}");
    // Log out with the page's CSRF token.
    let csrf = page
        .text
        .split(r#"name="csrf_token" value=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a CSRF field on the page")
        .to_owned();
    let out = ui
        .send(
            Request::builder()
                .method(Method::POST)
                .uri("/logout")
                .header(header::COOKIE, &value)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(format!("csrf_token={}", enc(&csrf))))
                .expect("a request"),
        )
        .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER, "{out:?}");
    let after = ui
        .send(
            Request::builder()
                .uri("/")
                .header(header::COOKIE, &value)
                .body(Body::empty())
                .expect("a request"),
        )
        .await;
    assert_eq!(
        after.status,
        StatusCode::SEE_OTHER,
        "the session must be gone"
    );
}

#[tokio::test]
async fn every_page_renders_for_a_seeded_store() {
    let ui = Ui::new().await;
    let run = ui.trigger(&[]).await;
    let r = enc(&run);
    ui.set_ti(&run, "prep.extract", -1, TaskState::Success, 1)
        .await;
    ui.set_ti(&run, "prep.clean", -1, TaskState::Running, 1)
        .await;
    let log = pave_scheduler::paths::log_path(
        ui.logs.path(),
        &DagId::new("etl"),
        &RunId::new(run.as_str()),
        &"prep.extract".into(),
        MapIndex::UNMAPPED,
        1,
    );
    std::fs::create_dir_all(log.parent().expect("a folder")).expect("mkdir");
    std::fs::write(&log, "extracting\n<script>alert('log')</script>\n").expect("write a log");
    let run_key = ui
        .store
        .find_run(&DagId::new("etl"), &RunId::new(run.as_str()))
        .await
        .expect("the run")
        .key;
    ui.store
        .apply(ChangeBatch::one(
            t0(),
            NewXcom {
                ti: TiKey::unmapped(run_key, "prep.extract"),
                key: "return_value".into(),
                value: serde_json::json!({"rows": 42}),
            },
        ))
        .await
        .expect("an XCom");

    let pages: Vec<(String, Vec<&str>)> = vec![
        ("/".into(), vec!["etl", "hello", "demo", "dag-rows"]),
        ("/?tag=demo".into(), vec!["hello"]),
        ("/ui/dags?q=hel".into(), vec!["hello"]),
        (
            "/dags/etl".into(),
            vec!["id=\"grid\"", "prep", "train", "mapped"],
        ),
        (
            "/dags/etl?tab=grid&expand=prep,train".into(),
            vec!["extract", "clean", "aria-expanded=\"true\""],
        ),
        (
            "/ui/dags/etl/grid?expand=prep".into(),
            vec!["row-group", "clean"],
        ),
        (
            "/dags/etl?tab=graph".into(),
            vec!["id=\"graph\"", "dagre.min.js"],
        ),
        (
            "/dags/etl?tab=gantt".into(),
            vec!["gantt-row", "prep.extract"],
        ),
        (
            "/dags/etl?tab=code".into(),
            vec!["code-view", "prep.extract"],
        ),
        ("/dags/etl?tab=versions".into(), vec!["v1"]),
        ("/dags/etl/versions/1".into(), vec!["prep.extract"]),
        (
            "/dags/etl/trigger".into(),
            vec!["param.epochs", "param.fast", "type=\"number\""],
        ),
        (
            format!("/dags/etl/runs/{r}"),
            vec!["Gantt", "Mark success", "fast"],
        ),
        (format!("/ui/dags/etl/runs/{r}/gantt"), vec!["gantt"]),
        (
            format!("/dags/etl/runs/{r}/tasks/prep.extract"),
            vec!["data-log", "return_value", "42", "command"],
        ),
        (
            format!("/dags/etl/runs/{r}/tasks/prep.clean/-1"),
            vec!["running"],
        ),
        (
            format!("/dags/etl/runs/{r}/tasks/report/-1"),
            vec![
                "Why is this not running yet?",
                "waiting for upstream",
                "`train`",
            ],
        ),
        (
            format!("/ui/dags/etl/runs/{r}/tasks/report/-1/summary"),
            vec!["ti-summary"],
        ),
        (
            format!("/ui/dags/etl/runs/{r}/tasks/prep.extract/-1/logs/1?offset=0"),
            vec!["extracting", "end_of_log"],
        ),
        ("/ui/dags/etl/header".into(), vec!["dag-header"]),
    ];
    for (path, needles) in &pages {
        let reply = ui.get(path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {reply:?}");
        for n in needles {
            assert!(
                reply.text.contains(n),
                "{path} should contain {n:?}: {reply:?}"
            );
        }
    }
    let graph = ui.get(&format!("/ui/dags/etl/graph?run_id={r}")).await;
    let v: serde_json::Value = serde_json::from_str(&graph.text).expect("graph JSON");
    assert_eq!(v["nodes"].as_array().map(Vec::len), Some(4), "{v}");
    assert_eq!(v["groups"][0]["id"], "prep", "{v}");
    assert_eq!(v["run_id"], run.as_str());
}

#[tokio::test]
async fn unknown_things_are_404_pages() {
    let ui = Ui::new().await;
    for path in [
        "/dags/nope",
        "/dags/etl/runs/nope",
        "/dags/etl/versions/9",
        "/dags/etl/runs/nope/tasks/x",
        "/no/such/page",
    ] {
        let r = ui.get(path).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}: {r:?}");
        assert!(r.text.contains("<!doctype html>"), "{path}: an HTML page");
    }
    let r = ui.get("/dags/nope").await;
    assert!(r.text.contains("there is no DAG `nope`"), "{r:?}");
}

#[tokio::test]
async fn names_params_and_values_are_escaped() {
    let ui = Ui::new().await;
    let evil_run = "<img src=x onerror=alert(1)>";
    ui.trigger(&[("run_id", evil_run)]).await;
    let r = enc(evil_run);
    for path in [
        "/".to_owned(),
        "/dags/etl".to_owned(),
        "/dags/etl?tab=gantt".to_owned(),
        "/dags/etl?tab=code".to_owned(),
        "/dags/etl/trigger".to_owned(),
        format!("/dags/etl/runs/{r}"),
        format!("/dags/etl/runs/{r}/tasks/report"),
    ] {
        let reply = ui.get(&path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {reply:?}");
        for raw in ["<script>alert", "<img src=x", "<b>bold", "<i>epochs"] {
            assert!(
                !reply.text.contains(raw),
                "{path} shows {raw:?} unescaped: {reply:?}"
            );
        }
    }
    let page = ui.get("/dags/etl/trigger").await;
    assert!(page.text.contains("&lt;script&gt;alert("), "{page:?}");
    let grid = ui.get("/dags/etl").await;
    assert!(
        grid.text.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "{grid:?}"
    );
}

#[tokio::test]
async fn viewers_see_no_actions_and_cannot_post_them() {
    let ui = Ui::new().await;
    let run = ui.trigger(&[]).await;
    let r = enc(&run);
    ui.set_ti(&run, "report", -1, TaskState::Failed, 1).await;
    let list = ui.get_as(Some(Role::Viewer), "/").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(
        !list.text.contains("/trigger\""),
        "no trigger button for viewers"
    );
    assert!(
        list.text.contains("disabled"),
        "the pause switch is disabled"
    );
    let ti_page = ui
        .get_as(
            Some(Role::Viewer),
            &format!("/dags/etl/runs/{r}/tasks/report"),
        )
        .await;
    assert!(!ti_page.text.contains("Mark success"), "{ti_page:?}");

    let posts = [
        ("/dags/etl/pause".to_owned(), vec![("paused", "true")]),
        ("/dags/etl/trigger".to_owned(), vec![]),
        (
            format!("/dags/etl/runs/{r}/mark"),
            vec![("state", "success")],
        ),
        (format!("/dags/etl/runs/{r}/clear"), vec![]),
        (format!("/dags/etl/runs/{r}/tasks/report/-1/clear"), vec![]),
        (
            format!("/dags/etl/runs/{r}/tasks/report/-1/mark"),
            vec![("state", "success")],
        ),
    ];
    for (path, fields) in &posts {
        let reply = ui.post(Role::Viewer, path, fields, true).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{path}: {reply:?}");
        assert!(
            reply.text.contains("viewer"),
            "{path}: the page names the role"
        );
    }
    assert!(!ui.paused("etl").await);
    assert_eq!(ui.ti_state(&run, "report").await, TaskState::Failed);
    let runs = ui
        .store
        .list_runs(&pave_store::RunFilter::dag("etl"))
        .await
        .expect("runs");
    assert_eq!(runs.len(), 1, "the viewer's trigger created nothing");
    // A user (the least role that may) can.
    let ok = ui
        .post(
            Role::User,
            &format!("/dags/etl/runs/{r}/tasks/report/-1/mark"),
            &[("state", "success")],
            true,
        )
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{ok:?}");
    assert_eq!(ui.ti_state(&run, "report").await, TaskState::Success);
}

#[tokio::test]
async fn state_changing_forms_need_the_sessions_csrf_token() {
    let ui = Ui::new().await;
    let missing = ui
        .post(Role::Admin, "/dags/etl/pause", &[("paused", "true")], false)
        .await;
    assert_eq!(missing.status, StatusCode::FORBIDDEN, "{missing:?}");
    assert!(missing.text.contains("CSRF"));
    let wrong = ui
        .post(
            Role::Admin,
            "/dags/etl/pause",
            &[("paused", "true"), ("csrf_token", "forged")],
            false,
        )
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN, "{wrong:?}");
    // Another user's token is wrong too.
    let other = ui.session(Role::Op).csrf.clone();
    let cross = ui
        .post(
            Role::Admin,
            "/dags/etl/pause",
            &[("paused", "true"), ("csrf_token", &other)],
            false,
        )
        .await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN, "{cross:?}");
    assert!(!ui.paused("etl").await, "nothing changed");
    let ok = ui
        .post(
            Role::Admin,
            "/dags/etl/pause",
            &[("paused", "true"), ("next", "/dags/etl")],
            true,
        )
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{ok:?}");
    assert_eq!(ok.location(), "/dags/etl");
    assert!(ui.paused("etl").await);
    // htmx sends the token as a header and gets the new switch back.
    let req = Request::builder()
        .method(Method::POST)
        .uri("/dags/etl/pause")
        .header(
            header::COOKIE,
            format!("pave_session={}", ui.session(Role::Admin).cookie),
        )
        .header("x-csrf-token", ui.session(Role::Admin).csrf.as_str())
        .header("hx-request", "true")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from("paused=false"))
        .expect("a request");
    let r = ui.send(req).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert!(r.text.contains("role=\"switch\""), "{r:?}");
    assert!(!ui.paused("etl").await);
    // An off-site `next` is ignored.
    let r = ui
        .post(
            Role::Admin,
            "/dags/etl/pause",
            &[("paused", "false"), ("next", "//evil.example/")],
            true,
        )
        .await;
    assert_eq!(r.location(), "/");
}

#[tokio::test]
async fn the_trigger_form_builds_the_conf_from_the_params() {
    let ui = Ui::new().await;
    let bad = ui
        .post(
            Role::Admin,
            "/dags/etl/trigger",
            &[("param.epochs", "many")],
            true,
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad:?}");
    assert!(bad.text.contains("`many` is not a whole number"), "{bad:?}");
    let too_small = ui
        .post(
            Role::Admin,
            "/dags/etl/trigger",
            &[("param.epochs", "0")],
            true,
        )
        .await;
    assert_eq!(
        too_small.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{too_small:?}"
    );
    let run = ui
        .trigger(&[
            ("param.epochs", "5"),
            ("param.model", "tiny"),
            ("param.fast", "on"),
            ("conf", r#"{"extra": [1, 2]}"#),
            ("logical_date", "2026-02-03T04:05"),
        ])
        .await;
    let record = ui
        .store
        .find_run(&DagId::new("etl"), &RunId::new(run.as_str()))
        .await
        .expect("the run");
    assert_eq!(
        record.conf,
        serde_json::json!({"epochs": 5, "model": "tiny", "fast": true, "extra": [1, 2]})
    );
    assert_eq!(
        record.logical_date,
        Utc.with_ymd_and_hms(2026, 2, 3, 4, 5, 0).single()
    );
}

#[tokio::test]
async fn clear_and_mark_change_task_instances() {
    let ui = Ui::new().await;
    let run = ui.trigger(&[]).await;
    let r = enc(&run);
    ui.set_ti(&run, "report", -1, TaskState::Failed, 1).await;
    let cleared = ui
        .post(
            Role::Admin,
            &format!("/dags/etl/runs/{r}/tasks/report/-1/clear"),
            &[],
            true,
        )
        .await;
    assert_eq!(cleared.status, StatusCode::SEE_OTHER, "{cleared:?}");
    assert_eq!(ui.ti_state(&run, "report").await, TaskState::NoStatus);
    let marked = ui
        .post(
            Role::Admin,
            &format!("/dags/etl/runs/{r}/mark"),
            &[("state", "failed")],
            true,
        )
        .await;
    assert_eq!(marked.status, StatusCode::SEE_OTHER, "{marked:?}");
    let record = ui
        .store
        .find_run(&DagId::new("etl"), &RunId::new(run.as_str()))
        .await
        .expect("the run");
    assert_eq!(record.state, pave_core::RunState::Failed);
    let bad = ui
        .post(
            Role::Admin,
            &format!("/dags/etl/runs/{r}/mark"),
            &[("state", "running")],
            true,
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{bad:?}");
}
