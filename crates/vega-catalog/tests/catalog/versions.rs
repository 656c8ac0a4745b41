//! Versions and manifests: publish, read, list, rollback, active versions,
//! segment paths, concurrent publishing, and appending segments to the
//! active version (incremental syncs).

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::json;
use vega_catalog::Catalog;
use vega_core::{Id, IdKind, JobKind, Manifest, Segment};

use crate::common::on_postgres;
use crate::common::{assert_conflict, assert_not_found, manifest, t, Fixture};

#[tokio::test]
async fn first_version_is_one_and_becomes_active() {
    let f = Fixture::new().await;
    let a = f.with_asset().await;
    let v = f
        .catalog
        .publish_version(&a.id, manifest("a", 1), None, t(10))
        .await
        .unwrap();
    assert_eq!(v.number, 1);
    assert_eq!(v.created_at, t(10));
    let asset = f.catalog.get_asset(&a.id).await.unwrap();
    assert_eq!(asset.active_version, Some(1));
    assert_eq!(asset.updated_at, t(10));
}

#[tokio::test]
async fn each_publish_takes_the_next_number() {
    let f = Fixture::new().await;
    let a = f.with_asset().await;
    for expected in 1..=3 {
        let v = f
            .catalog
            .publish_version(&a.id, manifest("a", 1), None, t(expected.into()))
            .await
            .unwrap();
        assert_eq!(v.number, expected);
    }
    assert_eq!(
        f.catalog.get_asset(&a.id).await.unwrap().active_version,
        Some(3)
    );
}

#[tokio::test]
async fn numbers_are_per_asset() {
    let f = Fixture::new().await;
    let con = f.connection("files").await;
    let a = f.asset(&con, "sales", "orders").await;
    let b = f.asset(&con, "sales", "items").await;
    f.catalog
        .publish_version(&a.id, manifest("a", 1), None, t(2))
        .await
        .unwrap();
    let vb = f
        .catalog
        .publish_version(&b.id, manifest("b", 1), None, t(3))
        .await
        .unwrap();
    assert_eq!(vb.number, 1);
}

#[tokio::test]
async fn manifest_round_trips_with_schema_and_segments_in_order() {
    let f = Fixture::new().await;
    let a = f.with_asset().await;
    let mut m = manifest("a", 5);
    // Paths deliberately not in sorted order: the manifest order must win.
    m.segments.reverse();
    let job_id = f
        .catalog
        .start_job(JobKind::Sync, Some(&a.id), json!({}), t(3))
        .await
        .unwrap()
        .id;
    let published = f
        .catalog
        .publish_version(&a.id, m.clone(), Some(&job_id), t(4))
        .await
        .unwrap();
    let read = f.catalog.get_version(&a.id, 1).await.unwrap();
    assert_eq!(read, published);
    assert_eq!(read.manifest, m);
    assert_eq!(read.job_id, Some(job_id));
    assert_eq!(read.manifest.schema["metadata"]["source"], json!("a"));
}

#[tokio::test]
async fn version_without_segments_round_trips() {
    let f = Fixture::new().await;
    let a = f.with_asset().await;
    let m = Manifest {
        schema: json!({"fields": []}),
        segments: vec![],
    };
    f.catalog
        .publish_version(&a.id, m.clone(), None, t(4))
        .await
        .unwrap();
    assert_eq!(f.catalog.get_version(&a.id, 1).await.unwrap().manifest, m);
}

#[tokio::test]
async fn versions_are_listed_newest_first_with_their_segments() {
    let f = Fixture::new().await;
    let a = f.with_asset().await;
    for (i, tag) in ["one", "two", "three"].iter().enumerate() {
        f.catalog
            .publish_version(&a.id, manifest(tag, i + 1), None, t(i as i64))
            .await
            .unwrap();
    }
    let versions = f.catalog.list_versions(&a.id).await.unwrap();
    let numbers: Vec<u32> = versions.iter().map(|v| v.number).collect();
    assert_eq!(numbers, [3, 2, 1]);
    assert_eq!(versions[0].manifest, manifest("three", 3));
    assert_eq!(versions[2].manifest, manifest("one", 1));
}

#[tokio::test]
async fn listing_versions_of_an_unknown_asset_is_not_found() {
    let f = Fixture::new().await;
    let id = Id::new(IdKind::Asset, 3);
    assert_not_found(f.catalog.list_versions(&id).await, "asset", id.as_str());
}

#[tokio::test]
async fn publishing_to_an_unknown_asset_is_not_found() {
    let f = Fixture::new().await;
    let id = Id::new(IdKind::Asset, 3);
    assert_not_found(
        f.catalog
            .publish_version(&id, manifest("x", 1), None, t(1))
            .await,
        "asset",
        id.as_str(),
    );
}

#[tokio::test]
async fn unknown_version_number_is_not_found() {
    let f = Fixture::new().await;
    let a = f.with_asset().await;
    f.catalog
        .publish_version(&a.id, manifest("a", 1), None, t(1))
        .await
        .unwrap();
    assert_not_found(f.catalog.get_version(&a.id, 2).await, "version", "v2");
}

#[tokio::test]
async fn version_of_an_unknown_asset_is_not_found() {
    let f = Fixture::new().await;
    let id = Id::new(IdKind::Asset, 3);
    assert_not_found(f.catalog.get_version(&id, 1).await, "asset", id.as_str());
}

#[tokio::test]
async fn rollback_moves_the_active_pointer() {
    let f = Fixture::new().await;
    let a = f.with_asset().await;
    for i in 1..=2 {
        f.catalog
            .publish_version(&a.id, manifest("a", 1), None, t(i))
            .await
            .unwrap();
    }
    let asset = f.catalog.set_active_version(&a.id, 1, t(30)).await.unwrap();
    assert_eq!(asset.active_version, Some(1));
    assert_eq!(asset.updated_at, t(30));
    assert_eq!(f.catalog.get_asset(&a.id).await.unwrap(), asset);
    // The next publish still takes the next free number.
    let v = f
        .catalog
        .publish_version(&a.id, manifest("a", 1), None, t(31))
        .await
        .unwrap();
    assert_eq!(v.number, 3);
}

#[tokio::test]
async fn rollback_to_a_missing_version_is_not_found_and_changes_nothing() {
    let f = Fixture::new().await;
    let a = f.with_asset().await;
    f.catalog
        .publish_version(&a.id, manifest("a", 1), None, t(1))
        .await
        .unwrap();
    assert_not_found(
        f.catalog.set_active_version(&a.id, 7, t(2)).await,
        "version",
        &format!("{} v7", a.id),
    );
    assert_eq!(
        f.catalog.get_asset(&a.id).await.unwrap().active_version,
        Some(1)
    );
}

#[tokio::test]
async fn rollback_on_an_unknown_asset_is_not_found() {
    let f = Fixture::new().await;
    let id = Id::new(IdKind::Asset, 3);
    assert_not_found(
        f.catalog.set_active_version(&id, 1, t(2)).await,
        "asset",
        id.as_str(),
    );
}

#[tokio::test]
async fn active_versions_list_only_published_assets_with_their_active_manifest() {
    let f = Fixture::new().await;
    let con = f.connection("files").await;
    let a = f.asset(&con, "sales", "orders").await;
    let b = f.asset(&con, "sales", "items").await;
    let _unpublished = f.asset(&con, "sales", "empty").await;
    f.catalog
        .publish_version(&a.id, manifest("a1", 2), None, t(1))
        .await
        .unwrap();
    f.catalog
        .publish_version(&a.id, manifest("a2", 3), None, t(2))
        .await
        .unwrap();
    f.catalog
        .publish_version(&b.id, manifest("b1", 1), None, t(3))
        .await
        .unwrap();
    f.catalog.set_active_version(&a.id, 1, t(4)).await.unwrap();

    let active = f.catalog.list_active_versions().await.unwrap();
    let summary: Vec<(String, u32)> = active
        .iter()
        .map(|(asset, v)| (asset.qualified_name(), v.number))
        .collect();
    assert_eq!(
        summary,
        [
            ("sales.items".to_string(), 1),
            ("sales.orders".to_string(), 1)
        ]
    );
    let (asset, version) = &active[1];
    assert_eq!(asset.active_version, Some(1));
    assert_eq!(version.asset_id, a.id);
    assert_eq!(version.manifest, manifest("a1", 2));
    assert_eq!(active[0].1.manifest, manifest("b1", 1));
}

#[tokio::test]
async fn segment_paths_cover_every_version_once() {
    let f = Fixture::new().await;
    let con = f.connection("files").await;
    let a = f.asset(&con, "sales", "orders").await;
    let b = f.asset(&con, "sales", "items").await;
    f.catalog
        .publish_version(&a.id, manifest("a", 2), None, t(1))
        .await
        .unwrap();
    // The second version reuses the first's segments (incremental append).
    let mut appended = manifest("a", 2);
    appended.segments.extend(manifest("a2", 1).segments);
    f.catalog
        .publish_version(&a.id, appended, None, t(2))
        .await
        .unwrap();
    f.catalog
        .publish_version(&b.id, manifest("b", 1), None, t(3))
        .await
        .unwrap();
    let paths = f.catalog.list_segment_paths().await.unwrap();
    assert_eq!(
        paths,
        [
            "assets/a/part-0000.parquet",
            "assets/a/part-0001.parquet",
            "assets/a2/part-0000.parquet",
            "assets/b/part-0000.parquet",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_publishes_take_each_number_exactly_once() {
    let f = Fixture::new().await;
    let a = f.with_asset().await;
    let catalog = Arc::new(f.catalog);
    let mut tasks = Vec::new();
    for i in 0..20 {
        let catalog = Arc::clone(&catalog);
        let id = a.id.clone();
        tasks.push(tokio::spawn(async move {
            catalog
                .publish_version(&id, manifest(&format!("c{i}"), 2), None, t(i))
                .await
                .unwrap()
                .number
        }));
    }
    let mut numbers = Vec::new();
    for task in tasks {
        numbers.push(task.await.unwrap());
    }
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=20).collect::<Vec<u32>>());

    let listed: BTreeSet<u32> = catalog
        .list_versions(&a.id)
        .await
        .unwrap()
        .iter()
        .map(|v| v.number)
        .collect();
    assert_eq!(listed, (1..=20).collect());
    let active = catalog.get_asset(&a.id).await.unwrap().active_version;
    assert!(matches!(active, Some(n) if (1..=20).contains(&n)));
    assert_eq!(catalog.list_segment_paths().await.unwrap().len(), 40);
}

#[tokio::test]
async fn published_version_keeps_the_job_that_made_it() {
    let f = Fixture::new().await;
    let a = f.with_asset().await;
    let job = f
        .catalog
        .start_job(JobKind::Sync, Some(&a.id), json!({}), t(1))
        .await
        .unwrap();
    let v = f
        .catalog
        .publish_version(&a.id, manifest("a", 1), Some(&job.id), t(2))
        .await
        .unwrap();
    assert_eq!(v.job_id, Some(job.id.clone()));
    assert_eq!(
        f.catalog.list_versions(&a.id).await.unwrap()[0].job_id,
        Some(job.id)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_succeed_while_versions_are_published() {
    let f = Fixture::new().await;
    let a = f.with_asset().await;
    let catalog = Arc::new(f.catalog);
    let mut tasks = Vec::new();
    for i in 0..10 {
        let writer = Arc::clone(&catalog);
        let id = a.id.clone();
        tasks.push(tokio::spawn(async move {
            writer
                .publish_version(&id, manifest(&format!("w{i}"), 3), None, t(i))
                .await
                .map(|_| ())
        }));
        let reader = Arc::clone(&catalog);
        tasks.push(tokio::spawn(async move {
            for (asset, version) in reader.list_active_versions().await? {
                assert_eq!(version.manifest.segments.len(), 3);
                assert_eq!(asset.active_version, Some(version.number));
            }
            Ok(())
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(catalog.list_versions(&a.id).await.unwrap().len(), 10);
}

// --- appending (incremental syncs) -------------------------------------------

/// `n` segments whose paths carry `tag`, for appending.
fn segments(tag: &str, n: usize) -> Vec<Segment> {
    manifest(tag, n).segments
}

#[tokio::test]
async fn append_adds_segments_after_the_active_versions_and_moves_the_watermark() {
    let f = Fixture::new().await;
    let a = f.with_asset().await;
    let published = f
        .catalog
        .publish_version(&a.id, manifest("a", 2), None, t(1))
        .await
        .unwrap();
    let schema = published.manifest.schema.clone();
    let first = f
        .catalog
        .append_segments(
            &a.id,
            schema.clone(),
            segments("b", 2),
            json!({"id": 10}),
            None,
            t(2),
        )
        .await
        .unwrap();
    assert_eq!(first.manifest.segments.len(), 4);
    assert_eq!(
        f.catalog.get_asset(&a.id).await.unwrap().watermark,
        Some(json!({"id": 10}))
    );
    let v = f
        .catalog
        .append_segments(
            &a.id,
            schema.clone(),
            segments("c", 1),
            json!({"id": 20}),
            None,
            t(3),
        )
        .await
        .unwrap();

    let mut expected = manifest("a", 2).segments;
    expected.extend(segments("b", 2));
    expected.extend(segments("c", 1));
    // Same version, earlier segments first, in the order they were appended.
    assert_eq!(v.number, 1);
    assert_eq!(v.created_at, published.created_at);
    assert_eq!(v.manifest.schema, schema);
    assert_eq!(v.manifest.segments, expected);
    assert_eq!(f.catalog.get_version(&a.id, 1).await.unwrap(), v);
    assert_eq!(
        f.catalog.list_versions(&a.id).await.unwrap(),
        std::slice::from_ref(&v)
    );

    let asset = f.catalog.get_asset(&a.id).await.unwrap();
    assert_eq!(asset.active_version, Some(1));
    assert_eq!(asset.watermark, Some(json!({"id": 20})));
    assert_eq!(asset.updated_at, t(3));
    let (_, active) = &f.catalog.list_active_versions().await.unwrap()[0];
    assert_eq!(active, &v);
}

#[tokio::test]
async fn append_without_a_version_creates_version_one_and_activates_it() {
    let f = Fixture::new().await;
    let a = f.with_asset().await;
    let job_id = f
        .catalog
        .start_job(JobKind::Sync, Some(&a.id), json!({}), t(3))
        .await
        .unwrap()
        .id;
    let schema = manifest("a", 0).schema;
    let v = f
        .catalog
        .append_segments(
            &a.id,
            schema.clone(),
            segments("a", 2),
            json!({"id": 7}),
            Some(&job_id),
            t(4),
        )
        .await
        .unwrap();
    assert_eq!(v.number, 1);
    assert_eq!(v.created_at, t(4));
    assert_eq!(v.job_id, Some(job_id));
    assert_eq!(v.manifest, manifest("a", 2));
    assert_eq!(f.catalog.get_version(&a.id, 1).await.unwrap(), v);
    let asset = f.catalog.get_asset(&a.id).await.unwrap();
    assert_eq!(asset.active_version, Some(1));
    assert_eq!(asset.watermark, Some(json!({"id": 7})));
    assert_eq!(asset.updated_at, t(4));
}

#[tokio::test]
async fn append_with_versions_but_none_active_creates_the_next_number() {
    if on_postgres() {
        return; // looks at the SQLite file itself
    }
    let f = Fixture::new().await;
    let a = f.with_asset().await;
    for i in 1..=2 {
        f.catalog
            .publish_version(&a.id, manifest("a", 1), None, t(i))
            .await
            .unwrap();
    }
    // No method clears the active pointer; an older or hand-edited catalog
    // may still have versions and none active.
    let raw = f.raw().await;
    sqlx::query("UPDATE assets SET active_version = NULL WHERE id = $1")
        .bind(a.id.as_str())
        .execute(&raw)
        .await
        .unwrap();
    raw.close().await;
    let v = f
        .catalog
        .append_segments(
            &a.id,
            json!({"fields": []}),
            segments("n", 1),
            json!(1),
            None,
            t(5),
        )
        .await
        .unwrap();
    assert_eq!(v.number, 3);
    assert_eq!(v.manifest.segments, segments("n", 1));
    assert_eq!(
        f.catalog.get_asset(&a.id).await.unwrap().active_version,
        Some(3)
    );
}

#[tokio::test]
async fn append_goes_to_the_active_version_not_the_newest() {
    let f = Fixture::new().await;
    let a = f.with_asset().await;
    f.catalog
        .publish_version(&a.id, manifest("a", 1), None, t(1))
        .await
        .unwrap();
    f.catalog
        .publish_version(&a.id, manifest("b", 1), None, t(2))
        .await
        .unwrap();
    f.catalog.set_active_version(&a.id, 1, t(3)).await.unwrap();
    let v = f
        .catalog
        .append_segments(
            &a.id,
            manifest("a", 0).schema,
            segments("x", 1),
            json!(1),
            None,
            t(4),
        )
        .await
        .unwrap();
    assert_eq!(v.number, 1);
    assert_eq!(v.manifest.segments.len(), 2);
    assert_eq!(
        f.catalog.get_version(&a.id, 2).await.unwrap().manifest,
        manifest("b", 1)
    );
}

#[tokio::test]
async fn append_without_segments_only_moves_the_watermark() {
    let f = Fixture::new().await;
    let a = f.with_asset().await;
    let published = f
        .catalog
        .publish_version(&a.id, manifest("a", 2), None, t(1))
        .await
        .unwrap();
    let v = f
        .catalog
        .append_segments(
            &a.id,
            published.manifest.schema.clone(),
            vec![],
            json!({"id": 3}),
            None,
            t(2),
        )
        .await
        .unwrap();
    assert_eq!(v, published);
    let asset = f.catalog.get_asset(&a.id).await.unwrap();
    assert_eq!(asset.watermark, Some(json!({"id": 3})));
    assert_eq!(asset.updated_at, t(2));
}

#[tokio::test]
async fn append_with_a_changed_schema_is_a_conflict_and_changes_nothing() {
    let f = Fixture::new().await;
    let a = f.with_asset().await;
    let published = f
        .catalog
        .publish_version(&a.id, manifest("a", 2), None, t(1))
        .await
        .unwrap();
    f.catalog
        .append_segments(
            &a.id,
            published.manifest.schema.clone(),
            vec![],
            json!({"id": 1}),
            None,
            t(2),
        )
        .await
        .unwrap();
    let before = f.catalog.get_asset(&a.id).await.unwrap();

    let result = f
        .catalog
        .append_segments(
            &a.id,
            manifest("other", 0).schema,
            segments("b", 1),
            json!({"id": 2}),
            None,
            t(3),
        )
        .await;
    let existing = assert_conflict(
        result,
        &format!(
            "asset {}: the source's schema changed; run a full sync",
            a.id
        ),
    );
    assert_eq!(existing, None);
    assert_eq!(f.catalog.get_asset(&a.id).await.unwrap(), before);
    assert_eq!(f.catalog.get_version(&a.id, 1).await.unwrap(), published);
    assert_eq!(f.catalog.list_segment_paths().await.unwrap().len(), 2);
}

#[tokio::test]
async fn append_compares_schemas_as_json_not_as_text() {
    let f = Fixture::new().await;
    let a = f.with_asset().await;
    let schema = json!({"fields": [{"name": "id", "nullable": false}], "metadata": {}});
    f.catalog
        .publish_version(
            &a.id,
            Manifest {
                schema,
                segments: vec![],
            },
            None,
            t(1),
        )
        .await
        .unwrap();
    // The same schema, keys in another order.
    let same: serde_json::Value =
        serde_json::from_str(r#"{"metadata": {}, "fields": [{"nullable": false, "name": "id"}]}"#)
            .unwrap();
    let v = f
        .catalog
        .append_segments(&a.id, same, segments("a", 1), json!(1), None, t(2))
        .await
        .unwrap();
    assert_eq!(v.manifest.segments.len(), 1);
}

#[tokio::test]
async fn appending_to_an_unknown_asset_is_not_found() {
    if on_postgres() {
        return; // looks at the SQLite file itself
    }
    let f = Fixture::new().await;
    let id = Id::new(IdKind::Asset, 3);
    assert_not_found(
        f.catalog
            .append_segments(&id, json!({}), segments("x", 1), json!(1), None, t(1))
            .await,
        "asset",
        id.as_str(),
    );
    assert!(f.catalog.list_segment_paths().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_to_one_asset_all_land_with_unique_ordinals() {
    let f = Fixture::new().await;
    let a = f.with_asset().await;
    let schema = manifest("a", 0).schema;
    // The stored ordinals are checked on SQLite's file below.
    let path = (!on_postgres()).then(|| f.path());
    let catalog = Arc::new(f.catalog);
    let mut tasks = Vec::new();
    for i in 0..20 {
        let catalog = Arc::clone(&catalog);
        let id = a.id.clone();
        let schema = schema.clone();
        tasks.push(tokio::spawn(async move {
            catalog
                .append_segments(
                    &id,
                    schema,
                    segments(&format!("c{i}"), 2),
                    json!({"batch": i}),
                    None,
                    t(i),
                )
                .await
                .unwrap()
                .number
        }));
    }
    for task in tasks {
        // The first append creates version 1; every other one appends to it.
        assert_eq!(task.await.unwrap(), 1);
    }
    let versions = catalog.list_versions(&a.id).await.unwrap();
    assert_eq!(versions.len(), 1);
    let segs = &versions[0].manifest.segments;
    assert_eq!(segs.len(), 40);
    // Each append's segments stay together and in their order.
    for pair in segs.chunks(2) {
        let tag = pair[0].path.split('/').nth(1).unwrap();
        assert_eq!(pair, segments(tag, 2).as_slice());
    }
    let paths: BTreeSet<&str> = segs.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(paths.len(), 40);

    if let Some(path) = path {
        let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&path);
        let raw = sqlx::SqlitePool::connect_with(options).await.unwrap();
        let ordinals: Vec<i64> =
            sqlx::query_scalar("SELECT ordinal FROM segments WHERE asset_id = $1 ORDER BY ordinal")
                .bind(a.id.as_str())
                .fetch_all(&raw)
                .await
                .unwrap();
        assert_eq!(ordinals, (0..40).collect::<Vec<i64>>());
        raw.close().await;
    }
    let watermark = catalog.get_asset(&a.id).await.unwrap().watermark.unwrap();
    assert!(matches!(watermark["batch"].as_i64(), Some(0..=19)));
}
