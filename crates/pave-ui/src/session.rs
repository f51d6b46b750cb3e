//! Who is asking: the session cookie (pave-rest's sessions, so one login
//! serves the UI and the API), the login and logout pages, and the checks
//! every state-changing form goes through (CSRF token, then role). The
//! login form has its own pre-session token and origin check
//! (`pave_rest::auth::login_csrf`).
//!
//! A request without a valid session is sent to `/login?next=...`; an htmx
//! request gets `HX-Redirect` instead, so a poll after the session expired
//! takes the whole page to the login form rather than swapping it into a
//! fragment.

use crate::UiState;
use crate::error::UiError;
use crate::render::render;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use pave_rest::Principal;
use pave_rest::auth::{self, CSRF_HEADER, login_csrf};
use pave_store::Role;
use serde::{Deserialize, Serialize};

/// A logged-in user (any role).
#[derive(Clone, Debug)]
pub(crate) struct Viewer(pub Principal);

/// What every page template gets about the user.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Me {
    pub name: String,
    pub role: String,
    /// May trigger, pause, clear and mark (role `user` or higher).
    pub can_edit: bool,
    pub csrf: String,
}

impl Viewer {
    pub fn me(&self) -> Me {
        Me {
            name: self.0.username().to_owned(),
            role: self.0.role().to_string(),
            can_edit: self.0.role() >= Role::User,
            csrf: self.0.csrf_token().unwrap_or("").to_owned(),
        }
    }
}

fn is_htmx(headers: &HeaderMap) -> bool {
    headers.contains_key("hx-request")
}

/// Where to go after logging in: a local path only (never `//host` or a
/// full URL), else the DAG list.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_owned(),
        _ => "/".to_owned(),
    }
}

fn login_redirect(parts: &Parts) -> Response {
    // An htmx poll's own URL is a fragment; send the user back to the page.
    let back = if is_htmx(&parts.headers) {
        parts
            .headers
            .get("hx-current-url")
            .and_then(|v| v.to_str().ok())
            .and_then(|u| u.find("://").map(|i| &u[i + 3..]))
            .and_then(|rest| rest.find('/').map(|i| rest[i..].to_owned()))
            .unwrap_or_else(|| "/".to_owned())
    } else {
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "/".to_owned())
    };
    let target = format!(
        "/login?next={}",
        form_urlencoded::byte_serialize(back.as_bytes()).collect::<String>()
    );
    if is_htmx(&parts.headers) {
        let mut r = StatusCode::NO_CONTENT.into_response();
        if let Ok(v) = HeaderValue::from_str(&target) {
            r.headers_mut().insert("hx-redirect", v);
        }
        return r;
    }
    Redirect::to(&target).into_response()
}

impl FromRequestParts<UiState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &UiState) -> Result<Self, Response> {
        match auth::authenticate(&state.rest, &parts.headers).await {
            Ok(p) => Ok(Viewer(p)),
            Err(_) => Err(login_redirect(parts)),
        }
    }
}

/// The fields of a submitted form (`application/x-www-form-urlencoded`).
#[derive(Clone, Debug, Default)]
pub(crate) struct Fields(pub Vec<(String, String)>);

impl Fields {
    pub fn parse(body: &Bytes) -> Fields {
        Fields(
            form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }
    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    /// Whether a checkbox `name` was ticked.
    pub fn checked(&self, name: &str) -> bool {
        self.get(name)
            .is_some_and(|v| matches!(v, "on" | "true" | "1" | "yes"))
    }
}

/// The checks of every state-changing form: the session's CSRF token (a
/// `csrf_token` field, or the `X-CSRF-Token` header htmx sends), then a
/// role of at least `user`. Both fail with 403 and change nothing.
pub(crate) fn require_editor(
    viewer: &Viewer,
    headers: &HeaderMap,
    fields: &Fields,
    action: &str,
) -> Result<(), UiError> {
    let sent = fields
        .get("csrf_token")
        .or_else(|| headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()))
        .unwrap_or("");
    if viewer.0.csrf_token().is_some() {
        if sent.is_empty() {
            return Err(UiError::Forbidden(
                "missing CSRF token: reload the page and submit the form again".into(),
            ));
        }
        if !viewer.0.csrf_matches(sent) {
            return Err(UiError::Forbidden(
                "wrong CSRF token (the form belongs to an older session): reload the page and try again"
                    .into(),
            ));
        }
    }
    viewer.0.require(Role::User, action)?;
    Ok(())
}

#[derive(Deserialize)]
pub(crate) struct NextQuery {
    next: Option<String>,
}

#[derive(Serialize)]
struct LoginCtx {
    next: String,
    error: Option<String>,
    username: String,
    /// The form's pre-session token (the `pave_login_csrf` cookie's value).
    csrf_token: String,
}

/// The login page, giving the browser a fresh login token when `token` is
/// `None` (otherwise the one it has is kept, so two open login tabs both work).
fn login_form(
    state: &UiState,
    status: StatusCode,
    token: Option<String>,
    ctx: LoginCtx,
) -> Result<Response, UiError> {
    let (token, fresh) = match token {
        Some(t) => (t, false),
        None => (login_csrf::new_login_token()?, true),
    };
    let ctx = LoginCtx {
        csrf_token: token.clone(),
        ..ctx
    };
    let mut r = (status, render("login.html", ctx)?).into_response();
    if fresh {
        r.headers_mut().append(
            header::SET_COOKIE,
            login_csrf::login_token_cookie(&state.rest, &token),
        );
    }
    Ok(r)
}

/// `GET /login`: the form (or straight on, if already logged in).
pub(crate) async fn login_page(
    State(state): State<UiState>,
    headers: HeaderMap,
    Query(q): Query<NextQuery>,
) -> Result<Response, UiError> {
    let next = safe_next(q.next.as_deref());
    if auth::authenticate(&state.rest, &headers).await.is_ok() {
        return Ok(Redirect::to(&next).into_response());
    }
    let ctx = LoginCtx {
        next,
        error: None,
        username: String::new(),
        csrf_token: String::new(),
    };
    login_form(
        &state,
        StatusCode::OK,
        login_csrf::login_token(&headers),
        ctx,
    )
}

/// `POST /login`: checks that the form comes from this site (the browser's
/// `Sec-Fetch-Site` or `Origin`, and the login token of `GET /login`), then
/// the password (argon2), and sets the session cookie. A form from another
/// site is refused with 403 and opens no session.
pub(crate) async fn login_submit(
    State(state): State<UiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, UiError> {
    let fields = Fields::parse(&body);
    let username = fields.get("username").unwrap_or("").trim().to_owned();
    let password = fields.get("password").unwrap_or("");
    let next = safe_next(fields.get("next"));
    let refused = |error: String| LoginCtx {
        next: next.clone(),
        error: Some(error),
        username: username.clone(),
        csrf_token: String::new(),
    };
    if let Err(p) = login_csrf::check_same_origin(&headers) {
        tracing::warn!("UI login refused: {}", p.detail);
        let ctx = refused(
            "This sign-in came from another site and was refused. Sign in on this page.".into(),
        );
        return login_form(&state, StatusCode::FORBIDDEN, None, ctx);
    }
    if !login_csrf::login_token_matches(&headers, fields.get("csrf_token")) {
        let ctx = refused(
            "The sign-in form had expired or did not come from this page (missing or wrong \
             login token). Please sign in again."
                .into(),
        );
        return login_form(&state, StatusCode::FORBIDDEN, None, ctx);
    }
    match auth::login(&state.rest, &username, password).await {
        Ok(session) => {
            let mut r = Redirect::to(&next).into_response();
            r.headers_mut().append(
                header::SET_COOKIE,
                auth::session_cookie(&state.rest, &session),
            );
            // The login token has served; the next login gets a new one.
            r.headers_mut().append(
                header::SET_COOKIE,
                login_csrf::clear_login_token_cookie(&state.rest),
            );
            Ok(r)
        }
        Err(p) if p.status == 401 => {
            let ctx = refused("Wrong username or password.".into());
            login_form(
                &state,
                StatusCode::UNAUTHORIZED,
                login_csrf::login_token(&headers),
                ctx,
            )
        }
        Err(p) => Err(p.into()),
    }
}

/// `POST /logout`: ends the session (CSRF-checked, any role).
pub(crate) async fn logout(
    State(state): State<UiState>,
    viewer: Viewer,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, UiError> {
    let fields = Fields::parse(&body);
    let sent = fields
        .get("csrf_token")
        .or_else(|| headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()))
        .unwrap_or("");
    if !viewer.0.csrf_matches(sent) {
        return Err(UiError::Forbidden(
            "wrong or missing CSRF token: reload the page and log out again".into(),
        ));
    }
    auth::logout(&state.rest, &viewer.0).await?;
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, auth::clear_session_cookie(&state.rest));
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(safe_next(Some("/dags/x")), "/dags/x");
        assert_eq!(safe_next(Some("//evil.example")), "/");
        assert_eq!(safe_next(Some("https://evil.example")), "/");
        assert_eq!(safe_next(Some("/\\evil")), "/");
        assert_eq!(safe_next(None), "/");
    }
}
