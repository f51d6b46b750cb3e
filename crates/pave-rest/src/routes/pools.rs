//! Pools: list, get, create, update, delete (ops and admins change them).

use crate::extract::{JsonBody, QueryArgs};
use crate::params;
use crate::problem::{ApiResult, Problem};
use crate::state::RestState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use pave_store::{Occupancy, Page, PoolRecord, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A pool with its current use (Airflow's `PoolResponse`).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Pool {
    pub name: String,
    pub slots: u32,
    pub description: Option<String>,
    pub include_deferred: bool,
    pub occupied_slots: u64,
    pub running_slots: u64,
    pub queued_slots: u64,
    pub deferred_slots: u64,
    /// Slots free now (never below 0).
    pub open_slots: u64,
}

fn pool_dto(p: PoolRecord, occupancy: &Occupancy) -> Pool {
    let used = occupancy.pools.get(&p.name).copied().unwrap_or_default();
    let occupied = used.occupied(p.include_deferred);
    Pool {
        open_slots: u64::from(p.slots).saturating_sub(occupied),
        occupied_slots: occupied,
        running_slots: used.running_slots,
        queued_slots: used.queued_slots,
        deferred_slots: used.deferred_slots,
        name: p.name,
        slots: p.slots,
        description: p.description,
        include_deferred: p.include_deferred,
    }
}

/// A page of pools.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct PoolCollection {
    pub pools: Vec<Pool>,
    pub total_entries: u64,
}

/// A pool to create.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PoolBody {
    pub name: String,
    pub slots: u32,
    pub description: Option<String>,
    #[serde(default)]
    pub include_deferred: bool,
}

/// Changes to a pool; absent fields keep their value.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PoolPatch {
    pub slots: Option<u32>,
    pub description: Option<String>,
    pub include_deferred: Option<bool>,
}

/// List pools, by name.
#[utoipa::path(get, path = "/pools", tag = "Pool",
    params(("limit" = Option<u32>, Query, description = "Entries per page (default 100)"),
           ("offset" = Option<u64>, Query, description = "Entries to skip")),
    responses((status = 200, body = PoolCollection),
              (status = 400, body = Problem, content_type = "application/problem+json")))]
pub async fn list_pools(
    State(state): State<RestState>,
    q: QueryArgs,
) -> ApiResult<Json<PoolCollection>> {
    q.only(&["limit", "offset"])?;
    let page = Page::from_vec(state.core_store().list_pools().await?, params::page(&q)?);
    let occupancy = state.core_store().occupancy().await?;
    Ok(Json(PoolCollection {
        pools: page
            .items
            .into_iter()
            .map(|p| pool_dto(p, &occupancy))
            .collect(),
        total_entries: page.total_entries,
    }))
}

/// Get a pool.
#[utoipa::path(get, path = "/pools/{pool_name}", tag = "Pool",
    params(("pool_name" = String, Path, description = "The pool's name")),
    responses((status = 200, body = Pool),
              (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get_pool(
    State(state): State<RestState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Pool>> {
    let p = state.core_store().get_pool(&name).await?;
    let occupancy = state.core_store().occupancy().await?;
    Ok(Json(pool_dto(p, &occupancy)))
}

/// Create a pool.
#[utoipa::path(post, path = "/pools", tag = "Pool", request_body = PoolBody,
    responses((status = 201, body = Pool),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 409, body = Problem, content_type = "application/problem+json"),
              (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn create_pool(
    State(state): State<RestState>,
    JsonBody(body): JsonBody<PoolBody>,
) -> ApiResult<(StatusCode, Json<Pool>)> {
    let name = body.name.trim();
    if name.is_empty() || name != body.name || name.len() > 256 {
        return Err(Problem::unprocessable(
            "a pool name must be 1-256 characters without leading or trailing spaces",
        )
        .with_field("name"));
    }
    match state.core_store().get_pool(name).await {
        Ok(_) => {
            return Err(Problem::conflict(format!(
                "pool `{name}` already exists; PATCH it to change it"
            ))
            .with_field("name"));
        }
        Err(StoreError::NotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let record = PoolRecord {
        name: body.name.clone(),
        slots: body.slots,
        description: body.description,
        include_deferred: body.include_deferred,
    };
    state.core_store().put_pool(record.clone()).await?;
    state.scheduler().poke();
    let occupancy = state.core_store().occupancy().await?;
    Ok((StatusCode::CREATED, Json(pool_dto(record, &occupancy))))
}

/// Change a pool's slots, description or `include_deferred`.
#[utoipa::path(patch, path = "/pools/{pool_name}", tag = "Pool",
    params(("pool_name" = String, Path, description = "The pool's name")),
    request_body = PoolPatch,
    responses((status = 200, body = Pool),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn patch_pool(
    State(state): State<RestState>,
    Path(name): Path<String>,
    JsonBody(patch): JsonBody<PoolPatch>,
) -> ApiResult<Json<Pool>> {
    let mut p = state.core_store().get_pool(&name).await?;
    if let Some(slots) = patch.slots {
        p.slots = slots;
    }
    if let Some(d) = patch.description {
        p.description = Some(d);
    }
    if let Some(i) = patch.include_deferred {
        p.include_deferred = i;
    }
    state.core_store().put_pool(p.clone()).await?;
    state.scheduler().poke();
    let occupancy = state.core_store().occupancy().await?;
    Ok(Json(pool_dto(p, &occupancy)))
}

/// Delete a pool (not `default_pool`).
#[utoipa::path(delete, path = "/pools/{pool_name}", tag = "Pool",
    params(("pool_name" = String, Path, description = "The pool's name")),
    responses((status = 204, description = "Deleted"),
              (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 409, body = Problem, content_type = "application/problem+json")))]
pub async fn delete_pool(
    State(state): State<RestState>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    state.core_store().delete_pool(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}
