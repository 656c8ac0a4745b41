//! The `load_balancer` block (seed `operations-and-reliability.md` §17.2):
//! its typed form, its defaults and the documented reason for each default.
//!
//! The keys are exactly the seed's, so the seed's block is valid as
//! written. Every key has a default except `backends`, which must list at
//! least one node (checked by [`LoadBalancerConfig::validate`]).

use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};
use vega_config::HumanDuration;

/// The top-level key of the block in a YAML document.
pub const LOAD_BALANCER_KEY: &str = "load_balancer";

/// Least connections: a node busy with a long query gets fewer new requests
/// than with round robin, which matters because Vega's request times range
/// from milliseconds (health, small queries) to minutes (large scans).
pub const DEFAULT_ALGORITHM: Algorithm = Algorithm::LeastConnections;

/// Readiness, not the full report: `/health/ready` answers 503 exactly when
/// a node must not get traffic (catalog unreachable, storage not writable,
/// engine not answering, start-up unfinished, draining), while `/health`
/// also tests every connection's source (up to 2 s each), so it is slower
/// and a down source — which every node shares — says nothing about this
/// node. The seed writes `/health`; that value still works (it answers 503
/// on the same core failures), it is only not the default.
pub const DEFAULT_HEALTH_CHECK_PATH: &str = "/health/ready";

/// The seed's interval: with the default thresholds a failed node stops
/// getting traffic within about 15 s and a recovered one gets it back
/// within about 10 s, at the cost of one cheap request per node every 5 s.
pub const DEFAULT_HEALTH_CHECK_INTERVAL: HumanDuration = HumanDuration::from_secs(5);

/// The seed's timeout: a readiness check touches the catalog, the disk and
/// the engine, which take milliseconds on a healthy node; a node that needs
/// 2 s to answer is not one to send queries to.
pub const DEFAULT_HEALTH_CHECK_TIMEOUT: HumanDuration = HumanDuration::from_secs(2);

/// The seed's value: two passing checks in a row before a node gets
/// traffic again, so a node that flaps is not put back after one lucky
/// answer.
pub const DEFAULT_HEALTHY_THRESHOLD: u32 = 2;

/// The seed's value: three failing checks in a row before a node is taken
/// out, so a single slow answer (a garbage-collection pause of the catalog,
/// a busy disk) does not remove a healthy node.
pub const DEFAULT_UNHEALTHY_THRESHOLD: u32 = 3;

/// The seed's weight for each backend; the middle of the accepted range, so
/// a node can be given less or more.
pub const DEFAULT_BACKEND_WEIGHT: u32 = 100;

/// Accepted backend weights. HAProxy accepts 0 to 256; 0 would send a node
/// nothing, which is what removing it from the list says more clearly.
pub const BACKEND_WEIGHT_RANGE: RangeInclusive<u32> = 1..=256;

/// The longest accepted health-check interval: beyond it a dead node keeps
/// getting (failing) requests for far too long.
pub const MAX_HEALTH_CHECK_INTERVAL: HumanDuration = HumanDuration::from_hours(1);

/// Longest accepted `health_check.path`; a readiness URL is short.
pub const MAX_HEALTH_CHECK_PATH_LEN: usize = 1024;

/// How requests are spread over the backends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// Each backend in turn, in proportion to its weight.
    RoundRobin,
    /// The backend with the fewest open connections (relative to its
    /// weight); ties are broken in turn.
    #[default]
    LeastConnections,
    /// By a hash of the client's IP address, so one client keeps reaching
    /// the same node while the set of healthy nodes does not change.
    IpHash,
}

impl Algorithm {
    /// The name used in the configuration.
    pub fn as_str(&self) -> &'static str {
        match self {
            Algorithm::RoundRobin => "round_robin",
            Algorithm::LeastConnections => "least_connections",
            Algorithm::IpHash => "ip_hash",
        }
    }
}

/// The `load_balancer` block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoadBalancerConfig {
    /// `round_robin`, `least_connections` (default) or `ip_hash`.
    pub algorithm: Algorithm,
    /// The active health check of every backend.
    pub health_check: HealthCheckConfig,
    /// Session stickiness; must stay off (Vega nodes are stateless).
    pub sticky_session: StickySessionConfig,
    /// The Vega nodes' API addresses. At least one.
    pub backends: Vec<Backend>,
}

impl Default for LoadBalancerConfig {
    fn default() -> Self {
        LoadBalancerConfig {
            algorithm: DEFAULT_ALGORITHM,
            health_check: HealthCheckConfig::default(),
            sticky_session: StickySessionConfig::default(),
            backends: Vec::new(),
        }
    }
}

/// The active health check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthCheckConfig {
    /// URL path requested with `GET`; a backend passes with status 200.
    pub path: String,
    /// Time between two checks of one backend.
    pub interval: HumanDuration,
    /// How long a check waits for the answer; shorter than `interval`.
    pub timeout: HumanDuration,
    /// Passing checks in a row that bring a backend (back) into service.
    pub healthy_threshold: u32,
    /// Failing checks in a row that take a backend out of service.
    pub unhealthy_threshold: u32,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        HealthCheckConfig {
            path: DEFAULT_HEALTH_CHECK_PATH.to_string(),
            interval: DEFAULT_HEALTH_CHECK_INTERVAL,
            timeout: DEFAULT_HEALTH_CHECK_TIMEOUT,
            healthy_threshold: DEFAULT_HEALTHY_THRESHOLD,
            unhealthy_threshold: DEFAULT_UNHEALTHY_THRESHOLD,
        }
    }
}

/// Session stickiness. Kept for the seed's block; `enabled: true` is
/// refused by validation, because every Vega node serves every asset from
/// the shared catalog and storage, so there is no session to stick to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StickySessionConfig {
    /// Must be `false`.
    pub enabled: bool,
}

/// One Vega node behind the load balancer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backend {
    /// `host:port` of the node's API: a host name, an IPv4 address or an
    /// IPv6 address in brackets, and a port from 1 to 65535.
    pub address: String,
    /// Share of the traffic relative to the other backends, 1 to 256.
    #[serde(default = "default_backend_weight")]
    pub weight: u32,
}

impl Backend {
    /// A backend with the default weight.
    pub fn new(address: impl Into<String>) -> Self {
        Backend {
            address: address.into(),
            weight: DEFAULT_BACKEND_WEIGHT,
        }
    }
}

fn default_backend_weight() -> u32 {
    DEFAULT_BACKEND_WEIGHT
}
