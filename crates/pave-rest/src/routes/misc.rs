//! Health (no authentication), version, import errors, and the OpenAPI
//! document.

use crate::extract::QueryArgs;
use crate::params;
use crate::problem::{ApiResult, Problem};
use crate::state::RestState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

/// The health of one component.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ComponentHealth {
    /// `healthy` or `unhealthy`.
    pub status: String,
}

/// The scheduler's health and its last heartbeat.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct SchedulerHealth {
    /// `healthy` (a heartbeat in the last 30 s) or `unhealthy`.
    pub status: String,
    pub latest_scheduler_heartbeat: Option<DateTime<Utc>>,
}

/// Airflow's `HealthInfoResponse`.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct HealthInfo {
    pub metadatabase: ComponentHealth,
    pub scheduler: SchedulerHealth,
}

fn health_word(ok: bool) -> String {
    if ok { "healthy" } else { "unhealthy" }.to_owned()
}

/// The health of the database and the scheduler (no authentication).
#[utoipa::path(get, path = "/health", tag = "Monitor", security(()),
    responses((status = 200, body = HealthInfo)))]
pub async fn health(State(state): State<RestState>) -> Json<HealthInfo> {
    let db_ok = state.core_store().list_pools().await.is_ok();
    let beat = state.scheduler().last_heartbeat();
    let fresh = beat.is_some_and(|b| state.now() - b < chrono::Duration::seconds(30));
    Json(HealthInfo {
        metadatabase: ComponentHealth {
            status: health_word(db_ok),
        },
        scheduler: SchedulerHealth {
            status: health_word(fresh),
            latest_scheduler_heartbeat: beat,
        },
    })
}

/// pave's version.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct VersionInfo {
    pub version: String,
    pub git_version: Option<String>,
}

/// pave's version.
#[utoipa::path(get, path = "/version", tag = "Monitor",
    responses((status = 200, body = VersionInfo)))]
pub async fn version() -> Json<VersionInfo> {
    Json(VersionInfo {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        git_version: None,
    })
}

/// The error of the last parse of a DAG file (Airflow's `ImportErrorResponse`).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ImportError {
    pub filename: String,
    pub timestamp: DateTime<Utc>,
    pub stack_trace: String,
}

/// A page of import errors.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ImportErrorCollection {
    pub import_errors: Vec<ImportError>,
    pub total_entries: u64,
}

/// List the DAG files that failed to load, by file name.
#[utoipa::path(get, path = "/importErrors", tag = "ImportError",
    params(("limit" = Option<u32>, Query, description = "Entries per page (default 100)"),
           ("offset" = Option<u64>, Query, description = "Entries to skip")),
    responses((status = 200, body = ImportErrorCollection),
              (status = 400, body = Problem, content_type = "application/problem+json")))]
pub async fn import_errors(
    State(state): State<RestState>,
    q: QueryArgs,
) -> ApiResult<Json<ImportErrorCollection>> {
    q.only(&["limit", "offset"])?;
    let page = state.store().query_import_errors(params::page(&q)?).await?;
    Ok(Json(ImportErrorCollection {
        import_errors: page
            .items
            .into_iter()
            .map(|e| ImportError {
                filename: e.fileloc,
                timestamp: e.timestamp,
                stack_trace: e.stacktrace,
            })
            .collect(),
        total_entries: page.total_entries,
    }))
}

/// 404 for a path that is not an endpoint.
pub async fn not_found(axum::extract::OriginalUri(uri): axum::extract::OriginalUri) -> Problem {
    Problem::not_found(format!(
        "no endpoint `{}`; see GET /api/v1/openapi.json for the endpoints",
        uri.path()
    ))
}

/// 405 for a method an endpoint does not take.
pub async fn method_not_allowed(
    method: axum::http::Method,
    axum::extract::OriginalUri(uri): axum::extract::OriginalUri,
) -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "`{method}` is not allowed on `{}`; see GET /api/v1/openapi.json",
            uri.path()
        ),
    )
}
