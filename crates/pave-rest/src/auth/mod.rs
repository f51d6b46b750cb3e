//! Who is asking, and may they: API tokens (Bearer), browser sessions
//! (cookie plus CSRF token), and Airflow's roles.
//!
//! `require_auth` is the middleware in front of every route but health and
//! login. It authenticates the request, checks CSRF for state-changing
//! requests that come with a session cookie, checks the caller's role
//! against [`required_role`] (the whole permission table, in one place),
//! and hands the [`Principal`] to the handler as an extension. The web UI
//! puts the same middleware in front of its own routes.

pub mod login_csrf;
pub mod secret;
pub mod session;

use crate::problem::Problem;
use crate::state::RestState;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use pave_store::{Role, StoreError, TokenId, UserRecord};

pub use session::{
    LoginSession, SESSION_COOKIE, clear_session_cookie, issue_api_token, login, logout,
    session_cookie,
};

/// The header a cookie-authenticated, state-changing request must carry
/// with the session's CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// How a request proved who it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    /// An API token (`Authorization: Bearer pave_...`).
    Token { id: TokenId, name: String },
    /// A browser session (the `pave_session` cookie).
    Session {
        session_hash: String,
        csrf_token: String,
    },
}

/// The authenticated caller of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub user: UserRecord,
    pub credential: Credential,
}

impl Principal {
    pub fn username(&self) -> &str {
        &self.user.username
    }
    pub fn role(&self) -> Role {
        self.user.role
    }
    /// The session's CSRF token (none for API tokens).
    pub fn csrf_token(&self) -> Option<&str> {
        match &self.credential {
            Credential::Session { csrf_token, .. } => Some(csrf_token),
            Credential::Token { .. } => None,
        }
    }
    /// Whether `candidate` is this session's CSRF token (for HTML forms
    /// that send it as a field rather than a header). Always true for API
    /// tokens, which browsers do not send by themselves.
    pub fn csrf_matches(&self, candidate: &str) -> bool {
        match self.csrf_token() {
            Some(expected) => secret::same_secret(expected, candidate),
            None => true,
        }
    }
    /// 403 unless the caller's role is at least `role`.
    pub fn require(&self, role: Role, action: &str) -> Result<(), Problem> {
        if self.role() >= role {
            Ok(())
        } else {
            Err(Problem::forbidden(format!(
                "user `{}` has role `{}`; {action} needs role `{role}` or higher",
                self.username(),
                self.role()
            )))
        }
    }
}

/// The least role a request needs: viewers read, users also change runs
/// and task instances (trigger, clear, mark, delete, pause), ops also
/// manage pools, admins also manage users. `path` is relative to
/// `/api/v1` (a leading `/api/v1` is ignored).
pub fn required_role(method: &Method, path: &str) -> (Role, &'static str) {
    let path = path.strip_prefix("/api/v1").unwrap_or(path);
    let reads = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    if path == "/users" || path.starts_with("/users/") {
        return (Role::Admin, "managing users");
    }
    if path.starts_with("/auth/") {
        // Every user manages their own session and tokens.
        return (Role::Viewer, "managing your own session and tokens");
    }
    if reads {
        return (Role::Viewer, "reading");
    }
    if path == "/pools" || path.starts_with("/pools/") {
        return (Role::Op, "changing pools");
    }
    (
        Role::User,
        "changing DAGs, runs and task instances (trigger, pause, clear, mark, delete)",
    )
}

/// Authenticates a request from its headers (no role or CSRF check).
pub async fn authenticate(state: &RestState, headers: &HeaderMap) -> Result<Principal, Problem> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let text = value.to_str().unwrap_or("");
        let token = match text.trim().split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => {
                return Err(Problem::unauthorized(
                    "malformed Authorization header: expected `Bearer <token>` with a token from `pave tokens create`",
                ));
            }
        };
        return token_principal(state, token).await;
    }
    if let Some(cookie) = session::cookie_value(headers) {
        return session::session_principal(state, &cookie).await;
    }
    Err(Problem::unauthorized(
        "authentication required: send `Authorization: Bearer <token>` (create one with \
         `pave tokens create --username NAME`) or log in with POST /api/v1/auth/login",
    ))
}

async fn token_principal(state: &RestState, token: &str) -> Result<Principal, Problem> {
    let hash = secret::sha256_hex(token);
    let (record, user) = match state.store().find_api_token(&hash).await {
        Ok(found) => found,
        Err(StoreError::NotFound { .. }) => {
            return Err(Problem::unauthorized(
                "unknown API token (it was never issued, or it was deleted); create one with `pave tokens create`",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let now = state.now();
    if let Some(expiry) = record.expires_at
        && expiry <= now
    {
        return Err(Problem::unauthorized(format!(
            "API token `{}` of user `{}` expired at {}; create a new one with `pave tokens create`",
            record.name,
            user.username,
            expiry.to_rfc3339()
        )));
    }
    Ok(Principal {
        user,
        credential: Credential::Token {
            id: record.id,
            name: record.name,
        },
    })
}

/// Authenticates, checks CSRF and the role: everything `require_auth` does.
pub async fn authorize(
    state: &RestState,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Result<Principal, Problem> {
    let principal = authenticate(state, headers).await?;
    let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe && let Some(expected) = principal.csrf_token() {
        let sent = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if sent.is_empty() {
            return Err(Problem::forbidden(
                "missing CSRF token: a request that changes something with a session cookie must send \
                 the `X-CSRF-Token` header with the `csrf_token` from login",
            ));
        }
        if !secret::same_secret(expected, sent) {
            return Err(Problem::forbidden(
                "wrong CSRF token: send the `csrf_token` of this session (from login or GET /api/v1/auth/me) \
                 in the `X-CSRF-Token` header",
            ));
        }
    }
    let (role, action) = required_role(method, path);
    principal.require(role, action)?;
    Ok(principal)
}

/// Middleware: lets a request through only if [`authorize`] does, with the
/// [`Principal`] in its extensions.
pub async fn require_auth(
    State(state): State<RestState>,
    mut req: Request,
    next: Next,
) -> Response {
    let path = req
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .map(|u| u.path().to_owned())
        .unwrap_or_else(|| req.uri().path().to_owned());
    match authorize(&state, req.method(), &path, req.headers()).await {
        Ok(principal) => {
            req.extensions_mut().insert(principal);
            next.run(req).await
        }
        Err(problem) => problem.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_permission_table() {
        let cases = [
            (Method::GET, "/api/v1/dags", Role::Viewer),
            (Method::PATCH, "/api/v1/dags/etl", Role::User),
            (Method::POST, "/api/v1/dags/etl/dagRuns", Role::User),
            (
                Method::POST,
                "/api/v1/dags/etl/clearTaskInstances",
                Role::User,
            ),
            (Method::GET, "/api/v1/pools", Role::Viewer),
            (Method::POST, "/api/v1/pools", Role::Op),
            (Method::DELETE, "/api/v1/pools/gpu", Role::Op),
            (Method::GET, "/api/v1/users", Role::Admin),
            (Method::POST, "/api/v1/users", Role::Admin),
            (Method::POST, "/api/v1/auth/logout", Role::Viewer),
            (Method::POST, "/api/v1/auth/tokens", Role::Viewer),
        ];
        for (method, path, role) in cases {
            assert_eq!(required_role(&method, path).0, role, "{method} {path}");
        }
    }
}
