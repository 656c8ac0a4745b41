//! Retries with exponential backoff, full jitter and a retry budget, and
//! typed timeouts.
//!
//! [`retry`] runs an operation until it succeeds or one of these says stop:
//! the error is not retryable, the operation is not idempotent, the attempts
//! are used up, or the [`RetryBudget`] is spent. Between attempts it sleeps
//! a "full jitter" delay: uniform in `[0, min(max_delay, base_delay *
//! 2^retry)]`, so many clients failing together do not retry in lockstep.
//!
//! The budget caps retries at a share of recent requests (plus a small
//! floor per second), in the manner of Finagle's retry budget: when a
//! dependency fails for everyone, retries add at most that share of load
//! instead of multiplying it.
//!
//! [`Timeouts`] holds the connect, per-request and overall limits, and
//! [`with_timeout`] tells which of them fired.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use vega_core::{Classify, ErrorClass};

use crate::settings::{Checker, InvalidSettings, SettingError};
use crate::ticker::Ticker;

/// The first try and two retries: rides out a dropped connection or a
/// restart, and gives up long before a caller's overall timeout.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// Short enough that a single blip costs little latency, long enough that
/// a busy dependency gets a moment.
pub const DEFAULT_BASE_DELAY: Duration = Duration::from_millis(100);
/// No single wait beyond this: longer gaps are better handled by the
/// circuit breaker than by a sleeping caller.
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(10);

/// How often and how long to wait between attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySettings {
    /// Attempts in total, the first included; 1 means no retries.
    pub max_attempts: u32,
    /// Ceiling of the first retry's delay; doubles with each retry.
    pub base_delay: Duration,
    /// Upper bound of any ceiling.
    pub max_delay: Duration,
}

impl Default for RetrySettings {
    fn default() -> Self {
        Self {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            base_delay: DEFAULT_BASE_DELAY,
            max_delay: DEFAULT_MAX_DELAY,
        }
    }
}

impl RetrySettings {
    pub fn validate(&self) -> Result<(), Vec<SettingError>> {
        let mut c = Checker::default();
        c.at_least("max_attempts", self.max_attempts, 1);
        c.positive("base_delay", self.base_delay);
        if self.max_delay < self.base_delay {
            c.fail("max_delay", "must not be shorter than base_delay");
        }
        c.finish()
    }
}

/// Retry settings with the random source of the jitter.
#[derive(Debug)]
pub struct RetryPolicy {
    settings: RetrySettings,
    rng: Mutex<StdRng>,
}

impl RetryPolicy {
    /// A policy with an entropy-seeded random source.
    pub fn new(settings: RetrySettings) -> Result<Self, InvalidSettings> {
        Self::with_rng(settings, StdRng::from_entropy())
    }

    /// A policy whose delays repeat for the same seed; for tests.
    pub fn seeded(settings: RetrySettings, seed: u64) -> Result<Self, InvalidSettings> {
        Self::with_rng(settings, StdRng::seed_from_u64(seed))
    }

    fn with_rng(settings: RetrySettings, rng: StdRng) -> Result<Self, InvalidSettings> {
        settings.validate()?;
        Ok(Self {
            settings,
            rng: Mutex::new(rng),
        })
    }

    pub fn settings(&self) -> &RetrySettings {
        &self.settings
    }

    /// `min(max_delay, base_delay * 2^retry)`; `retry` 0 is the first retry.
    pub fn ceiling(&self, retry: u32) -> Duration {
        2u32.checked_pow(retry)
            .and_then(|factor| self.settings.base_delay.checked_mul(factor))
            .map_or(self.settings.max_delay, |d| d.min(self.settings.max_delay))
    }

    /// A full-jitter delay: uniform in `[0, ceiling(retry)]`.
    pub fn delay(&self, retry: u32) -> Duration {
        let ceiling = u64::try_from(self.ceiling(retry).as_nanos()).unwrap_or(u64::MAX);
        let nanos = self
            .rng
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .gen_range(0..=ceiling);
        Duration::from_nanos(nanos)
    }
}

/// Finagle's default: deposits and withdrawals count for ten seconds.
pub const DEFAULT_BUDGET_TTL: Duration = Duration::from_secs(10);
/// Finagle's default: retries add at most a fifth to the load on a
/// dependency that fails every request.
pub const DEFAULT_BUDGET_PERCENT: f64 = 20.0;
/// Finagle's default: a caller with little traffic can still retry a few
/// times a second, where a percentage of almost nothing would forbid it.
pub const DEFAULT_MIN_RETRIES_PER_SECOND: u32 = 10;
/// The window moves in tenths of the TTL: fine enough that old requests
/// leave the budget smoothly, coarse enough to stay a small fixed array.
const BUDGET_SLOTS: usize = 10;

/// How many retries the budget allows.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryBudgetSettings {
    /// How long a request (or retry) counts.
    pub ttl: Duration,
    /// Retries allowed as a percent of the requests within the TTL.
    pub budget_percent: f64,
    /// Retries allowed per second on top of the percentage.
    pub min_retries_per_second: u32,
}

impl Default for RetryBudgetSettings {
    fn default() -> Self {
        Self {
            ttl: DEFAULT_BUDGET_TTL,
            budget_percent: DEFAULT_BUDGET_PERCENT,
            min_retries_per_second: DEFAULT_MIN_RETRIES_PER_SECOND,
        }
    }
}

impl RetryBudgetSettings {
    pub fn validate(&self) -> Result<(), Vec<SettingError>> {
        let mut c = Checker::default();
        if self.ttl < Duration::from_millis(BUDGET_SLOTS as u64) {
            c.fail("ttl", format!("must be at least {BUDGET_SLOTS}ms"));
        }
        if !(0.0..=100.0).contains(&self.budget_percent) {
            c.fail(
                "budget_percent",
                format!("must be a percent in [0, 100], got {}", self.budget_percent),
            );
        }
        c.finish()
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    index: u64,
    requests: u64,
    retries: u64,
}

/// A shared allowance of retries, refilled by requests. Thread-safe.
#[derive(Debug)]
pub struct RetryBudget {
    settings: RetryBudgetSettings,
    slot_nanos: u64,
    ticker: Arc<dyn Ticker>,
    slots: Mutex<[Slot; BUDGET_SLOTS]>,
}

impl RetryBudget {
    pub fn new(
        settings: RetryBudgetSettings,
        ticker: Arc<dyn Ticker>,
    ) -> Result<Self, InvalidSettings> {
        settings.validate()?;
        let ttl = u64::try_from(settings.ttl.as_nanos()).unwrap_or(u64::MAX);
        Ok(Self {
            slot_nanos: (ttl / BUDGET_SLOTS as u64).max(1),
            settings,
            ticker,
            slots: Mutex::new([Slot::default(); BUDGET_SLOTS]),
        })
    }

    fn lock(&self) -> MutexGuard<'_, [Slot; BUDGET_SLOTS]> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The current slot index; slot 0 is never current, so an empty slot
    /// never counts as recent.
    fn now_index(&self) -> u64 {
        let now = u64::try_from(self.ticker.now().as_nanos()).unwrap_or(u64::MAX);
        now / self.slot_nanos + BUDGET_SLOTS as u64
    }

    fn current(slots: &mut [Slot; BUDGET_SLOTS], index: u64) -> &mut Slot {
        let slot = &mut slots[(index % BUDGET_SLOTS as u64) as usize];
        if slot.index != index {
            *slot = Slot {
                index,
                requests: 0,
                retries: 0,
            };
        }
        slot
    }

    /// Retries still allowed, given the slots within the TTL.
    fn available(&self, slots: &[Slot; BUDGET_SLOTS], index: u64) -> u64 {
        let (requests, retries) = slots
            .iter()
            .filter(|s| index - s.index < BUDGET_SLOTS as u64)
            .fold((0u64, 0u64), |(q, r), s| (q + s.requests, r + s.retries));
        let floor =
            f64::from(self.settings.min_retries_per_second) * self.settings.ttl.as_secs_f64();
        let share = requests as f64 * self.settings.budget_percent / 100.0;
        // Truncating: a fraction of a retry is no retry.
        let allowed = (floor + share) as u64;
        allowed.saturating_sub(retries)
    }

    /// Counts one request (not a retry); call once per logical operation.
    pub fn record_request(&self) {
        let index = self.now_index();
        Self::current(&mut self.lock(), index).requests += 1;
    }

    /// Takes one retry from the budget; false when none is left.
    pub fn try_withdraw(&self) -> bool {
        let index = self.now_index();
        let mut slots = self.lock();
        if self.available(&slots, index) == 0 {
            return false;
        }
        Self::current(&mut slots, index).retries += 1;
        true
    }

    /// Retries the budget would allow right now.
    pub fn balance(&self) -> u64 {
        let index = self.now_index();
        self.available(&self.lock(), index)
    }
}

/// Whether an operation may safely run more than once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idempotency {
    Idempotent,
    NotIdempotent,
}

/// Why [`retry`] stopped trying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUp {
    NotRetryable,
    NotIdempotent,
    AttemptsExhausted,
    BudgetExhausted,
}

impl GiveUp {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotRetryable => "error is not retryable",
            Self::NotIdempotent => "operation is not idempotent",
            Self::AttemptsExhausted => "attempts exhausted",
            Self::BudgetExhausted => "retry budget exhausted",
        }
    }
}

impl fmt::Display for GiveUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The last error of an operation [`retry`] gave up on.
#[derive(Debug, thiserror::Error)]
#[error("gave up after {attempts} attempt(s): {reason}")]
pub struct RetryError<E> {
    #[source]
    pub error: E,
    pub attempts: u32,
    pub reason: GiveUp,
}

impl<E> RetryError<E> {
    pub fn into_inner(self) -> E {
        self.error
    }
}

impl<E: Classify> Classify for RetryError<E> {
    fn class(&self) -> ErrorClass {
        self.error.class()
    }

    fn is_retryable(&self) -> bool {
        false
    }
}

/// Runs `op` (given the 1-based attempt number) until it succeeds or a
/// retry is not allowed; see the module docs for the rules. Sleeps with
/// `tokio::time::sleep` between attempts.
pub async fn retry<T, E, F, Fut, P>(
    policy: &RetryPolicy,
    budget: Option<&RetryBudget>,
    idempotency: Idempotency,
    is_retryable: P,
    mut op: F,
) -> Result<T, RetryError<E>>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    P: Fn(&E) -> bool,
{
    if let Some(b) = budget {
        b.record_request();
    }
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let error = match op(attempt).await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let give_up = if !is_retryable(&error) {
            Some(GiveUp::NotRetryable)
        } else if idempotency == Idempotency::NotIdempotent {
            Some(GiveUp::NotIdempotent)
        } else if attempt >= policy.settings.max_attempts {
            Some(GiveUp::AttemptsExhausted)
        } else if budget.is_some_and(|b| !b.try_withdraw()) {
            Some(GiveUp::BudgetExhausted)
        } else {
            None
        };
        if let Some(reason) = give_up {
            return Err(RetryError {
                error,
                attempts: attempt,
                reason,
            });
        }
        let delay = policy.delay(attempt - 1);
        tracing::debug!(attempt, delay_ms = delay.as_millis() as u64, "retrying");
        tokio::time::sleep(delay).await;
    }
}

/// Enough for a TCP and TLS handshake over a congested link; a host that
/// does not answer in 5 s is treated as down rather than waited for.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// One attempt of a call that leaves the process; long queries get their
/// own, larger limit from the caller.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// All attempts with their backoff: two full requests, so a retry after a
/// timed-out first attempt still has room.
pub const DEFAULT_OVERALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Which limit a [`TimeoutError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutKind {
    /// Establishing a connection.
    Connect,
    /// One attempt of a request.
    Request,
    /// The whole operation, retries included.
    Overall,
}

impl TimeoutKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Request => "request",
            Self::Overall => "overall",
        }
    }
}

impl fmt::Display for TimeoutKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A limit elapsed before the operation finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{kind} timeout of {limit:?} elapsed")]
pub struct TimeoutError {
    pub kind: TimeoutKind,
    pub limit: Duration,
}

impl Classify for TimeoutError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Timeout
    }
}

/// The three limits of a call that leaves the process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    pub request: Duration,
    pub overall: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: DEFAULT_CONNECT_TIMEOUT,
            request: DEFAULT_REQUEST_TIMEOUT,
            overall: DEFAULT_OVERALL_TIMEOUT,
        }
    }
}

impl Timeouts {
    pub fn validate(&self) -> Result<(), Vec<SettingError>> {
        let mut c = Checker::default();
        c.positive("connect", self.connect);
        c.positive("request", self.request);
        c.positive("overall", self.overall);
        if self.request > self.overall {
            c.fail("request", "must not be longer than overall");
        }
        c.finish()
    }

    pub fn limit(&self, kind: TimeoutKind) -> Duration {
        match kind {
            TimeoutKind::Connect => self.connect,
            TimeoutKind::Request => self.request,
            TimeoutKind::Overall => self.overall,
        }
    }

    /// Runs `f` within the limit of `kind`.
    pub async fn run<F: Future>(&self, kind: TimeoutKind, f: F) -> Result<F::Output, TimeoutError> {
        with_timeout(kind, self.limit(kind), f).await
    }
}

/// Runs `f` for at most `limit`; the error names the limit that fired.
pub async fn with_timeout<F: Future>(
    kind: TimeoutKind,
    limit: Duration,
    f: F,
) -> Result<F::Output, TimeoutError> {
    tokio::time::timeout(limit, f)
        .await
        .map_err(|_| TimeoutError { kind, limit })
}

#[cfg(test)]
mod tests;
