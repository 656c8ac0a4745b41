//! The catalog: every piece of metadata Vega keeps (connections, assets,
//! versions and their manifests, jobs, settings, API keys).
//!
//! [`Catalog`] is the seam. [`SqlCatalog`] implements it on sqlx's `Any`
//! driver: the embedded backend is a SQLite file in the data directory
//! ([`SqlCatalog::open_sqlite`]); PostgreSQL ([`SqlCatalog::connect`] with a
//! `postgres://` URL) runs the same code and the same migrations
//! (`migrations/`), which are written in SQL that both databases accept. Ids are prefixed text (`con_…`), times are
//! UTC RFC 3339 text with millisecond precision, JSON is stored as text.
//!
//! On PostgreSQL the URL may list several hosts (searched in order for the
//! writable primary, searched again when it fails) and read replicas
//! (`?replicas=h:p,…`, used within `max_replica_lag`); see
//! [`PostgresUrl`] and [`SqlCatalog::pool_stats`].
//!
//! A whole catalog's user state exports to, and imports from, a portable
//! [`CatalogSnapshot`] (backups, disaster recovery, moving between backends).
//!
//! The catalog never calls DuckDB, never touches segment files, knows no HTTP.

mod error;
pub mod snapshot;
pub mod sql;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use vega_core::{
    ApiKey, Asset, AssetChecks, Connection, Id, Job, JobKind, JobState, Lease, Manifest, NewAsset,
    NewConnection, NodeInfo, Role, Segment, Version,
};

pub use error::CatalogError;
pub use snapshot::{
    ApiKeySnapshot, AssetSnapshot, CatalogSnapshot, SettingSnapshot, SNAPSHOT_FORMAT,
};
pub use sql::{
    merge_stream_watermark, AppliedMigration, Backend, HostPort, Migration, PoolRole,
    PoolRoleStats, PoolStats, PostgresUrl, PrimaryHosts, ReplicaHealth, SqlCatalog,
    TargetSessionAttrs, DEFAULT_FAILOVER_TIMEOUT, DEFAULT_MAX_REPLICA_LAG, DEFAULT_PORT,
    MIGRATIONS,
};

pub type Result<T, E = CatalogError> = std::result::Result<T, E>;

/// Changes to a connection; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConnectionUpdate {
    pub name: Option<String>,
    pub params: Option<serde_json::Value>,
}

/// Changes to an asset; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AssetUpdate {
    pub source: Option<serde_json::Value>,
    pub checks: Option<AssetChecks>,
    /// `Some(None)` clears the schedule.
    pub schedule: Option<Option<String>>,
    /// `Some(None)` clears the watermark (the next incremental sync starts
    /// from the beginning).
    pub watermark: Option<Option<serde_json::Value>>,
    /// `Some(None)` removes the retention.
    pub retention: Option<Option<vega_core::Retention>>,
}

/// Filters for listing jobs; all are optional and combine with AND.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobFilter {
    pub asset_id: Option<Id>,
    pub state: Option<JobState>,
    /// At most this many, newest first (default 100).
    pub limit: Option<u32>,
}

/// Progress of a running job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobProgress {
    pub rows: u64,
    pub bytes: u64,
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq)]
pub enum JobOutcome {
    Succeeded { result_version: Option<u32> },
    Failed { error: String },
    Cancelled { reason: String },
}

/// A lease that work must still hold when its result is committed: the
/// fencing check, made in the committing transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseFence {
    pub name: String,
    pub holder: Id,
    pub token: u64,
}

/// Rows of a stream asset flushed from a write-ahead log
/// ([`Catalog::flush_stream`]).
#[derive(Debug, Clone, PartialEq)]
pub struct StreamFlush {
    /// The log the rows came from: `None` for the node's embedded log
    /// (stored as `watermark.wal_seq`), `Some(node id)` for a node's log in
    /// shared storage (`watermark.wals.<id>`), so that nodes writing one
    /// asset keep separate watermarks.
    pub wal: Option<String>,
    /// Every record of that log up to this sequence number is flushed.
    pub through_seq: u64,
    /// The schema of the rows (the active version's, or a wider one when
    /// the rows bring new columns).
    pub schema: serde_json::Value,
    pub segments: Vec<Segment>,
    /// The lease the flushing node must hold (its log's), if any.
    pub lease: Option<LeaseFence>,
}

/// What claiming an orphaned job (its node stopped renewing its lease) did.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimedJob {
    /// It had not published its result: failed as interrupted; the claimer
    /// runs it again as a new job.
    Interrupted(Job),
    /// Its node published the result before it stopped: recorded as
    /// succeeded; nothing runs again.
    Completed(Job),
}

/// The metadata store. Every method is one transaction; methods that change
/// more than one row (publishing a version) are atomic.
#[async_trait]
pub trait Catalog: Send + Sync + std::fmt::Debug {
    /// A cheap round trip, for readiness and `/health`.
    async fn ping(&self) -> Result<()>;

    /// Figures of the connection pools (primary and replicas), for metrics;
    /// `None` for a catalog without pools.
    fn pool_stats(&self) -> Option<PoolStats> {
        None
    }

    // --- connections -------------------------------------------------------

    /// Fails with `Conflict` when the name is taken.
    async fn create_connection(&self, new: NewConnection, now: DateTime<Utc>)
        -> Result<Connection>;
    async fn get_connection(&self, id: &Id) -> Result<Connection>;
    async fn get_connection_by_name(&self, name: &str) -> Result<Connection>;
    /// Ordered by name.
    async fn list_connections(&self) -> Result<Vec<Connection>>;
    async fn update_connection(
        &self,
        id: &Id,
        update: ConnectionUpdate,
        now: DateTime<Utc>,
    ) -> Result<Connection>;
    async fn set_connection_enabled(
        &self,
        id: &Id,
        enabled: bool,
        now: DateTime<Utc>,
    ) -> Result<Connection>;
    /// Fails with `Conflict` while assets use the connection.
    async fn delete_connection(&self, id: &Id) -> Result<()>;

    // --- assets ------------------------------------------------------------

    /// Fails with `Conflict` when `namespace.name` is taken, `NotFound` when
    /// the connection does not exist.
    async fn create_asset(&self, new: NewAsset, now: DateTime<Utc>) -> Result<Asset>;
    async fn get_asset(&self, id: &Id) -> Result<Asset>;
    async fn get_asset_by_name(&self, namespace: &str, name: &str) -> Result<Asset>;
    /// Ordered by namespace, then name.
    async fn list_assets(&self) -> Result<Vec<Asset>>;
    async fn update_asset(&self, id: &Id, update: AssetUpdate, now: DateTime<Utc>)
        -> Result<Asset>;
    /// Deletes the asset, its versions and its jobs' link to it. Segment files
    /// become orphans, cleaned by storage.
    async fn delete_asset(&self, id: &Id) -> Result<()>;

    // --- versions ----------------------------------------------------------

    /// In one transaction: records a new version (number = highest + 1) with
    /// its manifest and makes it the asset's active version.
    async fn publish_version(
        &self,
        asset_id: &Id,
        manifest: Manifest,
        job_id: Option<&Id>,
        now: DateTime<Utc>,
    ) -> Result<Version>;
    /// `publish_version`, and in the same transaction the asset's
    /// watermark becomes `watermark` when it is `Some` (a full sync of an
    /// incremental asset restarts its watermark from what it read).
    async fn publish_version_with_watermark(
        &self,
        asset_id: &Id,
        manifest: Manifest,
        watermark: Option<serde_json::Value>,
        job_id: Option<&Id>,
        now: DateTime<Utc>,
    ) -> Result<Version>;
    /// In one transaction: appends `segments` to the asset's active version
    /// (after its existing segments) and stores `watermark` as the asset's
    /// watermark. With no active version yet, creates version 1 with these
    /// segments and makes it active (as `publish_version` would). Fails with
    /// `Conflict` when `schema` differs from the active version's schema (a
    /// full sync is needed then).
    async fn append_segments(
        &self,
        asset_id: &Id,
        schema: serde_json::Value,
        segments: Vec<Segment>,
        watermark: serde_json::Value,
        job_id: Option<&Id>,
        now: DateTime<Utc>,
    ) -> Result<Version>;
    /// Commits a flush of streamed rows in one transaction: checks the
    /// flush's lease (`Fenced` when it is no longer held), appends the
    /// segments to the active version — or publishes a new version with the
    /// active one's segments and these under `flush.schema` when it differs
    /// (new columns), or these alone when no version is active — and
    /// merges the log's flushed sequence number into the watermark.
    async fn flush_stream(
        &self,
        asset_id: &Id,
        flush: StreamFlush,
        now: DateTime<Utc>,
    ) -> Result<Version>;
    async fn get_version(&self, asset_id: &Id, number: u32) -> Result<Version>;
    /// Newest first.
    async fn list_versions(&self, asset_id: &Id) -> Result<Vec<Version>>;
    /// Moves the active pointer to an existing version (rollback).
    async fn set_active_version(
        &self,
        asset_id: &Id,
        number: u32,
        now: DateTime<Utc>,
    ) -> Result<Asset>;
    /// Every asset with an active version, with that version.
    async fn list_active_versions(&self) -> Result<Vec<(Asset, Version)>>;
    /// Every segment path referenced by any version of any asset.
    async fn list_segment_paths(&self) -> Result<Vec<String>>;

    // --- jobs --------------------------------------------------------------

    /// Creates a job in state `running` (attempts = 1, started now). Fails
    /// with `Conflict` carrying the running job's id when `asset_id` already
    /// has a pending or running job of the same kind.
    async fn start_job(
        &self,
        kind: JobKind,
        asset_id: Option<&Id>,
        params: serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<Job>;
    /// `start_job`, run by node `owner`, which holds the job until
    /// `now + lease_ttl` and must renew it ([`Catalog::renew_job_leases`]);
    /// after that another node may claim it.
    async fn start_owned_job(
        &self,
        kind: JobKind,
        asset_id: Option<&Id>,
        params: serde_json::Value,
        owner: &Id,
        lease_ttl: std::time::Duration,
        now: DateTime<Utc>,
    ) -> Result<Job>;
    /// Extends to `now + lease_ttl` the lease of every running job `owner`
    /// holds; returns the ids of those jobs (a job another node claimed is
    /// not among them).
    async fn renew_job_leases(
        &self,
        owner: &Id,
        lease_ttl: std::time::Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<Id>>;
    /// Takes over, for `claimer`, up to `limit` running jobs of other nodes
    /// whose lease expired before `now`, each exactly once across every
    /// node claiming at the same time.
    async fn claim_orphaned_jobs(
        &self,
        claimer: &Id,
        limit: u32,
        now: DateTime<Utc>,
    ) -> Result<Vec<ClaimedJob>>;
    async fn get_job(&self, id: &Id) -> Result<Job>;
    async fn list_jobs(&self, filter: JobFilter) -> Result<Vec<Job>>;
    async fn update_job_progress(&self, id: &Id, progress: JobProgress) -> Result<()>;
    /// A job's attempt failed and it will be tried again: attempts + 1,
    /// `error` records the failure; the job keeps its state (pending or
    /// running). Fails with `Conflict` on a finished job.
    async fn record_job_attempt(&self, id: &Id, error: &str) -> Result<Job>;
    async fn finish_job(&self, id: &Id, outcome: JobOutcome, now: DateTime<Utc>) -> Result<Job>;
    /// Marks as failed with `reason` the pending and running jobs of node
    /// `owner` and those without an owner — every one with `None` — (a
    /// restart of that node interrupted them); returns them.
    async fn fail_interrupted_jobs(
        &self,
        owner: Option<&Id>,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<Job>>;
    /// Counts of jobs per state, for metrics.
    async fn count_jobs_by_state(&self) -> Result<Vec<(JobState, u64)>>;

    // --- settings ----------------------------------------------------------

    async fn get_setting(&self, key: &str) -> Result<Option<serde_json::Value>>;
    async fn put_setting(
        &self,
        key: &str,
        value: serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<()>;

    // --- API keys ----------------------------------------------------------

    /// Stores a key by the hash of its secret. Fails with `Conflict` when the
    /// name is taken.
    async fn create_api_key(
        &self,
        name: &str,
        role: Role,
        secret_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<ApiKey>;
    async fn find_api_key_by_hash(&self, secret_hash: &str) -> Result<Option<ApiKey>>;
    async fn list_api_keys(&self) -> Result<Vec<ApiKey>>;
    async fn delete_api_key(&self, id: &Id) -> Result<()>;

    // --- snapshots ---------------------------------------------------------

    /// Every piece of durable user state (see [`CatalogSnapshot`]: no jobs,
    /// nodes or leases), read in one transaction on the primary that sees
    /// one point in time. Stamped `exported_at = now`. Fails with
    /// `Snapshot` when the catalog's schema is newer than this build's
    /// migrations (the snapshot would miss what they added).
    async fn export_snapshot(&self, now: DateTime<Utc>) -> Result<CatalogSnapshot>;
    /// Writes `snapshot` into an empty catalog (no connections, no assets)
    /// in one transaction, keeping every id, time, version number and
    /// active pointer, so that exporting again gives an equal snapshot (but
    /// for `exported_at`). Fails, writing nothing, with `Snapshot` when
    /// [`CatalogSnapshot::validate`] refuses it (unknown format, a schema
    /// newer than this build's, dangling references, duplicates), and with
    /// `Conflict` when the catalog is not empty or already has a setting
    /// or an API key (by id, name or secret) that the snapshot holds.
    async fn import_snapshot(&self, snapshot: &CatalogSnapshot) -> Result<()>;

    // --- cluster -----------------------------------------------------------

    /// Records (inserting or updating) a node and its heartbeat time.
    async fn heartbeat_node(&self, node: &NodeInfo) -> Result<()>;
    /// Every node that has sent a heartbeat, ordered by name.
    async fn list_nodes(&self) -> Result<Vec<NodeInfo>>;
    /// Removes a node and gives up its leases (a clean shutdown).
    async fn remove_node(&self, id: &Id) -> Result<()>;
    /// Takes, renews or takes over the lease `name` for `holder` until
    /// `now + ttl`. `None` when another node holds it, unexpired. A lease
    /// that changes hands gets the next fencing token; a renewal keeps it.
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &Id,
        ttl: std::time::Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<Lease>>;
    /// Gives up `name` if `holder` holds it.
    async fn release_lease(&self, name: &str, holder: &Id, now: DateTime<Utc>) -> Result<()>;
    /// Every lease, ordered by name.
    async fn list_leases(&self) -> Result<Vec<Lease>>;
    /// The fencing check: whether `holder` still holds `name` under `token`.
    async fn holds_lease(
        &self,
        name: &str,
        holder: &Id,
        token: u64,
        now: DateTime<Utc>,
    ) -> Result<bool>;
}
