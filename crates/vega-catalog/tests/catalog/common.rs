//! Shared fixtures: a catalog in a temporary directory, fixed times, and
//! builders for connections, assets and manifests.

use std::path::PathBuf;

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use vega_catalog::{Catalog, CatalogError, SqlCatalog};
use vega_core::{
    Asset, AssetChecks, Connection, ConnectorKind, Manifest, NewAsset, NewConnection, Segment,
    SyncMode,
};

/// Whether this run tests the PostgreSQL backend (`VEGA_TEST_CATALOG=postgres`)
/// instead of the embedded SQLite one. Every test runs on both; the few
/// that look at SQLite files directly return early on PostgreSQL.
pub fn on_postgres() -> bool {
    std::env::var("VEGA_TEST_CATALOG").as_deref() == Ok("postgres")
}

/// A catalog that lives as long as this: a file in a temporary directory,
/// or a fresh database on the shared test PostgreSQL server.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub catalog: SqlCatalog,
    /// The PostgreSQL database's URL, on that backend.
    pub url: Option<String>,
}

impl Fixture {
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        if on_postgres() {
            let url = vega_testkit::postgres::SharedPostgres::database();
            let catalog = SqlCatalog::connect(&url).await.unwrap();
            return Fixture {
                dir,
                catalog,
                url: Some(url),
            };
        }
        let catalog = SqlCatalog::open_sqlite(&dir.path().join("catalog.db"))
            .await
            .unwrap();
        Fixture {
            dir,
            catalog,
            url: None,
        }
    }

    /// The SQLite file (SQLite runs only).
    pub fn path(&self) -> PathBuf {
        assert!(self.url.is_none(), "a SQLite-only test ran on PostgreSQL");
        self.dir.path().join("catalog.db")
    }

    /// Closes the catalog and opens the same database again.
    pub async fn reopen(self) -> Self {
        self.catalog.close().await;
        let catalog = match &self.url {
            Some(url) => SqlCatalog::connect(url).await.unwrap(),
            None => SqlCatalog::open_sqlite(&self.path()).await.unwrap(),
        };
        Fixture {
            dir: self.dir,
            catalog,
            url: self.url,
        }
    }

    /// A plain sqlx pool on the same file, to look at or tamper with rows.
    pub async fn raw(&self) -> sqlx::SqlitePool {
        let options = sqlx::sqlite::SqliteConnectOptions::new().filename(self.path());
        sqlx::SqlitePool::connect_with(options).await.unwrap()
    }

    pub async fn connection(&self, name: &str) -> Connection {
        self.catalog
            .create_connection(new_connection(name), t(0))
            .await
            .unwrap()
    }

    pub async fn asset(&self, connection: &Connection, namespace: &str, name: &str) -> Asset {
        self.catalog
            .create_asset(new_asset(connection, namespace, name), t(1))
            .await
            .unwrap()
    }

    /// A connection `files` with one asset `sales.orders`.
    pub async fn with_asset(&self) -> Asset {
        let con = self.connection("files").await;
        self.asset(&con, "sales", "orders").await
    }
}

/// A fixed instant plus `secs` seconds.
pub fn t(secs: i64) -> DateTime<Utc> {
    vega_core::clock::from_catalog_time("2026-03-01T12:00:00.000Z").unwrap()
        + Duration::seconds(secs)
}

pub fn new_connection(name: &str) -> NewConnection {
    NewConnection {
        name: name.to_string(),
        kind: ConnectorKind::File,
        params: json!({"root": "/data"}),
    }
}

pub fn new_asset(connection: &Connection, namespace: &str, name: &str) -> NewAsset {
    NewAsset {
        namespace: namespace.to_string(),
        name: name.to_string(),
        connection_id: connection.id.clone(),
        sync_mode: SyncMode::Full,
        source: json!({"path": "orders.csv", "format": "csv"}),
        checks: AssetChecks {
            min_rows: Some(1),
            ..Default::default()
        },
        schedule: None,
        retention: None,
    }
}

/// A manifest with `segments` segments whose paths carry `tag`.
pub fn manifest(tag: &str, segments: usize) -> Manifest {
    Manifest {
        schema: json!({
            "fields": [
                {"name": "id", "data_type": "Int64", "nullable": false},
                {"name": "note", "data_type": "Utf8", "nullable": true}
            ],
            "metadata": {"source": tag}
        }),
        segments: (0..segments)
            .map(|i| Segment {
                path: format!("assets/{tag}/part-{i:04}.parquet"),
                rows: 100 + i as u64,
                bytes: 4096 * (i as u64 + 1),
                sha256: format!("{:064x}", i + 1),
            })
            .collect(),
    }
}

/// Asserts a `NotFound` for `what` whose key contains `key`.
#[track_caller]
pub fn assert_not_found<T: std::fmt::Debug>(
    result: Result<T, CatalogError>,
    what: &str,
    key: &str,
) {
    match result {
        Err(CatalogError::NotFound { what: w, key: k }) => {
            assert_eq!(w, what);
            assert!(k.contains(key), "key '{k}' should contain '{key}'");
        }
        other => panic!("expected NotFound {what} '{key}', got {other:?}"),
    }
}

/// Asserts a `Conflict` whose message contains `needle`; returns `existing`.
#[track_caller]
pub fn assert_conflict<T: std::fmt::Debug>(
    result: Result<T, CatalogError>,
    needle: &str,
) -> Option<String> {
    match result {
        Err(CatalogError::Conflict { message, existing }) => {
            assert!(
                message.contains(needle),
                "message '{message}' should contain '{needle}'"
            );
            existing
        }
        other => panic!("expected Conflict '{needle}', got {other:?}"),
    }
}
