//! Backoff, budget and timeout tests; tokio time is paused, nothing sleeps.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::ticker::{ManualTicker, TokioTicker};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn policy(max_attempts: u32) -> RetryPolicy {
    RetryPolicy::seeded(
        RetrySettings {
            max_attempts,
            base_delay: ms(100),
            max_delay: ms(1000),
        },
        7,
    )
    .expect("valid")
}

#[derive(Debug, PartialEq)]
enum TestError {
    Transient,
    Permanent,
}

fn transient(e: &TestError) -> bool {
    *e == TestError::Transient
}

/// An operation that fails with `error` `failures` times, then succeeds.
fn flaky(
    failures: u32,
    error: fn() -> TestError,
    calls: &AtomicU32,
) -> impl FnMut(u32) -> std::future::Ready<Result<u32, TestError>> + '_ {
    move |attempt| {
        calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(if attempt <= failures {
            Err(error())
        } else {
            Ok(attempt)
        })
    }
}

#[test]
fn default_settings_validate() {
    assert_eq!(RetrySettings::default().validate(), Ok(()));
    assert_eq!(RetryBudgetSettings::default().validate(), Ok(()));
    assert_eq!(Timeouts::default().validate(), Ok(()));
}

#[test]
fn retry_settings_report_every_bad_field() {
    let s = RetrySettings {
        max_attempts: 0,
        base_delay: Duration::ZERO,
        max_delay: Duration::ZERO,
    };
    let fields: Vec<String> = s
        .validate()
        .unwrap_err()
        .into_iter()
        .map(|e| e.field)
        .collect();
    assert_eq!(fields, ["max_attempts", "base_delay"]);
    let s = RetrySettings {
        max_delay: ms(10),
        ..RetrySettings::default()
    };
    assert_eq!(s.validate().unwrap_err()[0].field, "max_delay");
}

#[test]
fn backoff_ceiling_doubles_up_to_max_delay() {
    let p = policy(10);
    let ceilings: Vec<Duration> = (0..6).map(|r| p.ceiling(r)).collect();
    assert_eq!(
        ceilings,
        [ms(100), ms(200), ms(400), ms(800), ms(1000), ms(1000)]
    );
    assert_eq!(p.ceiling(200), ms(1000), "no overflow on huge retry counts");
}

#[test]
fn full_jitter_delay_stays_within_zero_and_ceiling() {
    let p = policy(10);
    let delays: Vec<Duration> = (0..1000).map(|_| p.delay(2)).collect();
    assert!(delays.iter().all(|d| *d <= ms(400)));
    let below_half = delays.iter().filter(|d| **d < ms(200)).count();
    assert!((350..650).contains(&below_half), "uniform: {below_half}");
}

#[test]
fn same_seed_gives_same_delays() {
    let a: Vec<Duration> = (0..5).map(|r| policy(10).delay(r)).collect();
    let b: Vec<Duration> = (0..5).map(|r| policy(10).delay(r)).collect();
    assert_eq!(a, b);
}

#[tokio::test(start_paused = true)]
async fn retries_a_transient_error_until_success() {
    let calls = AtomicU32::new(0);
    let r = retry(
        &policy(3),
        None,
        Idempotency::Idempotent,
        transient,
        flaky(2, || TestError::Transient, &calls),
    )
    .await;
    assert_eq!(r.ok(), Some(3));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn gives_up_after_max_attempts() {
    let calls = AtomicU32::new(0);
    let err = retry(
        &policy(3),
        None,
        Idempotency::Idempotent,
        transient,
        flaky(10, || TestError::Transient, &calls),
    )
    .await
    .unwrap_err();
    assert_eq!((err.attempts, err.reason), (3, GiveUp::AttemptsExhausted));
    assert_eq!(err.error, TestError::Transient);
    assert_eq!(
        err.to_string(),
        "gave up after 3 attempt(s): attempts exhausted"
    );
}

#[tokio::test(start_paused = true)]
async fn does_not_retry_a_non_retryable_error() {
    let calls = AtomicU32::new(0);
    let err = retry(
        &policy(3),
        None,
        Idempotency::Idempotent,
        transient,
        flaky(10, || TestError::Permanent, &calls),
    )
    .await
    .unwrap_err();
    assert_eq!((err.attempts, err.reason), (1, GiveUp::NotRetryable));
}

#[tokio::test(start_paused = true)]
async fn does_not_retry_a_non_idempotent_operation() {
    let calls = AtomicU32::new(0);
    let err = retry(
        &policy(3),
        None,
        Idempotency::NotIdempotent,
        transient,
        flaky(10, || TestError::Transient, &calls),
    )
    .await
    .unwrap_err();
    assert_eq!((err.attempts, err.reason), (1, GiveUp::NotIdempotent));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn sleeps_the_jittered_delay_between_attempts() {
    let expected: Duration = {
        let p = policy(4);
        (0..3).map(|r| p.delay(r)).sum()
    };
    let calls = AtomicU32::new(0);
    let start = tokio::time::Instant::now();
    let _ = retry(
        &policy(4),
        None,
        Idempotency::Idempotent,
        transient,
        flaky(10, || TestError::Transient, &calls),
    )
    .await;
    // Tokio's timer rounds each sleep up to the next millisecond.
    let elapsed = start.elapsed();
    assert!(
        elapsed >= expected && elapsed <= expected + ms(3),
        "{elapsed:?} vs {expected:?}"
    );
}

fn budget(percent: f64, min_per_second: u32) -> (RetryBudget, Arc<ManualTicker>) {
    let ticker = Arc::new(ManualTicker::new());
    let b = RetryBudget::new(
        RetryBudgetSettings {
            ttl: Duration::from_secs(10),
            budget_percent: percent,
            min_retries_per_second: min_per_second,
        },
        ticker.clone(),
    )
    .expect("valid");
    (b, ticker)
}

#[test]
fn budget_floor_allows_min_retries_per_second_over_the_ttl() {
    let (b, _) = budget(0.0, 1);
    assert_eq!(b.balance(), 10);
    let granted = (0..20).filter(|_| b.try_withdraw()).count();
    assert_eq!(granted, 10);
}

#[test]
fn budget_allows_a_percent_of_recent_requests() {
    let (b, _) = budget(20.0, 0);
    assert!(!b.try_withdraw(), "no requests, no retries");
    for _ in 0..50 {
        b.record_request();
    }
    assert_eq!(b.balance(), 10);
    let granted = (0..20).filter(|_| b.try_withdraw()).count();
    assert_eq!(granted, 10);
}

#[test]
fn budget_forgets_requests_and_retries_older_than_the_ttl() {
    let (b, ticker) = budget(20.0, 0);
    for _ in 0..50 {
        b.record_request();
    }
    assert!(b.try_withdraw());
    ticker.advance(Duration::from_secs(5));
    assert_eq!(b.balance(), 9, "still within the ttl");
    ticker.advance(Duration::from_secs(6));
    assert_eq!(b.balance(), 0, "the requests expired");
}

#[test]
fn budget_rejects_a_percent_out_of_range() {
    let s = RetryBudgetSettings {
        budget_percent: 120.0,
        ..RetryBudgetSettings::default()
    };
    assert_eq!(s.validate().unwrap_err()[0].field, "budget_percent");
}

#[tokio::test(start_paused = true)]
async fn retry_stops_when_the_budget_is_spent() {
    let b = RetryBudget::new(
        RetryBudgetSettings {
            ttl: Duration::from_secs(10),
            budget_percent: 100.0,
            min_retries_per_second: 0,
        },
        Arc::new(TokioTicker::new()),
    )
    .expect("valid");
    let calls = AtomicU32::new(0);
    // One request deposits one retry at 100%: the second retry is refused.
    let err = retry(
        &policy(5),
        Some(&b),
        Idempotency::Idempotent,
        transient,
        flaky(10, || TestError::Transient, &calls),
    )
    .await
    .unwrap_err();
    assert_eq!((err.attempts, err.reason), (2, GiveUp::BudgetExhausted));
}

#[tokio::test(start_paused = true)]
async fn with_timeout_names_the_timeout_that_fired() {
    let t = Timeouts {
        connect: ms(10),
        ..Timeouts::default()
    };
    let err = t
        .run(TimeoutKind::Connect, tokio::time::sleep(ms(20)))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        TimeoutError {
            kind: TimeoutKind::Connect,
            limit: ms(10)
        }
    );
    assert_eq!(err.to_string(), "connect timeout of 10ms elapsed");
}

#[tokio::test(start_paused = true)]
async fn with_timeout_returns_the_output_in_time() {
    let r = with_timeout(TimeoutKind::Request, ms(50), async {
        tokio::time::sleep(ms(10)).await;
        5
    })
    .await;
    assert_eq!(r, Ok(5));
}

#[test]
fn timeouts_reject_a_request_limit_above_overall() {
    let t = Timeouts {
        request: Duration::from_secs(90),
        ..Timeouts::default()
    };
    assert_eq!(t.validate().unwrap_err()[0].field, "request");
}
