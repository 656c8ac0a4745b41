//! Backups and restores of this node's catalog and segments, over the
//! backup repository of `vega-backup`.
//!
//! - A **full** backup holds the catalog snapshot and every segment file
//!   any version references; a **catalog** backup only the snapshot; an
//!   **asset** backup the snapshot of one asset (its active version only)
//!   and that version's files.
//! - Writing a backup and deleting or pruning backups are serialized by one
//!   mutex: a blob a running backup found already stored must not be
//!   collected before its manifest is written. Restores take it too, so a
//!   delete never removes a blob a restore is reading.
//! - The work runs in a task of its own: a request that hits the API's
//!   deadline stops waiting, but the backup or restore still completes.
//! - A restore verifies the whole backup first and changes nothing if any
//!   object is damaged. Its files go to a new directory
//!   (`<asset id>/restore-<backup id>/part-NNNNN.parquet`, each written to a
//!   temporary file, checked, fsynced and renamed), are validated, pushed
//!   to the object store if there is one, and only then published as a new
//!   version: the versions before it stay, so a restore rolls back like
//!   any publish.

use std::collections::HashSet;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde_json::json;
use tokio::sync::Mutex;
use vega_backup::{BackupError, BackupManifest, BackupRepository, Scope, VerifyReport};
use vega_catalog::{AssetSnapshot, CatalogError, CatalogSnapshot};
use vega_core::{
    Asset, AssetName, Classify, ErrorClass, Id, Manifest, NewAsset, Segment, SyncMode, Version,
};

use crate::error::ApiError;
use crate::metrics::BackupLabels;
use crate::state::AppState;

/// The message of a refused full restore.
pub const FULL_RESTORE_REFUSED: &str =
    "a full restore needs an empty instance: use `vega backup restore` into an empty data directory";

impl From<BackupError> for ApiError {
    fn from(e: BackupError) -> Self {
        let class = e.class();
        let code = match &e {
            BackupError::NotFound { .. } => "not_found",
            BackupError::CorruptManifest { .. } => "backup_corrupt",
            BackupError::ObjectMissing { .. }
            | BackupError::SizeMismatch { .. }
            | BackupError::ChecksumMismatch { .. } => "backup_damaged",
            BackupError::Invalid { .. } => "bad_request",
            _ => match class {
                ErrorClass::Unavailable => "unavailable",
                ErrorClass::BadInput => "bad_request",
                ErrorClass::RuleBroken => "rule_broken",
                _ => "internal",
            },
        };
        let mut err = ApiError::from_class(class, code, e.to_string());
        if let BackupError::Invalid { what, .. } = &e {
            err = err.with_details(json!({ "field": what }));
        }
        err
    }
}

impl From<vega_storage::StorageError> for ApiError {
    fn from(e: vega_storage::StorageError) -> Self {
        let class = e.class();
        let code = match class {
            ErrorClass::RuleBroken => "rule_broken",
            ErrorClass::Unavailable => "unavailable",
            ErrorClass::BadInput => "bad_request",
            _ => "internal",
        };
        ApiError::from_class(class, code, e.to_string())
    }
}

/// How a restore publishes the backed-up data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreMode {
    /// As a new version of the asset it came from.
    Replace,
    /// As version 1 of a new asset with this name.
    NewAsset(AssetName),
}

/// What a restore did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RestoreOutcome {
    pub backup_id: String,
    pub asset: Asset,
    /// The version the restore published.
    pub version: Version,
    /// Whether the asset was created by the restore.
    pub created: bool,
}

/// The backup repository and the lock that serializes its writers.
pub struct BackupService {
    repo: BackupRepository,
    lock: Mutex<()>,
}

impl BackupService {
    pub fn new(repo: BackupRepository) -> Self {
        Self {
            repo,
            lock: Mutex::new(()),
        }
    }

    pub fn repository(&self) -> &BackupRepository {
        &self.repo
    }

    /// Every backup, oldest first, optionally of one asset and started at
    /// or after `from`.
    pub async fn list(
        &self,
        asset_id: Option<&str>,
        from: Option<DateTime<Utc>>,
    ) -> Result<Vec<BackupManifest>, ApiError> {
        let mut all = self.repo.list().await?;
        all.retain(|m| {
            asset_id.is_none_or(|a| m.asset_id.as_deref() == Some(a))
                && from.is_none_or(|f| m.created_at >= f)
        });
        Ok(all)
    }

    pub async fn get(&self, id: &str) -> Result<BackupManifest, ApiError> {
        Ok(self.repo.get(id).await?)
    }

    pub async fn verify(&self, id: &str) -> Result<VerifyReport, ApiError> {
        Ok(self.repo.verify(id).await?)
    }

    pub async fn delete(&self, id: &str) -> Result<vega_backup::DeleteReport, ApiError> {
        let _guard = self.lock.lock().await;
        Ok(self.repo.delete(id).await?)
    }

    pub async fn prune(
        &self,
        policy: &vega_backup::RetentionPolicy,
        scope: Option<Scope>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Id>, ApiError> {
        let _guard = self.lock.lock().await;
        Ok(self.repo.prune(policy, scope, now).await?)
    }

    /// Writes a backup (see the module docs). Runs in its own task.
    pub async fn create(
        state: &AppState,
        scope: Scope,
        asset_id: Option<Id>,
        description: Option<String>,
    ) -> Result<BackupManifest, ApiError> {
        let state = state.clone();
        run_detached(async move {
            let started = Instant::now();
            let service = state.backups.clone();
            let _guard = service.lock.lock().await;
            // Every backup is a job (kind `backup`), owned by this node
            // under a lease like a sync, so it shows in `GET /api/v1/jobs`.
            let job = state
                .catalog
                .start_owned_job(
                    vega_core::JobKind::Backup,
                    asset_id.as_ref(),
                    serde_json::json!({ "scope": scope.as_str(), "description": description }),
                    &state.node_id,
                    state.cluster.lease_ttl,
                    state.clock.now(),
                )
                .await?;
            let written = service
                .write_backup(&state, scope, asset_id, description)
                .await;
            let outcome = match &written {
                Ok(manifest) => {
                    let _ = state
                        .catalog
                        .update_job_progress(
                            &job.id,
                            vega_catalog::JobProgress {
                                rows: manifest.objects.len() as u64,
                                bytes: manifest.stats.bytes_written,
                            },
                        )
                        .await;
                    vega_catalog::JobOutcome::Succeeded {
                        result_version: None,
                    }
                }
                Err(e) => vega_catalog::JobOutcome::Failed {
                    error: e.to_string(),
                },
            };
            if let Err(e) = state
                .catalog
                .finish_job(&job.id, outcome, state.clock.now())
                .await
            {
                tracing::warn!(job_id = %job.id, error = %e, "recording the end of a backup job failed");
            }
            let manifest = written?;
            let labels = BackupLabels {
                scope: scope.as_str().to_string(),
            };
            let m = &state.metrics;
            m.backup_last_success
                .get_or_create(&labels)
                .set(manifest.finished_at.timestamp());
            m.backup_duration
                .get_or_create(&labels)
                .observe(started.elapsed().as_secs_f64());
            m.backup_bytes_written
                .get_or_create(&labels)
                .inc_by(manifest.stats.bytes_written);
            m.backup_bytes_deduplicated
                .get_or_create(&labels)
                .inc_by(manifest.stats.bytes_deduplicated);
            tracing::info!(backup = %manifest.id, scope = scope.as_str(),
                objects = manifest.objects.len() as u64,
                bytes_written = manifest.stats.bytes_written,
                bytes_deduplicated = manifest.stats.bytes_deduplicated,
                "backup written");
            Ok(manifest)
        })
        .await
    }

    async fn write_backup(
        &self,
        state: &AppState,
        scope: Scope,
        asset_id: Option<Id>,
        description: Option<String>,
    ) -> Result<BackupManifest, ApiError> {
        let snapshot = state.catalog.export_snapshot(state.clock.now()).await?;
        // What goes in: the catalog blob, the versions whose files are
        // included, and the recovery point.
        let (catalog_json, versions, newest): (Vec<u8>, Vec<Version>, Option<DateTime<Utc>>) =
            match scope {
                Scope::Full | Scope::Catalog => {
                    let newest = snapshot
                        .versions
                        .iter()
                        .map(|v| v.created_at)
                        .chain(snapshot.assets.iter().map(|a| a.updated_at))
                        .max();
                    let versions = if scope == Scope::Full {
                        snapshot.versions.clone()
                    } else {
                        Vec::new()
                    };
                    (snapshot.to_json()?, versions, newest)
                }
                Scope::Asset => {
                    let Some(id) = &asset_id else {
                        return Err(ApiError::unprocessable("an asset backup needs asset_id")
                            .with_details(json!({ "field": "asset_id" })));
                    };
                    let Some(mut part) = snapshot.asset(id) else {
                        return Err(ApiError::not_found(format!("asset '{id}' not found")));
                    };
                    let Some(active) = part.asset.active_version else {
                        return Err(ApiError::unprocessable(format!(
                            "asset {} has no version yet: sync it first",
                            part.asset.qualified_name()
                        )));
                    };
                    part.versions.retain(|v| v.number == active);
                    let newest = part
                        .versions
                        .iter()
                        .map(|v| v.created_at)
                        .max()
                        .or(Some(part.asset.updated_at));
                    let json = serde_json::to_vec_pretty(&part).map_err(|e| {
                        ApiError::from_class(
                            ErrorClass::Internal,
                            "internal",
                            format!("cannot encode the asset snapshot: {e}"),
                        )
                    })?;
                    (json, part.versions.clone(), newest)
                }
            };

        let mut writer = self
            .repo
            .begin(
                scope,
                asset_id.as_ref().map(Id::as_str),
                description.as_deref(),
            )
            .await?;
        // A segment may belong to several versions (appends); it is backed
        // up once.
        let mut seen = HashSet::new();
        let mut segments: Vec<&Segment> = Vec::new();
        for version in &versions {
            // With an object store, a version this node never served may
            // lack its files here: fetch (and check) them first.
            state.store.pull(&version.manifest).await?;
            for segment in &version.manifest.segments {
                if seen.insert(segment.path.as_str()) {
                    segments.push(segment);
                }
            }
        }
        let total: u64 = segments.iter().map(|s| s.bytes).sum::<u64>() + catalog_json.len() as u64;
        writer.announce_total(total, segments.len() as u64 + 1);
        for segment in segments {
            let local = state.store.absolute(&segment.path)?;
            writer
                .add_file(&segment.path, &local, Some(&segment.sha256))
                .await?;
        }
        writer.add_catalog(catalog_json).await?;
        if let Some(at) = newest {
            writer.set_newest_data_at(at);
        }
        Ok(writer.finish().await?)
    }

    /// Restores the asset `target` (for an asset backup: the backed-up
    /// asset when `None`) from backup `backup_id`. Runs in its own task.
    pub async fn restore(
        state: &AppState,
        backup_id: Id,
        target: Option<Id>,
        mode: RestoreMode,
    ) -> Result<RestoreOutcome, ApiError> {
        let state = state.clone();
        run_detached(async move {
            let service = state.backups.clone();
            let _guard = service.lock.lock().await;
            let backup = service.repo.get(backup_id.as_str()).await?;
            let target = match (backup.scope, target, &backup.asset_id) {
                (Scope::Catalog, _, _) => {
                    return Err(ApiError::unprocessable(format!(
                        "backup '{}' is a catalog backup: it holds no segment files to restore",
                        backup.id
                    )))
                }
                (Scope::Full, None, _) => {
                    return Err(ApiError::new(
                        axum::http::StatusCode::CONFLICT,
                        "conflict",
                        FULL_RESTORE_REFUSED,
                    ))
                }
                (Scope::Full, Some(t), _) => t,
                (Scope::Asset, None, Some(a)) => Id::parse(vega_core::IdKind::Asset, a)
                    .ok_or_else(|| {
                        ApiError::unprocessable(format!(
                            "backup '{}' names an invalid asset id '{a}'",
                            backup.id
                        ))
                    })?,
                (Scope::Asset, Some(t), Some(a)) if t.as_str() == a => t,
                (Scope::Asset, Some(t), Some(a)) => {
                    return Err(ApiError::unprocessable(format!(
                        "backup '{}' holds asset '{a}', not '{t}'",
                        backup.id
                    ))
                    .with_details(json!({ "field": "target" })))
                }
                (Scope::Asset, _, None) => {
                    return Err(ApiError::unprocessable(format!(
                        "backup '{}' names no asset",
                        backup.id
                    )))
                }
            };
            match mode {
                RestoreMode::Replace => service.restore_replace(&state, &backup, &target).await,
                RestoreMode::NewAsset(name) => {
                    service
                        .restore_new_asset(&state, &backup, &target, name)
                        .await
                }
            }
        })
        .await
    }

    /// Publishes the backed-up active version of `asset` as a new version
    /// of it.
    pub async fn restore_replace(
        &self,
        state: &AppState,
        backup: &BackupManifest,
        asset: &Id,
    ) -> Result<RestoreOutcome, ApiError> {
        // A stream asset's flushes append to its active version: none may
        // run between reading the asset and publishing the restored one
        // (retention holds the same gate).
        let is_stream =
            state.catalog.get_asset(asset).await?.sync_mode == vega_core::SyncMode::Stream;
        let _writers = match is_stream {
            true => state.ingest.exclusive(asset).await,
            false => None,
        };
        let current = state.catalog.get_asset(asset).await?;
        let (part, version) = self.checked_version(backup, asset).await?;
        let manifest = self.restore_files(state, backup, asset, &version).await?;
        let watermark = restored_watermark(&current, &part);
        let published = state
            .catalog
            .publish_version_with_watermark(asset, manifest, watermark, None, state.clock.now())
            .await?;
        let asset = state.catalog.get_asset(asset).await?;
        crate::publish::register_version(&state.engine, &state.store, &asset, &published)?;
        tracing::warn!(asset = %asset.qualified_name(), backup = %backup.id,
            version = %published.label(), "asset restored from a backup");
        Ok(RestoreOutcome {
            backup_id: backup.id.to_string(),
            asset,
            version: published,
            created: false,
        })
    }

    /// Creates the asset `name` like the backed-up `asset` (same
    /// connection, source, checks and retention; no schedule, so that a
    /// scheduled sync does not overwrite the restored data) and publishes
    /// the backed-up active version as its v1.
    pub async fn restore_new_asset(
        &self,
        state: &AppState,
        backup: &BackupManifest,
        asset: &Id,
        name: AssetName,
    ) -> Result<RestoreOutcome, ApiError> {
        let (part, version) = self.checked_version(backup, asset).await?;
        let source = &part.asset;
        match state.catalog.get_connection(&source.connection_id).await {
            Ok(_) => {}
            Err(CatalogError::NotFound { .. }) => {
                return Err(ApiError::unprocessable(format!(
                    "the connection '{}' of asset {} no longer exists: create the asset first and restore with mode replace",
                    source.connection_id,
                    source.qualified_name()
                )))
            }
            Err(e) => return Err(e.into()),
        }
        let created = state
            .catalog
            .create_asset(
                NewAsset {
                    namespace: name.namespace,
                    name: name.name,
                    connection_id: source.connection_id.clone(),
                    sync_mode: source.sync_mode,
                    source: source.source.clone(),
                    checks: source.checks.clone(),
                    schedule: None,
                    retention: source.retention.clone(),
                },
                state.clock.now(),
            )
            .await?;
        let result = async {
            let manifest = self
                .restore_files(state, backup, &created.id, &version)
                .await?;
            let watermark = restored_watermark(&created, &part);
            let published = state
                .catalog
                .publish_version_with_watermark(
                    &created.id,
                    manifest,
                    watermark,
                    None,
                    state.clock.now(),
                )
                .await?;
            let asset = state.catalog.get_asset(&created.id).await?;
            crate::publish::register_version(&state.engine, &state.store, &asset, &published)?;
            Ok::<_, ApiError>((asset, published))
        }
        .await;
        match result {
            Ok((asset, published)) => {
                state.mqtt.reconcile(&asset.connection_id).await;
                tracing::warn!(asset = %asset.qualified_name(), backup = %backup.id,
                    from = %part.asset.qualified_name(), "asset created from a backup");
                Ok(RestoreOutcome {
                    backup_id: backup.id.to_string(),
                    asset,
                    version: published,
                    created: true,
                })
            }
            Err(e) => {
                // Nothing changed: the new asset goes again (its files
                // become orphans, cleaned at the next start).
                if let Err(cleanup) = state.catalog.delete_asset(&created.id).await {
                    tracing::warn!(asset = %created.qualified_name(), error = %cleanup,
                        "could not remove the asset of a failed restore");
                }
                Err(e)
            }
        }
    }

    /// Verifies the whole backup and returns the backed-up asset with its
    /// active version. Any damaged object refuses the restore (422, naming
    /// the object), before anything is written.
    async fn checked_version(
        &self,
        backup: &BackupManifest,
        asset: &Id,
    ) -> Result<(AssetSnapshot, Version), ApiError> {
        let report = self.repo.verify(backup.id.as_str()).await?;
        if let Some(first) = report.problems.first() {
            return Err(ApiError::unprocessable(format!(
                "backup '{}' is damaged, nothing was restored: {first}{}",
                backup.id,
                match report.problems.len() {
                    1 => String::new(),
                    n => format!(" (and {} more)", n - 1),
                }
            ))
            .with_details(json!({ "problems": report.problems })));
        }
        let bytes = self.repo.read_catalog(backup).await?;
        let part = match backup.scope {
            Scope::Asset => serde_json::from_slice::<AssetSnapshot>(&bytes).map_err(|e| {
                ApiError::unprocessable(format!(
                    "the asset snapshot of backup '{}' cannot be read: {e}",
                    backup.id
                ))
            })?,
            _ => CatalogSnapshot::from_json(&bytes)?
                .asset(asset)
                .ok_or_else(|| {
                    ApiError::not_found(format!(
                        "asset '{asset}' not found in backup '{}'",
                        backup.id
                    ))
                })?,
        };
        if &part.asset.id != asset {
            return Err(ApiError::unprocessable(format!(
                "backup '{}' holds asset '{}', not '{asset}'",
                backup.id, part.asset.id
            )));
        }
        let Some(active) = part.asset.active_version else {
            return Err(ApiError::unprocessable(format!(
                "asset {} had no version when backup '{}' was taken",
                part.asset.qualified_name(),
                backup.id
            )));
        };
        let version = part
            .versions
            .iter()
            .find(|v| v.number == active)
            .cloned()
            .ok_or_else(|| {
                ApiError::unprocessable(format!(
                    "backup '{}' lacks version v{active} of asset {}",
                    backup.id,
                    part.asset.qualified_name()
                ))
            })?;
        Ok((part, version))
    }

    /// Restores `version`'s files as a new version directory of `asset`
    /// and returns the manifest naming them, validated and (with an object
    /// store) pushed.
    async fn restore_files(
        &self,
        state: &AppState,
        backup: &BackupManifest,
        asset: &Id,
        version: &Version,
    ) -> Result<Manifest, ApiError> {
        let store = &state.store;
        // A directory of its own, never reused.
        let base = format!("{}/restore-{}", asset, backup.id);
        let mut dir = base.clone();
        let mut n = 1;
        while store.absolute(&dir)?.exists() {
            n += 1;
            dir = format!("{base}-{n}");
        }
        let _hold = store.hold(&dir);
        let mut segments = Vec::with_capacity(version.manifest.segments.len());
        for (i, segment) in version.manifest.segments.iter().enumerate() {
            let object = backup
                .objects
                .iter()
                .find(|o| o.path == segment.path)
                .ok_or_else(|| {
                    ApiError::unprocessable(format!(
                        "backup '{}' lacks the file '{}' of version {}",
                        backup.id,
                        segment.path,
                        version.label()
                    ))
                })?;
            let path = format!("{dir}/part-{i:05}.parquet");
            let dest = store.absolute(&path)?;
            if let Err(e) = self.repo.restore_file(object, &dest).await {
                remove_dir(store.absolute(&dir)?).await;
                return Err(e.into());
            }
            segments.push(Segment {
                path,
                rows: segment.rows,
                bytes: object.bytes,
                sha256: object.sha256.clone(),
            });
        }
        let manifest = Manifest {
            schema: version.manifest.schema.clone(),
            segments,
        };
        let checked = {
            let store = store.clone();
            let manifest = manifest.clone();
            tokio::task::spawn_blocking(move || store.validate(&manifest)).await
        };
        let outcome = match checked {
            Ok(Ok(())) => store.push(&manifest).await.map_err(ApiError::from),
            Ok(Err(e)) => Err(e.into()),
            Err(e) => Err(ApiError::from_class(
                ErrorClass::Internal,
                "internal",
                format!("validating the restored files failed: {e}"),
            )),
        };
        if let Err(e) = outcome {
            remove_dir(store.absolute(&dir)?).await;
            return Err(e);
        }
        Ok(manifest)
    }
}

/// The watermark to publish with a restored version: an incremental
/// asset resumes from where the backed-up data ended; other assets keep
/// theirs (a stream asset's watermark belongs to its write-ahead log).
fn restored_watermark(current: &Asset, part: &AssetSnapshot) -> Option<serde_json::Value> {
    match current.sync_mode {
        SyncMode::Incremental => part.asset.watermark.clone(),
        _ => None,
    }
}

async fn remove_dir(dir: std::path::PathBuf) {
    if let Err(e) = tokio::fs::remove_dir_all(&dir).await {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(dir = %dir.display(), error = %e, "could not remove the files of a failed restore");
        }
    }
}

/// Runs `work` in a task of its own and waits for it: if the caller stops
/// waiting (the request's deadline), the work still completes.
async fn run_detached<T: Send + 'static>(
    work: impl std::future::Future<Output = Result<T, ApiError>> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::spawn(work).await {
        Ok(result) => result,
        Err(e) => Err(ApiError::from_class(
            ErrorClass::Internal,
            "internal",
            format!("the backup task failed: {e}"),
        )),
    }
}
