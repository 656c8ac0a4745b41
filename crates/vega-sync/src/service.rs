//! The sync service: starts sync jobs, runs them on blocking threads under a
//! concurrency limit and a timeout, and recovers after a crash.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vega_catalog::{Catalog, CatalogError, JobOutcome, JobProgress};
use vega_connectors::{BatchSource, ConnectorRegistry, IncrementalSource, Watermark};
use vega_core::{Asset, Classify, Clock, Id, Job, JobKind, SyncMode, Version};
use vega_storage::{SegmentStore, WriteOptions};

use crate::error::SyncError;
use crate::failpoint::{self, FailAction, Failpoint};
use crate::validate::{run_checks, ValidationReport, Validator};

/// How often a running sync records its progress (rows, bytes) in its job.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Other writers of assets (streaming ingest appends flushed segments).
/// Work that reads an asset's active version and publishes a rewrite of it
/// (retention) holds [`AssetWriters::exclusive`] in between, so no append
/// is lost.
#[async_trait::async_trait]
pub trait AssetWriters: Send + Sync {
    /// Waits until no other writer works on `asset`; they wait until the
    /// returned guard is dropped.
    async fn exclusive(&self, asset: &Id) -> Box<dyn std::any::Any + Send>;
}

/// Told about what sync does, so other parts can react (the query engine
/// re-points a view; metrics count jobs) without sync knowing them.
pub trait PublishListener: Send + Sync {
    /// A version became active.
    fn published(&self, asset: &Asset, version: &Version);
    /// A job of `asset` ended, however it ended.
    fn job_finished(&self, _asset: &Asset, _job: &Job, _elapsed: Duration) {}
}

/// Sizing and limits of the sync service.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    pub rows_per_segment: usize,
    /// Bound on a whole job, all attempts included.
    pub job_timeout: Duration,
    pub max_concurrent_jobs: usize,
    /// Attempts per job; only retryable failures are tried again.
    pub max_attempts: u32,
    /// Full-jitter backoff: the wait before retry `n` is random in
    /// `[0, min(retry_max_backoff, retry_initial_backoff * 2^(n-1))]`.
    pub retry_initial_backoff: Duration,
    pub retry_max_backoff: Duration,
    pub failpoint: Option<Failpoint>,
    /// This node: jobs it starts are owned by it under a lease of
    /// `lease_ttl`, renewed by [`SyncService::renew_leases`]. `None` (tests
    /// of the service alone): jobs have no owner and no lease.
    pub node: Option<Id>,
    pub lease_ttl: Duration,
}

impl Default for SyncOptions {
    fn default() -> Self {
        Self {
            rows_per_segment: 1_000_000,
            job_timeout: Duration::from_secs(3600),
            max_concurrent_jobs: 2,
            max_attempts: 3,
            retry_initial_backoff: Duration::from_secs(1),
            retry_max_backoff: Duration::from_secs(60),
            failpoint: None,
            node: None,
            lease_ttl: Duration::from_secs(10),
        }
    }
}

/// Why this node stopped a job it held: its lease is gone.
const LEASE_LOST: &str = "lost its lease";

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
    /// Cancel flags of the jobs running in this process.
    cancels: Mutex<HashMap<Id, Arc<AtomicBool>>>,
    /// Jobs stopped because their lease was lost, with the reason.
    lost: Mutex<HashMap<Id, String>>,
    /// When the last successful renewal of this node's job leases started.
    renewed: Mutex<Instant>,
    /// Runs the checks that need the data (set once by the server).
    validator: std::sync::OnceLock<Arc<dyn Validator>>,
    writers: std::sync::OnceLock<Arc<dyn AssetWriters>>,
    /// Circuit breakers and bulkheads of the connections (set once by the
    /// server; without them attempts go straight to the source).
    guards: std::sync::OnceLock<Arc<crate::SourceGuards>>,
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
            cancels: Mutex::new(HashMap::new()),
            lost: Mutex::new(HashMap::new()),
            renewed: Mutex::new(Instant::now()),
            validator: std::sync::OnceLock::new(),
            writers: std::sync::OnceLock::new(),
            guards: std::sync::OnceLock::new(),
        })
    }

    /// Installs the validator for data checks (once; later calls are ignored).
    pub fn set_validator(&self, validator: Arc<dyn Validator>) {
        let _ = self.validator.set(validator);
    }

    /// Sets who else writes assets (streaming ingest), so retention keeps
    /// them out while it rewrites an asset.
    pub fn set_writers(&self, writers: Arc<dyn AssetWriters>) {
        let _ = self.writers.set(writers);
    }

    /// Puts every attempt behind its connection's breaker and bulkhead
    /// (once; later calls are ignored).
    pub fn set_guards(&self, guards: Arc<crate::SourceGuards>) {
        let _ = self.guards.set(guards);
    }

    /// Runs every check of `asset` on `manifest` (`POST /assets/{id}/validate`).
    pub async fn check(
        &self,
        asset: &Asset,
        manifest: &vega_core::Manifest,
    ) -> Result<ValidationReport, SyncError> {
        run_checks(asset, manifest, self.validator.get().map(|v| v.as_ref())).await
    }

    /// After a crash: jobs that were running are marked failed, and segment
    /// files no manifest references (a sync interrupted before its publish)
    /// are deleted. Call once at start, before any job runs.
    pub async fn recover(&self) -> Result<RecoveryReport, SyncError> {
        // Only this node's own jobs (and unowned ones): other nodes' running
        // jobs are theirs until their leases expire.
        let interrupted = self
            .catalog
            .fail_interrupted_jobs(
                self.options.node.as_ref(),
                "interrupted: Vega stopped while the job ran",
                self.clock.now(),
            )
            .await?;
        let orphans = self.clean_orphans().await?;
        Ok(RecoveryReport {
            interrupted_jobs: interrupted.len(),
            orphan_files_removed: orphans.0,
            orphan_bytes_removed: orphans.1,
            interrupted,
        })
    }

    /// Starts again, as new jobs, the sync and retention jobs that a crash
    /// interrupted (from [`SyncService::recover`]); returns the new jobs.
    /// A job that cannot start (its asset was deleted, its connection
    /// disabled) is logged and skipped.
    pub async fn resume(self: &Arc<Self>, interrupted: &[Job]) -> Vec<Job> {
        let mut started = Vec::new();
        for job in interrupted {
            // Only syncs run again; an interrupted backup is left failed
            // (its schedule takes the next one).
            if job.kind != vega_core::JobKind::Sync {
                continue;
            }
            let Some(asset_id) = &job.asset_id else {
                continue;
            };
            let mode = job
                .params
                .get("mode")
                .and_then(|m| m.as_str())
                .unwrap_or("full");
            let result = match mode {
                "retention" => self.start_retention(asset_id).await,
                other => match SyncMode::parse(other) {
                    Some(mode) => self.start(asset_id, mode).await,
                    None => continue,
                },
            };
            match result {
                Ok(new) => {
                    tracing::info!(interrupted = %job.id, job_id = %new.id, asset_id = %asset_id, mode,
                        "restarted a job that a crash interrupted");
                    started.push(new);
                }
                Err(e) => tracing::warn!(interrupted = %job.id, asset_id = %asset_id, error = %e,
                    "a job that a crash interrupted could not be restarted"),
            }
        }
        started
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
    ///
    /// `Full` reads everything into a new version (for an incremental asset
    /// it also resets the watermark); `Incremental` appends what is new
    /// since the asset's watermark to its active version.
    pub async fn start(self: &Arc<Self>, asset_id: &Id, mode: SyncMode) -> Result<Job, SyncError> {
        let asset = self.catalog.get_asset(asset_id).await?;
        match (asset.sync_mode, mode) {
            (_, SyncMode::Stream) | (SyncMode::Stream, _) => {
                return Err(SyncError::Unsupported(
                    "stream assets are fed by ingest, not by sync".into(),
                ))
            }
            (SyncMode::Full, SyncMode::Incremental) => {
                return Err(SyncError::Unsupported(format!(
                    "asset {} syncs in full mode; set its sync_mode to incremental (with a cursor in its source) to sync incrementally",
                    asset.qualified_name()
                )))
            }
            _ => {}
        }
        let connection = self.catalog.get_connection(&asset.connection_id).await?;
        if !connection.enabled {
            return Err(SyncError::ConnectionDisabled(connection.name));
        }
        self.connectors.get(connection.kind)?;
        let job = self
            .start_job(asset_id, serde_json::json!({ "mode": mode.as_str() }))
            .await?;
        let cancel = Arc::new(AtomicBool::new(false));
        self.cancels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(job.id.clone(), cancel.clone());
        let this = self.clone();
        let guard = self.tasks.enter();
        let spawned = job.clone();
        tokio::spawn(async move {
            let _guard = guard;
            this.run_job(asset, spawned, mode, cancel).await;
        });
        Ok(job)
    }

    /// Records a new running sync job of `asset_id`, owned by this node
    /// when it has an identity.
    async fn start_job(&self, asset_id: &Id, params: serde_json::Value) -> Result<Job, SyncError> {
        let now = self.clock.now();
        let job = match &self.options.node {
            Some(node) => {
                self.catalog
                    .start_owned_job(
                        JobKind::Sync,
                        Some(asset_id),
                        params,
                        node,
                        self.options.lease_ttl,
                        now,
                    )
                    .await?
            }
            None => {
                self.catalog
                    .start_job(JobKind::Sync, Some(asset_id), params, now)
                    .await?
            }
        };
        Ok(job)
    }

    /// Renews the leases of this node's running jobs (called on every
    /// heartbeat). A job the catalog no longer counts as this node's
    /// (another node claimed it) is stopped here at once; when renewing
    /// fails for longer than the lease lasts (the catalog is unreachable),
    /// every job of this node is stopped, since another node may take it
    /// over from then on. Their results would be refused anyway (the
    /// fencing check at publish); stopping them saves the work.
    pub async fn renew_leases(&self) {
        let Some(node) = &self.options.node else {
            return;
        };
        let started = Instant::now();
        let running: Vec<Id> = self
            .cancels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        match self
            .catalog
            .renew_job_leases(node, self.options.lease_ttl, self.clock.now())
            .await
        {
            Ok(held) => {
                *self.renewed.lock().unwrap_or_else(|e| e.into_inner()) = started;
                // `running` was read before the renewal, and a job is in
                // the catalog before it is in `cancels`: a job missing from
                // `held` was claimed by another node.
                for job in running.iter().filter(|j| !held.contains(j)) {
                    self.stop_lost(job, "another node took the job over");
                }
            }
            Err(e) => {
                let since = self
                    .renewed
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .elapsed();
                if since >= self.options.lease_ttl {
                    for job in &running {
                        self.stop_lost(
                            job,
                            &format!(
                                "its lease could not be renewed for {}s: {e}",
                                since.as_secs()
                            ),
                        );
                    }
                } else {
                    tracing::warn!(error = %e, "renewing job leases failed; retrying at the next heartbeat");
                }
            }
        }
    }

    fn stop_lost(&self, job: &Id, why: &str) {
        let flag = self
            .cancels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(job)
            .cloned();
        if let Some(flag) = flag {
            if !flag.swap(true, Ordering::SeqCst) {
                tracing::warn!(job_id = %job, reason = why, "stopping a job: this node {LEASE_LOST}");
                self.lost
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(job.clone(), format!("{LEASE_LOST}: {why}"));
            }
        }
    }

    /// Takes over the running jobs of nodes whose leases expired (they
    /// stopped or lost the catalog), as many as this node has free job
    /// slots, and runs each again as a new job here. Called on every
    /// heartbeat by nodes with the sync role.
    pub async fn claim_orphans(self: &Arc<Self>) -> Vec<Job> {
        let Some(node) = &self.options.node else {
            return Vec::new();
        };
        let free = self.slots.available_permits() as u32;
        if free == 0 {
            return Vec::new();
        }
        let claimed = match self
            .catalog
            .claim_orphaned_jobs(node, free, self.clock.now())
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "claiming the jobs of stopped nodes failed");
                return Vec::new();
            }
        };
        let mut interrupted = Vec::new();
        for c in claimed {
            match c {
                vega_catalog::ClaimedJob::Interrupted(job) => {
                    tracing::warn!(job_id = %job.id, from = ?job.owner.as_ref().map(|o| o.to_string()),
                        "took over a job whose node stopped renewing its lease");
                    interrupted.push(job);
                }
                vega_catalog::ClaimedJob::Completed(job) => {
                    tracing::info!(job_id = %job.id, "a stopped node's job had published its result; recorded as succeeded")
                }
            }
        }
        self.resume(&interrupted).await
    }

    /// Cancels a pending or running job. A job running in this process
    /// stops at its next batch and is recorded as cancelled; a job that no
    /// process runs any more is recorded as cancelled at once.
    pub async fn cancel(&self, job_id: &Id) -> Result<Job, SyncError> {
        let job = self.catalog.get_job(job_id).await?;
        if job.state.is_finished() {
            return Err(SyncError::Catalog(vega_catalog::CatalogError::Conflict {
                message: format!("job {job_id} already {}", job.state.as_str()),
                existing: Some(job_id.to_string()),
            }));
        }
        let flag = self
            .cancels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(job_id)
            .cloned();
        match flag {
            Some(flag) => {
                flag.store(true, Ordering::SeqCst);
                // Give the job a moment to stop and record itself.
                for _ in 0..100 {
                    let now = self.catalog.get_job(job_id).await?;
                    if now.state.is_finished() {
                        return Ok(now);
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Ok(self.catalog.get_job(job_id).await?)
            }
            None => Ok(self
                .catalog
                .finish_job(
                    job_id,
                    JobOutcome::Cancelled {
                        reason: "cancelled by an operator".into(),
                    },
                    self.clock.now(),
                )
                .await?),
        }
    }

    /// The wait before retry number `attempt` (1-based): full jitter.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(30);
        let bound = self
            .options
            .retry_initial_backoff
            .saturating_mul(1u32 << exp)
            .min(self.options.retry_max_backoff);
        bound.mul_f64(rand::random::<f64>())
    }

    /// Runs a started job, with retries, to its end and records the outcome.
    async fn run_job(&self, asset: Asset, job: Job, mode: SyncMode, cancel: Arc<AtomicBool>) {
        let started = Instant::now();
        // The connection's bulkhead first: a job waiting for its (busy)
        // connection holds no sync worker.
        let connection_slot = match self.guards.get() {
            Some(guards) => match self.catalog.get_connection(&asset.connection_id).await {
                Ok(c) => guards.connection_slot(&c.name).await.map(Some),
                Err(e) => Err(e.into()),
            },
            None => Ok(None),
        };
        let _slot = self.slots.clone().acquire_owned().await;
        let attempts = async {
            let _connection_slot = connection_slot?;
            let mut attempt = 1u32;
            loop {
                let result = self
                    .attempt(&asset.id, &job, mode, attempt, cancel.clone())
                    .await;
                match result {
                    Err(e)
                        if e.is_retryable()
                            && attempt < self.options.max_attempts
                            && !cancel.load(Ordering::SeqCst)
                            && self.retry_allowed(&job, &e) =>
                    {
                        let wait = self.backoff(attempt);
                        tracing::warn!(
                            asset = %asset.qualified_name(), job_id = %job.id, attempt,
                            error = %e, retry_in_ms = wait.as_millis() as u64,
                            "sync attempt failed; retrying"
                        );
                        if let Err(record) = self
                            .catalog
                            .record_job_attempt(&job.id, &e.to_string())
                            .await
                        {
                            tracing::error!(job_id = %job.id, error = %record, "recording a failed attempt failed");
                        }
                        let until = Instant::now() + wait;
                        while Instant::now() < until && !cancel.load(Ordering::SeqCst) {
                            tokio::time::sleep(Duration::from_millis(20).min(wait)).await;
                        }
                        attempt += 1;
                    }
                    other => return other,
                }
            }
        };
        let result = match tokio::time::timeout(self.options.job_timeout, attempts).await {
            Ok(result) => result,
            Err(_) => {
                cancel.store(true, Ordering::SeqCst);
                Err(SyncError::Timeout(self.options.job_timeout.as_secs()))
            }
        };
        self.cancels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&job.id);
        let cancelled =
            cancel.load(Ordering::SeqCst) && !matches!(result, Err(SyncError::Timeout(_)));
        let lost = self
            .lost
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&job.id);
        let outcome = match &result {
            Ok(version) => JobOutcome::Succeeded {
                result_version: Some(version.number),
            },
            Err(_) if lost.is_some() => JobOutcome::Failed {
                error: lost.clone().unwrap_or_default(),
            },
            Err(_) if cancelled => JobOutcome::Cancelled {
                reason: "cancelled by an operator".into(),
            },
            Err(e) => JobOutcome::Failed {
                error: e.to_string(),
            },
        };
        match &result {
            Ok(v) => tracing::info!(
                asset = %asset.qualified_name(), job_id = %job.id, version = v.number,
                rows = v.manifest.rows(), duration_ms = started.elapsed().as_millis() as u64,
                mode = mode.as_str(), "sync published"
            ),
            Err(e) => tracing::warn!(
                asset = %asset.qualified_name(), job_id = %job.id, error = %e,
                retryable = e.is_retryable(), cancelled, "sync failed; the previous version stays active"
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
            Ok(finished) => self
                .listener
                .job_finished(&asset, &finished, started.elapsed()),
            Err(e) if lost.is_some() => {
                tracing::warn!(job_id = %job.id, error = %e, "a job this node lost ended; another node records it")
            }
            Err(e) => {
                tracing::error!(job_id = %job.id, error = %e, "recording the end of a sync job failed")
            }
        }
    }

    /// Whether the retry budget (if any) has room for one more retry.
    fn retry_allowed(&self, job: &Job, error: &SyncError) -> bool {
        match self.guards.get() {
            Some(guards) if !guards.allow_retry() => {
                tracing::warn!(job_id = %job.id, error = %error,
                    "the retry budget is spent (many failing calls lately); not retrying");
                false
            }
            _ => true,
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

    /// One attempt: read, write, check, publish (or append).
    async fn attempt(
        &self,
        asset_id: &Id,
        job: &Job,
        mode: SyncMode,
        attempt: u32,
        cancel: Arc<AtomicBool>,
    ) -> Result<Version, SyncError> {
        // Fresh state each attempt: the watermark may have moved.
        let asset = self.catalog.get_asset(asset_id).await?;
        let connection = self.catalog.get_connection(&asset.connection_id).await?;
        if !connection.enabled {
            return Err(SyncError::ConnectionDisabled(connection.name));
        }
        let connector = self.connectors.get(connection.kind)?;
        let entered = match self.guards.get() {
            Some(guards) => Some(guards.enter(&connection.name).await?),
            None => None,
        };
        let staging_id = format!("{}-{attempt}", job.id);
        let staging_dir = format!("{}/{staging_id}", asset.id);
        self.in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(staging_dir.clone());
        let result = self
            .write_check_publish(
                &asset,
                job,
                mode,
                &staging_id,
                connector,
                &connection.params,
                cancel,
            )
            .await;
        self.in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&staging_dir);
        if let Some(entered) = entered {
            entered.finish(&result);
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn write_check_publish(
        &self,
        asset: &Asset,
        job: &Job,
        mode: SyncMode,
        staging_id: &str,
        connector: Arc<dyn vega_connectors::Connector>,
        params: &serde_json::Value,
        cancel: Arc<AtomicBool>,
    ) -> Result<Version, SyncError> {
        let incremental_asset = asset.sync_mode == SyncMode::Incremental;
        let appending = mode == SyncMode::Incremental;
        let since: Watermark = match (&asset.watermark, appending) {
            (Some(w), true) => serde_json::from_value(w.clone()).map_err(|e| {
                SyncError::Internal(format!(
                    "stored watermark of {} is unreadable: {e}",
                    asset.qualified_name()
                ))
            })?,
            _ => Watermark::default(),
        };
        let store = self.store.clone();
        let params = params.clone();
        let source_spec = asset.source.clone();
        let asset_id = asset.id.clone();
        let staging_id = staging_id.to_string();
        let options = WriteOptions {
            rows_per_segment: self.options.rows_per_segment,
            ..WriteOptions::default()
        };
        let (progress_tx, progress_rx) = tokio::sync::watch::channel((0u64, 0u64));
        let blocking = tokio::task::spawn_blocking(move || -> Result<_, SyncError> {
            let mut incremental: Option<Box<dyn IncrementalSource>> = None;
            let mut full: Option<Box<dyn BatchSource>> = None;
            if incremental_asset {
                incremental = Some(connector.open_incremental(&params, &source_spec, &since)?);
            } else {
                full = Some(connector.open_full(&params, &source_spec)?);
            }
            let source: &mut dyn BatchSource = match (incremental.as_mut(), full.as_mut()) {
                (Some(i), _) => i.as_mut(),
                (None, Some(f)) => f.as_mut(),
                (None, None) => return Err(SyncError::Internal("no source was opened".into())),
            };
            let schema = source.schema();
            let mut staged = store.stage(&asset_id, &staging_id, schema.clone(), options)?;
            let written = (|| -> Result<(), SyncError> {
                while let Some(batch) = source.next_batch()? {
                    if cancel.load(Ordering::SeqCst) {
                        return Err(SyncError::Cancelled("stopped before it finished".into()));
                    }
                    staged.write(&batch)?;
                    progress_tx.send_replace((staged.rows(), staged.bytes_written()));
                }
                Ok(())
            })();
            if let Err(e) = written {
                if let Err(cleanup) = staged.abort() {
                    tracing::warn!(error = %cleanup, "removing a failed sync's files failed; orphan clean-up will retry");
                }
                return Err(e);
            }
            // The source is exhausted: its watermark covers every row read.
            let watermark = incremental.as_ref().map(|i| i.watermark());
            if appending && staged.rows() == 0 {
                staged.abort()?;
                let schema = serde_json::to_value(schema.as_ref())
                    .map_err(|e| SyncError::Internal(format!("encoding the schema: {e}")))?;
                return Ok((
                    vega_core::Manifest {
                        schema,
                        segments: Vec::new(),
                    },
                    watermark,
                ));
            }
            Ok((staged.finish()?, watermark))
        });
        // Report progress while the thread writes.
        tokio::pin!(blocking);
        let joined = loop {
            tokio::select! {
                joined = &mut blocking => break joined,
                _ = tokio::time::sleep(PROGRESS_EVERY) => {
                    let (rows, bytes) = *progress_rx.borrow();
                    let _ = self.catalog.update_job_progress(&job.id, JobProgress { rows, bytes }).await;
                }
            }
        };
        let (manifest, watermark) =
            joined.map_err(|e| SyncError::Internal(format!("sync thread: {e}")))??;

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
        let check = if manifest.segments.is_empty() {
            Ok(())
        } else {
            let store = self.store.clone();
            let manifest = manifest.clone();
            tokio::task::spawn_blocking(move || store.validate(&manifest))
                .await
                .map_err(|e| SyncError::Internal(format!("check thread: {e}")))?
        };
        let check = match check.map_err(SyncError::from) {
            Ok(()) if !appending && asset.checks.same_schema && asset.active_version.is_some() => {
                match self.schema_unchanged(asset, &manifest).await {
                    Ok(()) => self.check(asset, &manifest).await.and_then(|report| {
                        match report.failure_summary() {
                            Some(failure) => Err(SyncError::CheckFailed(failure)),
                            None => Ok(()),
                        }
                    }),
                    Err(e) => Err(e),
                }
            }
            Ok(()) if !appending => match self.check(asset, &manifest).await {
                Ok(report) => match report.failure_summary() {
                    Some(failure) => Err(SyncError::CheckFailed(failure)),
                    None => Ok(()),
                },
                Err(e) => Err(e),
            },
            other => other,
        };
        if let Err(e) = check.and_then(|()| self.failpoint("sync.after_checks")) {
            if !self.crash_armed() {
                discard(self.store.clone(), manifest).await;
            }
            return Err(e);
        }

        // 3. Publish: one catalog transaction makes the data visible — once
        // the files are in the object store too, if there is one.
        if !manifest.segments.is_empty() {
            if let Err(e) = self.store.push(&manifest).await {
                if !self.crash_armed() {
                    discard(self.store.clone(), manifest).await;
                }
                return Err(e.into());
            }
        }
        let now = self.clock.now();
        let watermark_json = watermark
            .map(|w| {
                serde_json::to_value(w)
                    .map_err(|e| SyncError::Internal(format!("encoding the watermark: {e}")))
            })
            .transpose()?;
        let published = if appending {
            self.catalog
                .append_segments(
                    &asset.id,
                    manifest.schema.clone(),
                    manifest.segments.clone(),
                    watermark_json.unwrap_or(serde_json::Value::Null),
                    Some(&job.id),
                    now,
                )
                .await
        } else {
            self.catalog
                .publish_version_with_watermark(
                    &asset.id,
                    manifest.clone(),
                    watermark_json,
                    Some(&job.id),
                    now,
                )
                .await
        };
        let version = match published {
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
        let asset = self
            .catalog
            .get_asset(&asset.id)
            .await
            .unwrap_or_else(|_| asset.clone());
        self.listener.published(&asset, &version);
        Ok(version)
    }

    /// Starts a retention run of `asset_id` in the background. It runs as a
    /// sync job (mode `retention`), so it never overlaps a sync of the same
    /// asset: both publish versions.
    pub async fn start_retention(self: &Arc<Self>, asset_id: &Id) -> Result<Job, SyncError> {
        let asset = self.catalog.get_asset(asset_id).await?;
        let Some(retention) = asset.retention.clone() else {
            return Err(SyncError::Unsupported(format!(
                "asset {} has no retention configured",
                asset.qualified_name()
            )));
        };
        let period: vega_config::HumanDuration = retention
            .period
            .parse()
            .map_err(|e| SyncError::Unsupported(format!("retention.period: {e}")))?;
        let job = self
            .start_job(asset_id, serde_json::json!({ "mode": "retention" }))
            .await?;
        let cancel = Arc::new(AtomicBool::new(false));
        self.cancels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(job.id.clone(), cancel);
        let this = self.clone();
        let guard = self.tasks.enter();
        let spawned = job.clone();
        tokio::spawn(async move {
            let _guard = guard;
            let started = Instant::now();
            let result = this
                .run_retention(&asset, &spawned, &retention.column, period.into())
                .await;
            let outcome = match &result {
                Ok(Some(v)) => JobOutcome::Succeeded {
                    result_version: Some(v.number),
                },
                Ok(None) => JobOutcome::Succeeded {
                    result_version: None,
                },
                Err(e) => JobOutcome::Failed {
                    error: e.to_string(),
                },
            };
            if let Err(e) = &result {
                tracing::warn!(asset = %asset.qualified_name(), job_id = %spawned.id, error = %e, "retention failed");
            }
            this.cancels
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&spawned.id);
            this.lost
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&spawned.id);
            match this
                .catalog
                .finish_job(&spawned.id, outcome, this.clock.now())
                .await
            {
                Ok(finished) => this
                    .listener
                    .job_finished(&asset, &finished, started.elapsed()),
                Err(e) => {
                    tracing::error!(job_id = %spawned.id, error = %e, "recording the end of a retention job failed")
                }
            }
        });
        Ok(job)
    }

    async fn run_retention(
        &self,
        asset: &Asset,
        job: &Job,
        column: &str,
        period: Duration,
    ) -> Result<Option<Version>, SyncError> {
        // No other writer (a flush of streamed rows) may append to the
        // version between reading it here and publishing its trimmed copy.
        let _exclusive = match self.writers.get() {
            Some(w) => Some(w.exclusive(&asset.id).await),
            None => None,
        };
        let asset = &self.catalog.get_asset(&asset.id).await?;
        let Some(number) = asset.active_version else {
            return Ok(None);
        };
        let version = self.catalog.get_version(&asset.id, number).await?;
        let cutoff = self.clock.now()
            - chrono::Duration::from_std(period).map_err(|e| SyncError::Internal(e.to_string()))?;
        let staging_id = format!("{}-retention", job.id);
        let staging_dir = format!("{}/{staging_id}", asset.id);
        self.in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(staging_dir.clone());
        let store = self.store.clone();
        let asset_id = asset.id.clone();
        let column = column.to_string();
        let manifest = version.manifest.clone();
        let options = WriteOptions {
            rows_per_segment: self.options.rows_per_segment,
            ..WriteOptions::default()
        };
        let trimmed = tokio::task::spawn_blocking(move || {
            crate::retention::trim(
                &store,
                &asset_id,
                &staging_id,
                &manifest,
                &column,
                cutoff.timestamp_millis(),
                options,
            )
        })
        .await
        .map_err(|e| SyncError::Internal(format!("retention thread: {e}")));
        let result = async {
            let Some(trimmed) = trimmed?? else {
                return Ok(None);
            };
            tracing::info!(
                asset = %asset.qualified_name(), rows_removed = trimmed.rows_removed,
                segments_dropped = trimmed.segments_dropped, segments_rewritten = trimmed.segments_rewritten,
                "retention trimmed the asset"
            );
            self.store.push(&trimmed.manifest).await?;
            let version = self
                .catalog
                .publish_version(&asset.id, trimmed.manifest, Some(&job.id), self.clock.now())
                .await?;
            let asset = self.catalog.get_asset(&asset.id).await?;
            self.listener.published(&asset, &version);
            Ok(Some(version))
        }
        .await;
        self.in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&staging_dir);
        result
    }

    /// The `same_schema` check: the new manifest's schema equals the
    /// active version's.
    async fn schema_unchanged(
        &self,
        asset: &Asset,
        manifest: &vega_core::Manifest,
    ) -> Result<(), SyncError> {
        let Some(number) = asset.active_version else {
            return Ok(());
        };
        let active = self.catalog.get_version(&asset.id, number).await?;
        let columns = |schema: &serde_json::Value| -> Vec<String> {
            schema["fields"]
                .as_array()
                .map(|fields| {
                    fields
                        .iter()
                        .map(|f| {
                            format!("{} {}", f["name"].as_str().unwrap_or("?"), f["data_type"])
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let (before, after) = (columns(&active.manifest.schema), columns(&manifest.schema));
        if before == after {
            return Ok(());
        }
        Err(SyncError::CheckFailed(format!(
            "same_schema: the source's schema changed from [{}] to [{}]",
            before.join(", "),
            after.join(", ")
        )))
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
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecoveryReport {
    pub interrupted_jobs: usize,
    pub orphan_files_removed: u64,
    pub orphan_bytes_removed: u64,
    /// The jobs marked failed, for [`SyncService::resume`].
    pub interrupted: Vec<Job>,
}
