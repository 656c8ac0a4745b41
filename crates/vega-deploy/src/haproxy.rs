//! Rendering a `load_balancer` block as a complete `haproxy.cfg`.
//!
//! What the seed's keys become:
//!
//! | key | HAProxy |
//! |---|---|
//! | `algorithm: round_robin` | `balance roundrobin` |
//! | `algorithm: least_connections` | `balance leastconn` |
//! | `algorithm: ip_hash` | `balance source` + `hash-type consistent` |
//! | `health_check.path` | `option httpchk GET <path>` + `http-check expect status 200` |
//! | `health_check.interval` | `default-server inter <interval>` |
//! | `health_check.timeout` | `timeout check <timeout>` |
//! | `health_check.healthy_threshold` | `default-server rise <n>` |
//! | `health_check.unhealthy_threshold` | `default-server fall <n>` |
//! | `backends[i]` | `server vega-<i+1> <address> weight <w> check [port <p>]` |
//!
//! Everything that is not in the seed's block (where to listen, where the
//! checks go, traffic timeouts, the stats page) is a [`RenderOptions`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use vega_config::HumanDuration;

use crate::config::{Algorithm, LoadBalancerConfig};
use crate::validate::{parse_address, Problem};

/// Vega's own API port on loopback: the load balancer takes the address
/// clients already use for a single node, and like Vega it exposes nothing
/// to the network until told to.
pub const DEFAULT_BIND: SocketAddr = vega_config::DEFAULT_API_LISTEN;

/// HAProxy's conventional stats port (used by the shipped file; the stats
/// page is off unless asked for).
pub const CONVENTIONAL_STATS_PORT: u16 = 8404;

/// Connecting to a node on a local network takes milliseconds; a node that
/// has not accepted within this is treated as failed and, with `retries`
/// and `option redispatch`, the request goes to another node.
pub const DEFAULT_CONNECT_TIMEOUT: HumanDuration = HumanDuration::from_secs(5);

/// A bit longer than Vega's default `api.request_timeout` (60 s), so that a
/// slow request is ended by Vega with a clear error rather than cut by the
/// load balancer with a bare 504. Raise it with `api.request_timeout`.
pub const DEFAULT_SERVER_TIMEOUT: HumanDuration = HumanDuration::from_secs(70);

/// The same bound on the client's side: inactivity while a client sends a
/// body or reads a long answer.
pub const DEFAULT_CLIENT_TIMEOUT: HumanDuration = HumanDuration::from_secs(70);

/// Time a client gets to send complete request headers; bounds slow-loris
/// clients without affecting large bodies (which `timeout client` bounds).
pub const HTTP_REQUEST_TIMEOUT: HumanDuration = HumanDuration::from_secs(10);

/// How long an idle client keep-alive connection is kept open.
pub const HTTP_KEEP_ALIVE_TIMEOUT: HumanDuration = HumanDuration::from_secs(10);

/// Attempts after the first one failed, each on another node (`option
/// redispatch 1`: HAProxy's default would retry the same node first, which
/// for a node that silently drops connections costs a whole
/// `timeout connect`). Only failed connections and 503 answers are retried
/// (`retry-on conn-failure 503`). A 503 is Vega's "try again" (draining,
/// not ready yet, no query slot, ingest buffer full; the error class whose
/// `is_retryable` is true): the request a client would send again after
/// `Retry-After`, sent at once to another node, so a rolling restart shows
/// clients no 503 while HAProxy has not yet noticed the draining node. Two
/// retries ride out one draining node and one dead one.
pub const CONNECT_RETRIES: u32 = 2;

/// An explicit limit: without one HAProxy derives it from the file
/// descriptor limit, which in containers can be a million and makes it
/// reserve memory for that many connections. 4096 concurrent client
/// connections is far above what a few Vega nodes serve at once.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 4096;

/// How often the stats page reloads itself.
const STATS_REFRESH: HumanDuration = HumanDuration::from_secs(5);

/// Name of the frontend, the backend and the resolvers section.
const FRONTEND: &str = "vega_api";
const BACKEND: &str = "vega_nodes";
const RESOLVERS: &str = "system";

/// Everything about the HAProxy file that is not in the `load_balancer`
/// block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderOptions {
    /// Where clients connect (the frontend's `bind`). Default
    /// `127.0.0.1:50013`.
    pub bind: SocketAddr,
    /// The port health checks go to for every backend, when it is not the
    /// traffic port; e.g. the nodes' operations port (9090), which also
    /// answers `/health/ready`. `None`: the traffic port.
    pub check_port: Option<u16>,
    /// Per backend (keyed by its `address` exactly as written), the port its
    /// health checks go to; wins over `check_port`. For nodes sharing a
    /// host with different operations ports.
    pub check_ports: BTreeMap<String, u16>,
    /// A stats page (HTML; CSV at `/;csv`) on this address, which must be
    /// loopback because the page has no authentication. `None`: no page.
    pub stats: Option<SocketAddr>,
    /// `timeout connect`.
    pub connect_timeout: HumanDuration,
    /// `timeout client`.
    pub client_timeout: HumanDuration,
    /// `timeout server`; keep it above the nodes' `api.request_timeout`.
    pub server_timeout: HumanDuration,
    /// `maxconn` of the process.
    pub max_connections: u32,
    /// Extra comment lines for the file's header (e.g. where the block came
    /// from); `# ` is added to each.
    pub comment: Vec<String>,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            bind: DEFAULT_BIND,
            check_port: None,
            check_ports: BTreeMap::new(),
            stats: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            client_timeout: DEFAULT_CLIENT_TIMEOUT,
            server_timeout: DEFAULT_SERVER_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            comment: Vec::new(),
        }
    }
}

impl RenderOptions {
    /// The stats page on `127.0.0.1:<port>`.
    pub fn with_stats_port(mut self, port: u16) -> Self {
        self.stats = Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
        self
    }

    /// The port health checks of `backend` go to: its entry in
    /// `check_ports`, else `check_port`, else `None` (the traffic port).
    pub fn check_port_of(&self, backend: &str) -> Option<u16> {
        self.check_ports.get(backend).copied().or(self.check_port)
    }

    /// Every problem with these options, given the block they render;
    /// paths are under `options.`.
    pub fn validate(&self, config: &LoadBalancerConfig) -> Vec<Problem> {
        let mut problems = Vec::new();
        if self.bind.port() == 0 {
            problems.push(Problem::new(
                "options.bind",
                format!("{} needs a port (HAProxy cannot bind port 0)", self.bind),
            ));
        }
        if self.check_port == Some(0) {
            problems.push(Problem::new(
                "options.check_port",
                "must be 1 to 65535, is 0",
            ));
        }
        for (address, port) in &self.check_ports {
            let path = format!("options.check_ports[{address}]");
            if !config.backends.iter().any(|b| &b.address == address) {
                let known: Vec<&str> = config.backends.iter().map(|b| b.address.as_str()).collect();
                problems.push(Problem::new(
                    path,
                    format!(
                        "names no backend of load_balancer.backends ({})",
                        known.join(", ")
                    ),
                ));
            } else if *port == 0 {
                problems.push(Problem::new(path, "must be 1 to 65535, is 0"));
            }
        }
        if let Some(stats) = self.stats {
            if !stats.ip().is_loopback() {
                problems.push(Problem::new(
                    "options.stats",
                    format!(
                        "{stats} is not a loopback address; the stats page has no authentication, \
                         so it only listens on 127.0.0.1 or [::1]"
                    ),
                ));
            } else if stats.port() == 0 {
                problems.push(Problem::new(
                    "options.stats",
                    format!("{stats} needs a port (HAProxy cannot bind port 0)"),
                ));
            } else if stats.port() == self.bind.port()
                && (stats.ip() == self.bind.ip() || self.bind.ip().is_unspecified())
            {
                problems.push(Problem::new(
                    "options.stats",
                    format!("{stats} clashes with options.bind ({})", self.bind),
                ));
            }
        }
        for (key, value) in [
            ("options.connect_timeout", self.connect_timeout),
            ("options.client_timeout", self.client_timeout),
            ("options.server_timeout", self.server_timeout),
        ] {
            if value.is_zero() {
                problems.push(Problem::new(
                    key,
                    "must be greater than zero (HAProxy would wait forever)",
                ));
            }
        }
        if self.max_connections == 0 {
            problems.push(Problem::new(
                "options.max_connections",
                "must be at least 1, is 0",
            ));
        }
        problems
    }
}

/// The HAProxy name of a backend: `vega-1`, `vega-2`, … in list order.
pub fn server_name(index: usize) -> String {
    format!("vega-{}", index + 1)
}

/// Renders a complete `haproxy.cfg` for `config`.
///
/// Expects a valid block and valid options
/// ([`LoadBalancerConfig::validate`], [`RenderOptions::validate`]);
/// [`crate::render_from_yaml`] checks both first. Backends whose host is a
/// name are resolved through the system's resolver (`/etc/resolv.conf`) at
/// start and while running, so a node that is not resolvable yet does not
/// stop HAProxy from starting.
pub fn render_haproxy(config: &LoadBalancerConfig, options: &RenderOptions) -> String {
    let hc = &config.health_check;
    let mut out = String::new();
    let mut line = |text: &str| {
        out.push_str(text);
        out.push('\n');
    };

    line("# Rendered by `vega lb render` (vega_deploy::render_haproxy) from the");
    line("# `load_balancer:` block of a Vega configuration. Change the block and");
    line("# render again rather than editing this file.");
    for comment in &options.comment {
        if comment.is_empty() {
            line("#");
        }
        for text in comment.lines() {
            if text.is_empty() {
                line("#");
            } else {
                line(&format!("# {text}"));
            }
        }
    }
    line("");

    line("global");
    line("    log stdout format raw local0 info");
    line(&format!("    maxconn {}", options.max_connections));
    line("");

    line("defaults");
    line("    mode http");
    line("    log global");
    line("    option httplog");
    line("    option dontlognull");
    line("    option forwardfor");
    line("    # Retried on another node: a connection a node refused or did not");
    line("    # accept, and a 503, Vega's \"try again\" (draining, starting, saturated).");
    line("    # Nothing else is retried: not a timeout, not a connection closed before");
    line("    # the answer, so a request a node may still be carrying out is not resent.");
    line("    option redispatch 1");
    line(&format!("    retries {CONNECT_RETRIES}"));
    line("    retry-on conn-failure 503");
    line(&format!("    timeout connect {}", options.connect_timeout));
    line(&format!("    timeout client {}", options.client_timeout));
    line(&format!("    timeout server {}", options.server_timeout));
    line(&format!("    timeout http-request {HTTP_REQUEST_TIMEOUT}"));
    line(&format!(
        "    timeout http-keep-alive {HTTP_KEEP_ALIVE_TIMEOUT}"
    ));
    line("");

    let backends: Vec<_> = config
        .backends
        .iter()
        .map(|b| (b, parse_address(&b.address).ok()))
        .collect();
    let any_name = backends
        .iter()
        .any(|(_, parsed)| parsed.as_ref().is_some_and(|a| a.host.is_name()));
    if any_name {
        line(&format!("resolvers {RESOLVERS}"));
        line("    parse-resolv-conf");
        line("    hold valid 10s");
        line("");
    }

    line(&format!("frontend {FRONTEND}"));
    line(&format!("    bind {}", options.bind));
    line(&format!("    default_backend {BACKEND}"));
    line("");

    line(&format!("backend {BACKEND}"));
    match config.algorithm {
        Algorithm::RoundRobin => line("    balance roundrobin"),
        Algorithm::LeastConnections => line("    balance leastconn"),
        Algorithm::IpHash => {
            line("    balance source");
            line("    hash-type consistent");
        }
    }
    line(&format!("    option httpchk GET {}", hc.path));
    line("    http-check expect status 200");
    line(&format!("    timeout check {}", hc.timeout));
    line(&format!(
        "    default-server inter {} fall {} rise {}",
        hc.interval, hc.unhealthy_threshold, hc.healthy_threshold
    ));
    for (index, (backend, parsed)) in backends.iter().enumerate() {
        let mut server = format!(
            "    server {} {} weight {} check",
            server_name(index),
            backend.address,
            backend.weight
        );
        // `write!` to a String cannot fail; the results are ignored.
        if let Some(port) = options.check_port_of(&backend.address) {
            let _ = write!(server, " port {port}");
        }
        if parsed.as_ref().is_some_and(|a| a.host.is_name()) {
            let _ = write!(server, " resolvers {RESOLVERS} init-addr last,libc,none");
        }
        line(&server);
    }

    if let Some(stats) = options.stats {
        line("");
        line("listen stats");
        line(&format!("    bind {stats}"));
        // Not `no log`: with `option httplog` inherited HAProxy warns about
        // it. Silencing each request keeps the log for the API.
        line("    http-request set-log-level silent");
        line("    stats enable");
        line("    stats uri /");
        line(&format!("    stats refresh {STATS_REFRESH}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Backend;

    fn three_nodes() -> LoadBalancerConfig {
        LoadBalancerConfig {
            backends: vec![
                Backend::new("127.0.0.1:50113"),
                Backend::new("127.0.0.1:50213"),
                Backend {
                    address: "127.0.0.1:50313".into(),
                    weight: 50,
                },
            ],
            ..LoadBalancerConfig::default()
        }
    }

    fn lines(text: &str) -> Vec<&str> {
        text.lines().map(str::trim_end).collect()
    }

    /// The lines of `text` from `start` (a line) up to the next blank line.
    fn section<'a>(text: &'a str, start: &str) -> Vec<&'a str> {
        let all = lines(text);
        let at = all
            .iter()
            .position(|l| *l == start)
            .unwrap_or_else(|| panic!("no line {start:?} in:\n{text}"));
        all[at..]
            .iter()
            .take_while(|l| !l.is_empty())
            .copied()
            .collect()
    }

    #[test]
    fn defaults_render_the_seed_thresholds_and_readiness_check() {
        let text = render_haproxy(&three_nodes(), &RenderOptions::default());
        assert_eq!(
            section(&text, "backend vega_nodes"),
            [
                "backend vega_nodes",
                "    balance leastconn",
                "    option httpchk GET /health/ready",
                "    http-check expect status 200",
                "    timeout check 2s",
                "    default-server inter 5s fall 3 rise 2",
                "    server vega-1 127.0.0.1:50113 weight 100 check",
                "    server vega-2 127.0.0.1:50213 weight 100 check",
                "    server vega-3 127.0.0.1:50313 weight 50 check",
            ]
        );
        assert_eq!(
            section(&text, "frontend vega_api"),
            [
                "frontend vega_api",
                "    bind 127.0.0.1:50013",
                "    default_backend vega_nodes",
            ]
        );
        assert!(!text.contains("listen stats"), "{text}");
        assert!(!text.contains("resolvers"), "{text}");
    }

    #[test]
    fn header_says_how_the_file_was_made() {
        let options = RenderOptions {
            comment: vec!["Source: deploy/haproxy/load-balancer.yaml\n\nsecond".into()],
            ..RenderOptions::default()
        };
        let text = render_haproxy(&three_nodes(), &options);
        assert!(text.starts_with("# Rendered by `vega lb render`"), "{text}");
        assert_eq!(
            lines(&text)[3..6],
            [
                "# Source: deploy/haproxy/load-balancer.yaml",
                "#",
                "# second"
            ]
        );
    }

    #[test]
    fn defaults_section_has_http_mode_logging_forwarding_and_timeouts() {
        let text = render_haproxy(&three_nodes(), &RenderOptions::default());
        let defaults = section(&text, "defaults");
        for expected in [
            "    mode http",
            "    log global",
            "    option httplog",
            "    option forwardfor",
            "    option redispatch 1",
            "    retries 2",
            "    retry-on conn-failure 503",
            "    timeout connect 5s",
            "    timeout client 70s",
            "    timeout server 70s",
            "    timeout http-request 10s",
        ] {
            assert!(
                defaults.contains(&expected),
                "{expected:?} in {defaults:#?}"
            );
        }
        assert_eq!(
            section(&text, "global"),
            [
                "global",
                "    log stdout format raw local0 info",
                "    maxconn 4096"
            ]
        );
    }

    #[test]
    fn algorithms_map_to_balance_modes() {
        let mut config = three_nodes();
        config.algorithm = Algorithm::RoundRobin;
        let text = render_haproxy(&config, &RenderOptions::default());
        assert!(lines(&text).contains(&"    balance roundrobin"));
        assert!(!text.contains("hash-type"));

        config.algorithm = Algorithm::IpHash;
        let text = render_haproxy(&config, &RenderOptions::default());
        let backend = section(&text, "backend vega_nodes");
        assert_eq!(
            backend[1..3],
            ["    balance source", "    hash-type consistent"]
        );
    }

    #[test]
    fn health_check_settings_are_rendered_in_haproxy_units() {
        let mut config = three_nodes();
        config.health_check.path = "/health".into();
        config.health_check.interval = HumanDuration::from_millis(200);
        config.health_check.timeout = HumanDuration::from_millis(150);
        config.health_check.healthy_threshold = 4;
        config.health_check.unhealthy_threshold = 1;
        let text = render_haproxy(&config, &RenderOptions::default());
        let backend = section(&text, "backend vega_nodes");
        assert_eq!(
            backend[2..6],
            [
                "    option httpchk GET /health",
                "    http-check expect status 200",
                "    timeout check 150ms",
                "    default-server inter 200ms fall 1 rise 4",
            ]
        );
    }

    #[test]
    fn checks_go_to_the_ops_port_when_configured() {
        let mut options = RenderOptions {
            check_port: Some(9090),
            ..RenderOptions::default()
        };
        options.check_ports.insert("127.0.0.1:50213".into(), 9290);
        let text = render_haproxy(&three_nodes(), &options);
        let servers: Vec<&str> = lines(&text)
            .into_iter()
            .filter(|l| l.trim_start().starts_with("server "))
            .collect();
        assert_eq!(
            servers,
            [
                "    server vega-1 127.0.0.1:50113 weight 100 check port 9090",
                "    server vega-2 127.0.0.1:50213 weight 100 check port 9290",
                "    server vega-3 127.0.0.1:50313 weight 50 check port 9090",
            ]
        );
    }

    #[test]
    fn stats_listener_is_rendered_on_request() {
        let options = RenderOptions::default().with_stats_port(8404);
        let text = render_haproxy(&three_nodes(), &options);
        assert_eq!(
            section(&text, "listen stats"),
            [
                "listen stats",
                "    bind 127.0.0.1:8404",
                "    http-request set-log-level silent",
                "    stats enable",
                "    stats uri /",
                "    stats refresh 5s",
            ]
        );
        assert!(text.ends_with("stats refresh 5s\n"));
    }

    #[test]
    fn host_names_are_resolved_at_run_time() {
        let config = LoadBalancerConfig {
            backends: vec![
                Backend::new("gateway-1:8080"),
                Backend::new("10.0.0.2:8080"),
            ],
            ..LoadBalancerConfig::default()
        };
        let text = render_haproxy(&config, &RenderOptions::default());
        assert_eq!(
            section(&text, "resolvers system"),
            [
                "resolvers system",
                "    parse-resolv-conf",
                "    hold valid 10s"
            ]
        );
        assert!(lines(&text).contains(
            &"    server vega-1 gateway-1:8080 weight 100 check resolvers system init-addr last,libc,none"
        ));
        assert!(lines(&text).contains(&"    server vega-2 10.0.0.2:8080 weight 100 check"));
    }

    #[test]
    fn ipv6_backends_and_bind_keep_their_brackets() {
        let config = LoadBalancerConfig {
            backends: vec![Backend::new("[::1]:50113")],
            ..LoadBalancerConfig::default()
        };
        let options = RenderOptions {
            bind: "[::]:50013".parse().unwrap(),
            ..RenderOptions::default()
        };
        let text = render_haproxy(&config, &options);
        assert!(lines(&text).contains(&"    bind [::]:50013"));
        assert!(lines(&text).contains(&"    server vega-1 [::1]:50113 weight 100 check"));
    }

    #[test]
    fn options_are_validated_with_paths() {
        let config = three_nodes();
        let mut options = RenderOptions {
            bind: "127.0.0.1:0".parse().unwrap(),
            check_port: Some(0),
            stats: Some("0.0.0.0:8404".parse().unwrap()),
            server_timeout: HumanDuration::ZERO,
            max_connections: 0,
            ..RenderOptions::default()
        };
        options.check_ports.insert("127.0.0.1:1".into(), 9190);
        options.check_ports.insert("127.0.0.1:50113".into(), 0);
        let problems: Vec<String> = options
            .validate(&config)
            .iter()
            .map(Problem::to_string)
            .collect();
        assert_eq!(
            problems,
            [
                "options.bind: 127.0.0.1:0 needs a port (HAProxy cannot bind port 0)",
                "options.check_port: must be 1 to 65535, is 0",
                "options.check_ports[127.0.0.1:1]: names no backend of load_balancer.backends (127.0.0.1:50113, 127.0.0.1:50213, 127.0.0.1:50313)",
                "options.check_ports[127.0.0.1:50113]: must be 1 to 65535, is 0",
                "options.stats: 0.0.0.0:8404 is not a loopback address; the stats page has no authentication, so it only listens on 127.0.0.1 or [::1]",
                "options.server_timeout: must be greater than zero (HAProxy would wait forever)",
                "options.max_connections: must be at least 1, is 0",
            ]
        );
        assert!(RenderOptions::default().validate(&config).is_empty());
    }

    #[test]
    fn stats_must_not_clash_with_the_frontend() {
        let options = RenderOptions::default().with_stats_port(50013);
        let problems = options.validate(&three_nodes());
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].path, "options.stats");
    }
}
