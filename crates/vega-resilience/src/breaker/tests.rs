//! State machine tests, one behaviour each, on a manual ticker.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::ticker::{ManualTicker, TokioTicker};

const FAST: Duration = Duration::from_millis(10);
const SLOW: Duration = Duration::from_secs(2);
const WAIT: Duration = Duration::from_secs(5);
const NANO: Duration = Duration::from_nanos(1);

fn settings() -> BreakerSettings {
    BreakerSettings {
        failure_rate_threshold: 50.0,
        slow_call_rate_threshold: 50.0,
        slow_call_duration: Duration::from_secs(1),
        minimum_calls: 5,
        sliding_window_size: 10,
        wait_duration_in_open: WAIT,
        permitted_calls_in_half_open: 3,
    }
}

fn breaker_with(settings: BreakerSettings) -> (CircuitBreaker, Arc<ManualTicker>) {
    let ticker = Arc::new(ManualTicker::new());
    let cb = CircuitBreaker::new("svc", settings, ticker.clone()).expect("valid settings");
    (cb, ticker)
}

fn breaker() -> (CircuitBreaker, Arc<ManualTicker>) {
    breaker_with(settings())
}

fn record(cb: &CircuitBreaker, failed: bool, duration: Duration, n: usize) {
    for _ in 0..n {
        let permit = cb.try_acquire().expect("call permitted");
        if failed {
            permit.failure(duration);
        } else {
            permit.success(duration);
        }
    }
}

fn succeed(cb: &CircuitBreaker, n: usize) {
    record(cb, false, FAST, n);
}

fn fail(cb: &CircuitBreaker, n: usize) {
    record(cb, true, FAST, n);
}

/// Opens the breaker and lets the wait pass (still open until an acquire).
fn open_and_wait(cb: &CircuitBreaker, ticker: &ManualTicker) {
    fail(cb, 5);
    assert_eq!(cb.state(), BreakerState::Open);
    ticker.advance(WAIT + NANO);
}

#[test]
fn default_settings_match_the_shipped_block() {
    let s = BreakerSettings::default();
    assert_eq!(s.failure_rate_threshold, 50.0);
    assert_eq!(s.slow_call_rate_threshold, 80.0);
    assert_eq!(s.slow_call_duration, Duration::from_secs(5));
    assert_eq!(s.minimum_calls, 10);
    assert_eq!(s.sliding_window_size, 100);
    assert_eq!(s.wait_duration_in_open, Duration::from_secs(30));
    assert_eq!(s.permitted_calls_in_half_open, 5);
    assert_eq!(s.validate(), Ok(()));
}

#[test]
fn validate_reports_every_bad_field() {
    let s = BreakerSettings {
        failure_rate_threshold: 0.0,
        slow_call_rate_threshold: 101.0,
        slow_call_duration: Duration::ZERO,
        minimum_calls: 0,
        sliding_window_size: 0,
        wait_duration_in_open: Duration::ZERO,
        permitted_calls_in_half_open: 0,
    };
    let fields: Vec<String> = s
        .validate()
        .unwrap_err()
        .into_iter()
        .map(|e| e.field)
        .collect();
    assert_eq!(
        fields,
        [
            "failure_rate_threshold",
            "slow_call_rate_threshold",
            "slow_call_duration",
            "minimum_calls",
            "sliding_window_size",
            "wait_duration_in_open",
            "permitted_calls_in_half_open",
        ]
    );
}

#[test]
fn new_rejects_invalid_settings() {
    let s = BreakerSettings {
        sliding_window_size: 0,
        ..settings()
    };
    let err = CircuitBreaker::new("svc", s, Arc::new(ManualTicker::new())).unwrap_err();
    assert_eq!(err.errors[0].field, "sliding_window_size");
}

#[test]
fn should_start_closed_with_no_rates() {
    let (cb, _) = breaker();
    let snap = cb.snapshot();
    assert_eq!(snap.state, BreakerState::Closed);
    assert_eq!(snap.failure_rate, None);
    assert_eq!(snap.slow_call_rate, None);
    assert_eq!(snap.buffered_calls, 0);
}

#[test]
fn should_not_open_before_minimum_calls() {
    let (cb, _) = breaker();
    fail(&cb, 4);
    let snap = cb.snapshot();
    assert_eq!(snap.state, BreakerState::Closed);
    assert_eq!(snap.failure_rate, None);
    assert_eq!(snap.buffered_calls, 4);
    assert_eq!(snap.failed_calls, 4);
}

#[test]
fn minimum_calls_is_capped_at_window_size() {
    let (cb, _) = breaker_with(BreakerSettings {
        minimum_calls: 50,
        sliding_window_size: 4,
        ..settings()
    });
    fail(&cb, 4);
    assert_eq!(cb.state(), BreakerState::Open);
}

#[test]
fn should_open_when_failure_rate_reaches_threshold() {
    let (cb, _) = breaker();
    succeed(&cb, 3);
    fail(&cb, 2);
    assert_eq!(cb.state(), BreakerState::Closed, "40% is below 50%");
    succeed(&cb, 1);
    fail(&cb, 2);
    // 4 failures of 8 calls: exactly 50%.
    let snap = cb.snapshot();
    assert_eq!(snap.state, BreakerState::Open);
    assert_eq!(snap.failure_rate, Some(50.0));
}

#[test]
fn should_stay_closed_below_failure_rate_threshold() {
    let (cb, _) = breaker();
    succeed(&cb, 6);
    fail(&cb, 4);
    let snap = cb.snapshot();
    assert_eq!(snap.state, BreakerState::Closed);
    assert_eq!(snap.failure_rate, Some(40.0));
}

#[test]
fn should_open_when_slow_call_rate_reaches_threshold() {
    let (cb, _) = breaker();
    succeed(&cb, 3);
    record(&cb, false, SLOW, 3);
    let snap = cb.snapshot();
    assert_eq!(snap.state, BreakerState::Open);
    assert_eq!(snap.slow_call_rate, Some(50.0));
    assert_eq!(snap.failure_rate, Some(0.0));
}

#[test]
fn call_lasting_exactly_the_slow_duration_is_not_slow() {
    let (cb, _) = breaker();
    record(&cb, false, Duration::from_secs(1), 5);
    let snap = cb.snapshot();
    assert_eq!(snap.slow_calls, 0);
    assert_eq!(snap.state, BreakerState::Closed);
    record(&cb, false, Duration::from_secs(1) + NANO, 1);
    assert_eq!(cb.snapshot().slow_calls, 1);
}

#[test]
fn slow_failure_counts_as_failed_and_slow() {
    let (cb, _) = breaker();
    record(&cb, true, SLOW, 1);
    let snap = cb.snapshot();
    assert_eq!(snap.failed_calls, 1);
    assert_eq!(snap.slow_calls, 1);
    assert_eq!(snap.slow_failed_calls, 1);
}

#[test]
fn sliding_window_evicts_oldest_outcome() {
    let (cb, _) = breaker_with(BreakerSettings {
        failure_rate_threshold: 100.0,
        ..settings()
    });
    fail(&cb, 4);
    succeed(&cb, 6);
    assert_eq!(cb.snapshot().failed_calls, 4);
    succeed(&cb, 1);
    let snap = cb.snapshot();
    assert_eq!(snap.buffered_calls, 10);
    assert_eq!(snap.failed_calls, 3);
    assert_eq!(snap.failure_rate, Some(30.0));
}

#[test]
fn should_reject_calls_while_open() {
    let (cb, ticker) = breaker();
    fail(&cb, 5);
    ticker.advance(Duration::from_secs(2));
    let err = cb.try_acquire().unwrap_err();
    assert_eq!(err.state, BreakerState::Open);
    assert_eq!(err.service, "svc");
    assert_eq!(err.retry_after, Some(Duration::from_secs(3)));
    let _ = cb.try_acquire().unwrap_err();
    let snap = cb.snapshot();
    assert_eq!(snap.not_permitted_calls, 2);
    assert_eq!(snap.counters.not_permitted_total, 2);
}

#[test]
fn open_breaker_keeps_the_window_that_tripped_it() {
    let (cb, _) = breaker();
    succeed(&cb, 2);
    fail(&cb, 3);
    let snap = cb.snapshot();
    assert_eq!(snap.state, BreakerState::Open);
    assert_eq!(snap.failure_rate, Some(60.0));
    assert_eq!(snap.buffered_calls, 5);
}

#[test]
fn should_stay_open_until_wait_duration_has_passed() {
    let (cb, ticker) = breaker();
    fail(&cb, 5);
    ticker.advance(WAIT);
    // Resilience4j moves on only when the wait is strictly over.
    let err = cb.try_acquire().unwrap_err();
    assert_eq!(err.retry_after, Some(Duration::ZERO));
    ticker.advance(NANO);
    assert!(cb.try_acquire().is_ok());
}

#[test]
fn should_transition_to_half_open_after_wait_duration() {
    let (cb, ticker) = breaker();
    open_and_wait(&cb, &ticker);
    assert_eq!(cb.state(), BreakerState::Open, "transition is lazy");
    let permit = cb.try_acquire().expect("first trial call");
    let snap = cb.snapshot();
    assert_eq!(snap.state, BreakerState::HalfOpen);
    assert_eq!(snap.buffered_calls, 0, "half-open starts a fresh window");
    assert_eq!(snap.state_entered_at, WAIT + Duration::from_nanos(1));
    drop(permit);
}

#[test]
fn should_permit_only_n_calls_in_half_open() {
    let (cb, ticker) = breaker();
    open_and_wait(&cb, &ticker);
    let permits: Vec<Permit> = (0..3)
        .map(|_| cb.try_acquire().expect("trial call"))
        .collect();
    let err = cb.try_acquire().unwrap_err();
    assert_eq!(err.state, BreakerState::HalfOpen);
    assert_eq!(err.retry_after, None);
    assert_eq!(cb.snapshot().not_permitted_calls, 1);
    drop(permits);
}

#[test]
fn should_not_decide_half_open_before_all_trial_calls_are_recorded() {
    let (cb, ticker) = breaker();
    open_and_wait(&cb, &ticker);
    succeed(&cb, 2);
    let snap = cb.snapshot();
    assert_eq!(snap.state, BreakerState::HalfOpen);
    assert_eq!(snap.failure_rate, None);
}

#[test]
fn should_close_when_half_open_calls_succeed() {
    let (cb, ticker) = breaker();
    open_and_wait(&cb, &ticker);
    succeed(&cb, 2);
    fail(&cb, 1);
    let snap = cb.snapshot();
    assert_eq!(snap.state, BreakerState::Closed, "33% is below 50%");
    assert_eq!(snap.buffered_calls, 0, "closed starts a fresh window");
}

#[test]
fn should_reopen_when_half_open_failure_rate_too_high() {
    let (cb, ticker) = breaker();
    open_and_wait(&cb, &ticker);
    succeed(&cb, 1);
    fail(&cb, 2);
    let snap = cb.snapshot();
    assert_eq!(snap.state, BreakerState::Open);
    assert_eq!(snap.retry_after, Some(WAIT));
    assert_eq!(snap.counters.to_open, 2);
}

#[test]
fn should_reopen_when_half_open_slow_call_rate_too_high() {
    let (cb, ticker) = breaker();
    open_and_wait(&cb, &ticker);
    succeed(&cb, 1);
    record(&cb, false, SLOW, 2);
    assert_eq!(cb.state(), BreakerState::Open);
}

#[test]
fn released_permit_in_half_open_frees_the_slot() {
    let (cb, ticker) = breaker();
    open_and_wait(&cb, &ticker);
    let a = cb.try_acquire().expect("trial 1");
    let _b = cb.try_acquire().expect("trial 2");
    let _c = cb.try_acquire().expect("trial 3");
    assert!(cb.try_acquire().is_err());
    a.release();
    let _d = cb.try_acquire().expect("the released slot is free again");
    assert!(cb.try_acquire().is_err());
}

#[test]
fn dropped_permit_counts_as_neither_success_nor_failure() {
    let (cb, _) = breaker();
    for _ in 0..10 {
        drop(cb.try_acquire().expect("closed"));
    }
    assert_eq!(cb.snapshot().buffered_calls, 0);
}

#[test]
fn outcome_reported_after_a_transition_is_not_counted() {
    let (cb, ticker) = breaker();
    let late = cb.try_acquire().expect("closed");
    open_and_wait(&cb, &ticker);
    let _trial = cb.try_acquire().expect("half-open");
    late.success(FAST);
    let snap = cb.snapshot();
    assert_eq!(snap.state, BreakerState::HalfOpen);
    assert_eq!(snap.buffered_calls, 0);
    assert_eq!(snap.counters.late_outcomes, 1);
}

#[test]
fn permit_released_after_a_transition_frees_no_slot() {
    let (cb, ticker) = breaker();
    open_and_wait(&cb, &ticker);
    let old = cb.try_acquire().expect("trial of the first half-open");
    cb.transition_to_open();
    ticker.advance(WAIT + NANO);
    let _t: Vec<Permit> = (0..3).map(|_| cb.try_acquire().expect("trial")).collect();
    drop(old);
    assert!(cb.try_acquire().is_err(), "only three trial calls");
}

#[test]
fn disabled_permits_all_and_records_nothing() {
    let (cb, ticker) = breaker();
    assert!(cb.transition_to_disabled());
    fail(&cb, 50);
    ticker.advance(Duration::from_secs(3600));
    let snap = cb.snapshot();
    assert_eq!(snap.state, BreakerState::Disabled);
    assert_eq!(snap.buffered_calls, 0);
    assert_eq!(snap.failure_rate, None);
}

#[test]
fn forced_open_rejects_all() {
    let (cb, ticker) = breaker();
    assert!(cb.transition_to_forced_open());
    ticker.advance(Duration::from_secs(3600));
    for _ in 0..3 {
        let err = cb.try_acquire().unwrap_err();
        assert_eq!(err.state, BreakerState::ForcedOpen);
        assert_eq!(err.retry_after, None);
    }
    assert_eq!(cb.snapshot().not_permitted_calls, 3);
}

#[test]
fn metrics_only_records_but_never_opens() {
    let (cb, _) = breaker();
    cb.transition_to_metrics_only();
    fail(&cb, 10);
    let snap = cb.snapshot();
    assert_eq!(snap.state, BreakerState::MetricsOnly);
    assert_eq!(snap.failure_rate, Some(100.0));
}

#[test]
fn reset_clears_the_window_and_closes() {
    let (cb, _) = breaker();
    fail(&cb, 5);
    assert_eq!(cb.state(), BreakerState::Open);
    cb.reset();
    let snap = cb.snapshot();
    assert_eq!(snap.state, BreakerState::Closed);
    assert_eq!(snap.buffered_calls, 0);
    assert_eq!(snap.counters.resets, 1);
    assert_eq!(snap.counters.to_closed, 1);
    assert!(cb.try_acquire().is_ok());
}

#[test]
fn reset_of_a_closed_breaker_is_not_a_transition() {
    let (cb, _) = breaker();
    fail(&cb, 2);
    cb.reset();
    let snap = cb.snapshot();
    assert_eq!(snap.buffered_calls, 0);
    assert_eq!(snap.counters.resets, 1);
    assert_eq!(snap.counters.to_closed, 0);
}

#[test]
fn operator_transition_to_the_current_state_is_a_no_op() {
    let (cb, _) = breaker();
    fail(&cb, 2);
    assert!(!cb.transition_to_closed());
    assert_eq!(cb.snapshot().buffered_calls, 2);
}

#[test]
fn transitions_are_counted() {
    let (cb, ticker) = breaker();
    open_and_wait(&cb, &ticker);
    succeed(&cb, 3);
    cb.transition_to_forced_open();
    cb.transition_to_disabled();
    let c = cb.snapshot().counters;
    assert_eq!(
        (
            c.to_open,
            c.to_half_open,
            c.to_closed,
            c.to_forced_open,
            c.to_disabled
        ),
        (1, 1, 1, 1, 1)
    );
}

#[test]
fn call_not_permitted_says_which_service_and_state() {
    let (cb, _) = breaker();
    fail(&cb, 5);
    let err = cb.try_acquire().unwrap_err();
    assert_eq!(
        err.to_string(),
        "circuit breaker of svc is open: call not permitted, retry after 5s"
    );
    assert!(!vega_core::Classify::is_retryable(&err));
}

#[test]
fn breaker_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<CircuitBreaker>();
    assert_send_sync::<Permit>();
}

#[derive(Debug, PartialEq)]
enum TestError {
    Down,
    BadInput,
    Cancelled,
}

fn classify(e: &TestError) -> ErrorDisposition {
    match e {
        TestError::Down => ErrorDisposition::RecordFailure,
        TestError::BadInput => ErrorDisposition::RecordSuccess,
        TestError::Cancelled => ErrorDisposition::Ignore,
    }
}

fn tokio_breaker() -> CircuitBreaker {
    CircuitBreaker::new("svc", settings(), Arc::new(TokioTicker::new())).expect("valid")
}

#[tokio::test(start_paused = true)]
async fn call_records_an_error_classified_as_failure() {
    let cb = tokio_breaker();
    let r: Result<(), _> = cb.call(classify, || async { Err(TestError::Down) }).await;
    assert!(matches!(r, Err(BreakerError::Call(TestError::Down))));
    assert_eq!(cb.snapshot().failed_calls, 1);
}

#[tokio::test(start_paused = true)]
async fn call_records_an_error_classified_as_success() {
    let cb = tokio_breaker();
    let _ = cb
        .call(classify, || async { Err::<(), _>(TestError::BadInput) })
        .await;
    let snap = cb.snapshot();
    assert_eq!((snap.buffered_calls, snap.failed_calls), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn call_ignores_an_error_classified_as_ignored() {
    let cb = tokio_breaker();
    let _ = cb
        .call(classify, || async { Err::<(), _>(TestError::Cancelled) })
        .await;
    assert_eq!(cb.snapshot().buffered_calls, 0);
}

#[tokio::test(start_paused = true)]
async fn call_times_the_operation_with_the_ticker() {
    let cb = tokio_breaker();
    let r = cb
        .call(classify, || async {
            tokio::time::sleep(SLOW).await;
            Ok::<_, TestError>(7)
        })
        .await;
    assert_eq!(r.ok(), Some(7));
    assert_eq!(cb.snapshot().slow_calls, 1);
}

#[tokio::test(start_paused = true)]
async fn call_is_rejected_while_open_without_running_the_operation() {
    let cb = tokio_breaker();
    for _ in 0..5 {
        let _ = cb
            .call(classify, || async { Err::<(), _>(TestError::Down) })
            .await;
    }
    let mut ran = false;
    let r = cb
        .call(classify, || {
            ran = true;
            async { Ok::<_, TestError>(()) }
        })
        .await;
    assert!(matches!(r, Err(BreakerError::NotPermitted(_))));
    assert!(!ran);
}
