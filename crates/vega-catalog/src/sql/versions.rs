//! Versions and their manifests: the `versions` table (one row per version,
//! holding the schema) and the `segments` table (one row per Parquet file,
//! ordered by `ordinal`). A manifest is a version's schema plus its segments
//! in ordinal order.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use vega_core::{Asset, Id, Manifest, Segment, Version};

use super::codec::{self, db};
use super::{assets, SqlCatalog};
use crate::{CatalogError, Result};

const VERSIONS: &str = "versions";
const SEGMENTS: &str = "segments";

fn not_found(asset_id: &Id, number: u32) -> CatalogError {
    CatalogError::NotFound {
        what: "version",
        key: format!("{asset_id} v{number}"),
    }
}

/// A version row without its segments.
fn decode_version(row: &AnyRow) -> Result<Version> {
    Ok(Version {
        asset_id: codec::id_col(row, VERSIONS, "asset_id")?,
        number: codec::u32_col(row, VERSIONS, "number")?,
        created_at: codec::time_col(row, VERSIONS, "created_at")?,
        job_id: codec::opt_id_col(row, VERSIONS, "job_id")?,
        manifest: Manifest {
            schema: codec::json_col(row, VERSIONS, "schema_json")?,
            segments: Vec::new(),
        },
    })
}

/// A segment row with the version it belongs to.
fn decode_segment(row: &AnyRow) -> Result<((Id, u32), Segment)> {
    let key = (
        codec::id_col(row, SEGMENTS, "asset_id")?,
        codec::u32_col(row, SEGMENTS, "version")?,
    );
    let segment = Segment {
        path: codec::col(row, SEGMENTS, "path")?,
        rows: codec::u64_col(row, SEGMENTS, "rows")?,
        bytes: codec::u64_col(row, SEGMENTS, "bytes")?,
        sha256: codec::col(row, SEGMENTS, "sha256")?,
    };
    Ok((key, segment))
}

/// Segment rows, which must be ordered by ordinal within each version,
/// grouped by version.
fn group_segments(rows: &[AnyRow]) -> Result<HashMap<(Id, u32), Vec<Segment>>> {
    let mut grouped: HashMap<(Id, u32), Vec<Segment>> = HashMap::new();
    for row in rows {
        let (key, segment) = decode_segment(row)?;
        grouped.entry(key).or_default().push(segment);
    }
    Ok(grouped)
}

fn attach_segments(
    mut version: Version,
    grouped: &mut HashMap<(Id, u32), Vec<Segment>>,
) -> Version {
    version.manifest.segments = grouped
        .remove(&(version.asset_id.clone(), version.number))
        .unwrap_or_default();
    version
}

pub(super) async fn publish(
    catalog: &SqlCatalog,
    asset_id: &Id,
    manifest: Manifest,
    job_id: Option<&Id>,
    now: DateTime<Utc>,
) -> Result<Version> {
    let action = "publishing a version";
    let mut w = catalog.write_tx(action).await?;
    assets::ensure_exists(&mut w.tx, asset_id).await?;

    let row =
        sqlx::query("SELECT COALESCE(MAX(number), 0) AS highest FROM versions WHERE asset_id = $1")
            .bind(asset_id.as_str())
            .fetch_one(&mut *w.tx)
            .await
            .map_err(db(action))?;
    let highest: i64 = codec::col(&row, VERSIONS, "highest")?;
    let number = u32::try_from(highest)
        .ok()
        .and_then(|h| h.checked_add(1))
        .ok_or_else(|| {
            codec::corrupt(
                VERSIONS,
                format!("asset {asset_id}: highest version {highest} leaves no next number"),
            )
        })?;

    sqlx::query(
        "INSERT INTO versions (asset_id, number, created_at, job_id, schema_json) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(asset_id.as_str())
    .bind(i64::from(number))
    .bind(codec::time(now))
    .bind(job_id.map(|j| j.as_str()))
    .bind(manifest.schema.to_string())
    .execute(&mut *w.tx)
    .await
    .map_err(db(action))?;

    for (ordinal, segment) in manifest.segments.iter().enumerate() {
        let ordinal = i64::try_from(ordinal)
            .map_err(|_| codec::corrupt(SEGMENTS, format!("ordinal {ordinal} is too large")))?;
        sqlx::query(
            "INSERT INTO segments (asset_id, version, ordinal, path, rows, bytes, sha256) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(asset_id.as_str())
        .bind(i64::from(number))
        .bind(ordinal)
        .bind(segment.path.as_str())
        .bind(codec::u64_param(SEGMENTS, "rows", segment.rows)?)
        .bind(codec::u64_param(SEGMENTS, "bytes", segment.bytes)?)
        .bind(segment.sha256.as_str())
        .execute(&mut *w.tx)
        .await
        .map_err(db(action))?;
    }

    sqlx::query("UPDATE assets SET active_version = $2, updated_at = $3 WHERE id = $1")
        .bind(asset_id.as_str())
        .bind(i64::from(number))
        .bind(codec::time(now))
        .execute(&mut *w.tx)
        .await
        .map_err(db(action))?;
    w.commit(action).await?;

    Ok(Version {
        asset_id: asset_id.clone(),
        number,
        created_at: now,
        job_id: job_id.cloned(),
        manifest,
    })
}

pub(super) async fn get(catalog: &SqlCatalog, asset_id: &Id, number: u32) -> Result<Version> {
    let action = "reading a version";
    let mut tx = catalog.read_tx(action).await?;
    let row = sqlx::query(
        "SELECT asset_id, number, created_at, job_id, schema_json FROM versions \
         WHERE asset_id = $1 AND number = $2",
    )
    .bind(asset_id.as_str())
    .bind(i64::from(number))
    .fetch_optional(&mut *tx)
    .await
    .map_err(db(action))?;
    let Some(row) = row else {
        assets::ensure_exists(&mut tx, asset_id).await?;
        return Err(not_found(asset_id, number));
    };
    let version = decode_version(&row)?;
    let rows = sqlx::query(
        "SELECT asset_id, version, path, rows, bytes, sha256 FROM segments \
         WHERE asset_id = $1 AND version = $2 ORDER BY ordinal",
    )
    .bind(asset_id.as_str())
    .bind(i64::from(number))
    .fetch_all(&mut *tx)
    .await
    .map_err(db(action))?;
    tx.commit().await.map_err(db(action))?;
    Ok(attach_segments(version, &mut group_segments(&rows)?))
}

pub(super) async fn list(catalog: &SqlCatalog, asset_id: &Id) -> Result<Vec<Version>> {
    let action = "listing versions";
    let mut tx = catalog.read_tx(action).await?;
    assets::ensure_exists(&mut tx, asset_id).await?;
    let version_rows = sqlx::query(
        "SELECT asset_id, number, created_at, job_id, schema_json FROM versions \
         WHERE asset_id = $1 ORDER BY number DESC",
    )
    .bind(asset_id.as_str())
    .fetch_all(&mut *tx)
    .await
    .map_err(db(action))?;
    let segment_rows = sqlx::query(
        "SELECT asset_id, version, path, rows, bytes, sha256 FROM segments \
         WHERE asset_id = $1 ORDER BY version, ordinal",
    )
    .bind(asset_id.as_str())
    .fetch_all(&mut *tx)
    .await
    .map_err(db(action))?;
    tx.commit().await.map_err(db(action))?;
    let mut grouped = group_segments(&segment_rows)?;
    version_rows
        .iter()
        .map(|row| Ok(attach_segments(decode_version(row)?, &mut grouped)))
        .collect()
}

pub(super) async fn set_active(
    catalog: &SqlCatalog,
    asset_id: &Id,
    number: u32,
    now: DateTime<Utc>,
) -> Result<Asset> {
    let action = "setting the active version";
    let mut w = catalog.write_tx(action).await?;
    let mut asset = assets::load(&mut w.tx, asset_id).await?;
    let exists = sqlx::query("SELECT number FROM versions WHERE asset_id = $1 AND number = $2")
        .bind(asset_id.as_str())
        .bind(i64::from(number))
        .fetch_optional(&mut *w.tx)
        .await
        .map_err(db(action))?;
    if exists.is_none() {
        return Err(not_found(asset_id, number));
    }
    sqlx::query("UPDATE assets SET active_version = $2, updated_at = $3 WHERE id = $1")
        .bind(asset_id.as_str())
        .bind(i64::from(number))
        .bind(codec::time(now))
        .execute(&mut *w.tx)
        .await
        .map_err(db(action))?;
    w.commit(action).await?;
    asset.active_version = Some(number);
    asset.updated_at = now;
    Ok(asset)
}

pub(super) async fn list_active(catalog: &SqlCatalog) -> Result<Vec<(Asset, Version)>> {
    let action = "listing active versions";
    let mut tx = catalog.read_tx(action).await?;
    let sql = format!(
        "SELECT {cols}, v.number AS v_number, v.created_at AS v_created_at, \
                v.job_id AS v_job_id, v.schema_json AS v_schema_json \
         FROM assets a JOIN versions v ON v.asset_id = a.id AND v.number = a.active_version \
         ORDER BY a.namespace, a.name",
        cols = assets::COLUMNS_A
    );
    let rows = sqlx::query(&sql)
        .fetch_all(&mut *tx)
        .await
        .map_err(db(action))?;
    let segment_rows = sqlx::query(
        "SELECT s.asset_id, s.version, s.path, s.rows, s.bytes, s.sha256 \
         FROM segments s JOIN assets a ON a.id = s.asset_id AND a.active_version = s.version \
         ORDER BY s.asset_id, s.ordinal",
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(db(action))?;
    tx.commit().await.map_err(db(action))?;

    let mut grouped = group_segments(&segment_rows)?;
    rows.iter()
        .map(|row| {
            let asset = assets::decode(row)?;
            let version = Version {
                asset_id: asset.id.clone(),
                number: codec::u32_col(row, VERSIONS, "v_number")?,
                created_at: codec::time_col(row, VERSIONS, "v_created_at")?,
                job_id: codec::opt_id_col(row, VERSIONS, "v_job_id")?,
                manifest: Manifest {
                    schema: codec::json_col(row, VERSIONS, "v_schema_json")?,
                    segments: Vec::new(),
                },
            };
            Ok((asset, attach_segments(version, &mut grouped)))
        })
        .collect()
}

pub(super) async fn list_segment_paths(catalog: &SqlCatalog) -> Result<Vec<String>> {
    let rows = sqlx::query("SELECT DISTINCT path FROM segments ORDER BY path")
        .fetch_all(catalog.pool())
        .await
        .map_err(db("listing segment paths"))?;
    rows.iter()
        .map(|row| codec::col(row, SEGMENTS, "path"))
        .collect()
}
