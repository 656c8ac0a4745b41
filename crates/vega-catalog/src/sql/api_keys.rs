//! API keys: the `api_keys` table. Keys are stored and found by the hash of
//! their secret; names and hashes are unique.

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use vega_core::{ApiKey, Id, IdKind, Role};

use super::codec::{self, db};
use super::pool::Route;
use super::SqlCatalog;
use crate::{CatalogError, Result};

const TABLE: &str = "api_keys";

pub(super) const COLUMNS: &str = "id, name, role, secret_hash, created_at";

pub(super) fn decode(row: &AnyRow) -> Result<ApiKey> {
    Ok(ApiKey {
        id: codec::id_col(row, TABLE, "id")?,
        name: codec::col(row, TABLE, "name")?,
        role: codec::enum_col(row, TABLE, "role", Role::parse)?,
        secret_hash: codec::col(row, TABLE, "secret_hash")?,
        created_at: codec::time_col(row, TABLE, "created_at")?,
    })
}

fn name_taken(name: &str, existing: Option<Id>) -> CatalogError {
    CatalogError::Conflict {
        message: format!("API key '{name}' already exists"),
        existing: existing.map(|id| id.to_string()),
    }
}

/// The secret itself is never named: only that another key has it.
fn secret_taken() -> CatalogError {
    CatalogError::Conflict {
        message: "another API key already has this secret".to_string(),
        existing: None,
    }
}

pub(super) async fn create(
    catalog: &SqlCatalog,
    name: &str,
    role: Role,
    secret_hash: &str,
    now: DateTime<Utc>,
) -> Result<ApiKey> {
    let action = "creating an API key";
    let mut w = catalog.write_tx(action).await?;
    let existing =
        sqlx::query("SELECT id, secret_hash FROM api_keys WHERE name = $1 OR secret_hash = $2")
            .bind(name)
            .bind(secret_hash)
            .fetch_all(&mut *w.tx)
            .await
            .map_err(db(action))?;
    for row in &existing {
        let hash: String = codec::col(row, TABLE, "secret_hash")?;
        if hash == secret_hash {
            return Err(secret_taken());
        }
    }
    if let Some(row) = existing.first() {
        return Err(name_taken(name, Some(codec::id_col(row, TABLE, "id")?)));
    }
    let key = ApiKey {
        id: codec::new_id(IdKind::ApiKey, now),
        name: name.to_string(),
        role,
        secret_hash: secret_hash.to_string(),
        created_at: now,
    };
    let sql = format!("INSERT INTO api_keys ({COLUMNS}) VALUES ($1, $2, $3, $4, $5)");
    sqlx::query(&sql)
        .bind(key.id.as_str())
        .bind(key.name.as_str())
        .bind(key.role.as_str())
        .bind(key.secret_hash.as_str())
        .bind(codec::time(key.created_at))
        .execute(&mut *w.tx)
        .await
        .map_err(|e| {
            if codec::is_unique_violation(&e) {
                CatalogError::Conflict {
                    message: format!("API key '{name}' or its secret already exists"),
                    existing: None,
                }
            } else {
                db(action)(e)
            }
        })?;
    w.commit(action).await?;
    Ok(key)
}

pub(super) async fn find_by_hash(
    catalog: &SqlCatalog,
    secret_hash: &str,
) -> Result<Option<ApiKey>> {
    let sql = format!("SELECT {COLUMNS} FROM api_keys WHERE secret_hash = $1");
    let mut conn = catalog
        .reader("looking up an API key", Route::Replica)
        .await?;
    let row = sqlx::query(&sql)
        .bind(secret_hash)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db("looking up an API key"))?;
    row.as_ref().map(decode).transpose()
}

pub(super) async fn list(catalog: &SqlCatalog) -> Result<Vec<ApiKey>> {
    let sql = format!("SELECT {COLUMNS} FROM api_keys ORDER BY name");
    let mut conn = catalog.reader("listing API keys", Route::Replica).await?;
    let rows = sqlx::query(&sql)
        .fetch_all(&mut *conn)
        .await
        .map_err(db("listing API keys"))?;
    rows.iter().map(decode).collect()
}

pub(super) async fn delete(catalog: &SqlCatalog, id: &Id) -> Result<()> {
    let action = "deleting an API key";
    let mut w = catalog.write_tx(action).await?;
    let result = sqlx::query("DELETE FROM api_keys WHERE id = $1")
        .bind(id.as_str())
        .execute(&mut *w.tx)
        .await
        .map_err(db(action))?;
    if result.rows_affected() == 0 {
        return Err(CatalogError::NotFound {
            what: "API key",
            key: id.to_string(),
        });
    }
    w.commit(action).await
}
