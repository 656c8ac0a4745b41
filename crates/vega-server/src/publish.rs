//! Keeps the engine's views in step with the catalog: at start every active
//! version is registered; after each publish or rollback the asset's view is
//! re-pointed. Also feeds sync metrics.

use std::sync::Arc;
use std::time::Duration;

use vega_core::{Asset, Job, JobState, Version};
use vega_query::{AssetView, QueryEngine, QueryError};
use vega_storage::SegmentStore;
use vega_sync::PublishListener;

use crate::metrics::{AssetLabels, JobLabels, Metrics};

/// Points the asset's view at `version`'s files.
pub fn register_version(
    engine: &QueryEngine,
    store: &SegmentStore,
    asset: &Asset,
    version: &Version,
) -> Result<(), QueryError> {
    let mut files = Vec::with_capacity(version.manifest.segments.len());
    for segment in &version.manifest.segments {
        let path = store.absolute(&segment.path).map_err(|e| {
            QueryError::Internal(format!("segment path of {}: {e}", asset.qualified_name()))
        })?;
        files.push(path);
    }
    engine.register(AssetView {
        namespace: asset.namespace.clone(),
        name: asset.name.clone(),
        version: version.number,
        files,
    })
}

/// The sync listener of a running server.
pub struct EngineListener {
    pub engine: Arc<QueryEngine>,
    pub store: Arc<SegmentStore>,
    pub metrics: Arc<Metrics>,
}

impl PublishListener for EngineListener {
    fn published(&self, asset: &Asset, version: &Version) {
        if let Err(e) = register_version(&self.engine, &self.store, asset, version) {
            tracing::error!(asset = %asset.qualified_name(), version = %version.label(), error = %e,
                "the engine could not switch to the new version; it keeps serving the previous one");
        }
    }

    fn job_finished(&self, asset: &Asset, job: &Job, elapsed: Duration) {
        let outcome = match job.state {
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
            _ => "unknown",
        };
        let labels = JobLabels {
            mode: job
                .params
                .get("mode")
                .and_then(|m| m.as_str())
                .unwrap_or("full")
                .to_string(),
            outcome: outcome.to_string(),
        };
        self.metrics.sync_jobs.get_or_create(&labels).inc();
        self.metrics
            .sync_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        if job.state == JobState::Succeeded {
            self.metrics.sync_rows.inc_by(job.rows);
            self.metrics.sync_bytes.inc_by(job.bytes);
        }
        if job.state == JobState::Failed {
            self.metrics
                .sync_failures
                .get_or_create(&AssetLabels {
                    asset: asset.qualified_name(),
                })
                .inc();
        }
    }
}
