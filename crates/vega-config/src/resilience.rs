//! The `resilience` block: retries of single calls that leave the process
//! (to Trino, to discovered services, to sources) under a retry budget, and
//! bulkheads that bound how many such calls run at once.
//!
//! These are per call. Whole sync jobs are retried by their own settings
//! (`sync.max_attempts`, `sync.retry_initial_backoff`,
//! `sync.retry_max_backoff`), which this block does not change.

use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};

use crate::duration::HumanDuration;
use crate::keypath::{render, Key, PathBuild};
use crate::percent::Percent;
use crate::validate::Findings;

/// The first try and two retries: rides out one failed instance and a
/// brief network cut without piling load on a service that is really down.
pub const DEFAULT_RETRY_MAX_ATTEMPTS: u32 = 3;

/// Accepted `retry.max_attempts`. A single call tried more than ten times
/// holds the request waiting for it too long and multiplies the load on a
/// failing service.
pub const RETRY_MAX_ATTEMPTS_RANGE: RangeInclusive<u32> = 1..=10;

/// Upper bound of the wait before the first retry (full jitter: a random
/// time between zero and the bound). Short, because someone is usually
/// waiting for the call's answer.
pub const DEFAULT_RETRY_BASE_DELAY: HumanDuration = HumanDuration::from_millis(100);

/// The bound doubles per retry up to this; a request that has waited
/// longer between attempts of one call would time out anyway.
pub const DEFAULT_RETRY_MAX_DELAY: HumanDuration = HumanDuration::from_secs(2);

/// Retries may add at most a fifth to the calls made (the retry budget of
/// Finagle and Linkerd), so an outage cannot multiply the load on the
/// failing service.
pub const DEFAULT_RETRY_BUDGET_PERCENT: Percent = Percent::new(20.0);

/// Retries allowed every second whatever the budget (Finagle's and
/// Linkerd's value), so that a service with little traffic can still be
/// retried.
pub const DEFAULT_MIN_RETRIES_PER_SECOND: u32 = 10;

/// Four calls at once to one source connection: all of a connection's
/// sync jobs (two at once by default) plus a test or a check beside them,
/// while one slow source cannot take every worker.
pub const DEFAULT_BULKHEAD_PER_CONNECTION: usize = 4;

/// Accepted `bulkhead.per_connection`.
pub const BULKHEAD_PER_CONNECTION_RANGE: RangeInclusive<usize> = 1..=1024;

/// Resilience4j's default for a bulkhead: enough calls at once to one pool
/// (Trino's coordinators, a discovered service) for every query slot of a
/// node several times over, few enough that a stuck pool cannot hold every
/// request handler.
pub const DEFAULT_BULKHEAD_PER_POOL: usize = 25;

/// Accepted `bulkhead.per_pool`.
pub const BULKHEAD_PER_POOL_RANGE: RangeInclusive<usize> = 1..=10_000;

/// Resilience4j's default: a call that finds the bulkhead full fails at
/// once ("try again", HTTP 503) rather than queueing behind calls to a
/// service that is already slow.
pub const DEFAULT_BULKHEAD_MAX_WAIT: HumanDuration = HumanDuration::ZERO;

/// The longest accepted `bulkhead.max_wait`: a call that has waited a
/// minute for a slot is better refused.
pub const MAX_BULKHEAD_MAX_WAIT: HumanDuration = HumanDuration::from_mins(1);

/// The `resilience` block.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResilienceConfig {
    /// Retries of single calls.
    pub retry: RetryConfig,
    /// Bounds on calls at once.
    pub bulkhead: BulkheadConfig,
}

/// Retries of single calls that failed in a way worth retrying (a refused
/// connection, a timeout, a "try again" answer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts per call, the first included (1 to 10; 1 never retries).
    pub max_attempts: u32,
    /// Upper bound of the wait before the first retry; each retry waits a
    /// random time between zero and its bound (full jitter).
    pub base_delay: HumanDuration,
    /// The bound doubles per retry up to this; at least `base_delay`.
    pub max_delay: HumanDuration,
    /// Retries allowed as a percentage of calls (0 to 100), beyond
    /// `min_retries_per_second`.
    pub budget_percent: Percent,
    /// Retries allowed every second regardless of the percentage.
    pub min_retries_per_second: u32,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: DEFAULT_RETRY_MAX_ATTEMPTS,
            base_delay: DEFAULT_RETRY_BASE_DELAY,
            max_delay: DEFAULT_RETRY_MAX_DELAY,
            budget_percent: DEFAULT_RETRY_BUDGET_PERCENT,
            min_retries_per_second: DEFAULT_MIN_RETRIES_PER_SECOND,
        }
    }
}

/// Bounds on how many calls run at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BulkheadConfig {
    /// Calls at once to one source connection (1 to 1024).
    pub per_connection: usize,
    /// Calls at once to one pool: Trino's coordinators, one discovered
    /// service (1 to 10 000).
    pub per_pool: usize,
    /// How long a call waits for a free slot before it fails; `0s` fails
    /// at once. At most `1m`.
    pub max_wait: HumanDuration,
}

impl Default for BulkheadConfig {
    fn default() -> Self {
        BulkheadConfig {
            per_connection: DEFAULT_BULKHEAD_PER_CONNECTION,
            per_pool: DEFAULT_BULKHEAD_PER_POOL,
            max_wait: DEFAULT_BULKHEAD_MAX_WAIT,
        }
    }
}

impl ResilienceConfig {
    /// Adds every broken rule of the block at `at` to `f`.
    pub(crate) fn check(&self, at: &[Key], f: &mut Findings) {
        let retry_at = at.key("retry");
        let r = &self.retry;
        f.in_range_at(
            retry_at.key("max_attempts"),
            r.max_attempts,
            RETRY_MAX_ATTEMPTS_RANGE,
        );
        if r.base_delay > r.max_delay {
            f.at_related(
                retry_at.key("base_delay"),
                retry_at.key("max_delay"),
                format!(
                    "{} must not exceed {} ({})",
                    r.base_delay,
                    render(&retry_at.key("max_delay")),
                    r.max_delay
                ),
            );
        }
        let budget = r.budget_percent.value();
        if !(0.0..=100.0).contains(&budget) {
            f.at(
                retry_at.key("budget_percent"),
                format!(
                    "must be a percentage from 0 to 100, is {}",
                    r.budget_percent
                ),
            );
        }

        let bulkhead_at = at.key("bulkhead");
        let b = &self.bulkhead;
        f.in_range_at(
            bulkhead_at.key("per_connection"),
            b.per_connection,
            BULKHEAD_PER_CONNECTION_RANGE,
        );
        f.in_range_at(
            bulkhead_at.key("per_pool"),
            b.per_pool,
            BULKHEAD_PER_POOL_RANGE,
        );
        if b.max_wait > MAX_BULKHEAD_MAX_WAIT {
            f.at(
                bulkhead_at.key("max_wait"),
                format!(
                    "{} is too long: a call waiting that long for a slot is better refused (at most {MAX_BULKHEAD_MAX_WAIT})",
                    b.max_wait
                ),
            );
        }
    }
}
