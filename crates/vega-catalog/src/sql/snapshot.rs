//! Catalog snapshots ([`CatalogSnapshot`]): `export` reads every table of
//! user state in one read-only snapshot transaction on the primary
//! (`REPEATABLE READ READ ONLY` on PostgreSQL, a deferred transaction in WAL
//! mode on SQLite: one point in time either way); `import` writes a
//! snapshot into an empty catalog in one writing transaction, keeping every
//! id, time, version number and active pointer.

use chrono::{DateTime, Utc};
use sqlx::{Any, Transaction};

use super::codec::{self, db};
use super::pool::Route;
use super::{api_keys, assets, connections, versions, SqlCatalog};
use crate::snapshot::{known_schema_version, ApiKeySnapshot, SettingSnapshot, SNAPSHOT_FORMAT};
use crate::{CatalogError, CatalogSnapshot, Result};

pub(super) async fn export(catalog: &SqlCatalog, now: DateTime<Utc>) -> Result<CatalogSnapshot> {
    let action = "exporting a catalog snapshot";
    // Always the primary: a backup must not miss what a replica has not
    // replayed yet.
    let mut tx = catalog.read_tx(action, Route::Primary).await?;

    let row = sqlx::query("SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations")
        .fetch_one(&mut *tx)
        .await
        .map_err(db(action))?;
    let schema_version: i64 = codec::col(&row, "schema_migrations", "v")?;
    let known = known_schema_version();
    if schema_version > known {
        return Err(CatalogError::Snapshot {
            message: format!(
                "the catalog's schema is at migration {schema_version}, newer than this build's \
                 migrations (up to {known}); this build would leave out what the newer \
                 migrations added: export with a newer Vega"
            ),
        });
    }

    let sql = format!("SELECT {} FROM connections", connections::COLUMNS);
    let rows = sqlx::query(&sql)
        .fetch_all(&mut *tx)
        .await
        .map_err(db(action))?;
    let connections = rows
        .iter()
        .map(connections::decode)
        .collect::<Result<Vec<_>>>()?;

    let sql = format!("SELECT {} FROM assets", assets::COLUMNS);
    let rows = sqlx::query(&sql)
        .fetch_all(&mut *tx)
        .await
        .map_err(db(action))?;
    let assets = rows
        .iter()
        .map(assets::decode)
        .collect::<Result<Vec<_>>>()?;

    let version_rows =
        sqlx::query("SELECT asset_id, number, created_at, job_id, schema_json FROM versions")
            .fetch_all(&mut *tx)
            .await
            .map_err(db(action))?;
    let segment_rows = sqlx::query(
        "SELECT asset_id, version, path, rows, bytes, sha256 FROM segments \
         ORDER BY asset_id, version, ordinal",
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(db(action))?;

    let rows = sqlx::query("SELECT key, value_json, updated_at FROM settings")
        .fetch_all(&mut *tx)
        .await
        .map_err(db(action))?;
    let settings = rows
        .iter()
        .map(|row| {
            Ok(SettingSnapshot {
                key: codec::col(row, "settings", "key")?,
                value: codec::json_col(row, "settings", "value_json")?,
                updated_at: codec::time_col(row, "settings", "updated_at")?,
            })
        })
        .collect::<Result<Vec<_>>>()?;

    let sql = format!("SELECT {} FROM api_keys", api_keys::COLUMNS);
    let rows = sqlx::query(&sql)
        .fetch_all(&mut *tx)
        .await
        .map_err(db(action))?;
    let api_keys = rows
        .iter()
        .map(|row| api_keys::decode(row).map(ApiKeySnapshot::from))
        .collect::<Result<Vec<_>>>()?;

    tx.commit().await.map_err(db(action))?;

    let mut grouped = versions::group_segments(&segment_rows)?;
    let versions = version_rows
        .iter()
        .map(|row| {
            Ok(versions::attach_segments(
                versions::decode_version(row)?,
                &mut grouped,
            ))
        })
        .collect::<Result<Vec<_>>>()?;

    let mut snapshot = CatalogSnapshot {
        format: SNAPSHOT_FORMAT,
        schema_version,
        exported_at: now,
        connections,
        assets,
        versions,
        settings,
        api_keys,
    };
    // Sorted here rather than by ORDER BY: text order in PostgreSQL follows
    // the database's collation, which need not be SQLite's byte order.
    snapshot.sort();
    Ok(snapshot)
}

/// How many rows a table holds, in the caller's transaction.
async fn count(tx: &mut Transaction<'static, Any>, table: &'static str) -> Result<u64> {
    let sql = format!("SELECT COUNT(*) AS n FROM {table}");
    let row = sqlx::query(&sql)
        .fetch_one(&mut **tx)
        .await
        .map_err(db("checking that the catalog is empty"))?;
    codec::u64_col(&row, table, "n")
}

fn conflict(message: String) -> CatalogError {
    CatalogError::Conflict {
        message,
        existing: None,
    }
}

/// Maps an insert's error: a unique violation means the catalog gained a
/// row meanwhile (another import?).
fn insert_error(what: String) -> impl FnOnce(sqlx::Error) -> CatalogError {
    move |e| {
        if codec::is_unique_violation(&e) {
            conflict(format!(
                "{what} already exists in the catalog; a snapshot is imported only into an \
                 empty catalog"
            ))
        } else {
            db("importing a catalog snapshot")(e)
        }
    }
}

pub(super) async fn import(catalog: &SqlCatalog, snapshot: &CatalogSnapshot) -> Result<()> {
    snapshot.validate()?;
    let action = "importing a catalog snapshot";
    let mut w = catalog.write_tx(action).await?;

    let (connection_count, asset_count) = (
        count(&mut w.tx, "connections").await?,
        count(&mut w.tx, "assets").await?,
    );
    if connection_count > 0 || asset_count > 0 {
        return Err(conflict(format!(
            "the catalog is not empty: it holds {connection_count} connection(s) and \
             {asset_count} asset(s); a snapshot is imported only into an empty catalog"
        )));
    }
    refuse_clashes(&mut w.tx, snapshot).await?;

    let sql = format!(
        "INSERT INTO connections ({}) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        connections::COLUMNS
    );
    for c in &snapshot.connections {
        sqlx::query(&sql)
            .bind(c.id.as_str())
            .bind(c.name.as_str())
            .bind(c.kind.as_str())
            .bind(c.params.to_string())
            .bind(codec::bool_param(c.enabled))
            .bind(codec::time(c.created_at))
            .bind(codec::time(c.updated_at))
            .execute(&mut *w.tx)
            .await
            .map_err(insert_error(format!("connection '{}'", c.name)))?;
    }

    let sql = format!(
        "INSERT INTO assets ({}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        assets::COLUMNS
    );
    for a in &snapshot.assets {
        sqlx::query(&sql)
            .bind(a.id.as_str())
            .bind(a.namespace.as_str())
            .bind(a.name.as_str())
            .bind(a.connection_id.as_str())
            .bind(a.sync_mode.as_str())
            .bind(a.source.to_string())
            .bind(codec::json("assets", &a.checks)?)
            .bind(a.schedule.as_deref())
            .bind(a.watermark.as_ref().map(|w| w.to_string()))
            .bind(
                a.retention
                    .as_ref()
                    .map(|r| codec::json("assets", r))
                    .transpose()?,
            )
            .bind(a.active_version.map(i64::from))
            .bind(codec::time(a.created_at))
            .bind(codec::time(a.updated_at))
            .execute(&mut *w.tx)
            .await
            .map_err(insert_error(format!("asset '{}'", a.qualified_name())))?;
    }

    for v in &snapshot.versions {
        let what = || format!("version v{} of asset {}", v.number, v.asset_id);
        sqlx::query(
            "INSERT INTO versions (asset_id, number, created_at, job_id, schema_json) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(v.asset_id.as_str())
        .bind(i64::from(v.number))
        .bind(codec::time(v.created_at))
        .bind(v.job_id.as_ref().map(|j| j.as_str()))
        .bind(v.manifest.schema.to_string())
        .execute(&mut *w.tx)
        .await
        .map_err(insert_error(what()))?;
        for (ordinal, s) in (0_i64..).zip(&v.manifest.segments) {
            sqlx::query(
                "INSERT INTO segments (asset_id, version, ordinal, path, rows, bytes, sha256) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(v.asset_id.as_str())
            .bind(i64::from(v.number))
            .bind(ordinal)
            .bind(s.path.as_str())
            .bind(codec::u64_param("segments", "rows", s.rows)?)
            .bind(codec::u64_param("segments", "bytes", s.bytes)?)
            .bind(s.sha256.as_str())
            .execute(&mut *w.tx)
            .await
            .map_err(insert_error(what()))?;
        }
    }

    for s in &snapshot.settings {
        sqlx::query("INSERT INTO settings (key, value_json, updated_at) VALUES ($1, $2, $3)")
            .bind(s.key.as_str())
            .bind(s.value.to_string())
            .bind(codec::time(s.updated_at))
            .execute(&mut *w.tx)
            .await
            .map_err(insert_error(format!("setting '{}'", s.key)))?;
    }

    let sql = format!(
        "INSERT INTO api_keys ({}) VALUES ($1, $2, $3, $4, $5)",
        api_keys::COLUMNS
    );
    for k in &snapshot.api_keys {
        sqlx::query(&sql)
            .bind(k.id.as_str())
            .bind(k.name.as_str())
            .bind(k.role.as_str())
            .bind(k.secret_hash.as_str())
            .bind(codec::time(k.created_at))
            .execute(&mut *w.tx)
            .await
            .map_err(insert_error(format!(
                "API key '{}' (or its secret)",
                k.name
            )))?;
    }

    w.commit(action).await
}

/// An empty catalog may still hold settings and API keys (a bootstrap key):
/// those the snapshot would overwrite are a conflict naming the first one,
/// and nothing is written. Others are kept.
async fn refuse_clashes(
    tx: &mut Transaction<'static, Any>,
    snapshot: &CatalogSnapshot,
) -> Result<()> {
    let action = "importing a catalog snapshot";
    let rows = sqlx::query("SELECT key FROM settings")
        .fetch_all(&mut **tx)
        .await
        .map_err(db(action))?;
    for row in &rows {
        let key: String = codec::col(row, "settings", "key")?;
        if snapshot.settings.iter().any(|s| s.key == key) {
            return Err(conflict(format!(
                "setting '{key}' already exists in the catalog; a snapshot does not overwrite \
                 settings"
            )));
        }
    }
    let sql = format!("SELECT {} FROM api_keys", api_keys::COLUMNS);
    let rows = sqlx::query(&sql)
        .fetch_all(&mut **tx)
        .await
        .map_err(db(action))?;
    for row in &rows {
        let existing = api_keys::decode(row)?;
        let clash = snapshot.api_keys.iter().find(|k| {
            k.id == existing.id || k.name == existing.name || k.secret_hash == existing.secret_hash
        });
        if let Some(k) = clash {
            // Secrets are never named, only the keys.
            return Err(conflict(format!(
                "API key '{}' of the snapshot clashes with API key '{}' ({}) of the catalog \
                 (same id, name or secret); a snapshot does not overwrite API keys",
                k.name, existing.name, existing.id
            )));
        }
    }
    Ok(())
}
