//! Keeps this node's engine in step with changes other nodes make to the
//! shared catalog: on every heartbeat the assets are listed (one cheap
//! query, no manifests), and an asset whose active version or update time
//! moved since the last look has its view re-pointed at its active version
//! (a sync or rollback on another node, or another node's flush of
//! streamed rows); an asset deleted elsewhere is dropped from the engine.
//! So every node serves what any node published within about one
//! heartbeat interval. Live rows of this node's own stream writes stay in
//! the view (re-pointing keeps them).
//!
//! The runtime settings other nodes change ride on the same look: the
//! rate limits, the result cache's clear marker and operators'
//! circuit-breaker actions (see `ratelimit.rs`, `cache.rs`, `breakers.rs`).
//!
//! On a single node the same code runs and finds its own changes already
//! applied: it re-points nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use vega_catalog::{Catalog, CatalogError};
use vega_core::{Asset, Id};
use vega_ingest::IngestService;
use vega_query::QueryEngine;
use vega_storage::SegmentStore;

use crate::cache::ResultCache;
use crate::publish::register_version;
use crate::ratelimit::RateLimiter;

/// What an asset looked like at a look: its active version and update time.
type Seen = (Option<u32>, DateTime<Utc>);

pub struct CatalogWatch {
    pub catalog: Arc<dyn Catalog>,
    pub engine: Arc<QueryEngine>,
    pub store: Arc<SegmentStore>,
    pub ingest: Arc<IngestService>,
    /// What each asset looked like at the last look (active version,
    /// update time).
    pub seen: Mutex<HashMap<Id, Seen>>,
    /// Runtime settings kept in step with the catalog.
    pub settings: Option<(Arc<ResultCache>, Arc<RateLimiter>)>,
    /// Operators' circuit-breaker actions, kept in step with the catalog.
    pub breakers: Option<Arc<crate::breakers::Breakers>>,
}

impl CatalogWatch {
    pub fn new(
        catalog: Arc<dyn Catalog>,
        engine: Arc<QueryEngine>,
        store: Arc<SegmentStore>,
        ingest: Arc<IngestService>,
    ) -> Self {
        Self {
            catalog,
            engine,
            store,
            ingest,
            seen: Mutex::new(HashMap::new()),
            settings: None,
            breakers: None,
        }
    }

    /// Also keeps the result cache's clear marker and the rate limits in
    /// step with the catalog.
    pub fn with_settings(mut self, cache: Arc<ResultCache>, limiter: Arc<RateLimiter>) -> Self {
        self.settings = Some((cache, limiter));
        self
    }

    /// Also applies the circuit-breaker actions operators took on any node.
    pub fn with_breakers(mut self, breakers: Arc<crate::breakers::Breakers>) -> Self {
        self.breakers = Some(breakers);
        self
    }

    /// Applies the runtime settings another node may have changed.
    pub async fn poll_settings(&self) {
        if let Some(breakers) = &self.breakers {
            match self.catalog.get_setting(crate::breakers::SETTING).await {
                Ok(value) => breakers.apply_setting(value.as_ref()),
                Err(e) => tracing::debug!(error = %e, "reading the circuit-breaker actions failed"),
            }
        }
        let Some((cache, limiter)) = &self.settings else {
            return;
        };
        match self.catalog.get_setting(crate::ratelimit::SETTING).await {
            Ok(value) => limiter.apply_setting(value.as_ref(), std::time::Instant::now()),
            Err(e) => tracing::debug!(error = %e, "reading the rate limits failed"),
        }
        match self.catalog.get_setting(crate::cache::CLEAR_SETTING).await {
            Ok(marker) => {
                cache.observe_clear_marker(marker);
            }
            Err(e) => tracing::debug!(error = %e, "reading the cache clear marker failed"),
        }
    }

    /// One look at the catalog; applies what changed.
    pub async fn poll(&self) {
        self.poll_settings().await;
        let assets = match self.catalog.list_assets().await {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(error = %e, "listing assets for changes failed");
                return;
            }
        };
        let changed: Vec<Asset> = {
            let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            assets
                .iter()
                .filter(|a| match seen.get(&a.id) {
                    None => true,
                    // An older snapshot than the last look (a read from a
                    // replica lagging more than the previous one) is not a
                    // change: never go back.
                    Some((_, at)) if a.updated_at < *at => false,
                    Some(last) => *last != (a.active_version, a.updated_at),
                })
                .cloned()
                .collect()
        };
        let gone: Vec<Id> = {
            let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            seen.keys()
                .filter(|id| !assets.iter().any(|a| &a.id == *id))
                .cloned()
                .collect()
        };
        for asset in &changed {
            if self.apply(asset).await {
                self.seen
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(asset.id.clone(), (asset.active_version, asset.updated_at));
            }
        }
        if gone.is_empty() {
            return;
        }
        let registered = self.engine.registered();
        for id in gone {
            self.seen
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
            // The asset is gone from the catalog: its name is free, so any
            // view under a name no remaining asset has is dropped.
            for view in &registered {
                let still = assets
                    .iter()
                    .any(|a| a.namespace == view.namespace && a.name == view.name);
                if !still {
                    tracing::info!(asset = %format!("{}.{}", view.namespace, view.name),
                        "asset deleted on another node; dropping its view");
                    let _ = self.engine.unregister(&view.namespace, &view.name);
                }
            }
        }
    }

    /// Re-points `asset`'s view when the engine serves something older than
    /// its active version. Returns whether the asset is now in step.
    async fn apply(&self, asset: &Asset) -> bool {
        let registered = self
            .engine
            .registered()
            .into_iter()
            .find(|v| v.namespace == asset.namespace && v.name == asset.name);
        let Some(number) = asset.active_version else {
            return true;
        };
        let version = match self.catalog.get_version(&asset.id, number).await {
            Ok(v) => v,
            Err(CatalogError::NotFound { .. }) => return false,
            Err(e) => {
                tracing::debug!(asset = %asset.qualified_name(), error = %e, "reading a changed asset's version failed");
                return false;
            }
        };
        // Already served: the same version with at least these files (this
        // node made the change, or a flush here is ahead of this read).
        if let Some(view) = &registered {
            if view.version == number && view.files.len() >= version.manifest.segments.len() {
                return true;
            }
        }
        // Files another node wrote: fetched from the object store, if one
        // holds them, before the view points at them.
        if let Err(e) = self.store.pull(&version.manifest).await {
            tracing::warn!(asset = %asset.qualified_name(), version = %version.label(), error = %e,
                "fetching the files of a version published on another node failed; retrying at the next heartbeat");
            return false;
        }
        match register_version(&self.engine, &self.store, asset, &version) {
            Ok(()) => {
                tracing::info!(asset = %asset.qualified_name(), version = %version.label(),
                    segments = version.manifest.segments.len(), "serving a version published on another node");
                // A stream asset's cached schema follows the new version.
                self.ingest.refresh(asset, &version);
                true
            }
            Err(e) => {
                tracing::warn!(asset = %asset.qualified_name(), version = %version.label(), error = %e,
                    "the active version published on another node cannot be served here yet");
                false
            }
        }
    }
}
