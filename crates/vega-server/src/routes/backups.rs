//! `/api/v1/backups` and `/api/v1/restore`: write, list, read, verify and
//! delete backups; restore an asset from one (see `crate::backup`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};
use vega_backup::{BackupManifest, BackupStats, Scope};
use vega_core::{AssetName, Id, IdKind, Role};

use super::path_id;
use super::views::{AssetView, ErrorBody, VersionView};
use crate::auth::Principal;
use crate::backup::{BackupService, RestoreMode, RestoreOutcome};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBackup {
    /// `full` (catalog and every segment), `catalog` (catalog only) or
    /// `asset` (one asset's active version).
    pub scope: String,
    /// The asset of an `asset` backup.
    #[serde(default)]
    pub asset_id: Option<String>,
    /// Free text kept with the backup.
    #[serde(default)]
    pub description: Option<String>,
}

/// What writing a backup cost.
#[derive(Debug, Serialize, ToSchema)]
pub struct BackupStatsView {
    /// Bytes of every object of the backup.
    pub bytes_total: u64,
    /// Bytes uploaded by this backup.
    pub bytes_written: u64,
    /// Bytes already in the repository, not uploaded again.
    pub bytes_deduplicated: u64,
    pub objects_written: u64,
    pub objects_deduplicated: u64,
}

impl From<&BackupStats> for BackupStatsView {
    fn from(s: &BackupStats) -> Self {
        BackupStatsView {
            bytes_total: s.bytes_total,
            bytes_written: s.bytes_written,
            bytes_deduplicated: s.bytes_deduplicated,
            objects_written: s.objects_written,
            objects_deduplicated: s.objects_deduplicated,
        }
    }
}

/// A file of a backup.
#[derive(Debug, Serialize, ToSchema)]
pub struct BackupFileView {
    /// Path relative to the segment root.
    pub path: String,
    pub sha256: String,
    pub bytes: u64,
}

/// A backup.
#[derive(Debug, Serialize, ToSchema)]
pub struct BackupView {
    /// `bak_…`.
    pub id: String,
    /// `full`, `catalog` or `asset`.
    pub scope: String,
    pub asset_id: Option<String>,
    pub description: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// The Vega version that wrote it.
    pub vega_version: String,
    /// The newest data it holds (its recovery point).
    pub newest_data_at: Option<DateTime<Utc>>,
    /// Whether it holds a catalog snapshot.
    pub catalog: bool,
    /// Files (segments) it holds.
    pub objects: usize,
    /// Bytes of its files and catalog snapshot.
    pub bytes: u64,
    pub stats: BackupStatsView,
    /// The files, only when one backup is read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<BackupFileView>>,
}

impl BackupView {
    fn new(m: &BackupManifest, with_files: bool) -> Self {
        BackupView {
            id: m.id.to_string(),
            scope: m.scope.as_str().to_string(),
            asset_id: m.asset_id.clone(),
            description: m.description.clone(),
            created_at: m.created_at,
            finished_at: m.finished_at,
            vega_version: m.vega_version.clone(),
            newest_data_at: m.newest_data_at,
            catalog: m.catalog.is_some(),
            objects: m.objects.len(),
            bytes: m.stats.bytes_total,
            stats: (&m.stats).into(),
            files: with_files.then(|| {
                m.objects
                    .iter()
                    .map(|o| BackupFileView {
                        path: o.path.clone(),
                        sha256: o.sha256.clone(),
                        bytes: o.bytes,
                    })
                    .collect()
            }),
        }
    }
}

fn parse_scope(raw: &str) -> Result<Scope, ApiError> {
    Scope::parse(raw).ok_or_else(|| {
        ApiError::bad_request(format!(
            "scope must be 'full', 'catalog' or 'asset', not '{raw}'"
        ))
        .with_details(json!({ "field": "scope" }))
    })
}

fn backup_id(raw: &str) -> Result<Id, ApiError> {
    path_id(IdKind::Backup, raw)
}

/// Writes a backup now and answers when it is complete.
#[utoipa::path(post, path = "/api/v1/backups", tag = "backups", request_body = CreateBackup,
    responses((status = 201, body = BackupView), (status = 400, body = ErrorBody, description = "unknown scope"),
              (status = 404, body = ErrorBody, description = "unknown asset"),
              (status = 422, body = ErrorBody, description = "an asset backup without asset_id, or of an asset without a version")))]
pub async fn create_backup(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiJson(body): ApiJson<CreateBackup>,
) -> Result<(StatusCode, Json<BackupView>), ApiError> {
    principal.require(Role::Operator)?;
    let scope = parse_scope(&body.scope)?;
    let asset_id = match (scope, body.asset_id) {
        (Scope::Asset, None) => {
            return Err(ApiError::unprocessable("an asset backup needs asset_id")
                .with_details(json!({ "field": "asset_id" })))
        }
        (Scope::Asset, Some(raw)) => Some(
            Id::parse(IdKind::Asset, &raw)
                .ok_or_else(|| ApiError::not_found(format!("asset '{raw}' not found")))?,
        ),
        (_, Some(_)) => {
            return Err(ApiError::bad_request(format!(
                "a {} backup takes no asset_id",
                scope.as_str()
            ))
            .with_details(json!({ "field": "asset_id" })))
        }
        (_, None) => None,
    };
    let manifest = BackupService::create(&state, scope, asset_id, body.description).await?;
    Ok((StatusCode::CREATED, Json(BackupView::new(&manifest, false))))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct BackupQuery {
    /// Only backups of this asset.
    pub asset_id: Option<String>,
    /// Only backups started at or after this time (RFC 3339).
    pub from: Option<String>,
}

/// Lists backups, oldest first.
#[utoipa::path(get, path = "/api/v1/backups", tag = "backups", params(BackupQuery),
    responses((status = 200, body = Vec<BackupView>), (status = 400, body = ErrorBody)))]
pub async fn list_backups(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<BackupQuery>,
) -> Result<Json<Vec<BackupView>>, ApiError> {
    let from = match &q.from {
        Some(raw) => Some(
            DateTime::parse_from_rfc3339(raw)
                .map_err(|e| {
                    ApiError::bad_request(format!(
                        "from must be an RFC 3339 time, not '{raw}': {e}"
                    ))
                    .with_details(json!({ "field": "from" }))
                })?
                .with_timezone(&Utc),
        ),
        None => None,
    };
    let backups = state.backups.list(q.asset_id.as_deref(), from).await?;
    Ok(Json(
        backups.iter().map(|m| BackupView::new(m, false)).collect(),
    ))
}

/// One backup, with its files.
#[utoipa::path(get, path = "/api/v1/backups/{id}", tag = "backups",
    params(("id" = String, Path, description = "backup id")),
    responses((status = 200, body = BackupView), (status = 404, body = ErrorBody)))]
pub async fn get_backup(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<BackupView>, ApiError> {
    let id = backup_id(&id)?;
    let manifest = state.backups.get(id.as_str()).await?;
    Ok(Json(BackupView::new(&manifest, true)))
}

/// Reads every object of a backup back and checks it.
#[utoipa::path(post, path = "/api/v1/backups/{id}/verify", tag = "backups",
    params(("id" = String, Path, description = "backup id")),
    responses((status = 200, description = "the report: ok, objects_checked, bytes_checked, problems (each with path, catalog, sha256, kind and its expected/actual values)"),
              (status = 404, body = ErrorBody)))]
pub async fn verify_backup(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Role::Operator)?;
    let id = backup_id(&id)?;
    let report = state.backups.verify(id.as_str()).await?;
    Ok(Json(json!({
        "id": report.id.to_string(),
        "ok": report.is_ok(),
        "objects_checked": report.objects_checked,
        "bytes_checked": report.bytes_checked,
        "problems": report.problems,
    })))
}

/// Deletes a backup and the objects no other backup references.
#[utoipa::path(delete, path = "/api/v1/backups/{id}", tag = "backups",
    params(("id" = String, Path, description = "backup id")),
    responses((status = 200, description = "deleted, freed_objects, freed_bytes, kept_shared_objects, kept_shared_bytes"),
              (status = 404, body = ErrorBody)))]
pub async fn delete_backup(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Role::Operator)?;
    let id = backup_id(&id)?;
    let report = state.backups.delete(id.as_str()).await?;
    tracing::warn!(backup = %id, freed_bytes = report.freed_bytes, "backup deleted");
    Ok(Json(json!({
        "deleted": report.deleted.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "freed_objects": report.freed_objects,
        "freed_bytes": report.freed_bytes,
        "kept_shared_objects": report.kept_shared_objects,
        "kept_shared_bytes": report.kept_shared_bytes,
    })))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreBody {
    pub backup_id: String,
    /// The asset to restore (its id). Optional for an asset backup (the
    /// backed-up asset); a full backup without one is a full restore,
    /// refused on a running instance.
    #[serde(default)]
    pub target: Option<String>,
    /// `replace` (default: a new version of the asset) or `new_asset`.
    #[serde(default)]
    pub mode: Option<String>,
    /// For `new_asset`: the new asset's `namespace.name`.
    #[serde(default)]
    pub name: Option<String>,
}

/// What a restore did.
#[derive(Debug, Serialize, ToSchema)]
pub struct RestoreView {
    pub backup_id: String,
    /// The asset restored into.
    pub asset: AssetView,
    /// The version the restore published.
    pub version: VersionView,
    /// Whether the restore created the asset (`new_asset`).
    pub created: bool,
}

impl From<RestoreOutcome> for RestoreView {
    fn from(o: RestoreOutcome) -> Self {
        let active = o.asset.active_version;
        RestoreView {
            backup_id: o.backup_id,
            version: VersionView::new(o.version, active),
            asset: o.asset.into(),
            created: o.created,
        }
    }
}

/// Restores an asset from a backup: verified first; published as a new
/// version (`replace`) or as v1 of a new asset (`new_asset`).
#[utoipa::path(post, path = "/api/v1/restore", tag = "backups", request_body = RestoreBody,
    responses((status = 200, body = RestoreView, description = "restored into an existing asset"),
              (status = 201, body = RestoreView, description = "restored into a new asset"),
              (status = 400, body = ErrorBody, description = "unknown mode, bad name"),
              (status = 404, body = ErrorBody, description = "unknown backup or asset"),
              (status = 409, body = ErrorBody, description = "a full restore, or the new name is taken"),
              (status = 422, body = ErrorBody, description = "the backup is damaged (the error names the object); nothing changed")))]
pub async fn restore(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiJson(body): ApiJson<RestoreBody>,
) -> Result<(StatusCode, Json<RestoreView>), ApiError> {
    principal.require(Role::Operator)?;
    let backup = Id::parse(IdKind::Backup, &body.backup_id)
        .ok_or_else(|| ApiError::not_found(format!("backup '{}' not found", body.backup_id)))?;
    let target = match &body.target {
        Some(raw) => Some(
            Id::parse(IdKind::Asset, raw)
                .ok_or_else(|| ApiError::not_found(format!("asset '{raw}' not found")))?,
        ),
        None => None,
    };
    let mode = match (body.mode.as_deref().unwrap_or("replace"), body.name) {
        ("replace", None) => RestoreMode::Replace,
        ("replace", Some(_)) => {
            return Err(ApiError::bad_request("name is only for mode 'new_asset'")
                .with_details(json!({ "field": "name" })))
        }
        ("new_asset", Some(name)) => {
            RestoreMode::NewAsset(AssetName::parse(&name).map_err(|e| {
                ApiError::bad_request(e.to_string()).with_details(json!({ "field": "name" }))
            })?)
        }
        ("new_asset", None) => {
            return Err(ApiError::bad_request(
                "mode 'new_asset' needs name: the new asset's namespace.name",
            )
            .with_details(json!({ "field": "name" })))
        }
        (other, _) => {
            return Err(ApiError::bad_request(format!(
                "mode must be 'replace' or 'new_asset', not '{other}'"
            ))
            .with_details(json!({ "field": "mode" })))
        }
    };
    let outcome = BackupService::restore(&state, backup, target, mode).await?;
    let status = if outcome.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(outcome.into())))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AssetRestoreParams {
    /// The backup to restore from (`bak_…`).
    pub backup_id: String,
}

/// Restores this asset from a backup as a new version (`replace` mode of
/// `POST /api/v1/restore`).
#[utoipa::path(post, path = "/api/v1/assets/{id}/restore", tag = "backups",
    params(("id" = String, Path, description = "asset id"), AssetRestoreParams),
    responses((status = 200, body = RestoreView), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody, description = "the backup is damaged or does not hold the asset; nothing changed")))]
pub async fn restore_asset(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<AssetRestoreParams>,
) -> Result<Json<RestoreView>, ApiError> {
    principal.require(Role::Operator)?;
    let asset = path_id(IdKind::Asset, &id)?;
    let backup = Id::parse(IdKind::Backup, &params.backup_id)
        .ok_or_else(|| ApiError::not_found(format!("backup '{}' not found", params.backup_id)))?;
    let outcome = BackupService::restore(&state, backup, Some(asset), RestoreMode::Replace).await?;
    Ok(Json(outcome.into()))
}
