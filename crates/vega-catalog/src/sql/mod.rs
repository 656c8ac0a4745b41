//! [`SqlCatalog`]: the [`Catalog`] on a SQL database through sqlx's `Any`
//! driver, so one body of code serves SQLite (the embedded default) and
//! PostgreSQL (shared by the nodes of a cluster).
//!
//! Every query is portable SQL with numbered placeholders (`$1`, `$2`, …),
//! which both drivers bind by number. The resource files next to this one
//! hold the queries (`connections.rs`, `assets.rs`, `versions.rs`,
//! `jobs.rs`, `settings.rs`, `api_keys.rs`; whole-catalog snapshots in
//! `snapshot.rs`); `migrate.rs` holds the
//! migration runner and `codec.rs` the conversions between rows and domain
//! types; `pool.rs` the connections (primary, replicas, failover) and
//! `pg_url.rs` the PostgreSQL URL. This file holds the transaction helpers
//! and the trait implementation, which only delegates — choosing for each
//! method whether its reads may go to a replica (`Route`).
//!
//! SQLite allows one writer at a time, and a deferred transaction that later
//! wants to write can fail at once with `SQLITE_BUSY`. So on SQLite every
//! writing method holds an in-process mutex and starts with
//! `BEGIN IMMEDIATE` (which also waits, up to the busy timeout, for writers in
//! other processes); reads run concurrently on the pool (WAL mode).
//!
//! On PostgreSQL writes run on the primary's pool. With several hosts, a
//! write that fails because the server is read-only (the primary was
//! demoted) is retried once after the primary is found again (nothing was
//! committed); with several hosts or replicas, reads that lose their
//! connection are retried once. Other errors are returned.

mod api_keys;
mod assets;
mod cluster;
mod codec;
mod connections;
mod jobs;
mod migrate;
mod pg_url;
pub(crate) mod pool;
mod settings;
mod snapshot;
mod versions;

use std::future::Future;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::pool::PoolConnection;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Any, Executor, Transaction};
use tokio::sync::{Mutex, MutexGuard};
use vega_core::{
    ApiKey, Asset, Connection, Id, Job, JobKind, JobState, Lease, Manifest, NewAsset,
    NewConnection, NodeInfo, Role, Segment, Version,
};

use crate::{
    AssetUpdate, Catalog, CatalogError, CatalogSnapshot, ClaimedJob, ConnectionUpdate, JobFilter,
    JobOutcome, JobProgress, Result, StreamFlush,
};

pub use migrate::{AppliedMigration, Migration, MIGRATIONS};
pub use pg_url::{
    HostPort, PostgresUrl, PrimaryHosts, TargetSessionAttrs, DEFAULT_FAILOVER_TIMEOUT,
    DEFAULT_MAX_REPLICA_LAG, DEFAULT_PORT,
};
pub use pool::{PoolRole, PoolRoleStats, PoolStats, ReplicaHealth};
pub use versions::merge_stream_watermark;

use pool::{DatabasePool, Route, ACQUIRE_TIMEOUT};

/// How long a SQLite connection waits for another process's write lock.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections in the SQLite pool; reads run concurrently on them.
const SQLITE_MAX_CONNECTIONS: u32 = 8;

/// Which database a [`SqlCatalog`] talks to. The SQL is the same for both;
/// only connection set-up and transaction start differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The statement that starts a transaction that will write.
    fn begin_write(self) -> &'static str {
        match self {
            // Take the write lock up front: a deferred transaction that
            // upgrades later can fail with SQLITE_BUSY without waiting.
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
        }
    }

    /// The suffix of a `SELECT` that takes the rows it reads for update,
    /// skipping rows another transaction holds (PostgreSQL's
    /// `FOR UPDATE SKIP LOCKED`, for claiming work). Empty on SQLite, where
    /// the write lock already makes the claiming transaction the only one.
    fn skip_locked(self) -> &'static str {
        match self {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        }
    }

    /// The suffix of a `SELECT` that locks the rows it reads until the
    /// transaction ends (PostgreSQL's `FOR UPDATE`). Empty on SQLite.
    fn lock_rows(self) -> &'static str {
        match self {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE",
        }
    }

    /// The statement that starts a transaction that only reads, seeing one
    /// consistent snapshot across its statements.
    fn begin_read(self) -> &'static str {
        match self {
            // In WAL mode a deferred transaction reads one snapshot.
            Backend::Sqlite => "BEGIN",
            Backend::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        }
    }
}

/// The catalog on a SQL database: an embedded SQLite file, or PostgreSQL
/// with an optional read/write split over replicas and primary failover.
#[derive(Debug)]
pub struct SqlCatalog {
    pools: DatabasePool,
    backend: Backend,
    /// Serializes writing transactions; `Some` on SQLite only.
    write_lock: Option<Mutex<()>>,
}

/// A writing transaction, holding the write lock (on SQLite) until it is
/// committed or dropped. Dropping it rolls back.
pub(crate) struct WriteTx<'a> {
    // Field order matters: the transaction is dropped (rolled back) before
    // the lock is released.
    pub(crate) tx: Transaction<'static, Any>,
    pools: &'a DatabasePool,
    _guard: Option<MutexGuard<'a, ()>>,
}

impl WriteTx<'_> {
    /// Commits; from now on this handle reads from the primary for the
    /// read-your-writes window.
    pub(crate) async fn commit(self, action: &'static str) -> Result<()> {
        let WriteTx { tx, pools, _guard } = self;
        tx.commit().await.map_err(codec::db(action))?;
        pools.note_commit();
        Ok(())
    }
}

impl SqlCatalog {
    /// Opens (creating it and its directory if needed) the SQLite catalog at
    /// `path` and applies any missing migrations. The database runs in WAL
    /// mode with `synchronous=FULL`, foreign keys on and a busy timeout.
    pub async fn open_sqlite(path: &Path) -> Result<Self> {
        let path = std::path::absolute(path).map_err(|e| CatalogError::Database {
            action: "resolving the catalog path",
            source: sqlx::Error::Io(e),
        })?;
        create_parent_dir(&path)?;
        Self::open_sqlite_url(&sqlite_file_url(&path), SQLITE_MAX_CONNECTIONS).await
    }

    /// Opens the catalog named by `url`: `sqlite://PATH` (or `sqlite:PATH`,
    /// `sqlite::memory:`) or `postgres://…`. Applies missing migrations.
    pub async fn connect(url: &str) -> Result<Self> {
        let scheme = url.split_once(':').map(|(s, _)| s).unwrap_or("");
        match scheme {
            "sqlite" => {
                if url.contains(":memory:") || url.contains("mode=memory") {
                    // An in-memory database lives in one shared-cache
                    // connection; more connections would lock each other
                    // out without waiting.
                    return Self::open_sqlite_url(url, 1).await;
                }
                let options = SqliteConnectOptions::from_str(url).map_err(|e| {
                    CatalogError::Database {
                        action: "parsing the catalog URL",
                        source: e,
                    }
                })?;
                Self::open_sqlite(options.get_filename()).await
            }
            "postgres" | "postgresql" => Self::open_postgres_url(url).await,
            other => Err(CatalogError::Database {
                action: "parsing the catalog URL",
                source: sqlx::Error::Configuration(
                    format!(
                        "unsupported catalog URL scheme '{other}': expected sqlite:// or postgres://"
                    )
                    .into(),
                ),
            }),
        }
    }

    async fn open_sqlite_url(url: &str, max_connections: u32) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let any_options = AnyConnectOptions::from_str(url).map_err(|e| CatalogError::Database {
            action: "parsing the catalog URL",
            source: e,
        })?;
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .min_connections(0)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    // Per-connection settings; journal_mode=WAL is stored in
                    // the file, setting it again is a no-op.
                    let pragmas = format!(
                        "PRAGMA busy_timeout = {}; PRAGMA journal_mode = WAL; \
                         PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
                        SQLITE_BUSY_TIMEOUT.as_millis()
                    );
                    conn.execute(pragmas.as_str()).await?;
                    Ok(())
                })
            })
            .connect_with(any_options)
            .await
            .map_err(codec::db("opening the SQLite catalog"))?;
        let catalog = SqlCatalog {
            pools: DatabasePool::single(pool, "sqlite"),
            backend: Backend::Sqlite,
            write_lock: Some(Mutex::new(())),
        };
        migrate::run(&catalog).await?;
        Ok(catalog)
    }

    /// Connects to a PostgreSQL catalog and applies missing migrations.
    /// The URL may list several hosts (`postgres://u:pw@h1:p1,h2:p2/db`),
    /// searched in order for the writable primary, and read replicas
    /// (`?replicas=h3:p3,h4`, lag bound `max_replica_lag=5s`); see
    /// [`PostgresUrl`]. Many nodes may share the catalog: migrations are
    /// serialized by an advisory lock, and PostgreSQL's own locking replaces
    /// SQLite's in-process write lock.
    async fn open_postgres_url(url: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let url = PostgresUrl::parse(url)?;
        let catalog = SqlCatalog {
            pools: DatabasePool::connect_postgres(&url).await?,
            backend: Backend::Postgres,
            write_lock: None,
        };
        migrate::run(&catalog).await?;
        Ok(catalog)
    }

    /// Which database this catalog talks to.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The migrations recorded as applied, in version order.
    pub async fn applied_migrations(&self) -> Result<Vec<AppliedMigration>> {
        migrate::applied(self).await
    }

    /// The pools' numbers now: per pool (the primary, then each replica)
    /// connections open, in use and idle, acquires and the time waited for
    /// them, reads served, and each replica's last lag and health; plus
    /// reads that fell back to the primary and failovers. On SQLite the one
    /// pool is the primary.
    pub fn pool_stats(&self) -> PoolStats {
        self.pools.stats()
    }

    /// Closes every pooled connection and stops the health checks; later
    /// calls fail.
    pub async fn close(&self) {
        self.pools.close().await;
    }

    /// Starts a writing transaction on the primary (taking the write lock
    /// on SQLite).
    pub(crate) async fn write_tx(&self, action: &'static str) -> Result<WriteTx<'_>> {
        let guard = match &self.write_lock {
            Some(lock) => Some(lock.lock().await),
            None => None,
        };
        let tx = self
            .pools
            .begin_primary(self.backend.begin_write())
            .await
            .map_err(codec::db(action))?;
        Ok(WriteTx {
            tx,
            pools: &self.pools,
            _guard: guard,
        })
    }

    /// Starts a reading transaction, one consistent snapshot, where `route`
    /// allows.
    pub(crate) async fn read_tx(
        &self,
        action: &'static str,
        route: Route,
    ) -> Result<Transaction<'static, Any>> {
        self.pools
            .begin_read(route, self.backend.begin_read())
            .await
            .map_err(codec::db(action))
    }

    /// A connection for single-statement reads, where `route` allows.
    pub(crate) async fn reader(
        &self,
        action: &'static str,
        route: Route,
    ) -> Result<PoolConnection<Any>> {
        self.pools
            .acquire_read(route)
            .await
            .map_err(codec::db(action))
    }

    /// The primary's pool as it is now.
    #[cfg(test)]
    pub(crate) fn pool(&self) -> sqlx::AnyPool {
        self.pools.primary_pool()
    }

    /// Runs a reading method. With replicas or several hosts, a lost
    /// connection (a replica or the primary went away) or a standby's
    /// recovery conflict is retried once, after the replicas were checked
    /// again. Reads change nothing, so a retry is always safe.
    async fn read<T, F, Fut>(&self, op: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let first = op().await;
        match &first {
            Err(CatalogError::Database { source, .. })
                if self.pools.is_replicated()
                    && ((pool::is_connection_error(source)
                        && !matches!(
                            source,
                            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed
                        ))
                        || pool::is_recovery_conflict(source)) =>
            {
                tracing::debug!(error = %source, "catalog read lost its connection; retrying once");
                self.pools.recheck().await;
                op().await
            }
            _ => first,
        }
    }

    /// Runs a writing method (one transaction). With several hosts, a
    /// read-only error (the primary was demoted: nothing was committed)
    /// searches for the primary and retries once; a lost connection wakes
    /// the primary check and is returned (the commit may or may not have
    /// happened).
    async fn write<T, F, Fut>(&self, op: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let first = op().await;
        match &first {
            Err(CatalogError::Database { source, .. })
                if self.pools.can_fail_over() && pool::is_read_only_error(source) =>
            {
                tracing::warn!(error = %source, "catalog write reached a read-only server; finding the primary");
                match self.pools.recheck_primary().await {
                    Ok(()) => op().await,
                    Err(_) => first,
                }
            }
            Err(CatalogError::Database { source, .. })
                if self.pools.can_fail_over() && pool::is_connection_error(source) =>
            {
                self.pools.wake_primary_monitor();
                first
            }
            _ => first,
        }
    }
}

/// `now` cut to the millisecond precision the catalog stores, so that what a
/// method returns equals what a later read returns.
fn ms(now: DateTime<Utc>) -> DateTime<Utc> {
    now.trunc_subsecs(3)
}

/// Creates the directory that will hold the catalog file.
fn create_parent_dir(path: &Path) -> Result<()> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => std::fs::create_dir_all(dir).map_err(|e| CatalogError::Database {
            action: "creating the catalog directory",
            source: sqlx::Error::Io(e),
        }),
        None => Ok(()),
    }
}

/// The URL of a SQLite file, created if missing. Every byte that could mean
/// something in a URL is percent-encoded (the driver decodes the path).
fn sqlite_file_url(path: &Path) -> String {
    let mut url = String::from("sqlite://");
    for &b in path.as_os_str().as_encoded_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.' | b'~') {
            url.push(char::from(b));
        } else {
            url.push_str(&format!("%{b:02X}"));
        }
    }
    url.push_str("?mode=rwc");
    url
}

/// Which reads may use a replica: plain lookups and listings, which may be
/// up to `max_replica_lag` stale (`Route::Replica` inside the resource
/// functions). Always on the primary: every write and the reads inside it,
/// `ping`, `holds_lease` and `list_leases` (lease state: fencing),
/// `list_segment_paths` (orphan clean-up deletes what it does not list),
/// `export_snapshot` (a backup must not be stale), and migrations.
#[async_trait]
impl Catalog for SqlCatalog {
    fn pool_stats(&self) -> Option<PoolStats> {
        Some(SqlCatalog::pool_stats(self))
    }

    async fn ping(&self) -> Result<()> {
        let mut conn = self.reader("pinging the catalog", Route::Primary).await?;
        sqlx::query("SELECT 1")
            .execute(&mut *conn)
            .await
            .map_err(codec::db("pinging the catalog"))?;
        Ok(())
    }

    async fn create_connection(
        &self,
        new: NewConnection,
        now: DateTime<Utc>,
    ) -> Result<Connection> {
        self.write(|| connections::create(self, new.clone(), ms(now)))
            .await
    }

    async fn get_connection(&self, id: &Id) -> Result<Connection> {
        self.read(|| connections::get(self, id)).await
    }

    async fn get_connection_by_name(&self, name: &str) -> Result<Connection> {
        self.read(|| connections::get_by_name(self, name)).await
    }

    async fn list_connections(&self) -> Result<Vec<Connection>> {
        self.read(|| connections::list(self)).await
    }

    async fn update_connection(
        &self,
        id: &Id,
        update: ConnectionUpdate,
        now: DateTime<Utc>,
    ) -> Result<Connection> {
        self.write(|| connections::update(self, id, update.clone(), ms(now)))
            .await
    }

    async fn set_connection_enabled(
        &self,
        id: &Id,
        enabled: bool,
        now: DateTime<Utc>,
    ) -> Result<Connection> {
        self.write(|| connections::set_enabled(self, id, enabled, ms(now)))
            .await
    }

    async fn delete_connection(&self, id: &Id) -> Result<()> {
        self.write(|| connections::delete(self, id)).await
    }

    async fn create_asset(&self, new: NewAsset, now: DateTime<Utc>) -> Result<Asset> {
        self.write(|| assets::create(self, new.clone(), ms(now)))
            .await
    }

    async fn get_asset(&self, id: &Id) -> Result<Asset> {
        self.read(|| assets::get(self, id)).await
    }

    async fn get_asset_by_name(&self, namespace: &str, name: &str) -> Result<Asset> {
        self.read(|| assets::get_by_name(self, namespace, name))
            .await
    }

    async fn list_assets(&self) -> Result<Vec<Asset>> {
        self.read(|| assets::list(self)).await
    }

    async fn update_asset(
        &self,
        id: &Id,
        update: AssetUpdate,
        now: DateTime<Utc>,
    ) -> Result<Asset> {
        self.write(|| assets::update(self, id, update.clone(), ms(now)))
            .await
    }

    async fn delete_asset(&self, id: &Id) -> Result<()> {
        self.write(|| assets::delete(self, id)).await
    }

    async fn publish_version(
        &self,
        asset_id: &Id,
        manifest: Manifest,
        job_id: Option<&Id>,
        now: DateTime<Utc>,
    ) -> Result<Version> {
        self.write(|| versions::publish(self, asset_id, manifest.clone(), job_id, ms(now)))
            .await
    }

    async fn publish_version_with_watermark(
        &self,
        asset_id: &Id,
        manifest: Manifest,
        watermark: Option<serde_json::Value>,
        job_id: Option<&Id>,
        now: DateTime<Utc>,
    ) -> Result<Version> {
        self.write(|| {
            versions::publish_with_watermark(
                self,
                asset_id,
                manifest.clone(),
                watermark.clone(),
                job_id,
                ms(now),
            )
        })
        .await
    }

    async fn append_segments(
        &self,
        asset_id: &Id,
        schema: serde_json::Value,
        segments: Vec<Segment>,
        watermark: serde_json::Value,
        job_id: Option<&Id>,
        now: DateTime<Utc>,
    ) -> Result<Version> {
        self.write(|| {
            versions::append(
                self,
                asset_id,
                schema.clone(),
                segments.clone(),
                watermark.clone(),
                job_id,
                ms(now),
            )
        })
        .await
    }

    async fn flush_stream(
        &self,
        asset_id: &Id,
        flush: StreamFlush,
        now: DateTime<Utc>,
    ) -> Result<Version> {
        self.write(|| versions::flush_stream(self, asset_id, flush.clone(), ms(now)))
            .await
    }

    async fn get_version(&self, asset_id: &Id, number: u32) -> Result<Version> {
        self.read(|| versions::get(self, asset_id, number)).await
    }

    async fn list_versions(&self, asset_id: &Id) -> Result<Vec<Version>> {
        self.read(|| versions::list(self, asset_id)).await
    }

    async fn set_active_version(
        &self,
        asset_id: &Id,
        number: u32,
        now: DateTime<Utc>,
    ) -> Result<Asset> {
        self.write(|| versions::set_active(self, asset_id, number, ms(now)))
            .await
    }

    async fn list_active_versions(&self) -> Result<Vec<(Asset, Version)>> {
        self.read(|| versions::list_active(self)).await
    }

    async fn list_segment_paths(&self) -> Result<Vec<String>> {
        self.read(|| versions::list_segment_paths(self)).await
    }

    async fn start_job(
        &self,
        kind: JobKind,
        asset_id: Option<&Id>,
        params: serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<Job> {
        self.write(|| jobs::start(self, kind, asset_id, params.clone(), None, ms(now)))
            .await
    }

    async fn start_owned_job(
        &self,
        kind: JobKind,
        asset_id: Option<&Id>,
        params: serde_json::Value,
        owner: &Id,
        lease_ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<Job> {
        let ttl = chrono::Duration::from_std(lease_ttl).unwrap_or(chrono::Duration::MAX);
        self.write(|| {
            jobs::start(
                self,
                kind,
                asset_id,
                params.clone(),
                Some((owner, ttl)),
                ms(now),
            )
        })
        .await
    }

    async fn renew_job_leases(
        &self,
        owner: &Id,
        lease_ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<Id>> {
        let ttl = chrono::Duration::from_std(lease_ttl).unwrap_or(chrono::Duration::MAX);
        self.write(|| jobs::renew_leases(self, owner, ms(now + ttl)))
            .await
    }

    async fn claim_orphaned_jobs(
        &self,
        claimer: &Id,
        limit: u32,
        now: DateTime<Utc>,
    ) -> Result<Vec<ClaimedJob>> {
        self.write(|| jobs::claim_orphaned(self, claimer, limit, ms(now)))
            .await
    }

    async fn get_job(&self, id: &Id) -> Result<Job> {
        self.read(|| jobs::get(self, id)).await
    }

    async fn list_jobs(&self, filter: JobFilter) -> Result<Vec<Job>> {
        self.read(|| jobs::list(self, filter.clone())).await
    }

    async fn update_job_progress(&self, id: &Id, progress: JobProgress) -> Result<()> {
        self.write(|| jobs::update_progress(self, id, progress))
            .await
    }

    async fn record_job_attempt(&self, id: &Id, error: &str) -> Result<Job> {
        self.write(|| jobs::record_attempt(self, id, error)).await
    }

    async fn finish_job(&self, id: &Id, outcome: JobOutcome, now: DateTime<Utc>) -> Result<Job> {
        self.write(|| jobs::finish(self, id, outcome.clone(), ms(now)))
            .await
    }

    async fn fail_interrupted_jobs(
        &self,
        owner: Option<&Id>,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<Job>> {
        self.write(|| jobs::fail_interrupted(self, owner, reason, ms(now)))
            .await
    }

    async fn count_jobs_by_state(&self) -> Result<Vec<(JobState, u64)>> {
        self.read(|| jobs::count_by_state(self)).await
    }

    async fn heartbeat_node(&self, node: &NodeInfo) -> Result<()> {
        let mut node = node.clone();
        node.started_at = ms(node.started_at);
        node.heartbeat_at = ms(node.heartbeat_at);
        self.write(|| cluster::heartbeat(self, &node)).await
    }

    async fn list_nodes(&self) -> Result<Vec<NodeInfo>> {
        self.read(|| cluster::list_nodes(self)).await
    }

    async fn remove_node(&self, id: &Id) -> Result<()> {
        self.write(|| cluster::remove_node(self, id)).await
    }

    async fn acquire_lease(
        &self,
        name: &str,
        holder: &Id,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<Lease>> {
        let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
        self.write(|| cluster::acquire(self, name, holder, ttl, ms(now)))
            .await
    }

    async fn release_lease(&self, name: &str, holder: &Id, now: DateTime<Utc>) -> Result<()> {
        self.write(|| cluster::release(self, name, holder, ms(now)))
            .await
    }

    async fn list_leases(&self) -> Result<Vec<Lease>> {
        self.read(|| cluster::list_leases(self)).await
    }

    async fn holds_lease(
        &self,
        name: &str,
        holder: &Id,
        token: u64,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        self.read(|| cluster::holds(self, name, holder, token, ms(now)))
            .await
    }

    async fn get_setting(&self, key: &str) -> Result<Option<serde_json::Value>> {
        self.read(|| settings::get(self, key)).await
    }

    async fn put_setting(
        &self,
        key: &str,
        value: serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.write(|| settings::put(self, key, value.clone(), ms(now)))
            .await
    }

    async fn create_api_key(
        &self,
        name: &str,
        role: Role,
        secret_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<ApiKey> {
        self.write(|| api_keys::create(self, name, role, secret_hash, ms(now)))
            .await
    }

    async fn find_api_key_by_hash(&self, secret_hash: &str) -> Result<Option<ApiKey>> {
        self.read(|| api_keys::find_by_hash(self, secret_hash))
            .await
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKey>> {
        self.read(|| api_keys::list(self)).await
    }

    async fn delete_api_key(&self, id: &Id) -> Result<()> {
        self.write(|| api_keys::delete(self, id)).await
    }

    async fn export_snapshot(&self, now: DateTime<Utc>) -> Result<CatalogSnapshot> {
        self.read(|| snapshot::export(self, ms(now))).await
    }

    async fn import_snapshot(&self, snapshot: &CatalogSnapshot) -> Result<()> {
        self.write(|| snapshot::import(self, snapshot)).await
    }
}

#[cfg(test)]
mod tests {
    use sqlx::Row;

    use super::*;

    async fn open() -> (tempfile::TempDir, SqlCatalog) {
        let dir = tempfile::tempdir().unwrap();
        let catalog = SqlCatalog::open_sqlite(&dir.path().join("catalog.db"))
            .await
            .unwrap();
        (dir, catalog)
    }

    #[tokio::test]
    async fn numbered_placeholders_bind_by_number_not_by_position() {
        let (_dir, catalog) = open().await;
        // Placeholders out of order, of different types, one used twice: a
        // driver binding by position would swap the text and the integer.
        let row = sqlx::query("SELECT $2 AS a, $1 AS b, $2 + 1 AS c")
            .bind("text")
            .bind(41_i64)
            .fetch_one(&catalog.pool())
            .await
            .unwrap();
        assert_eq!(row.get::<i64, _>("a"), 41);
        assert_eq!(row.get::<String, _>("b"), "text");
        assert_eq!(row.get::<i64, _>("c"), 42);
    }

    #[tokio::test]
    async fn pragmas_are_set_on_every_connection() {
        let (_dir, catalog) = open().await;
        // Hold several connections at once so that each is a distinct one.
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(catalog.pool().acquire().await.unwrap());
        }
        for conn in &mut held {
            let pragma = |name: &'static str| format!("PRAGMA {name}");
            let mode: String = sqlx::query(&pragma("journal_mode"))
                .fetch_one(&mut **conn)
                .await
                .unwrap()
                .get(0);
            assert_eq!(mode.to_ascii_lowercase(), "wal");
            let fk: i64 = sqlx::query(&pragma("foreign_keys"))
                .fetch_one(&mut **conn)
                .await
                .unwrap()
                .get(0);
            assert_eq!(fk, 1);
            // FULL is 2.
            let sync: i64 = sqlx::query(&pragma("synchronous"))
                .fetch_one(&mut **conn)
                .await
                .unwrap()
                .get(0);
            assert_eq!(sync, 2);
            let timeout: i64 = sqlx::query(&pragma("busy_timeout"))
                .fetch_one(&mut **conn)
                .await
                .unwrap()
                .get(0);
            assert_eq!(timeout, 10_000);
        }
    }

    #[test]
    fn file_urls_escape_url_syntax_in_paths() {
        assert_eq!(
            sqlite_file_url(Path::new("/data/my db#1?.db")),
            "sqlite:///data/my%20db%231%3F.db?mode=rwc"
        );
    }

    #[tokio::test]
    async fn unique_violations_are_recognised_through_the_any_driver() {
        let (_dir, catalog) = open().await;
        let insert = "INSERT INTO settings (key, value_json, updated_at) VALUES ($1, $2, $3)";
        for _ in 0..2 {
            let result = sqlx::query(insert)
                .bind("k")
                .bind("1")
                .bind("2026-01-01T00:00:00.000Z")
                .execute(&catalog.pool())
                .await;
            if let Err(e) = result {
                assert!(codec::is_unique_violation(&e), "{e}");
                return;
            }
        }
        panic!("second insert of the same key succeeded");
    }
}
