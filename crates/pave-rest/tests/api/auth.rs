//! Authentication and roles: the roles matrix, login and logout, session
//! cookies, CSRF, token expiry, users and tokens.

use super::{Api, Call, t0};
use axum::http::{Method, StatusCode, header};
use pave_rest::RestConfig;
use pave_rest::auth::issue_api_token;
use pave_store::{AuthStore, Role};
use serde_json::json;

/// What each role may do: (role, method, path, body, status).
#[tokio::test]
async fn roles_matrix() {
    let api = Api::new().await;
    api.trigger("seed").await;
    let viewer_ok = [Role::Viewer, Role::User, Role::Op, Role::Admin];
    for role in viewer_ok {
        api.get(role, "/api/v1/dags").await.expect(StatusCode::OK);
        api.get(role, "/api/v1/dags/etl/dagRuns/seed/taskInstances")
            .await
            .expect(StatusCode::OK);
    }
    let cases: Vec<(Method, &str, serde_json::Value, [StatusCode; 4])> = vec![
        (
            Method::POST,
            "/api/v1/dags/etl/dagRuns",
            json!({}),
            [
                StatusCode::FORBIDDEN,
                StatusCode::OK,
                StatusCode::OK,
                StatusCode::OK,
            ],
        ),
        (
            Method::POST,
            "/api/v1/dags/etl/clearTaskInstances",
            json!({"dag_run_id": "seed", "dry_run": true}),
            [
                StatusCode::FORBIDDEN,
                StatusCode::OK,
                StatusCode::OK,
                StatusCode::OK,
            ],
        ),
        (
            Method::PATCH,
            "/api/v1/dags/etl/dagRuns/seed/taskInstances/extract",
            json!({"new_state": "success", "dry_run": true}),
            [
                StatusCode::FORBIDDEN,
                StatusCode::OK,
                StatusCode::OK,
                StatusCode::OK,
            ],
        ),
        (
            Method::PATCH,
            "/api/v1/dags/hello",
            json!({"is_paused": false}),
            [
                StatusCode::FORBIDDEN,
                StatusCode::OK,
                StatusCode::OK,
                StatusCode::OK,
            ],
        ),
        (
            Method::PATCH,
            "/api/v1/pools/default_pool",
            json!({"slots": 128}),
            [
                StatusCode::FORBIDDEN,
                StatusCode::FORBIDDEN,
                StatusCode::OK,
                StatusCode::OK,
            ],
        ),
        (
            Method::GET,
            "/api/v1/users",
            json!(null),
            [
                StatusCode::FORBIDDEN,
                StatusCode::FORBIDDEN,
                StatusCode::FORBIDDEN,
                StatusCode::OK,
            ],
        ),
    ];
    for (method, path, body, expected) in cases {
        for (role, status) in Role::ALL.into_iter().zip(expected) {
            // Each request runs a fresh logical date, so triggers never collide.
            api.clock.advance(chrono::Duration::minutes(1));
            let call = Call::new(method.clone(), path).bearer(api.token(role));
            let call = if body.is_null() {
                call
            } else {
                call.json(&body)
            };
            let before = api.snapshot().await;
            let reply = api.send(call).await;
            reply.expect(status);
            if status == StatusCode::FORBIDDEN {
                reply.mentions(role.as_str());
                assert_eq!(
                    api.snapshot().await,
                    before,
                    "a refused request changes nothing"
                );
            }
        }
    }
}

#[tokio::test]
async fn anonymous_callers_get_401_and_a_www_authenticate_header() {
    let api = Api::new().await;
    let before = api.snapshot().await;
    let r = api
        .send(Call::new(Method::POST, "/api/v1/dags/etl/dagRuns").json(&json!({})))
        .await;
    r.expect(StatusCode::UNAUTHORIZED)
        .mentions("pave tokens create");
    assert!(r.headers.contains_key(header::WWW_AUTHENTICATE));
    api.send(Call::new(Method::GET, "/api/v1/dags").header("authorization", "Basic abc"))
        .await
        .expect(StatusCode::UNAUTHORIZED)
        .mentions("Bearer");
    api.send(Call::new(Method::GET, "/api/v1/dags").bearer("pave_not-a-real-token"))
        .await
        .expect(StatusCode::UNAUTHORIZED)
        .mentions("unknown API token");
    assert_eq!(api.snapshot().await, before);
}

#[tokio::test]
async fn expired_tokens_are_refused() {
    let api = Api::new().await;
    let user = api.store.get_user("user").await.expect("user");
    let (token, _) = issue_api_token(
        api.store.as_ref(),
        &user,
        "short-lived",
        t0(),
        Some(t0() + chrono::Duration::hours(1)),
    )
    .await
    .expect("issue");
    api.send(Call::new(Method::GET, "/api/v1/dags").bearer(&token))
        .await
        .expect(StatusCode::OK);
    api.clock.advance(chrono::Duration::hours(2));
    let before = api.snapshot().await;
    api.send(
        Call::new(Method::POST, "/api/v1/dags/etl/dagRuns")
            .bearer(&token)
            .json(&json!({})),
    )
    .await
    .expect(StatusCode::UNAUTHORIZED)
    .mentions("short-lived` of user `user` expired");
    assert_eq!(api.snapshot().await, before);
}

#[tokio::test]
async fn expired_sessions_change_nothing() {
    let api = Api::new().await;
    api.set_password("user", "correct horse").await;
    let (cookie, csrf) = login(&api, "user", "correct horse").await;
    api.clock.advance(chrono::Duration::hours(13));
    let before = api.snapshot().await;
    for (method, path, body) in [
        (Method::POST, "/api/v1/dags/etl/dagRuns", json!({})),
        (
            Method::PATCH,
            "/api/v1/dags/etl",
            json!({"is_paused": true}),
        ),
    ] {
        api.send(
            Call::new(method, path)
                .header("cookie", &cookie)
                .header("x-csrf-token", &csrf)
                .json(&body),
        )
        .await
        .expect(StatusCode::UNAUTHORIZED)
        .mentions("log in again");
    }
    assert_eq!(api.snapshot().await, before);
}

#[tokio::test]
async fn a_cross_site_login_is_refused() {
    let api = Api::new().await;
    api.set_password("user", "correct horse").await;
    let form = || {
        Call::new(Method::POST, "/api/v1/auth/login").raw(
            "application/x-www-form-urlencoded",
            "username=user&password=correct+horse",
        )
    };
    // Another site's form posting the right password: refused, no session.
    for headers in [
        vec![("sec-fetch-site", "cross-site")],
        vec![
            ("origin", "https://evil.example"),
            ("host", "127.0.0.1:8080"),
        ],
    ] {
        let mut call = form();
        for (k, v) in &headers {
            call = call.header(k, v);
        }
        let r = api.send(call).await;
        r.expect(StatusCode::FORBIDDEN)
            .mentions("cross-site login refused");
        assert!(
            !r.headers.contains_key(header::SET_COOKIE),
            "{headers:?}: {r:?}"
        );
    }
    // The same from this site, or from a script (no browser headers): fine.
    api.send(form().header("sec-fetch-site", "same-origin"))
        .await
        .expect(StatusCode::OK);
    api.send(
        form()
            .header("origin", "http://127.0.0.1:8080")
            .header("host", "127.0.0.1:8080"),
    )
    .await
    .expect(StatusCode::OK);
    api.send(form()).await.expect(StatusCode::OK);
}

/// Logs in as `username` and returns (cookie, csrf token).
async fn login(api: &Api, username: &str, password: &str) -> (String, String) {
    let r = api
        .send(
            Call::new(Method::POST, "/api/v1/auth/login")
                .json(&json!({"username": username, "password": password})),
        )
        .await;
    r.expect(StatusCode::OK);
    let set_cookie = r.headers[header::SET_COOKIE]
        .to_str()
        .expect("text")
        .to_owned();
    let cookie = set_cookie.split(';').next().expect("a cookie").to_owned();
    (
        cookie,
        r.body["csrf_token"].as_str().expect("csrf").to_owned(),
    )
}

#[tokio::test]
async fn login_sets_a_safe_cookie_and_csrf_guards_changes() {
    let api = Api::new().await;
    api.set_password("user", "correct horse").await;
    let before = api.snapshot().await;
    api.send(
        Call::new(Method::POST, "/api/v1/auth/login")
            .json(&json!({"username": "user", "password": "wrong horse"})),
    )
    .await
    .expect(StatusCode::UNAUTHORIZED)
    .mentions("wrong username or password");
    api.send(
        Call::new(Method::POST, "/api/v1/auth/login")
            .json(&json!({"username": "nobody", "password": "wrong horse"})),
    )
    .await
    .expect(StatusCode::UNAUTHORIZED)
    .mentions("wrong username or password");

    let r = api
        .send(Call::new(Method::POST, "/api/v1/auth/login").raw(
            "application/x-www-form-urlencoded",
            "username=user&password=correct+horse",
        ))
        .await;
    r.expect(StatusCode::OK);
    let set_cookie = r.headers[header::SET_COOKIE].to_str().expect("text");
    for attr in ["pave_session=", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(set_cookie.contains(attr), "{set_cookie}");
    }
    assert!(
        !set_cookie.contains("Secure"),
        "loopback http: {set_cookie}"
    );
    assert_eq!(r.body["role"], "user");

    let (cookie, csrf) = login(&api, "user", "correct horse").await;
    let me = api
        .send(Call::new(Method::GET, "/api/v1/auth/me").header("cookie", &cookie))
        .await;
    me.expect(StatusCode::OK);
    assert_eq!(me.body["username"], "user");
    assert_eq!(me.body["csrf_token"], csrf.as_str());

    // A change with the cookie but without the CSRF token is refused.
    let trigger = || Call::new(Method::POST, "/api/v1/dags/etl/dagRuns").header("cookie", &cookie);
    api.send(trigger().json(&json!({})))
        .await
        .expect(StatusCode::FORBIDDEN)
        .mentions("missing CSRF token");
    api.send(trigger().header("x-csrf-token", "forged").json(&json!({})))
        .await
        .expect(StatusCode::FORBIDDEN)
        .mentions("wrong CSRF token");
    assert_eq!(
        api.snapshot().await,
        before,
        "refused changes change nothing"
    );
    api.send(trigger().header("x-csrf-token", &csrf).json(&json!({})))
        .await
        .expect(StatusCode::OK);

    // Logout ends the session.
    let out = api
        .send(
            Call::new(Method::POST, "/api/v1/auth/logout")
                .header("cookie", &cookie)
                .header("x-csrf-token", &csrf),
        )
        .await;
    out.expect(StatusCode::NO_CONTENT);
    assert!(
        out.headers[header::SET_COOKIE]
            .to_str()
            .expect("text")
            .contains("Max-Age=0")
    );
    api.send(Call::new(Method::GET, "/api/v1/dags").header("cookie", &cookie))
        .await
        .expect(StatusCode::UNAUTHORIZED)
        .mentions("log in again");
}

#[tokio::test]
async fn sessions_expire_and_cookies_are_secure_off_loopback() {
    let api = Api::with_config(RestConfig {
        secure_cookies: true,
        session_ttl: std::time::Duration::from_secs(60),
        ..RestConfig::default()
    })
    .await;
    api.set_password("viewer", "correct horse").await;
    let r = api
        .send(
            Call::new(Method::POST, "/api/v1/auth/login")
                .json(&json!({"username": "viewer", "password": "correct horse"})),
        )
        .await;
    r.expect(StatusCode::OK);
    let set_cookie = r.headers[header::SET_COOKIE].to_str().expect("text");
    assert!(set_cookie.contains("; Secure"), "{set_cookie}");
    let cookie = set_cookie.split(';').next().expect("cookie").to_owned();
    api.send(Call::new(Method::GET, "/api/v1/dags").header("cookie", &cookie))
        .await
        .expect(StatusCode::OK);
    api.clock.advance(chrono::Duration::minutes(2));
    api.send(Call::new(Method::GET, "/api/v1/dags").header("cookie", &cookie))
        .await
        .expect(StatusCode::UNAUTHORIZED)
        .mentions("expired");
}

#[tokio::test]
async fn admins_manage_users_and_everyone_their_tokens() {
    let api = Api::new().await;
    let created = api
        .with_body(
            Role::Admin,
            Method::POST,
            "/api/v1/users",
            json!({"username": "ana", "role": "op", "password": "long enough"}),
        )
        .await;
    created.expect(StatusCode::CREATED);
    assert_eq!(created.body["role"], "op");
    assert_eq!(created.body["has_password"], true);
    assert!(created.body.get("password_hash").is_none());
    api.with_body(
        Role::Admin,
        Method::POST,
        "/api/v1/users",
        json!({"username": "ana", "role": "op"}),
    )
    .await
    .expect(StatusCode::CONFLICT)
    .mentions("ana");
    api.with_body(
        Role::Admin,
        Method::POST,
        "/api/v1/users",
        json!({"username": "bo", "role": "op", "password": "short"}),
    )
    .await
    .expect(StatusCode::UNPROCESSABLE_ENTITY)
    .mentions("8 characters");
    let patched = api
        .with_body(
            Role::Admin,
            Method::PATCH,
            "/api/v1/users/ana",
            json!({"role": "viewer"}),
        )
        .await;
    assert_eq!(patched.body["role"], "viewer");
    let (cookie, _) = login(&api, "ana", "long enough").await;
    api.send(Call::new(Method::GET, "/api/v1/users").header("cookie", &cookie))
        .await
        .expect(StatusCode::FORBIDDEN);

    // Tokens of one's own.
    let token = api
        .with_body(
            Role::Viewer,
            Method::POST,
            "/api/v1/auth/tokens",
            json!({"name": "ci", "expires_in_days": 30}),
        )
        .await;
    token.expect(StatusCode::CREATED);
    let secret = token.body["token"]
        .as_str()
        .expect("the secret, once")
        .to_owned();
    assert!(secret.starts_with("pave_"));
    api.send(Call::new(Method::GET, "/api/v1/auth/me").bearer(&secret))
        .await
        .expect(StatusCode::OK);
    let listed = api.get(Role::Viewer, "/api/v1/auth/tokens").await;
    assert!(listed.text.contains("\"ci\"") && !listed.text.contains(&secret));
    let id = token.body["id"].as_i64().expect("id");
    api.send(
        Call::new(Method::DELETE, &format!("/api/v1/auth/tokens/{id}"))
            .bearer(api.token(Role::User)),
    )
    .await
    .expect(StatusCode::NOT_FOUND)
    .mentions("no API token");
    api.send(
        Call::new(Method::DELETE, &format!("/api/v1/auth/tokens/{id}"))
            .bearer(api.token(Role::Viewer)),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    api.send(Call::new(Method::GET, "/api/v1/auth/me").bearer(&secret))
        .await
        .expect(StatusCode::UNAUTHORIZED);

    api.send(Call::new(Method::DELETE, "/api/v1/users/ana").bearer(api.token(Role::Admin)))
        .await
        .expect(StatusCode::NO_CONTENT);
    api.send(Call::new(Method::GET, "/api/v1/dags").header("cookie", &cookie))
        .await
        .expect(StatusCode::UNAUTHORIZED);
}
