//! [`DatabasePool`]: the catalog's connections — one pool on the primary
//! (swapped when the primary moves) and one pool per read replica.
//!
//! Writes always run on the primary. The primary is found by trying the
//! URL's hosts in order and asking `pg_is_in_recovery()`; a monitor task
//! asks the current primary again every check interval, and a connection
//! error or a read-only server (SQLSTATE 25006: the primary was demoted)
//! starts a new search (bounded by the URL's `failover_timeout`). A found
//! primary gets a fresh pool; the old one is closed. Callers waiting for a
//! connection move to the new pool as soon as it is in place.
//!
//! Reads that may be stale go round-robin to replicas that are reachable,
//! in recovery and lagging no more than `max_replica_lag` (measured by the
//! monitor); when none qualifies they go to the primary (counted, warned
//! once per change). After this handle commits a write, every read goes to
//! the primary for the read-your-writes window.
//!
//! SQLite uses the same type with one pool, no hosts and no monitor.

use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex, RwLock, Weak};
use std::time::{Duration, Instant};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Connection, Row, Transaction};
use tokio::sync::{watch, Mutex, Notify};
use tokio::task::JoinHandle;

use super::pg_url::{PostgresUrl, PrimaryHosts, TargetSessionAttrs};
use crate::{CatalogError, Result};

/// Connections in each PostgreSQL pool of one node (the primary's and each
/// replica's): several nodes share one server, whose `max_connections` is
/// typically 100.
pub(crate) const POSTGRES_MAX_CONNECTIONS: u32 = 10;
/// How long a caller waits for a connection from the primary's pool,
/// including waiting for a new primary during a failover.
pub(crate) const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a read waits for a replica's connection before it goes to the
/// primary instead: a busy or dying replica should not stall reads.
const REPLICA_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on one probe (connect plus one query) of a server: long enough
/// for a TLS and SCRAM handshake on a loaded server, short enough that a
/// host that does not answer delays a failover by little.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// The longest pause between two health checks: a dead primary or a
/// lagging replica is noticed within about this.
const MAX_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// The shortest pause between two health checks, so a tiny lag bound does
/// not turn the monitor into a busy loop.
const MIN_CHECK_INTERVAL: Duration = Duration::from_millis(100);
/// The least read-your-writes window: even with a tiny lag bound a replica
/// needs a moment to replay a commit.
const MIN_READ_YOUR_WRITES: Duration = Duration::from_secs(1);
/// First and longest pause between two rounds of the primary search: quick
/// for a fast promotion, gentle on the hosts for a slow one.
const DISCOVERY_BACKOFF_START: Duration = Duration::from_millis(100);
const DISCOVERY_BACKOFF_MAX: Duration = Duration::from_secs(2);
/// How long a caller whose primary connection failed waits for the
/// monitor before trying again itself.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// The primary check: whether the server is in recovery (a standby) and
/// whether its transactions are read-only by default.
const PRIMARY_CHECK_SQL: &str = "SELECT pg_is_in_recovery() AS in_recovery, \
     current_setting('transaction_read_only') = 'on' AS read_only";

/// The replica check: whether the server is a standby, and its lag in
/// seconds. The lag is 0 when everything received is replayed and the WAL
/// receiver is streaming; otherwise the age of the last replayed commit.
/// (A receiver that is not streaming — the primary is gone or unreachable
/// — cannot vouch for being caught up, so the conservative measure is
/// used. Without `pg_read_all_stats` the receiver's status reads as NULL
/// and is trusted.)
const REPLICA_CHECK_SQL: &str = "SELECT pg_is_in_recovery() AS in_recovery, \
     CAST(CASE \
       WHEN NOT pg_is_in_recovery() THEN NULL \
       WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() \
            AND (SELECT COALESCE(status, 'streaming') FROM pg_stat_wal_receiver) = 'streaming' \
         THEN 0 \
       ELSE EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()) \
     END AS DOUBLE PRECISION) AS lag_seconds";

/// Where a read may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// A qualifying replica, else the primary. For plain lookups and
    /// listings that may be up to `max_replica_lag` stale.
    Replica,
    /// Always the primary: fencing checks, lease state, migrations, and
    /// anything a decision to write or delete is based on.
    Primary,
}

/// Whether a pool serves the primary or a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PoolRole {
    Primary,
    Replica,
}

impl PoolRole {
    pub fn as_str(self) -> &'static str {
        match self {
            PoolRole::Primary => "primary",
            PoolRole::Replica => "replica",
        }
    }
}

/// A snapshot of the catalog's pools ([`super::SqlCatalog::pool_stats`]).
#[derive(Debug, Clone, PartialEq)]
pub struct PoolStats {
    /// The primary's pool (SQLite's only pool).
    pub primary: PoolRoleStats,
    /// One entry per replica of the URL's `replicas=`, in that order.
    pub replicas: Vec<PoolRoleStats>,
    /// Reads that could have gone to a replica but went to the primary
    /// because no replica qualified (unreachable, not in recovery, lagging
    /// or unchecked). Read-your-writes and primary-only reads are not
    /// counted.
    pub fallback_reads: u64,
    /// How many times the primary moved to another host.
    pub failovers: u64,
}

/// One pool's numbers. Counters are cumulative since the catalog opened;
/// the primary's survive a failover.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolRoleStats {
    pub role: PoolRole,
    /// `host:port` (no credentials); `sqlite` for the SQLite file.
    pub host: String,
    /// Connections open now.
    pub open: u32,
    /// Connections checked out now.
    pub active: u32,
    /// Connections open and idle now.
    pub idle: u32,
    /// Connections handed out (pool acquire or begin).
    pub acquires: u64,
    /// Total time callers waited in acquire or begin (on the primary,
    /// including waiting for a new primary during a failover).
    pub acquire_wait: Duration,
    /// Reads served by this pool.
    pub reads: u64,
    /// The last health check, for a replica.
    pub replica: Option<ReplicaHealth>,
}

/// What the last check of a replica found.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaHealth {
    /// The check reached the server.
    pub reachable: bool,
    /// The server is a standby (`pg_is_in_recovery()`).
    pub in_recovery: bool,
    /// The replication lag the check measured.
    pub lag: Option<Duration>,
    /// How long ago the check finished; `None` before the first one.
    pub checked_ago: Option<Duration>,
    /// Whether reads may go to it now.
    pub usable: bool,
    /// Why it is not usable, when it is not.
    pub problem: Option<String>,
}

/// Whether an error means the server is gone or cannot serve us now (so
/// the primary may have moved): I/O failures, a closed or timed-out pool,
/// and SQLSTATE classes 08 (connection exception) and 57P01–57P03 (the
/// server shuts down, crashed or is starting).
pub(crate) fn is_connection_error(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => true,
        sqlx::Error::Database(d) => d
            .code()
            .is_some_and(|c| c.starts_with("08") || matches!(&*c, "57P01" | "57P02" | "57P03")),
        _ => false,
    }
}

/// Whether a read on a standby was cancelled because replay needed what it
/// was reading (SQLSTATE 40001, "conflict with recovery", or a deadlock
/// with the startup process, 40P01). Reads may simply run again.
pub(crate) fn is_recovery_conflict(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if matches!(d.code().as_deref(), Some("40001" | "40P01")))
}

/// Whether an error is PostgreSQL's `read_only_sql_transaction` (25006): a
/// write reached a server in recovery, i.e. the primary was demoted.
pub(crate) fn is_read_only_error(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("25006"))
}

/// One server the pools can talk to.
#[derive(Clone)]
struct Endpoint {
    /// `host:port`, for logs and stats.
    label: String,
    /// Holds the password: never logged.
    options: AnyConnectOptions,
}

#[derive(Default)]
struct Counters {
    acquires: AtomicU64,
    wait_nanos: AtomicU64,
    reads: AtomicU64,
}

impl Counters {
    fn waited(&self, started: Instant) {
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.wait_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    fn acquired(&self) {
        self.acquires.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self, role: PoolRole, host: String, pool: &AnyPool) -> PoolRoleStats {
        let open = pool.size();
        let idle = u32::try_from(pool.num_idle()).unwrap_or(u32::MAX).min(open);
        PoolRoleStats {
            role,
            host,
            open,
            active: open - idle,
            idle,
            acquires: self.acquires.load(Ordering::Relaxed),
            acquire_wait: Duration::from_nanos(self.wait_nanos.load(Ordering::Relaxed)),
            reads: self.reads.load(Ordering::Relaxed),
            replica: None,
        }
    }
}

/// The primary's pool as it is now; replaced whole on a failover.
struct Current {
    /// Bumped on every swap.
    generation: u64,
    /// Index into `Primary::endpoints` (0 on SQLite).
    endpoint: usize,
    label: String,
    pool: AnyPool,
}

struct Primary {
    /// The hosts to search, in URL order; empty on SQLite (never searched).
    endpoints: Vec<Endpoint>,
    /// What a host must be to serve writes.
    attrs: TargetSessionAttrs,
    current: RwLock<Arc<Current>>,
    /// Carries the generation, so waiters learn of a swap at once.
    changed: watch::Sender<u64>,
    /// One search at a time.
    discovery: Mutex<()>,
    /// The monitor's own connection to the current primary, with the
    /// generation it was opened for.
    probe: Mutex<Option<(u64, AnyConnection)>>,
    counters: Counters,
    failovers: AtomicU64,
}

impl Primary {
    fn current(&self) -> Arc<Current> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[derive(Default)]
struct ReplicaState {
    checked_at: Option<Instant>,
    reachable: bool,
    in_recovery: bool,
    lag: Option<Duration>,
    /// Why the last check found it unusable (beyond staleness and lag).
    problem: Option<String>,
    /// Whether the last check found it usable, for logging changes once.
    was_usable: Option<bool>,
}

struct Replica {
    endpoint: Endpoint,
    pool: AnyPool,
    /// The monitor's own connection, so checks never wait for the pool.
    probe: Mutex<Option<AnyConnection>>,
    state: StdMutex<ReplicaState>,
    counters: Counters,
}

impl Replica {
    fn state(&self) -> std::sync::MutexGuard<'_, ReplicaState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct Limits {
    max_lag: Duration,
    /// Reads after a commit of this handle go to the primary this long.
    read_your_writes: Duration,
    check_interval: Duration,
    /// A replica whose last check is older than this is not used.
    status_max_age: Duration,
    failover_timeout: Duration,
}

impl Limits {
    fn new(max_lag: Duration, failover_timeout: Duration) -> Self {
        let check_interval = (max_lag / 2).clamp(MIN_CHECK_INTERVAL, MAX_CHECK_INTERVAL);
        Limits {
            max_lag,
            // The replica may be up to `max_lag` behind when checked, and
            // the check may be up to an interval (≤ max_lag / 2) old, so
            // after twice the bound any usable replica has replayed it.
            read_your_writes: max_lag.saturating_mul(2).max(MIN_READ_YOUR_WRITES),
            check_interval,
            status_max_age: (check_interval * 3).max(PROBE_TIMEOUT),
            failover_timeout,
        }
    }

    /// `Err(reason)` when reads may not go to a replica in `state`.
    fn usable(&self, state: &ReplicaState, now: Instant) -> std::result::Result<(), String> {
        let Some(checked_at) = state.checked_at else {
            return Err("not checked yet".into());
        };
        if let Some(problem) = &state.problem {
            return Err(problem.clone());
        }
        let age = now.saturating_duration_since(checked_at);
        if age > self.status_max_age {
            return Err(format!("last successful check {} ms ago", age.as_millis()));
        }
        match state.lag {
            Some(lag) if lag <= self.max_lag => Ok(()),
            Some(lag) => Err(format!(
                "replication lag {} ms exceeds max_replica_lag {} ms",
                lag.as_millis(),
                self.max_lag.as_millis()
            )),
            None => Err("replication lag unknown".into()),
        }
    }
}

struct Shared {
    primary: Primary,
    replicas: Vec<Replica>,
    limits: Limits,
    /// Whether the primary may move: PostgreSQL with more than one host.
    /// Only then is there a primary monitor and a search.
    searchable: bool,
    /// Whether errors may mean a moved primary or a dead replica (more
    /// than one host, or replicas): only then are reads retried.
    replicated: bool,
    /// Reference point of `last_commit`.
    epoch: Instant,
    /// Milliseconds after `epoch` (plus one) of this handle's last commit;
    /// 0 before the first.
    last_commit: AtomicU64,
    next_replica: AtomicUsize,
    fallback_reads: AtomicU64,
    /// Whether reads are falling back to the primary now (for logging
    /// changes once).
    falling_back: AtomicBool,
    wake_primary: Arc<Notify>,
    wake_replicas: Arc<Notify>,
}

/// What a read may use, in order.
enum Pick {
    /// The primary; `fallback` when a replica would have been used had one
    /// qualified.
    Primary { fallback: bool },
    /// Indices of qualifying replicas, round-robin order.
    Replicas(Vec<usize>),
}

/// The catalog's connections. Dropping it stops its monitor tasks.
pub(crate) struct DatabasePool {
    shared: Arc<Shared>,
    monitors: Vec<JoinHandle<()>>,
}

impl fmt::Debug for DatabasePool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let primary = self.shared.primary.current();
        f.debug_struct("DatabasePool")
            .field("primary", &primary.label)
            .field(
                "replicas",
                &self
                    .shared
                    .replicas
                    .iter()
                    .map(|r| r.endpoint.label.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Drop for DatabasePool {
    fn drop(&mut self) {
        for monitor in &self.monitors {
            monitor.abort();
        }
    }
}

fn new_primary_pool(options: AnyConnectOptions) -> AnyPool {
    AnyPoolOptions::new()
        .max_connections(POSTGRES_MAX_CONNECTIONS)
        .min_connections(0)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_lazy_with(options)
}

fn new_replica_pool(options: AnyConnectOptions) -> AnyPool {
    AnyPoolOptions::new()
        .max_connections(POSTGRES_MAX_CONNECTIONS)
        .min_connections(0)
        .acquire_timeout(REPLICA_ACQUIRE_TIMEOUT)
        .connect_lazy_with(options)
}

fn endpoint(label: String, url: &str) -> Result<Endpoint> {
    let options = AnyConnectOptions::from_str(url).map_err(|e| CatalogError::Database {
        action: "parsing the catalog URL",
        source: e,
    })?;
    Ok(Endpoint { label, options })
}

/// Runs the primary check on `conn`: `Err(why)` when the server cannot
/// serve the write pool (or did not answer).
async fn check_writable(
    conn: &mut AnyConnection,
    attrs: TargetSessionAttrs,
) -> std::result::Result<(), String> {
    let row = sqlx::query(PRIMARY_CHECK_SQL)
        .fetch_one(conn)
        .await
        .map_err(|e| e.to_string())?;
    let in_recovery: bool = row.try_get("in_recovery").map_err(|e| e.to_string())?;
    let read_only: bool = row.try_get("read_only").map_err(|e| e.to_string())?;
    if in_recovery {
        Err("in recovery (a standby)".into())
    } else if read_only && attrs == TargetSessionAttrs::ReadWrite {
        Err("read-only (default_transaction_read_only is on)".into())
    } else {
        Ok(())
    }
}

/// Opens a connection to `endpoint` and runs the primary check, bounded
/// by `limit`.
async fn probe_writable(
    endpoint: &Endpoint,
    attrs: TargetSessionAttrs,
    limit: Duration,
) -> std::result::Result<(), String> {
    let probe = async {
        let mut conn = AnyConnection::connect_with(&endpoint.options)
            .await
            .map_err(|e| e.to_string())?;
        let answer = check_writable(&mut conn, attrs).await;
        let _ = conn.close().await;
        answer
    };
    match tokio::time::timeout(limit, probe).await {
        Ok(answer) => answer,
        Err(_) => Err(format!("no answer within {} ms", limit.as_millis())),
    }
}

/// Tries the hosts (`prefer` first, then the rest in URL order) until one
/// is a writable primary, in rounds with backoff, for at most `timeout`.
async fn find_primary(
    endpoints: &[Endpoint],
    attrs: TargetSessionAttrs,
    prefer: Option<usize>,
    timeout: Duration,
) -> Result<usize> {
    let deadline = Instant::now() + timeout;
    let order: Vec<usize> = prefer
        .into_iter()
        .chain((0..endpoints.len()).filter(|i| Some(*i) != prefer))
        .collect();
    let mut backoff = DISCOVERY_BACKOFF_START;
    loop {
        let mut problems = Vec::new();
        for &i in &order {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let limit = PROBE_TIMEOUT.min(remaining.max(MIN_CHECK_INTERVAL));
            match probe_writable(&endpoints[i], attrs, limit).await {
                Ok(()) => return Ok(i),
                Err(e) => problems.push(format!("{}: {e}", endpoints[i].label)),
            }
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(CatalogError::NoPrimary {
                hosts: endpoints
                    .iter()
                    .map(|e| e.label.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                message: format!(
                    "{} (searched for {} ms)",
                    problems.join("; "),
                    timeout.as_millis()
                ),
            });
        }
        tokio::time::sleep(backoff.min(deadline - now)).await;
        backoff = (backoff * 2).min(DISCOVERY_BACKOFF_MAX);
    }
}

/// Waits until the primary's generation differs from `generation`.
async fn swapped(changed: &mut watch::Receiver<u64>, generation: u64) {
    loop {
        if *changed.borrow_and_update() != generation {
            return;
        }
        if changed.changed().await.is_err() {
            // The sender lives as long as the pool; without it nothing
            // will ever change.
            std::future::pending::<()>().await;
        }
    }
}

impl DatabasePool {
    /// One pool, no hosts to search, no replicas: SQLite.
    pub(crate) fn single(pool: AnyPool, label: &str) -> Self {
        let shared = Shared::new(
            Vec::new(),
            TargetSessionAttrs::ReadWrite,
            Current {
                generation: 0,
                endpoint: 0,
                label: label.to_string(),
                pool,
            },
            Vec::new(),
            Limits::new(Duration::ZERO, ACQUIRE_TIMEOUT),
            false,
        );
        DatabasePool {
            shared: Arc::new(shared),
            monitors: Vec::new(),
        }
    }

    /// Finds the primary among the URL's hosts (bounded by its
    /// `failover_timeout`), opens its pool and one per replica (lazily: an
    /// unreachable replica does not fail this), checks the replicas once,
    /// and starts the monitor tasks.
    pub(crate) async fn connect_postgres(url: &PostgresUrl) -> Result<Self> {
        let endpoints = match url.primary_hosts() {
            PrimaryHosts::List(hosts) => hosts
                .iter()
                .map(|h| endpoint(h.to_string(), &url.server_url(h)))
                .collect::<Result<Vec<_>>>()?,
            PrimaryHosts::FromQuery(host) => vec![endpoint(host.clone(), &url.query_host_url())?],
        };
        let replicas = url
            .replicas()
            .iter()
            .map(|h| {
                let endpoint = endpoint(h.to_string(), &url.server_url(h))?;
                Ok(Replica {
                    pool: new_replica_pool(endpoint.options.clone()),
                    endpoint,
                    probe: Mutex::new(None),
                    state: StdMutex::new(ReplicaState::default()),
                    counters: Counters::default(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let limits = Limits::new(url.max_replica_lag(), url.failover_timeout());

        let attrs = url.target_session_attrs();
        let found = find_primary(&endpoints, attrs, None, limits.failover_timeout).await?;
        let current = Current {
            generation: 0,
            endpoint: found,
            label: endpoints[found].label.clone(),
            pool: new_primary_pool(endpoints[found].options.clone()),
        };
        tracing::info!(
            primary = %current.label,
            replicas = replicas.len(),
            "catalog primary found"
        );
        // One host cannot fail over to another: then the pool behaves as a
        // plain sqlx pool (it reconnects by itself), without a monitor.
        let searchable = endpoints.len() > 1;
        let shared = Arc::new(Shared::new(
            endpoints, attrs, current, replicas, limits, searchable,
        ));
        shared.check_replicas().await;

        let mut monitors = Vec::new();
        if searchable {
            monitors.push(tokio::spawn(primary_monitor(
                Arc::downgrade(&shared),
                shared.wake_primary.clone(),
                shared.limits.check_interval,
            )));
        }
        if !shared.replicas.is_empty() {
            monitors.push(tokio::spawn(replica_monitor(
                Arc::downgrade(&shared),
                shared.wake_replicas.clone(),
                shared.limits.check_interval,
            )));
        }
        Ok(DatabasePool { shared, monitors })
    }

    /// The primary's pool as it is now.
    #[cfg(test)]
    pub(crate) fn primary_pool(&self) -> AnyPool {
        self.shared.primary.current().pool.clone()
    }

    /// Begins a transaction on the primary with `statement` (moving to a
    /// new primary if it changes meanwhile).
    pub(crate) async fn begin_primary(
        &self,
        statement: &'static str,
    ) -> std::result::Result<Transaction<'static, Any>, sqlx::Error> {
        self.shared
            .on_primary(move |pool| async move { pool.begin_with(statement).await })
            .await
    }

    /// Begins a read transaction with `statement` where `route` allows.
    pub(crate) async fn begin_read(
        &self,
        route: Route,
        statement: &'static str,
    ) -> std::result::Result<Transaction<'static, Any>, sqlx::Error> {
        self.shared
            .read(route, move |pool| async move {
                pool.begin_with(statement).await
            })
            .await
    }

    /// A connection for a read where `route` allows.
    pub(crate) async fn acquire_read(
        &self,
        route: Route,
    ) -> std::result::Result<PoolConnection<Any>, sqlx::Error> {
        self.shared
            .read(route, |pool| async move { pool.acquire().await })
            .await
    }

    /// Records a commit by this handle: reads go to the primary for the
    /// read-your-writes window.
    pub(crate) fn note_commit(&self) {
        let ms = u64::try_from(self.shared.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.shared.last_commit.store(ms + 1, Ordering::Relaxed);
    }

    /// Whether errors can mean a moved primary or a dead replica (several
    /// hosts, or replicas).
    pub(crate) fn is_replicated(&self) -> bool {
        self.shared.replicated
    }

    /// Whether the primary can move to another host.
    pub(crate) fn can_fail_over(&self) -> bool {
        self.shared.searchable
    }

    /// After a connection error in a read: re-checks the replicas now (so
    /// a dead one is skipped by the retry) and wakes the primary monitor.
    pub(crate) async fn recheck(&self) {
        self.shared.wake_primary.notify_one();
        self.shared.check_replicas().await;
    }

    /// After a read-only error in a write: checks the primary now and, if
    /// it is not the primary any more, searches for the new one (bounded).
    pub(crate) async fn recheck_primary(&self) -> Result<()> {
        self.shared.check_primary().await
    }

    /// After a connection error in a write: the monitor checks now.
    pub(crate) fn wake_primary_monitor(&self) {
        self.shared.wake_primary.notify_one();
    }

    pub(crate) fn stats(&self) -> PoolStats {
        let shared = &self.shared;
        let current = shared.primary.current();
        let now = Instant::now();
        let replicas = shared
            .replicas
            .iter()
            .map(|r| {
                let mut stats =
                    r.counters
                        .snapshot(PoolRole::Replica, r.endpoint.label.clone(), &r.pool);
                let state = r.state();
                let usable = shared.limits.usable(&state, now);
                stats.replica = Some(ReplicaHealth {
                    reachable: state.reachable,
                    in_recovery: state.in_recovery,
                    lag: state.lag,
                    checked_ago: state.checked_at.map(|t| now.saturating_duration_since(t)),
                    usable: usable.is_ok(),
                    problem: usable.err(),
                });
                stats
            })
            .collect();
        PoolStats {
            primary: shared.primary.counters.snapshot(
                PoolRole::Primary,
                current.label.clone(),
                &current.pool,
            ),
            replicas,
            fallback_reads: shared.fallback_reads.load(Ordering::Relaxed),
            failovers: shared.primary.failovers.load(Ordering::Relaxed),
        }
    }

    /// Stops the monitors and closes every pool; later calls fail.
    pub(crate) async fn close(&self) {
        for monitor in &self.monitors {
            monitor.abort();
        }
        self.shared.primary.current().pool.close().await;
        for replica in &self.shared.replicas {
            replica.pool.close().await;
        }
    }
}

impl Shared {
    fn new(
        endpoints: Vec<Endpoint>,
        attrs: TargetSessionAttrs,
        current: Current,
        replicas: Vec<Replica>,
        limits: Limits,
        searchable: bool,
    ) -> Self {
        let (changed, _) = watch::channel(current.generation);
        Shared {
            primary: Primary {
                endpoints,
                attrs,
                current: RwLock::new(Arc::new(current)),
                changed,
                discovery: Mutex::new(()),
                probe: Mutex::new(None),
                counters: Counters::default(),
                failovers: AtomicU64::new(0),
            },
            replicated: searchable || !replicas.is_empty(),
            replicas,
            limits,
            searchable,
            epoch: Instant::now(),
            last_commit: AtomicU64::new(0),
            next_replica: AtomicUsize::new(0),
            fallback_reads: AtomicU64::new(0),
            falling_back: AtomicBool::new(false),
            wake_primary: Arc::new(Notify::new()),
            wake_replicas: Arc::new(Notify::new()),
        }
    }

    fn in_read_your_writes_window(&self) -> bool {
        let last = self.last_commit.load(Ordering::Relaxed);
        if last == 0 {
            return false;
        }
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1;
        let window = u64::try_from(self.limits.read_your_writes.as_millis()).unwrap_or(u64::MAX);
        now.saturating_sub(last) < window
    }

    fn pick(&self) -> Pick {
        if self.replicas.is_empty() || self.in_read_your_writes_window() {
            return Pick::Primary { fallback: false };
        }
        let n = self.replicas.len();
        let start = self.next_replica.fetch_add(1, Ordering::Relaxed) % n;
        let now = Instant::now();
        let usable: Vec<usize> = (0..n)
            .map(|k| (start + k) % n)
            .filter(|&i| self.limits.usable(&self.replicas[i].state(), now).is_ok())
            .collect();
        if usable.is_empty() {
            Pick::Primary { fallback: true }
        } else {
            Pick::Replicas(usable)
        }
    }

    /// Runs `open` on a replica's pool where `route` and the replicas'
    /// state allow, else on the primary's.
    async fn read<T, F, Fut>(&self, route: Route, open: F) -> std::result::Result<T, sqlx::Error>
    where
        F: Fn(AnyPool) -> Fut,
        Fut: Future<Output = std::result::Result<T, sqlx::Error>>,
    {
        let fallback = match route {
            Route::Primary => false,
            Route::Replica => match self.pick() {
                Pick::Primary { fallback } => fallback,
                Pick::Replicas(order) => {
                    for i in order {
                        let replica = &self.replicas[i];
                        let started = Instant::now();
                        let opened = open(replica.pool.clone()).await;
                        replica.counters.waited(started);
                        match opened {
                            Ok(value) => {
                                replica.counters.acquired();
                                replica.counters.reads.fetch_add(1, Ordering::Relaxed);
                                if self.falling_back.swap(false, Ordering::Relaxed) {
                                    tracing::info!(
                                        replica = %replica.endpoint.label,
                                        "catalog reads go to replicas again"
                                    );
                                }
                                return Ok(value);
                            }
                            Err(e) => {
                                tracing::debug!(
                                    replica = %replica.endpoint.label,
                                    error = %e,
                                    "catalog replica refused a read; trying the next"
                                );
                                if !matches!(e, sqlx::Error::PoolTimedOut) {
                                    let mut state = replica.state();
                                    state.reachable = false;
                                    state.problem = Some(format!("connection failed: {e}"));
                                }
                                self.wake_replicas.notify_one();
                            }
                        }
                    }
                    true
                }
            },
        };
        if fallback {
            self.fallback_reads.fetch_add(1, Ordering::Relaxed);
            if !self.falling_back.swap(true, Ordering::Relaxed) {
                let now = Instant::now();
                let reasons = self
                    .replicas
                    .iter()
                    .map(|r| {
                        let why = self
                            .limits
                            .usable(&r.state(), now)
                            .err()
                            .unwrap_or_else(|| "a connection failed".into());
                        format!("{}: {why}", r.endpoint.label)
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                tracing::warn!(
                    replicas = %reasons,
                    "no catalog replica qualifies; reads go to the primary"
                );
            }
        }
        let value = self.on_primary(open).await?;
        self.primary.counters.reads.fetch_add(1, Ordering::Relaxed);
        Ok(value)
    }

    /// Runs `open` on the primary's pool. When the pool is swapped
    /// meanwhile, starts again on the new one; when the server drops or
    /// refuses us, wakes the monitor and tries again, all within
    /// [`ACQUIRE_TIMEOUT`].
    async fn on_primary<T, F, Fut>(&self, open: F) -> std::result::Result<T, sqlx::Error>
    where
        F: Fn(AnyPool) -> Fut,
        Fut: Future<Output = std::result::Result<T, sqlx::Error>>,
    {
        let started = Instant::now();
        let deadline = tokio::time::Instant::from_std(started + ACQUIRE_TIMEOUT);
        let mut changed = self.primary.changed.subscribe();
        let result = loop {
            let current = self.primary.current();
            let attempt = tokio::select! {
                opened = open(current.pool.clone()) => Some(opened),
                _ = swapped(&mut changed, current.generation) => None,
                _ = tokio::time::sleep_until(deadline) => Some(Err(sqlx::Error::PoolTimedOut)),
            };
            match attempt {
                None => continue,
                // The pool was swapped while the attempt failed (the old
                // one is closed): start again on the new one.
                Some(Err(_)) if self.primary.current().generation != current.generation => continue,
                // Closed by `close()`: later calls fail at once.
                Some(Err(e @ sqlx::Error::PoolClosed)) => break Err(e),
                Some(Err(e))
                    if self.searchable
                        && is_connection_error(&e)
                        && !matches!(e, sqlx::Error::PoolTimedOut)
                        && tokio::time::Instant::now() < deadline =>
                {
                    tracing::debug!(primary = %current.label, error = %e, "catalog primary connection failed; waiting for the monitor");
                    self.wake_primary.notify_one();
                    tokio::select! {
                        _ = swapped(&mut changed, current.generation) => {}
                        _ = tokio::time::sleep(RETRY_PAUSE) => {}
                        _ = tokio::time::sleep_until(deadline) => {}
                    }
                }
                Some(result) => break result,
            }
        };
        self.primary.counters.waited(started);
        if result.is_ok() {
            self.primary.counters.acquired();
        }
        result
    }

    /// Asks the current primary whether it still is one, over the
    /// monitor's own connection.
    async fn probe_current(&self, current: &Current) -> std::result::Result<(), String> {
        let mut probe = self.primary.probe.lock().await;
        let endpoint = &self.primary.endpoints[current.endpoint];
        let answer = tokio::time::timeout(PROBE_TIMEOUT, async {
            if probe.as_ref().map(|(g, _)| *g) != Some(current.generation) {
                if let Some((_, old)) = probe.take() {
                    let _ = old.close().await;
                }
                let conn = AnyConnection::connect_with(&endpoint.options)
                    .await
                    .map_err(|e| e.to_string())?;
                *probe = Some((current.generation, conn));
            }
            match probe.as_mut() {
                Some((_, conn)) => check_writable(conn, self.primary.attrs).await,
                None => Err("no probe connection".to_string()),
            }
        })
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} ms", PROBE_TIMEOUT.as_millis())));
        if answer.is_err() {
            // Broken or in an unknown state: open a fresh one next time.
            *probe = None;
        }
        answer
    }

    /// Checks the primary; searches for a new one when it is unreachable
    /// or in recovery.
    async fn check_primary(&self) -> Result<()> {
        if !self.searchable {
            return Ok(());
        }
        let current = self.primary.current();
        let Err(problem) = self.probe_current(&current).await else {
            return Ok(());
        };
        tracing::warn!(
            primary = %current.label,
            problem = %problem,
            "catalog primary lost; searching the catalog hosts for the primary"
        );
        self.rediscover(current.generation).await
    }

    /// Finds the primary and swaps the pool, unless another search already
    /// replaced generation `failed`.
    async fn rediscover(&self, failed: u64) -> Result<()> {
        let _one_at_a_time = self.primary.discovery.lock().await;
        let current = self.primary.current();
        if current.generation != failed {
            return Ok(());
        }
        let started = Instant::now();
        let found = match find_primary(
            &self.primary.endpoints,
            self.primary.attrs,
            Some(current.endpoint),
            self.limits.failover_timeout,
        )
        .await
        {
            Ok(found) => found,
            Err(e) => {
                tracing::error!(error = %e, "no catalog primary found; writes fail until one is");
                return Err(e);
            }
        };
        if found == current.endpoint {
            tracing::info!(primary = %current.label, "catalog primary answers again");
            return Ok(());
        }
        let endpoint = &self.primary.endpoints[found];
        let next = Arc::new(Current {
            generation: current.generation + 1,
            endpoint: found,
            label: endpoint.label.clone(),
            pool: new_primary_pool(endpoint.options.clone()),
        });
        *self
            .primary
            .current
            .write()
            .unwrap_or_else(|e| e.into_inner()) = next.clone();
        self.primary.changed.send_replace(next.generation);
        self.primary.failovers.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            from = %current.label,
            to = %next.label,
            elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "catalog primary moved; writes go to the new primary"
        );
        let old = current.pool.clone();
        // Waits for checked-out connections to come back; not worth
        // holding anyone up for.
        tokio::spawn(async move { old.close().await });
        Ok(())
    }

    async fn check_replicas(&self) {
        futures::future::join_all(self.replicas.iter().map(|r| self.check_replica(r))).await;
    }

    /// Measures one replica over its probe connection and records the
    /// outcome; logs when it becomes usable or unusable.
    async fn check_replica(&self, replica: &Replica) {
        let mut probe = replica.probe.lock().await;
        let measured = tokio::time::timeout(PROBE_TIMEOUT, async {
            if probe.is_none() {
                *probe = Some(
                    AnyConnection::connect_with(&replica.endpoint.options)
                        .await
                        .map_err(|e| e.to_string())?,
                );
            }
            let Some(conn) = probe.as_mut() else {
                return Err("no probe connection".to_string());
            };
            let row = sqlx::query(REPLICA_CHECK_SQL)
                .fetch_one(conn)
                .await
                .map_err(|e| e.to_string())?;
            let in_recovery: bool = row.try_get("in_recovery").map_err(|e| e.to_string())?;
            let lag: Option<f64> = row.try_get("lag_seconds").map_err(|e| e.to_string())?;
            Ok((in_recovery, lag))
        })
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} ms", PROBE_TIMEOUT.as_millis())));
        if measured.is_err() {
            *probe = None;
        }
        drop(probe);

        let now = Instant::now();
        let (usable, was_usable) = {
            let mut state = replica.state();
            match measured {
                Ok((in_recovery, lag)) => {
                    state.reachable = true;
                    state.in_recovery = in_recovery;
                    // A negative lag is clock skew between the servers.
                    state.lag = lag
                        .filter(|s| s.is_finite())
                        .map(|s| Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::MAX));
                    state.problem = if in_recovery {
                        None
                    } else {
                        Some("not in recovery: not a replica (promoted?)".into())
                    };
                }
                Err(e) => {
                    state.reachable = false;
                    state.problem = Some(format!("unreachable: {e}"));
                }
            }
            state.checked_at = Some(now);
            let usable = self.limits.usable(&state, now);
            let was = state.was_usable.replace(usable.is_ok());
            (usable, was)
        };
        match (&usable, was_usable) {
            (Ok(()), Some(false)) => tracing::info!(
                replica = %replica.endpoint.label,
                "catalog replica usable again"
            ),
            (Err(why), Some(true) | None) => tracing::warn!(
                replica = %replica.endpoint.label,
                problem = %why,
                "catalog replica not used for reads"
            ),
            _ => {}
        }
    }
}

/// Checks the primary every interval (or at once when woken); a lost
/// primary starts a search. Ends when the pool is dropped.
async fn primary_monitor(shared: Weak<Shared>, wake: Arc<Notify>, interval: Duration) {
    loop {
        {
            let Some(shared) = shared.upgrade() else {
                return;
            };
            // Errors are logged by the search; the next round tries again.
            let _ = shared.check_primary().await;
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = wake.notified() => {}
        }
    }
}

/// Measures every replica every interval (or at once when woken). Ends
/// when the pool is dropped.
async fn replica_monitor(shared: Weak<Shared>, wake: Arc<Notify>, interval: Duration) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = wake.notified() => {}
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        shared.check_replicas().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked(
        lag_ms: Option<u64>,
        problem: Option<&str>,
        age: Duration,
    ) -> (ReplicaState, Instant) {
        let now = Instant::now() + age;
        let state = ReplicaState {
            checked_at: Some(now - age),
            reachable: problem.is_none(),
            in_recovery: true,
            lag: lag_ms.map(Duration::from_millis),
            problem: problem.map(str::to_string),
            was_usable: None,
        };
        (state, now)
    }

    #[test]
    fn limits_follow_the_lag_bound() {
        let l = Limits::new(Duration::from_secs(5), ACQUIRE_TIMEOUT);
        assert_eq!(l.read_your_writes, Duration::from_secs(10));
        assert_eq!(l.check_interval, MAX_CHECK_INTERVAL);
        let tiny = Limits::new(Duration::from_millis(50), ACQUIRE_TIMEOUT);
        assert_eq!(tiny.read_your_writes, MIN_READ_YOUR_WRITES);
        assert_eq!(tiny.check_interval, MIN_CHECK_INTERVAL);
    }

    #[test]
    fn a_replica_is_usable_only_when_checked_recently_and_within_the_bound() {
        let l = Limits::new(Duration::from_secs(1), ACQUIRE_TIMEOUT);
        let (s, now) = checked(Some(500), None, Duration::ZERO);
        assert!(l.usable(&s, now).is_ok());
        let (s, now) = checked(Some(1_500), None, Duration::ZERO);
        assert!(l
            .usable(&s, now)
            .unwrap_err()
            .contains("exceeds max_replica_lag"));
        let (s, now) = checked(None, None, Duration::ZERO);
        assert!(l.usable(&s, now).unwrap_err().contains("unknown"));
        let (s, now) = checked(Some(0), Some("unreachable: refused"), Duration::ZERO);
        assert!(l.usable(&s, now).unwrap_err().contains("refused"));
        let (s, now) = checked(Some(0), None, Duration::from_secs(60));
        assert!(l.usable(&s, now).unwrap_err().contains("ago"));
        assert!(l.usable(&ReplicaState::default(), now).is_err());
    }
}
