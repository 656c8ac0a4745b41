//! The sync service: starts sync jobs, runs them on blocking threads under a
//! concurrency limit and a timeout, and recovers after a crash.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vega_catalog::{Catalog, CatalogError, JobOutcome, JobProgress};
use vega_connectors::ConnectorRegistry;
use vega_core::{Asset, Classify, Clock, Id, Job, JobKind, SyncMode, Version};
use vega_storage::{SegmentStore, WriteOptions};

use crate::error::SyncError;
use crate::failpoint::{self, FailAction, Failpoint};

/// Told about what sync does, so other parts can react (the query engine
/// re-points a view; metrics count jobs) without sync knowing them.
pub trait PublishListener: Send + Sync {
    /// A version became active.
    fn published(&self, asset: &Asset, version: &Version);
    /// A job ended, however it ended.
    fn job_finished(&self, _job: &Job, _elapsed: Duration) {}
}

/// Sizing and limits of the sync service.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    pub rows_per_segment: usize,
    pub job_timeout: Duration,
    pub max_concurrent_jobs: usize,
    pub failpoint: Option<Failpoint>,
}

impl Default for SyncOptions {
    fn default() -> Self {
        Self {
            rows_per_segment: 1_000_000,
            job_timeout: Duration::from_secs(3600),
            max_concurrent_jobs: 2,
            failpoint: None,
        }
    }
}

/// Runs sync jobs. Share it behind an `Arc`.
pub struct SyncService {
    catalog: Arc<dyn Catalog>,
    store: Arc<SegmentStore>,
    connectors: Arc<ConnectorRegistry>,
    clock: Arc<dyn Clock>,
    listener: Arc<dyn PublishListener>,
    options: SyncOptions,
    slots: Arc<tokio::sync::Semaphore>,
    /// Staging directories of jobs in flight; orphan clean-up keeps them.
    in_flight: Mutex<HashSet<String>>,
    tasks: tokio_util_tracker::Tracker,
}

impl std::fmt::Debug for SyncService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncService")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// A minimal task tracker: counts running jobs so shutdown can wait for them.
mod tokio_util_tracker {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[derive(Debug, Default, Clone)]
    pub struct Tracker {
        running: Arc<AtomicUsize>,
        notify: Arc<tokio::sync::Notify>,
    }

    pub struct Guard(Tracker);

    impl Tracker {
        pub fn enter(&self) -> Guard {
            self.running.fetch_add(1, Ordering::SeqCst);
            Guard(self.clone())
        }

        pub fn running(&self) -> usize {
            self.running.load(Ordering::SeqCst)
        }

        pub async fn wait_idle(&self) {
            loop {
                let notified = self.notify.notified();
                if self.running() == 0 {
                    return;
                }
                notified.await;
            }
        }
    }

    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.running.fetch_sub(1, Ordering::SeqCst);
            self.0.notify.notify_waiters();
        }
    }
}

impl SyncService {
    pub fn new(
        catalog: Arc<dyn Catalog>,
        store: Arc<SegmentStore>,
        connectors: Arc<ConnectorRegistry>,
        clock: Arc<dyn Clock>,
        listener: Arc<dyn PublishListener>,
        options: SyncOptions,
    ) -> Arc<Self> {
        let slots = Arc::new(tokio::sync::Semaphore::new(
            options.max_concurrent_jobs.max(1),
        ));
        Arc::new(Self {
            catalog,
            store,
            connectors,
            clock,
            listener,
            options,
            slots,
            in_flight: Mutex::new(HashSet::new()),
            tasks: Default::default(),
        })
    }

    /// After a crash: jobs that were running are marked failed, and segment
    /// files no manifest references (a sync interrupted before its publish)
    /// are deleted. Call once at start, before any job runs.
    pub async fn recover(&self) -> Result<RecoveryReport, SyncError> {
        let interrupted = self
            .catalog
            .fail_interrupted_jobs(
                "interrupted: Vega stopped while the job ran",
                self.clock.now(),
            )
            .await?;
        let orphans = self.clean_orphans().await?;
        Ok(RecoveryReport {
            interrupted_jobs: interrupted.len(),
            orphan_files_removed: orphans.0,
            orphan_bytes_removed: orphans.1,
        })
    }

    /// Deletes segment files that no version references, except those of
    /// jobs in flight. Returns (files, bytes) removed.
    pub async fn clean_orphans(&self) -> Result<(u64, u64), SyncError> {
        let referenced: HashSet<String> = self
            .catalog
            .list_segment_paths()
            .await?
            .into_iter()
            .collect();
        let keep: Vec<String> = self
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect();
        let store = self.store.clone();
        let report = tokio::task::spawn_blocking(move || store.remove_orphans(&referenced, &keep))
            .await
            .map_err(|e| SyncError::Internal(format!("orphan clean-up thread: {e}")))??;
        Ok((report.files_removed, report.bytes_removed))
    }

    /// Starts a sync of `asset_id` in the background and returns its job.
    /// Fails with a conflict naming the running job when one already runs.
    pub async fn start(self: &Arc<Self>, asset_id: &Id, mode: SyncMode) -> Result<Job, SyncError> {
        let asset = self.catalog.get_asset(asset_id).await?;
        if mode != SyncMode::Full {
            return Err(SyncError::Unsupported(format!(
                "sync mode '{}' is not supported for this asset yet; use mode=full",
                mode.as_str()
            )));
        }
        let connection = self.catalog.get_connection(&asset.connection_id).await?;
        if !connection.enabled {
            return Err(SyncError::ConnectionDisabled(connection.name));
        }
        let job = self
            .catalog
            .start_job(
                JobKind::Sync,
                Some(asset_id),
                serde_json::json!({ "mode": mode.as_str() }),
                self.clock.now(),
            )
            .await?;
        let this = self.clone();
        let guard = self.tasks.enter();
        let spawned = job.clone();
        tokio::spawn(async move {
            let _guard = guard;
            this.run_job(asset, spawned).await;
        });
        Ok(job)
    }

    /// Runs a started job to its end and records the outcome.
    async fn run_job(&self, asset: Asset, job: Job) {
        let started = Instant::now();
        let _slot = self.slots.clone().acquire_owned().await;
        let cancel = Arc::new(AtomicBool::new(false));
        let result = match tokio::time::timeout(
            self.options.job_timeout,
            self.full_sync(&asset, &job, cancel.clone()),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => {
                cancel.store(true, Ordering::SeqCst);
                Err(SyncError::Timeout(self.options.job_timeout.as_secs()))
            }
        };
        let outcome = match &result {
            Ok(version) => JobOutcome::Succeeded {
                result_version: Some(version.number),
            },
            Err(e) => JobOutcome::Failed {
                error: e.to_string(),
            },
        };
        match &result {
            Ok(v) => tracing::info!(
                asset = %asset.qualified_name(), job_id = %job.id, version = v.number,
                rows = v.manifest.rows(), duration_ms = started.elapsed().as_millis() as u64,
                "sync published a new version"
            ),
            Err(e) => tracing::warn!(
                asset = %asset.qualified_name(), job_id = %job.id, error = %e,
                retryable = e.is_retryable(), "sync failed; the previous version stays active"
            ),
        }
        if matches!(result, Err(SyncError::Failpoint(_))) && self.crash_armed() {
            // Simulated crash: leave the job and the files as a crash would.
            return;
        }
        match self
            .catalog
            .finish_job(&job.id, outcome, self.clock.now())
            .await
        {
            Ok(finished) => self.listener.job_finished(&finished, started.elapsed()),
            Err(e) => {
                tracing::error!(job_id = %job.id, error = %e, "recording the end of a sync job failed")
            }
        }
    }

    fn crash_armed(&self) -> bool {
        matches!(&self.options.failpoint, Some(fp) if fp.action == FailAction::Crash)
    }

    fn failpoint(&self, name: &str) -> Result<(), SyncError> {
        match failpoint::hit(&self.options.failpoint, name) {
            Some(_) => Err(SyncError::Failpoint(name.to_string())),
            None => Ok(()),
        }
    }

    /// Write, check, publish. Public for tests that drive one step at a time.
    pub async fn full_sync(
        &self,
        asset: &Asset,
        job: &Job,
        cancel: Arc<AtomicBool>,
    ) -> Result<Version, SyncError> {
        let connection = self.catalog.get_connection(&asset.connection_id).await?;
        if !connection.enabled {
            return Err(SyncError::ConnectionDisabled(connection.name));
        }
        let connector = self.connectors.get(connection.kind)?;

        // 1. Write the staged version (blocking I/O on a blocking thread).
        let staging_dir = format!("{}/{}", asset.id, job.id);
        self.in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(staging_dir.clone());
        let result = self
            .write_check_publish(asset, job, connector, &connection.params, cancel)
            .await;
        self.in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&staging_dir);
        result
    }

    async fn write_check_publish(
        &self,
        asset: &Asset,
        job: &Job,
        connector: Arc<dyn vega_connectors::Connector>,
        params: &serde_json::Value,
        cancel: Arc<AtomicBool>,
    ) -> Result<Version, SyncError> {
        let store = self.store.clone();
        let params = params.clone();
        let source_spec = asset.source.clone();
        let asset_id = asset.id.clone();
        let job_id = job.id.clone();
        let options = WriteOptions {
            rows_per_segment: self.options.rows_per_segment,
            ..WriteOptions::default()
        };
        let manifest = tokio::task::spawn_blocking(move || -> Result<_, SyncError> {
            let mut source = connector.open_full(&params, &source_spec)?;
            let mut staged = store.stage(&asset_id, job_id.as_str(), source.schema(), options)?;
            let written = (|| -> Result<(), SyncError> {
                while let Some(batch) = source.next_batch()? {
                    if cancel.load(Ordering::SeqCst) {
                        return Err(SyncError::Cancelled("stopped by timeout".into()));
                    }
                    staged.write(&batch)?;
                }
                Ok(())
            })();
            match written {
                Ok(()) => Ok(staged.finish()?),
                Err(e) => {
                    if let Err(cleanup) = staged.abort() {
                        tracing::warn!(error = %cleanup, "removing a failed sync's files failed; orphan clean-up will retry");
                    }
                    Err(e)
                }
            }
        })
        .await
        .map_err(|e| SyncError::Internal(format!("sync thread: {e}")))??;

        let _ = self
            .catalog
            .update_job_progress(
                &job.id,
                JobProgress {
                    rows: manifest.rows(),
                    bytes: manifest.bytes(),
                },
            )
            .await;

        let discard = |store: Arc<SegmentStore>, manifest: vega_core::Manifest| async move {
            let _ = tokio::task::spawn_blocking(move || {
                for seg in &manifest.segments {
                    if let Ok(path) = store.absolute(&seg.path) {
                        let _ = std::fs::remove_file(path);
                    }
                }
            })
            .await;
        };

        if let Err(e) = self.failpoint("sync.after_segments_written") {
            if !self.crash_armed() {
                discard(self.store.clone(), manifest).await;
            }
            return Err(e);
        }

        // 2. Check: files readable with the right rows and schema; rules.
        let check = {
            let store = self.store.clone();
            let manifest = manifest.clone();
            tokio::task::spawn_blocking(move || store.validate(&manifest))
                .await
                .map_err(|e| SyncError::Internal(format!("check thread: {e}")))?
        };
        let check = check
            .map_err(SyncError::from)
            .and_then(|()| match asset.checks.min_rows {
                Some(min) if manifest.rows() < min => Err(SyncError::CheckFailed(format!(
                    "min_rows: the new version has {} rows, the asset requires at least {min}",
                    manifest.rows()
                ))),
                _ => Ok(()),
            });
        if let Err(e) = check.and_then(|()| self.failpoint("sync.after_checks")) {
            if !self.crash_armed() {
                discard(self.store.clone(), manifest).await;
            }
            return Err(e);
        }

        // 3. Publish: one catalog transaction makes the version active.
        let version = match self
            .catalog
            .publish_version(&asset.id, manifest.clone(), Some(&job.id), self.clock.now())
            .await
        {
            Ok(v) => v,
            Err(e) => {
                // Not committed: the files are unreferenced.
                if !matches!(e, CatalogError::Database { .. }) {
                    discard(self.store.clone(), manifest).await;
                }
                return Err(e.into());
            }
        };
        self.failpoint("sync.after_publish")?;
        self.listener.published(asset, &version);
        Ok(version)
    }

    /// Jobs currently running in this process.
    pub fn running_jobs(&self) -> usize {
        self.tasks.running()
    }

    /// Waits until no job runs (graceful shutdown).
    pub async fn wait_idle(&self) {
        self.tasks.wait_idle().await;
    }
}

/// What [`SyncService::recover`] found and fixed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub interrupted_jobs: usize,
    pub orphan_files_removed: u64,
    pub orphan_bytes_removed: u64,
}
