//! Start-up and shutdown.
//!
//! Start: open the catalog (migrations), storage and the engine; refuse to
//! listen publicly without authentication; install the bootstrap admin key;
//! recover from a crash (interrupted jobs failed, orphan segment files
//! removed); register every active version with the engine; bind both ports;
//! then report ready.
//!
//! Shutdown (SIGTERM/SIGINT): readiness turns 503 at once and new API
//! requests are refused; in-flight requests finish within the grace period;
//! running sync jobs are given the same bound; then the process exits 0.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use vega_catalog::Catalog;
use vega_catalog::SqlCatalog;
use vega_config::Config;
use vega_connectors::file::FileConnector;
use vega_connectors::ConnectorRegistry;
use vega_core::{Clock, Id, IdKind, Role, SystemClock};
use vega_query::{EngineConfig, QueryEngine};
use vega_storage::SegmentStore;
use vega_sync::{Failpoint, Scheduler, SyncOptions, SyncService};

use crate::auth::hash_secret;
use crate::metrics::Metrics;
use crate::publish::{register_version, EngineListener};
use crate::router::{api_router, ops_router};
use crate::state::{AppState, Inner, QueryLimits};

/// Why the server did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("refusing to listen on {addr} without authentication: no API key exists. Set auth.bootstrap_admin_key (or VEGA_AUTH__BOOTSTRAP_ADMIN_KEY) to a secret of at least 24 characters, or listen on a loopback address such as 127.0.0.1")]
    PublicWithoutAuth { addr: SocketAddr },
    #[error("creating the data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("opening the catalog: {0}")]
    Catalog(#[from] vega_catalog::CatalogError),
    #[error("opening storage: {0}")]
    Storage(#[from] vega_storage::StorageError),
    #[error("opening the backup repository: {0}")]
    Backup(#[from] vega_backup::BackupError),
    #[error("invalid backup schedule: {0}")]
    BackupSchedule(String),
    #[error("invalid resilience settings: {0}")]
    Resilience(String),
    #[error("starting the query engine: {0}")]
    Engine(#[from] vega_query::QueryError),
    #[error("opening streaming ingest: {0}")]
    Ingest(#[from] vega_ingest::IngestError),
    #[error("opening this node's write-ahead log in shared storage: {0}")]
    LogLease(String),
    #[error("recovering after the last stop: {0}")]
    Recovery(#[from] vega_sync::SyncError),
    #[error("binding {what} address {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Start-up options that are not configuration.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// A failpoint for crash tests (`VEGA_FAILPOINT`).
    pub failpoint: Option<Failpoint>,
    /// Extra directories the file connector may read (the demo data).
    pub extra_allowed_roots: Vec<PathBuf>,
}

/// A started server.
pub struct RunningServer {
    pub state: AppState,
    pub api_addr: SocketAddr,
    pub ops_addr: SocketAddr,
    stop_api: watch::Sender<bool>,
    stop_ops: watch::Sender<bool>,
    stop_scheduler: watch::Sender<bool>,
    scheduler_task: JoinHandle<()>,
    stop_flusher: watch::Sender<bool>,
    flusher_task: JoinHandle<()>,
    stop_cluster: watch::Sender<bool>,
    cluster_task: JoinHandle<()>,
    api_task: JoinHandle<std::io::Result<()>>,
    ops_task: JoinHandle<std::io::Result<()>>,
    grace: Duration,
}

fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

/// Starts a node on `config`.
pub async fn start(config: &Config, options: StartOptions) -> Result<RunningServer, StartError> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let data_dir = config.data_dir.clone();
    std::fs::create_dir_all(&data_dir).map_err(|source| StartError::DataDir {
        path: data_dir.clone(),
        source,
    })?;
    // Absolute from here on: the engine's sandbox allows exactly this tree.
    let data_dir = data_dir
        .canonicalize()
        .map_err(|source| StartError::DataDir {
            path: data_dir.clone(),
            source,
        })?;

    // The operations port opens first: while start-up waits (for the
    // catalog, say), it answers live but not ready, with the reason.
    let ops_std = std::net::TcpListener::bind(config.ops.listen)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|source| StartError::Bind {
            what: "operations",
            addr: config.ops.listen,
            source,
        })?;
    let starting = {
        let early = ops_std
            .try_clone()
            .and_then(TcpListener::from_std)
            .map_err(|source| StartError::Bind {
                what: "operations",
                addr: config.ops.listen,
                source,
            })?;
        if let Ok(addr) = early.local_addr() {
            tracing::info!(ops = %addr, "operations port open; starting");
        }
        crate::starting::StartingServer::spawn(early, config.node.display_name())
    };

    let catalog: Arc<dyn Catalog> = match &config.catalog.url {
        Some(url) => {
            let catalog = connect_catalog(url.expose(), &starting.state).await?;
            tracing::info!("catalog: PostgreSQL");
            Arc::new(catalog)
        }
        None => Arc::new(SqlCatalog::open_sqlite(&data_dir.join("catalog.db")).await?),
    };
    starting.state.set("recovering after the last stop");

    // Authentication before anything listens.
    let bootstrap = config
        .auth
        .bootstrap_admin_key
        .as_ref()
        .map(|s| s.expose().to_string());
    if let Some(secret) = &bootstrap {
        ensure_bootstrap_key(catalog.as_ref(), secret, clock.as_ref()).await?;
    }
    let keys = catalog.list_api_keys().await?;
    if keys.is_empty() {
        if !is_loopback(&config.api.listen) {
            return Err(StartError::PublicWithoutAuth {
                addr: config.api.listen,
            });
        }
        tracing::warn!(
            listen = %config.api.listen,
            "no API key exists: development mode, every caller is an admin. Set auth.bootstrap_admin_key before exposing Vega"
        );
    }

    // The node keeps its id across restarts, so that it recognises its
    // own interrupted jobs and leases.
    let node_id = node_identity(&data_dir)?;
    let layout = StorageLayout::new(config, &data_dir, &node_id)?;
    let store = match &layout.shared {
        // Other nodes write the same root: files younger than the longest
        // a job may run could be theirs, in flight.
        Some(_) => SegmentStore::open_shared(&layout.segments_dir, config.sync.job_timeout.into())?,
        None => SegmentStore::open(&layout.segments_dir)?,
    };
    let remote = config
        .storage
        .object_store
        .as_ref()
        .map(remote_segments)
        .transpose()?;
    // Without a shared directory, the bucket holds the write-ahead logs
    // too, so a survivor can replay this node's acknowledged rows.
    let object_logs = match (&remote, &layout.shared) {
        (Some(remote), None) => Some(vega_ingest::ObjectLogs::new(
            remote.object_store(),
            remote.prefix(),
            tokio::runtime::Handle::current(),
        )),
        _ => None,
    };
    let store = Arc::new(match remote {
        Some(remote) => store.with_remote(remote),
        None => store,
    });
    let mut roots = config.connectors.file.allowed_roots.clone();
    roots.extend(options.extra_allowed_roots.iter().cloned());
    let mut registry = ConnectorRegistry::new();
    registry.register(Arc::new(FileConnector::new(roots)));
    registry.register(Arc::new(vega_connector_postgres::PostgresConnector::new()));
    registry.register(Arc::new(vega_connector_influxdb::InfluxdbConnector::new()));
    registry.register(Arc::new(vega_connector_http::HttpConnector::new()));
    registry.register(Arc::new(
        vega_connectors::line_protocol::LineProtocolConnector,
    ));
    registry.register(Arc::new(vega_connector_mqtt::MqttConnector));
    let connectors = Arc::new(registry);
    let engine = Arc::new(QueryEngine::open(EngineConfig {
        segments_root: store.root().to_path_buf(),
        temp_dir: data_dir.join("tmp"),
        pool_size: config.query.pool_size,
        max_concurrency: config.query.max_concurrency,
        queue_timeout: config.query.queue_timeout.into(),
        threads: config.query.threads,
        memory_limit_bytes: config.query.memory_limit.as_u64(),
    })?);
    let metrics = Arc::new(Metrics::new());
    let listener = Arc::new(EngineListener {
        engine: engine.clone(),
        store: store.clone(),
        metrics: metrics.clone(),
    });
    let sync = SyncService::new(
        catalog.clone(),
        store.clone(),
        connectors.clone(),
        clock.clone(),
        listener,
        SyncOptions {
            rows_per_segment: config.sync.rows_per_segment as usize,
            job_timeout: config.sync.job_timeout.into(),
            max_concurrent_jobs: config.sync.max_concurrent_jobs,
            max_attempts: config.sync.max_attempts,
            retry_initial_backoff: config.sync.retry_initial_backoff.into(),
            retry_max_backoff: config.sync.retry_max_backoff.into(),
            failpoint: options.failpoint.clone(),
            node: Some(node_id.clone()),
            lease_ttl: config.cluster.lease_ttl.into(),
        },
    );

    // Crash recovery and the active versions' views come before ingest
    // replays its log into the live tables.
    let report = sync.recover().await?;
    if report.interrupted_jobs > 0 || report.orphan_files_removed > 0 {
        tracing::warn!(
            interrupted_jobs = report.interrupted_jobs,
            orphan_files_removed = report.orphan_files_removed,
            orphan_bytes_removed = report.orphan_bytes_removed,
            "recovered from an unclean stop"
        );
    }
    for (asset, version) in catalog.list_active_versions().await? {
        if let Err(e) = store.pull(&version.manifest).await {
            tracing::error!(asset = %asset.qualified_name(), version = %version.label(), error = %e,
                "fetching the active version's files from the object store failed");
        }
        // An asset whose files are missing here (deleted by hand, or on
        // another node's disk) is left out of the engine and logged; the
        // node still starts and serves every other asset.
        if let Err(e) = register_version(&engine, &store, &asset, &version) {
            tracing::error!(asset = %asset.qualified_name(), version = %version.label(), error = %e,
                "the asset's active version cannot be read on this node; it is not queryable here");
        }
    }
    // A shared log is opened only under its lease (another node may still
    // be taking this node's previous log over).
    let lease_ttl: Duration = config.cluster.lease_ttl.into();
    let own_log = match &layout.wal_id {
        Some(_) => {
            let started = Instant::now();
            let fence = crate::cluster::take_own_log_lease(
                catalog.as_ref(),
                clock.as_ref(),
                &node_id,
                lease_ttl,
                lease_ttl * 3 + Duration::from_secs(30),
            )
            .await
            .map_err(StartError::LogLease)?;
            Some((fence, started))
        }
        None => None,
    };
    let ingest = vega_ingest::IngestService::open(
        catalog.clone(),
        store.clone(),
        Arc::new(crate::ingest::EngineLiveRows {
            engine: engine.clone(),
            store: store.clone(),
        }),
        Arc::new(crate::ingest::MetricsObserver {
            metrics: metrics.clone(),
        }),
        clock.clone(),
        vega_ingest::IngestOptions {
            wal_dir: layout.wal_dir.clone(),
            wal_id: layout.wal_id.clone(),
            object_logs,
            wal_fsync_interval: config.ingest.wal_fsync_interval.into(),
            buffer_max_rows: config.ingest.buffer_max_rows,
            buffer_max_bytes: config.ingest.buffer_max_bytes.as_u64(),
            flush_rows: config.ingest.flush_rows,
            flush_bytes: config.ingest.flush_bytes.as_u64(),
            flush_age: config.ingest.flush_age.into(),
            retry_after: config.ingest.retry_after.into(),
        },
    )
    .await?;
    if let Some((fence, started)) = &own_log {
        ingest.set_own_lease(fence.clone(), *started + lease_ttl);
    }

    sync.set_writers(Arc::new(crate::ingest::IngestWriters {
        ingest: ingest.clone(),
    }));
    // Every sync attempt goes through its connection's breaker and
    // bulkhead.
    let ticker: Arc<dyn vega_resilience::Ticker> = Arc::new(vega_resilience::SystemTicker::new());
    let breakers = Arc::new(
        crate::breakers::Breakers::new(&config.circuit_breaker, ticker.clone())
            .map_err(|e| StartError::Resilience(e.to_string()))?,
    );
    let discovery = match &config.service_discovery {
        Some(d) => Some(crate::discovery::DiscoveryAgent::new(d).map_err(StartError::Resilience)?),
        None => None,
    };
    let trino = match &config.query.trino {
        Some(t) => Some(Arc::new(
            crate::remote_engine::TrinoEngine::new(
                t,
                &breakers,
                vega_resilience::BulkheadSettings {
                    max_concurrent: config.resilience.bulkhead.per_pool as u32,
                    max_wait: config.resilience.bulkhead.max_wait.into(),
                },
                ticker.clone(),
            )
            .map_err(StartError::Resilience)?,
        )),
        None => None,
    };
    sync.set_guards(Arc::new(
        vega_sync::SourceGuards::new(
            breakers.registry().clone(),
            // A sync waits for its connection's slot (holding no worker)
            // as long as it may run at all.
            vega_resilience::BulkheadSettings {
                max_concurrent: config.resilience.bulkhead.per_connection as u32,
                max_wait: config.sync.job_timeout.into(),
            },
            vega_resilience::RetryBudgetSettings {
                budget_percent: config.resilience.retry.budget_percent.value(),
                min_retries_per_second: config.resilience.retry.min_retries_per_second,
                ..Default::default()
            },
            ticker.clone(),
        )
        .map_err(|e| StartError::Resilience(e.to_string()))?,
    ));
    sync.set_validator(Arc::new(crate::validation::EngineValidator {
        engine: engine.clone(),
        store: store.clone(),
        clock: clock.clone(),
    }));

    let mqtt = Arc::new(crate::mqtt::MqttStreams::new(
        catalog.clone(),
        ingest.clone(),
        metrics.clone(),
        crate::mqtt::ConsumerIdentity {
            node: node_id.clone(),
            clock: clock.clone(),
            lease_ttl,
        },
    ));
    mqtt.set_breakers(breakers.registry().clone());
    let cache = Arc::new(crate::cache::ResultCache::new(
        (&config.cache).into(),
        &metrics,
    ));
    let rate_limiter = Arc::new(crate::ratelimit::RateLimiter::default());
    // The settings in force now; the watch keeps them current.
    match catalog.get_setting(crate::ratelimit::SETTING).await {
        Ok(value) => rate_limiter.apply_setting(value.as_ref(), Instant::now()),
        Err(e) => tracing::warn!(error = %e, "reading the rate limits failed; the watch retries"),
    }
    let backups = Arc::new(crate::backup::BackupService::new(backup_repository(
        config, &data_dir,
    )?));
    let cluster = Arc::new(crate::cluster::NodeAgent {
        mqtt: mqtt.clone(),
        catalog: catalog.clone(),
        sync: sync.clone(),
        watch: crate::watch::CatalogWatch::new(
            catalog.clone(),
            engine.clone(),
            store.clone(),
            ingest.clone(),
        )
        .with_settings(cache.clone(), rate_limiter.clone())
        .with_breakers(breakers.clone()),
        ingest: ingest.clone(),
        own_log: own_log.map(|(fence, _)| fence),
        clock: clock.clone(),
        node: std::sync::Mutex::new(vega_core::NodeInfo {
            id: node_id.clone(),
            name: config.node.display_name().to_string(),
            roles: vec!["api".into(), "ingest".into(), "sync".into()],
            version: vega_core::VERSION.to_string(),
            api_url: None,
            started_at: clock.now(),
            heartbeat_at: clock.now(),
        }),
        heartbeat_interval: config.cluster.heartbeat_interval.into(),
        lease_ttl: config.cluster.lease_ttl.into(),
        leader: Arc::new(AtomicBool::new(false)),
        scheduler_lease: std::sync::Mutex::new(None),
    });
    let state = AppState {
        inner: Arc::new(Inner {
            node_id,
            cluster: cluster.clone(),
            node_name: config.node.display_name().to_string(),
            started: Instant::now(),
            catalog: catalog.clone(),
            engine: engine.clone(),
            sync: sync.clone(),
            ingest: ingest.clone(),
            mqtt: mqtt.clone(),
            ingest_limits: crate::state::IngestLimits {
                max_body_bytes: config.ingest.max_body_bytes.as_u64() as usize,
            },
            store: store.clone(),
            connectors,
            clock: clock.clone(),
            metrics,
            cache,
            rate_limiter,
            breakers,
            discovery,
            trino,
            default_engine: config.query.engine,
            backups,
            limits: QueryLimits {
                request_timeout: config.api.request_timeout.into(),
                default_timeout: config.query.default_timeout.into(),
                max_timeout: config.query.max_timeout.into(),
                default_max_rows: config.query.default_max_rows as usize,
                max_rows_limit: config.query.max_rows_limit as usize,
            },
            data_dir: data_dir.clone(),
            draining: AtomicBool::new(false),
            started_up: AtomicBool::new(false),
        }),
    };

    let api_listener = TcpListener::bind(config.api.listen)
        .await
        .map_err(|source| StartError::Bind {
            what: "API",
            addr: config.api.listen,
            source,
        })?;
    starting.stop().await;
    let ops_listener = TcpListener::from_std(ops_std).map_err(|source| StartError::Bind {
        what: "operations",
        addr: config.ops.listen,
        source,
    })?;
    let api_addr = api_listener
        .local_addr()
        .map_err(|source| StartError::Bind {
            what: "API",
            addr: config.api.listen,
            source,
        })?;
    let ops_addr = ops_listener
        .local_addr()
        .map_err(|source| StartError::Bind {
            what: "operations",
            addr: config.ops.listen,
            source,
        })?;

    let (stop_api, api_rx) = watch::channel(false);
    let (stop_ops, ops_rx) = watch::channel(false);
    let api_app = api_router(state.clone(), config.api.max_body_bytes.as_u64() as usize);
    let ops_app = ops_router(state.clone());
    let api_task = tokio::spawn(async move {
        axum::serve(api_listener, api_app)
            .with_graceful_shutdown(wait_for(api_rx))
            .await
    });
    let ops_task = tokio::spawn(async move {
        axum::serve(ops_listener, ops_app)
            .with_graceful_shutdown(wait_for(ops_rx))
            .await
    });

    cluster
        .node
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .api_url = Some(format!("http://{api_addr}"));
    if let Some(discovery) = &state.discovery {
        discovery.spawn_registration(&state.node_id, api_addr);
    }
    // One beat before the scheduler starts: a single node leads at once.
    cluster.beat().await;
    let (stop_cluster, cluster_rx) = watch::channel(false);
    let cluster_task = cluster.clone().spawn(cluster_rx);
    state.mqtt.start_all().await;
    let (stop_flusher, flusher_rx) = watch::channel(false);
    let flusher_task = tokio::spawn(ingest.clone().run_flusher(wait_for(flusher_rx)));
    let (stop_scheduler, scheduler_rx) = watch::channel(false);
    let scheduler_task = Scheduler {
        catalog: catalog.clone(),
        sync: sync.clone(),
        clock: clock.clone(),
        tick: config.sync.scheduler_tick.into(),
        retention_interval: config.sync.retention_interval.into(),
        last_retention: Default::default(),
        leader: Some(cluster.leader.clone()),
    }
    .spawn(scheduler_rx.clone());
    let backup_schedules = config
        .backup
        .schedules
        .iter()
        .enumerate()
        .map(|(i, c)| crate::backup_schedule::BackupSchedule::parse(i, c))
        .collect::<Result<Vec<_>, _>>()
        .map_err(StartError::BackupSchedule)?;
    crate::backup_schedule::BackupScheduler {
        state: state.clone(),
        schedules: backup_schedules,
        leader: cluster.leader.clone(),
        tick: config.sync.scheduler_tick.into(),
    }
    .spawn(scheduler_rx);
    // Interrupted jobs run again, now that views are registered.
    sync.resume(&report.interrupted).await;
    state.started_up.store(true, Ordering::SeqCst);
    tracing::info!(api = %api_addr, ops = %ops_addr, node_id = %state.node_id,
        version = vega_core::VERSION, "vega is ready");

    Ok(RunningServer {
        state,
        api_addr,
        ops_addr,
        stop_api,
        stop_ops,
        stop_scheduler,
        scheduler_task,
        stop_flusher,
        flusher_task,
        stop_cluster,
        cluster_task,
        api_task,
        ops_task,
        grace: config.shutdown.grace_period.into(),
    })
}

/// The first wait before connecting to the catalog again, and the longest:
/// a catalog that is down at start (a rolling restart of the database, a
/// failover in progress) is retried with full-jitter backoff between them,
/// for as long as it takes, instead of exiting into a crash loop.
const CATALOG_RETRY_INITIAL: Duration = Duration::from_millis(500);
const CATALOG_RETRY_MAX: Duration = Duration::from_secs(30);

/// Connects to the PostgreSQL catalog, retrying while it cannot be reached
/// (with the reason shown by the starting operations port). Errors that a
/// retry cannot fix (a bad URL, a migration that fails, a catalog newer
/// than this binary) end start-up at once.
async fn connect_catalog(
    url: &str,
    starting: &crate::starting::StartingState,
) -> Result<SqlCatalog, StartError> {
    let mut attempt: u32 = 0;
    loop {
        if attempt == 0 {
            starting.set("connecting to the catalog");
        }
        match SqlCatalog::connect(url).await {
            Ok(catalog) => {
                if attempt > 0 {
                    tracing::info!(attempts = attempt + 1, "the catalog is reachable");
                }
                return Ok(catalog);
            }
            // Unreachable (refused, timed out, no primary found yet) is
            // worth waiting for; a bad URL or a failed migration is not.
            Err(e) if is_transient(&e) => {
                attempt = attempt.saturating_add(1);
                let bound = CATALOG_RETRY_INITIAL
                    .saturating_mul(1u32 << attempt.min(16))
                    .min(CATALOG_RETRY_MAX);
                let wait = bound
                    .mul_f64(rand::random::<f64>())
                    .max(Duration::from_millis(50));
                tracing::warn!(error = %e, attempt, retry_in_ms = wait.as_millis() as u64,
                    "the catalog cannot be reached; retrying");
                starting.set(format!(
                    "the catalog cannot be reached (attempt {attempt}, next in {}ms): {e}",
                    wait.as_millis()
                ));
                tokio::time::sleep(wait).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The S3 client options of an `object_store` block (`field` names it in
/// errors: `storage.object_store` or `backup.object_store`).
fn s3_options(
    o: &vega_config::ObjectStoreConfig,
    field: &str,
) -> Result<vega_storage::S3Options, String> {
    let (bucket, prefix) = o
        .bucket_and_prefix()
        .map_err(|message| format!("{field}.url: {message}"))?;
    Ok(vega_storage::S3Options {
        bucket,
        prefix,
        endpoint: o.endpoint.clone(),
        region: o.region.clone().unwrap_or_else(|| "us-east-1".into()),
        access_key_id: o.access_key_id.as_ref().map(|s| s.expose().to_string()),
        secret_access_key: o.secret_access_key.as_ref().map(|s| s.expose().to_string()),
        allow_http: o.allow_http,
    })
}

/// The object store of `storage.object_store`.
fn remote_segments(
    o: &vega_config::ObjectStoreConfig,
) -> Result<vega_storage::RemoteSegments, StartError> {
    let options = s3_options(o, "storage.object_store").map_err(|message| {
        StartError::Storage(vega_storage::StorageError::InvalidOption {
            field: "storage.object_store.url",
            message,
        })
    })?;
    Ok(vega_storage::RemoteSegments::s3(&options)?)
}

/// The backup repository `config` names (`backup.dir`, by default under
/// `data_dir`, or `backup.object_store`). Also used by the command line,
/// which reads the repository without a running node.
pub fn backup_repository(
    config: &Config,
    data_dir: &std::path::Path,
) -> Result<vega_backup::BackupRepository, StartError> {
    let Some(o) = &config.backup.object_store else {
        return Ok(vega_backup::BackupRepository::local(
            &config.backup.dir_in(data_dir),
        )?);
    };
    let options = s3_options(o, "backup.object_store")
        .map_err(|message| StartError::Backup(vega_backup::BackupError::Config { message }))?;
    Ok(vega_backup::BackupRepository::s3(&options)?)
}

/// Whether a catalog error at start may clear up by itself.
fn is_transient(e: &vega_catalog::CatalogError) -> bool {
    use vega_core::{Classify, ErrorClass};
    matches!(
        e,
        vega_catalog::CatalogError::Database { .. } | vega_catalog::CatalogError::NoPrimary { .. }
    ) || e.class() == ErrorClass::Unavailable
}

/// Where this node keeps segments and its write-ahead log.
struct StorageLayout {
    /// The shared directory, when nodes share one (`storage.shared_dir`).
    shared: Option<PathBuf>,
    segments_dir: PathBuf,
    wal_dir: PathBuf,
    /// The log's name in stream assets' watermarks (`None`: the embedded
    /// log of a single node).
    wal_id: Option<String>,
}

impl StorageLayout {
    fn new(config: &Config, data_dir: &std::path::Path, node: &Id) -> Result<Self, StartError> {
        let Some(shared) = &config.storage.shared_dir else {
            // With a bucket (and no shared directory) the log is this
            // node's, named by its id, with a copy of every batch in the
            // bucket; a separate directory, so that an embedded log left
            // from before is never replayed under the other name.
            let (wal_dir, wal_id) = match &config.storage.object_store {
                Some(_) => (
                    data_dir.join("wal").join(node.as_str()),
                    Some(node.to_string()),
                ),
                None => (data_dir.join("wal"), None),
            };
            return Ok(StorageLayout {
                shared: None,
                segments_dir: data_dir.join("segments"),
                wal_dir,
                wal_id,
            });
        };
        std::fs::create_dir_all(shared).map_err(|source| StartError::DataDir {
            path: shared.clone(),
            source,
        })?;
        let shared = shared
            .canonicalize()
            .map_err(|source| StartError::DataDir {
                path: shared.clone(),
                source,
            })?;
        Ok(StorageLayout {
            segments_dir: shared.join("segments"),
            wal_dir: shared.join("wal").join(node.as_str()),
            wal_id: Some(node.to_string()),
            shared: Some(shared),
        })
    }
}

/// The file in the data directory that holds this node's id.
const NODE_ID_FILE: &str = "node_id";

/// This node's id: read from the data directory, or made and saved there
/// (durably) on the first start.
fn node_identity(data_dir: &std::path::Path) -> Result<Id, StartError> {
    let path = data_dir.join(NODE_ID_FILE);
    let fail = |source: std::io::Error| StartError::DataDir {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => Id::parse(IdKind::Node, text.trim()).ok_or_else(|| {
            fail(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("not a node id: {:?}", text.trim()),
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = Id::generate(IdKind::Node);
            let tmp = path.with_extension("tmp");
            {
                use std::io::Write;
                let mut f = std::fs::File::create(&tmp).map_err(fail)?;
                f.write_all(id.as_str().as_bytes()).map_err(fail)?;
                f.sync_all().map_err(fail)?;
            }
            std::fs::rename(&tmp, &path).map_err(fail)?;
            if let Ok(dir) = std::fs::File::open(data_dir) {
                let _ = dir.sync_all();
            }
            Ok(id)
        }
        Err(e) => Err(fail(e)),
    }
}

async fn wait_for(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

async fn ensure_bootstrap_key(
    catalog: &dyn Catalog,
    secret: &str,
    clock: &dyn Clock,
) -> Result<(), vega_catalog::CatalogError> {
    let hash = hash_secret(secret);
    if catalog.find_api_key_by_hash(&hash).await?.is_some() {
        return Ok(());
    }
    let name = format!("bootstrap-admin-{}", &hash[..8]);
    catalog
        .create_api_key(&name, Role::Admin, &hash, clock.now())
        .await?;
    tracing::info!(name = %name, "bootstrap admin key installed");
    Ok(())
}

impl RunningServer {
    /// Drains and stops: readiness 503 at once, new API requests refused,
    /// in-flight requests and sync jobs finish within the grace period.
    pub async fn shutdown(self) {
        let started = Instant::now();
        self.state.start_draining();
        tracing::info!(
            grace_ms = self.grace.as_millis() as u64,
            "draining: readiness is 503, new requests are refused"
        );
        let _ = self.stop_scheduler.send(true);
        let _ = self.stop_api.send(true);
        let mut api_task = self.api_task;
        if tokio::time::timeout(self.grace, &mut api_task)
            .await
            .is_err()
        {
            tracing::warn!(
                "in-flight requests did not finish within the grace period; stopping anyway"
            );
            api_task.abort();
        }
        let left = self.grace.saturating_sub(started.elapsed());
        if tokio::time::timeout(left, self.state.sync.wait_idle())
            .await
            .is_err()
        {
            tracing::warn!(running = self.state.sync.running_jobs(),
                "sync jobs still running at the end of the grace period; they will be recovered at the next start");
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), self.scheduler_task).await;
        if let Some(discovery) = &self.state.discovery {
            discovery.deregister().await;
        }
        // No more MQTT acknowledgements: the broker keeps what follows.
        self.state.mqtt.shutdown().await;
        // Acknowledged rows are durable in the log already; flushing them
        // now only saves the next start a replay.
        let _ = self.stop_flusher.send(true);
        let left = self
            .grace
            .saturating_sub(started.elapsed())
            .max(Duration::from_secs(1));
        if tokio::time::timeout(left, self.flusher_task).await.is_err() {
            tracing::warn!("flushing streamed rows did not finish in time; the next start replays them from the log");
        }
        if let Err(e) = self.state.ingest.close().await {
            tracing::warn!(error = %e, "closing the write-ahead log");
        }
        // Leave the cluster: leases given up, so another node takes over now.
        let _ = self.stop_cluster.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.cluster_task).await;
        let _ = self.stop_ops.send(true);
        let mut ops_task = self.ops_task;
        if tokio::time::timeout(Duration::from_secs(2), &mut ops_task)
            .await
            .is_err()
        {
            ops_task.abort();
        }
        tracing::info!(
            duration_ms = started.elapsed().as_millis() as u64,
            "stopped"
        );
    }
}
