//! Opening, migrating and reopening catalogs.

use std::path::Path;

use serde_json::json;
use vega_catalog::{Catalog, CatalogError, SqlCatalog, MIGRATIONS};
use vega_core::{AssetChecks, Id, IdKind, JobKind, Role, SyncMode};

use crate::common::on_postgres;
use crate::common::{manifest, t, Fixture};

/// The time stamped on rows written by hand as an older build would.
const OLD_TIME: &str = "2026-03-01T12:00:00.000Z";

/// Inserts a connection and an asset the way a build that knew only
/// migration 0001 did: naming only 0001's columns. Returns the asset's id.
async fn insert_as_0001_build(raw: &sqlx::SqlitePool, tag: u64) -> Id {
    let con = Id::new(IdKind::Connection, tag);
    let asset = Id::new(IdKind::Asset, tag);
    sqlx::query(
        "INSERT INTO connections (id, name, kind, params_json, enabled, created_at, updated_at) \
         VALUES ($1, $2, 'file', '{\"root\": \"/data\"}', 1, $3, $3)",
    )
    .bind(con.as_str())
    .bind(format!("files{tag}"))
    .bind(OLD_TIME)
    .execute(raw)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO assets (id, namespace, name, connection_id, sync_mode, source_json, \
         checks_json, active_version, created_at, updated_at) \
         VALUES ($1, 'sales', $2, $3, 'incremental', '{\"path\": \"orders.csv\"}', '{}', NULL, \
         $4, $4)",
    )
    .bind(asset.as_str())
    .bind(format!("orders{tag}"))
    .bind(con.as_str())
    .bind(OLD_TIME)
    .execute(raw)
    .await
    .unwrap();
    asset
}

fn raw_options(path: &Path) -> sqlx::sqlite::SqliteConnectOptions {
    sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
}

#[tokio::test]
async fn a_new_catalog_records_every_migration() {
    let f = Fixture::new().await;
    let applied = f.catalog.applied_migrations().await.unwrap();
    let versions: Vec<(i64, String)> = applied
        .iter()
        .map(|m| (m.version, m.name.clone()))
        .collect();
    let expected: Vec<(i64, String)> = MIGRATIONS
        .iter()
        .map(|m| (m.version, m.name.to_string()))
        .collect();
    assert_eq!(versions, expected);
}

#[tokio::test]
async fn reopening_applies_no_migration_twice() {
    let f = Fixture::new().await;
    let before = f.catalog.applied_migrations().await.unwrap();
    let f = f.reopen().await;
    let f = f.reopen().await;
    assert_eq!(f.catalog.applied_migrations().await.unwrap(), before);
}

#[tokio::test]
async fn data_survives_reopen() {
    let f = Fixture::new().await;
    let a = f.with_asset().await;
    let v = f
        .catalog
        .publish_version(&a.id, manifest("a", 3), None, t(2))
        .await
        .unwrap();
    let job = f
        .catalog
        .start_job(JobKind::Sync, Some(&a.id), json!({"mode": "full"}), t(3))
        .await
        .unwrap();
    f.catalog
        .put_setting("k", json!([1, 2]), t(4))
        .await
        .unwrap();
    let key = f
        .catalog
        .create_api_key("ci", Role::Admin, &"ab".repeat(32), t(5))
        .await
        .unwrap();

    let f = f.reopen().await;
    let asset = f.catalog.get_asset(&a.id).await.unwrap();
    assert_eq!(asset.active_version, Some(1));
    assert_eq!(f.catalog.get_version(&a.id, 1).await.unwrap(), v);
    assert_eq!(f.catalog.get_job(&job.id).await.unwrap(), job);
    assert_eq!(
        f.catalog.get_setting("k").await.unwrap(),
        Some(json!([1, 2]))
    );
    assert_eq!(
        f.catalog
            .find_api_key_by_hash(&"ab".repeat(32))
            .await
            .unwrap(),
        Some(key)
    );
}

#[tokio::test]
async fn opening_creates_missing_directories() {
    if on_postgres() {
        return; // looks at the SQLite file itself
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data").join("catalog").join("catalog.db");
    let catalog = SqlCatalog::open_sqlite(&path).await.unwrap();
    catalog.ping().await.unwrap();
    assert!(path.exists());
}

#[tokio::test]
async fn a_path_with_url_characters_opens_that_file() {
    if on_postgres() {
        return; // looks at the SQLite file itself
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("my data #1?&%41.db");
    let catalog = SqlCatalog::open_sqlite(&path).await.unwrap();
    catalog.ping().await.unwrap();
    assert!(path.exists());
}

#[tokio::test]
async fn connect_opens_a_sqlite_url() {
    if on_postgres() {
        return; // looks at the SQLite file itself
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.db");
    let url = format!("sqlite://{}", path.display());
    let catalog = SqlCatalog::connect(&url).await.unwrap();
    catalog.ping().await.unwrap();
    assert!(path.exists());
}

#[tokio::test]
async fn connect_opens_an_in_memory_catalog() {
    if on_postgres() {
        return; // looks at the SQLite file itself
    }
    let catalog = SqlCatalog::connect("sqlite::memory:").await.unwrap();
    catalog.put_setting("k", json!(1), t(0)).await.unwrap();
    assert_eq!(catalog.get_setting("k").await.unwrap(), Some(json!(1)));
}

#[tokio::test]
async fn an_unreachable_postgres_catalog_is_an_error_naming_it() {
    let port = vega_testkit::ports::free_port();
    let err = SqlCatalog::connect(&format!("postgres://vega@127.0.0.1:{port}/vega"))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("connecting to the PostgreSQL catalog"),
        "{err}"
    );
}

/// Nodes starting together on one new PostgreSQL catalog: the migrations
/// run once, serialized by the advisory lock, and every node opens it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_migrating_one_postgres_catalog_at_once_all_succeed() {
    let url = vega_testkit::postgres::SharedPostgres::database();
    // Polled together: their connections and transactions interleave.
    let (a, b, c, d) = tokio::join!(
        SqlCatalog::connect(&url),
        SqlCatalog::connect(&url),
        SqlCatalog::connect(&url),
        SqlCatalog::connect(&url)
    );
    for open in [a, b, c, d] {
        let catalog = open.expect("every node opens the catalog");
        assert_eq!(catalog.backend(), vega_catalog::Backend::Postgres);
        let applied = catalog.applied_migrations().await.unwrap();
        assert_eq!(applied.len(), vega_catalog::MIGRATIONS.len());
    }
}

#[tokio::test]
async fn connect_refuses_an_unknown_scheme() {
    if on_postgres() {
        return; // looks at the SQLite file itself
    }
    let err = SqlCatalog::connect("mysql://db/vega").await.unwrap_err();
    assert!(err.to_string().contains("'mysql'"), "{err}");
}

#[tokio::test]
async fn a_migration_recorded_under_another_name_is_refused() {
    if on_postgres() {
        return; // looks at the SQLite file itself
    }
    let f = Fixture::new().await;
    let raw = f.raw().await;
    sqlx::query("UPDATE schema_migrations SET name = 'edited' WHERE version = 1")
        .execute(&raw)
        .await
        .unwrap();
    raw.close().await;
    f.catalog.close().await;
    let err = SqlCatalog::open_sqlite(&f.path()).await.unwrap_err();
    match err {
        CatalogError::Migration { version, message } => {
            assert_eq!(version, 1);
            assert!(message.contains("'edited'"), "{message}");
        }
        other => panic!("expected a migration error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_migration_from_a_newer_release_is_tolerated() {
    if on_postgres() {
        return; // looks at the SQLite file itself
    }
    let f = Fixture::new().await;
    let raw = f.raw().await;
    sqlx::query(
        "INSERT INTO schema_migrations (version, name, applied_at) \
         VALUES (9999, 'from_the_future', '2030-01-01T00:00:00.000Z')",
    )
    .execute(&raw)
    .await
    .unwrap();
    raw.close().await;
    let f = f.reopen().await;
    let applied = f.catalog.applied_migrations().await.unwrap();
    assert_eq!(applied.last().unwrap().version, 9999);
}

/// A newer release's breaking migration (one older binaries cannot work
/// with): the catalog is refused, naming the catalog's schema version and
/// this binary's, and nothing in it changes.
#[tokio::test]
async fn a_breaking_migration_from_a_newer_release_is_refused_naming_both_versions() {
    if on_postgres() {
        return; // looks at the SQLite file itself
    }
    let f = Fixture::new().await;
    let path = f.path();
    let raw = f.raw().await;
    for sql in [
        "INSERT INTO schema_migrations (version, name, applied_at) \
         VALUES (9999, 'drop_old_columns', '2030-01-01T00:00:00.000Z')",
        "INSERT INTO schema_breaking (version) VALUES (9999)",
    ] {
        sqlx::query(sql).execute(&raw).await.unwrap();
    }
    raw.close().await;
    f.catalog.close().await;
    let known = vega_catalog::MIGRATIONS.last().unwrap().version;
    match vega_catalog::SqlCatalog::open_sqlite(&path).await {
        Err(e @ CatalogError::SchemaTooNew { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("migration 9999 ('drop_old_columns')"),
                "{text}"
            );
            assert!(
                text.contains(&format!("knows migrations up to {known}")),
                "{text}"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    drop(f.dir);
}

#[tokio::test]
async fn migration_0002_applies_to_a_catalog_made_with_only_0001() {
    if on_postgres() {
        return; // looks at the SQLite file itself
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.db");
    // The catalog as a build knowing only 0001 left it: its runner's
    // bookkeeping table, 0001 applied and recorded, and one asset.
    let raw = sqlx::SqlitePool::connect_with(raw_options(&path))
        .await
        .unwrap();
    sqlx::raw_sql(
        "CREATE TABLE schema_migrations (version BIGINT NOT NULL PRIMARY KEY, \
         name TEXT NOT NULL, applied_at TEXT NOT NULL)",
    )
    .execute(&raw)
    .await
    .unwrap();
    let first = &MIGRATIONS[0];
    assert_eq!(first.version, 1);
    sqlx::raw_sql(first.sql).execute(&raw).await.unwrap();
    sqlx::query("INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)")
        .bind(first.version)
        .bind(first.name)
        .bind(OLD_TIME)
        .execute(&raw)
        .await
        .unwrap();
    let id = insert_as_0001_build(&raw, 1).await;
    raw.close().await;

    let catalog = SqlCatalog::open_sqlite(&path).await.unwrap();
    let applied: Vec<(i64, String)> = catalog
        .applied_migrations()
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.version, m.name))
        .collect();
    assert_eq!(
        applied,
        [
            (1, "initial".to_string()),
            (2, "schedules_and_watermarks".to_string()),
            (3, "retention".to_string()),
            (4, "cluster".to_string()),
            (5, "job_leases".to_string())
        ]
    );
    let asset = catalog.get_asset(&id).await.unwrap();
    assert_eq!(asset.schedule, None);
    assert_eq!(asset.watermark, None);
    assert_eq!(asset.qualified_name(), "sales.orders1");
    assert_eq!(asset.sync_mode, SyncMode::Incremental);
    assert_eq!(asset.checks, AssetChecks::default());
    assert_eq!(catalog.list_assets().await.unwrap(), [asset]);
}

#[tokio::test]
async fn a_0001_build_can_still_write_and_read_assets_after_0002() {
    if on_postgres() {
        return; // looks at the SQLite file itself
    }
    let f = Fixture::new().await;
    let raw = f.raw().await;
    // An older binary, during a rolling upgrade, inserts with 0001's columns…
    let id = insert_as_0001_build(&raw, 2).await;
    // …and reads with them.
    let (name, mode): (String, String) =
        sqlx::query_as("SELECT name, sync_mode FROM assets WHERE id = $1")
            .bind(id.as_str())
            .fetch_one(&raw)
            .await
            .unwrap();
    assert_eq!((name.as_str(), mode.as_str()), ("orders2", "incremental"));
    raw.close().await;
    let asset = f.catalog.get_asset(&id).await.unwrap();
    assert_eq!(asset.schedule, None);
    assert_eq!(asset.watermark, None);
}
