//! Vega's Prometheus metrics. One registry per process, built here and
//! passed in (no globals). Names follow `vega_<name>_<unit>[_total]`, except
//! `http_request_duration_seconds`, kept as is so canary analysis tools work
//! unchanged. Labels are low-cardinality: route templates, never raw paths,
//! SQL or user ids.

use std::sync::atomic::AtomicI64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    pub route: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueryLabels {
    pub engine: String,
    pub status: String,
}

/// A query answered by another engine than the one chosen.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FallbackLabels {
    pub from: String,
    pub to: String,
    /// breaker_open, no_coordinator, bulkhead_full, timeout or error.
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueryErrorLabels {
    pub engine: String,
    pub code: String,
}

/// Per asset: assets are named, configured objects, so their number is
/// bounded by configuration, not by traffic.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AssetLabels {
    pub asset: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    /// `full`, `incremental` or `retention`.
    pub mode: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabels {
    pub version: String,
}

/// A request refused by a rate limit: which bucket (`global` or
/// `per_key`) and the caller's class (its role, or `anonymous`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RateLimitedLabels {
    pub limit: String,
    pub key_class: String,
}

/// A backup's scope: `full`, `catalog` or `asset`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackupLabels {
    pub scope: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectionLabels {
    pub connection: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MqttMessageLabels {
    pub connection: String,
    /// `stored`, `duplicate`, `mapping_error`, `rejected`.
    pub outcome: String,
}

/// Fsync buckets in seconds, from 100 µs to 1 s.
const FSYNC_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// Latency buckets in seconds, from 1 ms to 60 s.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// Backup duration buckets in seconds, from 100 ms to 2 h.
const BACKUP_BUCKETS: [f64; 10] = [0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 7200.0];

fn backup_histogram() -> Histogram {
    Histogram::new(BACKUP_BUCKETS)
}

/// Every metric Vega exports, registered in one registry.
pub struct Metrics {
    pub registry: Registry,
    pub http_request_duration: Family<HttpLabels, Histogram, fn() -> Histogram>,
    pub query_duration: Family<QueryLabels, Histogram, fn() -> Histogram>,
    pub query_errors: Family<QueryErrorLabels, Counter>,
    pub query_fallbacks: Family<FallbackLabels, Counter>,
    pub query_rows: Counter,
    pub sync_jobs: Family<JobLabels, Counter>,
    pub sync_duration: Family<JobLabels, Histogram, fn() -> Histogram>,
    pub sync_rows: Counter,
    pub sync_bytes: Counter,
    pub jobs_by_state: Family<StateLabels, Gauge>,
    pub sync_failures: Family<AssetLabels, Counter>,
    pub sync_lag: Family<AssetLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub build_info: Family<VersionLabels, Gauge>,
    pub draining: Gauge<i64, AtomicI64>,
    pub ingest_rows: Family<AssetLabels, Counter>,
    pub ingest_bytes: Family<AssetLabels, Counter>,
    pub ingest_rejected: Family<ReasonLabels, Counter>,
    pub wal_fsync_duration: Histogram,
    pub ingest_flush_duration: Histogram,
    pub ingest_flushed_rows: Counter,
    pub ingest_flush_failures: Family<AssetLabels, Counter>,
    pub ingest_buffer_rows: Gauge<i64, AtomicI64>,
    pub ingest_buffer_bytes: Gauge<i64, AtomicI64>,
    pub wal_bytes: Gauge<i64, AtomicI64>,
    pub mqtt_connected: Family<ConnectionLabels, Gauge>,
    pub mqtt_reconnects: Family<ConnectionLabels, Gauge>,
    pub mqtt_messages: Family<MqttMessageLabels, Gauge>,
    pub cache_hits: Counter,
    pub cache_misses: Counter,
    pub cache_evictions: Family<ReasonLabels, Counter>,
    pub cache_bytes: Gauge,
    pub cache_entries: Gauge,
    pub cache_hit_ratio: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub rate_limited: Family<RateLimitedLabels, Counter>,
    pub backup_last_success: Family<BackupLabels, Gauge>,
    pub backup_duration: Family<BackupLabels, Histogram, fn() -> Histogram>,
    pub backup_bytes_written: Family<BackupLabels, Counter>,
    pub backup_bytes_deduplicated: Family<BackupLabels, Counter>,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let http_request_duration =
            Family::<HttpLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by method, route template and status",
            http_request_duration.clone(),
        );
        let vega = registry.sub_registry_with_prefix("vega");
        let query_duration =
            Family::<QueryLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        vega.register(
            "query_duration_seconds",
            "Query latency by engine and status (ok, error, timeout, rejected)",
            query_duration.clone(),
        );
        let query_errors = Family::<QueryErrorLabels, Counter>::default();
        vega.register(
            "query_errors",
            "Failed queries by engine and error code",
            query_errors.clone(),
        );
        let query_fallbacks = Family::<FallbackLabels, Counter>::default();
        vega.register(
            "query_fallbacks",
            "Queries answered by another engine than the one chosen (Trino's route_to_duckdb), by reason",
            query_fallbacks.clone(),
        );
        let query_rows = Counter::default();
        vega.register(
            "query_rows_returned",
            "Rows returned by queries",
            query_rows.clone(),
        );
        let sync_jobs = Family::<JobLabels, Counter>::default();
        vega.register(
            "sync_jobs",
            "Finished sync jobs by mode and outcome",
            sync_jobs.clone(),
        );
        let sync_duration = Family::<JobLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        vega.register(
            "sync_duration_seconds",
            "Sync job duration by mode and outcome",
            sync_duration.clone(),
        );
        let sync_bytes = Counter::default();
        vega.register(
            "sync_bytes_written",
            "Bytes of segments written by successful syncs",
            sync_bytes.clone(),
        );
        let sync_rows = Counter::default();
        vega.register(
            "sync_rows_written",
            "Rows written by successful syncs",
            sync_rows.clone(),
        );
        let sync_failures = Family::<AssetLabels, Counter>::default();
        vega.register(
            "sync_failures",
            "Failed sync jobs per asset",
            sync_failures.clone(),
        );
        let sync_lag = Family::<AssetLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        vega.register(
            "sync_lag_seconds",
            "Seconds since the asset's data last changed (its newest successful sync)",
            sync_lag.clone(),
        );
        let jobs_by_state = Family::<StateLabels, Gauge>::default();
        vega.register(
            "jobs",
            "Jobs in the catalog by state",
            jobs_by_state.clone(),
        );
        let build_info = Family::<VersionLabels, Gauge>::default();
        build_info
            .get_or_create(&VersionLabels {
                version: vega_core::VERSION.to_string(),
            })
            .set(1);
        vega.register("build_info", "The running Vega version", build_info.clone());
        let draining = Gauge::<i64, AtomicI64>::default();
        vega.register(
            "draining",
            "1 while the node is shutting down",
            draining.clone(),
        );
        let ingest_rows = Family::<AssetLabels, Counter>::default();
        vega.register(
            "ingest_rows",
            "Rows acknowledged by streaming ingest, per asset",
            ingest_rows.clone(),
        );
        let ingest_bytes = Family::<AssetLabels, Counter>::default();
        vega.register(
            "ingest_bytes",
            "Bytes (in memory) acknowledged by streaming ingest, per asset",
            ingest_bytes.clone(),
        );
        let ingest_rejected = Family::<ReasonLabels, Counter>::default();
        vega.register(
            "ingest_rejected_lines",
            "Line-protocol lines and MQTT messages refused, by reason",
            ingest_rejected.clone(),
        );
        let wal_fsync_duration = Histogram::new(FSYNC_BUCKETS);
        vega.register(
            "wal_fsync_duration_seconds",
            "Latency of write-ahead-log fsyncs (one per group commit)",
            wal_fsync_duration.clone(),
        );
        let ingest_flush_duration = latency_histogram();
        vega.register(
            "ingest_flush_duration_seconds",
            "Duration of flushes of buffered rows to segments",
            ingest_flush_duration.clone(),
        );
        let ingest_flushed_rows = Counter::default();
        vega.register(
            "ingest_flushed_rows",
            "Rows flushed from the ingest buffer to segments",
            ingest_flushed_rows.clone(),
        );
        let ingest_flush_failures = Family::<AssetLabels, Counter>::default();
        vega.register(
            "ingest_flush_failures",
            "Failed flushes per asset (the rows stay buffered and durable)",
            ingest_flush_failures.clone(),
        );
        let ingest_buffer_rows = Gauge::<i64, AtomicI64>::default();
        vega.register(
            "ingest_buffer_rows",
            "Rows acknowledged but not yet flushed",
            ingest_buffer_rows.clone(),
        );
        let ingest_buffer_bytes = Gauge::<i64, AtomicI64>::default();
        vega.register(
            "ingest_buffer_bytes",
            "Bytes (estimated) acknowledged but not yet flushed",
            ingest_buffer_bytes.clone(),
        );
        let wal_bytes = Gauge::<i64, AtomicI64>::default();
        vega.register(
            "wal_bytes",
            "Bytes of write-ahead-log files on disk",
            wal_bytes.clone(),
        );
        let mqtt_connected = Family::<ConnectionLabels, Gauge>::default();
        vega.register(
            "mqtt_connected",
            "1 while the MQTT connection is up",
            mqtt_connected.clone(),
        );
        let mqtt_reconnects = Family::<ConnectionLabels, Gauge>::default();
        vega.register(
            "mqtt_reconnects",
            "Reconnects of the MQTT connection since start",
            mqtt_reconnects.clone(),
        );
        let mqtt_messages = Family::<MqttMessageLabels, Gauge>::default();
        vega.register(
            "mqtt_messages",
            "MQTT messages since start by outcome",
            mqtt_messages.clone(),
        );
        let cache_hits = Counter::default();
        vega.register(
            "cache_hits",
            "Queries answered from the result cache",
            cache_hits.clone(),
        );
        let cache_misses = Counter::default();
        vega.register(
            "cache_misses",
            "Cacheable queries not found in the result cache",
            cache_misses.clone(),
        );
        let cache_evictions = Family::<ReasonLabels, Counter>::default();
        vega.register(
            "cache_evictions",
            "Answers dropped from the result cache, by reason (capacity, expired)",
            cache_evictions.clone(),
        );
        let cache_bytes = Gauge::default();
        vega.register(
            "cache_bytes",
            "Bytes held by the result cache",
            cache_bytes.clone(),
        );
        let cache_entries = Gauge::default();
        vega.register(
            "cache_entries",
            "Answers held by the result cache",
            cache_entries.clone(),
        );
        let cache_hit_ratio = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        vega.register(
            "cache_hit_ratio",
            "Hits over look-ups of the result cache since start",
            cache_hit_ratio.clone(),
        );
        let rate_limited = Family::<RateLimitedLabels, Counter>::default();
        vega.register(
            "rate_limited_requests",
            "API requests refused with 429, by limit and key class",
            rate_limited.clone(),
        );
        let backup_last_success = Family::<BackupLabels, Gauge>::default();
        vega.register(
            "backup_last_success_timestamp_seconds",
            "Unix time of the last successful backup, by scope",
            backup_last_success.clone(),
        );
        let backup_duration =
            Family::<BackupLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                backup_histogram,
            );
        vega.register(
            "backup_duration_seconds",
            "Time taken by successful backups, by scope",
            backup_duration.clone(),
        );
        let backup_bytes_written = Family::<BackupLabels, Counter>::default();
        vega.register(
            "backup_bytes_written",
            "Bytes uploaded to the backup repository, by scope",
            backup_bytes_written.clone(),
        );
        let backup_bytes_deduplicated = Family::<BackupLabels, Counter>::default();
        vega.register(
            "backup_bytes_deduplicated",
            "Bytes of backups already in the repository (not uploaded again), by scope",
            backup_bytes_deduplicated.clone(),
        );
        Self {
            registry,
            backup_last_success,
            backup_duration,
            backup_bytes_written,
            backup_bytes_deduplicated,
            cache_hits,
            cache_misses,
            cache_evictions,
            cache_bytes,
            cache_entries,
            cache_hit_ratio,
            rate_limited,
            ingest_rows,
            ingest_bytes,
            ingest_rejected,
            wal_fsync_duration,
            ingest_flush_duration,
            ingest_flushed_rows,
            ingest_flush_failures,
            ingest_buffer_rows,
            ingest_buffer_bytes,
            wal_bytes,
            mqtt_connected,
            mqtt_reconnects,
            mqtt_messages,
            http_request_duration,
            query_duration,
            query_errors,
            query_fallbacks,
            query_rows,
            sync_jobs,
            sync_duration,
            sync_rows,
            sync_bytes,
            jobs_by_state,
            sync_failures,
            sync_lag,
            build_info,
            draining,
        }
    }

    /// The Prometheus text exposition (format 0.0.4) of every registered
    /// metric. The encoder writes OpenMetrics; its closing `# EOF` is dropped
    /// so that process metrics can follow.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        if let Some(stripped) = out.strip_suffix("# EOF\n") {
            out.truncate(stripped.len());
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The catalog's connection pools in Prometheus text (seed §15.1
/// `connection_pool_active`, `connection_wait_time`), one series per pool:
/// `role` is `primary` or `replica`, `host` the server (a handful per
/// cluster, set by configuration).
pub fn encode_pool_metrics(stats: &vega_catalog::PoolStats) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let pools: Vec<&vega_catalog::PoolRoleStats> = std::iter::once(&stats.primary)
        .chain(stats.replicas.iter())
        .collect();
    let series = |out: &mut String,
                  name: &str,
                  kind: &str,
                  help: &str,
                  value: &dyn Fn(&vega_catalog::PoolRoleStats) -> f64| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for p in &pools {
            let _ = writeln!(
                out,
                "{name}{{role=\"{}\",host=\"{}\"}} {}",
                p.role.as_str(),
                p.host.replace('\\', "\\\\").replace('"', "\\\""),
                value(p)
            );
        }
    };
    series(
        &mut out,
        "vega_connection_pool_active",
        "gauge",
        "Catalog connections in use, per pool",
        &|p| f64::from(p.active),
    );
    series(
        &mut out,
        "vega_connection_pool_open",
        "gauge",
        "Catalog connections open, per pool",
        &|p| f64::from(p.open),
    );
    series(
        &mut out,
        "vega_connection_wait_time_seconds_total",
        "counter",
        "Time spent waiting for a pooled catalog connection, per pool",
        &|p| p.acquire_wait.as_secs_f64(),
    );
    series(
        &mut out,
        "vega_connection_acquires_total",
        "counter",
        "Pooled catalog connections handed out, per pool",
        &|p| p.acquires as f64,
    );
    let replicas: Vec<&vega_catalog::PoolRoleStats> = stats.replicas.iter().collect();
    if !replicas.is_empty() {
        let _ = writeln!(out, "# HELP vega_catalog_replica_usable Whether a catalog replica takes reads (reachable, in recovery, lag within the bound)");
        let _ = writeln!(out, "# TYPE vega_catalog_replica_usable gauge");
        for p in &replicas {
            let usable = p.replica.as_ref().is_some_and(|h| h.usable);
            let _ = writeln!(
                out,
                "vega_catalog_replica_usable{{host=\"{}\"}} {}",
                p.host,
                u8::from(usable)
            );
        }
        let _ = writeln!(out, "# HELP vega_catalog_replica_lag_seconds Last measured replication lag of a catalog replica");
        let _ = writeln!(out, "# TYPE vega_catalog_replica_lag_seconds gauge");
        for p in &replicas {
            if let Some(lag) = p.replica.as_ref().and_then(|h| h.lag) {
                let _ = writeln!(
                    out,
                    "vega_catalog_replica_lag_seconds{{host=\"{}\"}} {}",
                    p.host,
                    lag.as_secs_f64()
                );
            }
        }
    }
    let _ = writeln!(out, "# HELP vega_catalog_fallback_reads_total Reads sent to the primary because no replica qualified");
    let _ = writeln!(out, "# TYPE vega_catalog_fallback_reads_total counter");
    let _ = writeln!(
        out,
        "vega_catalog_fallback_reads_total {}",
        stats.fallback_reads
    );
    let _ = writeln!(out, "# HELP vega_catalog_failovers_total Times the catalog's write pool moved to another primary");
    let _ = writeln!(out, "# TYPE vega_catalog_failovers_total counter");
    let _ = writeln!(out, "vega_catalog_failovers_total {}", stats.failovers);
    out
}
