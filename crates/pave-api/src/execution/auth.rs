//! The check every execution API request starts with: a valid attempt
//! token (else 401) naming an attempt that is still running, or queued
//! with the token's try while it starts (else 409); writes need it running.

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
        // Still `queued` with the token's try: the attempt is starting. Its
        // supervisor was spawned (the token lives only in its environment)
        // and the scheduler writes `running` right after the spawn; a task
        // forked from a zygote can read before that commit lands. Writes
        // wait for it ([`Attempt::require_running`]).
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

impl Attempt {
    /// For a write: the attempt must be recorded as running (a write is a
    /// compare-and-set against `running`, which must not race the
    /// scheduler's own `queued` -> `running` commit). A 409 with `state
    /// queued, try N` otherwise, which the runtime retries.
    pub fn require_running(&self) -> Result<(), ApiError> {
        if self.ti.state == TaskState::Running {
            return Ok(());
        }
        Err(ApiError::Conflict(format!(
            "the attempt is no longer running (state {}, try {})",
            self.ti.state.as_str(),
            self.ti.try_number
        )))
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
