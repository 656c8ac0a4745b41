//! Runtime rate limits of the API: a global token bucket and one bucket
//! per API key, set with `PUT /api/v1/rate-limit` and stored in the
//! catalog setting [`SETTING`]. The node that takes the change applies it
//! at once; every other node reads it on its next catalog look (one
//! heartbeat). Limits are enforced by each node on its own traffic.
//!
//! A refused request gets 429 with `Retry-After` (whole seconds until a
//! token is free). Health, metrics and the rate-limit endpoint itself are
//! never limited, so an operator can always undo a limit that is too low.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The catalog setting holding the limits.
pub const SETTING: &str = "rate_limit";

/// The largest rate or burst accepted.
pub const MAX_RATE: f64 = 1_000_000.0;

/// Limits of one bucket.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BucketLimit {
    /// Requests per second, refilled continuously (greater than 0, at most 1000000).
    pub qps: f64,
    /// Requests allowed at once after a quiet spell (1 to 1000000;
    /// default: qps rounded up).
    #[serde(default)]
    pub burst: Option<u32>,
}

impl BucketLimit {
    fn burst(&self) -> f64 {
        self.burst
            .map(f64::from)
            .unwrap_or_else(|| self.qps.ceil().max(1.0))
    }
}

/// The API's rate limits. Absent or `null` means no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimits {
    /// Requests per second over all callers of this node.
    #[serde(default)]
    pub qps: Option<f64>,
    /// Burst of the global bucket (needs `qps`).
    #[serde(default)]
    pub burst: Option<u32>,
    /// A bucket per API key (development mode: one for all anonymous calls).
    #[serde(default)]
    pub per_key: Option<BucketLimit>,
}

impl RateLimits {
    /// Every value out of range, as `(field, message)`.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let rate = |field: &'static str, qps: f64, out: &mut Vec<(&'static str, String)>| {
            if !(qps > 0.0 && qps <= MAX_RATE) {
                out.push((
                    field,
                    format!("must be greater than 0 and at most {MAX_RATE}, not {qps}"),
                ));
            }
        };
        let burst = |field: &'static str, b: u32, out: &mut Vec<(&'static str, String)>| {
            if b == 0 || f64::from(b) > MAX_RATE {
                out.push((field, format!("must be between 1 and {MAX_RATE}, not {b}")));
            }
        };
        if let Some(qps) = self.qps {
            rate("qps", qps, &mut out);
        }
        match (self.qps, self.burst) {
            (None, Some(_)) => out.push(("burst", "needs qps (the global rate)".to_string())),
            (_, Some(b)) => burst("burst", b, &mut out),
            _ => {}
        }
        if let Some(k) = &self.per_key {
            rate("per_key.qps", k.qps, &mut out);
            if let Some(b) = k.burst {
                burst("per_key.burst", b, &mut out);
            }
        }
        out
    }

    fn global(&self) -> Option<BucketLimit> {
        self.qps.map(|qps| BucketLimit {
            qps,
            burst: self.burst,
        })
    }
}

/// A token bucket.
#[derive(Debug, Clone)]
struct Bucket {
    tokens: f64,
    last: Instant,
    rate: f64,
    burst: f64,
}

impl Bucket {
    fn new(limit: BucketLimit, now: Instant) -> Self {
        Self {
            tokens: limit.burst(),
            last: now,
            rate: limit.qps,
            burst: limit.burst(),
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
    }

    /// How long until one token is free (zero: one is free now).
    fn wait(&self) -> Duration {
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / self.rate)
        }
    }

    fn is_full(&self) -> bool {
        self.tokens >= self.burst
    }
}

/// Which limit refused a request, and for how long.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limited {
    /// `global` or `per_key`.
    pub limit: &'static str,
    pub retry_after: Duration,
}

impl Limited {
    /// `Retry-After` in whole seconds, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_secs_f64().ceil().max(1.0) as u64
    }
}

#[derive(Default)]
struct State {
    limits: RateLimits,
    /// When the limits in force were set (a read from a lagging catalog
    /// replica must not bring back older ones).
    updated_at: Option<chrono::DateTime<chrono::Utc>>,
    global: Option<Bucket>,
    keys: HashMap<String, Bucket>,
}

/// The node's buckets.
#[derive(Default)]
pub struct RateLimiter {
    state: Mutex<State>,
}

/// Per-key buckets kept before idle (full) ones are dropped.
const MAX_KEY_BUCKETS: usize = 10_000;

impl RateLimiter {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn limits(&self) -> RateLimits {
        self.lock().limits
    }

    /// Applies new limits; buckets whose limits changed start full.
    /// Returns whether anything changed.
    pub fn set(&self, limits: RateLimits, now: Instant) -> bool {
        let mut state = self.lock();
        if state.limits == limits {
            return false;
        }
        if state.limits.global() != limits.global() {
            state.global = limits.global().map(|l| Bucket::new(l, now));
        }
        if state.limits.per_key != limits.per_key {
            state.keys.clear();
        }
        state.limits = limits;
        true
    }

    /// Applies the catalog setting's value (as stored by the API). A value
    /// that does not parse or is out of range is ignored with a warning: it
    /// can only come from outside the API, and keeping the limits in force
    /// is safer than dropping them.
    pub fn apply_setting(&self, value: Option<&serde_json::Value>, now: Instant) {
        let limits = match value {
            None => RateLimits::default(),
            Some(v) => match serde_json::from_value::<StoredLimits>(v.clone()) {
                Ok(stored) if stored.limits.problems().is_empty() => {
                    let mut state = self.lock();
                    if state.updated_at.is_some_and(|at| stored.updated_at < at) {
                        return;
                    }
                    state.updated_at = Some(stored.updated_at);
                    stored.limits
                }
                Ok(_) | Err(_) => {
                    tracing::warn!(setting = SETTING, "ignoring an invalid stored rate limit");
                    return;
                }
            },
        };
        if self.set(limits, now) {
            tracing::info!(
                qps = ?limits.qps,
                burst = ?limits.burst,
                per_key_qps = ?limits.per_key.map(|k| k.qps),
                "rate limits changed"
            );
        }
    }

    /// Takes one token from the caller's bucket and the global one, or
    /// says which refused (and takes none).
    pub fn check(&self, key: &str, now: Instant) -> Result<(), Limited> {
        let mut state = self.lock();
        let per_key = state.limits.per_key;
        let State { global, keys, .. } = &mut *state;
        if let Some(limit) = per_key {
            if keys.len() >= MAX_KEY_BUCKETS && !keys.contains_key(key) {
                keys.retain(|_, b| {
                    b.refill(now);
                    !b.is_full()
                });
            }
            let bucket = keys
                .entry(key.to_string())
                .or_insert_with(|| Bucket::new(limit, now));
            bucket.refill(now);
            let wait = bucket.wait();
            if !wait.is_zero() {
                return Err(Limited {
                    limit: "per_key",
                    retry_after: wait,
                });
            }
        }
        if let Some(bucket) = global.as_mut() {
            bucket.refill(now);
            let wait = bucket.wait();
            if !wait.is_zero() {
                return Err(Limited {
                    limit: "global",
                    retry_after: wait,
                });
            }
            bucket.tokens -= 1.0;
        }
        if per_key.is_some() {
            if let Some(bucket) = keys.get_mut(key) {
                bucket.tokens -= 1.0;
            }
        }
        Ok(())
    }
}

/// Middleware of the authenticated API routes (it runs after
/// authentication, so it knows the caller's key).
pub async fn limit_requests(
    axum::extract::State(state): axum::extract::State<crate::state::AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Result<axum::response::Response, crate::error::ApiError> {
    if request.uri().path() == "/api/v1/rate-limit" {
        return Ok(next.run(request).await);
    }
    let principal = request
        .extensions()
        .get::<crate::auth::Principal>()
        .cloned();
    let (key, class) = match &principal {
        Some(p) => (
            p.key_id
                .as_ref()
                .map(|id| id.to_string())
                .unwrap_or_else(|| "anonymous".into()),
            if p.key_id.is_some() {
                p.role.as_str()
            } else {
                "anonymous"
            },
        ),
        None => ("anonymous".to_string(), "anonymous"),
    };
    if let Err(limited) = state.rate_limiter.check(&key, Instant::now()) {
        state
            .metrics
            .rate_limited
            .get_or_create(&crate::metrics::RateLimitedLabels {
                limit: limited.limit.into(),
                key_class: class.into(),
            })
            .inc();
        let which = if limited.limit == "global" {
            "this node's request rate limit"
        } else {
            "the request rate limit of this API key"
        };
        return Err(crate::error::ApiError::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "{which} is reached; retry in {} s",
                limited.retry_after_secs()
            ),
        )
        .with_details(serde_json::json!({ "limit": limited.limit }))
        .with_retry_after(limited.retry_after_secs()));
    }
    Ok(next.run(request).await)
}

/// The stored form of the setting: the limits and when they were set.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredLimits {
    #[serde(flatten)]
    pub limits: RateLimits,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(qps: Option<f64>, burst: Option<u32>, per_key: Option<(f64, u32)>) -> RateLimits {
        RateLimits {
            qps,
            burst,
            per_key: per_key.map(|(qps, b)| BucketLimit {
                qps,
                burst: Some(b),
            }),
        }
    }

    #[test]
    fn no_limits_admit_everything() {
        let l = RateLimiter::default();
        let now = Instant::now();
        for _ in 0..10_000 {
            l.check("k", now).unwrap();
        }
    }

    #[test]
    fn the_global_bucket_admits_its_burst_then_refills_at_its_rate() {
        let l = RateLimiter::default();
        let t0 = Instant::now();
        l.set(limits(Some(2.0), Some(3), None), t0);
        for _ in 0..3 {
            l.check("a", t0).unwrap();
        }
        let refused = l.check("b", t0).unwrap_err();
        assert_eq!(refused.limit, "global");
        assert!((refused.retry_after.as_secs_f64() - 0.5).abs() < 1e-6);
        assert_eq!(refused.retry_after_secs(), 1);
        // Half a second later one token is back, and only one.
        let t1 = t0 + Duration::from_millis(500);
        l.check("a", t1).unwrap();
        assert!(l.check("a", t1).is_err());
    }

    #[test]
    fn each_key_has_its_own_bucket_under_the_global_one() {
        let l = RateLimiter::default();
        let t0 = Instant::now();
        l.set(limits(Some(100.0), Some(100), Some((1.0, 2))), t0);
        l.check("a", t0).unwrap();
        l.check("a", t0).unwrap();
        let refused = l.check("a", t0).unwrap_err();
        assert_eq!(refused.limit, "per_key");
        // Another key is not held back by a's bucket.
        l.check("b", t0).unwrap();
        // A key refused by its own bucket took nothing from the global one.
        let l = RateLimiter::default();
        l.set(limits(Some(1.0), Some(3), Some((1.0, 1))), t0);
        l.check("a", t0).unwrap();
        for _ in 0..5 {
            assert_eq!(l.check("a", t0).unwrap_err().limit, "per_key");
        }
        l.check("b", t0).unwrap();
        l.check("c", t0).unwrap();
        assert_eq!(l.check("d", t0).unwrap_err().limit, "global");
    }

    #[test]
    fn new_limits_apply_at_once_and_removing_them_lifts_them() {
        let l = RateLimiter::default();
        let t0 = Instant::now();
        l.set(limits(Some(1.0), Some(1), None), t0);
        l.check("a", t0).unwrap();
        assert!(l.check("a", t0).is_err());
        // A higher limit starts with a full bucket.
        assert!(l.set(limits(Some(10.0), Some(10), None), t0));
        for _ in 0..10 {
            l.check("a", t0).unwrap();
        }
        assert!(!l.set(limits(Some(10.0), Some(10), None), t0));
        l.set(RateLimits::default(), t0);
        for _ in 0..100 {
            l.check("a", t0).unwrap();
        }
    }

    #[test]
    fn stored_settings_apply_and_invalid_ones_are_ignored() {
        let l = RateLimiter::default();
        let t0 = Instant::now();
        let stored =
            serde_json::json!({"qps": 1.0, "burst": 1, "updated_at": "2026-01-01T00:00:00Z"});
        l.apply_setting(Some(&stored), t0);
        assert_eq!(l.limits().qps, Some(1.0));
        l.apply_setting(
            Some(&serde_json::json!({"qps": -1.0, "updated_at": "2026-01-01T00:00:00Z"})),
            t0,
        );
        assert_eq!(l.limits().qps, Some(1.0));
        // An older value (a lagging replica) does not bring old limits back.
        l.apply_setting(
            Some(&serde_json::json!({"qps": 9.0, "updated_at": "2025-01-01T00:00:00Z"})),
            t0,
        );
        assert_eq!(l.limits().qps, Some(1.0));
        l.apply_setting(None, t0);
        assert_eq!(l.limits(), RateLimits::default());
    }

    #[test]
    fn out_of_range_values_are_named() {
        let fields = |l: RateLimits| l.problems().into_iter().map(|p| p.0).collect::<Vec<_>>();
        assert!(fields(limits(Some(5.0), Some(10), Some((1.0, 1)))).is_empty());
        assert_eq!(fields(limits(Some(0.0), None, None)), vec!["qps"]);
        assert_eq!(fields(limits(Some(f64::NAN), None, None)), vec!["qps"]);
        assert_eq!(
            fields(limits(Some(2e6), Some(0), None)),
            vec!["qps", "burst"]
        );
        assert_eq!(fields(limits(None, Some(5), None)), vec!["burst"]);
        assert_eq!(
            fields(limits(None, None, Some((-1.0, 0)))),
            vec!["per_key.qps", "per_key.burst"]
        );
    }
}
