//! Connections: the `connections` table.

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{Any, Transaction};
use vega_core::{Connection, ConnectorKind, Id, IdKind, NewConnection};

use super::codec::{self, db};
use super::pool::Route;
use super::SqlCatalog;
use crate::{CatalogError, ConnectionUpdate, Result};

const TABLE: &str = "connections";

pub(super) const COLUMNS: &str = "id, name, kind, params_json, enabled, created_at, updated_at";

pub(super) fn decode(row: &AnyRow) -> Result<Connection> {
    Ok(Connection {
        id: codec::id_col(row, TABLE, "id")?,
        name: codec::col(row, TABLE, "name")?,
        kind: codec::enum_col(row, TABLE, "kind", ConnectorKind::parse)?,
        params: codec::json_col(row, TABLE, "params_json")?,
        enabled: codec::bool_col(row, TABLE, "enabled")?,
        created_at: codec::time_col(row, TABLE, "created_at")?,
        updated_at: codec::time_col(row, TABLE, "updated_at")?,
    })
}

fn not_found(key: impl Into<String>) -> CatalogError {
    CatalogError::NotFound {
        what: "connection",
        key: key.into(),
    }
}

fn name_taken(name: &str, existing: Option<Id>) -> CatalogError {
    CatalogError::Conflict {
        message: format!("connection '{name}' already exists"),
        existing: existing.map(|id| id.to_string()),
    }
}

/// The id of the connection called `name`, if any.
async fn id_by_name(tx: &mut Transaction<'static, Any>, name: &str) -> Result<Option<Id>> {
    let row = sqlx::query("SELECT id FROM connections WHERE name = $1")
        .bind(name)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db("looking up a connection by name"))?;
    row.map(|r| codec::id_col(&r, TABLE, "id")).transpose()
}

/// Loads a connection inside a transaction.
pub(super) async fn load(tx: &mut Transaction<'static, Any>, id: &Id) -> Result<Connection> {
    let sql = format!("SELECT {COLUMNS} FROM connections WHERE id = $1");
    let row = sqlx::query(&sql)
        .bind(id.as_str())
        .fetch_optional(&mut **tx)
        .await
        .map_err(db("reading a connection"))?;
    match row {
        Some(row) => decode(&row),
        None => Err(not_found(id.as_str())),
    }
}

/// Writes every field of `c` except the id and creation time.
async fn store(tx: &mut Transaction<'static, Any>, c: &Connection) -> Result<()> {
    sqlx::query(
        "UPDATE connections SET name = $2, params_json = $3, enabled = $4, updated_at = $5 \
         WHERE id = $1",
    )
    .bind(c.id.as_str())
    .bind(c.name.as_str())
    .bind(c.params.to_string())
    .bind(codec::bool_param(c.enabled))
    .bind(codec::time(c.updated_at))
    .execute(&mut **tx)
    .await
    .map_err(|e| {
        if codec::is_unique_violation(&e) {
            name_taken(&c.name, None)
        } else {
            db("updating a connection")(e)
        }
    })?;
    Ok(())
}

pub(super) async fn create(
    catalog: &SqlCatalog,
    new: NewConnection,
    now: DateTime<Utc>,
) -> Result<Connection> {
    let mut w = catalog.write_tx("creating a connection").await?;
    if let Some(existing) = id_by_name(&mut w.tx, &new.name).await? {
        return Err(name_taken(&new.name, Some(existing)));
    }
    let connection = Connection {
        id: codec::new_id(IdKind::Connection, now),
        name: new.name,
        kind: new.kind,
        params: new.params,
        enabled: true,
        created_at: now,
        updated_at: now,
    };
    let sql = format!("INSERT INTO connections ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)");
    sqlx::query(&sql)
        .bind(connection.id.as_str())
        .bind(connection.name.as_str())
        .bind(connection.kind.as_str())
        .bind(connection.params.to_string())
        .bind(codec::bool_param(connection.enabled))
        .bind(codec::time(connection.created_at))
        .bind(codec::time(connection.updated_at))
        .execute(&mut *w.tx)
        .await
        .map_err(|e| {
            if codec::is_unique_violation(&e) {
                name_taken(&connection.name, None)
            } else {
                db("creating a connection")(e)
            }
        })?;
    w.commit("creating a connection").await?;
    Ok(connection)
}

pub(super) async fn get(catalog: &SqlCatalog, id: &Id) -> Result<Connection> {
    let sql = format!("SELECT {COLUMNS} FROM connections WHERE id = $1");
    let mut conn = catalog
        .reader("reading a connection", Route::Replica)
        .await?;
    let row = sqlx::query(&sql)
        .bind(id.as_str())
        .fetch_optional(&mut *conn)
        .await
        .map_err(db("reading a connection"))?;
    match row {
        Some(row) => decode(&row),
        None => Err(not_found(id.as_str())),
    }
}

pub(super) async fn get_by_name(catalog: &SqlCatalog, name: &str) -> Result<Connection> {
    let sql = format!("SELECT {COLUMNS} FROM connections WHERE name = $1");
    let mut conn = catalog
        .reader("reading a connection by name", Route::Replica)
        .await?;
    let row = sqlx::query(&sql)
        .bind(name)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db("reading a connection by name"))?;
    match row {
        Some(row) => decode(&row),
        None => Err(not_found(name)),
    }
}

pub(super) async fn list(catalog: &SqlCatalog) -> Result<Vec<Connection>> {
    let sql = format!("SELECT {COLUMNS} FROM connections ORDER BY name");
    let mut conn = catalog
        .reader("listing connections", Route::Replica)
        .await?;
    let rows = sqlx::query(&sql)
        .fetch_all(&mut *conn)
        .await
        .map_err(db("listing connections"))?;
    rows.iter().map(decode).collect()
}

pub(super) async fn update(
    catalog: &SqlCatalog,
    id: &Id,
    update: ConnectionUpdate,
    now: DateTime<Utc>,
) -> Result<Connection> {
    let mut w = catalog.write_tx("updating a connection").await?;
    let mut connection = load(&mut w.tx, id).await?;
    if let Some(name) = update.name {
        if name != connection.name {
            if let Some(existing) = id_by_name(&mut w.tx, &name).await? {
                return Err(name_taken(&name, Some(existing)));
            }
            connection.name = name;
        }
    }
    if let Some(params) = update.params {
        connection.params = params;
    }
    connection.updated_at = now;
    store(&mut w.tx, &connection).await?;
    w.commit("updating a connection").await?;
    Ok(connection)
}

pub(super) async fn set_enabled(
    catalog: &SqlCatalog,
    id: &Id,
    enabled: bool,
    now: DateTime<Utc>,
) -> Result<Connection> {
    let mut w = catalog
        .write_tx("enabling or disabling a connection")
        .await?;
    let mut connection = load(&mut w.tx, id).await?;
    connection.enabled = enabled;
    connection.updated_at = now;
    store(&mut w.tx, &connection).await?;
    w.commit("enabling or disabling a connection").await?;
    Ok(connection)
}

/// How many assets are named in a conflict message at most.
const NAMED_USERS: usize = 5;

pub(super) async fn delete(catalog: &SqlCatalog, id: &Id) -> Result<()> {
    let mut w = catalog.write_tx("deleting a connection").await?;
    let connection = load(&mut w.tx, id).await?;
    let users: Vec<String> = {
        let rows = sqlx::query(
            "SELECT namespace, name FROM assets WHERE connection_id = $1 ORDER BY namespace, name",
        )
        .bind(id.as_str())
        .fetch_all(&mut *w.tx)
        .await
        .map_err(db("finding the assets of a connection"))?;
        rows.iter()
            .map(|r| {
                let ns: String = codec::col(r, "assets", "namespace")?;
                let name: String = codec::col(r, "assets", "name")?;
                Ok(format!("{ns}.{name}"))
            })
            .collect::<Result<_>>()?
    };
    if !users.is_empty() {
        let mut named = users
            .iter()
            .take(NAMED_USERS)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        if users.len() > NAMED_USERS {
            named.push_str(", …");
        }
        let noun = if users.len() == 1 { "asset" } else { "assets" };
        return Err(CatalogError::Conflict {
            message: format!(
                "connection '{}' ({}) is used by {} {noun} ({named}); delete them first",
                connection.name,
                connection.id,
                users.len()
            ),
            existing: None,
        });
    }
    sqlx::query("DELETE FROM connections WHERE id = $1")
        .bind(id.as_str())
        .execute(&mut *w.tx)
        .await
        .map_err(|e| {
            if codec::is_foreign_key_violation(&e) {
                CatalogError::Conflict {
                    message: format!(
                        "connection '{}' ({}) is used by assets; delete them first",
                        connection.name, connection.id
                    ),
                    existing: None,
                }
            } else {
                db("deleting a connection")(e)
            }
        })?;
    w.commit("deleting a connection").await?;
    Ok(())
}
