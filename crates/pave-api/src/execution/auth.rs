//! The check every execution API request starts with: a valid attempt
//! token (else 401) naming an attempt that is still live: running, or
//! queued with the token's try while its `running` write is on its way
//! (else 409).

use super::ExecutionState;
use crate::error::ApiError;
use crate::token::AttemptScope;
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use pave_core::TaskState;
use pave_store::{StoreError, TiRecord};

/// The attempt a request acts for, checked against the store.
#[derive(Clone, Debug)]
pub struct Attempt {
    pub scope: AttemptScope,
    /// The task instance as stored when the request was checked.
    pub ti: TiRecord,
}

impl FromRequestParts<ExecutionState> for Attempt {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ExecutionState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer_token(parts)?;
        let scope = state
            .signer()
            .verify(token, state.clock().now())
            .map_err(|e| ApiError::Unauthorized(e.to_string()))?;
        let ti = match state.store().get_ti(&scope.ti_key()).await {
            Ok(ti) => ti,
            Err(StoreError::NotFound { .. }) => {
                return Err(ApiError::Conflict(format!(
                    "the attempt is no longer running (the task instance of {scope} no longer exists)"
                )));
            }
            Err(e) => return Err(e.into()),
        };
        if ti.dag_id != scope.dag_id || ti.run_id != scope.run_id {
            // The run the token was issued for is gone and its key reused.
            return Err(ApiError::Conflict(format!(
                "the attempt is no longer running (the run of {scope} no longer exists)"
            )));
        }
        // Still `queued` with the token's try: the attempt has started (the
        // token lives only in its supervisor's environment, and a
        // supervisor claims the attempt before it runs anything, so a
        // restart adopts it rather than running it again), and the
        // scheduler writes `running` with its next transaction.
        let live = matches!(ti.state, TaskState::Running | TaskState::Queued);
        if !live || ti.try_number != scope.try_number {
            return Err(ApiError::Conflict(format!(
                "the attempt is no longer running (state {}, try {})",
                ti.state.as_str(),
                ti.try_number
            )));
        }
        Ok(Attempt { scope, ti })
    }
}

fn bearer_token(parts: &Parts) -> Result<&str, ApiError> {
    let value = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
        ApiError::Unauthorized(
            "missing attempt token: send `Authorization: Bearer <token>` with the token from PAVE_TASK_TOKEN"
                .into(),
        )
    })?;
    let malformed = || {
        ApiError::Unauthorized(
            "malformed Authorization header: expected `Bearer <token>` with the token from PAVE_TASK_TOKEN"
                .into(),
        )
    };
    let text = value.to_str().map_err(|_| malformed())?;
    let (scheme, token) = text.trim().split_once(' ').ok_or_else(malformed)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(malformed());
    }
    Ok(token)
}
