//! Users (admins only): list, create, change role or password, delete.

use crate::auth::secret;
use crate::extract::JsonBody;
use crate::problem::{ApiResult, Problem};
use crate::state::RestState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use pave_store::{NewUser, Role, UserRecord};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A user (never with a password hash).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct User {
    pub username: String,
    /// `viewer`, `user`, `op` or `admin`.
    pub role: String,
    /// Whether the user can log in with a password (else only API tokens).
    pub has_password: bool,
    pub created_at: DateTime<Utc>,
}

impl From<&UserRecord> for User {
    fn from(u: &UserRecord) -> Self {
        User {
            username: u.username.clone(),
            role: u.role.to_string(),
            has_password: u.password_hash.is_some(),
            created_at: u.created_at,
        }
    }
}

/// Every user.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct UserCollection {
    pub users: Vec<User>,
    pub total_entries: u64,
}

/// A role name in a request body.
#[derive(Clone, Copy, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RoleName {
    Viewer,
    User,
    Op,
    Admin,
}

impl From<RoleName> for Role {
    fn from(r: RoleName) -> Self {
        match r {
            RoleName::Viewer => Role::Viewer,
            RoleName::User => Role::User,
            RoleName::Op => Role::Op,
            RoleName::Admin => Role::Admin,
        }
    }
}

/// A user to create.
#[derive(Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserBody {
    pub username: String,
    pub role: RoleName,
    /// Absent: the user can only use API tokens.
    pub password: Option<String>,
}

/// Changes to a user.
#[derive(Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    pub role: Option<RoleName>,
    pub password: Option<String>,
}

/// The smallest password accepted.
pub const MIN_PASSWORD_LEN: usize = 8;

/// The argon2 hash of a new password, refusing short ones.
pub async fn new_password_hash(password: String) -> ApiResult<String> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(Problem::unprocessable(format!(
            "a password needs at least {MIN_PASSWORD_LEN} characters"
        ))
        .with_field("password"));
    }
    tokio::task::spawn_blocking(move || secret::hash_password(&password))
        .await
        .map_err(|e| Problem::internal(format!("password hashing stopped: {e}")))?
        .map_err(|e| Problem::internal(e.to_string()))
}

/// Checks a username: 1-64 characters of letters, digits, `.`, `_`, `-`, `@`.
pub fn check_username(name: &str) -> ApiResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err(Problem::unprocessable(format!(
            "invalid username `{name}`: use 1-64 letters, digits, `.`, `_`, `-` or `@`"
        ))
        .with_field("username"))
    }
}

/// List users.
#[utoipa::path(get, path = "/users", tag = "User",
    responses((status = 200, body = UserCollection),
              (status = 403, body = Problem, content_type = "application/problem+json")))]
pub async fn list_users(State(state): State<RestState>) -> ApiResult<Json<UserCollection>> {
    let users = state.store().list_users().await?;
    Ok(Json(UserCollection {
        total_entries: users.len() as u64,
        users: users.iter().map(User::from).collect(),
    }))
}

/// Create a user.
#[utoipa::path(post, path = "/users", tag = "User", request_body = UserBody,
    responses((status = 201, body = User),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 409, body = Problem, content_type = "application/problem+json"),
              (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn create_user(
    State(state): State<RestState>,
    JsonBody(body): JsonBody<UserBody>,
) -> ApiResult<(StatusCode, Json<User>)> {
    check_username(&body.username)?;
    let password_hash = match body.password {
        Some(p) => Some(new_password_hash(p).await?),
        None => None,
    };
    let user = state
        .store()
        .create_user(NewUser {
            username: body.username,
            role: body.role.into(),
            password_hash,
            created_at: state.now(),
        })
        .await?;
    Ok((StatusCode::CREATED, Json(User::from(&user))))
}

/// Change a user's role or password.
#[utoipa::path(patch, path = "/users/{username}", tag = "User",
    params(("username" = String, Path, description = "The user")),
    request_body = UserPatch,
    responses((status = 200, body = User),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn patch_user(
    State(state): State<RestState>,
    Path(username): Path<String>,
    JsonBody(patch): JsonBody<UserPatch>,
) -> ApiResult<Json<User>> {
    state.store().get_user(&username).await?;
    let hash = match patch.password {
        Some(p) => Some(new_password_hash(p).await?),
        None => None,
    };
    if let Some(role) = patch.role {
        state.store().set_role(&username, role.into()).await?;
    }
    if let Some(hash) = hash {
        state.store().set_password(&username, &hash).await?;
    }
    Ok(Json(User::from(&state.store().get_user(&username).await?)))
}

/// Delete a user with their tokens and sessions.
#[utoipa::path(delete, path = "/users/{username}", tag = "User",
    params(("username" = String, Path, description = "The user")),
    responses((status = 204, description = "Deleted"),
              (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn delete_user(
    State(state): State<RestState>,
    Path(username): Path<String>,
) -> ApiResult<StatusCode> {
    state.store().delete_user(&username).await?;
    Ok(StatusCode::NO_CONTENT)
}
