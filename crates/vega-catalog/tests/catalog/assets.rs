//! Assets: create, read, list, update, delete.

use serde_json::json;
use vega_catalog::{AssetUpdate, Catalog};
use vega_core::{AssetChecks, Id, IdKind, JobKind, SyncMode};

use crate::common::{assert_conflict, assert_not_found, manifest, new_asset, t, Fixture};

#[tokio::test]
async fn created_asset_reads_back_by_id_and_by_name() {
    let f = Fixture::new().await;
    let a = f.with_asset().await;
    assert!(a.id.as_str().starts_with("ast_"));
    assert_eq!(a.active_version, None);
    assert_eq!(a.sync_mode, SyncMode::Full);
    assert_eq!(
        a.checks,
        AssetChecks {
            min_rows: Some(1),
            ..Default::default()
        }
    );
    assert_eq!(f.catalog.get_asset(&a.id).await.unwrap(), a);
    assert_eq!(
        f.catalog
            .get_asset_by_name("sales", "orders")
            .await
            .unwrap(),
        a
    );
}

#[tokio::test]
async fn duplicate_qualified_name_is_a_conflict_naming_it() {
    let f = Fixture::new().await;
    let a = f.with_asset().await;
    let con = f.catalog.get_connection(&a.connection_id).await.unwrap();
    let result = f
        .catalog
        .create_asset(new_asset(&con, "sales", "orders"), t(2))
        .await;
    let existing = assert_conflict(result, "asset 'sales.orders' already exists");
    assert_eq!(existing.as_deref(), Some(a.id.as_str()));
}

#[tokio::test]
async fn same_name_in_another_namespace_is_allowed() {
    let f = Fixture::new().await;
    let con = f.connection("files").await;
    let a = f.asset(&con, "sales", "orders").await;
    let b = f.asset(&con, "archive", "orders").await;
    assert_ne!(a.id, b.id);
}

#[tokio::test]
async fn asset_on_unknown_connection_is_not_found() {
    let f = Fixture::new().await;
    let con = f.connection("files").await;
    let mut new = new_asset(&con, "sales", "orders");
    let missing = Id::new(IdKind::Connection, 7);
    new.connection_id = missing.clone();
    assert_not_found(
        f.catalog.create_asset(new, t(1)).await,
        "connection",
        missing.as_str(),
    );
    assert!(f.catalog.list_assets().await.unwrap().is_empty());
}

#[tokio::test]
async fn unknown_asset_is_not_found() {
    let f = Fixture::new().await;
    let id = Id::new(IdKind::Asset, 1);
    assert_not_found(f.catalog.get_asset(&id).await, "asset", id.as_str());
    assert_not_found(
        f.catalog
            .update_asset(&id, AssetUpdate::default(), t(1))
            .await,
        "asset",
        id.as_str(),
    );
    assert_not_found(f.catalog.delete_asset(&id).await, "asset", id.as_str());
    assert_not_found(
        f.catalog.get_asset_by_name("sales", "nope").await,
        "asset",
        "sales.nope",
    );
}

#[tokio::test]
async fn assets_are_listed_by_namespace_then_name() {
    let f = Fixture::new().await;
    let con = f.connection("files").await;
    for (ns, name) in [("b", "a"), ("a", "z"), ("a", "b")] {
        f.asset(&con, ns, name).await;
    }
    let names: Vec<String> = f
        .catalog
        .list_assets()
        .await
        .unwrap()
        .iter()
        .map(|a| a.qualified_name())
        .collect();
    assert_eq!(names, ["a.b", "a.z", "b.a"]);
}

#[tokio::test]
async fn update_changes_source_and_checks() {
    let f = Fixture::new().await;
    let a = f.with_asset().await;
    let update = AssetUpdate {
        source: Some(json!({"path": "orders2.csv", "format": "csv"})),
        checks: Some(AssetChecks {
            min_rows: None,
            ..Default::default()
        }),
        ..AssetUpdate::default()
    };
    let updated = f.catalog.update_asset(&a.id, update, t(8)).await.unwrap();
    assert_eq!(
        updated.source,
        json!({"path": "orders2.csv", "format": "csv"})
    );
    assert_eq!(updated.checks, AssetChecks::default());
    assert_eq!(updated.updated_at, t(8));
    assert_eq!(f.catalog.get_asset(&a.id).await.unwrap(), updated);
}

#[tokio::test]
async fn update_without_fields_keeps_them() {
    let f = Fixture::new().await;
    let a = f.with_asset().await;
    let updated = f
        .catalog
        .update_asset(&a.id, AssetUpdate::default(), t(8))
        .await
        .unwrap();
    assert_eq!(updated.source, a.source);
    assert_eq!(updated.checks, a.checks);
}

#[tokio::test]
async fn new_asset_has_no_schedule_and_no_watermark() {
    let f = Fixture::new().await;
    let a = f.with_asset().await;
    assert_eq!(a.schedule, None);
    assert_eq!(a.watermark, None);
    assert_eq!(f.catalog.get_asset(&a.id).await.unwrap(), a);
}

#[tokio::test]
async fn schedule_given_at_creation_reads_back_everywhere() {
    let f = Fixture::new().await;
    let con = f.connection("files").await;
    let mut new = new_asset(&con, "sales", "orders");
    new.schedule = Some("0 */5 * * * *".to_string());
    let a = f.catalog.create_asset(new, t(1)).await.unwrap();
    assert_eq!(a.schedule.as_deref(), Some("0 */5 * * * *"));
    assert_eq!(f.catalog.get_asset(&a.id).await.unwrap(), a);
    assert_eq!(
        f.catalog
            .get_asset_by_name("sales", "orders")
            .await
            .unwrap(),
        a
    );
    assert_eq!(f.catalog.list_assets().await.unwrap(), [a]);
}

#[tokio::test]
async fn update_sets_and_clears_the_schedule() {
    let f = Fixture::new().await;
    let a = f.with_asset().await;
    let set = AssetUpdate {
        schedule: Some(Some("15m".to_string())),
        ..AssetUpdate::default()
    };
    let updated = f.catalog.update_asset(&a.id, set, t(8)).await.unwrap();
    assert_eq!(updated.schedule.as_deref(), Some("15m"));
    assert_eq!(updated.updated_at, t(8));
    assert_eq!(f.catalog.get_asset(&a.id).await.unwrap(), updated);

    // `None` leaves it as it is.
    let kept = f
        .catalog
        .update_asset(&a.id, AssetUpdate::default(), t(9))
        .await
        .unwrap();
    assert_eq!(kept.schedule.as_deref(), Some("15m"));

    let clear = AssetUpdate {
        schedule: Some(None),
        ..AssetUpdate::default()
    };
    let cleared = f.catalog.update_asset(&a.id, clear, t(10)).await.unwrap();
    assert_eq!(cleared.schedule, None);
    assert_eq!(f.catalog.get_asset(&a.id).await.unwrap(), cleared);
}

#[tokio::test]
async fn update_sets_and_clears_the_watermark() {
    let f = Fixture::new().await;
    let a = f.with_asset().await;
    let watermark = json!({"column": "updated_at", "value": "2026-03-01T00:00:00Z"});
    let set = AssetUpdate {
        watermark: Some(Some(watermark.clone())),
        ..AssetUpdate::default()
    };
    let updated = f.catalog.update_asset(&a.id, set, t(8)).await.unwrap();
    assert_eq!(updated.watermark, Some(watermark.clone()));
    assert_eq!(f.catalog.get_asset(&a.id).await.unwrap(), updated);

    // `None` leaves it as it is.
    let kept = f
        .catalog
        .update_asset(&a.id, AssetUpdate::default(), t(9))
        .await
        .unwrap();
    assert_eq!(kept.watermark, Some(watermark));

    let clear = AssetUpdate {
        watermark: Some(None),
        ..AssetUpdate::default()
    };
    let cleared = f.catalog.update_asset(&a.id, clear, t(10)).await.unwrap();
    assert_eq!(cleared.watermark, None);
    assert_eq!(f.catalog.get_asset(&a.id).await.unwrap(), cleared);
}

#[tokio::test]
async fn deleting_an_asset_removes_its_versions_and_segments() {
    let f = Fixture::new().await;
    let a = f.with_asset().await;
    f.catalog
        .publish_version(&a.id, manifest("a", 2), None, t(2))
        .await
        .unwrap();
    f.catalog.delete_asset(&a.id).await.unwrap();
    assert_not_found(f.catalog.get_asset(&a.id).await, "asset", a.id.as_str());
    assert!(f.catalog.list_segment_paths().await.unwrap().is_empty());
    assert!(f.catalog.list_active_versions().await.unwrap().is_empty());
    assert_not_found(
        f.catalog.get_version(&a.id, 1).await,
        "asset",
        a.id.as_str(),
    );
}

#[tokio::test]
async fn deleting_an_asset_keeps_its_jobs_unlinked() {
    let f = Fixture::new().await;
    let a = f.with_asset().await;
    let job = f
        .catalog
        .start_job(JobKind::Sync, Some(&a.id), json!({}), t(2))
        .await
        .unwrap();
    f.catalog.delete_asset(&a.id).await.unwrap();
    let kept = f.catalog.get_job(&job.id).await.unwrap();
    assert_eq!(kept.asset_id, None);
    assert_eq!(kept.state, job.state);
}

#[tokio::test]
async fn a_deleted_assets_name_can_be_used_again() {
    let f = Fixture::new().await;
    let a = f.with_asset().await;
    let con = f.catalog.get_connection(&a.connection_id).await.unwrap();
    f.catalog.delete_asset(&a.id).await.unwrap();
    let again = f.asset(&con, "sales", "orders").await;
    assert_ne!(again.id, a.id);
    // And the connection is free once its assets are gone.
    f.catalog.delete_asset(&again.id).await.unwrap();
    f.catalog.delete_connection(&con.id).await.unwrap();
}

#[tokio::test]
async fn retention_round_trips_on_create_update_and_clear() {
    let f = Fixture::new().await;
    let con = f.connection("files").await;
    let mut new = new_asset(&con, "ops", "events");
    let retention = vega_core::Retention {
        column: "day".into(),
        period: "30d".into(),
    };
    new.retention = Some(retention.clone());
    let a = f.catalog.create_asset(new, t(1)).await.unwrap();
    assert_eq!(a.retention.as_ref(), Some(&retention));
    assert_eq!(f.catalog.get_asset(&a.id).await.unwrap(), a);

    let longer = vega_core::Retention {
        column: "day".into(),
        period: "90d".into(),
    };
    let updated = f
        .catalog
        .update_asset(
            &a.id,
            AssetUpdate {
                retention: Some(Some(longer.clone())),
                ..AssetUpdate::default()
            },
            t(2),
        )
        .await
        .unwrap();
    assert_eq!(updated.retention.as_ref(), Some(&longer));
    let cleared = f
        .catalog
        .update_asset(
            &a.id,
            AssetUpdate {
                retention: Some(None),
                ..AssetUpdate::default()
            },
            t(3),
        )
        .await
        .unwrap();
    assert_eq!(cleared.retention, None);
    assert_eq!(f.catalog.get_asset(&a.id).await.unwrap().retention, None);
}
