//! `/api/v1/connections`: create, list, read, update, delete, disable,
//! enable and test connections.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;
use vega_catalog::ConnectionUpdate;
use vega_core::{ConnectorKind, IdKind, NewConnection, Role};

use super::path_id;
use super::views::{ConnectionView, ErrorBody};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConnection {
    /// Unique name.
    pub name: String,
    /// Connector type: `file`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Connector parameters (for `file`: `{"root": "/data"}`).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub params: Value,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateConnection {
    pub name: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub params: Option<Value>,
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if name.trim().is_empty() || name.len() > 128 {
        return Err(ApiError::bad_request("name must be 1 to 128 characters")
            .with_details(json!({ "field": "name" })));
    }
    Ok(())
}

/// How long validating parameters may take (no source is contacted).
const CHECK_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long a connection test may take.
const TEST_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

fn parse_kind(kind: &str) -> Result<ConnectorKind, ApiError> {
    ConnectorKind::parse(kind).ok_or_else(|| {
        let known: Vec<&str> = ConnectorKind::ALL.iter().map(|k| k.as_str()).collect();
        ApiError::bad_request(format!(
            "unknown connection type '{kind}'; known types: {}",
            known.join(", ")
        ))
        .with_details(json!({ "field": "type" }))
    })
}

fn normalize_params(params: Value) -> Value {
    if params.is_null() {
        json!({})
    } else {
        params
    }
}

#[utoipa::path(post, path = "/api/v1/connections", tag = "connections",
    request_body = CreateConnection,
    responses((status = 201, body = ConnectionView), (status = 400, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_connection(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiJson(body): ApiJson<CreateConnection>,
) -> Result<(StatusCode, Json<ConnectionView>), ApiError> {
    principal.require(Role::Admin)?;
    check_name(&body.name)?;
    let kind = parse_kind(&body.kind)?;
    let params = normalize_params(body.params);
    let checked = params.clone();
    state
        .connector_call(kind, CHECK_LIMIT, move |c| c.check_connection(&checked))
        .await?;
    let connection = state
        .catalog
        .create_connection(
            NewConnection {
                name: body.name,
                kind,
                params,
            },
            state.clock.now(),
        )
        .await?;
    tracing::info!(connection = %connection.name, "connection created");
    Ok((StatusCode::CREATED, Json(connection.into())))
}

#[utoipa::path(get, path = "/api/v1/connections", tag = "connections",
    responses((status = 200, body = Vec<ConnectionView>)))]
pub async fn list_connections(
    State(state): State<AppState>,
) -> Result<Json<Vec<ConnectionView>>, ApiError> {
    let all = state.catalog.list_connections().await?;
    Ok(Json(all.into_iter().map(Into::into).collect()))
}

#[utoipa::path(get, path = "/api/v1/connections/{id}", tag = "connections",
    params(("id" = String, Path, description = "connection id (con_…)")),
    responses((status = 200, body = ConnectionView), (status = 404, body = ErrorBody)))]
pub async fn get_connection(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ConnectionView>, ApiError> {
    let id = path_id(IdKind::Connection, &id)?;
    Ok(Json(state.catalog.get_connection(&id).await?.into()))
}

#[utoipa::path(put, path = "/api/v1/connections/{id}", tag = "connections",
    params(("id" = String, Path, description = "connection id")),
    request_body = UpdateConnection,
    responses((status = 200, body = ConnectionView), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_connection(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateConnection>,
) -> Result<Json<ConnectionView>, ApiError> {
    principal.require(Role::Admin)?;
    let id = path_id(IdKind::Connection, &id)?;
    let existing = state.catalog.get_connection(&id).await?;
    if let Some(name) = &body.name {
        check_name(name)?;
    }
    let params = body.params.map(normalize_params);
    if let Some(params) = &params {
        let checked = params.clone();
        state
            .connector_call(existing.kind, CHECK_LIMIT, move |c| {
                c.check_connection(&checked)
            })
            .await?;
    }
    let updated = state
        .catalog
        .update_connection(
            &id,
            ConnectionUpdate {
                name: body.name,
                params,
            },
            state.clock.now(),
        )
        .await?;
    state.mqtt.reconcile(&id).await;
    Ok(Json(updated.into()))
}

#[utoipa::path(delete, path = "/api/v1/connections/{id}", tag = "connections",
    params(("id" = String, Path, description = "connection id")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_connection(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    principal.require(Role::Admin)?;
    let id = path_id(IdKind::Connection, &id)?;
    state.catalog.delete_connection(&id).await?;
    state.mqtt.reconcile(&id).await;
    Ok(StatusCode::NO_CONTENT)
}

async fn set_enabled(
    state: &AppState,
    principal: &Principal,
    id: &str,
    enabled: bool,
) -> Result<Json<ConnectionView>, ApiError> {
    principal.require(Role::Operator)?;
    let id = path_id(IdKind::Connection, id)?;
    let c = state
        .catalog
        .set_connection_enabled(&id, enabled, state.clock.now())
        .await?;
    tracing::warn!(connection = %c.name, enabled, "connection {}", if enabled { "enabled" } else { "disabled" });
    // A disabled MQTT connection stops consuming (the broker keeps the
    // messages for the persistent session); enabling resumes it.
    state.mqtt.reconcile(&id).await;
    Ok(Json(c.into()))
}

/// Emergency cut: syncs from a disabled connection are refused.
#[utoipa::path(put, path = "/api/v1/connections/{id}/disable", tag = "connections",
    params(("id" = String, Path, description = "connection id")),
    responses((status = 200, body = ConnectionView), (status = 404, body = ErrorBody)))]
pub async fn disable_connection(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<ConnectionView>, ApiError> {
    set_enabled(&state, &principal, &id, false).await
}

#[utoipa::path(put, path = "/api/v1/connections/{id}/enable", tag = "connections",
    params(("id" = String, Path, description = "connection id")),
    responses((status = 200, body = ConnectionView), (status = 404, body = ErrorBody)))]
pub async fn enable_connection(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<ConnectionView>, ApiError> {
    set_enabled(&state, &principal, &id, true).await
}

#[derive(Debug, serde::Serialize, ToSchema)]
pub struct TestResult {
    pub ok: bool,
    pub message: String,
    pub elapsed_ms: u64,
}

/// Checks that the source behind a connection is reachable and allowed.
#[utoipa::path(post, path = "/api/v1/connections/{id}/test", tag = "connections",
    params(("id" = String, Path, description = "connection id")),
    responses((status = 200, body = TestResult), (status = 404, body = ErrorBody)))]
pub async fn test_connection(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<TestResult>, ApiError> {
    principal.require(Role::Operator)?;
    let id = path_id(IdKind::Connection, &id)?;
    let connection = state.catalog.get_connection(&id).await?;
    let started = std::time::Instant::now();
    let params = connection.params.clone();
    let result = state
        .connector_call(connection.kind, TEST_LIMIT, move |c| c.test(&params))
        .await;
    let elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(Json(match result {
        Ok(()) => TestResult {
            ok: true,
            message: "reachable".into(),
            elapsed_ms,
        },
        Err(e) => TestResult {
            ok: false,
            message: e.message,
            elapsed_ms,
        },
    }))
}
