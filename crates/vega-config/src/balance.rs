//! The `load_balancer` block (seed `operations-and-reliability.md` §17.2):
//! the load balancer in front of Vega nodes. Its typed form, its defaults
//! with the documented reason for each, and its rules.
//!
//! The keys are exactly the seed's, so the seed's block is valid as
//! written. Every key has a default except `backends`, which must list at
//! least one node. The block is a top-level key of the Vega configuration
//! (`Config::load_balancer`), checked with the rest of it; `vega lb
//! render` (crate `vega-deploy`) reads the same block on its own and
//! checks it with [`LoadBalancerConfig::validate`].

use std::collections::HashMap;
use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};

use crate::duration::HumanDuration;
use crate::error::KeyProblem;
use crate::keypath::{dotted, render, Key, PathBuild};
use crate::net::parse_address;
use crate::validate::Findings;

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

/// How requests are spread over the members of a pool: the backends of
/// the load balancer, and also the instances of a discovered service
/// (`service_discovery.discovery.services[N].load_balance`) and Trino's
/// coordinators (`query.trino.load_balance`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// Each member in turn, in proportion to its weight.
    RoundRobin,
    /// The member with the fewest open connections (relative to its
    /// weight); ties are broken in turn.
    #[default]
    LeastConnections,
    /// By a hash of the client's IP address, so one client keeps reaching
    /// the same member while the set of healthy members does not change.
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

/// The active health check of a pool's members.
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

/// Characters allowed in `health_check.path` besides letters and digits:
/// RFC 3986 path and query characters, minus those HAProxy's configuration
/// syntax gives a meaning (`#` comment, quotes, `\`, `$` variables).
const PATH_PUNCTUATION: &str = "-._~!&()*+,;=:@/?%";

pub(crate) fn path_problem(path: &str) -> Option<String> {
    let example = "an absolute path such as /health/ready";
    if path.is_empty() {
        return Some(format!("must not be empty; write {example}"));
    }
    if !path.starts_with('/') {
        return Some(format!("\"{path}\" must start with '/'; write {example}"));
    }
    if path.len() > MAX_HEALTH_CHECK_PATH_LEN {
        return Some(format!(
            "must be at most {MAX_HEALTH_CHECK_PATH_LEN} characters long"
        ));
    }
    if let Some(bad) = path
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || PATH_PUNCTUATION.contains(*c)))
    {
        return Some(format!(
            "\"{}\" contains {bad:?}; only letters, digits and {PATH_PUNCTUATION} are allowed \
             (percent-encode anything else)",
            path.escape_debug()
        ));
    }
    None
}

impl LoadBalancerConfig {
    /// Every broken rule, in a fixed order, with key paths under
    /// `load_balancer.`. Empty when the block is valid.
    pub fn validate(&self) -> Vec<KeyProblem> {
        let mut findings = Findings::default();
        self.check(&dotted(LOAD_BALANCER_KEY), &mut findings);
        findings.into_key_problems()
    }

    /// Adds every broken rule of the block at `at` to `f`.
    pub(crate) fn check(&self, at: &[Key], f: &mut Findings) {
        self.health_check.check(&at.key("health_check"), f);

        if self.sticky_session.enabled {
            f.at(
                at.key("sticky_session").key("enabled"),
                "must be false: Vega nodes are stateless (every node serves every asset from the \
                 shared catalog and storage), so there is no session to stick to, and stickiness \
                 would only keep clients on an overloaded or draining node",
            );
        }

        if self.backends.is_empty() {
            f.at(
                at.key("backends"),
                "must list at least one backend, e.g. `- address: 10.0.0.5:50013`",
            );
        }
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (index, backend) in self.backends.iter().enumerate() {
            let here = at.key("backends").index(index);
            match parse_address(&backend.address) {
                Ok(address) => {
                    // Compare the normalized form, so `127.0.0.1:01` and
                    // `127.0.0.1:1` are the same backend.
                    let key = address.to_string().to_ascii_lowercase();
                    if let Some(first) = seen.get(&key) {
                        f.at(
                            here.key("address"),
                            format!(
                                "{} is already backends[{first}]; list each node once (use weight to give it more traffic)",
                                backend.address
                            ),
                        );
                    } else {
                        seen.insert(key, index);
                    }
                }
                Err(message) => f.at(here.key("address"), message),
            }
            if !BACKEND_WEIGHT_RANGE.contains(&backend.weight) {
                f.at(
                    here.key("weight"),
                    format!(
                        "must be {}..={}, is {}",
                        BACKEND_WEIGHT_RANGE.start(),
                        BACKEND_WEIGHT_RANGE.end(),
                        backend.weight
                    ),
                );
            }
        }
    }
}

impl HealthCheckConfig {
    /// Adds every broken rule of a health check at `at` to `f`. Shared by
    /// every pool with an active check (the load balancer's backends,
    /// Trino's coordinators).
    pub(crate) fn check(&self, at: &[Key], f: &mut Findings) {
        if let Some(message) = path_problem(&self.path) {
            f.at(at.key("path"), message);
        }
        if self.interval.is_zero() {
            f.at(
                at.key("interval"),
                "must be greater than zero (the backends would be checked without pause)",
            );
        } else if self.interval > MAX_HEALTH_CHECK_INTERVAL {
            f.at(
                at.key("interval"),
                format!(
                    "{} is longer than {MAX_HEALTH_CHECK_INTERVAL}; a failed node would keep getting requests for that long",
                    self.interval
                ),
            );
        }
        if self.timeout.is_zero() {
            f.at(
                at.key("timeout"),
                "must be greater than zero (every check would fail)",
            );
        } else if !self.interval.is_zero() && self.timeout >= self.interval {
            f.at_related(
                at.key("timeout"),
                at.key("interval"),
                format!(
                    "{} must be shorter than {} ({}), so that a check ends before the next one is due",
                    self.timeout,
                    render(&at.key("interval")),
                    self.interval
                ),
            );
        }
        f.at_least_one_at(
            at.key("healthy_threshold"),
            u64::from(self.healthy_threshold),
        );
        f.at_least_one_at(
            at.key("unhealthy_threshold"),
            u64::from(self.unhealthy_threshold),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> LoadBalancerConfig {
        LoadBalancerConfig {
            backends: vec![Backend::new("127.0.0.1:50113")],
            ..LoadBalancerConfig::default()
        }
    }

    fn messages(config: &LoadBalancerConfig) -> Vec<String> {
        config
            .validate()
            .iter()
            .map(KeyProblem::to_string)
            .collect()
    }

    fn problem_at(config: &LoadBalancerConfig, path: &str) -> String {
        let problems = config.validate();
        problems
            .iter()
            .find(|p| p.path == path)
            .unwrap_or_else(|| panic!("no problem at {path}; got {problems:?}"))
            .message
            .clone()
    }

    #[test]
    fn defaults_with_one_backend_are_valid() {
        assert_eq!(messages(&valid()), Vec::<String>::new());
    }

    #[test]
    fn no_backends_is_reported() {
        let config = LoadBalancerConfig::default();
        assert!(problem_at(&config, "load_balancer.backends").contains("at least one backend"));
    }

    #[test]
    fn weight_out_of_range_names_the_backend() {
        let mut config = valid();
        config.backends.push(Backend {
            address: "127.0.0.1:50213".into(),
            weight: 0,
        });
        config.backends.push(Backend {
            address: "127.0.0.1:50313".into(),
            weight: 257,
        });
        assert_eq!(
            messages(&config),
            vec![
                "load_balancer.backends[1].weight: must be 1..=256, is 0",
                "load_balancer.backends[2].weight: must be 1..=256, is 257",
            ]
        );
    }

    #[test]
    fn timeout_must_be_shorter_than_interval() {
        let mut config = valid();
        config.health_check.interval = HumanDuration::from_secs(2);
        config.health_check.timeout = HumanDuration::from_secs(2);
        assert_eq!(
            problem_at(&config, "load_balancer.health_check.timeout"),
            "2s must be shorter than load_balancer.health_check.interval (2s), so that a check ends before the next one is due"
        );
    }

    #[test]
    fn zero_durations_are_reported_once_each() {
        let mut config = valid();
        config.health_check.interval = HumanDuration::ZERO;
        config.health_check.timeout = HumanDuration::ZERO;
        let problems = config.validate();
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "load_balancer.health_check.interval",
                "load_balancer.health_check.timeout"
            ]
        );
    }

    #[test]
    fn very_long_interval_is_refused() {
        let mut config = valid();
        config.health_check.interval = HumanDuration::from_hours(2);
        assert!(problem_at(&config, "load_balancer.health_check.interval").contains("2h"));
    }

    #[test]
    fn thresholds_must_be_at_least_one() {
        let mut config = valid();
        config.health_check.healthy_threshold = 0;
        config.health_check.unhealthy_threshold = 0;
        assert_eq!(
            messages(&config),
            vec![
                "load_balancer.health_check.healthy_threshold: must be at least 1, is 0",
                "load_balancer.health_check.unhealthy_threshold: must be at least 1, is 0",
            ]
        );
    }

    #[test]
    fn sticky_sessions_are_refused_because_nodes_are_stateless() {
        let mut config = valid();
        config.sticky_session.enabled = true;
        assert!(problem_at(&config, "load_balancer.sticky_session.enabled").contains("stateless"));
    }

    #[test]
    fn health_check_path_must_be_absolute_and_safe_for_haproxy() {
        for (path, expect) in [
            ("", "must not be empty"),
            ("health", "must start with '/'"),
            ("/health ready", "contains ' '"),
            ("/health#x", "contains '#'"),
            ("/h\"x", "contains '\"'"),
            ("/h'x", "contains '\\''"),
            ("/h$x", "contains '$'"),
            ("/hé", "contains 'é'"),
        ] {
            let mut config = valid();
            config.health_check.path = path.into();
            let message = problem_at(&config, "load_balancer.health_check.path");
            assert!(message.contains(expect), "{path:?}: {message}");
        }
        let mut config = valid();
        config.health_check.path = "/health/ready?probe=lb&x=%20".into();
        assert_eq!(messages(&config), Vec::<String>::new());
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut config = LoadBalancerConfig::default();
        config.health_check.path = "x".into();
        config.health_check.unhealthy_threshold = 0;
        config.sticky_session.enabled = true;
        config.backends = vec![
            Backend::new("nope"),
            Backend {
                address: "10.0.0.1:99999".into(),
                weight: 300,
            },
        ];
        let problems = config.validate();
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "load_balancer.health_check.path",
                "load_balancer.health_check.unhealthy_threshold",
                "load_balancer.sticky_session.enabled",
                "load_balancer.backends[0].address",
                "load_balancer.backends[1].address",
                "load_balancer.backends[1].weight",
            ]
        );
    }

    #[test]
    fn duplicate_backends_are_reported_at_the_second() {
        let mut config = valid();
        config.backends.push(Backend::new("127.0.0.1:050113"));
        assert_eq!(
            problem_at(&config, "load_balancer.backends[1].address"),
            "127.0.0.1:050113 is already backends[0]; list each node once (use weight to give it more traffic)"
        );
    }
}
