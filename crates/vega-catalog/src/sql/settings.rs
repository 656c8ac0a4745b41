//! Settings: the `settings` table, a key → JSON value store for runtime
//! settings changed through the API.

use chrono::{DateTime, Utc};

use super::codec::{self, db};
use super::pool::Route;
use super::SqlCatalog;
use crate::Result;

const TABLE: &str = "settings";

pub(super) async fn get(catalog: &SqlCatalog, key: &str) -> Result<Option<serde_json::Value>> {
    let mut conn = catalog.reader("reading a setting", Route::Replica).await?;
    let row = sqlx::query("SELECT value_json FROM settings WHERE key = $1")
        .bind(key)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db("reading a setting"))?;
    row.map(|row| codec::json_col(&row, TABLE, "value_json"))
        .transpose()
}

/// Inserts or replaces the value of `key`.
pub(super) async fn put(
    catalog: &SqlCatalog,
    key: &str,
    value: serde_json::Value,
    now: DateTime<Utc>,
) -> Result<()> {
    let action = "writing a setting";
    let mut w = catalog.write_tx(action).await?;
    sqlx::query(
        "INSERT INTO settings (key, value_json, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (key) DO UPDATE SET value_json = excluded.value_json, \
         updated_at = excluded.updated_at",
    )
    .bind(key)
    .bind(value.to_string())
    .bind(codec::time(now))
    .execute(&mut *w.tx)
    .await
    .map_err(db(action))?;
    w.commit(action).await
}
