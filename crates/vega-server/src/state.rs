//! What every handler can reach: the catalog, the engine, sync, storage,
//! metrics, the clock, and the node's lifecycle flags.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vega_catalog::Catalog;
use vega_connectors::ConnectorRegistry;
use vega_core::{Clock, Id};
use vega_query::QueryEngine;
use vega_storage::SegmentStore;
use vega_sync::SyncService;

use crate::metrics::Metrics;

/// Query limits the API applies to requests.
#[derive(Debug, Clone)]
pub struct QueryLimits {
    /// Bound on every API request except queries, which have their own.
    pub request_timeout: Duration,
    pub default_timeout: Duration,
    pub max_timeout: Duration,
    pub default_max_rows: usize,
    pub max_rows_limit: usize,
}

/// Limits of the line-protocol write endpoints.
#[derive(Debug, Clone)]
pub struct IngestLimits {
    pub max_body_bytes: usize,
}

/// Shared state, cloned into every handler.
#[derive(Clone)]
pub struct AppState {
    pub inner: Arc<Inner>,
}

pub struct Inner {
    pub node_id: Id,
    /// The configured display name (`node.name`, default "vega").
    pub node_name: String,
    pub started: Instant,
    pub catalog: Arc<dyn Catalog>,
    pub engine: Arc<QueryEngine>,
    pub sync: Arc<SyncService>,
    pub ingest: Arc<vega_ingest::IngestService>,
    pub mqtt: Arc<crate::mqtt::MqttStreams>,
    /// This node's heartbeat and leases.
    pub cluster: Arc<crate::cluster::NodeAgent>,
    pub ingest_limits: IngestLimits,
    pub store: Arc<SegmentStore>,
    pub connectors: Arc<ConnectorRegistry>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    pub limits: QueryLimits,
    /// Answers of recent queries.
    pub cache: Arc<crate::cache::ResultCache>,
    /// The API's rate limits (runtime settings from the catalog).
    pub rate_limiter: Arc<crate::ratelimit::RateLimiter>,
    /// Service discovery, when `service_discovery` is set.
    pub discovery: Option<Arc<crate::discovery::DiscoveryAgent>>,
    /// Trino, when `query.trino` is set.
    pub trino: Option<Arc<crate::remote_engine::TrinoEngine>>,
    /// `query.engine`: what `engine: auto` means.
    pub default_engine: vega_config::Engine,
    /// Circuit breakers of connections and remote engines.
    pub breakers: Arc<crate::breakers::Breakers>,
    /// The backup repository and its lock.
    pub backups: Arc<crate::backup::BackupService>,
    pub data_dir: std::path::PathBuf,
    /// Set on SIGTERM: readiness fails and new API requests are refused.
    pub draining: AtomicBool,
    /// Set once start-up (recovery, view registration) has finished.
    pub started_up: AtomicBool,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}

impl AppState {
    /// Runs a connector call (blocking I/O) on a blocking thread, bounded by
    /// `limit`: a source that hangs cannot hold a request forever.
    pub async fn connector_call<T, F>(
        &self,
        kind: vega_core::ConnectorKind,
        limit: Duration,
        call: F,
    ) -> Result<T, crate::error::ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn vega_connectors::Connector) -> Result<T, vega_connectors::ConnectorError>
            + Send
            + 'static,
    {
        let connector = self.connectors.get(kind)?;
        let task = tokio::task::spawn_blocking(move || call(connector.as_ref()));
        match tokio::time::timeout(limit, task).await {
            Ok(Ok(result)) => result.map_err(Into::into),
            Ok(Err(e)) => Err(crate::error::ApiError::from_class(
                vega_core::ErrorClass::Internal,
                "internal",
                format!("connector thread failed: {e}"),
            )),
            Err(_) => Err(crate::error::ApiError::unavailable(format!(
                "the {} source did not answer within {} ms",
                kind.as_str(),
                limit.as_millis()
            ))),
        }
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }
}
