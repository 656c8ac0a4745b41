//! Nodes and leases: the `nodes` and `leases` tables.
//!
//! A lease is taken, renewed or taken over in one conditional `UPDATE`
//! (the holder renews; anyone takes an expired lease, with the fencing
//! token incremented), or created by an `INSERT … ON CONFLICT DO NOTHING`;
//! both are atomic on SQLite and PostgreSQL alike, so two nodes racing for
//! a lease never both get it.

use chrono::{DateTime, Duration, Utc};
use sqlx::any::AnyRow;
use vega_core::{Id, Lease, NodeInfo};

use super::codec::{self, db};
use super::pool::Route;
use super::SqlCatalog;
use crate::Result;

const NODES: &str = "nodes";
const LEASES: &str = "leases";

pub(super) async fn heartbeat(catalog: &SqlCatalog, node: &NodeInfo) -> Result<()> {
    let action = "recording a node heartbeat";
    let mut w = catalog.write_tx(action).await?;
    sqlx::query(
        "INSERT INTO nodes (id, name, roles, version, api_url, started_at, heartbeat_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, roles = excluded.roles, \
         version = excluded.version, api_url = excluded.api_url, \
         heartbeat_at = excluded.heartbeat_at",
    )
    .bind(node.id.as_str())
    .bind(&node.name)
    .bind(node.roles.join(","))
    .bind(&node.version)
    .bind(node.api_url.as_deref())
    .bind(codec::time(node.started_at))
    .bind(codec::time(node.heartbeat_at))
    .execute(&mut *w.tx)
    .await
    .map_err(db(action))?;
    w.commit(action).await
}

fn node_row(row: &AnyRow) -> Result<NodeInfo> {
    let roles: String = codec::col(row, NODES, "roles")?;
    Ok(NodeInfo {
        id: codec::id_col(row, NODES, "id")?,
        name: codec::col(row, NODES, "name")?,
        roles: roles
            .split(',')
            .filter(|r| !r.is_empty())
            .map(str::to_string)
            .collect(),
        version: codec::col(row, NODES, "version")?,
        api_url: codec::col(row, NODES, "api_url")?,
        started_at: codec::time_col(row, NODES, "started_at")?,
        heartbeat_at: codec::time_col(row, NODES, "heartbeat_at")?,
    })
}

pub(super) async fn list_nodes(catalog: &SqlCatalog) -> Result<Vec<NodeInfo>> {
    let mut conn = catalog.reader("listing nodes", Route::Replica).await?;
    let rows = sqlx::query(
        "SELECT id, name, roles, version, api_url, started_at, heartbeat_at FROM nodes ORDER BY name, id",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(db("listing nodes"))?;
    rows.iter().map(node_row).collect()
}

pub(super) async fn remove_node(catalog: &SqlCatalog, id: &Id) -> Result<()> {
    let action = "removing a node";
    let mut w = catalog.write_tx(action).await?;
    sqlx::query("DELETE FROM leases WHERE holder = $1")
        .bind(id.as_str())
        .execute(&mut *w.tx)
        .await
        .map_err(db(action))?;
    sqlx::query("DELETE FROM nodes WHERE id = $1")
        .bind(id.as_str())
        .execute(&mut *w.tx)
        .await
        .map_err(db(action))?;
    w.commit(action).await
}

fn lease_row(row: &AnyRow) -> Result<Lease> {
    Ok(Lease {
        name: codec::col(row, LEASES, "name")?,
        holder: codec::id_col(row, LEASES, "holder")?,
        token: codec::u64_col(row, LEASES, "token")?,
        acquired_at: codec::time_col(row, LEASES, "acquired_at")?,
        expires_at: codec::time_col(row, LEASES, "expires_at")?,
    })
}

/// Takes, renews or takes over `name` for `holder` until `now + ttl`.
/// Returns the lease when `holder` holds it afterwards, `None` when another
/// node holds it and it has not expired.
pub(super) async fn acquire(
    catalog: &SqlCatalog,
    name: &str,
    holder: &Id,
    ttl: Duration,
    now: DateTime<Utc>,
) -> Result<Option<Lease>> {
    let action = "acquiring a lease";
    let expires = codec::time(now + ttl);
    let now_text = codec::time(now);
    let mut w = catalog.write_tx(action).await?;
    let updated = sqlx::query(
        "UPDATE leases SET \
           token = CASE WHEN holder = $2 THEN token ELSE token + 1 END, \
           acquired_at = CASE WHEN holder = $2 THEN acquired_at ELSE $4 END, \
           holder = $2, expires_at = $3 \
         WHERE name = $1 AND (holder = $2 OR expires_at < $4)",
    )
    .bind(name)
    .bind(holder.as_str())
    .bind(&expires)
    .bind(&now_text)
    .execute(&mut *w.tx)
    .await
    .map_err(db(action))?;
    if updated.rows_affected() == 0 {
        sqlx::query(
            "INSERT INTO leases (name, holder, token, acquired_at, expires_at) \
             VALUES ($1, $2, 1, $3, $4) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(holder.as_str())
        .bind(&now_text)
        .bind(&expires)
        .execute(&mut *w.tx)
        .await
        .map_err(db(action))?;
    }
    let row = sqlx::query(
        "SELECT name, holder, token, acquired_at, expires_at FROM leases WHERE name = $1",
    )
    .bind(name)
    .fetch_one(&mut *w.tx)
    .await
    .map_err(db(action))?;
    let lease = lease_row(&row)?;
    w.commit(action).await?;
    Ok((lease.holder == *holder).then_some(lease))
}

/// Gives `name` up if `holder` holds it (it expires at once; the next
/// holder gets the next token).
pub(super) async fn release(
    catalog: &SqlCatalog,
    name: &str,
    holder: &Id,
    now: DateTime<Utc>,
) -> Result<()> {
    let action = "releasing a lease";
    let mut w = catalog.write_tx(action).await?;
    sqlx::query("UPDATE leases SET expires_at = $3 WHERE name = $1 AND holder = $2")
        .bind(name)
        .bind(holder.as_str())
        .bind(codec::time(now - Duration::milliseconds(1)))
        .execute(&mut *w.tx)
        .await
        .map_err(db(action))?;
    w.commit(action).await
}

pub(super) async fn list_leases(catalog: &SqlCatalog) -> Result<Vec<Lease>> {
    let mut conn = catalog.reader("listing leases", Route::Primary).await?;
    let rows = sqlx::query(
        "SELECT name, holder, token, acquired_at, expires_at FROM leases ORDER BY name",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(db("listing leases"))?;
    rows.iter().map(lease_row).collect()
}

/// The fencing check: `holder` still holds `name` with `token`, unexpired.
pub(super) async fn holds(
    catalog: &SqlCatalog,
    name: &str,
    holder: &Id,
    token: u64,
    now: DateTime<Utc>,
) -> Result<bool> {
    let mut conn = catalog.reader("checking a lease", Route::Primary).await?;
    let row = sqlx::query(
        "SELECT name FROM leases WHERE name = $1 AND holder = $2 AND token = $3 AND expires_at >= $4",
    )
    .bind(name)
    .bind(holder.as_str())
    .bind(codec::u64_param(LEASES, "token", token)?)
    .bind(codec::time(now))
    .fetch_optional(&mut *conn)
    .await
    .map_err(db("checking a lease"))?;
    Ok(row.is_some())
}

/// The fencing check inside a committing transaction: `fence.holder` still
/// holds `fence.name` under `fence.token`, unexpired at `now`. On
/// PostgreSQL the lease row stays locked until the transaction ends, so a
/// takeover waits for the commit (and then sees its effects).
pub(super) async fn fence(
    catalog: &SqlCatalog,
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    fence: &crate::LeaseFence,
    now: DateTime<Utc>,
    action: &'static str,
) -> Result<()> {
    let sql = format!(
        "SELECT holder, token, expires_at FROM leases WHERE name = $1{}",
        catalog.backend().lock_rows()
    );
    let row = sqlx::query(&sql)
        .bind(fence.name.as_str())
        .fetch_optional(&mut **tx)
        .await
        .map_err(db(action))?;
    let held = match &row {
        Some(row) => {
            let holder: String = codec::col(row, LEASES, "holder")?;
            let token = codec::u64_col(row, LEASES, "token")?;
            let expires = codec::time_col(row, LEASES, "expires_at")?;
            if holder != fence.holder.as_str() {
                Err(format!("lease {} is held by {holder}", fence.name))
            } else if token != fence.token {
                Err(format!(
                    "lease {} changed hands (token {token}, this work holds {})",
                    fence.name, fence.token
                ))
            } else if expires < now {
                Err(format!(
                    "lease {} expired at {}",
                    fence.name,
                    codec::time(expires)
                ))
            } else {
                Ok(())
            }
        }
        None => Err(format!("lease {} is not held", fence.name)),
    };
    held.map_err(|message| crate::CatalogError::Fenced {
        what: fence.name.clone(),
        message: format!("{message}; the work is refused"),
    })
}
