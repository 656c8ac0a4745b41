//! Assets: the `assets` table. Deleting an asset also deletes its versions
//! and segments, and unlinks its jobs (their `asset_id` becomes NULL; the job
//! rows stay as history).
//!
//! `schedule` and `watermark_json` (migration 0002) are NULL-able: NULL is
//! `None` (no schedule; no incremental sync yet).

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{Any, Transaction};
use vega_core::{Asset, AssetChecks, Id, IdKind, NewAsset, SyncMode};

use super::codec::{self, db};
use super::pool::Route;
use super::SqlCatalog;
use crate::{AssetUpdate, CatalogError, Result};

const TABLE: &str = "assets";

pub(super) const COLUMNS: &str = "id, namespace, name, connection_id, sync_mode, source_json, \
     checks_json, schedule, watermark_json, retention_json, active_version, created_at, updated_at";

/// The same columns qualified with the table alias `a`, for joins.
pub(super) const COLUMNS_A: &str = "a.id, a.namespace, a.name, a.connection_id, a.sync_mode, \
     a.source_json, a.checks_json, a.schedule, a.watermark_json, a.retention_json, a.active_version, \
     a.created_at, a.updated_at";

pub(super) fn decode(row: &AnyRow) -> Result<Asset> {
    Ok(Asset {
        id: codec::id_col(row, TABLE, "id")?,
        namespace: codec::col(row, TABLE, "namespace")?,
        name: codec::col(row, TABLE, "name")?,
        connection_id: codec::id_col(row, TABLE, "connection_id")?,
        sync_mode: codec::enum_col(row, TABLE, "sync_mode", SyncMode::parse)?,
        source: codec::json_col(row, TABLE, "source_json")?,
        checks: codec::json_col::<AssetChecks>(row, TABLE, "checks_json")?,
        schedule: codec::col(row, TABLE, "schedule")?,
        watermark: codec::opt_json_col(row, TABLE, "watermark_json")?,
        retention: match codec::opt_json_col(row, TABLE, "retention_json")? {
            Some(v) => Some(
                serde_json::from_value(v)
                    .map_err(|e| codec::corrupt(TABLE, format!("retention_json: {e}")))?,
            ),
            None => None,
        },
        active_version: codec::opt_u32_col(row, TABLE, "active_version")?,
        created_at: codec::time_col(row, TABLE, "created_at")?,
        updated_at: codec::time_col(row, TABLE, "updated_at")?,
    })
}

pub(super) fn not_found(key: impl Into<String>) -> CatalogError {
    CatalogError::NotFound {
        what: "asset",
        key: key.into(),
    }
}

fn name_taken(namespace: &str, name: &str, existing: Option<Id>) -> CatalogError {
    CatalogError::Conflict {
        message: format!("asset '{namespace}.{name}' already exists"),
        existing: existing.map(|id| id.to_string()),
    }
}

/// Loads an asset inside a transaction.
pub(super) async fn load(tx: &mut Transaction<'static, Any>, id: &Id) -> Result<Asset> {
    let sql = format!("SELECT {COLUMNS} FROM assets WHERE id = $1");
    let row = sqlx::query(&sql)
        .bind(id.as_str())
        .fetch_optional(&mut **tx)
        .await
        .map_err(db("reading an asset"))?;
    match row {
        Some(row) => decode(&row),
        None => Err(not_found(id.as_str())),
    }
}

/// Fails with `NotFound` unless the asset exists.
/// Fails with NotFound unless the asset exists (in a reading transaction).
pub(super) async fn ensure_exists(tx: &mut Transaction<'static, Any>, id: &Id) -> Result<()> {
    let row = sqlx::query("SELECT id FROM assets WHERE id = $1")
        .bind(id.as_str())
        .fetch_optional(&mut **tx)
        .await
        .map_err(db("reading an asset"))?;
    match row {
        Some(_) => Ok(()),
        None => Err(not_found(id.as_str())),
    }
}

/// In a writing transaction: fails with NotFound unless the asset exists.
/// A no-op update, so that on PostgreSQL it also locks the asset's row until
/// the transaction ends: writers of one asset's versions (which number them
/// `highest + 1`) run one after the other, as SQLite's write lock makes
/// them anyway.
pub(super) async fn lock_existing(tx: &mut Transaction<'static, Any>, id: &Id) -> Result<()> {
    let locked = sqlx::query("UPDATE assets SET id = id WHERE id = $1")
        .bind(id.as_str())
        .execute(&mut **tx)
        .await
        .map_err(db("reading an asset"))?;
    if locked.rows_affected() == 0 {
        return Err(not_found(id.as_str()));
    }
    Ok(())
}

pub(super) async fn create(
    catalog: &SqlCatalog,
    new: NewAsset,
    now: DateTime<Utc>,
) -> Result<Asset> {
    let mut w = catalog.write_tx("creating an asset").await?;
    // Fails with NotFound naming the connection.
    super::connections::load(&mut w.tx, &new.connection_id).await?;
    let existing = sqlx::query("SELECT id FROM assets WHERE namespace = $1 AND name = $2")
        .bind(new.namespace.as_str())
        .bind(new.name.as_str())
        .fetch_optional(&mut *w.tx)
        .await
        .map_err(db("looking up an asset by name"))?;
    if let Some(row) = existing {
        let id = codec::id_col(&row, TABLE, "id")?;
        return Err(name_taken(&new.namespace, &new.name, Some(id)));
    }
    let asset = Asset {
        id: codec::new_id(IdKind::Asset, now),
        namespace: new.namespace,
        name: new.name,
        connection_id: new.connection_id,
        sync_mode: new.sync_mode,
        source: new.source,
        checks: new.checks,
        schedule: new.schedule,
        watermark: None,
        retention: new.retention,
        active_version: None,
        created_at: now,
        updated_at: now,
    };
    let sql = format!(
        "INSERT INTO assets ({COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
    );
    sqlx::query(&sql)
        .bind(asset.id.as_str())
        .bind(asset.namespace.as_str())
        .bind(asset.name.as_str())
        .bind(asset.connection_id.as_str())
        .bind(asset.sync_mode.as_str())
        .bind(asset.source.to_string())
        .bind(codec::json(TABLE, &asset.checks)?)
        .bind(asset.schedule.as_deref())
        .bind(None::<String>)
        .bind(
            asset
                .retention
                .as_ref()
                .map(|r| codec::json(TABLE, r))
                .transpose()?,
        )
        .bind(None::<i64>)
        .bind(codec::time(asset.created_at))
        .bind(codec::time(asset.updated_at))
        .execute(&mut *w.tx)
        .await
        .map_err(|e| {
            if codec::is_unique_violation(&e) {
                name_taken(&asset.namespace, &asset.name, None)
            } else if codec::is_foreign_key_violation(&e) {
                CatalogError::NotFound {
                    what: "connection",
                    key: asset.connection_id.to_string(),
                }
            } else {
                db("creating an asset")(e)
            }
        })?;
    w.commit("creating an asset").await?;
    Ok(asset)
}

pub(super) async fn get(catalog: &SqlCatalog, id: &Id) -> Result<Asset> {
    let sql = format!("SELECT {COLUMNS} FROM assets WHERE id = $1");
    let mut conn = catalog.reader("reading an asset", Route::Replica).await?;
    let row = sqlx::query(&sql)
        .bind(id.as_str())
        .fetch_optional(&mut *conn)
        .await
        .map_err(db("reading an asset"))?;
    match row {
        Some(row) => decode(&row),
        None => Err(not_found(id.as_str())),
    }
}

pub(super) async fn get_by_name(
    catalog: &SqlCatalog,
    namespace: &str,
    name: &str,
) -> Result<Asset> {
    let sql = format!("SELECT {COLUMNS} FROM assets WHERE namespace = $1 AND name = $2");
    let mut conn = catalog
        .reader("reading an asset by name", Route::Replica)
        .await?;
    let row = sqlx::query(&sql)
        .bind(namespace)
        .bind(name)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db("reading an asset by name"))?;
    match row {
        Some(row) => decode(&row),
        None => Err(not_found(format!("{namespace}.{name}"))),
    }
}

pub(super) async fn list(catalog: &SqlCatalog) -> Result<Vec<Asset>> {
    let sql = format!("SELECT {COLUMNS} FROM assets ORDER BY namespace, name");
    let mut conn = catalog.reader("listing assets", Route::Replica).await?;
    let rows = sqlx::query(&sql)
        .fetch_all(&mut *conn)
        .await
        .map_err(db("listing assets"))?;
    rows.iter().map(decode).collect()
}

pub(super) async fn update(
    catalog: &SqlCatalog,
    id: &Id,
    update: AssetUpdate,
    now: DateTime<Utc>,
) -> Result<Asset> {
    let mut w = catalog.write_tx("updating an asset").await?;
    let mut asset = load(&mut w.tx, id).await?;
    if let Some(source) = update.source {
        asset.source = source;
    }
    if let Some(checks) = update.checks {
        asset.checks = checks;
    }
    if let Some(schedule) = update.schedule {
        asset.schedule = schedule;
    }
    if let Some(watermark) = update.watermark {
        asset.watermark = watermark;
    }
    if let Some(retention) = update.retention {
        asset.retention = retention;
    }
    asset.updated_at = now;
    sqlx::query(
        "UPDATE assets SET source_json = $2, checks_json = $3, schedule = $4, \
         watermark_json = $5, updated_at = $6, retention_json = $7 WHERE id = $1",
    )
    .bind(asset.id.as_str())
    .bind(asset.source.to_string())
    .bind(codec::json(TABLE, &asset.checks)?)
    .bind(asset.schedule.as_deref())
    .bind(asset.watermark.as_ref().map(|w| w.to_string()))
    .bind(codec::time(asset.updated_at))
    .bind(
        asset
            .retention
            .as_ref()
            .map(|r| codec::json(TABLE, r))
            .transpose()?,
    )
    .execute(&mut *w.tx)
    .await
    .map_err(db("updating an asset"))?;
    w.commit("updating an asset").await?;
    Ok(asset)
}

pub(super) async fn delete(catalog: &SqlCatalog, id: &Id) -> Result<()> {
    let mut w = catalog.write_tx("deleting an asset").await?;
    lock_existing(&mut w.tx, id).await?;
    for (sql, action) in [
        (
            "UPDATE jobs SET asset_id = NULL WHERE asset_id = $1",
            "unlinking the jobs of an asset",
        ),
        (
            "DELETE FROM segments WHERE asset_id = $1",
            "deleting the segments of an asset",
        ),
        (
            "DELETE FROM versions WHERE asset_id = $1",
            "deleting the versions of an asset",
        ),
        ("DELETE FROM assets WHERE id = $1", "deleting an asset"),
    ] {
        sqlx::query(sql)
            .bind(id.as_str())
            .execute(&mut *w.tx)
            .await
            .map_err(db(action))?;
    }
    w.commit("deleting an asset").await?;
    Ok(())
}
