//! This node in the cluster: a heartbeat in the catalog's node registry
//! every `cluster.heartbeat_interval`, and the scheduler lease — the node
//! holding it is the one scheduler leader; the others take it over within
//! `cluster.lease_ttl` of the leader's last renewal. A node that cannot
//! reach the catalog (or fails to renew in time) stops scheduling at once;
//! the lease's fencing token grows whenever it changes hands.
//!
//! Each beat also renews the leases of the sync jobs this node runs and
//! claims the running jobs of nodes whose leases expired, which then run
//! again here (`SyncService::renew_leases`, `SyncService::claim_orphans`).
//!
//! On a single node (SQLite catalog) the same code runs and the node is
//! always the leader.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use vega_catalog::{Catalog, LeaseFence};
use vega_core::{Clock, Lease, NodeInfo};
use vega_ingest::IngestService;
use vega_sync::SyncService;

/// The lease of the one node that runs the scheduler.
pub const SCHEDULER_LEASE: &str = "scheduler";

/// The exit status of a node whose write-ahead log another node took over
/// (EX_SOFTWARE would say "bug"; this is a fencing stop, so a distinct code
/// a supervisor can tell apart).
pub const LOG_TAKEN_OVER_EXIT_CODE: i32 = 75;

/// Takes the lease of this node's own shared log before the log is opened.
/// Another node may hold it while it adopts this node's previous log (this
/// node was stopped); then this waits until that ends, at most `wait`.
pub async fn take_own_log_lease(
    catalog: &dyn Catalog,
    clock: &dyn Clock,
    node: &vega_core::Id,
    ttl: Duration,
    wait: Duration,
) -> Result<LeaseFence, String> {
    let name = vega_ingest::log_lease_name(node.as_str());
    let deadline = Instant::now() + wait;
    loop {
        match catalog.acquire_lease(&name, node, ttl, clock.now()).await {
            Ok(Some(lease)) => {
                return Ok(LeaseFence {
                    name,
                    holder: node.clone(),
                    token: lease.token,
                })
            }
            Ok(None) if Instant::now() < deadline => {
                tracing::info!(lease = %name, "another node is taking over this node's previous write-ahead log; waiting");
            }
            Ok(None) => {
                return Err(format!(
                "the lease {name} of this node's write-ahead log stayed with another node for {}s",
                wait.as_secs()
            ))
            }
            Err(e) if Instant::now() < deadline => {
                tracing::warn!(error = %e, "taking the lease of this node's write-ahead log failed; retrying")
            }
            Err(e) => return Err(format!("taking the lease {name}: {e}")),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub struct NodeAgent {
    pub catalog: Arc<dyn Catalog>,
    /// Its job leases are renewed, and stopped nodes' jobs claimed, on
    /// every beat.
    pub sync: Arc<SyncService>,
    /// Changes other nodes made to the catalog, applied on every beat.
    pub watch: crate::watch::CatalogWatch,
    /// Streaming ingest: the lease of this node's shared log is renewed,
    /// and stopped nodes' logs adopted, on every beat.
    pub ingest: Arc<IngestService>,
    /// The lease of this node's own log (shared storage only).
    pub own_log: Option<LeaseFence>,
    /// MQTT consumers: their leases are renewed and idle connections taken
    /// over on every beat.
    pub mqtt: Arc<crate::mqtt::MqttStreams>,
    pub clock: Arc<dyn Clock>,
    pub node: Mutex<NodeInfo>,
    pub heartbeat_interval: Duration,
    pub lease_ttl: Duration,
    /// True while this node holds the scheduler lease (and renewed it less
    /// than a TTL ago).
    pub leader: Arc<AtomicBool>,
    pub scheduler_lease: Mutex<Option<Lease>>,
}

impl NodeAgent {
    /// One heartbeat and one try at the scheduler lease.
    pub async fn beat(&self) {
        let node = {
            let mut node = self.node.lock().unwrap_or_else(|e| e.into_inner());
            node.heartbeat_at = self.clock.now();
            node.clone()
        };
        let started = Instant::now();
        let alive = match self.catalog.heartbeat_node(&node).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "node heartbeat failed");
                false
            }
        };
        self.sync.renew_leases().await;
        self.renew_own_log(started).await;
        if alive {
            self.sync.claim_orphans().await;
            self.adopt_logs().await;
            self.watch.poll().await;
        }
        self.mqtt.tick().await;
        let lease = self
            .catalog
            .acquire_lease(SCHEDULER_LEASE, &node.id, self.lease_ttl, self.clock.now())
            .await;
        // A renewal that took longer than the lease may already belong to
        // another node: do not trust it.
        let in_time = started.elapsed() < self.lease_ttl;
        let held = match lease {
            Ok(Some(lease)) if in_time => Some(lease),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(error = %e, "renewing the scheduler lease failed; not scheduling");
                None
            }
        };
        let was = self.leader.swap(held.is_some(), Ordering::SeqCst);
        match (&held, was) {
            (Some(lease), false) => {
                tracing::info!(token = lease.token, "this node is now the scheduler leader")
            }
            (None, true) => tracing::warn!("this node is no longer the scheduler leader"),
            _ => {}
        }
        *self
            .scheduler_lease
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = held;
    }

    /// Renews the lease of this node's shared log. While renewals fail,
    /// writes are refused once the last renewal is a TTL old (the ingest
    /// service checks). A lease found in other hands means another node
    /// took this node's log over while it was cut off: what this node
    /// buffers is in segments now, so it stops at once (a restart begins
    /// with a fresh log) rather than serve or flush those rows twice.
    async fn renew_own_log(&self, started: Instant) {
        let Some(fence) = &self.own_log else {
            return;
        };
        let renewed = self
            .catalog
            .acquire_lease(&fence.name, &fence.holder, self.lease_ttl, self.clock.now())
            .await;
        match renewed {
            Ok(Some(lease)) if lease.token == fence.token => {
                if started.elapsed() < self.lease_ttl {
                    self.ingest
                        .set_own_lease(fence.clone(), started + self.lease_ttl);
                }
            }
            Ok(_) => {
                tracing::error!(lease = %fence.name,
                    "another node took this node's write-ahead log over while this node could not reach the catalog; stopping so that a restart begins afresh");
                std::process::exit(LOG_TAKEN_OVER_EXIT_CODE);
            }
            Err(e) => {
                tracing::warn!(error = %e, "renewing the lease of this node's write-ahead log failed")
            }
        }
    }

    /// Takes over the logs of nodes whose log lease expired: their
    /// acknowledged, unflushed rows go to segments here.
    async fn adopt_logs(&self) {
        let logs = match self.ingest.other_logs().await {
            Ok(logs) => logs,
            Err(e) => {
                tracing::warn!(error = %e, "listing other nodes' write-ahead logs failed");
                return;
            }
        };
        for log in logs {
            let wal_id = log.node().to_string();
            let name = vega_ingest::log_lease_name(&wal_id);
            let holder = self.node_id();
            let lease = match self
                .catalog
                .acquire_lease(&name, &holder, self.lease_ttl, self.clock.now())
                .await
            {
                Ok(Some(lease)) => lease,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "taking the lease of a stopped node's log failed");
                    continue;
                }
            };
            let fence = LeaseFence {
                name: name.clone(),
                holder: holder.clone(),
                token: lease.token,
            };
            let started = Instant::now();
            match self.ingest.adopt_log(&log, fence).await {
                Ok(report) => {
                    tracing::warn!(log = %wal_id, records = report.records, rows = report.rows,
                        assets = report.assets, duration_ms = started.elapsed().as_millis() as u64,
                        "took over the write-ahead log of a node that stopped renewing its lease");
                    let _ = self
                        .catalog
                        .release_lease(&name, &holder, self.clock.now())
                        .await;
                }
                Err(e) => tracing::error!(log = %wal_id, error = %e,
                    "taking over a stopped node's write-ahead log failed; retrying at the next heartbeat"),
            }
        }
    }

    fn node_id(&self) -> vega_core::Id {
        self.node
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .id
            .clone()
    }

    /// Beats until `stop` turns true; then gives the lease up and leaves
    /// the registry, so another node takes over at once.
    pub fn spawn(self: Arc<Self>, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                if *stop.borrow() {
                    break;
                }
                self.beat().await;
                tokio::select! {
                    _ = tokio::time::sleep(self.heartbeat_interval) => {}
                    _ = stop.changed() => {}
                }
            }
            self.leader.store(false, Ordering::SeqCst);
            let id = self
                .node
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .id
                .clone();
            if let Err(e) = self.catalog.remove_node(&id).await {
                tracing::warn!(error = %e, "leaving the node registry failed; the lease expires by itself");
            }
        })
    }
}
