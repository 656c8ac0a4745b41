//! The migration runner: applies the embedded migrations (`migrations/*.sql`)
//! that the database has not seen, in version order, each in its own
//! transaction, and records them in `schema_migrations`.
//!
//! Migrations are expand/contract: an applied migration is never edited, a
//! change is always a new migration, and a release only adds what the
//! previous release can ignore (so two releases can share one catalog during
//! a rolling upgrade). A database that has migrations this build does not
//! know (a newer release ran on it) is therefore accepted.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::codec::{self, db};
use super::pool::Route;
use super::SqlCatalog;
use crate::{CatalogError, Result};

/// One embedded migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    /// Its number, from the file name (`0001_initial.sql` is 1).
    pub version: i64,
    /// The rest of the file name, without the extension.
    pub name: &'static str,
    /// Portable SQL, one or more statements.
    pub sql: &'static str,
}

/// Every migration this build knows, in version order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sql: include_str!("../../migrations/0001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "schedules_and_watermarks",
        sql: include_str!("../../migrations/0002_schedules_and_watermarks.sql"),
    },
    Migration {
        version: 3,
        name: "retention",
        sql: include_str!("../../migrations/0003_retention.sql"),
    },
    Migration {
        version: 4,
        name: "cluster",
        sql: include_str!("../../migrations/0004_cluster.sql"),
    },
    Migration {
        version: 5,
        name: "job_leases",
        sql: include_str!("../../migrations/0005_job_leases.sql"),
    },
];

/// A migration recorded in `schema_migrations`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedMigration {
    pub version: i64,
    pub name: String,
    pub applied_at: DateTime<Utc>,
}

const TABLE: &str = "schema_migrations";

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (\
     version BIGINT NOT NULL PRIMARY KEY, \
     name TEXT NOT NULL, \
     applied_at TEXT NOT NULL)";

/// Applies every missing migration; a no-op on an up-to-date database.
/// The advisory lock that serializes migrations of nodes sharing one
/// PostgreSQL catalog (an arbitrary constant: "vega" in ASCII).
const POSTGRES_MIGRATION_LOCK: i64 = 0x7665_6761;

/// On PostgreSQL, waits for the migration lock; it is released with the
/// transaction. SQLite needs nothing: its write transactions are serial.
async fn lock_migrations(
    catalog: &SqlCatalog,
    conn: &mut sqlx::AnyConnection,
) -> std::result::Result<(), sqlx::Error> {
    if catalog.backend() == super::Backend::Postgres {
        sqlx::query("SELECT 1 FROM (SELECT pg_advisory_xact_lock($1)) AS locked")
            .bind(POSTGRES_MIGRATION_LOCK)
            .execute(conn)
            .await?;
    }
    Ok(())
}

pub(crate) async fn run(catalog: &SqlCatalog) -> Result<()> {
    {
        let mut w = catalog.write_tx("creating schema_migrations").await?;
        lock_migrations(catalog, &mut w.tx)
            .await
            .map_err(db("locking the catalog migrations"))?;
        for create in [CREATE_TABLE, CREATE_BREAKING_TABLE] {
            sqlx::query(create)
                .execute(&mut *w.tx)
                .await
                .map_err(db("creating schema_migrations"))?;
        }
        w.commit("creating schema_migrations").await?;
    }

    let applied = applied(catalog).await?;
    refuse_newer_breaking(catalog, &applied).await?;
    for recorded in &applied {
        match MIGRATIONS.iter().find(|m| m.version == recorded.version) {
            Some(known) if known.name != recorded.name => {
                return Err(CatalogError::Migration {
                    version: recorded.version,
                    message: format!(
                        "recorded as '{}' but this build calls it '{}'; \
                         applied migrations must never be changed",
                        recorded.name, known.name
                    ),
                });
            }
            Some(_) => {}
            None => tracing::warn!(
                version = recorded.version,
                name = %recorded.name,
                "catalog has a migration this build does not know (written by a newer release)"
            ),
        }
    }

    for migration in MIGRATIONS {
        if applied.iter().any(|a| a.version == migration.version) {
            continue;
        }
        apply(catalog, migration).await?;
    }
    Ok(())
}

/// Migrations that binaries older than them cannot work with (a contract
/// step: a column they read is gone, a meaning changed). Listed in the
/// catalog by the binary that applies them, so that an older binary, which
/// does not know them, refuses the catalog instead of misreading it.
/// Expand-only migrations are not listed: older binaries run beside newer
/// ones during a rolling upgrade. None of this build's migrations is
/// breaking.
const BREAKING: &[i64] = &[];

const CREATE_BREAKING_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS schema_breaking (version BIGINT NOT NULL PRIMARY KEY)";

/// Refuses a catalog with a breaking migration this build does not know,
/// naming the catalog's schema version and this build's.
async fn refuse_newer_breaking(catalog: &SqlCatalog, applied: &[AppliedMigration]) -> Result<()> {
    let known = MIGRATIONS.last().map(|m| m.version).unwrap_or(0);
    let action = "reading schema_breaking";
    let mut conn = catalog.reader(action, Route::Primary).await?;
    let rows = sqlx::query("SELECT version FROM schema_breaking ORDER BY version")
        .fetch_all(&mut *conn)
        .await
        .map_err(db(action))?;
    for row in &rows {
        let version: i64 = row
            .try_get("version")
            .map_err(|e| codec::corrupt("schema_breaking", format!("column version: {e}")))?;
        if MIGRATIONS.iter().all(|m| m.version != version) {
            let newest = applied.last().map(|m| (m.version, m.name.clone()));
            let (catalog_version, name) = newest.unwrap_or((version, String::new()));
            return Err(CatalogError::SchemaTooNew {
                catalog_version,
                catalog_migration: name,
                breaking: version,
                binary_version: known,
            });
        }
    }
    Ok(())
}

/// Applies one migration in its own transaction, unless another process
/// applied it since we looked.
async fn apply(catalog: &SqlCatalog, migration: &Migration) -> Result<()> {
    let failed = |e: sqlx::Error| CatalogError::Migration {
        version: migration.version,
        message: format!("{}: {e}", migration.name),
    };
    let mut w = catalog.write_tx("applying a catalog migration").await?;
    lock_migrations(catalog, &mut w.tx).await.map_err(failed)?;
    let already = sqlx::query("SELECT version FROM schema_migrations WHERE version = $1")
        .bind(migration.version)
        .fetch_optional(&mut *w.tx)
        .await
        .map_err(failed)?;
    if already.is_some() {
        return Ok(());
    }
    sqlx::raw_sql(migration.sql)
        .execute(&mut *w.tx)
        .await
        .map_err(failed)?;
    sqlx::query("INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)")
        .bind(migration.version)
        .bind(migration.name)
        .bind(codec::time(Utc::now()))
        .execute(&mut *w.tx)
        .await
        .map_err(failed)?;
    if BREAKING.contains(&migration.version) {
        sqlx::query("INSERT INTO schema_breaking (version) VALUES ($1)")
            .bind(migration.version)
            .execute(&mut *w.tx)
            .await
            .map_err(failed)?;
    }
    w.tx.commit().await.map_err(failed)?;
    tracing::info!(
        version = migration.version,
        name = migration.name,
        "applied catalog migration"
    );
    Ok(())
}

/// The migrations recorded as applied, in version order.
pub(crate) async fn applied(catalog: &SqlCatalog) -> Result<Vec<AppliedMigration>> {
    let action = "reading schema_migrations";
    let mut conn = catalog.reader(action, Route::Primary).await?;
    let rows =
        sqlx::query("SELECT version, name, applied_at FROM schema_migrations ORDER BY version")
            .fetch_all(&mut *conn)
            .await
            .map_err(db(action))?;
    rows.iter()
        .map(|row| {
            Ok(AppliedMigration {
                version: row
                    .try_get("version")
                    .map_err(|e| codec::corrupt(TABLE, format!("column version: {e}")))?,
                name: codec::col(row, TABLE, "name")?,
                applied_at: codec::time_col(row, TABLE, "applied_at")?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_one_up_without_gaps() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1, "migration {}", m.name);
            assert!(!m.sql.trim().is_empty(), "migration {} is empty", m.name);
        }
    }

    #[test]
    fn migrations_avoid_backend_specific_syntax() {
        // A cheap guard for the portability rule; the real proof is running
        // them on both databases.
        for m in MIGRATIONS {
            let sql: String = m
                .sql
                .lines()
                .map(|l| l.split("--").next().unwrap_or(""))
                .collect::<Vec<_>>()
                .join("\n")
                .to_ascii_uppercase();
            for banned in [
                "AUTOINCREMENT",
                "SERIAL",
                "WITHOUT ROWID",
                "PRAGMA",
                "JSONB",
                "TIMESTAMPTZ",
                "BOOLEAN",
                "GENERATED",
            ] {
                assert!(!sql.contains(banned), "migration {} uses {banned}", m.name);
            }
        }
    }
}
