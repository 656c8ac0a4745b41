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
use vega_catalog::Catalog;
use vega_core::{Clock, Lease, NodeInfo};
use vega_sync::SyncService;

/// The lease of the one node that runs the scheduler.
pub const SCHEDULER_LEASE: &str = "scheduler";

pub struct NodeAgent {
    pub catalog: Arc<dyn Catalog>,
    /// Its job leases are renewed, and stopped nodes' jobs claimed, on
    /// every beat.
    pub sync: Arc<SyncService>,
    /// Changes other nodes made to the catalog, applied on every beat.
    pub watch: crate::watch::CatalogWatch,
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
        if alive {
            self.sync.claim_orphans().await;
            self.watch.poll().await;
        }
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
