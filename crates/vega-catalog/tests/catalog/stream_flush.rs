//! Flushes of streamed rows: appends and wider versions, one watermark per
//! write-ahead log (so nodes writing one asset never overwrite each
//! other's), and the fencing check of the flushing node's lease.

use std::time::Duration;

use serde_json::json;
use vega_catalog::{Catalog, CatalogError, LeaseFence, StreamFlush};
use vega_core::{Id, IdKind, Segment};

use crate::common::{manifest, t, Fixture};

fn segments(tag: &str, n: usize) -> Vec<Segment> {
    manifest(tag, n).segments
}

fn flush(wal: Option<&str>, seq: u64, tag: &str) -> StreamFlush {
    StreamFlush {
        wal: wal.map(str::to_string),
        through_seq: seq,
        schema: manifest("schema", 0).schema,
        segments: segments(tag, 1),
        lease: None,
    }
}

#[tokio::test]
async fn flushes_of_two_logs_append_and_keep_a_watermark_each() {
    let f = Fixture::new().await;
    let a = f.with_asset().await;
    let v1 = f
        .catalog
        .flush_stream(&a.id, flush(Some("node_a"), 5, "a1"), t(1))
        .await
        .unwrap();
    assert_eq!(v1.number, 1);
    let v = f
        .catalog
        .flush_stream(&a.id, flush(Some("node_b"), 3, "b1"), t(2))
        .await
        .unwrap();
    assert_eq!(v.number, 1, "appended to the active version");
    let v = f
        .catalog
        .flush_stream(&a.id, flush(Some("node_a"), 9, "a2"), t(3))
        .await
        .unwrap();
    let paths: Vec<&str> = v
        .manifest
        .segments
        .iter()
        .map(|s| s.path.as_str())
        .collect();
    assert_eq!(
        paths,
        [
            "assets/a1/part-0000.parquet",
            "assets/b1/part-0000.parquet",
            "assets/a2/part-0000.parquet"
        ]
    );
    assert_eq!(f.catalog.get_version(&a.id, 1).await.unwrap(), v);
    let asset = f.catalog.get_asset(&a.id).await.unwrap();
    assert_eq!(
        asset.watermark,
        Some(json!({"wals": {"node_a": 9, "node_b": 3}}))
    );
    assert_eq!(asset.updated_at, t(3));
}

#[tokio::test]
async fn the_embedded_log_keeps_its_watermark_as_wal_seq() {
    let f = Fixture::new().await;
    let a = f.with_asset().await;
    f.catalog
        .flush_stream(&a.id, flush(None, 7, "x"), t(1))
        .await
        .unwrap();
    let asset = f.catalog.get_asset(&a.id).await.unwrap();
    assert_eq!(asset.watermark, Some(json!({"wal_seq": 7})));
}

#[tokio::test]
async fn new_columns_make_a_new_version_with_the_old_segments() {
    let f = Fixture::new().await;
    let a = f.with_asset().await;
    f.catalog
        .flush_stream(&a.id, flush(Some("n"), 1, "old"), t(1))
        .await
        .unwrap();
    let mut wider = flush(Some("n"), 2, "new");
    wider.schema["fields"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "extra", "data_type": "Float64", "nullable": true}));
    let v2 = f
        .catalog
        .flush_stream(&a.id, wider.clone(), t(2))
        .await
        .unwrap();
    assert_eq!(v2.number, 2);
    assert_eq!(v2.manifest.schema, wider.schema);
    assert_eq!(v2.manifest.segments.len(), 2);
    assert_eq!(
        f.catalog.get_asset(&a.id).await.unwrap().active_version,
        Some(2)
    );
    // The old version is untouched.
    assert_eq!(
        f.catalog
            .get_version(&a.id, 1)
            .await
            .unwrap()
            .manifest
            .segments
            .len(),
        1
    );
    // Rows of a writer that knows fewer columns append to the wider version.
    let v = f
        .catalog
        .flush_stream(&a.id, flush(Some("m"), 1, "narrow"), t(3))
        .await
        .unwrap();
    assert_eq!((v.number, v.manifest.segments.len()), (2, 3));
    // A column whose type differs is refused, naming it; nothing changes.
    let mut clash = flush(Some("m"), 2, "clash");
    clash.schema["fields"][0]["data_type"] = json!("Utf8");
    match f.catalog.flush_stream(&a.id, clash, t(4)).await {
        Err(CatalogError::Conflict { message, .. }) => {
            assert!(message.contains("column id"), "{message}")
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(
        f.catalog
            .get_version(&a.id, 2)
            .await
            .unwrap()
            .manifest
            .segments
            .len(),
        3
    );
}

#[tokio::test]
async fn a_flush_without_its_lease_is_fenced_and_changes_nothing() {
    let f = Fixture::new().await;
    let a = f.with_asset().await;
    let (n1, n2) = (
        Id::new(IdKind::Node, 1_700_000_000_001),
        Id::new(IdKind::Node, 1_700_000_000_002),
    );
    let ttl = Duration::from_secs(10);
    let lease = f
        .catalog
        .acquire_lease("wal:n1", &n1, ttl, t(0))
        .await
        .unwrap()
        .unwrap();
    let fence = LeaseFence {
        name: lease.name.clone(),
        holder: n1.clone(),
        token: lease.token,
    };
    let mut held = flush(Some("n1"), 1, "ok");
    held.lease = Some(fence.clone());
    f.catalog.flush_stream(&a.id, held, t(5)).await.unwrap();

    // The lease expires and another node takes it over.
    f.catalog
        .acquire_lease("wal:n1", &n2, ttl, t(11))
        .await
        .unwrap()
        .unwrap();
    let mut late = flush(Some("n1"), 2, "late");
    late.lease = Some(fence.clone());
    match f.catalog.flush_stream(&a.id, late, t(12)).await {
        Err(CatalogError::Fenced { what, message }) => {
            assert_eq!(what, "wal:n1");
            assert!(message.contains("held by"), "{message}");
        }
        other => panic!("expected a fenced refusal, got {other:?}"),
    }
    let v = f.catalog.get_version(&a.id, 1).await.unwrap();
    assert_eq!(v.manifest.segments.len(), 1);
    assert_eq!(
        f.catalog.get_asset(&a.id).await.unwrap().watermark,
        Some(json!({"wals": {"n1": 1}}))
    );
    // An expired lease, not yet taken over, is refused too.
    let mut expired = flush(Some("n2"), 1, "x");
    expired.lease = Some(LeaseFence {
        name: "wal:n1".into(),
        holder: n2.clone(),
        token: lease.token + 1,
    });
    let r = f.catalog.flush_stream(&a.id, expired, t(30)).await;
    assert!(matches!(r, Err(CatalogError::Fenced { .. })), "{r:?}");
}

#[tokio::test]
async fn racing_flushes_of_two_logs_lose_neither_watermark() {
    let f = Fixture::new().await;
    let a = f.with_asset().await;
    f.catalog
        .flush_stream(&a.id, flush(Some("seed"), 1, "seed"), t(0))
        .await
        .unwrap();
    let writer = |wal: &'static str| {
        let catalog = &f.catalog;
        let id = a.id.clone();
        async move {
            for seq in 1..=10u64 {
                catalog
                    .flush_stream(
                        &id,
                        flush(Some(wal), seq, &format!("{wal}{seq}")),
                        t(seq as i64),
                    )
                    .await
                    .unwrap();
            }
        }
    };
    tokio::join!(writer("node_a"), writer("node_b"));
    let asset = f.catalog.get_asset(&a.id).await.unwrap();
    assert_eq!(
        asset.watermark,
        Some(json!({"wals": {"seed": 1, "node_a": 10, "node_b": 10}}))
    );
    let v = f.catalog.get_version(&a.id, 1).await.unwrap();
    assert_eq!(v.manifest.segments.len(), 21);
}
