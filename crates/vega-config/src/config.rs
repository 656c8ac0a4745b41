//! The typed configuration tree, its defaults and the documented reason for
//! each default. Every field has a default, so an empty file (or none) is a
//! valid configuration.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::balance::LoadBalancerConfig;
use crate::breaker::CircuitBreakerConfig;
use crate::bytesize::ByteSize;
use crate::discovery::{RegistrationConfig, RegistrationHealthCheck, ServiceDiscoveryConfig};
use crate::duration::HumanDuration;
use crate::resilience::ResilienceConfig;
use crate::secret::Secret;
use crate::trino::{BasicAuth, Engine, TrinoAuth, TrinoConfig, DEFAULT_ENGINE};

/// Relative to the working directory of the process, so that a first run
/// on a laptop needs no setup and leaves everything in one visible folder.
pub const DEFAULT_DATA_DIR: &str = "./vega-data";

/// Display name used when `node.name` is not set. Deliberately not the host
/// name, so that logs, metrics and tests are the same on every machine.
pub const DEFAULT_NODE_NAME: &str = "vega";

/// Longest accepted `node.name`; it appears in logs, metrics and cluster
/// views, where very long names only get in the way.
pub const MAX_NODE_NAME_LEN: usize = 128;

/// The API port of the specification, bound to loopback so that a fresh
/// install exposes nothing to the network until told to.
pub const DEFAULT_API_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 50013);

/// Large enough for big line-protocol batches and long SQL, small enough
/// that a burst of requests cannot exhaust memory.
pub const DEFAULT_MAX_BODY_BYTES: ByteSize = ByteSize::mib(10);

/// Longer than the default query timeout plus the queue wait, so that a slow
/// query fails as a query timeout (with a clear message) rather than as a
/// dropped HTTP request.
pub const DEFAULT_REQUEST_TIMEOUT: HumanDuration = HumanDuration::from_secs(60);

/// The operations port (health, metrics) of the specification, on loopback
/// for the same reason as the API.
pub const DEFAULT_OPS_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9090);

/// Shortest accepted bootstrap admin key: 24 characters of a random
/// alphabet are beyond guessing, and shorter values are usually mistakes
/// such as a placeholder left in a file.
pub const MIN_BOOTSTRAP_ADMIN_KEY_LEN: usize = 24;

/// A few DuckDB connections serve a laptop or a small server without
/// holding much memory; raise it for many concurrent dashboards.
pub const DEFAULT_QUERY_POOL_SIZE: usize = 4;
/// Accepted `query.pool_size`: at least one connection; each one costs
/// memory, so very large pools are refused as likely mistakes.
pub const QUERY_POOL_SIZE_RANGE: RangeInclusive<usize> = 1..=256;

/// As many queries at once as there are pooled connections by default.
pub const DEFAULT_QUERY_MAX_CONCURRENCY: usize = 4;
/// Accepted `query.max_concurrency`.
pub const QUERY_MAX_CONCURRENCY_RANGE: RangeInclusive<usize> = 1..=1024;

/// A query waits this long for a free slot before the server answers 503
/// with `Retry-After`: long enough to absorb a burst, short enough that
/// clients are not left hanging when the engine is saturated.
pub const DEFAULT_QUERY_QUEUE_TIMEOUT: HumanDuration = HumanDuration::from_secs(5);

/// Interactive queries should finish well within this; dashboards that need
/// longer ask for it per query, up to `max_timeout`.
pub const DEFAULT_QUERY_DEFAULT_TIMEOUT: HumanDuration = HumanDuration::from_secs(30);

/// The longest a client may ask a query to run, so that one request cannot
/// hold a connection indefinitely.
pub const DEFAULT_QUERY_MAX_TIMEOUT: HumanDuration = HumanDuration::from_mins(10);

/// Rows returned when a query does not say: plenty for a table or a chart,
/// small enough to serialize quickly.
pub const DEFAULT_QUERY_DEFAULT_MAX_ROWS: u64 = 10_000;

/// The most rows a client may ask for in one response, bounding response
/// size and server memory.
pub const DEFAULT_QUERY_MAX_ROWS_LIMIT: u64 = 1_000_000;

/// DuckDB worker threads per database; two keep a small machine responsive
/// for the HTTP and sync work running beside the queries.
pub const DEFAULT_QUERY_THREADS: usize = 2;
/// Accepted `query.threads`.
pub const QUERY_THREADS_RANGE: RangeInclusive<usize> = 1..=256;

/// DuckDB memory limit: enough for sizeable aggregations on a laptop while
/// leaving room for the rest of the process and the machine.
pub const DEFAULT_QUERY_MEMORY_LIMIT: ByteSize = ByteSize::gib(2);
/// Bytes of answers the result cache keeps (Spice.ai's default).
pub const DEFAULT_CACHE_MAX_BYTES: ByteSize = ByteSize::mib(128);
/// How long a cached answer is served. Answers are keyed by the exact
/// versions of the data they read, so the TTL bounds memory, not staleness.
pub const DEFAULT_CACHE_TTL: HumanDuration = HumanDuration::from_secs(60);
/// Answers larger than this are not cached.
pub const DEFAULT_CACHE_MAX_ENTRY_BYTES: ByteSize = ByteSize::mib(16);

/// Two sync jobs at once keep sources and disk busy without starving
/// queries on a small machine.
pub const DEFAULT_SYNC_MAX_CONCURRENT_JOBS: usize = 2;
/// Accepted `sync.max_concurrent_jobs`.
pub const SYNC_MAX_CONCURRENT_JOBS_RANGE: RangeInclusive<usize> = 1..=64;

/// A million rows make Parquet segments of tens of megabytes: large enough
/// for efficient scans, small enough to write and checksum quickly.
pub const DEFAULT_SYNC_ROWS_PER_SEGMENT: u64 = 1_000_000;

/// A sync job that runs longer than this is considered stuck and stopped,
/// so that its lease is released and it can be retried.
pub const DEFAULT_SYNC_JOB_TIMEOUT: HumanDuration = HumanDuration::from_hours(1);

/// Three attempts ride out a source restart or a brief network cut without
/// hammering a source that is really down.
pub const DEFAULT_SYNC_MAX_ATTEMPTS: u32 = 3;
/// Accepted `sync.max_attempts`.
pub const SYNC_MAX_ATTEMPTS_RANGE: RangeInclusive<u32> = 1..=100;
/// The first retry waits up to one second (full jitter: a random time
/// between zero and the bound), so retries of many jobs spread out.
pub const DEFAULT_SYNC_RETRY_INITIAL_BACKOFF: HumanDuration = HumanDuration::from_secs(1);
/// The bound doubles per attempt up to one minute.
pub const DEFAULT_SYNC_RETRY_MAX_BACKOFF: HumanDuration = HumanDuration::from_mins(1);
/// Retention runs hourly: periods are days or hours, so an hour's slack is
/// fine, and each run rewrites at most the segments at the cutoff.
pub const DEFAULT_SYNC_RETENTION_INTERVAL: HumanDuration = HumanDuration::from_hours(1);
/// How often the scheduler looks for assets that are due.
pub const DEFAULT_SYNC_SCHEDULER_TICK: HumanDuration = HumanDuration::from_secs(1);

/// Group-commit window of the write-ahead log: a write is acknowledged
/// after the fsync that ends the window it arrived in.
pub const DEFAULT_INGEST_WAL_FSYNC_INTERVAL: HumanDuration = HumanDuration::from_millis(5);
/// The longest accepted group-commit window.
pub const MAX_INGEST_WAL_FSYNC_INTERVAL: HumanDuration = HumanDuration::from_secs(1);
/// Rows the ingest buffer holds at most across all stream assets; writes
/// past it are refused with 503 (MQTT stops acknowledging).
pub const DEFAULT_INGEST_BUFFER_MAX_ROWS: u64 = 2_000_000;
/// Bytes the ingest buffer holds at most (an estimate of the rows' size).
pub const DEFAULT_INGEST_BUFFER_MAX_BYTES: ByteSize = ByteSize::mib(256);
/// A stream asset's buffered rows are flushed to a segment at this many rows.
pub const DEFAULT_INGEST_FLUSH_ROWS: u64 = 500_000;
/// … or at this many bytes.
pub const DEFAULT_INGEST_FLUSH_BYTES: ByteSize = ByteSize::mib(64);
/// … or when the oldest buffered row is this old.
pub const DEFAULT_INGEST_FLUSH_AGE: HumanDuration = HumanDuration::from_secs(10);
/// Largest line-protocol body accepted (after gzip decompression); larger
/// bodies get 413.
pub const DEFAULT_INGEST_MAX_BODY_BYTES: ByteSize = ByteSize::mib(32);
/// The `Retry-After` given with a 503 when the buffer is full.
pub const DEFAULT_INGEST_RETRY_AFTER: HumanDuration = HumanDuration::from_secs(1);

/// Matches the default termination grace period of Kubernetes, so in-flight
/// work finishes before the orchestrator kills the process.
pub const DEFAULT_SHUTDOWN_GRACE_PERIOD: HumanDuration = HumanDuration::from_secs(30);

/// Informational messages and above: what an operator wants by default.
pub const DEFAULT_LOG_LEVEL: &str = "info";

/// The whole configuration of a Vega process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Directory holding the embedded catalog, segments and backups.
    /// A relative path is relative to the working directory of the process.
    pub data_dir: PathBuf,
    /// This node's identity.
    pub node: NodeConfig,
    /// The HTTP API server.
    pub api: ApiConfig,
    /// The operations server (health checks and metrics).
    pub ops: OpsConfig,
    /// Authentication.
    pub auth: AuthConfig,
    /// The catalog database.
    pub catalog: CatalogConfig,
    /// Nodes and leases.
    pub cluster: ClusterConfig,
    /// Where segments and write-ahead logs live.
    pub storage: StorageConfig,
    /// The query engine.
    pub query: QueryConfig,
    /// The result cache of `POST /api/v1/query`.
    pub cache: CacheConfig,
    /// Background sync jobs.
    pub sync: SyncConfig,
    /// Streaming ingest (line protocol, MQTT): write-ahead log and buffer.
    pub ingest: IngestConfig,
    /// Settings of the built-in connectors.
    pub connectors: ConnectorsConfig,
    /// Graceful shutdown.
    pub shutdown: ShutdownConfig,
    /// Logging.
    pub log: LogConfig,
    /// The backup repository (`/api/v1/backups`).
    pub backup: BackupConfig,
    /// The load balancer in front of Vega nodes (what `vega lb render`
    /// renders). Unset: none is described.
    pub load_balancer: Option<LoadBalancerConfig>,
    /// Registering this node and looking up other services. Unset: no
    /// discovery.
    pub service_discovery: Option<ServiceDiscoveryConfig>,
    /// Circuit breakers around calls that leave the process.
    pub circuit_breaker: CircuitBreakerConfig,
    /// Retries and bulkheads of calls that leave the process.
    pub resilience: ResilienceConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            node: NodeConfig::default(),
            api: ApiConfig::default(),
            ops: OpsConfig::default(),
            auth: AuthConfig::default(),
            catalog: CatalogConfig::default(),
            cluster: ClusterConfig::default(),
            storage: StorageConfig::default(),
            query: QueryConfig::default(),
            cache: CacheConfig::default(),
            sync: SyncConfig::default(),
            ingest: IngestConfig::default(),
            connectors: ConnectorsConfig::default(),
            shutdown: ShutdownConfig::default(),
            log: LogConfig::default(),
            backup: BackupConfig::default(),
            load_balancer: None,
            service_discovery: None,
            circuit_breaker: CircuitBreakerConfig::default(),
            resilience: ResilienceConfig::default(),
        }
    }
}

impl Config {
    /// The defaults with every optional section present (and, inside them,
    /// every optional part): the shape of every key that can be set, used
    /// to read environment variables below optional sections.
    pub(crate) fn with_every_section() -> Config {
        let mut config = Config::default();
        config.storage.object_store = Some(ObjectStoreConfig::default());
        config.backup.object_store = Some(ObjectStoreConfig::default());
        config.load_balancer = Some(LoadBalancerConfig::default());
        config.service_discovery = Some(ServiceDiscoveryConfig {
            registration: Some(RegistrationConfig {
                health_check: Some(RegistrationHealthCheck {
                    http: String::new(),
                    interval: HumanDuration::ZERO,
                    timeout: Some(HumanDuration::ZERO),
                }),
                ttl: Some(HumanDuration::ZERO),
                ..RegistrationConfig::default()
            }),
            ..ServiceDiscoveryConfig::default()
        });
        config.query.trino = Some(TrinoConfig {
            auth: TrinoAuth {
                basic: Some(BasicAuth {
                    user: String::new(),
                    password: Secret::new(""),
                }),
                bearer: Some(Secret::new("")),
            },
            ..TrinoConfig::default()
        });
        config
    }

    /// The optional sections that hold sections of their own, each with
    /// the defaults of its type: inside a present one, a sub-section
    /// written with nothing under it means its defaults, as at the top.
    pub(crate) fn optional_sections() -> Vec<(&'static str, serde_yaml::Value)> {
        let schema = |value: Result<serde_yaml::Value, serde_yaml::Error>| {
            value.unwrap_or(serde_yaml::Value::Null)
        };
        vec![
            (
                "load_balancer",
                schema(serde_yaml::to_value(LoadBalancerConfig::default())),
            ),
            (
                "service_discovery",
                schema(serde_yaml::to_value(ServiceDiscoveryConfig::default())),
            ),
            (
                "query.trino",
                schema(serde_yaml::to_value(TrinoConfig::default())),
            ),
        ]
    }

    /// The effective configuration as YAML, with secrets shown as `***`.
    /// Suitable for `vega config check` and for logs.
    pub fn to_yaml(&self) -> String {
        match serde_yaml::to_string(self) {
            Ok(text) => text,
            // Every field serializes; this arm exists only to avoid a panic.
            Err(err) => format!("# the configuration could not be rendered: {err}\n"),
        }
    }
}

/// This node's identity.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Display name of this node in logs, metrics and cluster views.
    /// When not set, `"vega"` is used (never the host name).
    pub name: Option<String>,
}

impl NodeConfig {
    /// The configured name, or [`DEFAULT_NODE_NAME`].
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(DEFAULT_NODE_NAME)
    }
}

/// The HTTP API server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Address and port the API listens on, e.g. `0.0.0.0:50013` to accept
    /// connections from other machines.
    pub listen: SocketAddr,
    /// Largest accepted request body; larger requests get HTTP 413.
    pub max_body_bytes: ByteSize,
    /// Longest time a request may take from start to end of response.
    pub request_timeout: HumanDuration,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: DEFAULT_API_LISTEN,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

/// The operations server: `/health`, `/health/live`, `/health/ready`,
/// `/metrics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpsConfig {
    /// Address and port the operations server listens on.
    pub listen: SocketAddr,
}

impl Default for OpsConfig {
    fn default() -> Self {
        OpsConfig {
            listen: DEFAULT_OPS_LISTEN,
        }
    }
}

/// Cluster coordination through the catalog (nodes and leases).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// How often this node records its heartbeat and renews its leases.
    pub heartbeat_interval: HumanDuration,
    /// How long a lease lasts without renewal: another node takes over the
    /// work of a node whose heartbeat stopped within this time.
    pub lease_ttl: HumanDuration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            heartbeat_interval: HumanDuration::from_secs(2),
            lease_ttl: HumanDuration::from_secs(10),
        }
    }
}

/// Where segments and write-ahead logs live.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// A directory that every node of a cluster sees (a shared mount, or
    /// one directory on a single host). Segments then live in
    /// `<shared_dir>/segments` and each node's write-ahead log in
    /// `<shared_dir>/wal/<node id>`, so any node serves any asset. Unset:
    /// both stay in the data directory (one node).
    pub shared_dir: Option<PathBuf>,
    /// An S3-compatible bucket that holds every segment: versions are
    /// pushed there before they are committed and fetched by nodes that
    /// lack their files, so nodes without a shared directory serve each
    /// other's assets. Write-ahead logs stay local (or in `shared_dir`).
    pub object_store: Option<ObjectStoreConfig>,
}

/// An S3-compatible bucket.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ObjectStoreConfig {
    /// `s3://bucket` or `s3://bucket/prefix`.
    pub url: String,
    /// The server, e.g. `http://127.0.0.1:9000`; unset for AWS itself.
    pub endpoint: Option<String>,
    /// The region (`us-east-1` when unset; local servers ignore it).
    pub region: Option<String>,
    pub access_key_id: Option<Secret>,
    /// Never printed.
    pub secret_access_key: Option<Secret>,
    /// Allows an `http://` endpoint (a local server); off by default.
    pub allow_http: bool,
}

impl ObjectStoreConfig {
    /// The bucket and prefix of `url`, or why it is not an `s3://` URL.
    pub fn bucket_and_prefix(&self) -> Result<(String, String), String> {
        let rest = self
            .url
            .strip_prefix("s3://")
            .ok_or_else(|| format!("'{}' must start with s3://", self.url))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!("'{}' names no bucket", self.url));
        }
        Ok((bucket.to_string(), prefix.trim_matches('/').to_string()))
    }
}

/// Where backups are kept: a directory, or an S3-compatible bucket.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackupConfig {
    /// The directory of the backup repository. Unset: `<data_dir>/backups`.
    /// Ignored when `object_store` is set.
    pub dir: Option<PathBuf>,
    /// An S3-compatible bucket holding the repository instead of a
    /// directory (`url: s3://bucket/prefix`, as `storage.object_store`).
    pub object_store: Option<ObjectStoreConfig>,
    /// Backups the scheduler leader takes on its own, each with its
    /// retention.
    pub schedules: Vec<BackupScheduleConfig>,
}

/// One scheduled backup, e.g. daily, kept for 30 days.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupScheduleConfig {
    /// Names the schedule; its backups are described `scheduled: <name>`.
    pub name: String,
    /// `full` or `catalog`.
    #[serde(default = "default_backup_scope")]
    pub scope: String,
    /// An interval (`24h`) or a cron expression (six fields, seconds first:
    /// `"0 0 3 * * *"`).
    pub schedule: String,
    /// Keep at most this many of the schedule's backups (at least 1).
    #[serde(default)]
    pub keep_last: Option<usize>,
    /// Delete the schedule's backups older than this.
    #[serde(default)]
    pub max_age: Option<HumanDuration>,
}

fn default_backup_scope() -> String {
    "full".into()
}

impl BackupConfig {
    /// The repository's directory: `dir`, or `<data_dir>/backups`.
    pub fn dir_in(&self, data_dir: &std::path::Path) -> PathBuf {
        self.dir.clone().unwrap_or_else(|| data_dir.join("backups"))
    }
}

/// Where the catalog (metadata: connections, assets, versions, jobs) lives.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CatalogConfig {
    /// `postgres://user:password@host:port/database` to keep the catalog in
    /// PostgreSQL (shared by every node of a cluster). Unset: the embedded
    /// SQLite file `<data_dir>/catalog.db`. Never printed (it may hold a
    /// password).
    pub url: Option<Secret>,
}

/// Authentication.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// An admin API key created at start if no admin key exists yet, so
    /// that a fresh installation can be administered. At least 24
    /// characters. Never printed.
    pub bootstrap_admin_key: Option<Secret>,
}

/// The query engines: DuckDB, and optionally Trino.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueryConfig {
    /// Number of pooled DuckDB connections (1 to 256).
    pub pool_size: usize,
    /// Queries allowed to run at once (1 to 1024); more wait in a queue.
    pub max_concurrency: usize,
    /// How long a query waits for a free slot before the request is refused
    /// with HTTP 503. Zero refuses at once when all slots are busy.
    pub queue_timeout: HumanDuration,
    /// Timeout of a query that does not ask for one. At most `max_timeout`.
    pub default_timeout: HumanDuration,
    /// The longest timeout a query may ask for.
    pub max_timeout: HumanDuration,
    /// Rows returned by a query that does not ask for a limit. At most
    /// `max_rows_limit`.
    pub default_max_rows: u64,
    /// The largest row limit a query may ask for.
    pub max_rows_limit: u64,
    /// DuckDB worker threads per database (1 to 256).
    pub threads: usize,
    /// DuckDB memory limit per database.
    pub memory_limit: ByteSize,
    /// Which engine answers queries: `auto` (default: DuckDB, except the
    /// queries `trino` takes), `duckdb` or `trino`.
    pub engine: Engine,
    /// The Trino cluster. Unset: every query runs in DuckDB.
    pub trino: Option<TrinoConfig>,
}

impl Default for QueryConfig {
    fn default() -> Self {
        QueryConfig {
            pool_size: DEFAULT_QUERY_POOL_SIZE,
            max_concurrency: DEFAULT_QUERY_MAX_CONCURRENCY,
            queue_timeout: DEFAULT_QUERY_QUEUE_TIMEOUT,
            default_timeout: DEFAULT_QUERY_DEFAULT_TIMEOUT,
            max_timeout: DEFAULT_QUERY_MAX_TIMEOUT,
            default_max_rows: DEFAULT_QUERY_DEFAULT_MAX_ROWS,
            max_rows_limit: DEFAULT_QUERY_MAX_ROWS_LIMIT,
            threads: DEFAULT_QUERY_THREADS,
            memory_limit: DEFAULT_QUERY_MEMORY_LIMIT,
            engine: DEFAULT_ENGINE,
            trino: None,
        }
    }
}

/// The result cache: answers of read-only queries, in memory, keyed by
/// the normalized SQL, the request's shape and the version of every asset
/// the query reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Whether answers are cached at all.
    pub enabled: bool,
    /// Bytes of answers kept; the least recently used go first.
    pub max_bytes: ByteSize,
    /// How long an answer is served after it was computed.
    pub ttl: HumanDuration,
    /// Answers larger than this are not cached. At most `max_bytes`.
    pub max_entry_bytes: ByteSize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            enabled: true,
            max_bytes: DEFAULT_CACHE_MAX_BYTES,
            ttl: DEFAULT_CACHE_TTL,
            max_entry_bytes: DEFAULT_CACHE_MAX_ENTRY_BYTES,
        }
    }
}

/// Background sync jobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyncConfig {
    /// Sync jobs this node runs at once (1 to 64).
    pub max_concurrent_jobs: usize,
    /// Rows per Parquet segment written by a sync (at least 1).
    pub rows_per_segment: u64,
    /// A sync job running longer than this is stopped and marked failed.
    pub job_timeout: HumanDuration,
    /// Attempts per sync job (1 to 100). Only retryable failures (a source
    /// that cannot be reached, a timeout) are tried again.
    pub max_attempts: u32,
    /// Upper bound of the wait before the first retry; each retry waits a
    /// random time between zero and the bound (full jitter).
    pub retry_initial_backoff: HumanDuration,
    /// The bound doubles per attempt up to this.
    pub retry_max_backoff: HumanDuration,
    /// How often the scheduler looks for assets whose schedule is due.
    pub scheduler_tick: HumanDuration,
    /// How often retention runs for each asset that has a retention.
    pub retention_interval: HumanDuration,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            max_concurrent_jobs: DEFAULT_SYNC_MAX_CONCURRENT_JOBS,
            rows_per_segment: DEFAULT_SYNC_ROWS_PER_SEGMENT,
            job_timeout: DEFAULT_SYNC_JOB_TIMEOUT,
            max_attempts: DEFAULT_SYNC_MAX_ATTEMPTS,
            retry_initial_backoff: DEFAULT_SYNC_RETRY_INITIAL_BACKOFF,
            retry_max_backoff: DEFAULT_SYNC_RETRY_MAX_BACKOFF,
            scheduler_tick: DEFAULT_SYNC_SCHEDULER_TICK,
            retention_interval: DEFAULT_SYNC_RETENTION_INTERVAL,
        }
    }
}

/// Streaming ingest: the write-ahead log, the buffer queries see, and
/// when buffered rows are flushed to Parquet segments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Group-commit window of the write-ahead log (0 to 1s). Writes are
    /// acknowledged only after the fsync that closes their window.
    pub wal_fsync_interval: HumanDuration,
    /// Rows buffered at most, over all stream assets (at least 1).
    pub buffer_max_rows: u64,
    /// Bytes buffered at most (estimated), over all stream assets.
    pub buffer_max_bytes: ByteSize,
    /// Flush a stream asset's buffer at this many rows (at least 1).
    pub flush_rows: u64,
    /// … or this many bytes.
    pub flush_bytes: ByteSize,
    /// … or when its oldest buffered row is this old.
    pub flush_age: HumanDuration,
    /// Largest line-protocol body, after decompression (413 beyond).
    pub max_body_bytes: ByteSize,
    /// `Retry-After` sent with 503 when the buffer is full or the disk is.
    pub retry_after: HumanDuration,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            wal_fsync_interval: DEFAULT_INGEST_WAL_FSYNC_INTERVAL,
            buffer_max_rows: DEFAULT_INGEST_BUFFER_MAX_ROWS,
            buffer_max_bytes: DEFAULT_INGEST_BUFFER_MAX_BYTES,
            flush_rows: DEFAULT_INGEST_FLUSH_ROWS,
            flush_bytes: DEFAULT_INGEST_FLUSH_BYTES,
            flush_age: DEFAULT_INGEST_FLUSH_AGE,
            max_body_bytes: DEFAULT_INGEST_MAX_BODY_BYTES,
            retry_after: DEFAULT_INGEST_RETRY_AFTER,
        }
    }
}

/// Settings of the built-in connectors.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectorsConfig {
    /// The file connector.
    pub file: FileConnectorConfig,
}

/// The file connector.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConnectorConfig {
    /// Directories that file connections may read from. Empty means the
    /// file connector may read nothing. Relative paths in the configuration
    /// file are resolved against the file's directory; relative paths in
    /// the environment variable against the working directory. After
    /// loading, every entry is absolute.
    pub allowed_roots: Vec<PathBuf>,
}

/// Graceful shutdown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    /// After SIGTERM, how long in-flight requests and flushes may take
    /// before the process exits anyway. Zero exits at once.
    pub grace_period: HumanDuration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig {
            grace_period: DEFAULT_SHUTDOWN_GRACE_PERIOD,
        }
    }
}

/// Logging.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// Output format of log lines.
    pub format: LogFormat,
    /// Which events to log: a level (`trace`, `debug`, `info`, `warn`,
    /// `error`, `off`) optionally followed by per-target levels, e.g.
    /// `info,vega_query=debug`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::default(),
            level: DEFAULT_LOG_LEVEL.to_string(),
        }
    }
}

/// Output format of log lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line, for log collectors. The default, because
    /// production logs are read by machines first.
    #[default]
    Json,
    /// Human-readable lines, for a terminal.
    Pretty,
}
