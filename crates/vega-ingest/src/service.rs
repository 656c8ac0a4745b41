//! [`IngestService`]: the write path of stream assets.
//!
//! A write is admitted (types checked against the asset's columns, room
//! reserved in the bounded buffer), made durable in the write-ahead log,
//! shown to queries (the [`LiveRows`] sink: the engine's live table) and
//! kept in the buffer, and only then acknowledged. A flush writes an
//! asset's buffered rows to a Parquet segment and, in one catalog
//! transaction, appends it to the active version and moves the asset's
//! watermark to `{"wal_seq": N}`: every record of that asset with a
//! sequence number up to N is in a segment. Start-up replays the log and
//! skips what the watermark covers, so a crash at any point neither loses
//! an acknowledged row nor adds one twice. Log files go only when every
//! asset has flushed past them.
//!
//! Ordering: writers of an asset hold its gate (shared) from admission to
//! buffering; a flush takes it exclusively just long enough to take the
//! buffer. So when a flush takes records up to N, no record of that asset
//! with a smaller number is still on its way to the buffer.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use serde_json::json;
use vega_catalog::{Catalog, CatalogError, StreamFlush};
use vega_core::{
    Asset, AssetChecks, Clock, ConnectorKind, Id, NewAsset, NewConnection, Point, SyncMode, Version,
};
use vega_storage::{schema_from_manifest, SegmentStore};
use vega_wal::{Wal, WalError, WalOptions};

mod adopt;
mod object_log;

pub use adopt::{log_lease_name, AdoptReport, OtherLog};
pub use object_log::{ObjectLog, ObjectLogs};

use crate::codec::{self, DedupKey};
use crate::error::IngestError;
use crate::schema::{point_bytes, AssetSchema};

/// The file (in the log directory) holding delivery keys of removed records.
const RECENT_FILE: &str = "delivery-keys";

/// The connection that line-protocol assets belong to, created on first use.
pub const LINE_PROTOCOL_CONNECTION: &str = "line-protocol";

/// How the service is sized.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    pub wal_dir: std::path::PathBuf,
    /// Which log this is in stream assets' watermarks: `None` for the
    /// embedded log of a single node (`{"wal_seq": N}`), `Some(node id)`
    /// for a node's log in shared storage (`{"wals": {id: N}}`), so that
    /// nodes writing one asset each keep their own.
    pub wal_id: Option<String>,
    /// Logs kept in an object store too (nodes with a shared bucket but no
    /// shared directory): every batch is stored there before it is
    /// acknowledged, and other nodes' logs are found and adopted there.
    /// Needs `wal_id`.
    pub object_logs: Option<ObjectLogs>,
    pub wal_fsync_interval: Duration,
    pub buffer_max_rows: u64,
    pub buffer_max_bytes: u64,
    pub flush_rows: u64,
    pub flush_bytes: u64,
    pub flush_age: Duration,
    pub retry_after: Duration,
}

/// Where acknowledged rows become visible to queries before they are
/// flushed (the server implements it over the query engine).
pub trait LiveRows: Send + Sync {
    /// Rows of write-ahead-log record `seq` are durable.
    fn append(&self, asset: &Asset, seq: u64, batch: &RecordBatch) -> Result<(), String>;
    /// `version` (now active) holds every row up to record `through_seq`.
    fn flushed(&self, asset: &Asset, version: &Version, through_seq: u64) -> Result<(), String>;
    /// `version` (now active) holds rows of another node's log: serve it,
    /// keeping this node's own live rows.
    fn published(&self, asset: &Asset, version: &Version) -> Result<(), String>;
}

/// Hooks for metrics; every method has a no-op default.
pub trait IngestObserver: Send + Sync {
    fn written(&self, _asset: &Asset, _rows: u64, _bytes: u64) {}
    fn wal_fsync(&self, _latency: Duration) {}
    fn flushed(&self, _asset: &Asset, _rows: u64, _elapsed: Duration) {}
    fn flush_failed(&self, _asset: &Asset) {}
}

/// What a write did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteReport {
    pub accepted: usize,
    /// Points refused (index into the points given, reason).
    pub rejected: Vec<(usize, String)>,
    /// The write was a redelivery of a message already stored.
    pub duplicate: bool,
}

/// A point-in-time view of the buffer, for metrics and `/health`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestStats {
    pub buffer_rows: u64,
    pub buffer_bytes: u64,
    pub buffer_max_rows: u64,
    pub buffer_max_bytes: u64,
    pub stream_assets: usize,
    pub wal_files: u64,
    pub wal_bytes: u64,
    pub wal_durable_seq: u64,
    pub last_flush_error: Option<String>,
}

struct Buffer {
    asset: Asset,
    schema: AssetSchema,
    batches: VecDeque<Buffered>,
    rows: u64,
    bytes: u64,
    oldest: Option<Instant>,
    flushed_through: u64,
}

struct Buffered {
    seq: u64,
    batch: RecordBatch,
    bytes: u64,
    at: Instant,
}

struct AssetState {
    gate: tokio::sync::RwLock<()>,
    flush: Arc<tokio::sync::Mutex<()>>,
    buffer: Mutex<Buffer>,
}

/// The ingest path. Share it behind an `Arc`.
pub struct IngestService {
    catalog: Arc<dyn Catalog>,
    store: Arc<SegmentStore>,
    wal: Wal,
    live: Arc<dyn LiveRows>,
    observer: Arc<dyn IngestObserver>,
    clock: Arc<dyn Clock>,
    options: IngestOptions,
    assets: Mutex<HashMap<Id, Arc<AssetState>>>,
    by_name: Mutex<HashMap<(String, String), Asset>>,
    /// Rows and bytes buffered or reserved by writes in flight.
    rows: AtomicU64,
    bytes: AtomicU64,
    /// Latest content stored per delivery session (MQTT redelivery).
    recent: Mutex<HashMap<u64, u64>>,
    flush_wanted: tokio::sync::Notify,
    /// A write was refused for lack of room: flush everything.
    pressure: std::sync::atomic::AtomicBool,
    last_flush_error: Mutex<Option<String>>,
    /// This node's hold on the lease of its own (shared) log.
    own_lease: Mutex<Option<adopt::OwnLease>>,
}

impl std::fmt::Debug for IngestService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestService")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn wal_error(e: WalError) -> IngestError {
    if e.is_disk_full() {
        IngestError::DiskFull(e.to_string())
    } else {
        IngestError::Unavailable(format!("write-ahead log: {e}"))
    }
}

/// The sequence number of log `wal` (see [`IngestOptions::wal_id`]) that a
/// stream asset's watermark says is flushed.
fn flushed_seq(asset: &Asset, wal: Option<&str>) -> u64 {
    let watermark = asset.watermark.as_ref();
    let seq = match wal {
        None => watermark.and_then(|w| w.get("wal_seq")),
        Some(id) => watermark
            .and_then(|w| w.get("wals"))
            .and_then(|w| w.get(id)),
    };
    seq.and_then(|v| v.as_u64()).unwrap_or(0)
}

impl IngestService {
    /// Opens the write-ahead log, replays it into the buffer (skipping
    /// records already flushed) and returns the service. Call
    /// [`IngestService::run_flusher`] next.
    pub async fn open(
        catalog: Arc<dyn Catalog>,
        store: Arc<SegmentStore>,
        live: Arc<dyn LiveRows>,
        observer: Arc<dyn IngestObserver>,
        clock: Arc<dyn Clock>,
        options: IngestOptions,
    ) -> Result<Arc<Self>, IngestError> {
        let assets = catalog.list_assets().await?;
        let min_next_seq = assets
            .iter()
            .filter(|a| a.sync_mode == SyncMode::Stream)
            .map(|a| flushed_seq(a, options.wal_id.as_deref()))
            .max()
            .unwrap_or(0)
            + 1;
        let mirror = match (&options.object_logs, &options.wal_id) {
            (Some(logs), Some(id)) => {
                Self::drop_adopted_log(logs, id, &options.wal_dir).await?;
                Some(logs.mirror(id))
            }
            _ => None,
        };
        let fsync_observer = observer.clone();
        let wal_options = WalOptions {
            mirror,
            fsync_interval: options.wal_fsync_interval,
            min_next_seq,
            on_fsync: Some(Arc::new(move |latency, _records, _bytes| {
                fsync_observer.wal_fsync(latency)
            })),
            ..WalOptions::new(options.wal_dir.clone())
        };
        let (wal, records) = tokio::task::spawn_blocking(move || Wal::open(wal_options))
            .await
            .map_err(|e| IngestError::Internal(format!("opening the write-ahead log: {e}")))?
            .map_err(wal_error)?;
        let service = Arc::new(Self {
            catalog,
            store,
            wal,
            live,
            observer,
            clock,
            options,
            assets: Mutex::new(HashMap::new()),
            by_name: Mutex::new(HashMap::new()),
            rows: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            recent: Mutex::new(HashMap::new()),
            flush_wanted: tokio::sync::Notify::new(),
            pressure: std::sync::atomic::AtomicBool::new(false),
            last_flush_error: Mutex::new(None),
            own_lease: Mutex::new(None),
        });
        service.load_recent()?;
        service.replay(records).await?;
        Ok(service)
    }

    /// When another node adopted this node's log (from the object store)
    /// while this node was down, the local copy is dropped: each of its
    /// acknowledged records is in segments now, and the rest were never
    /// acknowledged. Runs under this node's log lease, so no adoption is
    /// in progress.
    async fn drop_adopted_log(
        logs: &ObjectLogs,
        id: &str,
        dir: &std::path::Path,
    ) -> Result<(), IngestError> {
        if !logs.was_adopted(id).await? {
            return Ok(());
        }
        tracing::warn!(dir = %dir.display(),
            "another node took this node's write-ahead log over while it was down; starting a fresh log");
        match std::fs::remove_dir_all(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(IngestError::Unavailable(format!(
                    "removing the adopted log {}: {e}",
                    dir.display()
                )))
            }
        }
        logs.clear(id).await
    }

    async fn replay(&self, records: Vec<vega_wal::Record>) -> Result<(), IngestError> {
        let (mut replayed, mut skipped) = (0u64, 0u64);
        for record in records {
            let entry = match codec::decode(&record.payload) {
                Ok(e) => e,
                Err(e) => {
                    return Err(IngestError::Internal(format!(
                        "write-ahead-log record {}: {e}",
                        record.seq
                    )))
                }
            };
            let state = match self.state(&entry.asset).await {
                Ok(s) => s,
                Err(IngestError::Catalog(CatalogError::NotFound { .. })) => {
                    skipped += 1;
                    continue;
                }
                Err(e) => return Err(e),
            };
            // Known deliveries, flushed or not: a redelivery of any of
            // them is a duplicate.
            if let Some(key) = entry.key {
                lock(&self.recent).insert(key.session, key.content);
            }
            let mut buffer = lock(&state.buffer);
            if record.seq <= buffer.flushed_through {
                skipped += 1;
                continue;
            }
            let name = buffer.asset.qualified_name();
            let points: Vec<Point> = entry
                .points
                .into_iter()
                .filter(|p| match buffer.schema.admit(&name, p) {
                    Ok(()) => true,
                    Err(reason) => {
                        tracing::error!(asset = %name, seq = record.seq, %reason, "a logged point no longer fits its asset; dropped");
                        false
                    }
                })
                .collect();
            if points.is_empty() {
                continue;
            }
            let batch = buffer.schema.batch(&points).map_err(|e| {
                IngestError::Internal(format!("replaying record {}: {e}", record.seq))
            })?;
            self.live
                .append(&buffer.asset, record.seq, &batch)
                .map_err(IngestError::Internal)?;
            let bytes: u64 = points.iter().map(point_bytes).sum();
            buffer.push(record.seq, batch, bytes);
            self.rows.fetch_add(points.len() as u64, Ordering::SeqCst);
            self.bytes.fetch_add(bytes, Ordering::SeqCst);
            replayed += 1;
        }
        if replayed + skipped > 0 {
            tracing::info!(
                records = replayed,
                already_flushed = skipped,
                "replayed the write-ahead log"
            );
        }
        Ok(())
    }

    /// The state of a stream asset, loaded on first use.
    async fn state(&self, id: &Id) -> Result<Arc<AssetState>, IngestError> {
        if let Some(s) = lock(&self.assets).get(id) {
            return Ok(s.clone());
        }
        let asset = self.catalog.get_asset(id).await?;
        if asset.sync_mode != SyncMode::Stream {
            return Err(IngestError::Invalid(format!(
                "asset {} is not a stream asset (its sync_mode is {})",
                asset.qualified_name(),
                asset.sync_mode.as_str()
            )));
        }
        let schema = match asset.active_version {
            Some(n) => {
                let v = self.catalog.get_version(&asset.id, n).await?;
                let schema = schema_from_manifest(&v.manifest)
                    .map_err(|e| IngestError::Internal(e.to_string()))?;
                AssetSchema::from_arrow(&schema)
            }
            None => AssetSchema::new(),
        };
        let state = Arc::new(AssetState {
            gate: tokio::sync::RwLock::new(()),
            flush: Arc::new(tokio::sync::Mutex::new(())),
            buffer: Mutex::new(Buffer {
                flushed_through: flushed_seq(&asset, self.options.wal_id.as_deref()),
                asset,
                schema,
                batches: VecDeque::new(),
                rows: 0,
                bytes: 0,
                oldest: None,
            }),
        });
        Ok(lock(&self.assets)
            .entry(id.clone())
            .or_insert(state)
            .clone())
    }

    /// The stream asset `<bucket>.<measurement>` of line-protocol writes,
    /// created on first use.
    pub async fn line_protocol_asset(
        &self,
        bucket: &str,
        measurement: &str,
    ) -> Result<Asset, IngestError> {
        let key = (bucket.to_string(), measurement.to_string());
        if let Some(a) = lock(&self.by_name).get(&key) {
            return Ok(a.clone());
        }
        vega_core::name::validate_part("namespace", bucket)
            .map_err(|e| IngestError::Invalid(format!("bucket: {e}")))?;
        vega_core::name::validate_part("name", measurement)
            .map_err(|e| IngestError::Invalid(format!("measurement: {e}")))?;
        let asset = match self.catalog.get_asset_by_name(bucket, measurement).await {
            Ok(a) => a,
            Err(CatalogError::NotFound { .. }) => {
                let connection = self.line_protocol_connection().await?;
                let new = NewAsset {
                    namespace: bucket.to_string(),
                    name: measurement.to_string(),
                    connection_id: connection,
                    sync_mode: SyncMode::Stream,
                    source: json!({}),
                    checks: AssetChecks::default(),
                    schedule: None,
                    retention: None,
                };
                match self.catalog.create_asset(new, self.clock.now()).await {
                    Ok(a) => {
                        tracing::info!(asset = %a.qualified_name(), "stream asset created by its first write");
                        a
                    }
                    Err(CatalogError::Conflict { .. }) => {
                        self.catalog.get_asset_by_name(bucket, measurement).await?
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) => return Err(e.into()),
        };
        let connection = self.catalog.get_connection(&asset.connection_id).await?;
        if asset.sync_mode != SyncMode::Stream || connection.kind != ConnectorKind::LineProtocol {
            return Err(IngestError::Invalid(format!(
                "asset {} exists and is not fed by line-protocol writes",
                asset.qualified_name()
            )));
        }
        lock(&self.by_name).insert(key, asset.clone());
        Ok(asset)
    }

    async fn line_protocol_connection(&self) -> Result<Id, IngestError> {
        match self
            .catalog
            .get_connection_by_name(LINE_PROTOCOL_CONNECTION)
            .await
        {
            Ok(c) if c.kind == ConnectorKind::LineProtocol => return Ok(c.id),
            Ok(_) => {
                return Err(IngestError::Invalid(format!(
                    "the connection named '{LINE_PROTOCOL_CONNECTION}' is not a line_protocol connection"
                )))
            }
            Err(CatalogError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let new = NewConnection {
            name: LINE_PROTOCOL_CONNECTION.to_string(),
            kind: ConnectorKind::LineProtocol,
            params: json!({}),
        };
        match self.catalog.create_connection(new, self.clock.now()).await {
            Ok(c) => Ok(c.id),
            Err(CatalogError::Conflict { .. }) => Ok(self
                .catalog
                .get_connection_by_name(LINE_PROTOCOL_CONNECTION)
                .await?
                .id),
            Err(e) => Err(e.into()),
        }
    }

    /// Keeps flushes of `asset` out until the guard is dropped (retention
    /// rewrites the active version meanwhile). `None` for an asset that is
    /// not a stream asset: nothing of ingest writes it.
    pub async fn exclusive(&self, asset: &Id) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        let state = self.state(asset).await.ok()?;
        Some(state.flush.clone().lock_owned().await)
    }

    /// Another node changed a stream asset's active version: columns it
    /// brought are checked from now on (a point whose type clashes with a
    /// column that node added is refused here too).
    pub fn refresh(&self, asset: &Asset, version: &Version) {
        let Some(state) = lock(&self.assets).get(&asset.id).cloned() else {
            return;
        };
        match schema_from_manifest(&version.manifest) {
            Ok(schema) => lock(&state.buffer).schema.absorb(&schema),
            Err(e) => tracing::warn!(asset = %asset.qualified_name(), error = %e,
                "the schema of a version published on another node is unreadable"),
        }
    }

    /// Forgets an asset (it was deleted): its buffered rows are dropped.
    pub fn forget(&self, asset: &Asset) {
        if let Some(state) = lock(&self.assets).remove(&asset.id) {
            let buffer = lock(&state.buffer);
            self.rows.fetch_sub(buffer.rows, Ordering::SeqCst);
            self.bytes.fetch_sub(buffer.bytes, Ordering::SeqCst);
        }
        lock(&self.by_name).remove(&(asset.namespace.clone(), asset.name.clone()));
    }

    /// Makes `points` durable for the stream asset `asset` and visible to
    /// queries. Returns once they are in the write-ahead log (fsynced);
    /// points whose types conflict with the asset's columns are refused
    /// one by one. With a `key` and `redelivery`, a message whose content
    /// was already stored under the same key is reported as a duplicate
    /// and not stored again.
    pub async fn write(
        &self,
        asset: &Asset,
        points: Vec<Point>,
        key: Option<DedupKey>,
        redelivery: bool,
    ) -> Result<WriteReport, IngestError> {
        let state = self.state(&asset.id).await?;
        if let (Some(k), true) = (key, redelivery) {
            if lock(&self.recent).get(&k.session) == Some(&k.content) {
                return Ok(WriteReport {
                    duplicate: true,
                    ..WriteReport::default()
                });
            }
        }
        self.check_own_lease()?;
        let _gate = state.gate.read().await;
        let mut report = WriteReport::default();
        let name = asset.qualified_name();
        let accepted: Vec<Point> = {
            let mut buffer = lock(&state.buffer);
            points
                .into_iter()
                .enumerate()
                .filter_map(|(i, p)| match buffer.schema.admit(&name, &p) {
                    Ok(()) => Some(p),
                    Err(reason) => {
                        report.rejected.push((i, reason));
                        None
                    }
                })
                .collect()
        };
        if accepted.is_empty() {
            return Ok(report);
        }
        let rows = accepted.len() as u64;
        let bytes: u64 = accepted.iter().map(point_bytes).sum();
        self.reserve(rows, bytes)?;
        let payload = codec::encode(&asset.id, key, &accepted);
        let seq = match self.wal.append(payload).await {
            Ok(seq) => seq,
            Err(e) => {
                self.release(rows, bytes);
                return Err(wal_error(e));
            }
        };
        // Durable from here on: a failure below is repaired by replay. It
        // is acknowledged only if this node still held its log's lease when
        // the log made it durable (another node may be taking the log over
        // from then on).
        let fenced = self.check_own_lease().err();
        let mut buffer = lock(&state.buffer);
        let batch = buffer
            .schema
            .batch(&accepted)
            .map_err(|e| IngestError::Internal(format!("building rows: {e}")))?;
        let visible = self.live.append(&buffer.asset, seq, &batch);
        buffer.push(seq, batch, bytes);
        let due =
            buffer.rows >= self.options.flush_rows || buffer.bytes >= self.options.flush_bytes;
        drop(buffer);
        if let Some(k) = key {
            lock(&self.recent).insert(k.session, k.content);
        }
        if due {
            self.flush_wanted.notify_one();
        }
        visible.map_err(|e| {
            IngestError::Internal(format!(
                "the rows are durable but not yet visible to queries: {e}"
            ))
        })?;
        if let Some(e) = fenced {
            return Err(e);
        }
        self.observer.written(asset, rows, bytes);
        report.accepted = accepted.len();
        Ok(report)
    }

    fn reserve(&self, rows: u64, bytes: u64) -> Result<(), IngestError> {
        let total_rows = self.rows.fetch_add(rows, Ordering::SeqCst) + rows;
        let total_bytes = self.bytes.fetch_add(bytes, Ordering::SeqCst) + bytes;
        let full_rows = total_rows > self.options.buffer_max_rows;
        let full_bytes = total_bytes > self.options.buffer_max_bytes;
        if full_rows || full_bytes {
            self.release(rows, bytes);
            self.pressure.store(true, Ordering::SeqCst);
            self.flush_wanted.notify_one();
            let detail = if full_rows {
                format!("{} rows at most", self.options.buffer_max_rows)
            } else {
                format!("{} bytes at most", self.options.buffer_max_bytes)
            };
            return Err(IngestError::Busy {
                retry_after: self.options.retry_after,
                detail,
            });
        }
        Ok(())
    }

    fn release(&self, rows: u64, bytes: u64) {
        self.rows.fetch_sub(rows, Ordering::SeqCst);
        self.bytes.fetch_sub(bytes, Ordering::SeqCst);
    }

    /// Buffer and log figures.
    pub fn stats(&self) -> IngestStats {
        let wal = self.wal.stats();
        IngestStats {
            buffer_rows: self.rows.load(Ordering::SeqCst),
            buffer_bytes: self.bytes.load(Ordering::SeqCst),
            buffer_max_rows: self.options.buffer_max_rows,
            buffer_max_bytes: self.options.buffer_max_bytes,
            stream_assets: lock(&self.assets).len(),
            wal_files: wal.files as u64,
            wal_bytes: wal.bytes,
            wal_durable_seq: wal.durable_seq,
            last_flush_error: lock(&self.last_flush_error).clone(),
        }
    }

    /// Flushes, until `shutdown` resolves, every asset whose buffer is due
    /// (by rows, bytes or age); then flushes everything once more.
    pub async fn run_flusher(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        let tick =
            (self.options.flush_age / 4).clamp(Duration::from_millis(20), Duration::from_secs(1));
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = self.flush_wanted.notified() => {}
                _ = tokio::time::sleep(tick) => {}
            }
            self.flush_due(false).await;
        }
        self.flush_due(true).await;
    }

    /// Flushes the assets that are due (all with `all`). Errors are logged
    /// and kept for `/health`; the rows stay buffered and are tried again.
    pub async fn flush_due(&self, all: bool) {
        let states: Vec<Arc<AssetState>> = lock(&self.assets).values().cloned().collect();
        let full = self.pressure.swap(false, Ordering::SeqCst)
            || self.rows.load(Ordering::SeqCst) * 10 >= self.options.buffer_max_rows * 9
            || self.bytes.load(Ordering::SeqCst) * 10 >= self.options.buffer_max_bytes * 9;
        let mut flushed = false;
        for state in states {
            let due = {
                let b = lock(&state.buffer);
                b.rows > 0
                    && (all
                        || full
                        || b.rows >= self.options.flush_rows
                        || b.bytes >= self.options.flush_bytes
                        || b.oldest
                            .is_some_and(|t| t.elapsed() >= self.options.flush_age))
            };
            if due {
                flushed = true;
                if let Err(e) = self.flush(&state).await {
                    let asset = lock(&state.buffer).asset.clone();
                    let message = format!("{}: {e}", asset.qualified_name());
                    let mut last = lock(&self.last_flush_error);
                    // Logged once per distinct error, not on every retry.
                    if last.as_deref() != Some(message.as_str()) {
                        tracing::error!(asset = %asset.qualified_name(), error = %e, "flushing streamed rows failed; they stay buffered and durable, and the flush is retried");
                    }
                    *last = Some(message);
                    drop(last);
                    self.observer.flush_failed(&asset);
                }
            }
        }
        if !flushed {
            return;
        }
        if let Err(e) = self.truncate_wal().await {
            tracing::warn!(error = %e, "removing flushed write-ahead-log files failed");
        }
    }

    /// Flushes one asset's buffer (all of it) into a segment.
    async fn flush(&self, state: &Arc<AssetState>) -> Result<(), IngestError> {
        let _one = state.flush.lock().await;
        let started = Instant::now();
        let (taken, asset, schema) = {
            let _gate = state.gate.write().await;
            let mut b = lock(&state.buffer);
            if b.batches.is_empty() {
                return Ok(());
            }
            let taken: Vec<Buffered> = b.batches.drain(..).collect();
            (taken, b.asset.clone(), b.schema.arrow())
        };
        let through = taken.iter().map(|t| t.seq).max().unwrap_or(0);
        match self.write_segment(&asset, &schema, &taken, through).await {
            Ok(version) => {
                let rows: u64 = taken.iter().map(|t| t.batch.num_rows() as u64).sum();
                let bytes: u64 = taken.iter().map(|t| t.bytes).sum();
                {
                    let mut b = lock(&state.buffer);
                    b.rows -= rows;
                    b.bytes -= bytes;
                    b.flushed_through = through;
                    b.oldest = b.batches.front().map(|x| x.at);
                }
                let _ = version;
                self.release(rows, bytes);
                if lock(&self.last_flush_error).take().is_some() {
                    tracing::info!(asset = %asset.qualified_name(), "flushing works again");
                }
                self.observer.flushed(&asset, rows, started.elapsed());
                Ok(())
            }
            Err(e) => {
                if matches!(e, IngestError::Catalog(CatalogError::NotFound { .. })) {
                    // The asset was deleted: its rows go with it.
                    let mut b = lock(&state.buffer);
                    let (rows, bytes) = (b.rows, b.bytes);
                    b.rows = 0;
                    b.bytes = 0;
                    b.batches.clear();
                    drop(b);
                    self.release(rows, bytes);
                    lock(&self.assets).remove(&asset.id);
                    return Ok(());
                }
                let mut b = lock(&state.buffer);
                for t in taken.into_iter().rev() {
                    b.batches.push_front(t);
                }
                b.oldest = b.batches.front().map(|x| x.at);
                Err(e)
            }
        }
    }

    async fn write_segment(
        &self,
        asset: &Asset,
        schema: &SchemaRef,
        taken: &[Buffered],
        through: u64,
    ) -> Result<Version, IngestError> {
        let staging_id = format!("ingest-{}{through:020}", self.staging_prefix());
        let hold = self.store.hold(&format!("{}/{staging_id}", asset.id));
        let batches: Vec<RecordBatch> = taken.iter().map(|t| t.batch.clone()).collect();
        let manifest = self
            .stage_segment(&asset.id, &staging_id, schema.clone(), batches)
            .await?;
        // A flush of a shared log is fenced by its lease: once another node
        // has taken the log over, this one's flushes are refused.
        let lease = self.check_own_lease()?;
        // One catalog transaction appends the segment to the active version
        // as it is now (another node, retention or a rollback may have
        // changed it since the last flush; new columns make a wider
        // version) and moves this log's watermark.
        let version = self
            .catalog
            .flush_stream(
                &asset.id,
                StreamFlush {
                    wal: self.options.wal_id.clone(),
                    through_seq: through,
                    schema: manifest.schema,
                    segments: manifest.segments,
                    lease,
                },
                self.clock.now(),
            )
            .await?;
        drop(hold);
        let asset = self
            .catalog
            .get_asset(&asset.id)
            .await
            .unwrap_or_else(|_| asset.clone());
        self.live
            .flushed(&asset, &version, through)
            .map_err(IngestError::Internal)?;
        Ok(version)
    }

    /// Makes staging directories of different nodes' logs distinct (their
    /// sequence numbers overlap) on a shared segment root.
    fn staging_prefix(&self) -> String {
        match &self.options.wal_id {
            Some(id) => format!("{id}-"),
            None => String::new(),
        }
    }

    /// Where the delivery keys of records no longer in the log are kept.
    fn recent_path(&self) -> std::path::PathBuf {
        self.options.wal_dir.join(RECENT_FILE)
    }

    /// Loads the delivery keys saved before log files were removed.
    fn load_recent(&self) -> Result<(), IngestError> {
        self.merge_recent_file(&self.recent_path())
    }

    /// Adds the delivery keys saved in `path` (if it exists) to the known
    /// ones.
    fn merge_recent_file(&self, path: &std::path::Path) -> Result<(), IngestError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(IngestError::Internal(format!(
                    "reading {}: {e}",
                    path.display()
                )))
            }
        };
        let mut recent = lock(&self.recent);
        for (session, content) in decode_keys(&bytes) {
            recent.insert(session, content);
        }
        Ok(())
    }

    /// Saves every known delivery key (a few MiB at most: one per client
    /// and packet id), durably, before log files that hold some of them are
    /// removed; a redelivery after a restart is then still recognised.
    fn save_recent(&self) -> Result<(), IngestError> {
        let keys: Vec<(u64, u64)> = lock(&self.recent).iter().map(|(s, c)| (*s, *c)).collect();
        write_keys(&self.recent_path(), &keys)
    }

    /// Removes log files every asset has flushed past.
    async fn truncate_wal(&self) -> Result<(), IngestError> {
        let durable = self.wal.stats().durable_seq;
        let mut safe = durable;
        let states: Vec<Arc<AssetState>> = lock(&self.assets).values().cloned().collect();
        for state in states {
            let _gate = state.gate.write().await;
            let b = lock(&state.buffer);
            if let Some(min) = b.batches.iter().map(|x| x.seq).min() {
                safe = safe.min(min - 1);
            }
        }
        if safe == 0 {
            return Ok(());
        }
        if !lock(&self.recent).is_empty() {
            self.save_recent()?;
            if let (Some(logs), Some(id)) = (&self.options.object_logs, &self.options.wal_id) {
                let keys: Vec<(u64, u64)> =
                    lock(&self.recent).iter().map(|(s, c)| (*s, *c)).collect();
                logs.put_keys(id, encode_keys(&keys)).await?;
            }
        }
        let wal = self.wal.clone();
        tokio::task::spawn_blocking(move || wal.truncate_through(safe))
            .await
            .map_err(|e| IngestError::Internal(format!("log truncation thread: {e}")))?
            .map_err(wal_error)?;
        Ok(())
    }

    /// Commits what is pending in the log and stops it.
    pub async fn close(&self) -> Result<(), IngestError> {
        self.wal.close().await.map_err(wal_error)
    }
}

/// (session, content) delivery keys from their saved form: 16 bytes each.
fn decode_keys(bytes: &[u8]) -> Vec<(u64, u64)> {
    bytes
        .chunks_exact(16)
        .map(|pair| {
            let session = u64::from_le_bytes(pair[..8].try_into().unwrap_or_default());
            let content = u64::from_le_bytes(pair[8..].try_into().unwrap_or_default());
            (session, content)
        })
        .collect()
}

/// The saved form of delivery keys: 16 bytes each, little-endian.
fn encode_keys(keys: &[(u64, u64)]) -> Vec<u8> {
    keys.iter()
        .flat_map(|(s, c)| s.to_le_bytes().into_iter().chain(c.to_le_bytes()))
        .collect()
}

/// Saves delivery keys durably at `path`: a temporary file, fsync, rename,
/// fsync of the directory.
fn write_keys(path: &std::path::Path, keys: &[(u64, u64)]) -> Result<(), IngestError> {
    let bytes = encode_keys(keys);
    let tmp = path.with_extension("tmp");
    let io = |what: &str, e: std::io::Error| {
        IngestError::Unavailable(format!("{what} {}: {e}", tmp.display()))
    };
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp).map_err(|e| io("creating", e))?;
        f.write_all(&bytes).map_err(|e| io("writing", e))?;
        f.sync_all().map_err(|e| io("syncing", e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| io("renaming", e))?;
    if let Some(dir) = path.parent().and_then(|d| std::fs::File::open(d).ok()) {
        let _ = dir.sync_all();
    }
    Ok(())
}

impl Buffer {
    fn push(&mut self, seq: u64, batch: RecordBatch, bytes: u64) {
        let now = Instant::now();
        self.rows += batch.num_rows() as u64;
        self.bytes += bytes;
        if self.oldest.is_none() {
            self.oldest = Some(now);
        }
        self.batches.push_back(Buffered {
            seq,
            batch,
            bytes,
            at: now,
        });
    }
}
