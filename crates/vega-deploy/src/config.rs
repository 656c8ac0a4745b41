//! The `load_balancer` block (seed `operations-and-reliability.md` §17.2).
//!
//! The block is part of the Vega configuration, so its types, defaults and
//! rules live in `vega-config` ([`vega_config::balance`]) and are checked
//! with the rest of a configuration; they are re-exported here under the
//! names this crate has always used.

pub use vega_config::balance::{
    Algorithm, Backend, HealthCheckConfig, LoadBalancerConfig, StickySessionConfig,
    BACKEND_WEIGHT_RANGE, DEFAULT_ALGORITHM, DEFAULT_BACKEND_WEIGHT, DEFAULT_HEALTHY_THRESHOLD,
    DEFAULT_HEALTH_CHECK_INTERVAL, DEFAULT_HEALTH_CHECK_PATH, DEFAULT_HEALTH_CHECK_TIMEOUT,
    DEFAULT_UNHEALTHY_THRESHOLD, LOAD_BALANCER_KEY, MAX_HEALTH_CHECK_INTERVAL,
    MAX_HEALTH_CHECK_PATH_LEN,
};
