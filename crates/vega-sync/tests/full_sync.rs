//! Full sync against a real SQLite catalog, real Parquet segments and real
//! CSV files: publish, checks, and crashes between the steps.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use vega_catalog::{Catalog, SqlCatalog};
use vega_connectors::file::FileConnector;
use vega_connectors::ConnectorRegistry;
use vega_core::{
    Asset, AssetChecks, ConnectorKind, Job, JobState, NewAsset, NewConnection, SyncMode,
    SystemClock, Version,
};
use vega_storage::SegmentStore;
use vega_sync::{FailAction, Failpoint, PublishListener, SyncError, SyncOptions, SyncService};

#[derive(Default)]
struct Recorder {
    published: Mutex<Vec<(String, u32)>>,
    finished: Mutex<Vec<JobState>>,
}

impl PublishListener for Recorder {
    fn published(&self, asset: &Asset, version: &Version) {
        self.published
            .lock()
            .unwrap()
            .push((asset.qualified_name(), version.number));
    }
    fn job_finished(&self, _asset: &Asset, job: &Job, _elapsed: Duration) {
        self.finished.lock().unwrap().push(job.state);
    }
}

struct Fixture {
    _tmp: tempfile::TempDir,
    src: std::path::PathBuf,
    data: std::path::PathBuf,
    catalog: Arc<dyn Catalog>,
    asset: Asset,
}

async fn fixture(min_rows: Option<u64>) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src").canonicalize().unwrap_or_else(|_| {
        std::fs::create_dir_all(tmp.path().join("src")).unwrap();
        tmp.path().join("src").canonicalize().unwrap()
    });
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(src.join("t.csv"), "a,b\n1,x\n2,y\n").unwrap();
    let catalog: Arc<dyn Catalog> = Arc::new(
        SqlCatalog::open_sqlite(&data.join("catalog.db"))
            .await
            .unwrap(),
    );
    let now = chrono::Utc::now();
    let con = catalog
        .create_connection(
            NewConnection {
                name: "files".into(),
                kind: ConnectorKind::File,
                params: json!({ "root": src }),
            },
            now,
        )
        .await
        .unwrap();
    let asset = catalog
        .create_asset(
            NewAsset {
                namespace: "s".into(),
                name: "t".into(),
                connection_id: con.id,
                sync_mode: SyncMode::Full,
                source: json!({ "path": "t.csv" }),
                checks: AssetChecks {
                    min_rows,
                    ..Default::default()
                },
                schedule: None,
                retention: None,
            },
            now,
        )
        .await
        .unwrap();
    Fixture {
        _tmp: tmp,
        src,
        data,
        catalog,
        asset,
    }
}

fn service(f: &Fixture, failpoint: Option<Failpoint>) -> (Arc<SyncService>, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::default());
    let svc = SyncService::new(
        f.catalog.clone(),
        Arc::new(SegmentStore::open(f.data.join("segments")).unwrap()),
        {
            let mut registry = ConnectorRegistry::new();
            registry.register(Arc::new(FileConnector::new(vec![f.src.clone()])));
            Arc::new(registry)
        },
        Arc::new(SystemClock),
        recorder.clone(),
        SyncOptions {
            rows_per_segment: 1,
            failpoint,
            ..SyncOptions::default()
        },
    );
    (svc, recorder)
}

async fn run(svc: &Arc<SyncService>, f: &Fixture) -> Job {
    let job = svc.start(&f.asset.id, SyncMode::Full).await.unwrap();
    // Only the job's own state says it ended: the running-jobs count may
    // still be zero before the spawned job has started.
    for _ in 0..6000 {
        let j = f.catalog.get_job(&job.id).await.unwrap();
        if j.state.is_finished() {
            return j;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("job did not finish");
}

fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                out.push(
                    e.path()
                        .strip_prefix(dir)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn full_sync_publishes_and_notifies() {
    let f = fixture(None).await;
    let (svc, rec) = service(&f, None);
    let job = run(&svc, &f).await;
    assert_eq!(job.state, JobState::Succeeded, "{:?}", job.error);
    assert_eq!(job.result_version, Some(1));
    assert_eq!(job.rows, 2);
    let asset = f.catalog.get_asset(&f.asset.id).await.unwrap();
    assert_eq!(asset.active_version, Some(1));
    let v = f.catalog.get_version(&f.asset.id, 1).await.unwrap();
    assert_eq!(v.manifest.segments.len(), 2, "one row per segment");
    assert_eq!(
        rec.published.lock().unwrap().as_slice(),
        &[("s.t".to_string(), 1)]
    );
    assert_eq!(
        rec.finished.lock().unwrap().as_slice(),
        &[JobState::Succeeded]
    );
}

#[tokio::test]
async fn second_start_while_running_is_a_conflict() {
    let f = fixture(None).await;
    let (svc, _) = service(&f, None);
    let first = svc.start(&f.asset.id, SyncMode::Full).await.unwrap();
    match svc.start(&f.asset.id, SyncMode::Full).await {
        Err(SyncError::Catalog(vega_catalog::CatalogError::Conflict { existing, .. })) => {
            assert_eq!(existing.as_deref(), Some(first.id.as_str()));
        }
        Ok(_) => {
            // The first finished in between: allowed, but it must have succeeded.
            assert_eq!(
                f.catalog.get_job(&first.id).await.unwrap().state,
                JobState::Succeeded
            );
        }
        Err(other) => panic!("unexpected {other}"),
    }
    svc.wait_idle().await;
}

#[tokio::test]
async fn min_rows_failure_keeps_the_previous_version_and_its_files() {
    let f = fixture(Some(2)).await;
    let (svc, _) = service(&f, None);
    assert_eq!(run(&svc, &f).await.state, JobState::Succeeded);
    let before = files(&f.data.join("segments"));
    std::fs::write(f.src.join("t.csv"), "a,b\n1,x\n").unwrap();
    let job = run(&svc, &f).await;
    assert_eq!(job.state, JobState::Failed);
    assert!(job.error.unwrap().contains("min_rows"));
    assert_eq!(
        f.catalog
            .get_asset(&f.asset.id)
            .await
            .unwrap()
            .active_version,
        Some(1)
    );
    assert_eq!(
        files(&f.data.join("segments")),
        before,
        "the failed attempt left no files"
    );
}

async fn crash_between_steps(point: &str) {
    let f = fixture(None).await;
    let (svc, _) = service(&f, None);
    assert_eq!(run(&svc, &f).await.state, JobState::Succeeded);
    let v1_files = files(&f.data.join("segments"));

    std::fs::write(f.src.join("t.csv"), "a,b\n1,x\n2,y\n3,z\n").unwrap();
    let (crashing, _) = service(
        &f,
        Some(Failpoint {
            name: point.into(),
            action: FailAction::Crash,
        }),
    );
    let job = crashing.start(&f.asset.id, SyncMode::Full).await.unwrap();
    crashing.wait_idle().await;
    // As after a crash: the job still says running, the staged files exist.
    assert_eq!(
        f.catalog.get_job(&job.id).await.unwrap().state,
        JobState::Running
    );
    assert!(files(&f.data.join("segments")).len() > v1_files.len());
    assert_eq!(
        f.catalog
            .get_asset(&f.asset.id)
            .await
            .unwrap()
            .active_version,
        Some(1)
    );

    // "Restart": a new service recovers.
    let (restarted, _) = service(&f, None);
    let report = restarted.recover().await.unwrap();
    assert_eq!(report.interrupted_jobs, 1);
    assert!(report.orphan_files_removed >= 1);
    let job = f.catalog.get_job(&job.id).await.unwrap();
    assert_eq!(job.state, JobState::Failed);
    assert!(job.error.unwrap().contains("interrupted"));
    assert_eq!(
        f.catalog
            .get_asset(&f.asset.id)
            .await
            .unwrap()
            .active_version,
        Some(1)
    );
    assert_eq!(files(&f.data.join("segments")), v1_files);
    let store = SegmentStore::open(f.data.join("segments")).unwrap();
    let v1 = f.catalog.get_version(&f.asset.id, 1).await.unwrap();
    store.validate(&v1.manifest).unwrap();
    store.verify_checksums(&v1.manifest).unwrap();
    // And the next sync works.
    assert_eq!(run(&restarted, &f).await.state, JobState::Succeeded);
}

#[tokio::test]
async fn crash_after_segments_written_leaves_v1_active_and_cleans_orphans() {
    crash_between_steps("sync.after_segments_written").await;
}

#[tokio::test]
async fn crash_after_checks_leaves_v1_active_and_cleans_orphans() {
    crash_between_steps("sync.after_checks").await;
}

#[tokio::test]
async fn error_failpoint_cleans_up_at_once() {
    let f = fixture(None).await;
    let (svc, _) = service(
        &f,
        Some(Failpoint {
            name: "sync.after_segments_written".into(),
            action: FailAction::Error,
        }),
    );
    let job = run(&svc, &f).await;
    assert_eq!(job.state, JobState::Failed);
    assert_eq!(
        f.catalog
            .get_asset(&f.asset.id)
            .await
            .unwrap()
            .active_version,
        None
    );
    assert!(files(&f.data.join("segments")).is_empty());
}

#[tokio::test]
async fn incremental_mode_is_refused_for_now() {
    let f = fixture(None).await;
    let (svc, _) = service(&f, None);
    assert!(matches!(
        svc.start(&f.asset.id, SyncMode::Incremental).await,
        Err(SyncError::Unsupported(_))
    ));
}

/// A source that keeps failing opens its connection's breaker: the next
/// sync fails at once, saying so, without reading the source; after an
/// operator reset it reads the source again.
#[tokio::test]
async fn an_open_breaker_fails_the_sync_fast_and_a_reset_lets_it_through() {
    use vega_resilience::{
        BreakerOverride, BreakerRegistry, BulkheadSettings, RegistrySettings, SystemTicker,
    };
    let f = fixture(None).await;
    let (svc, _) = service(&f, None);
    let mut settings = RegistrySettings::default();
    settings.services.insert(
        "files".into(),
        BreakerOverride {
            minimum_calls: Some(2),
            sliding_window_size: Some(2),
            ..Default::default()
        },
    );
    let ticker = Arc::new(SystemTicker::new());
    let breakers = Arc::new(BreakerRegistry::new(settings, ticker.clone()).unwrap());
    svc.set_guards(Arc::new(
        vega_sync::SourceGuards::new(
            breakers.clone(),
            BulkheadSettings::default(),
            Default::default(),
            ticker,
        )
        .unwrap(),
    ));
    // The source file goes away: each sync fails in the connector.
    std::fs::remove_file(f.src.join("t.csv")).unwrap();
    for _ in 0..2 {
        let job = run(&svc, &f).await;
        assert_eq!(job.state, JobState::Failed);
        assert!(
            !job.error
                .clone()
                .unwrap_or_default()
                .contains("circuit breaker"),
            "{job:?}"
        );
    }
    // Two failures of two calls: open. The file is back, but the breaker
    // answers first.
    std::fs::write(f.src.join("t.csv"), "a,b\n1,x\n").unwrap();
    let job = run(&svc, &f).await;
    assert_eq!(job.state, JobState::Failed);
    let error = job.error.clone().unwrap_or_default();
    assert!(
        error.contains("circuit breaker of connection 'files' is open"),
        "{error}"
    );
    assert_eq!(job.attempts, 1, "not retried: {job:?}");
    breakers.reset("files").unwrap();
    assert_eq!(run(&svc, &f).await.state, JobState::Succeeded);
}
