//! The service against a real SQLite catalog, real segment files and a
//! real write-ahead log; the live-rows sink is a recorder (it stands in for
//! the query engine, which this crate must not link).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::record_batch::RecordBatch;
use vega_catalog::{Catalog, SqlCatalog};
use vega_core::{Asset, FieldValue, Point, SystemClock, Version};
use vega_storage::SegmentStore;

use crate::service::{IngestObserver, IngestOptions, IngestService, LiveRows};

/// Rows per asset as a query would see them: flushed versions' row counts
/// plus live rows not yet flushed.
#[derive(Default)]
struct Recorder {
    live: Mutex<Vec<(String, u64, usize)>>,
}

impl LiveRows for Recorder {
    fn append(&self, asset: &Asset, seq: u64, batch: &RecordBatch) -> Result<(), String> {
        self.live
            .lock()
            .unwrap()
            .push((asset.qualified_name(), seq, batch.num_rows()));
        Ok(())
    }
    fn flushed(&self, asset: &Asset, _v: &Version, through: u64) -> Result<(), String> {
        let name = asset.qualified_name();
        self.live
            .lock()
            .unwrap()
            .retain(|(n, seq, _)| !(n == &name && *seq <= through));
        Ok(())
    }
}

impl Recorder {
    fn live_rows(&self) -> usize {
        self.live.lock().unwrap().iter().map(|(_, _, n)| n).sum()
    }
}

struct NoMetrics;
impl IngestObserver for NoMetrics {}

fn options(dir: &Path) -> IngestOptions {
    IngestOptions {
        wal_dir: dir.join("wal"),
        wal_id: None,
        wal_fsync_interval: Duration::from_millis(1),
        buffer_max_rows: 1_000_000,
        buffer_max_bytes: 1 << 30,
        flush_rows: 1_000_000,
        flush_bytes: 1 << 30,
        flush_age: Duration::from_secs(3600),
        retry_after: Duration::from_secs(1),
    }
}

async fn open(dir: &Path, catalog: Arc<dyn Catalog>) -> (Arc<IngestService>, Arc<Recorder>) {
    let live = Arc::new(Recorder::default());
    let store = Arc::new(SegmentStore::open(dir.join("segments")).unwrap());
    let service = IngestService::open(
        catalog,
        store,
        live.clone(),
        Arc::new(NoMetrics),
        Arc::new(SystemClock),
        options(dir),
    )
    .await
    .unwrap();
    (service, live)
}

fn points(from: i64, n: i64) -> Vec<Point> {
    (from..from + n)
        .map(|i| Point {
            tags: vec![("dev".into(), format!("d{}", i % 3))],
            fields: vec![("v".into(), FieldValue::Integer(i))],
            time_ns: i,
        })
        .collect()
}

async fn flushed_rows(catalog: &dyn Catalog, asset: &Asset) -> u64 {
    let asset = catalog.get_asset(&asset.id).await.unwrap();
    match asset.active_version {
        Some(n) => catalog
            .get_version(&asset.id, n)
            .await
            .unwrap()
            .manifest
            .rows(),
        None => 0,
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[tokio::test]
async fn replay_after_a_crash_between_flush_and_log_truncation_adds_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let catalog: Arc<dyn Catalog> = Arc::new(
        SqlCatalog::open_sqlite(&dir.path().join("catalog.db"))
            .await
            .unwrap(),
    );
    let (ingest, live) = open(dir.path(), catalog.clone()).await;
    let asset = ingest.line_protocol_asset("plant", "s").await.unwrap();
    for i in 0..4 {
        let r = ingest
            .write(&asset, points(i * 10, 10), None, false)
            .await
            .unwrap();
        assert_eq!(r.accepted, 10);
    }
    assert_eq!(live.live_rows(), 40);
    // The log as it was before the flush: a crash right after the catalog
    // commit, before the log files were removed, leaves exactly this.
    copy_dir(
        &dir.path().join("wal"),
        &dir.path().join("wal-before-flush"),
    );
    ingest.flush_due(true).await;
    assert_eq!(flushed_rows(catalog.as_ref(), &asset).await, 40);
    assert_eq!(live.live_rows(), 0);
    ingest
        .write(&asset, points(40, 5), None, false)
        .await
        .unwrap();
    ingest.close().await.unwrap();
    drop(ingest);

    // Put the old log files back next to the newer ones.
    for entry in std::fs::read_dir(dir.path().join("wal-before-flush")).unwrap() {
        let entry = entry.unwrap();
        let target = dir.path().join("wal").join(entry.file_name());
        if !target.exists() {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
    let (ingest, live) = open(dir.path(), catalog.clone()).await;
    // 40 rows in segments, only the 5 unflushed ones replayed.
    assert_eq!(flushed_rows(catalog.as_ref(), &asset).await, 40);
    assert_eq!(live.live_rows(), 5);
    ingest.flush_due(true).await;
    assert_eq!(flushed_rows(catalog.as_ref(), &asset).await, 45);
    assert_eq!(ingest.stats().buffer_rows, 0);
}

#[tokio::test]
async fn log_files_go_only_after_their_rows_are_flushed() {
    let dir = tempfile::tempdir().unwrap();
    let catalog: Arc<dyn Catalog> = Arc::new(
        SqlCatalog::open_sqlite(&dir.path().join("catalog.db"))
            .await
            .unwrap(),
    );
    let (ingest, _live) = open(dir.path(), catalog.clone()).await;
    let a = ingest.line_protocol_asset("plant", "a").await.unwrap();
    let b = ingest.line_protocol_asset("plant", "b").await.unwrap();
    ingest.write(&a, points(0, 10), None, false).await.unwrap();
    ingest.write(&b, points(0, 10), None, false).await.unwrap();
    let before = ingest.stats();
    assert!(before.wal_bytes > 0);
    ingest.flush_due(true).await;
    let after = ingest.stats();
    // Everything is flushed: the old file is gone, only a fresh one is left.
    assert_eq!(after.wal_files, 1, "{after:?}");
    assert_eq!(after.wal_bytes, 0, "{after:?}");
    // Reopen: nothing to replay, numbering continues.
    ingest.close().await.unwrap();
    drop(ingest);
    let (ingest, live) = open(dir.path(), catalog.clone()).await;
    assert_eq!(live.live_rows(), 0);
    ingest.write(&a, points(10, 1), None, false).await.unwrap();
    assert!(ingest.stats().wal_durable_seq > before.wal_durable_seq);
}

#[tokio::test]
async fn a_redelivered_message_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let catalog: Arc<dyn Catalog> = Arc::new(
        SqlCatalog::open_sqlite(&dir.path().join("catalog.db"))
            .await
            .unwrap(),
    );
    let (ingest, live) = open(dir.path(), catalog.clone()).await;
    let asset = ingest.line_protocol_asset("plant", "m").await.unwrap();
    let key = crate::DedupKey {
        session: 1,
        content: 2,
    };
    let first = ingest
        .write(&asset, points(0, 1), Some(key), false)
        .await
        .unwrap();
    assert_eq!(first.accepted, 1);
    let again = ingest
        .write(&asset, points(0, 1), Some(key), true)
        .await
        .unwrap();
    assert!(again.duplicate);
    // After a restart the key is known from the log.
    ingest.close().await.unwrap();
    drop(ingest);
    let (ingest, _) = open(dir.path(), catalog.clone()).await;
    let again = ingest
        .write(&asset, points(0, 1), Some(key), true)
        .await
        .unwrap();
    assert!(again.duplicate);
    // Same packet id, new content: stored.
    let other = crate::DedupKey {
        session: 1,
        content: 3,
    };
    let r = ingest
        .write(&asset, points(1, 1), Some(other), true)
        .await
        .unwrap();
    assert_eq!(r.accepted, 1);
    assert_eq!(live.live_rows(), 1);
    assert_eq!(ingest.stats().buffer_rows, 2);
}

#[tokio::test]
async fn a_redelivery_is_recognised_after_its_record_left_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let catalog: Arc<dyn Catalog> = Arc::new(
        SqlCatalog::open_sqlite(&dir.path().join("catalog.db"))
            .await
            .unwrap(),
    );
    let (ingest, _) = open(dir.path(), catalog.clone()).await;
    let asset = ingest.line_protocol_asset("plant", "k").await.unwrap();
    let key = crate::DedupKey {
        session: 11,
        content: 12,
    };
    ingest
        .write(&asset, points(0, 1), Some(key), false)
        .await
        .unwrap();
    // Flushed, and the log file that held the record is gone.
    ingest.flush_due(true).await;
    assert_eq!(ingest.stats().wal_bytes, 0);
    ingest.close().await.unwrap();
    drop(ingest);
    let (ingest, _) = open(dir.path(), catalog.clone()).await;
    let again = ingest
        .write(&asset, points(0, 1), Some(key), true)
        .await
        .unwrap();
    assert!(again.duplicate, "the key survived the log truncation");
    assert_eq!(flushed_rows(catalog.as_ref(), &asset).await, 1);
}

/// Two nodes' logs (shared storage): each flushes its own rows into the
/// same asset under its own watermark, and a restart of either replays
/// exactly what it had not flushed — nothing of the other's, nothing twice.
#[tokio::test]
async fn two_logs_writing_one_asset_keep_separate_watermarks() {
    let dir = tempfile::tempdir().unwrap();
    let catalog: Arc<dyn Catalog> = Arc::new(
        SqlCatalog::open_sqlite(&dir.path().join("catalog.db"))
            .await
            .unwrap(),
    );
    let node = |id: &str| {
        let mut o = options(dir.path());
        o.wal_dir = dir.path().join("wal").join(id);
        o.wal_id = Some(id.to_string());
        o
    };
    let open_as = |id: &str| {
        let catalog = catalog.clone();
        let o = node(id);
        let store = Arc::new(SegmentStore::open(dir.path().join("segments")).unwrap());
        async move {
            let live = Arc::new(Recorder::default());
            let s = IngestService::open(
                catalog,
                store,
                live.clone(),
                Arc::new(NoMetrics),
                Arc::new(SystemClock),
                o,
            )
            .await
            .unwrap();
            (s, live)
        }
    };
    let (a, _) = open_as("node_a").await;
    let (b, _) = open_as("node_b").await;
    let asset = a.line_protocol_asset("plant", "shared").await.unwrap();
    // Both logs number their records from 1: the watermarks must not mix.
    for i in 0..3 {
        a.write(&asset, points(i * 10, 10), None, false)
            .await
            .unwrap();
    }
    b.write(&asset, points(100, 5), None, false).await.unwrap();
    b.flush_due(true).await;
    a.flush_due(true).await;
    assert_eq!(flushed_rows(catalog.as_ref(), &asset).await, 35);
    let wm = catalog
        .get_asset(&asset.id)
        .await
        .unwrap()
        .watermark
        .unwrap();
    assert_eq!(wm["wals"]["node_a"], 3, "{wm}");
    assert_eq!(wm["wals"]["node_b"], 1, "{wm}");
    // B writes more and stops before flushing; A restarts.
    b.write(&asset, points(200, 7), None, false).await.unwrap();
    b.close().await.unwrap();
    a.close().await.unwrap();
    drop((a, b));
    let (a, live_a) = open_as("node_a").await;
    assert_eq!(live_a.live_rows(), 0, "A had flushed everything of its own");
    let (b, live_b) = open_as("node_b").await;
    assert_eq!(live_b.live_rows(), 7, "B replays only its unflushed write");
    b.flush_due(true).await;
    assert_eq!(flushed_rows(catalog.as_ref(), &asset).await, 42);
    drop(a);
}
