//! [`SqlCatalog`]: the [`Catalog`] on a SQL database through sqlx's `Any`
//! driver, so one body of code serves SQLite (the embedded default) and
//! PostgreSQL (shared by the nodes of a cluster).
//!
//! Every query is portable SQL with numbered placeholders (`$1`, `$2`, …),
//! which both drivers bind by number. The resource files next to this one
//! hold the queries (`connections.rs`, `assets.rs`, `versions.rs`,
//! `jobs.rs`, `settings.rs`, `api_keys.rs`); `migrate.rs` holds the
//! migration runner and `codec.rs` the conversions between rows and domain
//! types. This file holds the pool, the transaction helpers and the trait
//! implementation, which only delegates.
//!
//! SQLite allows one writer at a time, and a deferred transaction that later
//! wants to write can fail at once with `SQLITE_BUSY`. So on SQLite every
//! writing method holds an in-process mutex and starts with
//! `BEGIN IMMEDIATE` (which also waits, up to the busy timeout, for writers in
//! other processes); reads run concurrently on the pool (WAL mode).

mod api_keys;
mod assets;
mod cluster;
mod codec;
mod connections;
mod jobs;
mod migrate;
mod settings;
mod versions;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Any, AnyPool, Executor, Transaction};
use tokio::sync::{Mutex, MutexGuard};
use vega_core::{
    ApiKey, Asset, Connection, Id, Job, JobKind, JobState, Lease, Manifest, NewAsset,
    NewConnection, NodeInfo, Role, Segment, Version,
};

use crate::{
    AssetUpdate, Catalog, CatalogError, ClaimedJob, ConnectionUpdate, JobFilter, JobOutcome,
    JobProgress, Result, StreamFlush,
};

pub use migrate::{AppliedMigration, Migration, MIGRATIONS};
pub use versions::merge_stream_watermark;

/// How long a SQLite connection waits for another process's write lock.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections in the SQLite pool; reads run concurrently on them.
const SQLITE_MAX_CONNECTIONS: u32 = 8;
/// Connections in the PostgreSQL pool of one node.
const POSTGRES_MAX_CONNECTIONS: u32 = 10;
/// How long a caller waits for a free pooled connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

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

/// The catalog on a SQL database (SQLite now; PostgreSQL through the same
/// code later).
#[derive(Debug)]
pub struct SqlCatalog {
    pool: AnyPool,
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
    _guard: Option<MutexGuard<'a, ()>>,
}

impl WriteTx<'_> {
    pub(crate) async fn commit(self, action: &'static str) -> Result<()> {
        let WriteTx { tx, _guard } = self;
        tx.commit().await.map_err(codec::db(action))
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
            pool,
            backend: Backend::Sqlite,
            write_lock: Some(Mutex::new(())),
        };
        migrate::run(&catalog).await?;
        Ok(catalog)
    }

    /// Connects to a PostgreSQL catalog (`postgres://user@host:port/db?…`)
    /// and applies missing migrations. Many nodes may share it: migrations
    /// are serialized by an advisory lock, and PostgreSQL's own locking
    /// replaces SQLite's in-process write lock.
    async fn open_postgres_url(url: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let any_options = AnyConnectOptions::from_str(url).map_err(|e| CatalogError::Database {
            action: "parsing the catalog URL",
            source: e,
        })?;
        let pool = AnyPoolOptions::new()
            .max_connections(POSTGRES_MAX_CONNECTIONS)
            .min_connections(0)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(any_options)
            .await
            .map_err(codec::db("connecting to the PostgreSQL catalog"))?;
        let catalog = SqlCatalog {
            pool,
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
        migrate::applied(&self.pool).await
    }

    /// Closes every pooled connection; later calls fail.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Starts a writing transaction (taking the write lock on SQLite).
    pub(crate) async fn write_tx(&self, action: &'static str) -> Result<WriteTx<'_>> {
        let guard = match &self.write_lock {
            Some(lock) => Some(lock.lock().await),
            None => None,
        };
        let tx = self
            .pool
            .begin_with(self.backend.begin_write())
            .await
            .map_err(codec::db(action))?;
        Ok(WriteTx { tx, _guard: guard })
    }

    /// Starts a reading transaction: one consistent snapshot.
    pub(crate) async fn read_tx(&self, action: &'static str) -> Result<Transaction<'static, Any>> {
        self.pool
            .begin_with(self.backend.begin_read())
            .await
            .map_err(codec::db(action))
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
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

#[async_trait]
impl Catalog for SqlCatalog {
    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(codec::db("pinging the catalog"))?;
        Ok(())
    }

    async fn create_connection(
        &self,
        new: NewConnection,
        now: DateTime<Utc>,
    ) -> Result<Connection> {
        connections::create(self, new, ms(now)).await
    }

    async fn get_connection(&self, id: &Id) -> Result<Connection> {
        connections::get(self, id).await
    }

    async fn get_connection_by_name(&self, name: &str) -> Result<Connection> {
        connections::get_by_name(self, name).await
    }

    async fn list_connections(&self) -> Result<Vec<Connection>> {
        connections::list(self).await
    }

    async fn update_connection(
        &self,
        id: &Id,
        update: ConnectionUpdate,
        now: DateTime<Utc>,
    ) -> Result<Connection> {
        connections::update(self, id, update, ms(now)).await
    }

    async fn set_connection_enabled(
        &self,
        id: &Id,
        enabled: bool,
        now: DateTime<Utc>,
    ) -> Result<Connection> {
        connections::set_enabled(self, id, enabled, ms(now)).await
    }

    async fn delete_connection(&self, id: &Id) -> Result<()> {
        connections::delete(self, id).await
    }

    async fn create_asset(&self, new: NewAsset, now: DateTime<Utc>) -> Result<Asset> {
        assets::create(self, new, ms(now)).await
    }

    async fn get_asset(&self, id: &Id) -> Result<Asset> {
        assets::get(self, id).await
    }

    async fn get_asset_by_name(&self, namespace: &str, name: &str) -> Result<Asset> {
        assets::get_by_name(self, namespace, name).await
    }

    async fn list_assets(&self) -> Result<Vec<Asset>> {
        assets::list(self).await
    }

    async fn update_asset(
        &self,
        id: &Id,
        update: AssetUpdate,
        now: DateTime<Utc>,
    ) -> Result<Asset> {
        assets::update(self, id, update, ms(now)).await
    }

    async fn delete_asset(&self, id: &Id) -> Result<()> {
        assets::delete(self, id).await
    }

    async fn publish_version(
        &self,
        asset_id: &Id,
        manifest: Manifest,
        job_id: Option<&Id>,
        now: DateTime<Utc>,
    ) -> Result<Version> {
        versions::publish(self, asset_id, manifest, job_id, ms(now)).await
    }

    async fn publish_version_with_watermark(
        &self,
        asset_id: &Id,
        manifest: Manifest,
        watermark: Option<serde_json::Value>,
        job_id: Option<&Id>,
        now: DateTime<Utc>,
    ) -> Result<Version> {
        versions::publish_with_watermark(self, asset_id, manifest, watermark, job_id, ms(now)).await
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
        versions::append(self, asset_id, schema, segments, watermark, job_id, ms(now)).await
    }

    async fn flush_stream(
        &self,
        asset_id: &Id,
        flush: StreamFlush,
        now: DateTime<Utc>,
    ) -> Result<Version> {
        versions::flush_stream(self, asset_id, flush, ms(now)).await
    }

    async fn get_version(&self, asset_id: &Id, number: u32) -> Result<Version> {
        versions::get(self, asset_id, number).await
    }

    async fn list_versions(&self, asset_id: &Id) -> Result<Vec<Version>> {
        versions::list(self, asset_id).await
    }

    async fn set_active_version(
        &self,
        asset_id: &Id,
        number: u32,
        now: DateTime<Utc>,
    ) -> Result<Asset> {
        versions::set_active(self, asset_id, number, ms(now)).await
    }

    async fn list_active_versions(&self) -> Result<Vec<(Asset, Version)>> {
        versions::list_active(self).await
    }

    async fn list_segment_paths(&self) -> Result<Vec<String>> {
        versions::list_segment_paths(self).await
    }

    async fn start_job(
        &self,
        kind: JobKind,
        asset_id: Option<&Id>,
        params: serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<Job> {
        jobs::start(self, kind, asset_id, params, None, ms(now)).await
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
        jobs::start(self, kind, asset_id, params, Some((owner, ttl)), ms(now)).await
    }

    async fn renew_job_leases(
        &self,
        owner: &Id,
        lease_ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<Id>> {
        let ttl = chrono::Duration::from_std(lease_ttl).unwrap_or(chrono::Duration::MAX);
        jobs::renew_leases(self, owner, ms(now + ttl)).await
    }

    async fn claim_orphaned_jobs(
        &self,
        claimer: &Id,
        limit: u32,
        now: DateTime<Utc>,
    ) -> Result<Vec<ClaimedJob>> {
        jobs::claim_orphaned(self, claimer, limit, ms(now)).await
    }

    async fn get_job(&self, id: &Id) -> Result<Job> {
        jobs::get(self, id).await
    }

    async fn list_jobs(&self, filter: JobFilter) -> Result<Vec<Job>> {
        jobs::list(self, filter).await
    }

    async fn update_job_progress(&self, id: &Id, progress: JobProgress) -> Result<()> {
        jobs::update_progress(self, id, progress).await
    }

    async fn record_job_attempt(&self, id: &Id, error: &str) -> Result<Job> {
        jobs::record_attempt(self, id, error).await
    }

    async fn finish_job(&self, id: &Id, outcome: JobOutcome, now: DateTime<Utc>) -> Result<Job> {
        jobs::finish(self, id, outcome, ms(now)).await
    }

    async fn fail_interrupted_jobs(
        &self,
        owner: Option<&Id>,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<Job>> {
        jobs::fail_interrupted(self, owner, reason, ms(now)).await
    }

    async fn count_jobs_by_state(&self) -> Result<Vec<(JobState, u64)>> {
        jobs::count_by_state(self).await
    }

    async fn heartbeat_node(&self, node: &NodeInfo) -> Result<()> {
        let mut node = node.clone();
        node.started_at = ms(node.started_at);
        node.heartbeat_at = ms(node.heartbeat_at);
        cluster::heartbeat(self, &node).await
    }

    async fn list_nodes(&self) -> Result<Vec<NodeInfo>> {
        cluster::list_nodes(self).await
    }

    async fn remove_node(&self, id: &Id) -> Result<()> {
        cluster::remove_node(self, id).await
    }

    async fn acquire_lease(
        &self,
        name: &str,
        holder: &Id,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<Lease>> {
        let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
        cluster::acquire(self, name, holder, ttl, ms(now)).await
    }

    async fn release_lease(&self, name: &str, holder: &Id, now: DateTime<Utc>) -> Result<()> {
        cluster::release(self, name, holder, ms(now)).await
    }

    async fn list_leases(&self) -> Result<Vec<Lease>> {
        cluster::list_leases(self).await
    }

    async fn holds_lease(
        &self,
        name: &str,
        holder: &Id,
        token: u64,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        cluster::holds(self, name, holder, token, ms(now)).await
    }

    async fn get_setting(&self, key: &str) -> Result<Option<serde_json::Value>> {
        settings::get(self, key).await
    }

    async fn put_setting(
        &self,
        key: &str,
        value: serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<()> {
        settings::put(self, key, value, ms(now)).await
    }

    async fn create_api_key(
        &self,
        name: &str,
        role: Role,
        secret_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<ApiKey> {
        api_keys::create(self, name, role, secret_hash, ms(now)).await
    }

    async fn find_api_key_by_hash(&self, secret_hash: &str) -> Result<Option<ApiKey>> {
        api_keys::find_by_hash(self, secret_hash).await
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKey>> {
        api_keys::list(self).await
    }

    async fn delete_api_key(&self, id: &Id) -> Result<()> {
        api_keys::delete(self, id).await
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
            .fetch_one(catalog.pool())
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
                .execute(catalog.pool())
                .await;
            if let Err(e) = result {
                assert!(codec::is_unique_violation(&e), "{e}");
                return;
            }
        }
        panic!("second insert of the same key succeeded");
    }
}
