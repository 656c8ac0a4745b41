//! Runbook operations that change how the whole cluster serves:
//! `GET/PUT /api/v1/rate-limit` and `DELETE /api/v1/cache`. Both are
//! stored in the catalog, applied on this node at once and on every other
//! node at its next catalog look (one heartbeat).

use std::time::Instant;

use axum::extract::State;
use axum::{Extension, Json};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;
use vega_core::Role;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::ratelimit::{RateLimits, StoredLimits, SETTING};
use crate::routes::views::ErrorBody;
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct RateLimitView {
    #[serde(flatten)]
    pub limits: RateLimits,
    /// When the limits were last set (absent: never).
    pub updated_at: Option<String>,
}

/// The rate limits in force.
#[utoipa::path(get, path = "/api/v1/rate-limit", tag = "operations",
    responses((status = 200, body = RateLimitView), (status = 503, body = ErrorBody)))]
pub async fn get_rate_limit(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<RateLimitView>, ApiError> {
    principal.require(Role::Reader)?;
    let stored = state.catalog.get_setting(SETTING).await?;
    let updated_at = stored
        .as_ref()
        .and_then(|v| serde_json::from_value::<StoredLimits>(v.clone()).ok())
        .map(|s| s.updated_at.to_rfc3339());
    Ok(Json(RateLimitView {
        limits: state.rate_limiter.limits(),
        updated_at,
    }))
}

/// Sets the rate limits (a field left out or `null` is no limit). Applied
/// on this node at once, on the others within a heartbeat.
#[utoipa::path(put, path = "/api/v1/rate-limit", tag = "operations", request_body = RateLimits,
    responses((status = 200, body = RateLimitView),
              (status = 400, body = ErrorBody, description = "not the expected JSON"),
              (status = 422, body = ErrorBody, description = "a value out of range; details.field names it"),
              (status = 403, body = ErrorBody)))]
pub async fn put_rate_limit(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiJson(limits): ApiJson<RateLimits>,
) -> Result<Json<RateLimitView>, ApiError> {
    principal.require(Role::Operator)?;
    if let Some((field, message)) = limits.problems().into_iter().next() {
        return Err(ApiError::unprocessable(format!("{field} {message}"))
            .with_details(json!({ "field": field })));
    }
    let now = state.clock.now();
    let stored = StoredLimits {
        limits,
        updated_at: now,
    };
    let value = serde_json::to_value(&stored).map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("encoding rate limits: {e}"),
        )
    })?;
    state
        .catalog
        .put_setting(SETTING, value.clone(), now)
        .await?;
    state
        .rate_limiter
        .apply_setting(Some(&value), Instant::now());
    tracing::info!(
        qps = ?limits.qps,
        burst = ?limits.burst,
        per_key_qps = ?limits.per_key.map(|k| k.qps),
        "rate limits set"
    );
    Ok(Json(RateLimitView {
        limits,
        updated_at: Some(now.to_rfc3339()),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CacheCleared {
    /// Answers dropped on this node.
    pub entries: usize,
    /// The marker other nodes see to clear theirs.
    pub marker: String,
}

/// Clears the result cache on every node (this one at once, the others
/// within a heartbeat).
#[utoipa::path(delete, path = "/api/v1/cache", tag = "operations",
    responses((status = 200, body = CacheCleared), (status = 403, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub async fn clear_cache(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<CacheCleared>, ApiError> {
    principal.require(Role::Operator)?;
    let now = state.clock.now();
    let marker = format!("{}@{}", state.node_id, now.timestamp_micros());
    let value = json!({ "marker": marker, "node": state.node_id.to_string(), "at": now });
    state
        .catalog
        .put_setting(crate::cache::CLEAR_SETTING, value.clone(), now)
        .await?;
    state.cache.record_clear_marker(value);
    let entries = state.cache.clear();
    tracing::info!(entries, "result cache cleared");
    Ok(Json(CacheCleared { entries, marker }))
}
