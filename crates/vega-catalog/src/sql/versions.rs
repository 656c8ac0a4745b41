//! Versions and their manifests: the `versions` table (one row per version,
//! holding the schema) and the `segments` table (one row per Parquet file,
//! ordered by `ordinal`). A manifest is a version's schema plus its segments
//! in ordinal order.
//!
//! An incremental sync appends segments to the active version in place
//! (`append`), continuing its ordinals, instead of publishing a new version.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{Any, Transaction};
use vega_core::{Asset, Id, Manifest, Segment, Version};

use super::codec::{self, db};
use super::pool::Route;
use super::{assets, jobs, SqlCatalog};
use crate::{CatalogError, Result, StreamFlush};

const VERSIONS: &str = "versions";
const SEGMENTS: &str = "segments";

fn not_found(asset_id: &Id, number: u32) -> CatalogError {
    CatalogError::NotFound {
        what: "version",
        key: format!("{asset_id} v{number}"),
    }
}

/// A version row without its segments.
pub(super) fn decode_version(row: &AnyRow) -> Result<Version> {
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
pub(super) fn group_segments(rows: &[AnyRow]) -> Result<HashMap<(Id, u32), Vec<Segment>>> {
    let mut grouped: HashMap<(Id, u32), Vec<Segment>> = HashMap::new();
    for row in rows {
        let (key, segment) = decode_segment(row)?;
        grouped.entry(key).or_default().push(segment);
    }
    Ok(grouped)
}

pub(super) fn attach_segments(
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
    publish_with_watermark(catalog, asset_id, manifest, None, job_id, now).await
}

/// `publish`, and in the same transaction the asset's watermark becomes
/// `watermark` when one is given (a full sync of an incremental asset).
pub(super) async fn publish_with_watermark(
    catalog: &SqlCatalog,
    asset_id: &Id,
    manifest: Manifest,
    watermark: Option<serde_json::Value>,
    job_id: Option<&Id>,
    now: DateTime<Utc>,
) -> Result<Version> {
    let action = "publishing a version";
    let mut w = catalog.write_tx(action).await?;
    assets::lock_existing(&mut w.tx, asset_id).await?;
    let version = publish_in(&mut w.tx, asset_id, manifest, job_id, now, action).await?;
    if let Some(job_id) = job_id {
        jobs::fence_result(&mut w.tx, job_id, version.number, now, action).await?;
    }
    if let Some(watermark) = watermark {
        set_watermark(&mut w.tx, asset_id, &watermark, action).await?;
    }
    w.commit(action).await?;
    Ok(version)
}

/// Inside the caller's writing transaction, on an asset known to exist:
/// records a new version (number = highest + 1) with its manifest and makes
/// it the asset's active version.
async fn publish_in(
    tx: &mut Transaction<'static, Any>,
    asset_id: &Id,
    manifest: Manifest,
    job_id: Option<&Id>,
    now: DateTime<Utc>,
    action: &'static str,
) -> Result<Version> {
    let row =
        sqlx::query("SELECT COALESCE(MAX(number), 0) AS highest FROM versions WHERE asset_id = $1")
            .bind(asset_id.as_str())
            .fetch_one(&mut **tx)
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
    .execute(&mut **tx)
    .await
    .map_err(db(action))?;

    insert_segments(tx, asset_id, number, 0, &manifest.segments, action).await?;

    sqlx::query("UPDATE assets SET active_version = $2, updated_at = $3 WHERE id = $1")
        .bind(asset_id.as_str())
        .bind(i64::from(number))
        .bind(codec::time(now))
        .execute(&mut **tx)
        .await
        .map_err(db(action))?;

    Ok(Version {
        asset_id: asset_id.clone(),
        number,
        created_at: now,
        job_id: job_id.cloned(),
        manifest,
    })
}

/// Inserts `segments` into a version, numbering them from `first_ordinal`.
async fn insert_segments(
    tx: &mut Transaction<'static, Any>,
    asset_id: &Id,
    number: u32,
    first_ordinal: i64,
    segments: &[Segment],
    action: &'static str,
) -> Result<()> {
    for (i, segment) in segments.iter().enumerate() {
        let ordinal = i64::try_from(i)
            .ok()
            .and_then(|i| first_ordinal.checked_add(i))
            .ok_or_else(|| {
                codec::corrupt(
                    SEGMENTS,
                    format!("ordinal {first_ordinal} + {i} is too large"),
                )
            })?;
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
        .execute(&mut **tx)
        .await
        .map_err(db(action))?;
    }
    Ok(())
}

fn schema_changed(asset_id: &Id) -> CatalogError {
    CatalogError::Conflict {
        message: format!("asset {asset_id}: the source's schema changed; run a full sync"),
        existing: None,
    }
}

/// Appends `segments` to the active version and moves the asset's
/// watermark, in one transaction; with no active version, publishes a new
/// one (as `publish` would) holding them. `job_id` is recorded only on a
/// version this creates: a version keeps the job that made it.
pub(super) async fn append(
    catalog: &SqlCatalog,
    asset_id: &Id,
    schema: serde_json::Value,
    segments: Vec<Segment>,
    watermark: serde_json::Value,
    job_id: Option<&Id>,
    now: DateTime<Utc>,
) -> Result<Version> {
    let action = "appending segments";
    let mut w = catalog.write_tx(action).await?;
    // Move the watermark first: the statement also tells whether the asset
    // exists, and on PostgreSQL it locks the asset's row, so concurrent
    // appends to one asset run one after the other (on SQLite the write
    // lock already does). Any failure below rolls it back.
    let moved = sqlx::query("UPDATE assets SET watermark_json = $2, updated_at = $3 WHERE id = $1")
        .bind(asset_id.as_str())
        .bind(watermark.to_string())
        .bind(codec::time(now))
        .execute(&mut *w.tx)
        .await
        .map_err(db(action))?;
    if moved.rows_affected() == 0 {
        return Err(assets::not_found(asset_id.as_str()));
    }
    let asset = assets::load(&mut w.tx, asset_id).await?;

    let version = match asset.active_version {
        Some(number) => {
            let Some(mut version) = load(&mut w.tx, asset_id, number, action).await? else {
                return Err(codec::corrupt(
                    "assets",
                    format!("asset {asset_id}: active version {number} does not exist"),
                ));
            };
            if version.manifest.schema != schema {
                return Err(schema_changed(asset_id));
            }
            append_to(&mut w.tx, &mut version, segments, action).await?;
            version
        }
        None => {
            let manifest = Manifest { schema, segments };
            publish_in(&mut w.tx, asset_id, manifest, job_id, now, action).await?
        }
    };
    if let Some(job_id) = job_id {
        jobs::fence_result(&mut w.tx, job_id, version.number, now, action).await?;
    }
    w.commit(action).await?;
    Ok(version)
}

/// Adds `segments` after `version`'s own, in the caller's transaction.
async fn append_to(
    tx: &mut Transaction<'static, Any>,
    version: &mut Version,
    segments: Vec<Segment>,
    action: &'static str,
) -> Result<()> {
    let row = sqlx::query(
        "SELECT COALESCE(MAX(ordinal), -1) AS highest FROM segments \
         WHERE asset_id = $1 AND version = $2",
    )
    .bind(version.asset_id.as_str())
    .bind(i64::from(version.number))
    .fetch_one(&mut **tx)
    .await
    .map_err(db(action))?;
    let highest: i64 = codec::col(&row, SEGMENTS, "highest")?;
    let first = highest
        .checked_add(1)
        .ok_or_else(|| codec::corrupt(SEGMENTS, format!("ordinal {highest} leaves no next one")))?;
    insert_segments(
        tx,
        &version.asset_id,
        version.number,
        first,
        &segments,
        action,
    )
    .await?;
    version.manifest.segments.extend(segments);
    Ok(())
}

/// A flush of streamed rows ([`StreamFlush`]), in one transaction: the
/// lease (if any) is checked and locked, the segments join the active
/// version — or, when the flush brings new columns, a new version holds
/// the active one's segments and the new ones under the wider schema (or,
/// with no active version, the new ones alone) — and the flushed sequence
/// number of the flush's log is merged into the asset's watermark.
pub(super) async fn flush_stream(
    catalog: &SqlCatalog,
    asset_id: &Id,
    flush: StreamFlush,
    now: DateTime<Utc>,
) -> Result<Version> {
    let action = "flushing streamed rows";
    let mut w = catalog.write_tx(action).await?;
    if let Some(fence) = &flush.lease {
        super::cluster::fence(catalog, &mut w.tx, fence, now, action).await?;
    }
    assets::lock_existing(&mut w.tx, asset_id).await?;
    let asset = assets::load(&mut w.tx, asset_id).await?;
    let active = match asset.active_version {
        Some(number) => load(&mut w.tx, asset_id, number, action).await?,
        None => None,
    };
    let wider = match &active {
        Some(v) => {
            widen(&v.manifest.schema, &flush.schema).map_err(|message| CatalogError::Conflict {
                message: format!("asset {asset_id}: {message}"),
                existing: None,
            })?
        }
        None => Some(flush.schema.clone()),
    };
    let version = match (active, wider) {
        (Some(mut version), None) => {
            append_to(&mut w.tx, &mut version, flush.segments, action).await?;
            sqlx::query("UPDATE assets SET updated_at = $2 WHERE id = $1")
                .bind(asset_id.as_str())
                .bind(codec::time(now))
                .execute(&mut *w.tx)
                .await
                .map_err(db(action))?;
            version
        }
        (active, wider) => {
            let mut segments = active.map(|v| v.manifest.segments).unwrap_or_default();
            segments.extend(flush.segments);
            let manifest = Manifest {
                schema: wider.unwrap_or(flush.schema),
                segments,
            };
            publish_in(&mut w.tx, asset_id, manifest, None, now, action).await?
        }
    };
    let watermark =
        merge_stream_watermark(asset.watermark, flush.wal.as_deref(), flush.through_seq);
    set_watermark(&mut w.tx, asset_id, &watermark, action).await?;
    w.commit(action).await?;
    Ok(version)
}

/// Stores an asset's watermark in the caller's transaction.
async fn set_watermark(
    tx: &mut Transaction<'static, Any>,
    asset_id: &Id,
    watermark: &serde_json::Value,
    action: &'static str,
) -> Result<()> {
    sqlx::query("UPDATE assets SET watermark_json = $2 WHERE id = $1")
        .bind(asset_id.as_str())
        .bind(watermark.to_string())
        .execute(&mut **tx)
        .await
        .map_err(db(action))?;
    Ok(())
}

/// Whether rows of schema `flush` fit the active version's schema
/// `active` (both Arrow schemas as JSON): `None` when every field of
/// `flush` is in `active` as it is (views read segments by column name, so
/// a missing column reads as NULL); otherwise `active` widened by the
/// fields it lacks, in `flush`'s order. A field of both with different
/// definitions is an error naming it.
fn widen(
    active: &serde_json::Value,
    flush: &serde_json::Value,
) -> std::result::Result<Option<serde_json::Value>, String> {
    let fields = |s: &serde_json::Value| s["fields"].as_array().cloned().unwrap_or_default();
    let name = |f: &serde_json::Value| f["name"].as_str().unwrap_or_default().to_string();
    let (mut all, new) = (fields(active), fields(flush));
    let mut added = false;
    for field in new {
        match all.iter().find(|f| name(f) == name(&field)) {
            Some(existing) if existing["data_type"] == field["data_type"] => {}
            Some(existing) => {
                return Err(format!(
                    "column {} is {} in the active version but {} in the flushed rows",
                    name(&field),
                    existing["data_type"],
                    field["data_type"]
                ))
            }
            None => {
                all.push(field);
                added = true;
            }
        }
    }
    if !added {
        return Ok(None);
    }
    let mut wider = active.clone();
    wider["fields"] = serde_json::Value::Array(all);
    Ok(Some(wider))
}

/// A stream asset's watermark with `log`'s flushed sequence number set to
/// `seq`: `{"wal_seq": N}` for the embedded log (`None`), `{"wals": {id: N}}`
/// for a node's log in shared storage; other entries are kept.
pub fn merge_stream_watermark(
    current: Option<serde_json::Value>,
    log: Option<&str>,
    seq: u64,
) -> serde_json::Value {
    let mut wm = match current {
        Some(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    match log {
        None => {
            wm.insert("wal_seq".into(), seq.into());
        }
        Some(id) => {
            let wals = wm
                .entry("wals")
                .or_insert_with(|| serde_json::Value::Object(Default::default()));
            if !wals.is_object() {
                *wals = serde_json::Value::Object(Default::default());
            }
            if let Some(map) = wals.as_object_mut() {
                map.insert(id.to_string(), seq.into());
            }
        }
    }
    serde_json::Value::Object(wm)
}

/// A version with its segments, inside a transaction; `None` when the asset
/// has no version with this number.
async fn load(
    tx: &mut Transaction<'static, Any>,
    asset_id: &Id,
    number: u32,
    action: &'static str,
) -> Result<Option<Version>> {
    let row = sqlx::query(
        "SELECT asset_id, number, created_at, job_id, schema_json FROM versions \
         WHERE asset_id = $1 AND number = $2",
    )
    .bind(asset_id.as_str())
    .bind(i64::from(number))
    .fetch_optional(&mut **tx)
    .await
    .map_err(db(action))?;
    let Some(row) = row else {
        return Ok(None);
    };
    let version = decode_version(&row)?;
    let rows = sqlx::query(
        "SELECT asset_id, version, path, rows, bytes, sha256 FROM segments \
         WHERE asset_id = $1 AND version = $2 ORDER BY ordinal",
    )
    .bind(asset_id.as_str())
    .bind(i64::from(number))
    .fetch_all(&mut **tx)
    .await
    .map_err(db(action))?;
    Ok(Some(attach_segments(version, &mut group_segments(&rows)?)))
}

pub(super) async fn get(catalog: &SqlCatalog, asset_id: &Id, number: u32) -> Result<Version> {
    let action = "reading a version";
    let mut tx = catalog.read_tx(action, Route::Replica).await?;
    let Some(version) = load(&mut tx, asset_id, number, action).await? else {
        assets::ensure_exists(&mut tx, asset_id).await?;
        return Err(not_found(asset_id, number));
    };
    tx.commit().await.map_err(db(action))?;
    Ok(version)
}

pub(super) async fn list(catalog: &SqlCatalog, asset_id: &Id) -> Result<Vec<Version>> {
    let action = "listing versions";
    let mut tx = catalog.read_tx(action, Route::Replica).await?;
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
    assets::lock_existing(&mut w.tx, asset_id).await?;
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
    let mut tx = catalog.read_tx(action, Route::Replica).await?;
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
    let mut conn = catalog
        .reader("listing segment paths", Route::Primary)
        .await?;
    let rows = sqlx::query("SELECT DISTINCT path FROM segments ORDER BY path")
        .fetch_all(&mut *conn)
        .await
        .map_err(db("listing segment paths"))?;
    rows.iter()
        .map(|row| codec::col(row, SEGMENTS, "path"))
        .collect()
}
