//! Wires streaming ingest into the node: the engine's live tables as the
//! place acknowledged rows become visible, and the ingest metrics.

use std::sync::Arc;
use std::time::Duration;

use arrow::record_batch::RecordBatch;
use vega_core::{Asset, Version};
use vega_ingest::{IngestObserver, LiveRows};
use vega_query::{AssetView, QueryEngine};
use vega_storage::SegmentStore;

use crate::metrics::{AssetLabels, Metrics};

/// Live rows go to the engine's live table of the asset.
pub struct EngineLiveRows {
    pub engine: Arc<QueryEngine>,
    pub store: Arc<SegmentStore>,
}

impl LiveRows for EngineLiveRows {
    fn append(&self, asset: &Asset, seq: u64, batch: &RecordBatch) -> Result<(), String> {
        self.engine
            .live_append(&asset.namespace, &asset.name, seq, batch)
            .map_err(|e| e.to_string())
    }

    fn flushed(&self, asset: &Asset, version: &Version, through_seq: u64) -> Result<(), String> {
        self.engine
            .live_flushed(self.view(asset, version)?, through_seq)
            .map_err(|e| e.to_string())
    }

    fn published(&self, asset: &Asset, version: &Version) -> Result<(), String> {
        self.engine
            .register(self.view(asset, version)?)
            .map_err(|e| e.to_string())
    }
}

impl EngineLiveRows {
    fn view(&self, asset: &Asset, version: &Version) -> Result<AssetView, String> {
        let mut files = Vec::with_capacity(version.manifest.segments.len());
        for segment in &version.manifest.segments {
            files.push(
                self.store
                    .absolute(&segment.path)
                    .map_err(|e| e.to_string())?,
            );
        }
        Ok(AssetView {
            namespace: asset.namespace.clone(),
            name: asset.name.clone(),
            version: version.number,
            files,
        })
    }
}

/// Ingest figures into the metrics registry.
pub struct MetricsObserver {
    pub metrics: Arc<Metrics>,
}

impl IngestObserver for MetricsObserver {
    fn written(&self, asset: &Asset, rows: u64, bytes: u64) {
        let labels = AssetLabels {
            asset: asset.qualified_name(),
        };
        self.metrics.ingest_rows.get_or_create(&labels).inc_by(rows);
        self.metrics
            .ingest_bytes
            .get_or_create(&labels)
            .inc_by(bytes);
    }

    fn wal_fsync(&self, latency: Duration) {
        self.metrics
            .wal_fsync_duration
            .observe(latency.as_secs_f64());
    }

    fn flushed(&self, _asset: &Asset, rows: u64, elapsed: Duration) {
        self.metrics
            .ingest_flush_duration
            .observe(elapsed.as_secs_f64());
        self.metrics.ingest_flushed_rows.inc_by(rows);
    }

    fn flush_failed(&self, asset: &Asset) {
        self.metrics
            .ingest_flush_failures
            .get_or_create(&AssetLabels {
                asset: asset.qualified_name(),
            })
            .inc();
    }
}

/// Retention of a stream asset keeps its flushes out while it rewrites the
/// active version.
pub struct IngestWriters {
    pub ingest: Arc<vega_ingest::IngestService>,
}

#[async_trait::async_trait]
impl vega_sync::AssetWriters for IngestWriters {
    async fn exclusive(&self, asset: &vega_core::Id) -> Box<dyn std::any::Any + Send> {
        Box::new(self.ingest.exclusive(asset).await)
    }
}
