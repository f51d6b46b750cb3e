//! Login, logout, who am I, and the caller's own API tokens.

use crate::auth::{self, Principal};
use crate::extract::{JsonBody, body_problem};
use crate::problem::{ApiResult, Problem};
use crate::state::RestState;
use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use pave_store::{AuthStore, TokenId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A username and password.
#[derive(Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for LoginBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginBody")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Who is logged in, and the CSRF token to send with changes.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct SessionInfo {
    pub username: String,
    /// `viewer`, `user`, `op` or `admin`.
    pub role: String,
    /// Send it as `X-CSRF-Token` with every POST, PATCH and DELETE made
    /// with the session cookie. `null` when authenticated by an API token.
    pub csrf_token: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A login body as JSON or as an HTML form (`application/x-www-form-urlencoded`).
pub struct LoginInput(pub LoginBody);

impl<S: Send + Sync> FromRequest<S> for LoginInput {
    type Rejection = Problem;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if !is_form {
            let JsonBody(body) = JsonBody::<LoginBody>::from_request(req, state).await?;
            return Ok(LoginInput(body));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| body_problem(e.status(), &e.body_text()))?;
        let mut username = None;
        let mut password = None;
        for (k, v) in form_urlencoded::parse(&bytes) {
            match k.as_ref() {
                "username" => username = Some(v.into_owned()),
                "password" => password = Some(v.into_owned()),
                _ => {}
            }
        }
        match (username, password) {
            (Some(username), Some(password)) => Ok(LoginInput(LoginBody { username, password })),
            (None, _) => {
                Err(Problem::unprocessable("missing field `username`").with_field("username"))
            }
            (_, None) => {
                Err(Problem::unprocessable("missing field `password`").with_field("password"))
            }
        }
    }
}

/// Log in with a password: sets the session cookie, returns the CSRF token.
/// A browser request from another site (`Sec-Fetch-Site`, `Origin`) is
/// refused with 403: see `auth::login_csrf`.
#[utoipa::path(post, path = "/auth/login", tag = "Auth", security(()),
    request_body = LoginBody,
    responses((status = 200, body = SessionInfo, description = "Logged in; the `pave_session` cookie is set"),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 401, body = Problem, content_type = "application/problem+json"),
              (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn login(
    State(state): State<RestState>,
    headers: HeaderMap,
    LoginInput(body): LoginInput,
) -> ApiResult<Response> {
    auth::login_csrf::check_same_origin(&headers)?;
    let session = auth::login(&state, &body.username, &body.password).await?;
    let info = SessionInfo {
        username: session.user.username.clone(),
        role: session.user.role.to_string(),
        csrf_token: Some(session.csrf_token.clone()),
        expires_at: Some(session.expires_at),
    };
    let mut response = Json(info).into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, auth::session_cookie(&state, &session));
    Ok(response)
}

/// Log out: ends the session and removes the cookie.
#[utoipa::path(post, path = "/auth/logout", tag = "Auth",
    responses((status = 204, description = "Logged out"),
              (status = 401, body = Problem, content_type = "application/problem+json"),
              (status = 403, body = Problem, content_type = "application/problem+json")))]
pub async fn logout(
    State(state): State<RestState>,
    Extension(principal): Extension<Principal>,
) -> ApiResult<Response> {
    auth::logout(&state, &principal).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, auth::clear_session_cookie(&state));
    Ok(response)
}

/// Who the caller is (and the session's CSRF token).
#[utoipa::path(get, path = "/auth/me", tag = "Auth",
    responses((status = 200, body = SessionInfo),
              (status = 401, body = Problem, content_type = "application/problem+json")))]
pub async fn me(Extension(principal): Extension<Principal>) -> Json<SessionInfo> {
    Json(SessionInfo {
        username: principal.username().to_owned(),
        role: principal.role().to_string(),
        csrf_token: principal.csrf_token().map(str::to_owned),
        expires_at: None,
    })
}

/// An API token to create for the caller.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    pub name: String,
    /// Days until it expires; absent: never.
    pub expires_in_days: Option<u32>,
}

/// An API token (the secret only in the answer that creates it).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct TokenInfo {
    pub id: i64,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    /// The token: shown once, never stored. Send it as `Authorization: Bearer <token>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// The caller's API tokens.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct TokenCollection {
    pub tokens: Vec<TokenInfo>,
    pub total_entries: u64,
}

/// Create an API token for yourself; the answer holds the secret, once.
#[utoipa::path(post, path = "/auth/tokens", tag = "Auth", request_body = TokenBody,
    responses((status = 201, body = TokenInfo),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 401, body = Problem, content_type = "application/problem+json"),
              (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn create_token(
    State(state): State<RestState>,
    Extension(principal): Extension<Principal>,
    JsonBody(body): JsonBody<TokenBody>,
) -> ApiResult<(StatusCode, Json<TokenInfo>)> {
    let now = state.now();
    let expires_at = body
        .expires_in_days
        .map(|d| now + chrono::Duration::days(i64::from(d)));
    let (token, record) =
        auth::issue_api_token(state.store(), &principal.user, &body.name, now, expires_at).await?;
    Ok((
        StatusCode::CREATED,
        Json(TokenInfo {
            id: record.id.0,
            name: record.name,
            created_at: record.created_at,
            expires_at: record.expires_at,
            token: Some(token),
        }),
    ))
}

/// List your API tokens (without their secrets).
#[utoipa::path(get, path = "/auth/tokens", tag = "Auth",
    responses((status = 200, body = TokenCollection),
              (status = 401, body = Problem, content_type = "application/problem+json")))]
pub async fn list_tokens(
    State(state): State<RestState>,
    Extension(principal): Extension<Principal>,
) -> ApiResult<Json<TokenCollection>> {
    let tokens = state.store().list_api_tokens(principal.user.id).await?;
    Ok(Json(TokenCollection {
        total_entries: tokens.len() as u64,
        tokens: tokens
            .into_iter()
            .map(|t| TokenInfo {
                id: t.id.0,
                name: t.name,
                created_at: t.created_at,
                expires_at: t.expires_at,
                token: None,
            })
            .collect(),
    }))
}

/// Delete one of your API tokens.
#[utoipa::path(delete, path = "/auth/tokens/{token_id}", tag = "Auth",
    params(("token_id" = i64, Path, description = "The token's id")),
    responses((status = 204, description = "Deleted"),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn delete_token(
    State(state): State<RestState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id: i64 = id.parse().map_err(|_| {
        Problem::bad_request(format!(
            "path parameter `token_id`: `{id}` is not a token id"
        ))
        .with_field("token_id")
    })?;
    let store: &dyn AuthStore = state.store();
    let mine = store
        .list_api_tokens(principal.user.id)
        .await?
        .iter()
        .any(|t| t.id.0 == id);
    if !mine {
        return Err(Problem::not_found(format!(
            "user `{}` has no API token #{id}",
            principal.username()
        )));
    }
    store.delete_api_token(TokenId(id)).await?;
    Ok(StatusCode::NO_CONTENT)
}
