//! The scheduler: every tick, starts a sync for each asset whose schedule is
//! due. "Due" is measured from the asset's newest sync job (or its creation),
//! so a restart neither skips nor doubles runs; at most one run of an asset
//! is ever active, because the catalog refuses a second running job.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use vega_catalog::{Catalog, CatalogError, JobFilter};
use vega_core::{Clock, Id, SyncMode};

use crate::error::SyncError;
use crate::schedule::Schedule;
use crate::service::SyncService;

/// Starts scheduled syncs.
pub struct Scheduler {
    pub catalog: Arc<dyn Catalog>,
    pub sync: Arc<SyncService>,
    pub clock: Arc<dyn Clock>,
    pub tick: Duration,
    /// How often retention runs per asset (first run at start).
    pub retention_interval: Duration,
    /// When this process last started retention of each asset.
    pub last_retention:
        std::sync::Mutex<std::collections::HashMap<Id, chrono::DateTime<chrono::Utc>>>,
    /// Whether this node may schedule now (it holds the scheduler lease, in
    /// a cluster). `None`: always (a single node).
    pub leader: Option<Arc<std::sync::atomic::AtomicBool>>,
}

impl Scheduler {
    /// Runs until `stop` turns true.
    pub fn spawn(self, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                if *stop.borrow() {
                    return;
                }
                let leading = self
                    .leader
                    .as_ref()
                    .is_none_or(|l| l.load(std::sync::atomic::Ordering::SeqCst));
                if !leading {
                    tokio::select! {
                        _ = tokio::time::sleep(self.tick) => {}
                        _ = stop.changed() => {}
                    }
                    continue;
                }
                if let Err(e) = self.tick_once().await {
                    tracing::warn!(error = %e, "scheduler tick failed; trying again next tick");
                }
                tokio::select! {
                    _ = tokio::time::sleep(self.tick) => {}
                    _ = stop.changed() => {}
                }
            }
        })
    }

    async fn maybe_retain(&self, asset_id: &Id, now: chrono::DateTime<chrono::Utc>) {
        let due = {
            let last = self
                .last_retention
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            match last.get(asset_id) {
                Some(at) => chrono::Duration::from_std(self.retention_interval)
                    .map(|every| now >= *at + every)
                    .unwrap_or(false),
                None => true,
            }
        };
        if !due {
            return;
        }
        match self.sync.start_retention(asset_id).await {
            Ok(_) | Err(SyncError::Catalog(CatalogError::Conflict { .. })) => {
                if let Ok(mut last) = self.last_retention.lock() {
                    last.insert(asset_id.clone(), now);
                }
            }
            Err(e) => tracing::warn!(asset_id = %asset_id, error = %e, "retention could not start"),
        }
    }

    /// Starts every due sync once; returns the assets started.
    pub async fn tick_once(&self) -> Result<Vec<Id>, SyncError> {
        let now = self.clock.now();
        let mut started = Vec::new();
        for asset in self.catalog.list_assets().await? {
            if asset.retention.is_some() && asset.active_version.is_some() {
                self.maybe_retain(&asset.id, now).await;
            }
            let Some(text) = asset.schedule.as_deref() else {
                continue;
            };
            // A disabled connection starts no syncs; enabling it resumes the
            // schedule at the next tick.
            match self.catalog.get_connection(&asset.connection_id).await {
                Ok(connection) if !connection.enabled => continue,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(asset = %asset.qualified_name(), error = %e, "skipping an asset whose connection cannot be read");
                    continue;
                }
            }
            let schedule = match Schedule::parse(text) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(asset = %asset.qualified_name(), error = %e, "skipping an invalid schedule");
                    continue;
                }
            };
            let newest = self
                .catalog
                .list_jobs(JobFilter {
                    asset_id: Some(asset.id.clone()),
                    state: None,
                    limit: Some(1),
                })
                .await?;
            let last = match newest.first() {
                Some(job) if !job.state.is_finished() => continue,
                Some(job) => job.created_at,
                None => asset.created_at,
            };
            if !schedule.is_due(asset.id.as_str(), last, now) {
                continue;
            }
            let mode = match asset.sync_mode {
                SyncMode::Incremental => SyncMode::Incremental,
                _ => SyncMode::Full,
            };
            match self.sync.start(&asset.id, mode).await {
                Ok(job) => {
                    tracing::info!(asset = %asset.qualified_name(), job_id = %job.id, "scheduled sync started");
                    started.push(asset.id.clone());
                }
                Err(SyncError::Catalog(CatalogError::Conflict { .. })) => {}
                Err(e) => {
                    tracing::warn!(asset = %asset.qualified_name(), error = %e, "scheduled sync could not start")
                }
            }
        }
        Ok(started)
    }
}
