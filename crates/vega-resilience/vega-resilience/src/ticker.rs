//! Monotonic time as a passed-in dependency.
//!
//! Breakers, budgets and outlier ejection measure intervals, not dates, so
//! they read a [`Ticker`]: the time elapsed since an arbitrary origin that
//! never goes backwards. [`SystemTicker`] follows the OS monotonic clock,
//! [`TokioTicker`] follows tokio's clock (so it stands still under
//! `tokio::time::pause()`), and [`ManualTicker`] moves only when a test says.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A monotonic clock: time elapsed since the ticker's origin.
pub trait Ticker: Send + Sync + fmt::Debug {
    fn now(&self) -> Duration;
}

/// The OS monotonic clock.
#[derive(Debug, Clone, Copy)]
pub struct SystemTicker {
    origin: Instant,
}

impl SystemTicker {
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

impl Default for SystemTicker {
    fn default() -> Self {
        Self::new()
    }
}

impl Ticker for SystemTicker {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// Tokio's clock; pauses and auto-advances with `tokio::time::pause()`.
///
/// Must be created and read inside a tokio runtime.
#[derive(Debug, Clone, Copy)]
pub struct TokioTicker {
    origin: tokio::time::Instant,
}

impl TokioTicker {
    pub fn new() -> Self {
        Self {
            origin: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioTicker {
    fn default() -> Self {
        Self::new()
    }
}

impl Ticker for TokioTicker {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// A ticker that only moves when told to; for tests. Starts at zero.
#[derive(Debug, Default)]
pub struct ManualTicker {
    nanos: AtomicU64,
}

impl ManualTicker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the time forward by `by` (saturating at about 584 years).
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        // fetch_update never fails when the closure always returns Some.
        let _ = self
            .nanos
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                Some(n.saturating_add(by))
            });
    }

    /// Sets the time; moving it backwards is the caller's responsibility.
    pub fn set(&self, to: Duration) {
        let to = u64::try_from(to.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.store(to, Ordering::SeqCst);
    }
}

impl Ticker for ManualTicker {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_ticker_moves_only_when_told() {
        let t = ManualTicker::new();
        assert_eq!(t.now(), Duration::ZERO);
        t.advance(Duration::from_millis(1500));
        assert_eq!(t.now(), Duration::from_millis(1500));
        t.set(Duration::from_secs(7));
        assert_eq!(t.now(), Duration::from_secs(7));
    }

    #[test]
    fn system_ticker_never_goes_backwards() {
        let t = SystemTicker::new();
        let a = t.now();
        let b = t.now();
        assert!(b >= a);
    }

    #[tokio::test(start_paused = true)]
    async fn tokio_ticker_follows_paused_time() {
        let t = TokioTicker::new();
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(t.now(), Duration::from_secs(3));
    }
}
