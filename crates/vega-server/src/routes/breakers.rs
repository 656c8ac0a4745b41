//! `GET /api/v1/breakers` and `PUT /api/v1/breakers/{service}`: the
//! circuit breakers and what operators do to them (force open, force close
//! — disable — or reset). An action is stored in the catalog and applied
//! on every node (this one at once, the others within a heartbeat).

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::{Extension, Json};
use serde::Deserialize;
use utoipa::ToSchema;
use vega_core::Role;

use crate::auth::Principal;
use crate::breakers::{BreakerAction, BreakerView, StoredAction, SETTING};
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::routes::views::ErrorBody;
use crate::state::AppState;

/// The body of `PUT /api/v1/breakers/{service}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BreakerRequest {
    /// `force_open`, `disable` (force closed: every call passes, nothing is
    /// recorded) or `reset` (closed, empty window).
    pub action: BreakerAction,
}

/// Every circuit breaker of this node.
#[utoipa::path(get, path = "/api/v1/breakers", tag = "operations",
    responses((status = 200, body = [BreakerView]), (status = 403, body = ErrorBody)))]
pub async fn list_breakers(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Vec<BreakerView>>, ApiError> {
    principal.require(Role::Reader)?;
    Ok(Json(state.breakers.views()))
}

/// Forces a breaker open, disables it (force closed) or resets it, on
/// every node.
#[utoipa::path(put, path = "/api/v1/breakers/{service}", tag = "operations",
    request_body = BreakerRequest,
    params(("service" = String, Path, description = "a connection's name, `trino`, or a service of circuit_breaker.services")),
    responses((status = 200, body = BreakerView),
              (status = 400, body = ErrorBody, description = "not the expected JSON, or an unknown action"),
              (status = 404, body = ErrorBody, description = "no breaker of that name"),
              (status = 403, body = ErrorBody)))]
pub async fn put_breaker(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(service): Path<String>,
    ApiJson(request): ApiJson<BreakerRequest>,
) -> Result<Json<BreakerView>, ApiError> {
    principal.require(Role::Operator)?;
    let known = state.breakers.registry().get(&service).is_some()
        || service == vega_config::breaker::TRINO_SERVICE
        || state.catalog.get_connection_by_name(&service).await.is_ok();
    if !known {
        return Err(ApiError::not_found(format!(
            "no circuit breaker named '{service}': breakers exist for each connection (by its name), for trino, and for the services of circuit_breaker.services"
        )));
    }
    let now = state.clock.now();
    let mut stored: BTreeMap<String, StoredAction> =
        match state.catalog.get_setting(SETTING).await? {
            Some(v) => serde_json::from_value(v).unwrap_or_default(),
            None => BTreeMap::new(),
        };
    stored.insert(
        service.clone(),
        StoredAction {
            action: request.action,
            at: now,
        },
    );
    let value = serde_json::to_value(&stored).map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("encoding circuit-breaker actions: {e}"),
        )
    })?;
    state.catalog.put_setting(SETTING, value, now).await?;
    state.breakers.apply(&service, request.action);
    state.breakers.mark_applied(&service, now);
    let view = state
        .breakers
        .views()
        .into_iter()
        .find(|b| b.service == service)
        .ok_or_else(|| ApiError::not_found(format!("no circuit breaker named '{service}'")))?;
    Ok(Json(view))
}
