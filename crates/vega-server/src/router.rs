//! Builds the two routers (API and operations) and the OpenAPI document.

use axum::extract::DefaultBodyLimit;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::OpenApi as OpenApiDoc;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::routes::{
    assets, backups, breakers, cluster, connections, health, jobs, keys, operations, query, write,
};
use crate::state::AppState;
use crate::{auth, ratelimit, telemetry};

#[derive(OpenApi)]
#[openapi(
    info(title = "Vega API", description = "Versioned assets and sandboxed SQL over them."),
    tags(
        (name = "connections", description = "Sources of data"),
        (name = "assets", description = "Named, versioned datasets"),
        (name = "query", description = "Read-only SQL"),
        (name = "jobs", description = "Background work"),
        (name = "keys", description = "API keys"),
        (name = "write", description = "Line-protocol ingest (InfluxDB-compatible)"),
        (name = "cluster", description = "Nodes and leases"),
        (name = "backups", description = "Backups and restores"),
        (name = "operations", description = "Rate limits and the result cache"),
        (name = "health", description = "Health and metrics"),
    )
)]
struct ApiDoc;

/// The authenticated `/api/v1` routes with their OpenAPI entries.
fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(
            connections::create_connection,
            connections::list_connections
        ))
        .routes(routes!(
            connections::get_connection,
            connections::update_connection,
            connections::delete_connection
        ))
        .routes(routes!(connections::disable_connection))
        .routes(routes!(connections::enable_connection))
        .routes(routes!(connections::test_connection))
        .routes(routes!(assets::create_asset, assets::list_assets))
        .routes(routes!(
            assets::get_asset,
            assets::update_asset,
            assets::delete_asset
        ))
        .routes(routes!(assets::sync_asset))
        .routes(routes!(assets::list_versions))
        .routes(routes!(assets::rollback_asset))
        .routes(routes!(assets::validate_asset))
        .routes(routes!(assets::run_retention))
        .routes(routes!(query::query))
        .routes(routes!(jobs::list_jobs))
        .routes(routes!(jobs::get_job))
        .routes(routes!(jobs::cancel_job))
        .routes(routes!(keys::create_key, keys::list_keys))
        .routes(routes!(keys::delete_key))
        .routes(routes!(write::write_v2))
        .routes(routes!(write::write_v1))
        .routes(routes!(cluster::list_nodes))
        .routes(routes!(cluster::list_discovered))
        .routes(routes!(
            operations::get_rate_limit,
            operations::put_rate_limit
        ))
        .routes(routes!(operations::clear_cache))
        .routes(routes!(breakers::list_breakers))
        .routes(routes!(breakers::put_breaker))
        .routes(routes!(backups::create_backup, backups::list_backups))
        .routes(routes!(backups::get_backup, backups::delete_backup))
        .routes(routes!(backups::verify_backup))
        .routes(routes!(backups::restore))
        .routes(routes!(backups::restore_asset))
}

fn health_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health::health))
        .routes(routes!(health::live))
        .routes(routes!(health::ready))
}

/// The full OpenAPI document (API port routes plus `/metrics`).
pub fn openapi() -> OpenApiDoc {
    let (_, mut doc) = OpenApiRouter::<AppState>::with_openapi(ApiDoc::openapi())
        .merge(api_routes())
        .merge(health_routes())
        .routes(routes!(health::metrics))
        .split_for_parts();
    doc.info.version = vega_core::VERSION.to_string();
    doc
}

/// The API port: `/api/v1/*` (authenticated, refused while draining),
/// `/health*` and `/api/v1/openapi.json`.
pub fn api_router(state: AppState, max_body_bytes: usize) -> Router {
    let (api, _) = api_routes().split_for_parts();
    let api = api
        .layer(from_fn_with_state(
            state.clone(),
            telemetry::request_deadline,
        ))
        .layer(from_fn_with_state(state.clone(), ratelimit::limit_requests))
        .layer(from_fn_with_state(state.clone(), auth::authenticate))
        .layer(from_fn_with_state(
            state.clone(),
            telemetry::refuse_while_draining,
        ));
    let (health, _) = health_routes().split_for_parts();
    let doc = openapi();
    Router::new()
        .merge(api)
        .merge(health)
        .route(
            "/api/v1/openapi.json",
            get(move || async move { Json(doc) }),
        )
        .fallback(not_found)
        .layer(from_fn_with_state(
            state.clone(),
            telemetry::trace_and_measure,
        ))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(from_fn(reject_oversized))
        .with_state(state)
}

/// The operations port: health and metrics, no authentication.
pub fn ops_router(state: AppState) -> Router {
    let (health, _) = health_routes().split_for_parts();
    Router::new()
        .merge(health)
        .route("/metrics", get(health::metrics))
        .fallback(not_found)
        .layer(from_fn_with_state(
            state.clone(),
            telemetry::trace_and_measure,
        ))
        .with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> crate::error::ApiError {
    crate::error::ApiError::not_found(format!("no route for {}", uri.path()))
}

/// Turns the plain-text 413 of the body limit into Vega's JSON error.
async fn reject_oversized(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let response = next.run(request).await;
    if response.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE
        && response
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .is_none_or(|v| !v.as_bytes().starts_with(b"application/json"))
    {
        return crate::error::ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "request body is larger than api.max_body_bytes",
        )
        .into_response();
    }
    response
}
