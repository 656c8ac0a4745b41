//! MQTT-fed stream assets: one consumer per enabled `mqtt` connection that
//! has stream assets, delivering into ingest. Consumers are reconciled with
//! the catalog at start and whenever a connection or one of its assets
//! changes (created, updated, disabled, deleted): the old consumer stops
//! without acknowledging anything more, and a new one resumes the
//! persistent session, so the broker redelivers what was not acknowledged.

use std::collections::HashMap;
use std::sync::Arc;

use vega_catalog::Catalog;
use vega_connector_mqtt::{
    Delivered, DeliveryKey, MessageSink, MqttConnection, MqttConsumer, MqttHandle, MqttSource,
    MqttStatus, SinkError, Subscription,
};
use vega_core::{Asset, ConnectorKind, Id, Point, SyncMode};
use vega_ingest::{DedupKey, IngestError, IngestService};

use crate::metrics::{Metrics, ReasonLabels};

/// The running consumers, by connection.
pub struct MqttStreams {
    catalog: Arc<dyn Catalog>,
    ingest: Arc<IngestService>,
    metrics: Arc<Metrics>,
    consumers: tokio::sync::Mutex<HashMap<Id, MqttHandle>>,
    /// Status of the last consumer of each connection (kept while none runs).
    last: std::sync::Mutex<HashMap<Id, MqttStatus>>,
}

impl MqttStreams {
    pub fn new(
        catalog: Arc<dyn Catalog>,
        ingest: Arc<IngestService>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            catalog,
            ingest,
            metrics,
            consumers: tokio::sync::Mutex::new(HashMap::new()),
            last: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Starts a consumer for every enabled MQTT connection with stream
    /// assets.
    pub async fn start_all(&self) {
        let Ok(connections) = self.catalog.list_connections().await else {
            tracing::error!("listing connections for MQTT consumers failed");
            return;
        };
        for c in connections
            .into_iter()
            .filter(|c| c.kind == ConnectorKind::Mqtt)
        {
            self.reconcile(&c.id).await;
        }
    }

    /// Brings the consumer of `connection` in line with the catalog: stops
    /// the running one (if any) and starts a new one when the connection
    /// exists, is enabled and has stream assets.
    pub async fn reconcile(&self, connection: &Id) {
        let mut consumers = self.consumers.lock().await;
        if let Some(old) = consumers.remove(connection) {
            self.remember(connection, old.status());
            old.shutdown().await;
        }
        let Ok(conn) = self.catalog.get_connection(connection).await else {
            self.last
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(connection);
            return;
        };
        if conn.kind != ConnectorKind::Mqtt || !conn.enabled {
            return;
        }
        let params = match MqttConnection::parse(&conn.params) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(connection = %conn.name, error = %e, "MQTT connection parameters are invalid; not subscribing");
                return;
            }
        };
        let assets = match self.catalog.list_assets().await {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(error = %e, "listing assets for an MQTT consumer failed");
                return;
            }
        };
        let mut subs = Vec::new();
        for asset in assets
            .into_iter()
            .filter(|a| a.connection_id == conn.id && a.sync_mode == SyncMode::Stream)
        {
            match MqttSource::parse(&asset.source) {
                Ok(source) => subs.push(Subscription {
                    asset: asset.id.clone(),
                    asset_name: asset.qualified_name(),
                    source,
                }),
                Err(e) => tracing::error!(asset = %asset.qualified_name(), error = %e,
                    "the asset's MQTT source is invalid; not subscribing to it"),
            }
        }
        if subs.is_empty() {
            return;
        }
        tracing::info!(connection = %conn.name, assets = subs.len(), "starting the MQTT consumer");
        let sink = Arc::new(IngestSink {
            catalog: self.catalog.clone(),
            ingest: self.ingest.clone(),
            metrics: self.metrics.clone(),
            assets: std::sync::Mutex::new(HashMap::new()),
        });
        let handle = MqttConsumer::spawn(&conn.name, params, subs, sink);
        consumers.insert(conn.id.clone(), handle);
    }

    fn remember(&self, connection: &Id, status: MqttStatus) {
        self.last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(connection.clone(), status);
    }

    /// The status of the consumer of `connection`, if one runs.
    pub async fn status(&self, connection: &Id) -> Option<MqttStatus> {
        self.consumers
            .lock()
            .await
            .get(connection)
            .map(|h| h.status())
    }

    /// Every running consumer's status.
    pub async fn statuses(&self) -> Vec<MqttStatus> {
        self.consumers
            .lock()
            .await
            .values()
            .map(|h| h.status())
            .collect()
    }

    /// Stops every consumer; nothing more is acknowledged.
    pub async fn shutdown(&self) {
        let mut consumers = self.consumers.lock().await;
        for (_, handle) in consumers.drain() {
            handle.shutdown().await;
        }
    }
}

/// Delivers MQTT messages into ingest.
struct IngestSink {
    catalog: Arc<dyn Catalog>,
    ingest: Arc<IngestService>,
    metrics: Arc<Metrics>,
    assets: std::sync::Mutex<HashMap<Id, Asset>>,
}

impl IngestSink {
    async fn asset(&self, id: &Id) -> Result<Asset, SinkError> {
        if let Some(a) = self
            .assets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
        {
            return Ok(a.clone());
        }
        let asset = self.catalog.get_asset(id).await.map_err(|e| match e {
            vega_catalog::CatalogError::NotFound { .. } => {
                SinkError::Rejected(format!("asset {id} no longer exists"))
            }
            other => SinkError::Unavailable(other.to_string()),
        })?;
        self.assets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), asset.clone());
        Ok(asset)
    }

    fn rejected(&self, reason: &str) {
        self.metrics
            .ingest_rejected
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc();
    }
}

#[async_trait::async_trait]
impl MessageSink for IngestSink {
    async fn deliver(
        &self,
        asset: &Id,
        points: Vec<Point>,
        key: DeliveryKey,
    ) -> Result<Delivered, SinkError> {
        let asset = self.asset(asset).await?;
        let ingest = self.ingest.clone();
        let dedup = DedupKey {
            session: key.session,
            content: key.content,
        };
        // A task of its own: once the log has the message, buffering it
        // finishes even if this delivery is abandoned (shutdown).
        let written = tokio::spawn(async move {
            ingest
                .write(&asset, points, Some(dedup), key.redelivery)
                .await
        })
        .await
        .map_err(|e| SinkError::Unavailable(format!("ingest task failed: {e}")))?;
        match written {
            Ok(r) if r.duplicate => Ok(Delivered::Duplicate),
            Ok(r) if r.accepted == 0 && !r.rejected.is_empty() => {
                self.rejected("type_conflict");
                Err(SinkError::Rejected(r.rejected[0].1.clone()))
            }
            Ok(_) => Ok(Delivered::Stored),
            Err(IngestError::Busy { retry_after, .. }) => Err(SinkError::Busy { retry_after }),
            Err(e @ (IngestError::DiskFull(_) | IngestError::Unavailable(_))) => {
                Err(SinkError::Unavailable(e.to_string()))
            }
            Err(IngestError::Catalog(e)) => Err(SinkError::Unavailable(e.to_string())),
            Err(e) => Err(SinkError::Rejected(e.to_string())),
        }
    }

    fn mapping_failed(&self, _asset: &Id, kind: &'static str) {
        self.rejected(&format!("mqtt_{kind}"));
    }
}
