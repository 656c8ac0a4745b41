//! Rules that a well-typed `load_balancer` block must also follow. Every
//! broken rule is collected with its key path; none stops the others from
//! being checked.

use std::collections::HashMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::config::{
    LoadBalancerConfig, BACKEND_WEIGHT_RANGE, LOAD_BALANCER_KEY, MAX_HEALTH_CHECK_INTERVAL,
    MAX_HEALTH_CHECK_PATH_LEN,
};

/// One thing wrong with a `load_balancer` block or with the render options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Key path such as `load_balancer.backends[1].weight`; empty for
    /// problems with the document as a whole (malformed YAML).
    pub path: String,
    /// What is wrong, in words meant for the person editing the file.
    pub message: String,
}

impl Problem {
    pub(crate) fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// The host part of a backend address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// A DNS name, resolved by the load balancer.
    Name(String),
    /// An IPv4 address.
    Ipv4(Ipv4Addr),
    /// An IPv6 address (written in brackets).
    Ipv6(Ipv6Addr),
}

impl Host {
    /// Whether the host is a name that must be resolved.
    pub fn is_name(&self) -> bool {
        matches!(self, Host::Name(_))
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(name) => f.write_str(name),
            Host::Ipv4(ip) => write!(f, "{ip}"),
            Host::Ipv6(ip) => write!(f, "[{ip}]"),
        }
    }
}

/// A parsed `host:port` backend address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendAddress {
    pub host: Host,
    pub port: u16,
}

impl fmt::Display for BackendAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// Parses `host:port`: a DNS name, an IPv4 address or a bracketed IPv6
/// address, then a port from 1 to 65535. The error says what is wrong.
pub fn parse_address(text: &str) -> Result<BackendAddress, String> {
    const SHAPE: &str = "write host:port, e.g. 10.0.0.5:50013, vega-1:50013 or [fd00::5]:50013";
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(format!("\"{text}\" has no port; {SHAPE}"));
    };
    let port = parse_port(port).map_err(|why| format!("\"{text}\": {why}"))?;
    let host = if let Some(inner) = host.strip_prefix('[') {
        let inner = inner
            .strip_suffix(']')
            .ok_or_else(|| format!("\"{text}\": unclosed bracket; {SHAPE}"))?;
        let ip: Ipv6Addr = inner
            .parse()
            .map_err(|_| format!("\"{text}\": \"{inner}\" is not an IPv6 address"))?;
        Host::Ipv6(ip)
    } else if host.contains(':') {
        return Err(format!(
            "\"{text}\": an IPv6 address must be written in brackets, e.g. [fd00::5]:50013"
        ));
    } else if let Ok(ip) = host.parse::<Ipv4Addr>() {
        Host::Ipv4(ip)
    } else if host.is_empty() {
        return Err(format!("\"{text}\" has no host; {SHAPE}"));
    } else if is_dns_name(host) {
        if host
            .split('.')
            .all(|label| label.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(format!("\"{text}\": \"{host}\" is not an IPv4 address"));
        }
        Host::Name(host.to_string())
    } else {
        return Err(format!(
            "\"{text}\": \"{host}\" is not a host name (letters, digits, '-' and '.', \
             labels of at most 63 characters) nor an IP address"
        ));
    };
    Ok(BackendAddress { host, port })
}

/// A port from 1 to 65535.
fn parse_port(text: &str) -> Result<u16, String> {
    if text.is_empty() {
        return Err("the port is missing".into());
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("port \"{text}\" is not a number"));
    }
    match text.parse::<u32>() {
        Ok(port @ 1..=65535) => Ok(port as u16),
        _ => Err(format!("port {text} is out of range (1 to 65535)")),
    }
}

/// RFC 1123 host name: dot-separated labels of letters, digits and
/// hyphens, not starting or ending with a hyphen.
fn is_dns_name(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Characters allowed in `health_check.path` besides letters and digits:
/// RFC 3986 path and query characters, minus those HAProxy's configuration
/// syntax gives a meaning (`#` comment, quotes, `\`, `$` variables).
const PATH_PUNCTUATION: &str = "-._~!&()*+,;=:@/?%";

fn path_problem(path: &str) -> Option<String> {
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
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut add = |key: &str, message: String| {
            problems.push(Problem::new(format!("{LOAD_BALANCER_KEY}.{key}"), message));
        };

        let hc = &self.health_check;
        if let Some(message) = path_problem(&hc.path) {
            add("health_check.path", message);
        }
        if hc.interval.is_zero() {
            add(
                "health_check.interval",
                "must be greater than zero (the backends would be checked without pause)".into(),
            );
        } else if hc.interval > MAX_HEALTH_CHECK_INTERVAL {
            add(
                "health_check.interval",
                format!(
                    "{} is longer than {MAX_HEALTH_CHECK_INTERVAL}; a failed node would keep getting requests for that long",
                    hc.interval
                ),
            );
        }
        if hc.timeout.is_zero() {
            add(
                "health_check.timeout",
                "must be greater than zero (every check would fail)".into(),
            );
        } else if !hc.interval.is_zero() && hc.timeout >= hc.interval {
            add(
                "health_check.timeout",
                format!(
                    "{} must be shorter than {LOAD_BALANCER_KEY}.health_check.interval ({}), so that a check ends before the next one is due",
                    hc.timeout, hc.interval
                ),
            );
        }
        if hc.healthy_threshold == 0 {
            add(
                "health_check.healthy_threshold",
                "must be at least 1, is 0".into(),
            );
        }
        if hc.unhealthy_threshold == 0 {
            add(
                "health_check.unhealthy_threshold",
                "must be at least 1, is 0".into(),
            );
        }

        if self.sticky_session.enabled {
            add(
                "sticky_session.enabled",
                "must be false: Vega nodes are stateless (every node serves every asset from the \
                 shared catalog and storage), so there is no session to stick to, and stickiness \
                 would only keep clients on an overloaded or draining node"
                    .into(),
            );
        }

        if self.backends.is_empty() {
            add(
                "backends",
                "must list at least one backend, e.g. `- address: 10.0.0.5:50013`".into(),
            );
        }
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (index, backend) in self.backends.iter().enumerate() {
            match parse_address(&backend.address) {
                Ok(address) => {
                    // Compare the normalized form, so `127.0.0.1:01` and
                    // `127.0.0.1:1` are the same backend.
                    let key = address.to_string().to_ascii_lowercase();
                    if let Some(first) = seen.get(&key) {
                        add(
                            &format!("backends[{index}].address"),
                            format!(
                                "{} is already backends[{first}]; list each node once (use weight to give it more traffic)",
                                backend.address
                            ),
                        );
                    } else {
                        seen.insert(key, index);
                    }
                }
                Err(message) => add(&format!("backends[{index}].address"), message),
            }
            if !BACKEND_WEIGHT_RANGE.contains(&backend.weight) {
                add(
                    &format!("backends[{index}].weight"),
                    format!(
                        "must be {}..={}, is {}",
                        BACKEND_WEIGHT_RANGE.start(),
                        BACKEND_WEIGHT_RANGE.end(),
                        backend.weight
                    ),
                );
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Backend;
    use vega_config::HumanDuration;

    fn valid() -> LoadBalancerConfig {
        LoadBalancerConfig {
            backends: vec![Backend::new("127.0.0.1:50113")],
            ..LoadBalancerConfig::default()
        }
    }

    fn messages(config: &LoadBalancerConfig) -> Vec<String> {
        config.validate().iter().map(Problem::to_string).collect()
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

    #[test]
    fn addresses_parse_names_ipv4_and_bracketed_ipv6() {
        assert_eq!(
            parse_address("gateway-1:8080"),
            Ok(BackendAddress {
                host: Host::Name("gateway-1".into()),
                port: 8080
            })
        );
        assert_eq!(
            parse_address("10.0.0.5:50013").map(|a| a.host),
            Ok(Host::Ipv4(Ipv4Addr::new(10, 0, 0, 5)))
        );
        assert_eq!(
            parse_address("[fd00::5]:50013").map(|a| a.to_string()),
            Ok("[fd00::5]:50013".into())
        );
        assert_eq!(
            parse_address("vega.svc.cluster.local.:1").map(|a| a.port),
            Ok(1)
        );
    }

    #[test]
    fn bad_addresses_say_what_is_wrong() {
        for (address, expect) in [
            ("gateway-1", "has no port"),
            ("gateway-1:", "the port is missing"),
            (":8080", "has no host"),
            ("gateway-1:http", "is not a number"),
            ("gateway-1:0", "out of range"),
            ("gateway-1:65536", "out of range"),
            ("fd00::5:80", "in brackets"),
            ("[fd00::5:80", "unclosed bracket"),
            ("[zz::1]:80", "is not an IPv6 address"),
            ("300.1.1.1:80", "is not an IPv4 address"),
            ("under_score:80", "is not a host name"),
            ("-lead:80", "is not a host name"),
            ("a b:80", "is not a host name"),
        ] {
            let err = parse_address(address).expect_err(address);
            assert!(err.contains(expect), "{address}: {err}");
        }
    }
}
