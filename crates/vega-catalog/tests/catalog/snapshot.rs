//! Catalog snapshots: export → import round trips (on this run's backend,
//! and SQLite → PostgreSQL → SQLite, which always runs), what a snapshot
//! holds and leaves out, and the imports that are refused without writing
//! anything (a non-empty catalog, clashing keys, an unknown format, a newer
//! schema, dangling references).

use std::time::Duration;

use serde_json::json;
use vega_catalog::{
    AssetUpdate, Catalog, CatalogError, CatalogSnapshot, SqlCatalog, MIGRATIONS, SNAPSHOT_FORMAT,
};
use vega_core::{
    AssetChecks, ConnectorKind, Id, IdKind, JobKind, NewAsset, NewConnection, NodeInfo, Retention,
    Role, Segment, SyncMode,
};

use crate::common::{assert_conflict, manifest, new_asset, on_postgres, t, Fixture};

fn hash(n: u8) -> String {
    format!("{:064x}", u64::from(n) + 0x5eed)
}

fn segment(tag: &str, i: u64) -> Segment {
    Segment {
        path: format!("assets/{tag}/part-{i:04}.parquet"),
        rows: 10 * (i + 1),
        bytes: 1000 * (i + 1),
        sha256: format!("{:064x}", i + 100),
    }
}

/// Fills a catalog with every kind of state a snapshot holds — a disabled
/// connection, assets with a schedule, retention, checks and a watermark,
/// several versions with a rollback to an older one, a version made by a
/// job, an asset without versions, settings, API keys — and with state it
/// leaves out (a job, a node, a lease).
async fn populate(catalog: &SqlCatalog) {
    let files = catalog
        .create_connection(
            NewConnection {
                name: "files".into(),
                kind: ConnectorKind::File,
                params: json!({"root": "/data"}),
            },
            t(0),
        )
        .await
        .unwrap();
    let pg = catalog
        .create_connection(
            NewConnection {
                name: "warehouse".into(),
                kind: ConnectorKind::Postgres,
                params: json!({"url": {"env": "WAREHOUSE_URL"}, "batch_rows": 5000, "ratio": 0.25}),
            },
            t(1),
        )
        .await
        .unwrap();
    catalog
        .set_connection_enabled(&pg.id, false, t(2))
        .await
        .unwrap();

    // A full asset with a schedule, retention and checks; three versions,
    // the second made by a job, rolled back to v2.
    let orders = catalog
        .create_asset(
            NewAsset {
                schedule: Some("15m".into()),
                retention: Some(Retention {
                    column: "created_at".into(),
                    period: "30d".into(),
                }),
                checks: AssetChecks {
                    min_rows: Some(1),
                    max_rows: Some(1_000_000),
                    not_null: vec!["id".into()],
                    unique: vec![vec!["id".into(), "note".into()]],
                    same_schema: true,
                    sql: vec!["SELECT * FROM asset WHERE id < 0".into()],
                    ..Default::default()
                },
                ..new_asset(&files, "sales", "orders")
            },
            t(3),
        )
        .await
        .unwrap();
    catalog
        .publish_version(&orders.id, manifest("orders-1", 2), None, t(10))
        .await
        .unwrap();
    let job = catalog
        .start_job(
            JobKind::Sync,
            Some(&orders.id),
            json!({"full": true}),
            t(11),
        )
        .await
        .unwrap();
    catalog
        .publish_version(&orders.id, manifest("orders-2", 3), Some(&job.id), t(12))
        .await
        .unwrap();
    catalog
        .finish_job(
            &job.id,
            vega_catalog::JobOutcome::Succeeded {
                result_version: Some(2),
            },
            t(13),
        )
        .await
        .unwrap();
    catalog
        .publish_version(&orders.id, manifest("orders-3", 1), None, t(14))
        .await
        .unwrap();
    catalog
        .set_active_version(&orders.id, 2, t(15))
        .await
        .unwrap();

    // An incremental asset on the disabled connection: appended segments and
    // a watermark, a cron schedule.
    let items = catalog
        .create_asset(
            NewAsset {
                sync_mode: SyncMode::Incremental,
                source: json!({"table": "items", "cursor": "updated_at"}),
                ..new_asset(&pg, "sales", "items")
            },
            t(4),
        )
        .await
        .unwrap();
    let schema = manifest("items", 0).schema;
    catalog
        .append_segments(
            &items.id,
            schema.clone(),
            vec![segment("items", 0)],
            json!({"cursor": "2026-03-01T00:00:00Z", "keys": [1, 2]}),
            None,
            t(20),
        )
        .await
        .unwrap();
    catalog
        .append_segments(
            &items.id,
            schema,
            vec![segment("items", 1), segment("items", 2)],
            json!({"cursor": "2026-03-01T06:00:00Z", "keys": [7]}),
            None,
            t(21),
        )
        .await
        .unwrap();
    catalog
        .update_asset(
            &items.id,
            AssetUpdate {
                schedule: Some(Some("0 */5 * * * *".into())),
                ..Default::default()
            },
            t(22),
        )
        .await
        .unwrap();

    // An asset without any version.
    catalog
        .create_asset(new_asset(&files, "ops", "empty"), t(5))
        .await
        .unwrap();

    catalog
        .put_setting("rate_limit", json!({"per_minute": 600}), t(30))
        .await
        .unwrap();
    catalog
        .put_setting("cache", json!({"enabled": true, "ttl": "5m"}), t(31))
        .await
        .unwrap();
    catalog
        .create_api_key("ci", Role::Operator, &hash(1), t(32))
        .await
        .unwrap();
    catalog
        .create_api_key("root", Role::Admin, &hash(2), t(33))
        .await
        .unwrap();

    // Not in a snapshot.
    catalog
        .start_job(JobKind::Sync, Some(&items.id), json!({}), t(40))
        .await
        .unwrap();
    let node = NodeInfo {
        id: Id::new(IdKind::Node, 1_700_000_000_000),
        name: "node-a".into(),
        roles: vec!["api".into()],
        version: "0.1.0".into(),
        api_url: None,
        started_at: t(0),
        heartbeat_at: t(41),
    };
    catalog.heartbeat_node(&node).await.unwrap();
    catalog
        .acquire_lease("scheduler", &node.id, Duration::from_secs(10), t(41))
        .await
        .unwrap()
        .unwrap();
}

/// Through JSON text and back, as a backup file would carry it: a field
/// that did not serialize would be lost here.
fn through_json(snapshot: &CatalogSnapshot) -> CatalogSnapshot {
    let json = snapshot.to_json().unwrap();
    CatalogSnapshot::from_json(&json).unwrap()
}

/// `snapshot` as exported at another time.
fn at(snapshot: &CatalogSnapshot, exported_at: chrono::DateTime<chrono::Utc>) -> CatalogSnapshot {
    CatalogSnapshot {
        exported_at,
        ..snapshot.clone()
    }
}

async fn open_sqlite(dir: &tempfile::TempDir, name: &str) -> SqlCatalog {
    SqlCatalog::open_sqlite(&dir.path().join(name))
        .await
        .unwrap()
}

/// Asserts that everything the catalog's own reads return about `b`
/// equals what they return about `a`.
async fn assert_same_catalog(a: &SqlCatalog, b: &SqlCatalog) {
    assert_eq!(
        a.list_connections().await.unwrap(),
        b.list_connections().await.unwrap()
    );
    let assets = a.list_assets().await.unwrap();
    assert_eq!(assets, b.list_assets().await.unwrap());
    for asset in &assets {
        assert_eq!(
            a.list_versions(&asset.id).await.unwrap(),
            b.list_versions(&asset.id).await.unwrap(),
            "versions of {}",
            asset.qualified_name()
        );
    }
    assert_eq!(
        a.list_active_versions().await.unwrap(),
        b.list_active_versions().await.unwrap()
    );
    assert_eq!(
        a.list_segment_paths().await.unwrap(),
        b.list_segment_paths().await.unwrap()
    );
    for key in ["rate_limit", "cache", "missing"] {
        assert_eq!(
            a.get_setting(key).await.unwrap(),
            b.get_setting(key).await.unwrap()
        );
    }
    let keys = a.list_api_keys().await.unwrap();
    assert_eq!(keys, b.list_api_keys().await.unwrap());
}

#[tokio::test]
async fn a_snapshot_imports_into_an_empty_catalog_as_an_equal_catalog() {
    let source = Fixture::new().await;
    populate(&source.catalog).await;
    let first = source.catalog.export_snapshot(t(100)).await.unwrap();
    assert_eq!(first.exported_at, t(100));

    let target = Fixture::new().await;
    target
        .catalog
        .import_snapshot(&through_json(&first))
        .await
        .unwrap();
    let again = target.catalog.export_snapshot(t(200)).await.unwrap();
    assert_eq!(at(&again, first.exported_at), first);
    assert_same_catalog(&source.catalog, &target.catalog).await;

    // Restored keys work: their secret hashes came along.
    let ci = target
        .catalog
        .find_api_key_by_hash(&hash(1))
        .await
        .unwrap()
        .expect("the restored key is found by its secret");
    assert_eq!(ci.name, "ci");
    assert_eq!(ci.role, Role::Operator);
    assert_eq!(ci.created_at, t(32));

    // Jobs, nodes and leases stayed behind.
    assert!(target
        .catalog
        .list_jobs(Default::default())
        .await
        .unwrap()
        .is_empty());
    assert!(target.catalog.list_nodes().await.unwrap().is_empty());
    assert!(target.catalog.list_leases().await.unwrap().is_empty());

    // The restored catalog goes on as the old one would: the next version
    // of the rolled-back asset is v4.
    let orders = target
        .catalog
        .get_asset_by_name("sales", "orders")
        .await
        .unwrap();
    let next = target
        .catalog
        .publish_version(&orders.id, manifest("orders-4", 1), None, t(300))
        .await
        .unwrap();
    assert_eq!(next.number, 4);
}

#[tokio::test]
async fn a_snapshot_holds_user_state_and_leaves_out_running_work() {
    let f = Fixture::new().await;
    populate(&f.catalog).await;
    let snapshot = f.catalog.export_snapshot(t(100)).await.unwrap();

    assert_eq!(snapshot.format, SNAPSHOT_FORMAT);
    assert_eq!(snapshot.format, 1);
    assert_eq!(snapshot.schema_version, MIGRATIONS.last().unwrap().version);
    assert_eq!(snapshot.connections.len(), 2);
    let warehouse = snapshot
        .connections
        .iter()
        .find(|c| c.name == "warehouse")
        .unwrap();
    assert!(!warehouse.enabled);
    assert_eq!(warehouse.params["url"], json!({"env": "WAREHOUSE_URL"}));
    assert_eq!(snapshot.assets.len(), 3);
    // orders v1–v3, items v1.
    assert_eq!(snapshot.versions.len(), 4);
    assert_eq!(snapshot.settings.len(), 2);
    assert_eq!(snapshot.api_keys.len(), 2);
    assert_eq!(snapshot.asset_ids().len(), 3);

    // One asset's part: the asset, its connection, its versions in order.
    let orders = f
        .catalog
        .get_asset_by_name("sales", "orders")
        .await
        .unwrap();
    let part = snapshot.asset(&orders.id).unwrap();
    assert_eq!(part.asset, orders);
    assert_eq!(part.asset.active_version, Some(2));
    assert_eq!(part.asset.schedule.as_deref(), Some("15m"));
    assert_eq!(part.connection.name, "files");
    let numbers: Vec<u32> = part.versions.iter().map(|v| v.number).collect();
    assert_eq!(numbers, [1, 2, 3]);
    assert!(part.versions[1].job_id.is_some(), "v2's job id is kept");
    assert_eq!(part.versions, {
        let mut v = f.catalog.list_versions(&orders.id).await.unwrap();
        v.reverse();
        v
    });
    let items = f.catalog.get_asset_by_name("sales", "items").await.unwrap();
    let part = snapshot.asset(&items.id).unwrap();
    assert_eq!(
        part.asset.watermark,
        Some(json!({"cursor": "2026-03-01T06:00:00Z", "keys": [7]}))
    );
    assert_eq!(part.versions[0].manifest.segments.len(), 3);
    assert!(snapshot.asset(&Id::new(IdKind::Asset, 1)).is_none());

    // The JSON carries the secret hashes, and nothing about jobs, nodes or
    // leases.
    let text = String::from_utf8(snapshot.to_json().unwrap()).unwrap();
    assert!(text.contains(&hash(1)) && text.contains(&hash(2)), "{text}");
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    let fields: Vec<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for left_out in ["jobs", "nodes", "leases", "schema_breaking"] {
        assert!(!fields.contains(&left_out), "{fields:?}");
    }
    assert!(!text.contains("node-a") && !text.contains("scheduler"));
}

/// SQLite → PostgreSQL → SQLite: the last snapshot equals the first. Always
/// runs (on the shared test PostgreSQL server).
#[tokio::test]
async fn a_snapshot_moves_from_sqlite_to_postgres_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = open_sqlite(&dir, "source.db").await;
    populate(&sqlite).await;
    let first = sqlite.export_snapshot(t(100)).await.unwrap();

    let url = vega_testkit::postgres::SharedPostgres::database();
    let postgres = SqlCatalog::connect(&url).await.unwrap();
    postgres
        .import_snapshot(&through_json(&first))
        .await
        .unwrap();
    let middle = postgres.export_snapshot(t(200)).await.unwrap();
    assert_eq!(at(&middle, first.exported_at), first);
    assert_same_catalog(&sqlite, &postgres).await;
    assert!(postgres
        .find_api_key_by_hash(&hash(2))
        .await
        .unwrap()
        .is_some());

    let back = open_sqlite(&dir, "restored.db").await;
    back.import_snapshot(&through_json(&middle)).await.unwrap();
    let last = back.export_snapshot(t(300)).await.unwrap();
    assert_eq!(at(&last, first.exported_at), first);
    assert_same_catalog(&sqlite, &back).await;
    assert_eq!(
        back.find_api_key_by_hash(&hash(2))
            .await
            .unwrap()
            .map(|k| k.name),
        Some("root".to_string())
    );
}

#[tokio::test]
async fn an_empty_catalog_round_trips() {
    let f = Fixture::new().await;
    let snapshot = f.catalog.export_snapshot(t(1)).await.unwrap();
    assert!(snapshot.connections.is_empty() && snapshot.api_keys.is_empty());
    let target = Fixture::new().await;
    target.catalog.import_snapshot(&snapshot).await.unwrap();
    assert_eq!(
        target.catalog.export_snapshot(t(1)).await.unwrap(),
        snapshot
    );
}

#[tokio::test]
async fn importing_into_a_catalog_with_connections_is_refused_and_changes_nothing() {
    let source = Fixture::new().await;
    populate(&source.catalog).await;
    let snapshot = source.catalog.export_snapshot(t(100)).await.unwrap();

    let target = Fixture::new().await;
    target.connection("other").await;
    let before = target.catalog.export_snapshot(t(100)).await.unwrap();
    let result = target.catalog.import_snapshot(&snapshot).await;
    assert_conflict(result, "the catalog is not empty");
    assert_eq!(
        target.catalog.export_snapshot(t(100)).await.unwrap(),
        before
    );

    // The source itself is not empty either.
    assert_conflict(source.catalog.import_snapshot(&snapshot).await, "not empty");
}

#[tokio::test]
async fn an_api_key_clash_is_refused_without_naming_the_secret() {
    let source = Fixture::new().await;
    populate(&source.catalog).await;
    let snapshot = source.catalog.export_snapshot(t(100)).await.unwrap();

    // Empty of connections and assets, but a key with a secret of the
    // snapshot's (as a bootstrap key would be).
    let target = Fixture::new().await;
    target
        .catalog
        .create_api_key("bootstrap", Role::Admin, &hash(2), t(1))
        .await
        .unwrap();
    target
        .catalog
        .put_setting("other", json!(1), t(1))
        .await
        .unwrap();
    let before = target.catalog.export_snapshot(t(100)).await.unwrap();
    let result = target.catalog.import_snapshot(&snapshot).await;
    let message = result.as_ref().unwrap_err().to_string();
    assert!(!message.contains(&hash(2)), "{message}");
    assert_conflict(result, "API key 'root' of the snapshot clashes");
    assert_eq!(
        target.catalog.export_snapshot(t(100)).await.unwrap(),
        before
    );
}

#[tokio::test]
async fn a_setting_clash_is_refused() {
    let source = Fixture::new().await;
    populate(&source.catalog).await;
    let snapshot = source.catalog.export_snapshot(t(100)).await.unwrap();
    let target = Fixture::new().await;
    target
        .catalog
        .put_setting("cache", json!(null), t(1))
        .await
        .unwrap();
    assert_conflict(
        target.catalog.import_snapshot(&snapshot).await,
        "setting 'cache' already exists",
    );
    assert!(target.catalog.list_api_keys().await.unwrap().is_empty());
}

/// Asserts a `Snapshot` refusal whose message contains every needle.
#[track_caller]
fn assert_refused<T: std::fmt::Debug>(result: Result<T, CatalogError>, needles: &[&str]) {
    match result {
        Err(CatalogError::Snapshot { message }) => {
            for needle in needles {
                assert!(
                    message.contains(needle),
                    "'{message}' should contain '{needle}'"
                );
            }
        }
        other => panic!("expected a snapshot refusal {needles:?}, got {other:?}"),
    }
}

/// Asserts that the catalog holds nothing a snapshot would carry.
async fn assert_empty(catalog: &SqlCatalog) {
    let now = t(0);
    let snapshot = catalog.export_snapshot(now).await.unwrap();
    assert!(snapshot.connections.is_empty(), "{snapshot:?}");
    assert!(snapshot.assets.is_empty(), "{snapshot:?}");
    assert!(snapshot.versions.is_empty(), "{snapshot:?}");
    assert!(snapshot.settings.is_empty(), "{snapshot:?}");
    assert!(snapshot.api_keys.is_empty(), "{snapshot:?}");
}

#[tokio::test]
async fn an_unknown_format_is_refused() {
    let source = Fixture::new().await;
    populate(&source.catalog).await;
    let mut snapshot = source.catalog.export_snapshot(t(100)).await.unwrap();
    snapshot.format = 2;
    let target = Fixture::new().await;
    assert_refused(
        target.catalog.import_snapshot(&snapshot).await,
        &["format 2", "format 1"],
    );
    assert_empty(&target.catalog).await;

    // Read from JSON, another format is refused as such, even when the rest
    // would not parse as format 1.
    assert_refused(
        CatalogSnapshot::from_json(br#"{"format": 7, "objects": []}"#),
        &["format 7", "format 1"],
    );
    assert_refused(
        CatalogSnapshot::from_json(br#"{"connections": []}"#),
        &["no 'format'"],
    );
    assert_refused(
        CatalogSnapshot::from_json(b"not json"),
        &["not a catalog snapshot"],
    );
}

#[tokio::test]
async fn a_schema_newer_than_this_build_is_refused_naming_both() {
    let source = Fixture::new().await;
    populate(&source.catalog).await;
    let mut snapshot = source.catalog.export_snapshot(t(100)).await.unwrap();
    let known = MIGRATIONS.last().unwrap().version;
    snapshot.schema_version = known + 1;
    let target = Fixture::new().await;
    let result = target.catalog.import_snapshot(&snapshot).await;
    assert_refused(
        result,
        &[
            &format!("schema version is {}", known + 1),
            &format!("up to {known}"),
        ],
    );
    assert_empty(&target.catalog).await;
    let json = through_json_unchecked(&snapshot);
    assert_refused(
        CatalogSnapshot::from_json(&json),
        &[&format!("{}", known + 1)],
    );

    // An older schema is fine: migrations only ever expand.
    snapshot.schema_version = 1;
    target.catalog.import_snapshot(&snapshot).await.unwrap();
}

fn through_json_unchecked(snapshot: &CatalogSnapshot) -> Vec<u8> {
    serde_json::to_vec(snapshot).unwrap()
}

#[tokio::test]
async fn dangling_references_are_refused_with_nothing_written() {
    let source = Fixture::new().await;
    populate(&source.catalog).await;
    let good = source.catalog.export_snapshot(t(100)).await.unwrap();
    let target = Fixture::new().await;

    // A version of an asset the snapshot does not hold.
    let mut bad = good.clone();
    let stray = Id::new(IdKind::Asset, 42);
    let mut version = bad.versions[0].clone();
    version.asset_id = stray.clone();
    bad.versions.push(version);
    assert_refused(
        target.catalog.import_snapshot(&bad).await,
        &[stray.as_str(), "does not hold"],
    );
    assert_empty(&target.catalog).await;

    // An asset on a connection the snapshot does not hold.
    let mut bad = good.clone();
    let missing = bad.connections.remove(0).id;
    assert_refused(
        target.catalog.import_snapshot(&bad).await,
        &[missing.as_str(), "does not hold"],
    );
    assert_empty(&target.catalog).await;

    // An active version the snapshot does not hold.
    let mut bad = good.clone();
    let orders = bad.assets.iter_mut().find(|a| a.name == "orders").unwrap();
    orders.active_version = Some(9);
    assert_refused(
        target.catalog.import_snapshot(&bad).await,
        &["active version v9"],
    );
    assert_empty(&target.catalog).await;

    // The same version twice; the same key name twice.
    let mut bad = good.clone();
    bad.versions.push(bad.versions[0].clone());
    assert_refused(
        target.catalog.import_snapshot(&bad).await,
        &["appears twice"],
    );
    let mut bad = good.clone();
    let mut key = bad.api_keys[0].clone();
    key.id = Id::new(IdKind::ApiKey, 42);
    key.secret_hash = hash(9);
    bad.api_keys.push(key);
    assert_refused(
        target.catalog.import_snapshot(&bad).await,
        &["API key name", "appears twice"],
    );
    assert_empty(&target.catalog).await;

    // Still usable: the good snapshot imports.
    target.catalog.import_snapshot(&good).await.unwrap();
}

/// A build that does not know every migration of the catalog would leave
/// out what they added: it refuses to export. (SQLite only: the extra
/// migration is recorded by hand.)
#[tokio::test]
async fn a_catalog_newer_than_this_build_is_not_exported() {
    if on_postgres() {
        return;
    }
    let f = Fixture::new().await;
    let raw = f.raw().await;
    let newer = MIGRATIONS.last().unwrap().version + 1;
    sqlx::query("INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)")
        .bind(newer)
        .bind("from_the_future")
        .bind("2026-03-01T12:00:00.000Z")
        .execute(&raw)
        .await
        .unwrap();
    raw.close().await;
    assert_refused(
        f.catalog.export_snapshot(t(1)).await,
        &[&format!("migration {newer}"), "newer Vega"],
    );
}
