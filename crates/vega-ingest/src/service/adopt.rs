//! Taking over another node's write-ahead log (shared storage): when a node
//! stops renewing the lease of its log (`wal:<node id>`), a survivor takes
//! the lease, replays the log's records that the asset watermarks do not
//! cover yet (`wals.<node id>`), flushes them to segments under that
//! lease — so a flush by the old owner, should it come back, is refused —
//! keeps the log's delivery keys (MQTT redeliveries of those messages are
//! then recognised), and removes the log. Acknowledged rows of a dead node
//! are thus served again within about a lease TTL, and never twice.
//!
//! The node's own log is held the same way: it takes its lease before it
//! opens the log, renews it on every heartbeat, refuses writes while the
//! lease is not known to be held, and fences its own flushes with it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use arrow::record_batch::RecordBatch;
use vega_catalog::{CatalogError, LeaseFence, StreamFlush};
use vega_core::{Id, Point, SyncMode};
use vega_storage::{schema_from_manifest, WriteOptions};

use super::{flushed_seq, lock, wal_error, IngestService, RECENT_FILE};
use crate::codec;
use crate::error::IngestError;
use crate::schema::{conform, AssetSchema};

/// Files beside the logs holding the delivery keys of adopted logs.
const ADOPTED_KEYS_PREFIX: &str = "adopted-keys-";

/// The (session, content) delivery keys saved in `path`; none if missing.
fn read_keys(path: &Path) -> Result<Vec<(u64, u64)>, IngestError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(IngestError::Internal(format!(
                "reading {}: {e}",
                path.display()
            )))
        }
    };
    Ok(super::decode_keys(&bytes))
}

/// The lease that guards the write-ahead log of node `id`.
pub fn log_lease_name(id: &str) -> String {
    format!("wal:{id}")
}

/// Another node's log, waiting to be adopted.
#[derive(Debug, Clone)]
pub enum OtherLog {
    /// A directory in the shared log root.
    Dir { node: String, dir: PathBuf },
    /// Objects in the bucket.
    Objects(super::ObjectLog),
}

impl OtherLog {
    /// The id of the node that wrote it.
    pub fn node(&self) -> &str {
        match self {
            OtherLog::Dir { node, .. } => node,
            OtherLog::Objects(log) => &log.node,
        }
    }
}

/// What adopting a log did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdoptReport {
    /// Records replayed into segments (those no watermark covered yet).
    pub records: u64,
    pub rows: u64,
    /// Records already flushed by their own node.
    pub already_flushed: u64,
    /// Stream assets that got a segment.
    pub assets: usize,
}

/// The point in time until which this node knows it holds its own log's
/// lease, and the lease itself (for fencing flushes).
#[derive(Debug, Clone)]
pub(crate) struct OwnLease {
    pub fence: LeaseFence,
    pub valid_until: Instant,
}

impl IngestService {
    /// The logs of other nodes: in the object store when logs are kept
    /// there, else the `<root>/<node id>` directories beside this node's
    /// own in the shared log root. Logs already adopted are not listed.
    pub async fn other_logs(&self) -> Result<Vec<OtherLog>, IngestError> {
        let Some(own) = &self.options.wal_id else {
            return Ok(Vec::new());
        };
        if let Some(logs) = &self.options.object_logs {
            return Ok(logs
                .others(own)
                .await?
                .into_iter()
                .map(OtherLog::Objects)
                .collect());
        }
        let Some(root) = self.options.wal_dir.parent() else {
            return Ok(Vec::new());
        };
        let Ok(entries) = std::fs::read_dir(root) else {
            return Ok(Vec::new());
        };
        let mut logs: Vec<OtherLog> = entries
            .flatten()
            .filter(|e| e.path().is_dir())
            .filter_map(|e| {
                let name = e.file_name().to_str()?.to_string();
                let is_node = Id::parse(vega_core::IdKind::Node, &name).is_some();
                (is_node && &name != own).then(|| OtherLog::Dir {
                    node: name,
                    dir: e.path(),
                })
            })
            .collect();
        logs.sort_by(|a, b| a.node().cmp(b.node()));
        Ok(logs)
    }

    /// Records that this node holds its own log's lease until
    /// `valid_until` (a renewal succeeded); writes are accepted and flushes
    /// fenced with it until then.
    pub fn set_own_lease(&self, fence: LeaseFence, valid_until: Instant) {
        *lock(&self.own_lease) = Some(OwnLease { fence, valid_until });
    }

    /// Whether writes may be acknowledged: always with the embedded log;
    /// with a shared log only while its lease is known to be held.
    pub(crate) fn check_own_lease(&self) -> Result<Option<LeaseFence>, IngestError> {
        if self.options.wal_id.is_none() {
            return Ok(None);
        }
        match &*lock(&self.own_lease) {
            Some(l) if l.valid_until > Instant::now() => Ok(Some(l.fence.clone())),
            _ => Err(IngestError::Unavailable(
                "this node cannot confirm the lease of its write-ahead log (the catalog is unreachable); writes are refused until it can".into(),
            )),
        }
    }

    /// Replays `log` (of node `wal_id`, whose lease this node holds under
    /// `fence`) into segments, then removes it. Nothing is removed unless
    /// every asset's records are committed.
    pub async fn adopt_log(
        &self,
        log: &OtherLog,
        fence: LeaseFence,
    ) -> Result<AdoptReport, IngestError> {
        let wal_id = log.node();
        // Read without the log's lock: its owner may still hold it open
        // (cut off from the catalog, not dead); it acknowledges nothing
        // more, as it no longer holds the lease.
        let (records, keys) = match log {
            OtherLog::Dir { dir, .. } => {
                let read_dir = dir.to_path_buf();
                let records =
                    tokio::task::spawn_blocking(move || vega_wal::read_records(&read_dir))
                        .await
                        .map_err(|e| IngestError::Internal(format!("reading an adopted log: {e}")))?
                        .map_err(wal_error)?;
                (records, read_keys(&dir.join(RECENT_FILE))?)
            }
            OtherLog::Objects(objects) => {
                let logs = self.object_logs()?;
                let records = logs.read(objects).await?;
                (records, super::decode_keys(&logs.read_keys(wal_id).await?))
            }
        };
        let mut report = AdoptReport::default();
        // Records by asset, in log order.
        let mut by_asset: BTreeMap<Id, Vec<(u64, codec::WalEntry)>> = BTreeMap::new();
        for record in records {
            let entry = codec::decode(&record.payload).map_err(|e| {
                IngestError::Internal(format!("record {} of the log of {wal_id}: {e}", record.seq))
            })?;
            if let Some(key) = entry.key {
                lock(&self.recent).insert(key.session, key.content);
            }
            by_asset
                .entry(entry.asset.clone())
                .or_default()
                .push((record.seq, entry));
        }
        {
            let mut recent = lock(&self.recent);
            for (session, content) in &keys {
                recent.insert(*session, *content);
            }
        }
        // The log's keys, for whichever node consumes its MQTT connections
        // next (kept beside the logs; see `load_adopted_keys`).
        self.save_adopted_keys(wal_id, Vec::new()).await?;
        let mut adopted_through = 0;
        for (asset_id, entries) in by_asset {
            let asset = match self.catalog.get_asset(&asset_id).await {
                Ok(a) if a.sync_mode == SyncMode::Stream => a,
                Ok(_) | Err(CatalogError::NotFound { .. }) => continue,
                Err(e) => return Err(e.into()),
            };
            let flushed = flushed_seq(&asset, Some(wal_id));
            let mut schema = match asset.active_version {
                Some(n) => {
                    let v = self.catalog.get_version(&asset.id, n).await?;
                    AssetSchema::from_arrow(
                        &schema_from_manifest(&v.manifest)
                            .map_err(|e| IngestError::Internal(e.to_string()))?,
                    )
                }
                None => AssetSchema::new(),
            };
            let name = asset.qualified_name();
            let mut points: Vec<Point> = Vec::new();
            let mut through = 0;
            for (seq, entry) in entries {
                if seq <= flushed {
                    report.already_flushed += 1;
                    continue;
                }
                report.records += 1;
                through = through.max(seq);
                adopted_through = adopted_through.max(seq);
                for p in entry.points {
                    match schema.admit(&name, &p) {
                        Ok(()) => points.push(p),
                        Err(reason) => tracing::error!(asset = %name, seq, %reason,
                            "a point of an adopted log no longer fits its asset; dropped"),
                    }
                }
            }
            if through == 0 {
                continue;
            }
            let batch = schema
                .batch(&points)
                .map_err(|e| IngestError::Internal(format!("rows of an adopted log: {e}")))?;
            let arrow = schema.arrow();
            let staging = format!("ingest-adopted-{wal_id}-{through:020}");
            let hold = self.store.hold(&format!("{}/{staging}", asset.id));
            let manifest = self
                .stage_segment(&asset.id, &staging, arrow, vec![batch])
                .await?;
            let version = self
                .catalog
                .flush_stream(
                    &asset.id,
                    StreamFlush {
                        wal: Some(wal_id.to_string()),
                        through_seq: through,
                        schema: manifest.schema,
                        segments: manifest.segments,
                        lease: Some(fence.clone()),
                    },
                    self.clock.now(),
                )
                .await?;
            drop(hold);
            report.rows += points.len() as u64;
            report.assets += 1;
            let asset = self.catalog.get_asset(&asset.id).await?;
            self.refresh(&asset, &version);
            self.live
                .published(&asset, &version)
                .map_err(IngestError::Internal)?;
        }
        // The keys now live in this node's own file.
        if !lock(&self.recent).is_empty() {
            self.save_recent()?;
        }
        match log {
            OtherLog::Dir { dir, .. } => {
                let dir = dir.to_path_buf();
                tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&dir))
                    .await
                    .map_err(|e| IngestError::Internal(format!("removing an adopted log: {e}")))?
                    .map_err(|e| {
                        IngestError::Unavailable(format!("removing an adopted log: {e}"))
                    })?;
            }
            OtherLog::Objects(objects) => {
                let by = self.options.wal_id.as_deref().unwrap_or_default();
                self.object_logs()?
                    .finish_adoption(objects, adopted_through, by, self.clock.now())
                    .await?;
            }
        }
        Ok(report)
    }

    /// Loads the delivery keys that adopted logs left beside the logs
    /// (`<log root>/adopted-keys-<node id>`, a file or an object): called
    /// before this node starts consuming an MQTT connection another node
    /// may have consumed.
    pub async fn load_adopted_keys(&self) -> Result<(), IngestError> {
        if self.options.wal_id.is_none() {
            return Ok(());
        }
        if let Some(logs) = &self.options.object_logs {
            let saved = logs.adopted_keys().await?;
            let mut recent = lock(&self.recent);
            for bytes in saved {
                for (session, content) in super::decode_keys(&bytes) {
                    recent.insert(session, content);
                }
            }
            return Ok(());
        }
        let Some(root) = self.shared_log_root() else {
            return Ok(());
        };
        let Ok(entries) = std::fs::read_dir(root) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if name
                .to_str()
                .is_some_and(|n| n.starts_with(ADOPTED_KEYS_PREFIX))
            {
                self.merge_recent_file(&entry.path())?;
            }
        }
        Ok(())
    }

    fn shared_log_root(&self) -> Option<&Path> {
        self.options.wal_id.as_ref()?;
        self.options.wal_dir.parent()
    }

    fn object_logs(&self) -> Result<&super::ObjectLogs, IngestError> {
        self.options.object_logs.as_ref().ok_or_else(|| {
            IngestError::Internal("a log in the object store, but no object store".into())
        })
    }

    /// Saves `keys` of an adopted log, and those its records carried
    /// (already in `recent`), durably beside the logs.
    async fn save_adopted_keys(
        &self,
        wal_id: &str,
        mut keys: Vec<(u64, u64)>,
    ) -> Result<(), IngestError> {
        keys.extend(lock(&self.recent).iter().map(|(s, c)| (*s, *c)));
        if let Some(logs) = &self.options.object_logs {
            return logs
                .put_adopted_keys(wal_id, super::encode_keys(&keys))
                .await;
        }
        let Some(root) = self.shared_log_root() else {
            return Ok(());
        };
        let path = root.join(format!("{ADOPTED_KEYS_PREFIX}{wal_id}"));
        super::write_keys(&path, &keys)
    }

    /// Writes `batches` (conformed to `schema`) as one staged segment, and
    /// sends it to the object store if there is one: ready to be committed.
    pub(super) async fn stage_segment(
        &self,
        asset: &Id,
        staging_id: &str,
        schema: arrow::datatypes::SchemaRef,
        batches: Vec<RecordBatch>,
    ) -> Result<vega_core::Manifest, IngestError> {
        let store = self.store.clone();
        let asset = asset.clone();
        let staging_id = staging_id.to_string();
        let manifest = tokio::task::spawn_blocking(move || {
            let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
            let mut staged = store
                .stage(
                    &asset,
                    &staging_id,
                    schema.clone(),
                    WriteOptions {
                        rows_per_segment: rows.max(1),
                        ..WriteOptions::default()
                    },
                )
                .map_err(|e| IngestError::Unavailable(format!("writing a segment: {e}")))?;
            for b in &batches {
                let b = conform(b, &schema)
                    .map_err(|e| IngestError::Internal(format!("shaping rows: {e}")))?;
                if let Err(e) = staged.write(&b) {
                    let _ = staged.abort();
                    return Err(IngestError::Unavailable(format!("writing a segment: {e}")));
                }
            }
            staged
                .finish()
                .map_err(|e| IngestError::Unavailable(format!("writing a segment: {e}")))
        })
        .await
        .map_err(|e| IngestError::Internal(format!("flush thread: {e}")))??;
        self.store
            .push(&manifest)
            .await
            .map_err(|e| IngestError::Unavailable(format!("storing a segment: {e}")))?;
        Ok(manifest)
    }
}
