//! Trino as a remote engine (`query.trino`): a pool of coordinators with
//! active health checks and outlier ejection, behind the `trino` circuit
//! breaker, answering over Trino's REST protocol.
//!
//! A statement goes to Trino only after the local sandbox accepted it (one
//! `SELECT` over assets), so Trino never sees what DuckDB would refuse, and
//! the assets it names are the local ones (Trino's catalog is expected to
//! expose each asset as `<schema = namespace>.<table = name>`). When the
//! breaker rejects the call, no coordinator is healthy, or Trino fails or
//! times out, the `route_to_duckdb` fallback (when configured) answers
//! from DuckDB; the response and the log say which engine answered and
//! why, and `vega_query_fallbacks_total` counts it. A statement Trino
//! refuses as bad input is the caller's error: it is neither a breaker
//! failure nor a reason to fall back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use vega_config::{Fallback, TrinoConfig};
use vega_core::{Classify, ErrorClass};
use vega_query::QueryOutput;
use vega_resilience::{
    Backend, CircuitBreaker, HealthCheckSettings, HealthCheckTask, OutlierSettings, PoolSettings,
    ServicePool, Ticker,
};

/// Why Trino did not answer.
#[derive(Debug)]
pub enum RemoteFailure {
    /// The breaker rejected the call (open or forced open).
    BreakerOpen {
        state: String,
        retry_after: Option<Duration>,
    },
    /// Every coordinator is failing its health checks or ejected.
    NoCoordinator(String),
    /// As many queries as `resilience.bulkhead.per_pool` already run on
    /// Trino (and none ended within `max_wait`).
    Busy(u32),
    /// Trino failed (unreachable, timed out, errored).
    Failed(vega_trino::TrinoError),
}

impl RemoteFailure {
    /// A short label for metrics and headers.
    pub fn reason(&self) -> &'static str {
        match self {
            RemoteFailure::BreakerOpen { .. } => "breaker_open",
            RemoteFailure::NoCoordinator(_) => "no_coordinator",
            RemoteFailure::Busy(_) => "bulkhead_full",
            RemoteFailure::Failed(e) if e.class() == ErrorClass::Timeout => "timeout",
            RemoteFailure::Failed(_) => "error",
        }
    }

    /// Whether DuckDB may answer instead: not when Trino said the
    /// statement itself is wrong.
    pub fn allows_fallback(&self) -> bool {
        match self {
            RemoteFailure::Failed(e) => !matches!(
                e.class(),
                ErrorClass::BadInput | ErrorClass::Forbidden | ErrorClass::NotFound
            ),
            _ => true,
        }
    }

    pub fn class(&self) -> ErrorClass {
        match self {
            RemoteFailure::BreakerOpen { .. }
            | RemoteFailure::NoCoordinator(_)
            | RemoteFailure::Busy(_) => ErrorClass::Unavailable,
            RemoteFailure::Failed(e) => e.class(),
        }
    }
}

impl std::fmt::Display for RemoteFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RemoteFailure::BreakerOpen { state, retry_after } => {
                write!(f, "the trino circuit breaker is {state}")?;
                if let Some(wait) = retry_after {
                    write!(
                        f,
                        " (trial calls in {} s)",
                        wait.as_secs_f64().ceil() as u64
                    )?;
                }
                Ok(())
            }
            RemoteFailure::NoCoordinator(e) => write!(f, "no trino coordinator is healthy: {e}"),
            RemoteFailure::Busy(n) => {
                write!(f, "{n} queries already run on trino (its bulkhead is full)")
            }
            RemoteFailure::Failed(e) => write!(f, "trino failed: {e}"),
        }
    }
}

/// The Trino engine of this node.
pub struct TrinoEngine {
    base: vega_trino::TrinoConfig,
    pool: ServicePool,
    breaker: Arc<CircuitBreaker>,
    fallback: Fallback,
    /// `engine: auto` sends statements reading more than this to Trino.
    pub size_threshold: u64,
    /// `engine: auto` sends statements reading any of these assets to Trino.
    pub assets: std::collections::HashSet<String>,
    ticker: Arc<dyn Ticker>,
    /// At most `resilience.bulkhead.per_pool` queries on Trino at once.
    bulkhead: vega_resilience::Bulkhead,
    _checks: HealthCheckTask,
}

impl std::fmt::Debug for TrinoEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrinoEngine")
            .field("coordinators", &self.pool.status())
            .finish_non_exhaustive()
    }
}

/// Checks a backend by `GET <address><path>`: healthy on a 2xx answer in
/// time (for Trino's `/v1/info`, also not `"starting": true`).
pub struct HttpHealthChecker {
    client: reqwest::Client,
}

impl HttpHealthChecker {
    /// A checker trusting the CA certificates of `ca_file` (PEM) on top of
    /// the public roots, as the queries do.
    pub fn new(ca_file: Option<&std::path::Path>) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder();
        if let Some(path) = ca_file {
            for certificate in vega_trino::load_ca_file(path).map_err(|e| e.to_string())? {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let client = builder
            .build()
            .map_err(|e| format!("building the health checks' HTTP client: {e}"))?;
        Ok(HttpHealthChecker { client })
    }
}

#[async_trait::async_trait]
impl vega_resilience::HealthChecker for HttpHealthChecker {
    async fn check(&self, address: &str, path: &str, timeout: Duration) -> bool {
        let url = format!("{}{path}", address.trim_end_matches('/'));
        let Ok(response) = self.client.get(&url).timeout(timeout).send().await else {
            return false;
        };
        if !response.status().is_success() {
            return false;
        }
        match response.json::<serde_json::Value>().await {
            Ok(body) => body.get("starting") != Some(&serde_json::Value::Bool(true)),
            // Not JSON: the 2xx is the answer.
            Err(_) => true,
        }
    }
}

fn algorithm(a: vega_config::Algorithm) -> vega_resilience::Algorithm {
    match a {
        vega_config::Algorithm::RoundRobin => vega_resilience::Algorithm::RoundRobin,
        vega_config::Algorithm::LeastConnections => vega_resilience::Algorithm::LeastConnections,
        vega_config::Algorithm::IpHash => vega_resilience::Algorithm::IpHash,
    }
}

impl TrinoEngine {
    /// The engine of `config`, its breaker from `breakers` (service
    /// `trino`). Starts the coordinators' health checks.
    pub fn new(
        config: &TrinoConfig,
        breakers: &crate::breakers::Breakers,
        bulkhead: vega_resilience::BulkheadSettings,
        ticker: Arc<dyn Ticker>,
    ) -> Result<Self, String> {
        let bulkhead = vega_resilience::Bulkhead::new("trino", bulkhead)
            .map_err(|e| format!("resilience.bulkhead: {e}"))?;
        let check = &config.health_check;
        let settings = PoolSettings {
            algorithm: algorithm(config.load_balance),
            health_check: HealthCheckSettings {
                path: check.path.clone(),
                interval: check.interval.into(),
                timeout: check.timeout.into(),
                healthy_threshold: check.healthy_threshold,
                unhealthy_threshold: check.unhealthy_threshold,
            },
            outlier: OutlierSettings::default(),
        };
        let backends = config
            .coordinators
            .iter()
            .map(|c| Backend::new(c.trim_end_matches('/'), 1))
            .collect();
        let pool = ServicePool::new("trino", backends, settings, ticker.clone())
            .map_err(|e| format!("query.trino: {e}"))?;
        let checker = HttpHealthChecker::new(config.ca_file.as_deref())
            .map_err(|e| format!("query.trino.ca_file: {e}"))?;
        let checks = vega_resilience::spawn_health_checks(pool.clone(), Arc::new(checker));
        let mut base = vega_trino::TrinoConfig::new(String::new(), config.user.clone());
        base.source = config.source.clone();
        base.catalog = config.catalog.clone();
        base.schema = config.schema.clone();
        base.session_properties = config.session_properties.clone();
        base.client_info = Some(format!("vega {}", vega_core::VERSION));
        base.connect_timeout = config.connect_timeout.into();
        base.request_timeout = config.request_timeout.into();
        base.query_timeout = config.query_timeout.into();
        base.ca_file = config.ca_file.clone();
        base.auth = match (&config.auth.basic, &config.auth.bearer) {
            (Some(basic), _) => vega_trino::TrinoAuth::Basic {
                user: basic.user.clone(),
                password: vega_trino::Secret::new(basic.password.expose()),
            },
            (None, Some(token)) => vega_trino::TrinoAuth::Bearer {
                token: vega_trino::Secret::new(token.expose()),
            },
            (None, None) => vega_trino::TrinoAuth::None,
        };
        // A bad CA file (or URL) stops the start rather than every query.
        for coordinator in &config.coordinators {
            let mut probe = base.clone();
            probe.coordinator = coordinator.clone();
            vega_trino::TrinoClient::new(probe).map_err(|e| format!("query.trino: {e}"))?;
        }
        Ok(TrinoEngine {
            base,
            pool,
            breaker: breakers
                .registry()
                .get_or_create(vega_config::breaker::TRINO_SERVICE),
            fallback: breakers.fallback(vega_config::breaker::TRINO_SERVICE),
            size_threshold: config.size_threshold.as_u64(),
            assets: config.assets.iter().cloned().collect(),
            ticker,
            bulkhead,
            _checks: checks,
        })
    }

    /// Whether DuckDB answers when Trino cannot.
    pub fn falls_back_to_duckdb(&self) -> bool {
        self.fallback == Fallback::RouteToDuckdb
    }

    /// The coordinators' health, for `/health`.
    pub fn coordinators(&self) -> Vec<vega_resilience::BackendStatus> {
        self.pool.status()
    }

    /// Runs `sql` on a coordinator, at most `max_rows` rows, within
    /// `timeout`. `assets` are the assets (and versions) it reads, as the
    /// sandbox found them.
    pub async fn query(
        &self,
        sql: &str,
        max_rows: usize,
        timeout: Duration,
        assets: Vec<(String, u32)>,
    ) -> Result<QueryOutput, RemoteFailure> {
        let _slot = self
            .bulkhead
            .acquire()
            .await
            .map_err(|full| RemoteFailure::Busy(full.max_concurrent))?;
        let permit = self
            .breaker
            .try_acquire()
            .map_err(|rejected| RemoteFailure::BreakerOpen {
                state: rejected.state.as_str().to_string(),
                retry_after: rejected.retry_after,
            })?;
        let lease = self
            .pool
            .pick(None)
            .map_err(|e| RemoteFailure::NoCoordinator(e.to_string()))?;
        let mut config = self.base.clone();
        config.coordinator = lease.address().to_string();
        config.max_rows = max_rows;
        config.query_timeout = config.query_timeout.min(timeout);
        config.request_timeout = config.request_timeout.min(timeout);
        let started_tick = self.ticker.now();
        let started = Instant::now();
        let result = match vega_trino::TrinoClient::new(config) {
            Ok(client) => {
                client
                    .execute(sql, vega_trino::CancellationToken::new())
                    .await
            }
            Err(e) => Err(e),
        };
        let took = self.ticker.now().saturating_sub(started_tick);
        let result = match result {
            Ok(r) => {
                permit.success(took);
                lease.success();
                r
            }
            Err(e) => {
                let failure = RemoteFailure::Failed(e);
                if failure.allows_fallback() {
                    permit.failure(took);
                    lease.failure();
                } else {
                    // The statement's fault, not Trino's.
                    permit.release();
                    lease.success();
                }
                return Err(failure);
            }
        };
        let batch = result.to_arrow().map_err(RemoteFailure::Failed)?;
        Ok(QueryOutput {
            schema: batch.schema(),
            rows: batch.num_rows(),
            batches: vec![batch],
            truncated: result.truncated,
            assets,
            elapsed: started.elapsed(),
        })
    }
}
