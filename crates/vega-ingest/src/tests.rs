//! The service against a real SQLite catalog, real segment files and a
//! real write-ahead log; the live-rows sink is a recorder (it stands in for
//! the query engine, which this crate must not link).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::record_batch::RecordBatch;
use std::time::Instant;

use vega_catalog::{Catalog, LeaseFence, SqlCatalog};
use vega_core::{Asset, FieldValue, Id, IdKind, Point, SystemClock, Version};
use vega_storage::SegmentStore;

use crate::service::{log_lease_name, IngestObserver, IngestOptions, IngestService, LiveRows};

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
    fn published(&self, _asset: &Asset, _v: &Version) -> Result<(), String> {
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
        object_logs: None,
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
    hold_own_lease(catalog.as_ref(), &a, "node_a").await;
    hold_own_lease(catalog.as_ref(), &b, "node_b").await;
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
    hold_own_lease(catalog.as_ref(), &b, "node_b").await;
    assert_eq!(live_b.live_rows(), 7, "B replays only its unflushed write");
    b.flush_due(true).await;
    assert_eq!(flushed_rows(catalog.as_ref(), &asset).await, 42);
    drop(a);
}

/// Takes (or renews) the lease of `service`'s own log for a minute.
async fn hold_own_lease(
    catalog: &dyn Catalog,
    service: &IngestService,
    wal_id: &str,
) -> LeaseFence {
    let holder = node_id(wal_id);
    let lease = catalog
        .acquire_lease(
            &log_lease_name(wal_id),
            &holder,
            Duration::from_secs(60),
            chrono::Utc::now(),
        )
        .await
        .unwrap()
        .expect("the lease is free");
    let fence = LeaseFence {
        name: lease.name,
        holder,
        token: lease.token,
    };
    service.set_own_lease(fence.clone(), Instant::now() + Duration::from_secs(60));
    fence
}

/// A stable node id per name, so that a test can hold leases as "node_a".
fn node_id(name: &str) -> Id {
    let last = name.chars().last().unwrap_or('0');
    Id::parse(IdKind::Node, &format!("node_{:0>26}", last)).unwrap()
}

/// A shared log without its lease refuses writes (nothing is acknowledged
/// that another node might already be taking over).
#[tokio::test]
async fn a_shared_log_refuses_writes_without_its_lease() {
    let dir = tempfile::tempdir().unwrap();
    let catalog: Arc<dyn Catalog> = Arc::new(
        SqlCatalog::open_sqlite(&dir.path().join("catalog.db"))
            .await
            .unwrap(),
    );
    let mut o = options(dir.path());
    o.wal_dir = dir.path().join("wal").join("n1");
    o.wal_id = Some("n1".into());
    let service = IngestService::open(
        catalog.clone(),
        Arc::new(SegmentStore::open(dir.path().join("segments")).unwrap()),
        Arc::new(Recorder::default()),
        Arc::new(NoMetrics),
        Arc::new(SystemClock),
        o,
    )
    .await
    .unwrap();
    let asset = service.line_protocol_asset("plant", "s").await.unwrap();
    let err = service
        .write(&asset, points(0, 3), None, false)
        .await
        .unwrap_err();
    assert!(matches!(err, crate::IngestError::Unavailable(_)), "{err}");
    assert!(err.to_string().contains("lease"), "{err}");
    assert_eq!(service.stats().wal_durable_seq, 0, "nothing was logged");
}

/// A survivor adopts a stopped node's log: the rows that node acknowledged
/// but never flushed land in segments once, the log is removed, and a late
/// flush by the old owner is refused by the lease's fencing token.
#[tokio::test]
async fn a_survivor_adopts_a_stopped_nodes_log_and_fences_the_old_owner() {
    let dir = tempfile::tempdir().unwrap();
    let catalog: Arc<dyn Catalog> = Arc::new(
        SqlCatalog::open_sqlite(&dir.path().join("catalog.db"))
            .await
            .unwrap(),
    );
    let open_as = |id: &str| {
        let catalog = catalog.clone();
        let mut o = options(dir.path());
        o.wal_dir = dir.path().join("wal").join(id);
        o.wal_id = Some(id.to_string());
        let store = Arc::new(SegmentStore::open(dir.path().join("segments")).unwrap());
        async move {
            IngestService::open(
                catalog,
                store,
                Arc::new(Recorder::default()),
                Arc::new(NoMetrics),
                Arc::new(SystemClock),
                o,
            )
            .await
            .unwrap()
        }
    };
    let a_id = node_id("node_a").to_string();
    let b_id = node_id("node_b").to_string();
    let a = open_as(&a_id).await;
    let b = open_as(&b_id).await;
    let a_fence = hold_own_lease(catalog.as_ref(), &a, &a_id).await;
    hold_own_lease(catalog.as_ref(), &b, &b_id).await;
    let asset = a.line_protocol_asset("plant", "s").await.unwrap();
    a.write(&asset, points(0, 10), None, false).await.unwrap();
    a.flush_due(true).await;
    a.write(&asset, points(10, 5), None, false).await.unwrap();
    a.write(&asset, points(15, 5), None, false).await.unwrap();
    assert_eq!(flushed_rows(catalog.as_ref(), &asset).await, 10);
    let others = b.other_logs().await.unwrap();
    let names: Vec<&str> = others.iter().map(|l| l.node()).collect();
    assert_eq!(names, [a_id.as_str()]);

    // A stops renewing; once its lease expired, B takes the log over.
    let later = chrono::Utc::now() + chrono::Duration::seconds(120);
    let taken = catalog
        .acquire_lease(
            &log_lease_name(&a_id),
            &node_id("node_b"),
            Duration::from_secs(60),
            later,
        )
        .await
        .unwrap()
        .expect("the expired lease is free");
    assert_eq!(taken.token, a_fence.token + 1);
    let fence = LeaseFence {
        name: taken.name,
        holder: node_id("node_b"),
        token: taken.token,
    };
    let log_dir = dir.path().join("wal").join(&a_id);
    let report = b.adopt_log(&others[0], fence).await.unwrap();
    assert_eq!(report.rows, 10, "{report:?}");
    assert_eq!(report.records, 2, "{report:?}");
    // The flushed record is gone from the log already (truncated) or
    // skipped by the watermark; either way it is not replayed.
    assert!(report.already_flushed <= 1, "{report:?}");
    assert!(!log_dir.exists(), "the adopted log is removed");
    assert_eq!(flushed_rows(catalog.as_ref(), &asset).await, 20);

    // A comes back (it was only cut off) and tries to flush what it holds.
    a.flush_due(true).await;
    assert_eq!(
        flushed_rows(catalog.as_ref(), &asset).await,
        20,
        "nothing twice"
    );
    let error = a.stats().last_flush_error.unwrap_or_default();
    assert!(error.contains("fenced"), "{error}");
}

/// Logs in an S3-compatible bucket (no shared directory, each node its own
/// disk): every acknowledged batch is in the bucket, so a survivor adopts
/// the log of a node whose disk is gone, and the owner — should it start
/// again on its old disk — drops its local copy instead of serving those
/// rows a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_survivor_adopts_a_log_from_the_object_store() {
    use object_store::aws::AmazonS3Builder;
    use vega_testkit::s3::TestS3;

    let s3 = tokio::task::block_in_place(TestS3::start);
    // The test server's listing is a blocking call.
    let list = |prefix: String| tokio::task::block_in_place(|| s3.list(&prefix));
    let bucket: Arc<dyn object_store::ObjectStore> = Arc::new(
        AmazonS3Builder::new()
            .with_bucket_name(s3.bucket())
            .with_region("us-east-1")
            .with_endpoint(s3.endpoint())
            .with_access_key_id(s3.access_key_id())
            .with_secret_access_key(s3.secret_access_key())
            .with_allow_http(true)
            .with_virtual_hosted_style_request(false)
            .build()
            .unwrap(),
    );
    let logs = crate::ObjectLogs::new(bucket, "cluster", tokio::runtime::Handle::current());
    let shared = tempfile::tempdir().unwrap();
    let catalog: Arc<dyn Catalog> = Arc::new(
        SqlCatalog::open_sqlite(&shared.path().join("catalog.db"))
            .await
            .unwrap(),
    );
    // One disk per node; segments are shared here only to keep the test
    // about logs (the server pushes them to the bucket as well).
    let segments = Arc::new(SegmentStore::open(shared.path().join("segments")).unwrap());
    let (disk_a, disk_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let open_as = |id: &str, disk: &Path| {
        let mut o = options(disk);
        o.wal_dir = disk.join("wal").join(id);
        o.wal_id = Some(id.to_string());
        o.object_logs = Some(logs.clone());
        let (catalog, segments) = (catalog.clone(), segments.clone());
        async move {
            IngestService::open(
                catalog,
                segments,
                Arc::new(Recorder::default()),
                Arc::new(NoMetrics),
                Arc::new(SystemClock),
                o,
            )
            .await
            .unwrap()
        }
    };
    let a_id = node_id("node_a").to_string();
    let b_id = node_id("node_b").to_string();
    let a = open_as(&a_id, disk_a.path()).await;
    let b = open_as(&b_id, disk_b.path()).await;
    let a_fence = hold_own_lease(catalog.as_ref(), &a, &a_id).await;
    hold_own_lease(catalog.as_ref(), &b, &b_id).await;
    let asset = a.line_protocol_asset("plant", "s").await.unwrap();
    a.write(&asset, points(0, 10), None, false).await.unwrap();
    a.flush_due(true).await;
    a.write(&asset, points(10, 5), None, false).await.unwrap();
    a.write(&asset, points(15, 5), None, false).await.unwrap();
    assert_eq!(flushed_rows(catalog.as_ref(), &asset).await, 10);
    // The acknowledged, unflushed batches are objects in the bucket.
    let stored = list(format!("cluster/wal/{a_id}/"));
    assert!(
        stored.iter().filter(|n| n.ends_with(".wal")).count() >= 2,
        "{stored:?}"
    );
    a.close().await.unwrap();
    drop(a);

    let others = b.other_logs().await.unwrap();
    let names: Vec<&str> = others.iter().map(|l| l.node()).collect();
    assert_eq!(names, [a_id.as_str()]);
    let later = chrono::Utc::now() + chrono::Duration::seconds(120);
    let taken = catalog
        .acquire_lease(
            &log_lease_name(&a_id),
            &node_id("node_b"),
            Duration::from_secs(60),
            later,
        )
        .await
        .unwrap()
        .expect("the expired lease is free");
    assert_eq!(taken.token, a_fence.token + 1);
    let fence = LeaseFence {
        name: taken.name.clone(),
        holder: node_id("node_b"),
        token: taken.token,
    };
    let report = b.adopt_log(&others[0], fence).await.unwrap();
    assert_eq!((report.rows, report.records), (10, 2), "{report:?}");
    assert_eq!(flushed_rows(catalog.as_ref(), &asset).await, 20);
    // Adopted: marked, its batches gone, not listed again.
    let left = list(format!("cluster/wal/{a_id}/"));
    assert_eq!(left, [format!("cluster/wal/{a_id}/adopted")], "{left:?}");
    assert!(b.other_logs().await.unwrap().is_empty());

    // A starts again on its old disk: its local copy goes, nothing is
    // replayed twice, the marker is removed and A logs afresh.
    let a = open_as(&a_id, disk_a.path()).await;
    assert_eq!(a.stats().buffer_rows, 0, "nothing replayed twice");
    assert!(list(format!("cluster/wal/{a_id}/")).is_empty());
    // (B's hold, taken "later", ran out; A takes its lease back.)
    let back = catalog
        .acquire_lease(
            &log_lease_name(&a_id),
            &node_id("node_a"),
            Duration::from_secs(60),
            later + chrono::Duration::seconds(120),
        )
        .await
        .unwrap()
        .expect("B's hold expired");
    let fence = LeaseFence {
        name: back.name,
        holder: node_id("node_a"),
        token: back.token,
    };
    a.set_own_lease(fence, Instant::now() + Duration::from_secs(60));
    a.write(&asset, points(20, 1), None, false).await.unwrap();
    a.flush_due(true).await;
    assert_eq!(flushed_rows(catalog.as_ref(), &asset).await, 21);
}
