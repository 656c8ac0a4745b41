//! Conversions between catalog rows and domain types: checked integer
//! conversions, catalog time text, JSON text, and the mapping of database
//! errors to [`CatalogError`].
//!
//! Stored values that do not decode are `Corrupt` errors naming the table and
//! column; they mean a bug or a hand-edited catalog.

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{Any, Decode, Row, Type};
use vega_core::clock::{from_catalog_time, to_catalog_time};
use vega_core::{Id, IdKind};

use crate::{CatalogError, Result};

/// Maps a database error to `CatalogError::Database`, saying what was being
/// done.
pub(crate) fn db(action: &'static str) -> impl FnOnce(sqlx::Error) -> CatalogError {
    move |source| CatalogError::Database { action, source }
}

/// Whether the error is a unique (or primary key) constraint violation.
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// Whether the error is a foreign key violation.
pub(crate) fn is_foreign_key_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_foreign_key_violation())
}

pub(crate) fn corrupt(table: &'static str, message: impl Into<String>) -> CatalogError {
    CatalogError::Corrupt {
        table,
        message: message.into(),
    }
}

/// Reads one column, turning a decode failure into `Corrupt`.
pub(crate) fn col<'r, T>(row: &'r AnyRow, table: &'static str, column: &str) -> Result<T>
where
    T: Decode<'r, Any> + Type<Any>,
{
    row.try_get::<T, _>(column)
        .map_err(|e| corrupt(table, format!("column {column}: {e}")))
}

/// Reads a text column holding an id.
pub(crate) fn id_col(row: &AnyRow, table: &'static str, column: &str) -> Result<Id> {
    col::<String>(row, table, column).map(Id::from_trusted)
}

/// Reads a nullable text column holding an id.
pub(crate) fn opt_id_col(row: &AnyRow, table: &'static str, column: &str) -> Result<Option<Id>> {
    Ok(col::<Option<String>>(row, table, column)?.map(Id::from_trusted))
}

/// Reads a BIGINT column holding a `u32`.
pub(crate) fn u32_col(row: &AnyRow, table: &'static str, column: &str) -> Result<u32> {
    let v: i64 = col(row, table, column)?;
    u32::try_from(v).map_err(|_| corrupt(table, format!("column {column}: {v} is not a u32")))
}

/// Reads a nullable BIGINT column holding a `u32`.
pub(crate) fn opt_u32_col(row: &AnyRow, table: &'static str, column: &str) -> Result<Option<u32>> {
    match col::<Option<i64>>(row, table, column)? {
        None => Ok(None),
        Some(v) => u32::try_from(v)
            .map(Some)
            .map_err(|_| corrupt(table, format!("column {column}: {v} is not a u32"))),
    }
}

/// Reads a BIGINT column holding a `u64`.
pub(crate) fn u64_col(row: &AnyRow, table: &'static str, column: &str) -> Result<u64> {
    let v: i64 = col(row, table, column)?;
    u64::try_from(v).map_err(|_| corrupt(table, format!("column {column}: {v} is negative")))
}

/// Reads a BIGINT column holding a boolean as 0 or 1.
pub(crate) fn bool_col(row: &AnyRow, table: &'static str, column: &str) -> Result<bool> {
    match col::<i64>(row, table, column)? {
        0 => Ok(false),
        1 => Ok(true),
        v => Err(corrupt(
            table,
            format!("column {column}: {v} is not a boolean (0 or 1)"),
        )),
    }
}

/// Reads a text column holding a catalog time.
pub(crate) fn time_col(row: &AnyRow, table: &'static str, column: &str) -> Result<DateTime<Utc>> {
    let s: String = col(row, table, column)?;
    parse_time(table, column, &s)
}

/// Reads a nullable text column holding a catalog time.
pub(crate) fn opt_time_col(
    row: &AnyRow,
    table: &'static str,
    column: &str,
) -> Result<Option<DateTime<Utc>>> {
    match col::<Option<String>>(row, table, column)? {
        None => Ok(None),
        Some(s) => parse_time(table, column, &s).map(Some),
    }
}

fn parse_time(table: &'static str, column: &str, s: &str) -> Result<DateTime<Utc>> {
    from_catalog_time(s)
        .map_err(|e| corrupt(table, format!("column {column}: '{s}' is not a time: {e}")))
}

/// Reads a text column holding JSON.
pub(crate) fn json_col<T: serde::de::DeserializeOwned>(
    row: &AnyRow,
    table: &'static str,
    column: &str,
) -> Result<T> {
    let s: String = col(row, table, column)?;
    serde_json::from_str(&s)
        .map_err(|e| corrupt(table, format!("column {column}: invalid JSON: {e}")))
}

/// Reads a nullable text column holding JSON; NULL is `None`.
pub(crate) fn opt_json_col<T: serde::de::DeserializeOwned>(
    row: &AnyRow,
    table: &'static str,
    column: &str,
) -> Result<Option<T>> {
    match col::<Option<String>>(row, table, column)? {
        None => Ok(None),
        Some(s) => serde_json::from_str(&s)
            .map(Some)
            .map_err(|e| corrupt(table, format!("column {column}: invalid JSON: {e}"))),
    }
}

/// Reads a text column holding an enum's text form, parsed by `parse`.
pub(crate) fn enum_col<T>(
    row: &AnyRow,
    table: &'static str,
    column: &str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<T> {
    let s: String = col(row, table, column)?;
    parse(&s).ok_or_else(|| corrupt(table, format!("column {column}: unknown value '{s}'")))
}

/// Catalog time text for a bind parameter.
pub(crate) fn time(t: DateTime<Utc>) -> String {
    to_catalog_time(t)
}

/// JSON text for a bind parameter.
pub(crate) fn json<T: serde::Serialize>(table: &'static str, value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| corrupt(table, format!("cannot encode JSON: {e}")))
}

/// A `u64` as a BIGINT bind parameter; values above `i64::MAX` are refused.
pub(crate) fn u64_param(table: &'static str, what: &str, v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| corrupt(table, format!("{what} {v} does not fit in a BIGINT")))
}

/// A boolean as a BIGINT bind parameter.
pub(crate) fn bool_param(v: bool) -> i64 {
    i64::from(v)
}

/// A new id of `kind`, stamped with the caller's `now` so ids follow the
/// catalog's clock.
pub(crate) fn new_id(kind: IdKind, now: DateTime<Utc>) -> Id {
    let ms = u64::try_from(now.timestamp_millis()).unwrap_or(0);
    Id::new(kind, ms)
}
