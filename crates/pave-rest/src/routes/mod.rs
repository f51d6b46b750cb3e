//! The endpoints of `/api/v1`, one module per resource, and the router
//! that puts them together with the OpenAPI document they describe.
//!
//! Every handler is registered through utoipa-axum's `routes!`, so a route
//! cannot exist without its entry in the OpenAPI document (and the test
//! suite checks every entry answers).

pub mod auth;
pub mod dags;
pub mod logs;
pub mod misc;
pub mod pools;
pub mod runs;
pub mod tis;
pub mod users;
pub mod xcoms;

use crate::state::RestState;
use axum::Router;
use utoipa::OpenApi;
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityRequirement, SecurityScheme,
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The document's frame; the paths come from the handlers.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "pave REST API",
        description = "The public API of pave: DAGs, runs, task instances, logs, XComs, pools. \
                       Shapes and state names follow Airflow's REST API. Errors are RFC 9457 \
                       problem details. Authenticate with `Authorization: Bearer <token>` \
                       (`pave tokens create`) or a session cookie from `POST /auth/login` \
                       (then send `X-CSRF-Token` with every change).",
        version = "1"
    ),
    servers((url = "/api/v1")),
    modifiers(&SecuritySchemes),
    components(schemas(crate::problem::Problem))
)]
struct ApiDoc;

struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(
                crate::auth::SESSION_COOKIE,
            ))),
        );
        openapi.security = Some(vec![
            SecurityRequirement::new("bearer", Vec::<String>::new()),
            SecurityRequirement::new("session", Vec::<String>::new()),
        ]);
    }
}

/// The routes that need authentication, with their documentation.
fn protected() -> OpenApiRouter<RestState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(misc::version))
        .routes(routes!(misc::import_errors))
        .routes(routes!(dags::list_dags))
        .routes(routes!(dags::get_dag, dags::patch_dag))
        .routes(routes!(dags::list_tasks))
        .routes(routes!(dags::list_versions))
        .routes(routes!(dags::get_version))
        .routes(routes!(dags::get_source))
        .routes(routes!(runs::list_runs, runs::trigger_run))
        .routes(routes!(runs::get_run, runs::patch_run, runs::delete_run))
        .routes(routes!(tis::list_tis))
        .routes(routes!(tis::get_ti, tis::patch_ti))
        .routes(routes!(tis::list_tries))
        .routes(routes!(tis::clear_tis))
        .routes(routes!(logs::get_log))
        .routes(routes!(xcoms::list_xcoms))
        .routes(routes!(xcoms::get_xcom))
        .routes(routes!(pools::list_pools, pools::create_pool))
        .routes(routes!(
            pools::get_pool,
            pools::patch_pool,
            pools::delete_pool
        ))
        .routes(routes!(users::list_users, users::create_user))
        .routes(routes!(users::patch_user, users::delete_user))
        .routes(routes!(auth::logout))
        .routes(routes!(auth::me))
        .routes(routes!(auth::create_token, auth::list_tokens))
        .routes(routes!(auth::delete_token))
}

/// The routes open to anyone: health and login.
fn public() -> OpenApiRouter<RestState> {
    OpenApiRouter::new()
        .routes(routes!(misc::health))
        .routes(routes!(auth::login))
}

/// The OpenAPI document of `/api/v1` (paths relative to the server `/api/v1`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, mut doc) = protected().split_for_parts();
    let (_, open) = public().split_for_parts();
    doc.merge(open);
    doc
}

/// The `/api/v1` routes (to be nested under `/api/v1`): the protected ones
/// behind `require_auth`, then health and login, then the document.
pub fn api_routes(state: RestState) -> Router {
    let (protected, mut doc) = protected().split_for_parts();
    let (public, open) = public().split_for_parts();
    doc.merge(open);
    let document = std::sync::Arc::new(doc.to_json().unwrap_or_else(|_| "{}".to_owned()));
    let openapi_route = axum::routing::get(move || {
        let document = document.clone();
        async move {
            (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                document.as_ref().clone(),
            )
        }
    });
    let protected = protected.route("/openapi.json", openapi_route).layer(
        axum::middleware::from_fn_with_state(state.clone(), crate::auth::require_auth),
    );
    protected
        .merge(public)
        .fallback(misc::not_found)
        .method_not_allowed_fallback(misc::method_not_allowed)
        .with_state(state)
}
