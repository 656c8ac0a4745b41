//! [`register_with_backoff`]: registration at start-up, retried while the
//! backend is unavailable (it may start after Vega, or be restarting), with
//! full-jitter exponential backoff, for a bounded time.

use std::time::Duration;

use rand::Rng;
use vega_core::Classify;

use crate::{Discovery, DiscoveryError, Registration, RegistrationHandle};

/// The first backoff bound: a registry restarting is usually back within a
/// second, so the first retries come quickly.
pub const INITIAL_REGISTER_BACKOFF: Duration = Duration::from_millis(200);

/// The largest backoff bound: a node waiting for a registry that is down
/// for long still notices its return within ten seconds, while a fleet of
/// nodes does not hammer it.
pub const MAX_REGISTER_BACKOFF: Duration = Duration::from_secs(10);

/// What is about to be retried, for the caller's log and readiness.
#[derive(Debug)]
pub struct RetryAttempt<'a> {
    /// The attempt that failed, from 1.
    pub attempt: u32,
    pub error: &'a DiscoveryError,
    /// How long until the next attempt.
    pub delay: Duration,
}

/// Registers `reg`, retrying retryable errors (an unreachable or
/// overloaded backend) with full-jitter exponential backoff — each delay
/// drawn uniformly from zero to `INITIAL_REGISTER_BACKOFF * 2^n`, the bound
/// capped at [`MAX_REGISTER_BACKOFF`] — until `max_wait` has passed since
/// the first attempt; the last attempt happens at that deadline. Calls
/// `on_retry` before each wait. Returns the handle, or the first error that
/// is not retryable, or the last error when time is up.
pub async fn register_with_backoff<F>(
    discovery: &dyn Discovery,
    reg: &Registration,
    max_wait: Duration,
    mut on_retry: F,
) -> Result<RegistrationHandle, DiscoveryError>
where
    F: FnMut(&RetryAttempt<'_>) + Send,
{
    let deadline = tokio::time::Instant::now() + max_wait;
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let error = match discovery.register(reg).await {
            Ok(handle) => return Ok(handle),
            Err(error) if error.is_retryable() => error,
            Err(error) => return Err(error),
        };
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        if remaining.is_zero() {
            return Err(error);
        }
        let delay = full_jitter(attempt - 1, &mut rand::thread_rng()).min(remaining);
        on_retry(&RetryAttempt {
            attempt,
            error: &error,
            delay,
        });
        tokio::time::sleep(delay).await;
    }
}

/// A delay drawn from `[0, min(MAX, INITIAL * 2^exponent)]`.
fn full_jitter(exponent: u32, rng: &mut impl Rng) -> Duration {
    let bound = INITIAL_REGISTER_BACKOFF
        .saturating_mul(2u32.saturating_pow(exponent.min(31)))
        .min(MAX_REGISTER_BACKOFF);
    let millis = u64::try_from(bound.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rng.gen_range(0..=millis))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Instance;
    use async_trait::async_trait;
    use rand::SeedableRng;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Fails `failures` times with `error`, then registers.
    #[derive(Debug)]
    struct Flaky {
        failures: u32,
        calls: AtomicU32,
        error: DiscoveryError,
    }

    #[async_trait]
    impl Discovery for Flaky {
        fn name(&self) -> &'static str {
            "flaky"
        }

        async fn register(&self, reg: &Registration) -> Result<RegistrationHandle, DiscoveryError> {
            if self.calls.fetch_add(1, Ordering::SeqCst) < self.failures {
                return Err(self.error.clone());
            }
            Ok(RegistrationHandle::noop("flaky", &reg.instance_id))
        }

        async fn discover(&self, _: &str) -> Result<Vec<Instance>, DiscoveryError> {
            Ok(Vec::new())
        }
    }

    fn flaky(failures: u32, error: DiscoveryError) -> Flaky {
        Flaky {
            failures,
            calls: AtomicU32::new(0),
            error,
        }
    }

    fn unavailable() -> DiscoveryError {
        DiscoveryError::Unavailable {
            provider: "flaky",
            endpoint: "http://127.0.0.1:1".into(),
            message: "connection refused".into(),
        }
    }

    fn registration() -> Registration {
        Registration {
            service_name: "s".into(),
            instance_id: "i".into(),
            address: "127.0.0.1:1".into(),
            health_url: None,
            tags: vec![],
            ttl: Duration::from_secs(5),
            check_interval: Duration::from_secs(5),
        }
    }

    #[test]
    fn jitter_stays_under_a_doubling_capped_bound() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for exponent in 0..40 {
            let bound = INITIAL_REGISTER_BACKOFF
                .saturating_mul(2u32.saturating_pow(exponent.min(31)))
                .min(MAX_REGISTER_BACKOFF);
            for _ in 0..50 {
                assert!(full_jitter(exponent, &mut rng) <= bound);
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn unavailable_backends_are_retried_until_they_answer() {
        let discovery = flaky(3, unavailable());
        let mut retries = Vec::new();
        let handle =
            register_with_backoff(&discovery, &registration(), Duration::from_secs(60), |r| {
                retries.push(r.attempt)
            })
            .await
            .unwrap();
        assert_eq!(handle.instance_id(), "i");
        assert_eq!(retries, [1, 2, 3]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_last_error_is_returned_when_time_is_up() {
        let discovery = flaky(u32::MAX, unavailable());
        let start = tokio::time::Instant::now();
        let mut delays = Vec::new();
        let err =
            register_with_backoff(&discovery, &registration(), Duration::from_secs(30), |r| {
                delays.push(r.delay)
            })
            .await
            .unwrap_err();
        assert_eq!(err, unavailable());
        assert_eq!(start.elapsed(), Duration::from_secs(30));
        assert!(delays.iter().all(|d| *d <= MAX_REGISTER_BACKOFF));
        assert!(discovery.calls.load(Ordering::SeqCst) >= 4);
    }

    #[tokio::test(start_paused = true)]
    async fn errors_that_cannot_heal_are_returned_at_once() {
        let denied = DiscoveryError::Unauthenticated {
            provider: "flaky",
            message: "ACL not found".into(),
        };
        let discovery = flaky(u32::MAX, denied.clone());
        let err =
            register_with_backoff(&discovery, &registration(), Duration::from_secs(30), |_| {
                panic!("must not retry")
            })
            .await
            .unwrap_err();
        assert_eq!(err, denied);
        assert_eq!(discovery.calls.load(Ordering::SeqCst), 1);
    }
}
