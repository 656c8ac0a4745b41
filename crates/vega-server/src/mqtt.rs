//! MQTT-fed stream assets: one consumer per enabled `mqtt` connection that
//! has stream assets, delivering into ingest. Consumers are reconciled with
//! the catalog at start and whenever a connection or one of its assets
//! changes (created, updated, disabled, deleted): the old consumer stops
//! without acknowledging anything more, and a new one resumes the
//! persistent session, so the broker redelivers what was not acknowledged.
//!
//! In a cluster each connection is consumed by one node: the holder of the
//! lease `mqtt:<connection id>`, renewed on every heartbeat ([`MqttStreams::tick`]).
//! The client id is the connection's, not the node's, so a node that takes
//! the lease over resumes the same broker session. A node that loses the
//! lease (or cannot renew it for a TTL) stops its consumer; a node takes a
//! lease over only once no stopped node's log waits to be adopted, and it
//! first loads the delivery keys adopted logs left, so redeliveries of
//! messages the stopped node had already stored are recognised.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vega_catalog::Catalog;
use vega_connector_mqtt::{
    Delivered, DeliveryKey, MessageSink, MqttConnection, MqttConsumer, MqttHandle, MqttSource,
    MqttStatus, SinkError, Subscription,
};
use vega_core::{Asset, Clock, ConnectorKind, Id, Point, SyncMode};
use vega_ingest::{DedupKey, IngestError, IngestService};

use crate::metrics::{Metrics, ReasonLabels};

/// The lease of the one node consuming an MQTT connection.
pub fn consumer_lease_name(connection: &Id) -> String {
    format!("mqtt:{connection}")
}

/// A running consumer: its handle, when its lease was last renewed, and
/// what its connection and assets looked like when it started.
struct Running {
    handle: MqttHandle,
    renewed: Instant,
    fingerprint: String,
}

/// Who this node is, for the consumer leases.
pub struct ConsumerIdentity {
    pub node: Id,
    pub clock: Arc<dyn Clock>,
    pub lease_ttl: Duration,
}

/// The running consumers, by connection.
pub struct MqttStreams {
    catalog: Arc<dyn Catalog>,
    ingest: Arc<IngestService>,
    metrics: Arc<Metrics>,
    me: ConsumerIdentity,
    consumers: tokio::sync::Mutex<HashMap<Id, Running>>,
    /// Status of the last consumer of each connection (kept while none runs).
    last: std::sync::Mutex<HashMap<Id, MqttStatus>>,
    /// The connections' circuit breakers: every attempt to reach a broker
    /// passes its connection's (set once at start).
    breakers: std::sync::OnceLock<Arc<vega_resilience::BreakerRegistry>>,
}

/// A connection's circuit breaker in front of its consumer's attempts to
/// reach the broker: an open breaker holds attempts back until trial calls
/// are let through.
struct BreakerGate {
    breaker: Arc<vega_resilience::CircuitBreaker>,
    ticker: Arc<dyn vega_resilience::Ticker>,
}

struct GateAttempt {
    permit: vega_resilience::Permit,
    ticker: Arc<dyn vega_resilience::Ticker>,
    started: std::time::Duration,
}

impl vega_connector_mqtt::ConnectGuard for BreakerGate {
    fn admit(
        &self,
    ) -> Result<Box<dyn vega_connector_mqtt::ConnectAttempt>, (std::time::Duration, String)> {
        match self.breaker.try_acquire() {
            Ok(permit) => Ok(Box::new(GateAttempt {
                permit,
                ticker: self.ticker.clone(),
                started: self.ticker.now(),
            })),
            Err(rejected) => {
                let wait = rejected
                    .retry_after
                    .unwrap_or(std::time::Duration::from_secs(1));
                Err((
                    wait,
                    format!(
                        "the circuit breaker of connection '{}' is {}: the broker failed too often lately; the next attempt waits",
                        rejected.service, rejected.state
                    ),
                ))
            }
        }
    }
}

impl vega_connector_mqtt::ConnectAttempt for GateAttempt {
    fn connected(self: Box<Self>) {
        let took = self.ticker.now().saturating_sub(self.started);
        self.permit.success(took);
    }
    fn failed(self: Box<Self>) {
        let took = self.ticker.now().saturating_sub(self.started);
        self.permit.failure(took);
    }
}

impl MqttStreams {
    /// Puts every consumer's attempts to reach its broker behind its
    /// connection's breaker (once; later calls are ignored).
    pub fn set_breakers(&self, breakers: Arc<vega_resilience::BreakerRegistry>) {
        let _ = self.breakers.set(breakers);
    }

    pub fn new(
        catalog: Arc<dyn Catalog>,
        ingest: Arc<IngestService>,
        metrics: Arc<Metrics>,
        me: ConsumerIdentity,
    ) -> Self {
        Self {
            catalog,
            ingest,
            metrics,
            me,
            consumers: tokio::sync::Mutex::new(HashMap::new()),
            last: std::sync::Mutex::new(HashMap::new()),
            breakers: std::sync::OnceLock::new(),
        }
    }

    /// Renews the lease of every consumer this node runs, stops those whose
    /// lease is gone, restarts those whose connection or assets changed
    /// (on any node), and starts consumers for connections no node
    /// consumes. Called on every heartbeat.
    pub async fn tick(&self) {
        let Ok(connections) = self.catalog.list_connections().await else {
            self.stop_unrenewed().await;
            return;
        };
        let Ok(assets) = self.catalog.list_assets().await else {
            self.stop_unrenewed().await;
            return;
        };
        let wanted: Vec<(Id, String)> = connections
            .iter()
            .filter(|c| c.kind == ConnectorKind::Mqtt && c.enabled)
            .filter_map(|c| {
                let fp = fingerprint(c, &assets)?;
                Some((c.id.clone(), fp))
            })
            .collect();
        // Ours: renew, or stop.
        let running: Vec<(Id, String)> = self
            .consumers
            .lock()
            .await
            .iter()
            .map(|(id, r)| (id.clone(), r.fingerprint.clone()))
            .collect();
        for (id, fp) in &running {
            let still_wanted = wanted.iter().find(|(w, _)| w == id);
            match still_wanted {
                None => self.reconcile(id).await,
                Some((_, now)) if now != fp => self.reconcile(id).await,
                Some(_) => self.renew(id).await,
            }
        }
        // Not consumed by anyone: take over (once stopped nodes' logs, and
        // their delivery keys, are adopted).
        let idle: Vec<&Id> = wanted
            .iter()
            .map(|(id, _)| id)
            .filter(|id| !running.iter().any(|(r, _)| r == *id))
            .collect();
        if idle.is_empty() || self.logs_pending_adoption().await {
            return;
        }
        for id in idle {
            self.start_if_idle(id).await;
        }
    }

    /// Starts the consumer of `connection` unless one runs already (an API
    /// change may have started it since the caller looked).
    async fn start_if_idle(&self, connection: &Id) {
        if self.consumers.lock().await.contains_key(connection) {
            return;
        }
        self.reconcile(connection).await;
    }

    /// Whether a stopped node's log still waits to be adopted.
    async fn logs_pending_adoption(&self) -> bool {
        let Ok(others) = self.ingest.other_logs().await else {
            return true;
        };
        if others.is_empty() {
            return false;
        }
        let Ok(leases) = self.catalog.list_leases().await else {
            return true;
        };
        let now = self.me.clock.now();
        others.iter().any(|log| {
            let owner = log.node();
            let name = vega_ingest::log_lease_name(owner);
            !leases
                .iter()
                .any(|l| l.name == name && l.holder.as_str() == owner && l.expires_at >= now)
        })
    }

    /// Renews the lease of the consumer of `id`; stops it when the lease is
    /// gone.
    async fn renew(&self, id: &Id) {
        let started = Instant::now();
        let renewed = self
            .catalog
            .acquire_lease(
                &consumer_lease_name(id),
                &self.me.node,
                self.me.lease_ttl,
                self.me.clock.now(),
            )
            .await;
        let mut consumers = self.consumers.lock().await;
        match renewed {
            Ok(Some(_)) => {
                if let Some(r) = consumers.get_mut(id) {
                    r.renewed = started;
                }
            }
            Ok(None) => {
                if let Some(old) = consumers.remove(id) {
                    tracing::warn!(connection = %id, "another node consumes this MQTT connection now; stopping here");
                    self.remember(id, old.handle.status());
                    old.handle.shutdown().await;
                }
            }
            Err(e) => {
                let stale = consumers
                    .get(id)
                    .is_some_and(|r| r.renewed.elapsed() >= self.me.lease_ttl);
                if stale {
                    if let Some(old) = consumers.remove(id) {
                        tracing::warn!(connection = %id, error = %e,
                            "the MQTT consumer lease could not be renewed for a TTL; stopping the consumer");
                        self.remember(id, old.handle.status());
                        old.handle.shutdown().await;
                    }
                }
            }
        }
    }

    /// The catalog is unreachable: stops consumers whose lease may have
    /// passed to another node by now.
    async fn stop_unrenewed(&self) {
        let ids: Vec<Id> = self.consumers.lock().await.keys().cloned().collect();
        for id in ids {
            self.renew(&id).await;
        }
    }

    /// Starts a consumer for every enabled MQTT connection with stream
    /// assets that no consumer runs for yet (and whose lease this node
    /// gets).
    pub async fn start_all(&self) {
        let Ok(connections) = self.catalog.list_connections().await else {
            tracing::error!("listing connections for MQTT consumers failed");
            return;
        };
        for c in connections
            .into_iter()
            .filter(|c| c.kind == ConnectorKind::Mqtt)
        {
            self.start_if_idle(&c.id).await;
        }
    }

    /// Brings the consumer of `connection` in line with the catalog: stops
    /// the running one (if any) and starts a new one when the connection
    /// exists, is enabled and has stream assets.
    pub async fn reconcile(&self, connection: &Id) {
        let mut consumers = self.consumers.lock().await;
        let had = consumers.remove(connection);
        if let Some(old) = &had {
            self.remember(connection, old.handle.status());
        }
        if let Some(old) = had {
            old.handle.shutdown().await;
        }
        let Ok(conn) = self.catalog.get_connection(connection).await else {
            self.last
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(connection);
            self.release(connection).await;
            return;
        };
        if conn.kind != ConnectorKind::Mqtt || !conn.enabled {
            self.release(connection).await;
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
            .iter()
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
            self.release(connection).await;
            return;
        }
        let Some(fingerprint) = fingerprint(&conn, &assets) else {
            return;
        };
        // One node consumes a connection: the holder of its lease.
        let started = Instant::now();
        let lease = self
            .catalog
            .acquire_lease(
                &consumer_lease_name(connection),
                &self.me.node,
                self.me.lease_ttl,
                self.me.clock.now(),
            )
            .await;
        match lease {
            Ok(Some(_)) => {
                // Redeliveries of messages a stopped node had stored are
                // recognised by the keys its adopted log left.
                if let Err(e) = self.ingest.load_adopted_keys().await {
                    tracing::warn!(error = %e, "loading the delivery keys of adopted logs failed");
                }
            }
            Ok(None) => {
                tracing::debug!(connection = %conn.name, "another node consumes this MQTT connection");
                return;
            }
            Err(e) => {
                tracing::warn!(connection = %conn.name, error = %e, "taking the MQTT consumer lease failed; retrying at the next heartbeat");
                return;
            }
        }
        tracing::info!(connection = %conn.name, assets = subs.len(), "starting the MQTT consumer");
        let sink = Arc::new(IngestSink {
            catalog: self.catalog.clone(),
            ingest: self.ingest.clone(),
            metrics: self.metrics.clone(),
            assets: std::sync::Mutex::new(HashMap::new()),
        });
        let handle = match self.breakers.get() {
            Some(breakers) => MqttConsumer::spawn_guarded(
                &conn.name,
                params,
                subs,
                sink,
                Arc::new(BreakerGate {
                    breaker: breakers.get_or_create(&conn.name),
                    ticker: Arc::new(vega_resilience::SystemTicker::new()),
                }),
            ),
            None => MqttConsumer::spawn(&conn.name, params, subs, sink),
        };
        consumers.insert(
            conn.id.clone(),
            Running {
                handle,
                renewed: started,
                fingerprint,
            },
        );
    }

    /// Gives the consumer lease of `connection` up, if this node holds it.
    async fn release(&self, connection: &Id) {
        let _ = self
            .catalog
            .release_lease(
                &consumer_lease_name(connection),
                &self.me.node,
                self.me.clock.now(),
            )
            .await;
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
            .map(|r| r.handle.status())
    }

    /// Every running consumer's status.
    pub async fn statuses(&self) -> Vec<MqttStatus> {
        self.consumers
            .lock()
            .await
            .values()
            .map(|r| r.handle.status())
            .collect()
    }

    /// Stops every consumer; nothing more is acknowledged.
    pub async fn shutdown(&self) {
        let mut consumers = self.consumers.lock().await;
        for (id, running) in consumers.drain() {
            running.handle.shutdown().await;
            let _ = self
                .catalog
                .release_lease(
                    &consumer_lease_name(&id),
                    &self.me.node,
                    self.me.clock.now(),
                )
                .await;
        }
    }
}

/// What a consumer depends on: the connection as it was last updated and
/// its stream assets; `None` when it has none (nothing to consume).
fn fingerprint(connection: &vega_core::Connection, assets: &[Asset]) -> Option<String> {
    let mut parts: Vec<String> = assets
        .iter()
        .filter(|a| a.connection_id == connection.id && a.sync_mode == SyncMode::Stream)
        .map(|a| format!("{}={}", a.id, a.source))
        .collect();
    if parts.is_empty() {
        return None;
    }
    parts.sort();
    Some(format!(
        "{}@{}:{}",
        connection.id,
        vega_core::clock::to_catalog_time(connection.updated_at),
        parts.join(",")
    ))
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
