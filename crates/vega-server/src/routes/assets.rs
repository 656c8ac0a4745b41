//! `/api/v1/assets`: create, list, read, update, delete assets; force a sync;
//! list versions; roll back.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};
use vega_catalog::AssetUpdate;
use vega_core::{AssetChecks, AssetName, Id, IdKind, NewAsset, Role, SyncMode};

use super::path_id;
use super::views::{AssetView, ErrorBody, JobView, VersionView};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAsset {
    /// Lower-case SQL identifier, e.g. `sales`.
    pub namespace: String,
    /// Lower-case SQL identifier, e.g. `orders`.
    pub name: String,
    pub connection_id: String,
    /// `full` (default) or `incremental` (the source names a cursor).
    #[serde(default)]
    pub sync_mode: Option<String>,
    /// Sync on its own: an interval (`"15m"`) or a cron expression with
    /// seconds (`"0 */5 * * * *"`).
    #[serde(default)]
    pub schedule: Option<String>,
    /// Rows older than `period` by `column` are removed (`{"column": "ts", "period": "30d"}`).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub retention: Option<vega_core::Retention>,
    /// What to read (for `file`: `{"path": "orders.csv", "format": "csv"}`).
    #[schema(value_type = Object)]
    pub source: Value,
    /// Checks a new version must pass before it is published.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub checks: Option<AssetChecks>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAsset {
    #[schema(value_type = Option<Object>)]
    pub source: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub checks: Option<AssetChecks>,
    /// A new schedule; an empty string removes it.
    pub schedule: Option<String>,
    /// `true` forgets the watermark: the next incremental sync reads from
    /// the beginning.
    #[serde(default)]
    pub reset_watermark: bool,
    /// A new retention (`{"column", "period"}`).
    #[schema(value_type = Option<Object>)]
    pub retention: Option<vega_core::Retention>,
    /// `true` removes the retention.
    #[serde(default)]
    pub remove_retention: bool,
}

fn check_retention(retention: &vega_core::Retention) -> Result<(), ApiError> {
    if retention.column.trim().is_empty() {
        return Err(
            ApiError::bad_request("retention.column must name a date or timestamp column")
                .with_details(json!({ "field": "retention.column" })),
        );
    }
    retention
        .period
        .parse::<vega_config::HumanDuration>()
        .map(|_| ())
        .map_err(|e| {
            ApiError::bad_request(format!("retention.period: {e}"))
                .with_details(json!({ "field": "retention.period" }))
        })
}

/// Refuses checks that could never run: a bad freshness age, an empty
/// unique set, an assertion that is not one read-only SELECT over `asset`.
async fn check_checks(state: &AppState, checks: &AssetChecks) -> Result<(), ApiError> {
    if let Some(fresh) = &checks.freshness {
        fresh
            .max_age
            .parse::<vega_config::HumanDuration>()
            .map_err(|e| {
                ApiError::bad_request(format!("checks.freshness.max_age: {e}"))
                    .with_details(json!({ "field": "checks.freshness.max_age" }))
            })?;
    }
    for (i, set) in checks.unique.iter().enumerate() {
        if set.is_empty() {
            return Err(
                ApiError::bad_request("a unique check needs at least one column")
                    .with_details(json!({ "field": format!("checks.unique[{i}]") })),
            );
        }
    }
    for (i, sql) in checks.sql.iter().enumerate() {
        state.engine.check_assertion(sql).await.map_err(|e| {
            let status = crate::error::status_of(vega_core::Classify::class(&e));
            ApiError::new(status, "invalid_check", format!("checks.sql[{i}]: {e}"))
                .with_details(json!({ "field": format!("checks.sql[{i}]") }))
        })?;
    }
    Ok(())
}

fn check_schedule(schedule: &str) -> Result<(), ApiError> {
    vega_sync::schedule::Schedule::parse(schedule)
        .map(|_| ())
        .map_err(|e| ApiError::bad_request(e).with_details(json!({ "field": "schedule" })))
}

async fn check_source(
    state: &AppState,
    connection_id: &Id,
    source: &Value,
) -> Result<(), ApiError> {
    let connection = state.catalog.get_connection(connection_id).await?;
    let source = source.clone();
    state
        .connector_call(
            connection.kind,
            std::time::Duration::from_secs(30),
            move |c| c.check_source(&connection.params, &source),
        )
        .await
}

#[utoipa::path(post, path = "/api/v1/assets", tag = "assets", request_body = CreateAsset,
    responses((status = 201, body = AssetView), (status = 400, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_asset(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiJson(body): ApiJson<CreateAsset>,
) -> Result<(StatusCode, Json<AssetView>), ApiError> {
    principal.require(Role::Admin)?;
    let name = AssetName::new(&body.namespace, &body.name).map_err(|e| {
        ApiError::bad_request(e.to_string()).with_details(json!({ "field": e.part }))
    })?;
    let sync_mode = match body.sync_mode.as_deref() {
        None => None,
        Some(m) => Some(SyncMode::parse(m).ok_or_else(|| {
            ApiError::bad_request(format!(
                "sync_mode must be 'full', 'incremental' or 'stream', not '{m}'"
            ))
            .with_details(json!({ "field": "sync_mode" }))
        })?),
    };
    if let Some(schedule) = &body.schedule {
        check_schedule(schedule)?;
    }
    if let Some(checks) = &body.checks {
        check_checks(&state, checks).await?;
    }
    if let Some(retention) = &body.retention {
        check_retention(retention)?;
    }
    let connection_id = Id::parse(IdKind::Connection, &body.connection_id).ok_or_else(|| {
        ApiError::unprocessable(format!(
            "connection '{}' does not exist",
            body.connection_id
        ))
        .with_details(json!({ "field": "connection_id" }))
    })?;
    let connection = match state.catalog.get_connection(&connection_id).await {
        Ok(c) => c,
        Err(e) => {
            return Err(match e {
                vega_catalog::CatalogError::NotFound { .. } => {
                    ApiError::unprocessable(format!("connection '{connection_id}' does not exist"))
                        .with_details(json!({ "field": "connection_id" }))
                }
                other => other.into(),
            })
        }
    };
    // Push sources (MQTT, line protocol) feed stream assets; the others
    // are read by sync.
    let sync_mode = match (sync_mode, connection.kind.is_stream()) {
        (None, true) | (Some(SyncMode::Stream), true) => SyncMode::Stream,
        (None, false) => SyncMode::Full,
        (Some(SyncMode::Stream), false) => {
            return Err(ApiError::unprocessable(format!(
                "sync_mode 'stream' needs an mqtt or line_protocol connection; '{}' is {}",
                connection.name,
                connection.kind.as_str()
            ))
            .with_details(json!({ "field": "sync_mode" })))
        }
        (Some(mode), true) => {
            return Err(ApiError::unprocessable(format!(
                "a {} connection feeds stream assets; sync_mode '{}' is not possible",
                connection.kind.as_str(),
                mode.as_str()
            ))
            .with_details(json!({ "field": "sync_mode" })))
        }
        (Some(mode), false) => mode,
    };
    if sync_mode == SyncMode::Stream && body.schedule.is_some() {
        return Err(ApiError::unprocessable(
            "stream assets are fed continuously and take no schedule",
        )
        .with_details(json!({ "field": "schedule" })));
    }
    check_source(&state, &connection_id, &body.source).await?;
    let asset = state
        .catalog
        .create_asset(
            NewAsset {
                namespace: name.namespace,
                name: name.name,
                connection_id,
                sync_mode,
                source: body.source,
                checks: body.checks.unwrap_or_default(),
                schedule: body.schedule,
                retention: body.retention,
            },
            state.clock.now(),
        )
        .await?;
    tracing::info!(asset = %asset.qualified_name(), "asset created");
    state.mqtt.reconcile(&asset.connection_id).await;
    Ok((StatusCode::CREATED, Json(asset.into())))
}

#[utoipa::path(get, path = "/api/v1/assets", tag = "assets",
    responses((status = 200, body = Vec<AssetView>)))]
pub async fn list_assets(State(state): State<AppState>) -> Result<Json<Vec<AssetView>>, ApiError> {
    let all = state.catalog.list_assets().await?;
    Ok(Json(all.into_iter().map(Into::into).collect()))
}

#[utoipa::path(get, path = "/api/v1/assets/{id}", tag = "assets",
    params(("id" = String, Path, description = "asset id (ast_…)")),
    responses((status = 200, body = AssetView), (status = 404, body = ErrorBody)))]
pub async fn get_asset(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<AssetView>, ApiError> {
    let id = path_id(IdKind::Asset, &id)?;
    Ok(Json(state.catalog.get_asset(&id).await?.into()))
}

#[utoipa::path(put, path = "/api/v1/assets/{id}", tag = "assets",
    params(("id" = String, Path, description = "asset id")), request_body = UpdateAsset,
    responses((status = 200, body = AssetView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_asset(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateAsset>,
) -> Result<Json<AssetView>, ApiError> {
    principal.require(Role::Admin)?;
    let id = path_id(IdKind::Asset, &id)?;
    let asset = state.catalog.get_asset(&id).await?;
    if asset.sync_mode == SyncMode::Stream {
        if body.reset_watermark {
            return Err(ApiError::unprocessable(
                "a stream asset's watermark is the write-ahead-log position ingest has flushed; it cannot be reset",
            )
            .with_details(json!({ "field": "reset_watermark" })));
        }
        if body
            .schedule
            .as_deref()
            .is_some_and(|s| !s.trim().is_empty())
        {
            return Err(ApiError::unprocessable(
                "stream assets are fed continuously and take no schedule",
            )
            .with_details(json!({ "field": "schedule" })));
        }
    }
    if let Some(source) = &body.source {
        check_source(&state, &asset.connection_id, source).await?;
    }
    if let Some(checks) = &body.checks {
        check_checks(&state, checks).await?;
    }
    if let Some(retention) = &body.retention {
        check_retention(retention)?;
    }
    let schedule = match body.schedule {
        Some(s) if s.trim().is_empty() => Some(None),
        Some(s) => {
            check_schedule(&s)?;
            Some(Some(s))
        }
        None => None,
    };
    let updated = state
        .catalog
        .update_asset(
            &id,
            AssetUpdate {
                source: body.source,
                checks: body.checks,
                schedule,
                watermark: if body.reset_watermark {
                    Some(None)
                } else {
                    None
                },
                retention: if body.remove_retention {
                    Some(None)
                } else {
                    body.retention.map(Some)
                },
            },
            state.clock.now(),
        )
        .await?;
    if updated.sync_mode == SyncMode::Stream {
        state.mqtt.reconcile(&updated.connection_id).await;
    }
    Ok(Json(updated.into()))
}

#[utoipa::path(delete, path = "/api/v1/assets/{id}", tag = "assets",
    params(("id" = String, Path, description = "asset id")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_asset(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    principal.require(Role::Admin)?;
    let id = path_id(IdKind::Asset, &id)?;
    let asset = state.catalog.get_asset(&id).await?;
    state.catalog.delete_asset(&id).await?;
    state.ingest.forget(&asset);
    state.mqtt.reconcile(&asset.connection_id).await;
    state.engine.unregister(&asset.namespace, &asset.name)?;
    // The files of every version are orphans now.
    let sync = state.sync.clone();
    tokio::spawn(async move {
        if let Err(e) = sync.clean_orphans().await {
            tracing::warn!(error = %e, "removing a deleted asset's files failed; the next start retries");
        }
    });
    tracing::info!(asset = %asset.qualified_name(), "asset deleted");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SyncParams {
    /// `full` (default) or `incremental`.
    pub mode: Option<String>,
}

/// Forces a sync now (runbook: "force a full sync").
#[utoipa::path(post, path = "/api/v1/assets/{id}/sync", tag = "assets",
    params(("id" = String, Path, description = "asset id"), SyncParams),
    responses((status = 202, body = JobView), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "a sync already runs; details.existing names its job")))]
pub async fn sync_asset(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<SyncParams>,
) -> Result<(StatusCode, Json<JobView>), ApiError> {
    principal.require(Role::Operator)?;
    let id = path_id(IdKind::Asset, &id)?;
    let mode = match params.mode.as_deref() {
        None => SyncMode::Full,
        Some(m) => match SyncMode::parse(m) {
            Some(SyncMode::Stream) | None => {
                return Err(ApiError::bad_request(format!(
                    "mode must be 'full' or 'incremental', not '{m}'"
                ))
                .with_details(json!({ "field": "mode" })))
            }
            Some(mode) => mode,
        },
    };
    let job = state.sync.start(&id, mode).await?;
    Ok((StatusCode::ACCEPTED, Json(job.into())))
}

#[utoipa::path(get, path = "/api/v1/assets/{id}/versions", tag = "assets",
    params(("id" = String, Path, description = "asset id")),
    responses((status = 200, body = Vec<VersionView>), (status = 404, body = ErrorBody)))]
pub async fn list_versions(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Vec<VersionView>>, ApiError> {
    let id = path_id(IdKind::Asset, &id)?;
    let asset = state.catalog.get_asset(&id).await?;
    let versions = state.catalog.list_versions(&id).await?;
    Ok(Json(
        versions
            .into_iter()
            .map(|v| VersionView::new(v, asset.active_version))
            .collect(),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RollbackParams {
    /// The version to make active, e.g. `v3`.
    pub version: String,
}

/// Makes an earlier (or later) version active again.
#[utoipa::path(post, path = "/api/v1/assets/{id}/rollback", tag = "assets",
    params(("id" = String, Path, description = "asset id"), RollbackParams),
    responses((status = 200, body = AssetView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn rollback_asset(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<RollbackParams>,
) -> Result<Json<AssetView>, ApiError> {
    principal.require(Role::Operator)?;
    let id = path_id(IdKind::Asset, &id)?;
    let number = vega_core::parse_version_label(&params.version).ok_or_else(|| {
        ApiError::bad_request(format!(
            "version must look like 'v3', not '{}'",
            params.version
        ))
        .with_details(json!({ "field": "version" }))
    })?;
    let version = state.catalog.get_version(&id, number).await?;
    let asset = state
        .catalog
        .set_active_version(&id, number, state.clock.now())
        .await?;
    crate::publish::register_version(&state.engine, &state.store, &asset, &version)?;
    tracing::warn!(asset = %asset.qualified_name(), version = %version.label(), "asset rolled back");
    Ok(Json(asset.into()))
}

/// Runs the asset's checks on its active version and reports each one.
#[utoipa::path(post, path = "/api/v1/assets/{id}/validate", tag = "assets",
    params(("id" = String, Path, description = "asset id")),
    responses((status = 200, description = "the report: passed, and per check its result, detail and example rows"),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody, description = "no version yet")))]
pub async fn validate_asset(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Role::Operator)?;
    let id = path_id(IdKind::Asset, &id)?;
    let asset = state.catalog.get_asset(&id).await?;
    let Some(number) = asset.active_version else {
        return Err(ApiError::unprocessable(format!(
            "asset {} has no version yet: sync it first",
            asset.qualified_name()
        )));
    };
    let version = state.catalog.get_version(&id, number).await?;
    let report = state.sync.check(&asset, &version.manifest).await?;
    let mut body = serde_json::to_value(&report).unwrap_or(Value::Null);
    body["version"] = json!(version.label());
    Ok(Json(body))
}

/// Runs retention now: rows older than the asset's retention period are
/// removed in a new version (history kept, so it can be rolled back).
#[utoipa::path(post, path = "/api/v1/assets/{id}/retention", tag = "assets",
    params(("id" = String, Path, description = "asset id")),
    responses((status = 202, body = JobView), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "a sync runs"),
              (status = 422, body = ErrorBody, description = "no retention configured")))]
pub async fn run_retention(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<JobView>), ApiError> {
    principal.require(Role::Operator)?;
    let id = path_id(IdKind::Asset, &id)?;
    let job = state.sync.start_retention(&id).await?;
    Ok((StatusCode::ACCEPTED, Json(job.into())))
}
