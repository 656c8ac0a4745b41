//! Bulkheads: a cap on concurrent calls to one dependency.
//!
//! A [`Bulkhead`] holds `max_concurrent` permits. A caller that finds none
//! free waits up to `max_wait` for one and is then rejected with
//! [`BulkheadFull`], so a slow dependency ties up a bounded number of tasks
//! instead of all of them. Counters of calls in use, waiting and rejected
//! are kept for metrics.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};
use vega_core::{Classify, ErrorClass};

use crate::settings::{Checker, InvalidSettings, SettingError};

/// Resilience4j's default: enough parallelism for one dependency under
/// normal load, few enough that a stuck dependency cannot take every task.
pub const DEFAULT_MAX_CONCURRENT: u32 = 25;
/// Resilience4j's default of zero: a full bulkhead sheds load at once
/// instead of queuing callers behind a dependency that is already slow.
pub const DEFAULT_MAX_WAIT: Duration = Duration::ZERO;

/// Settings of one bulkhead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkheadSettings {
    pub max_concurrent: u32,
    /// How long a caller waits for a free permit; zero means not at all.
    pub max_wait: Duration,
}

impl Default for BulkheadSettings {
    fn default() -> Self {
        Self {
            max_concurrent: DEFAULT_MAX_CONCURRENT,
            max_wait: DEFAULT_MAX_WAIT,
        }
    }
}

impl BulkheadSettings {
    pub fn validate(&self) -> Result<(), Vec<SettingError>> {
        let mut c = Checker::default();
        c.at_least("max_concurrent", self.max_concurrent, 1);
        if usize::try_from(self.max_concurrent).map_or(true, |n| n > Semaphore::MAX_PERMITS) {
            c.fail("max_concurrent", "is too large");
        }
        c.finish()
    }
}

/// No permit became free within `max_wait`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bulkhead {name} is full ({max_concurrent} concurrent calls)")]
pub struct BulkheadFull {
    pub name: String,
    pub max_concurrent: u32,
}

impl Classify for BulkheadFull {
    fn class(&self) -> ErrorClass {
        ErrorClass::Unavailable
    }
}

/// One admitted call; the permit returns when this is dropped.
#[derive(Debug)]
pub struct BulkheadPermit {
    _permit: OwnedSemaphorePermit,
}

/// Caps concurrent calls; thread-safe.
#[derive(Debug)]
pub struct Bulkhead {
    name: String,
    settings: BulkheadSettings,
    semaphore: Arc<Semaphore>,
    waiting: AtomicU64,
    rejected: AtomicU64,
}

/// Counts a caller as waiting while it exists, also if its future is
/// dropped mid-wait.
struct Waiting<'a>(&'a AtomicU64);

impl<'a> Waiting<'a> {
    fn new(counter: &'a AtomicU64) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Self(counter)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Bulkhead {
    pub fn new(
        name: impl Into<String>,
        settings: BulkheadSettings,
    ) -> Result<Self, InvalidSettings> {
        settings.validate()?;
        let permits = usize::try_from(settings.max_concurrent).unwrap_or(Semaphore::MAX_PERMITS);
        Ok(Self {
            name: name.into(),
            semaphore: Arc::new(Semaphore::new(permits)),
            settings,
            waiting: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn settings(&self) -> &BulkheadSettings {
        &self.settings
    }

    fn full(&self) -> BulkheadFull {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        BulkheadFull {
            name: self.name.clone(),
            max_concurrent: self.settings.max_concurrent,
        }
    }

    /// A permit if one is free now.
    pub fn try_acquire(&self) -> Result<BulkheadPermit, BulkheadFull> {
        match Arc::clone(&self.semaphore).try_acquire_owned() {
            Ok(permit) => Ok(BulkheadPermit { _permit: permit }),
            Err(TryAcquireError::NoPermits | TryAcquireError::Closed) => Err(self.full()),
        }
    }

    /// A permit, waiting up to `max_wait` for one (tokio time).
    pub async fn acquire(&self) -> Result<BulkheadPermit, BulkheadFull> {
        if let Ok(permit) = Arc::clone(&self.semaphore).try_acquire_owned() {
            return Ok(BulkheadPermit { _permit: permit });
        }
        if self.settings.max_wait.is_zero() {
            return Err(self.full());
        }
        let waited = {
            let _waiting = Waiting::new(&self.waiting);
            tokio::time::timeout(
                self.settings.max_wait,
                Arc::clone(&self.semaphore).acquire_owned(),
            )
            .await
        };
        match waited {
            Ok(Ok(permit)) => Ok(BulkheadPermit { _permit: permit }),
            // Timed out, or the semaphore was closed (this type never closes it).
            Ok(Err(_)) | Err(_) => Err(self.full()),
        }
    }

    /// Runs `f` under a permit.
    pub async fn run<F: Future>(&self, f: F) -> Result<F::Output, BulkheadFull> {
        let _permit = self.acquire().await?;
        Ok(f.await)
    }

    /// Calls holding a permit now.
    pub fn in_use(&self) -> u32 {
        let available = u32::try_from(self.semaphore.available_permits()).unwrap_or(u32::MAX);
        self.settings.max_concurrent.saturating_sub(available)
    }

    /// Callers waiting for a permit now.
    pub fn waiting(&self) -> u64 {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Calls rejected over the bulkhead's life.
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulkhead(max_concurrent: u32, max_wait: Duration) -> Arc<Bulkhead> {
        Arc::new(
            Bulkhead::new(
                "trino",
                BulkheadSettings {
                    max_concurrent,
                    max_wait,
                },
            )
            .expect("valid"),
        )
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn validate_rejects_zero_concurrency() {
        let s = BulkheadSettings {
            max_concurrent: 0,
            ..BulkheadSettings::default()
        };
        assert_eq!(s.validate().unwrap_err()[0].field, "max_concurrent");
        assert_eq!(BulkheadSettings::default().validate(), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn admits_up_to_max_concurrent_calls() {
        let b = bulkhead(2, Duration::ZERO);
        let _p1 = b.acquire().await.expect("first");
        let _p2 = b.acquire().await.expect("second");
        assert_eq!(b.in_use(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn full_bulkhead_without_wait_rejects_at_once() {
        let b = bulkhead(1, Duration::ZERO);
        let _p = b.acquire().await.expect("first");
        let start = tokio::time::Instant::now();
        let err = b.acquire().await.unwrap_err();
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert_eq!(
            err,
            BulkheadFull {
                name: "trino".into(),
                max_concurrent: 1
            }
        );
        assert_eq!(
            err.to_string(),
            "bulkhead trino is full (1 concurrent calls)"
        );
        assert_eq!(b.rejected(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_caller_gets_a_released_permit() {
        let b = bulkhead(1, ms(500));
        let p = b.acquire().await.expect("first");
        let waiter = tokio::spawn({
            let b = Arc::clone(&b);
            async move { b.acquire().await.map(|_| ()) }
        });
        tokio::time::sleep(ms(100)).await;
        assert_eq!(b.waiting(), 1);
        drop(p);
        assert_eq!(waiter.await.expect("task"), Ok(()));
        assert_eq!((b.waiting(), b.rejected(), b.in_use()), (0, 0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_caller_is_rejected_after_max_wait() {
        let b = bulkhead(1, ms(500));
        let _p = b.acquire().await.expect("first");
        let start = tokio::time::Instant::now();
        assert!(b.acquire().await.is_err());
        assert_eq!(start.elapsed(), ms(500));
        assert_eq!((b.waiting(), b.rejected()), (0, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn cancelled_waiter_stops_counting_as_waiting() {
        let b = bulkhead(1, Duration::from_secs(10));
        let _p = b.acquire().await.expect("first");
        let waiter = tokio::spawn({
            let b = Arc::clone(&b);
            async move {
                let _ = b.acquire().await;
            }
        });
        tokio::time::sleep(ms(10)).await;
        assert_eq!(b.waiting(), 1);
        waiter.abort();
        let _ = waiter.await;
        assert_eq!(b.waiting(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn run_releases_the_permit_when_done() {
        let b = bulkhead(1, Duration::ZERO);
        assert_eq!(b.run(async { 3 }).await, Ok(3));
        assert_eq!(b.in_use(), 0);
        assert!(b.try_acquire().is_ok());
    }
}
