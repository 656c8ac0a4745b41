//! Load-balanced pools of backends with active and passive health.
//!
//! A [`ServicePool`] picks one of its backends per request:
//! - [`Algorithm::RoundRobin`]: smooth weighted round robin (nginx), which
//!   spreads a heavy backend's turns evenly instead of in bursts;
//! - [`Algorithm::LeastConnections`]: fewest in-flight requests relative to
//!   weight, ties taken in turn;
//! - [`Algorithm::IpHash`]: consistent hashing of a client key on a ring of
//!   virtual nodes (more for heavier backends), so a key keeps its backend
//!   and losing one backend moves only that backend's keys.
//!
//! A backend takes requests while it is healthy. Active checks decide
//! health by consecutive results ([`ServicePool::report_check`], driven by
//! [`spawn_health_checks`] with a caller-supplied [`HealthChecker`]; this
//! crate does no HTTP). Passive outlier ejection (Envoy style) takes a
//! backend out for `ejection_time` after `consecutive_failures` failed
//! requests reported through its [`Lease`], then lets it back in.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use vega_core::{Classify, ErrorClass};

use crate::settings::{Checker, InvalidSettings, SettingError};
use crate::ticker::Ticker;

/// The readiness endpoint Vega's own services serve.
pub const DEFAULT_HEALTH_CHECK_PATH: &str = "/health/ready";
/// Notices a dead backend within seconds at a negligible request rate.
pub const DEFAULT_HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(5);
/// A readiness check answers in milliseconds; two seconds means trouble.
pub const DEFAULT_HEALTH_CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// Two passes in a row before traffic returns, so a flapping backend does
/// not get requests on its first good answer.
pub const DEFAULT_HEALTHY_THRESHOLD: u32 = 2;
/// Three failures in a row before removal, so one lost check packet does
/// not take a backend out.
pub const DEFAULT_UNHEALTHY_THRESHOLD: u32 = 3;
/// Envoy's default for consecutive errors before ejection.
pub const DEFAULT_CONSECUTIVE_FAILURES: u32 = 5;
/// Envoy's default base ejection time: long enough for a restart.
pub const DEFAULT_EJECTION_TIME: Duration = Duration::from_secs(30);
/// Virtual nodes on the hash ring per unit of weight: with about a hundred
/// per backend the share of keys stays within a few percent of the weight.
pub const VIRTUAL_NODES_PER_WEIGHT: u32 = 100;
/// Upper bound of a weight, which keeps the hash ring small.
pub const MAX_BACKEND_WEIGHT: u32 = 1000;

/// One backend of a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// Where to send requests, e.g. `http://10.0.0.5:8080`.
    pub address: String,
    /// Relative share of requests, 1 to [`MAX_BACKEND_WEIGHT`].
    pub weight: u32,
}

impl Backend {
    pub fn new(address: impl Into<String>, weight: u32) -> Self {
        Self {
            address: address.into(),
            weight,
        }
    }
}

/// How a pool picks a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Algorithm {
    #[default]
    RoundRobin,
    LeastConnections,
    /// Consistent hashing of the key passed to [`ServicePool::pick`]; falls
    /// back to round robin when no key is given.
    IpHash,
}

/// Active health checking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheckSettings {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive passes that make an unhealthy backend healthy.
    pub healthy_threshold: u32,
    /// Consecutive failures that make a healthy backend unhealthy.
    pub unhealthy_threshold: u32,
}

impl Default for HealthCheckSettings {
    fn default() -> Self {
        Self {
            path: DEFAULT_HEALTH_CHECK_PATH.to_string(),
            interval: DEFAULT_HEALTH_CHECK_INTERVAL,
            timeout: DEFAULT_HEALTH_CHECK_TIMEOUT,
            healthy_threshold: DEFAULT_HEALTHY_THRESHOLD,
            unhealthy_threshold: DEFAULT_UNHEALTHY_THRESHOLD,
        }
    }
}

impl HealthCheckSettings {
    pub fn validate(&self) -> Result<(), Vec<SettingError>> {
        let mut c = Checker::default();
        if !self.path.starts_with('/') {
            c.fail("path", "must start with '/'");
        }
        c.positive("interval", self.interval);
        c.positive("timeout", self.timeout);
        c.at_least("healthy_threshold", self.healthy_threshold, 1);
        c.at_least("unhealthy_threshold", self.unhealthy_threshold, 1);
        c.finish()
    }
}

/// Passive outlier ejection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutlierSettings {
    /// Failed requests in a row that eject a backend.
    pub consecutive_failures: u32,
    /// How long an ejected backend gets no requests.
    pub ejection_time: Duration,
}

impl Default for OutlierSettings {
    fn default() -> Self {
        Self {
            consecutive_failures: DEFAULT_CONSECUTIVE_FAILURES,
            ejection_time: DEFAULT_EJECTION_TIME,
        }
    }
}

impl OutlierSettings {
    pub fn validate(&self) -> Result<(), Vec<SettingError>> {
        let mut c = Checker::default();
        c.at_least("consecutive_failures", self.consecutive_failures, 1);
        c.positive("ejection_time", self.ejection_time);
        c.finish()
    }
}

/// Settings of a pool.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PoolSettings {
    pub algorithm: Algorithm,
    pub health_check: HealthCheckSettings,
    pub outlier: OutlierSettings,
}

impl PoolSettings {
    /// Paths are `health_check.<field>` and `outlier.<field>`.
    pub fn validate(&self) -> Result<(), Vec<SettingError>> {
        let mut errors = Vec::new();
        if let Err(e) = self.health_check.validate() {
            errors.extend(e.into_iter().map(|e| e.prefixed("health_check")));
        }
        if let Err(e) = self.outlier.validate() {
            errors.extend(e.into_iter().map(|e| e.prefixed("outlier")));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// Errors of a running pool.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error("no healthy backend in pool {pool}")]
    NoHealthyBackend { pool: String },
    #[error("pool {pool} has no backend {address}")]
    UnknownBackend { pool: String, address: String },
}

impl Classify for PoolError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::NoHealthyBackend { .. } => ErrorClass::Unavailable,
            Self::UnknownBackend { .. } => ErrorClass::NotFound,
        }
    }
}

/// A backend's state, for metrics and operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendStatus {
    pub address: String,
    pub weight: u32,
    /// Takes requests: passes active checks and is not ejected.
    pub healthy: bool,
    /// Passes active checks.
    pub check_healthy: bool,
    /// Ejected by outlier detection right now.
    pub ejected: bool,
    pub in_flight: u64,
    pub picks: u64,
    pub ejections: u64,
}

#[derive(Debug)]
struct Slot {
    address: String,
    weight: u32,
    in_flight: u64,
    picks: u64,
    /// Smooth weighted round robin's running weight.
    current_weight: i64,
    check_healthy: bool,
    check_passes: u32,
    check_failures: u32,
    call_failures: u32,
    ejected_until: Option<Duration>,
    ejections: u64,
}

impl Slot {
    fn usable(&self) -> bool {
        self.check_healthy && self.ejected_until.is_none()
    }
}

#[derive(Debug)]
struct PoolState {
    slots: Vec<Slot>,
    /// Where least-connections starts looking, so ties rotate.
    lc_cursor: usize,
}

impl PoolState {
    /// Readmits backends whose ejection time is over.
    fn readmit(&mut self, pool: &str, now: Duration) {
        for s in &mut self.slots {
            if s.ejected_until.is_some_and(|until| now >= until) {
                s.ejected_until = None;
                s.call_failures = 0;
                tracing::info!(pool, backend = %s.address, "backend readmitted after ejection");
            }
        }
    }

    /// nginx's smooth weighted round robin over usable backends: each
    /// gains its weight, the largest total wins (the first on a tie) and
    /// pays back the sum of all weights.
    fn round_robin(&mut self) -> Option<usize> {
        let mut total: i64 = 0;
        let mut best: Option<(usize, i64)> = None;
        for (i, s) in self.slots.iter_mut().enumerate() {
            if !s.usable() {
                continue;
            }
            s.current_weight += i64::from(s.weight);
            total += i64::from(s.weight);
            if best.is_none_or(|(_, w)| s.current_weight > w) {
                best = Some((i, s.current_weight));
            }
        }
        let (best, _) = best?;
        self.slots[best].current_weight -= total;
        Some(best)
    }

    /// Fewest in-flight requests per unit of weight; ties in turn.
    fn least_connections(&mut self) -> Option<usize> {
        let n = self.slots.len();
        let mut best: Option<usize> = None;
        for k in 0..n {
            let i = (self.lc_cursor + k) % n;
            let s = &self.slots[i];
            if !s.usable() {
                continue;
            }
            let better = match best {
                None => true,
                // a/wa < b/wb  <=>  a*wb < b*wa, exact in integers.
                Some(b) => {
                    let b = &self.slots[b];
                    u128::from(s.in_flight) * u128::from(b.weight)
                        < u128::from(b.in_flight) * u128::from(s.weight)
                }
            };
            if better {
                best = Some(i);
            }
        }
        let best = best?;
        self.lc_cursor = (best + 1) % n;
        Some(best)
    }
}

#[derive(Debug)]
struct PoolShared {
    name: String,
    settings: PoolSettings,
    ticker: Arc<dyn Ticker>,
    /// Virtual nodes sorted by hash: (hash, slot index).
    ring: Vec<(u64, usize)>,
    state: Mutex<PoolState>,
}

impl PoolShared {
    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The first usable backend clockwise from the key's hash.
    fn ring_lookup(&self, state: &PoolState, key: &str) -> Option<usize> {
        let h = hash(key.as_bytes());
        let start = self.ring.partition_point(|(v, _)| *v < h);
        (0..self.ring.len())
            .map(|k| self.ring[(start + k) % self.ring.len()].1)
            .find(|&i| state.slots[i].usable())
    }

    fn finish(&self, index: usize, outcome: Option<bool>) {
        let now = self.ticker.now();
        let mut state = self.lock();
        let s = &mut state.slots[index];
        s.in_flight = s.in_flight.saturating_sub(1);
        match outcome {
            Some(true) => s.call_failures = 0,
            Some(false) if s.ejected_until.is_none() => {
                s.call_failures += 1;
                if s.call_failures >= self.settings.outlier.consecutive_failures {
                    s.call_failures = 0;
                    s.ejections += 1;
                    s.ejected_until = Some(now.saturating_add(self.settings.outlier.ejection_time));
                    tracing::warn!(
                        pool = %self.name, backend = %s.address,
                        ejection_ms = self.settings.outlier.ejection_time.as_millis() as u64,
                        "backend ejected after consecutive failures"
                    );
                }
            }
            _ => {}
        }
    }
}

/// FNV-1a with a murmur3 finalizer: stable across processes and releases
/// (unlike the standard hasher) and well mixed for short keys.
fn hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// A pool of backends for one service. Cheap to clone; clones share state.
#[derive(Debug, Clone)]
pub struct ServicePool {
    shared: Arc<PoolShared>,
}

impl ServicePool {
    /// Checks the backends (at least one, distinct non-empty addresses,
    /// weights 1 to [`MAX_BACKEND_WEIGHT`]) and the settings. Every backend
    /// starts healthy.
    pub fn new(
        name: impl Into<String>,
        backends: Vec<Backend>,
        settings: PoolSettings,
        ticker: Arc<dyn Ticker>,
    ) -> Result<Self, InvalidSettings> {
        let mut errors = Vec::new();
        if backends.is_empty() {
            errors.push(SettingError::new(
                "backends",
                "a pool needs at least one backend",
            ));
        }
        for (i, b) in backends.iter().enumerate() {
            if b.address.trim().is_empty() {
                errors.push(SettingError::new(
                    format!("backends.{i}.address"),
                    "must not be empty",
                ));
            } else if backends[..i].iter().any(|o| o.address == b.address) {
                errors.push(SettingError::new(
                    format!("backends.{i}.address"),
                    format!("{} is listed twice", b.address),
                ));
            }
            if !(1..=MAX_BACKEND_WEIGHT).contains(&b.weight) {
                errors.push(SettingError::new(
                    format!("backends.{i}.weight"),
                    format!("must be 1 to {MAX_BACKEND_WEIGHT}, got {}", b.weight),
                ));
            }
        }
        if let Err(e) = settings.validate() {
            errors.extend(e);
        }
        if !errors.is_empty() {
            return Err(errors.into());
        }

        let mut ring: Vec<(u64, usize)> = backends
            .iter()
            .enumerate()
            .flat_map(|(i, b)| {
                (0..b.weight * VIRTUAL_NODES_PER_WEIGHT)
                    .map(move |v| (hash(format!("{}#{v}", b.address).as_bytes()), i))
            })
            .collect();
        ring.sort_unstable();

        let slots = backends
            .into_iter()
            .map(|b| Slot {
                address: b.address,
                weight: b.weight,
                in_flight: 0,
                picks: 0,
                current_weight: 0,
                check_healthy: true,
                check_passes: 0,
                check_failures: 0,
                call_failures: 0,
                ejected_until: None,
                ejections: 0,
            })
            .collect();
        Ok(Self {
            shared: Arc::new(PoolShared {
                name: name.into(),
                settings,
                ticker,
                ring,
                state: Mutex::new(PoolState {
                    slots,
                    lc_cursor: 0,
                }),
            }),
        })
    }

    pub fn name(&self) -> &str {
        &self.shared.name
    }

    pub fn settings(&self) -> &PoolSettings {
        &self.shared.settings
    }

    /// Picks a healthy backend; `key` is the client key for
    /// [`Algorithm::IpHash`] and ignored otherwise. The lease counts as an
    /// in-flight request until dropped.
    pub fn pick(&self, key: Option<&str>) -> Result<Lease, PoolError> {
        let s = &self.shared;
        let now = s.ticker.now();
        let picked = {
            let mut state = s.lock();
            state.readmit(&s.name, now);
            let index = match (s.settings.algorithm, key) {
                (Algorithm::RoundRobin, _) | (Algorithm::IpHash, None) => state.round_robin(),
                (Algorithm::LeastConnections, _) => state.least_connections(),
                (Algorithm::IpHash, Some(key)) => s.ring_lookup(&state, key),
            };
            index.map(|i| {
                let slot = &mut state.slots[i];
                slot.in_flight += 1;
                slot.picks += 1;
                (i, slot.address.clone())
            })
        };
        match picked {
            Some((index, address)) => Ok(Lease {
                shared: Arc::clone(s),
                index,
                address,
                outcome: None,
            }),
            None => Err(PoolError::NoHealthyBackend {
                pool: s.name.clone(),
            }),
        }
    }

    /// Records one active check result of `address`.
    pub fn report_check(&self, address: &str, ok: bool) -> Result<(), PoolError> {
        let s = &self.shared;
        let hc = &s.settings.health_check;
        let mut state = s.lock();
        let slot = state
            .slots
            .iter_mut()
            .find(|slot| slot.address == address)
            .ok_or_else(|| PoolError::UnknownBackend {
                pool: s.name.clone(),
                address: address.to_string(),
            })?;
        if ok {
            slot.check_failures = 0;
            slot.check_passes = slot.check_passes.saturating_add(1);
            if !slot.check_healthy && slot.check_passes >= hc.healthy_threshold {
                slot.check_healthy = true;
                tracing::info!(pool = %s.name, backend = address, "backend healthy");
            }
        } else {
            slot.check_passes = 0;
            slot.check_failures = slot.check_failures.saturating_add(1);
            if slot.check_healthy && slot.check_failures >= hc.unhealthy_threshold {
                slot.check_healthy = false;
                tracing::warn!(pool = %s.name, backend = address, "backend unhealthy");
            }
        }
        Ok(())
    }

    /// Runs one round of active checks on every backend, concurrently; a
    /// check that outlasts the timeout fails.
    pub async fn check_all(&self, checker: &dyn HealthChecker) {
        let hc = &self.shared.settings.health_check;
        let addresses: Vec<String> = self
            .shared
            .lock()
            .slots
            .iter()
            .map(|s| s.address.clone())
            .collect();
        let results = futures::future::join_all(addresses.iter().map(|a| async move {
            tokio::time::timeout(hc.timeout, checker.check(a, &hc.path, hc.timeout))
                .await
                .unwrap_or(false)
        }))
        .await;
        for (address, ok) in addresses.iter().zip(results) {
            // The addresses come from this pool, so they are known.
            let _ = self.report_check(address, ok);
        }
    }

    /// The state of every backend, in configuration order.
    pub fn status(&self) -> Vec<BackendStatus> {
        let s = &self.shared;
        let now = s.ticker.now();
        let mut state = s.lock();
        state.readmit(&s.name, now);
        state
            .slots
            .iter()
            .map(|b| BackendStatus {
                address: b.address.clone(),
                weight: b.weight,
                healthy: b.usable(),
                check_healthy: b.check_healthy,
                ejected: b.ejected_until.is_some(),
                in_flight: b.in_flight,
                picks: b.picks,
                ejections: b.ejections,
            })
            .collect()
    }
}

/// One request's hold on a backend. Report the outcome with
/// [`success`](Self::success) or [`failure`](Self::failure) (failures feed
/// outlier ejection); dropping it without a report only ends the request.
#[derive(Debug)]
#[must_use = "dropping a lease ends the request at once"]
pub struct Lease {
    shared: Arc<PoolShared>,
    index: usize,
    address: String,
    outcome: Option<bool>,
}

impl Lease {
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The request succeeded; clears the backend's failure streak.
    pub fn success(mut self) {
        self.outcome = Some(true);
    }

    /// The request failed because of the backend.
    pub fn failure(mut self) {
        self.outcome = Some(false);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.shared.finish(self.index, self.outcome);
    }
}

/// Performs one active health check; supplied by the caller (e.g. an HTTP
/// GET of `path` expecting a 2xx).
#[async_trait]
pub trait HealthChecker: Send + Sync {
    /// Whether `address` answered `path` healthily within `timeout`.
    async fn check(&self, address: &str, path: &str, timeout: Duration) -> bool;
}

/// The background task of [`spawn_health_checks`]. Dropping it stops the
/// checks.
#[derive(Debug)]
pub struct HealthCheckTask {
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

impl HealthCheckTask {
    /// Stops the checks and waits for the task to end.
    pub async fn stop(mut self) {
        self.stop.take();
        if let Some(handle) = self.handle.take() {
            // A panicking checker has already been reported by tokio.
            let _ = handle.await;
        }
    }
}

impl Drop for HealthCheckTask {
    fn drop(&mut self) {
        // Dropping the sender wakes the task, which then ends.
        self.stop.take();
    }
}

/// Checks every backend of `pool` each `health_check.interval` (the first
/// round at once) until the returned task is stopped or dropped. Must be
/// called inside a tokio runtime.
pub fn spawn_health_checks(pool: ServicePool, checker: Arc<dyn HealthChecker>) -> HealthCheckTask {
    let (stop, mut stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        let mut interval = tokio::time::interval(pool.settings().health_check.interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                _ = interval.tick() => {}
            }
            tokio::select! {
                _ = &mut stopped => break,
                _ = pool.check_all(checker.as_ref()) => {}
            }
        }
    });
    HealthCheckTask {
        stop: Some(stop),
        handle: Some(handle),
    }
}

#[cfg(test)]
mod tests;
