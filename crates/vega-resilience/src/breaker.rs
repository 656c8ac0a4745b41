//! The circuit breaker, with Resilience4j's count-based semantics.
//!
//! A breaker watches the outcomes of calls to one service in a sliding
//! window of the last `sliding_window_size` calls. Once `minimum_calls`
//! outcomes are in the window it computes two rates: failed calls and slow
//! calls (duration strictly above `slow_call_duration`), in percent. When
//! either rate reaches its threshold the breaker opens and rejects calls at
//! once. After `wait_duration_in_open` the next permission check moves it to
//! half-open, which lets exactly `permitted_calls_in_half_open` trial calls
//! through and decides by the same rates over those: closed again (with a
//! fresh window) or open for another wait.
//!
//! Operators can also disable a breaker (permit everything, record
//! nothing), force it open (reject everything), put it in metrics-only mode
//! (record, never open) or reset it (closed, empty window).
//!
//! Time is read from an injected [`Ticker`], so tests move a manual clock
//! instead of sleeping.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use vega_core::{Classify, ErrorClass};

use crate::settings::{Checker, InvalidSettings, SettingError};
use crate::ticker::Ticker;

/// Half the calls in the window failing means the service is more broken
/// than working; retrying into it only adds load.
pub const DEFAULT_FAILURE_RATE_THRESHOLD: f32 = 50.0;
/// Slowness trips later than failure: a slow answer is still an answer, but
/// when four in five calls are slow callers mostly wait.
pub const DEFAULT_SLOW_CALL_RATE_THRESHOLD: f32 = 80.0;
/// Well above a healthy dependency's tail latency, well below the request
/// timeouts, so "slow" means degraded and not merely busy.
pub const DEFAULT_SLOW_CALL_DURATION: Duration = Duration::from_secs(5);
/// Ten outcomes before any decision, so two early errors cannot open a
/// breaker of a service that was just started.
pub const DEFAULT_MINIMUM_CALLS: u32 = 10;
/// The last hundred calls: long enough to smooth out noise, short enough to
/// react within seconds at normal traffic.
pub const DEFAULT_SLIDING_WINDOW_SIZE: u32 = 100;
/// Long enough for a restarting dependency to come back, short enough that a
/// recovered one is not shunned for minutes.
pub const DEFAULT_WAIT_DURATION_IN_OPEN: Duration = Duration::from_secs(30);
/// A handful of trial calls decides whether to close; one call alone would
/// let a single lucky or unlucky request decide.
pub const DEFAULT_PERMITTED_CALLS_IN_HALF_OPEN: u32 = 5;

/// Settings of one breaker. `Default` is the shipped default block.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerSettings {
    /// Percent of failed calls in the window that opens the breaker.
    pub failure_rate_threshold: f32,
    /// Percent of slow calls in the window that opens the breaker.
    pub slow_call_rate_threshold: f32,
    /// A call taking strictly longer than this is slow.
    pub slow_call_duration: Duration,
    /// Outcomes needed before the rates are computed (capped at the window
    /// size while closed).
    pub minimum_calls: u32,
    /// Number of most recent outcomes kept while closed.
    pub sliding_window_size: u32,
    /// How long the breaker stays open before it lets trial calls through.
    pub wait_duration_in_open: Duration,
    /// Number of trial calls in half-open, and the outcomes needed to decide.
    pub permitted_calls_in_half_open: u32,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            failure_rate_threshold: DEFAULT_FAILURE_RATE_THRESHOLD,
            slow_call_rate_threshold: DEFAULT_SLOW_CALL_RATE_THRESHOLD,
            slow_call_duration: DEFAULT_SLOW_CALL_DURATION,
            minimum_calls: DEFAULT_MINIMUM_CALLS,
            sliding_window_size: DEFAULT_SLIDING_WINDOW_SIZE,
            wait_duration_in_open: DEFAULT_WAIT_DURATION_IN_OPEN,
            permitted_calls_in_half_open: DEFAULT_PERMITTED_CALLS_IN_HALF_OPEN,
        }
    }
}

impl BreakerSettings {
    /// Checks every field; field paths are the bare field names.
    pub fn validate(&self) -> Result<(), Vec<SettingError>> {
        let mut c = Checker::default();
        c.percent("failure_rate_threshold", self.failure_rate_threshold);
        c.percent("slow_call_rate_threshold", self.slow_call_rate_threshold);
        c.positive("slow_call_duration", self.slow_call_duration);
        c.at_least("minimum_calls", self.minimum_calls, 1);
        c.at_least("sliding_window_size", self.sliding_window_size, 1);
        c.positive("wait_duration_in_open", self.wait_duration_in_open);
        c.at_least(
            "permitted_calls_in_half_open",
            self.permitted_calls_in_half_open,
            1,
        );
        c.finish()
    }
}

/// The state of a breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Calls pass; outcomes are recorded and may open the breaker.
    Closed,
    /// Calls are rejected until the wait duration has passed.
    Open,
    /// A fixed number of trial calls pass and decide the next state.
    HalfOpen,
    /// Calls pass; nothing is recorded; no transition happens by itself.
    Disabled,
    /// Calls are rejected until an operator changes the state.
    ForcedOpen,
    /// Calls pass; outcomes are recorded but never open the breaker.
    MetricsOnly,
}

impl BreakerState {
    /// Stable lower-case label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
            Self::Disabled => "disabled",
            Self::ForcedOpen => "forced_open",
            Self::MetricsOnly => "metrics_only",
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A call was rejected by the breaker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("circuit breaker of {service} is {state}: call not permitted{}", retry_hint(.retry_after))]
pub struct CallNotPermitted {
    pub service: String,
    pub state: BreakerState,
    /// While open: the time left until trial calls are let through. `None`
    /// in half-open (wait for the trial calls) and forced-open (an operator
    /// decides).
    pub retry_after: Option<Duration>,
}

fn retry_hint(retry_after: &Option<Duration>) -> String {
    match retry_after {
        Some(d) => format!(", retry after {d:?}"),
        None => String::new(),
    }
}

impl Classify for CallNotPermitted {
    fn class(&self) -> ErrorClass {
        ErrorClass::Unavailable
    }

    /// Retrying at once meets the same open breaker; the caller should
    /// use `retry_after` or a fallback instead.
    fn is_retryable(&self) -> bool {
        false
    }
}

/// The error of [`CircuitBreaker::call`].
#[derive(Debug, thiserror::Error)]
pub enum BreakerError<E> {
    /// The breaker rejected the call; the operation did not run.
    #[error(transparent)]
    NotPermitted(#[from] CallNotPermitted),
    /// The operation ran and failed.
    #[error(transparent)]
    Call(E),
}

impl<E> BreakerError<E> {
    /// The operation's own error, if it ran.
    pub fn into_call_error(self) -> Option<E> {
        match self {
            Self::Call(e) => Some(e),
            Self::NotPermitted(_) => None,
        }
    }
}

impl<E: Classify> Classify for BreakerError<E> {
    fn class(&self) -> ErrorClass {
        match self {
            Self::NotPermitted(e) => e.class(),
            Self::Call(e) => e.class(),
        }
    }

    fn is_retryable(&self) -> bool {
        match self {
            Self::NotPermitted(e) => e.is_retryable(),
            Self::Call(e) => e.is_retryable(),
        }
    }
}

/// How [`CircuitBreaker::call`] records an error of the operation
/// (Resilience4j's `recordExceptions` / `ignoreExceptions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorDisposition {
    /// A failure of the service: counts towards the failure rate.
    RecordFailure,
    /// Not the service's fault (e.g. bad input): recorded as a success.
    RecordSuccess,
    /// Not recorded at all; the permit is released.
    Ignore,
}

/// Cumulative counters of one breaker, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BreakerCounters {
    pub to_closed: u64,
    pub to_open: u64,
    pub to_half_open: u64,
    pub to_disabled: u64,
    pub to_forced_open: u64,
    pub to_metrics_only: u64,
    pub resets: u64,
    /// Rejected calls over the breaker's life.
    pub not_permitted_total: u64,
    /// Outcomes of permits issued before the last transition, not counted.
    pub late_outcomes: u64,
}

impl BreakerCounters {
    fn count_entry(&mut self, state: BreakerState) {
        let counter = match state {
            BreakerState::Closed => &mut self.to_closed,
            BreakerState::Open => &mut self.to_open,
            BreakerState::HalfOpen => &mut self.to_half_open,
            BreakerState::Disabled => &mut self.to_disabled,
            BreakerState::ForcedOpen => &mut self.to_forced_open,
            BreakerState::MetricsOnly => &mut self.to_metrics_only,
        };
        *counter += 1;
    }
}

/// A point-in-time view of a breaker.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub state: BreakerState,
    /// Percent of failed calls; `None` while fewer than the minimum number
    /// of calls are buffered (Resilience4j reports -1).
    pub failure_rate: Option<f32>,
    /// Percent of slow calls; `None` like `failure_rate`.
    pub slow_call_rate: Option<f32>,
    /// Outcomes in the current window.
    pub buffered_calls: u32,
    /// Failed outcomes in the window, slow or not.
    pub failed_calls: u32,
    /// Slow outcomes in the window, failed or not.
    pub slow_calls: u32,
    /// Slow and failed outcomes in the window.
    pub slow_failed_calls: u32,
    /// Calls rejected since the current state was entered.
    pub not_permitted_calls: u64,
    /// Ticker time at which the current state was entered.
    pub state_entered_at: Duration,
    /// While open: the time left before trial calls are let through.
    pub retry_after: Option<Duration>,
    pub counters: BreakerCounters,
}

/// One recorded outcome in the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Success,
    Failure,
    SlowSuccess,
    SlowFailure,
}

impl Outcome {
    fn of(failed: bool, slow: bool) -> Self {
        match (failed, slow) {
            (false, false) => Self::Success,
            (true, false) => Self::Failure,
            (false, true) => Self::SlowSuccess,
            (true, true) => Self::SlowFailure,
        }
    }

    fn is_failure(self) -> bool {
        matches!(self, Self::Failure | Self::SlowFailure)
    }

    fn is_slow(self) -> bool {
        matches!(self, Self::SlowSuccess | Self::SlowFailure)
    }
}

/// Count-based sliding window: a ring of the last `capacity` outcomes with
/// running totals, so recording and reading are O(1).
#[derive(Debug)]
struct Window {
    capacity: usize,
    ring: VecDeque<Outcome>,
    failed: u32,
    slow: u32,
    slow_failed: u32,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Rates {
    failure: f32,
    slow: f32,
}

impl Window {
    fn new(capacity: u32) -> Self {
        let capacity = usize::try_from(capacity).unwrap_or(usize::MAX);
        Self {
            capacity,
            // Allocate lazily: most windows of idle services stay small.
            ring: VecDeque::new(),
            failed: 0,
            slow: 0,
            slow_failed: 0,
        }
    }

    fn record(&mut self, outcome: Outcome) {
        if self.capacity == 0 {
            return;
        }
        if self.ring.len() == self.capacity {
            if let Some(old) = self.ring.pop_front() {
                self.count(old, false);
            }
        }
        self.ring.push_back(outcome);
        self.count(outcome, true);
    }

    fn count(&mut self, outcome: Outcome, add: bool) {
        let step = |n: &mut u32| {
            if add {
                *n += 1;
            } else {
                *n -= 1;
            }
        };
        if outcome.is_failure() {
            step(&mut self.failed);
        }
        if outcome.is_slow() {
            step(&mut self.slow);
        }
        if outcome == Outcome::SlowFailure {
            step(&mut self.slow_failed);
        }
    }

    fn total(&self) -> u32 {
        u32::try_from(self.ring.len()).unwrap_or(u32::MAX)
    }

    /// The rates, or `None` below `minimum` outcomes (or with none at all).
    fn rates(&self, minimum: u32) -> Option<Rates> {
        let total = self.total();
        if total == 0 || total < minimum {
            return None;
        }
        // The same arithmetic as Resilience4j: f32, percent of the buffered.
        Some(Rates {
            failure: self.failed as f32 * 100.0 / total as f32,
            slow: self.slow as f32 * 100.0 / total as f32,
        })
    }
}

/// What the rates say about the window.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Verdict {
    BelowMinimumCalls,
    BelowThresholds,
    Exceeded,
}

/// A state change, logged after the lock is released.
#[derive(Debug, Clone, Copy)]
struct Transition {
    from: BreakerState,
    to: BreakerState,
    rates: Option<Rates>,
}

#[derive(Debug)]
struct Inner {
    state: BreakerState,
    /// Bumped by every transition; a permit from an older epoch is stale.
    epoch: u64,
    entered_at: Duration,
    window: Window,
    /// Outcomes needed in `window` before its rates count.
    minimum_calls: u32,
    /// While open: the ticker time after which trial calls may pass.
    open_until: Duration,
    /// While half-open: trial calls that may still start.
    half_open_available: u32,
    not_permitted_in_state: u64,
    counters: BreakerCounters,
}

impl Inner {
    fn new(settings: &BreakerSettings, now: Duration) -> Self {
        Self {
            state: BreakerState::Closed,
            epoch: 0,
            entered_at: now,
            window: Window::new(settings.sliding_window_size),
            minimum_calls: settings.minimum_calls.min(settings.sliding_window_size),
            open_until: now,
            half_open_available: 0,
            not_permitted_in_state: 0,
            counters: BreakerCounters::default(),
        }
    }

    fn verdict(&self, settings: &BreakerSettings) -> Verdict {
        match self.window.rates(self.minimum_calls) {
            None => Verdict::BelowMinimumCalls,
            Some(r)
                if r.failure >= settings.failure_rate_threshold
                    || r.slow >= settings.slow_call_rate_threshold =>
            {
                Verdict::Exceeded
            }
            Some(_) => Verdict::BelowThresholds,
        }
    }

    /// Enters `to`, setting up its window. Counts the entry.
    fn enter(&mut self, to: BreakerState, settings: &BreakerSettings, now: Duration) -> Transition {
        let from = self.state;
        let rates = self.window.rates(self.minimum_calls);
        self.state = to;
        self.epoch += 1;
        self.entered_at = now;
        self.not_permitted_in_state = 0;
        match to {
            BreakerState::Closed | BreakerState::MetricsOnly => {
                self.window = Window::new(settings.sliding_window_size);
                self.minimum_calls = settings.minimum_calls.min(settings.sliding_window_size);
            }
            // Open keeps the window that tripped it, so a snapshot shows why.
            BreakerState::Open => {
                self.open_until = now.saturating_add(settings.wait_duration_in_open);
            }
            BreakerState::HalfOpen => {
                self.window = Window::new(settings.permitted_calls_in_half_open);
                self.minimum_calls = settings.permitted_calls_in_half_open;
                self.half_open_available = settings.permitted_calls_in_half_open;
            }
            BreakerState::Disabled | BreakerState::ForcedOpen => {
                self.window = Window::new(0);
                self.minimum_calls = settings.minimum_calls;
            }
        }
        self.counters.count_entry(to);
        Transition { from, to, rates }
    }

    fn reject(&mut self) {
        self.not_permitted_in_state += 1;
        self.counters.not_permitted_total += 1;
    }
}

#[derive(Debug)]
struct Shared {
    service: String,
    settings: BreakerSettings,
    ticker: Arc<dyn Ticker>,
    inner: Mutex<Inner>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Critical sections do not panic; a poisoned lock still holds
        // consistent counters.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn log(&self, t: Option<Transition>) {
        let Some(t) = t else { return };
        let (failure_rate, slow_call_rate) = match t.rates {
            Some(r) => (r.failure, r.slow),
            None => (-1.0, -1.0),
        };
        if t.to == BreakerState::Open {
            tracing::warn!(
                service = %self.service, from = t.from.as_str(), to = t.to.as_str(),
                failure_rate, slow_call_rate, "circuit breaker opened"
            );
        } else {
            tracing::info!(
                service = %self.service, from = t.from.as_str(), to = t.to.as_str(),
                "circuit breaker changed state"
            );
        }
    }

    fn record(&self, epoch: u64, failed: bool, duration: Duration) {
        // Resilience4j: slow when strictly longer than the threshold.
        let outcome = Outcome::of(failed, duration > self.settings.slow_call_duration);
        let now = self.ticker.now();
        let transition = {
            let mut inner = self.lock();
            if epoch != inner.epoch {
                inner.counters.late_outcomes += 1;
                None
            } else {
                match inner.state {
                    BreakerState::Closed => {
                        inner.window.record(outcome);
                        match inner.verdict(&self.settings) {
                            Verdict::Exceeded => {
                                Some(inner.enter(BreakerState::Open, &self.settings, now))
                            }
                            _ => None,
                        }
                    }
                    BreakerState::HalfOpen => {
                        inner.window.record(outcome);
                        match inner.verdict(&self.settings) {
                            Verdict::Exceeded => {
                                Some(inner.enter(BreakerState::Open, &self.settings, now))
                            }
                            Verdict::BelowThresholds => {
                                Some(inner.enter(BreakerState::Closed, &self.settings, now))
                            }
                            Verdict::BelowMinimumCalls => None,
                        }
                    }
                    BreakerState::MetricsOnly => {
                        inner.window.record(outcome);
                        None
                    }
                    // Disabled records nothing; open states issue no permits
                    // of their own epoch.
                    BreakerState::Disabled | BreakerState::Open | BreakerState::ForcedOpen => None,
                }
            }
        };
        self.log(transition);
    }

    fn release(&self, epoch: u64) {
        let mut inner = self.lock();
        if epoch == inner.epoch && inner.state == BreakerState::HalfOpen {
            inner.half_open_available =
                (inner.half_open_available + 1).min(self.settings.permitted_calls_in_half_open);
        }
    }
}

/// A circuit breaker for one service. Cheap to clone; clones share state.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    shared: Arc<Shared>,
}

impl CircuitBreaker {
    /// A closed breaker with an empty window.
    pub fn new(
        service: impl Into<String>,
        settings: BreakerSettings,
        ticker: Arc<dyn Ticker>,
    ) -> Result<Self, InvalidSettings> {
        settings.validate()?;
        Ok(Self::from_valid(service.into(), settings, ticker))
    }

    /// For settings that were validated already.
    pub(crate) fn from_valid(
        service: String,
        settings: BreakerSettings,
        ticker: Arc<dyn Ticker>,
    ) -> Self {
        let inner = Inner::new(&settings, ticker.now());
        Self {
            shared: Arc::new(Shared {
                service,
                settings,
                ticker,
                inner: Mutex::new(inner),
            }),
        }
    }

    pub fn service(&self) -> &str {
        &self.shared.service
    }

    pub fn settings(&self) -> &BreakerSettings {
        &self.shared.settings
    }

    /// The current state. An open breaker whose wait has passed still reads
    /// as open until the next [`try_acquire`](Self::try_acquire).
    pub fn state(&self) -> BreakerState {
        self.shared.lock().state
    }

    /// Asks to make one call. The permit must be completed with
    /// [`Permit::success`] or [`Permit::failure`]; dropping it releases the
    /// call without recording anything.
    pub fn try_acquire(&self) -> Result<Permit, CallNotPermitted> {
        let s = &self.shared;
        let now = s.ticker.now();
        let mut transition = None;
        let decision = {
            let mut inner = s.lock();
            // Lazy transition, as Resilience4j without automatic transition:
            // the first permission check after the wait moves to half-open.
            if inner.state == BreakerState::Open && now > inner.open_until {
                transition = Some(inner.enter(BreakerState::HalfOpen, &s.settings, now));
            }
            match inner.state {
                BreakerState::Closed | BreakerState::Disabled | BreakerState::MetricsOnly => {
                    Ok(inner.epoch)
                }
                BreakerState::HalfOpen if inner.half_open_available > 0 => {
                    inner.half_open_available -= 1;
                    Ok(inner.epoch)
                }
                BreakerState::HalfOpen | BreakerState::ForcedOpen => {
                    inner.reject();
                    Err((inner.state, None))
                }
                BreakerState::Open => {
                    inner.reject();
                    Err((
                        BreakerState::Open,
                        Some(inner.open_until.saturating_sub(now)),
                    ))
                }
            }
        };
        s.log(transition);
        match decision {
            Ok(epoch) => Ok(Permit {
                shared: Arc::clone(s),
                epoch,
                acquired_at: now,
                done: false,
            }),
            Err((state, retry_after)) => Err(CallNotPermitted {
                service: s.service.clone(),
                state,
                retry_after,
            }),
        }
    }

    /// Runs `f` if permitted, timing it with the breaker's ticker and
    /// recording the outcome; `classify` says how an error is recorded.
    /// If the returned future is dropped before `f` finishes, the permit is
    /// released without an outcome.
    pub async fn call<F, Fut, T, E, C>(&self, classify: C, f: F) -> Result<T, BreakerError<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        C: FnOnce(&E) -> ErrorDisposition,
    {
        let permit = self.try_acquire()?;
        let result = f().await;
        let elapsed = permit.elapsed();
        match &result {
            Ok(_) => permit.success(elapsed),
            Err(e) => match classify(e) {
                ErrorDisposition::RecordFailure => permit.failure(elapsed),
                ErrorDisposition::RecordSuccess => permit.success(elapsed),
                ErrorDisposition::Ignore => permit.release(),
            },
        }
        result.map_err(BreakerError::Call)
    }

    /// The state, rates and counters right now.
    pub fn snapshot(&self) -> Snapshot {
        let now = self.shared.ticker.now();
        let inner = self.shared.lock();
        let rates = inner.window.rates(inner.minimum_calls);
        let w = &inner.window;
        Snapshot {
            state: inner.state,
            failure_rate: rates.map(|r| r.failure),
            slow_call_rate: rates.map(|r| r.slow),
            buffered_calls: w.total(),
            failed_calls: w.failed,
            slow_calls: w.slow,
            slow_failed_calls: w.slow_failed,
            not_permitted_calls: inner.not_permitted_in_state,
            state_entered_at: inner.entered_at,
            retry_after: (inner.state == BreakerState::Open)
                .then(|| inner.open_until.saturating_sub(now)),
            counters: inner.counters,
        }
    }

    /// Closed with a fresh window. Counts a reset, and a transition if the
    /// breaker was not closed.
    pub fn reset(&self) {
        let s = &self.shared;
        let now = s.ticker.now();
        let transition = {
            let mut inner = s.lock();
            inner.counters.resets += 1;
            let was = inner.state;
            let t = inner.enter(BreakerState::Closed, &s.settings, now);
            if was == BreakerState::Closed {
                // A reset of a closed breaker is not a state change.
                inner.counters.to_closed -= 1;
                None
            } else {
                Some(t)
            }
        };
        s.log(transition);
    }

    /// Operator transition; returns false (and changes nothing) when the
    /// breaker is in `to` already.
    fn transition_to(&self, to: BreakerState) -> bool {
        let s = &self.shared;
        let now = s.ticker.now();
        let transition = {
            let mut inner = s.lock();
            (inner.state != to).then(|| inner.enter(to, &s.settings, now))
        };
        let changed = transition.is_some();
        s.log(transition);
        changed
    }

    /// Closed with a fresh window.
    pub fn transition_to_closed(&self) -> bool {
        self.transition_to(BreakerState::Closed)
    }

    /// Open for one wait duration, keeping the current window.
    pub fn transition_to_open(&self) -> bool {
        self.transition_to(BreakerState::Open)
    }

    /// Half-open with a fresh set of trial calls.
    pub fn transition_to_half_open(&self) -> bool {
        self.transition_to(BreakerState::HalfOpen)
    }

    /// Permits everything, records nothing, until another operator call.
    pub fn transition_to_disabled(&self) -> bool {
        self.transition_to(BreakerState::Disabled)
    }

    /// Rejects everything until another operator call.
    pub fn transition_to_forced_open(&self) -> bool {
        self.transition_to(BreakerState::ForcedOpen)
    }

    /// Permits everything and records outcomes, never opening.
    pub fn transition_to_metrics_only(&self) -> bool {
        self.transition_to(BreakerState::MetricsOnly)
    }
}

/// Permission for one call. Complete it with [`success`](Self::success) or
/// [`failure`](Self::failure); dropping it releases the call (counted as
/// neither; in half-open the trial slot becomes free again).
///
/// An outcome reported after the breaker changed state is not counted in
/// the new state's window (see [`BreakerCounters::late_outcomes`]).
#[derive(Debug)]
#[must_use = "dropping a permit releases the call without recording an outcome"]
pub struct Permit {
    shared: Arc<Shared>,
    epoch: u64,
    acquired_at: Duration,
    done: bool,
}

impl Permit {
    /// Ticker time since the permit was issued.
    pub fn elapsed(&self) -> Duration {
        self.shared.ticker.now().saturating_sub(self.acquired_at)
    }

    /// The call succeeded after `duration`.
    pub fn success(mut self, duration: Duration) {
        self.done = true;
        self.shared.record(self.epoch, false, duration);
    }

    /// The call failed after `duration`.
    pub fn failure(mut self, duration: Duration) {
        self.done = true;
        self.shared.record(self.epoch, true, duration);
    }

    /// Gives the permission back without an outcome (same as dropping).
    pub fn release(self) {}
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.done {
            self.shared.release(self.epoch);
        }
    }
}

#[cfg(test)]
mod tests;
