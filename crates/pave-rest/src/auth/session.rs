//! Browser sessions (password login, the session cookie, logout) and API
//! tokens (issued once, stored as SHA-256).
//!
//! The session cookie `pave_session` holds a random secret; the store keeps
//! its SHA-256 with the user and the session's CSRF token. The cookie is
//! `HttpOnly` (scripts cannot read it), `SameSite=Lax` (other sites' forms
//! and scripts do not send it), `Path=/`, and `Secure` when
//! `RestConfig::secure_cookies` is on (any address but loopback).

use super::secret::{self, SecretError};
use super::{Credential, Principal};
use crate::problem::Problem;
use crate::state::RestState;
use axum::http::{HeaderMap, HeaderValue, header};
use chrono::{DateTime, Utc};
use pave_store::{ApiStore, ApiTokenRecord, NewApiToken, SessionRecord, StoreError, UserRecord};
use std::sync::OnceLock;

/// The name of the session cookie.
pub const SESSION_COOKIE: &str = "pave_session";

/// A session made by [`login`]. `cookie_secret` goes into the cookie and
/// nowhere else; `csrf_token` goes to the page (for the `X-CSRF-Token`
/// header or a hidden form field).
#[derive(Clone, Debug)]
pub struct LoginSession {
    pub user: UserRecord,
    pub cookie_secret: String,
    pub csrf_token: String,
    pub expires_at: DateTime<Utc>,
}

fn secret_problem(e: SecretError) -> Problem {
    Problem::internal(e.to_string())
}

/// A hash to verify against when the user does not exist, so a login for
/// an unknown user takes as long as one with a wrong password.
fn dummy_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| secret::hash_password("no such user").unwrap_or_default())
}

/// Checks a username and password and opens a session. 401 with the same
/// message whether the user is unknown or the password wrong.
pub async fn login(
    state: &RestState,
    username: &str,
    password: &str,
) -> Result<LoginSession, Problem> {
    let refused = || {
        Problem::unauthorized(
            "wrong username or password (a user is created with `pave users create`)",
        )
    };
    let user = match state.store().get_user(username).await {
        Ok(u) => Some(u),
        Err(StoreError::NotFound { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    let hash = user
        .as_ref()
        .and_then(|u| u.password_hash.clone())
        .unwrap_or_else(|| dummy_hash().to_owned());
    let password = password.to_owned();
    // argon2 takes tens of milliseconds of CPU: keep it off the async workers.
    let ok = tokio::task::spawn_blocking(move || secret::verify_password(&password, &hash))
        .await
        .unwrap_or(false);
    let user = match user {
        Some(u) if ok && u.password_hash.is_some() => u,
        _ => return Err(refused()),
    };
    let now = state.now();
    // Forget sessions that ran out, so the table does not grow forever.
    state.store().delete_expired_sessions(now).await?;
    let cookie_secret = secret::random_secret().map_err(secret_problem)?;
    let csrf_token = secret::random_secret().map_err(secret_problem)?;
    let ttl = chrono::Duration::from_std(state.config().session_ttl)
        .unwrap_or_else(|_| chrono::Duration::hours(12));
    let expires_at = now + ttl;
    state
        .store()
        .create_session(SessionRecord {
            session_hash: secret::sha256_hex(&cookie_secret),
            user_id: user.id,
            csrf_token: csrf_token.clone(),
            created_at: now,
            expires_at,
        })
        .await?;
    Ok(LoginSession {
        user,
        cookie_secret,
        csrf_token,
        expires_at,
    })
}

/// Ends the principal's session (no-op for API tokens).
pub async fn logout(state: &RestState, principal: &Principal) -> Result<(), Problem> {
    if let Credential::Session { session_hash, .. } = &principal.credential {
        state.store().delete_session(session_hash).await?;
    }
    Ok(())
}

/// The `Set-Cookie` value that stores a session in the browser.
pub fn session_cookie(state: &RestState, session: &LoginSession) -> HeaderValue {
    let max_age = state.config().session_ttl.as_secs();
    let secure = if state.config().secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let text = format!(
        "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}",
        session.cookie_secret
    );
    // The secret is URL-safe base64: always a valid header value.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_session_cookie(state: &RestState) -> HeaderValue {
    let secure = if state.config().secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let text = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}");
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The session cookie's value, if the request has one.
pub fn cookie_value(headers: &HeaderMap) -> Option<String> {
    cookie(headers, SESSION_COOKIE).filter(|v| !v.is_empty())
}

/// The value of the request's cookie `name` (trimmed), if it sent one.
pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value.trim().to_owned())
}

/// The principal of a session cookie: 401 if the session is unknown
/// (logged out) or expired.
pub(crate) async fn session_principal(
    state: &RestState,
    cookie: &str,
) -> Result<Principal, Problem> {
    let hash = secret::sha256_hex(cookie);
    let (session, user) = match state.store().find_session(&hash).await {
        Ok(found) => found,
        Err(StoreError::NotFound { .. }) => {
            return Err(Problem::unauthorized(
                "the session has ended (logged out or expired); log in again",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    if session.expires_at <= state.now() {
        state.store().delete_session(&hash).await?;
        return Err(Problem::unauthorized(format!(
            "the session expired at {}; log in again",
            session.expires_at.to_rfc3339()
        )));
    }
    Ok(Principal {
        user,
        credential: Credential::Session {
            session_hash: session.session_hash,
            csrf_token: session.csrf_token,
        },
    })
}

/// Issues an API token for `user`: returns the secret (shown once, never
/// stored) and the stored record. `expires_at` `None` never expires.
pub async fn issue_api_token(
    store: &dyn ApiStore,
    user: &UserRecord,
    name: &str,
    now: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
) -> Result<(String, ApiTokenRecord), Problem> {
    if name.trim().is_empty() {
        return Err(Problem::unprocessable("a token needs a non-empty name").with_field("name"));
    }
    let token = secret::new_api_token().map_err(secret_problem)?;
    let record = store
        .create_api_token(NewApiToken {
            user_id: user.id,
            name: name.to_owned(),
            token_hash: secret::sha256_hex(&token),
            created_at: now,
            expires_at,
        })
        .await?;
    Ok((token, record))
}
