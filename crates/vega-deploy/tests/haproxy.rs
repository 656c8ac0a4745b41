//! The rendered configuration against the real HAProxy (Debian package
//! `haproxy`): `haproxy -c` accepts what we render, the shipped file is
//! current, and a running HAProxy in front of two tiny HTTP backends takes
//! a backend out after `fall` failed checks and puts it back after `rise`
//! passing ones.
//!
//! Everything listens on free loopback ports; HAProxy is killed when its
//! guard is dropped. These tests fail (they never skip) when HAProxy is not
//! installed; `scripts/test` installs it. `VEGA_TEST_HAPROXY` may name
//! another binary.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vega_config::HumanDuration;
use vega_deploy::{
    parse_load_balancer, render_from_yaml, render_haproxy, Algorithm, Backend, LoadBalancerConfig,
    RenderOptions,
};

/// How long a backend may take to change state in HAProxy's eyes; far
/// above `fall` (or `rise`) × the test's 200 ms interval.
const STATE_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// HAProxy (vega_testkit::haproxy)

use vega_testkit::haproxy::{check as haproxy_check, TestHaproxy as Haproxy};

/// Asserts that HAProxy accepts `config`, without warnings unless allowed.
fn assert_valid(config: &str, allow_warnings: bool) {
    let (ok, output) = haproxy_check(config);
    assert!(
        ok,
        "haproxy -c refused the rendered configuration:\n{output}\n--- haproxy.cfg:\n{config}"
    );
    if !allow_warnings {
        assert!(
            !output.contains("[WARNING]"),
            "haproxy -c warned:\n{output}\n--- haproxy.cfg:\n{config}"
        );
    }
}

// ---------------------------------------------------------------------------
// Tiny HTTP backends

/// What a test backend has answered so far.
#[derive(Default)]
struct Counters {
    /// Requests on the traffic port.
    hits: AtomicU64,
    /// Of those, answered 503 because the backend drains.
    refused: AtomicU64,
    /// Health checks answered 200.
    checks_ok: AtomicU64,
    /// Health checks answered 503.
    checks_failed: AtomicU64,
}

/// A stand-in Vega node: a traffic port answering every request with 200
/// and its name (503 while draining, as Vega does), and an operations port
/// answering `/health/ready` with 200 or 503 as told.
struct TestBackend {
    name: &'static str,
    traffic: SocketAddr,
    ops: SocketAddr,
    healthy: Arc<AtomicBool>,
    draining: Arc<AtomicBool>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl TestBackend {
    fn start(name: &'static str) -> TestBackend {
        let healthy = Arc::new(AtomicBool::new(true));
        let draining = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let traffic = TcpListener::bind("127.0.0.1:0").expect("binding a traffic port");
        let ops = TcpListener::bind("127.0.0.1:0").expect("binding an ops port");
        let mut backend = TestBackend {
            name,
            traffic: traffic.local_addr().unwrap(),
            ops: ops.local_addr().unwrap(),
            healthy: healthy.clone(),
            draining: draining.clone(),
            counters: counters.clone(),
            stop: stop.clone(),
            threads: Vec::new(),
        };
        for (listener, is_ops) in [(traffic, false), (ops, true)] {
            let state = State {
                is_ops,
                name,
                healthy: healthy.clone(),
                draining: draining.clone(),
                counters: counters.clone(),
            };
            let stop = stop.clone();
            backend
                .threads
                .push(std::thread::spawn(move || serve(listener, &state, &stop)));
        }
        backend
    }

    fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::SeqCst);
    }

    /// Like Vega after SIGTERM: readiness fails and requests get 503.
    fn set_draining(&self, draining: bool) {
        self.draining.store(draining, Ordering::SeqCst);
        self.set_healthy(!draining);
    }

    fn refused(&self) -> u64 {
        self.counters.refused.load(Ordering::SeqCst)
    }

    fn hits(&self) -> u64 {
        self.counters.hits.load(Ordering::SeqCst)
    }

    fn checks_ok(&self) -> u64 {
        self.counters.checks_ok.load(Ordering::SeqCst)
    }

    fn checks_failed(&self) -> u64 {
        self.counters.checks_failed.load(Ordering::SeqCst)
    }
}

impl Drop for TestBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// What one listener of a test backend answers with.
struct State {
    is_ops: bool,
    name: &'static str,
    healthy: Arc<AtomicBool>,
    draining: Arc<AtomicBool>,
    counters: Arc<Counters>,
}

/// Accepts connections until `stop`, one request per connection.
fn serve(listener: TcpListener, state: &State, stop: &AtomicBool) {
    listener
        .set_nonblocking(true)
        .expect("non-blocking listener");
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = answer(stream, state);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}

fn answer(mut stream: TcpStream, state: &State) -> std::io::Result<()> {
    let counters = &state.counters;
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        request.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&request);
    let path = text.split_whitespace().nth(1).unwrap_or("");
    let (status, body) = if state.is_ops {
        if path != "/health/ready" {
            ("404 Not Found", "not found".to_string())
        } else if state.healthy.load(Ordering::SeqCst) {
            counters.checks_ok.fetch_add(1, Ordering::SeqCst);
            ("200 OK", "ready".to_string())
        } else {
            counters.checks_failed.fetch_add(1, Ordering::SeqCst);
            ("503 Service Unavailable", "not ready".to_string())
        }
    } else {
        counters.hits.fetch_add(1, Ordering::SeqCst);
        if state.draining.load(Ordering::SeqCst) {
            counters.refused.fetch_add(1, Ordering::SeqCst);
            ("503 Service Unavailable", "draining".to_string())
        } else {
            ("200 OK", state.name.to_string())
        }
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    Ok(())
}

/// `GET path` on one fresh connection: the status and the body (chunked
/// answers, as HAProxy's stats page sends, decoded).
fn get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let chunked = head
        .lines()
        .any(|l| l.to_ascii_lowercase().replace(' ', "") == "transfer-encoding:chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, body))
}

/// The payload of a chunked body.
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size =
            usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}

/// The `status` column of one server on the stats page's CSV (`UP`,
/// `DOWN`, `UP 1/3` while going down, `DOWN 1/2` while coming up, …).
fn server_status(stats: SocketAddr, server: &str) -> String {
    let (code, csv) = get(stats, "/;csv").expect("reading the stats CSV");
    assert_eq!(code, 200, "stats page answered {code}:\n{csv}");
    let mut lines = csv.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .trim_start_matches("# ")
        .split(',')
        .collect();
    let column = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("no {name} column in the stats CSV:\n{csv}"))
    };
    let (px, sv, status) = (column("pxname"), column("svname"), column("status"));
    lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .find(|row| row.get(px) == Some(&"vega_nodes") && row.get(sv) == Some(&server))
        .and_then(|row| row.get(status).map(|s| s.to_string()))
        .unwrap_or_else(|| panic!("no row for vega_nodes/{server} in the stats CSV:\n{csv}"))
}

/// Sends `n` requests through the frontend; all must answer 200. Returns
/// how many each backend name answered.
fn spread(frontend: SocketAddr, n: usize) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        let (status, body) = get(frontend, "/api/v1/anything").expect("request through haproxy");
        assert_eq!(
            status, 200,
            "request through haproxy answered {status}: {body}"
        );
        *seen.entry(body).or_insert(0) += 1;
    }
    seen
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("finding a free port")
}

// ---------------------------------------------------------------------------
// Tests

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Seed `operations-and-reliability.md` §17.2, verbatim.
const SEED_BLOCK: &str = include_str!("../../vega-config/tests/seed/load_balancer.yaml");

#[test]
fn haproxy_accepts_every_algorithm_and_option_we_render() {
    for algorithm in [
        Algorithm::RoundRobin,
        Algorithm::LeastConnections,
        Algorithm::IpHash,
    ] {
        let config = LoadBalancerConfig {
            algorithm,
            backends: vec![
                Backend::new("127.0.0.1:50113"),
                Backend {
                    address: "[::1]:50213".into(),
                    weight: 1,
                },
                Backend {
                    address: "10.0.0.3:50013".into(),
                    weight: 256,
                },
            ],
            ..LoadBalancerConfig::default()
        };
        assert_eq!(config.validate(), []);
        let plain = RenderOptions::default();
        let mut full = RenderOptions {
            bind: "0.0.0.0:50013".parse().unwrap(),
            check_port: Some(9090),
            server_timeout: HumanDuration::from_mins(11),
            comment: vec!["a test rendering".into()],
            ..RenderOptions::default()
        }
        .with_stats_port(8404);
        full.check_ports.insert("127.0.0.1:50113".into(), 9190);
        for options in [plain, full] {
            assert_eq!(options.validate(&config), []);
            assert_valid(&render_haproxy(&config, &options), false);
        }
    }
}

#[test]
fn the_seed_block_renders_to_a_config_haproxy_accepts() {
    let config = parse_load_balancer(SEED_BLOCK).expect("the seed's block is valid");
    let text = render_haproxy(&config, &RenderOptions::default().with_stats_port(8404));
    // The seed's host names (gateway-1 …) do not resolve here: HAProxy
    // warns and starts with those servers down until they do.
    assert_valid(&text, true);
    assert!(text.contains("    option httpchk GET /health\n"), "{text}");
}

/// How `deploy/haproxy/haproxy.cfg` is rendered from
/// `deploy/haproxy/load-balancer.yaml`; the same flags are in its header.
fn shipped_options() -> RenderOptions {
    let mut options = RenderOptions::default().with_stats_port(8404);
    for (api, ops) in [(50113, 9190), (50213, 9290), (50313, 9390)] {
        options.check_ports.insert(format!("127.0.0.1:{api}"), ops);
    }
    options.comment = [
        "",
        "The 3-node local stack (scripts/ha-stack with the ports below): the nodes'",
        "API on 127.0.0.1:50113, :50213 and :50313, health checks on their",
        "operations ports 9190, 9290 and 9390, clients on 127.0.0.1:50013, the",
        "stats page on http://127.0.0.1:8404/. Source: deploy/haproxy/load-balancer.yaml,",
        "rendered with",
        "  --stats 127.0.0.1:8404 --check-port-of 127.0.0.1:50113=9190",
        "  --check-port-of 127.0.0.1:50213=9290 --check-port-of 127.0.0.1:50313=9390",
        "Re-render: VEGA_TEST_BLESS=1 cargo test -p vega-deploy --test haproxy the_shipped_config_is_current",
    ]
    .map(String::from)
    .to_vec();
    options
}

#[test]
fn the_shipped_config_is_current() {
    let root = repo_root();
    let yaml_path = root.join("deploy/haproxy/load-balancer.yaml");
    let cfg_path = root.join("deploy/haproxy/haproxy.cfg");
    let yaml = std::fs::read_to_string(&yaml_path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", yaml_path.display()));
    let expected = render_from_yaml(&yaml, &shipped_options())
        .unwrap_or_else(|p| panic!("{} is invalid: {p:?}", yaml_path.display()));
    if std::env::var_os("VEGA_TEST_BLESS").is_some() {
        std::fs::write(&cfg_path, &expected).expect("writing the shipped haproxy.cfg");
    }
    let shipped = std::fs::read_to_string(&cfg_path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", cfg_path.display()));
    assert!(
        shipped == expected,
        "{} is not the rendering of {}; re-render it (VEGA_TEST_BLESS=1 cargo test -p vega-deploy \
         --test haproxy the_shipped_config_is_current). Expected:\n{expected}",
        cfg_path.display(),
        yaml_path.display()
    );
    assert_valid(&shipped, false);
    // The seed's values, except the readiness path (docs/deployment.md).
    let config = parse_load_balancer(&yaml).unwrap();
    assert_eq!(config.health_check, Default::default());
    assert_eq!(config.algorithm, Algorithm::LeastConnections);
}

#[test]
fn a_draining_backend_leaves_after_fall_checks_with_no_client_errors_and_returns_after_rise() {
    let a = TestBackend::start("node-a");
    let b = TestBackend::start("node-b");
    let fall = 3;
    let rise = 2;
    let mut config = LoadBalancerConfig {
        backends: vec![
            Backend::new(a.traffic.to_string()),
            Backend::new(b.traffic.to_string()),
        ],
        ..LoadBalancerConfig::default()
    };
    config.health_check.interval = HumanDuration::from_millis(200);
    config.health_check.timeout = HumanDuration::from_millis(150);
    config.health_check.unhealthy_threshold = fall;
    config.health_check.healthy_threshold = rise;
    assert_eq!(config.validate(), []);

    // Ports picked now may be taken by the time HAProxy binds: try a few.
    let mut started = None;
    let mut last_error = String::new();
    for _ in 0..3 {
        let frontend: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let stats: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut options = RenderOptions {
            bind: frontend,
            stats: Some(stats),
            ..RenderOptions::default()
        };
        // Checks go to each backend's own "operations" port, as with Vega.
        options
            .check_ports
            .insert(a.traffic.to_string(), a.ops.port());
        options
            .check_ports
            .insert(b.traffic.to_string(), b.ops.port());
        assert_eq!(options.validate(&config), []);
        let text = render_haproxy(&config, &options);
        match Haproxy::start(&text, frontend) {
            Ok(proxy) => {
                started = Some((proxy, frontend, stats));
                break;
            }
            Err(e) => last_error = e,
        }
    }
    let Some((_proxy, frontend, stats)) = started else {
        panic!("haproxy did not start: {last_error}");
    };
    let b_server = "vega-2";

    // Both backends are up and get traffic.
    wait_for_status(stats, b_server, "UP", || {});
    let seen = spread(frontend, 20);
    assert!(
        seen.get(a.name).is_some_and(|n| *n > 0) && seen.get(b.name).is_some_and(|n| *n > 0),
        "traffic should reach both backends, got {seen:?}"
    );
    assert!(
        a.checks_ok() > 0 && b.checks_ok() > 0,
        "checks reach the ops ports"
    );

    // B drains (readiness 503, requests 503): it is taken out only once
    // `fall` checks failed, and until then HAProxy retries the requests B
    // refuses on A, so no client sees a 503.
    b.set_draining(true);
    let deadline = Instant::now() + STATE_TIMEOUT;
    let failed_at_down = loop {
        if server_status(stats, b_server) == "DOWN" {
            break b.checks_failed();
        }
        assert!(
            Instant::now() < deadline,
            "vega-2 was not marked DOWN within {STATE_TIMEOUT:?}"
        );
        let (status, body) = get(frontend, "/api/v1/anything").expect("request through haproxy");
        assert_eq!(
            (status, body.as_str()),
            (200, a.name),
            "while node-b drains, clients get node-a's answers"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(
        failed_at_down >= u64::from(fall),
        "vega-2 was marked DOWN after only {failed_at_down} failed checks (fall {fall})"
    );
    assert!(
        b.refused() > 0,
        "node-b should have refused (and HAProxy retried) some requests before it was marked DOWN"
    );
    let b_hits = b.hits();
    let seen = spread(frontend, 20);
    assert_eq!(
        seen.get(a.name),
        Some(&20),
        "a DOWN backend must get no traffic, got {seen:?}"
    );
    assert_eq!(b.hits(), b_hits, "node-b got requests while DOWN");

    // B recovers: it comes back once `rise` checks passed.
    let ok_before = b.checks_ok();
    b.set_draining(false);
    let ok_at_up = wait_for_status(stats, b_server, "UP", || b.checks_ok()) - ok_before;
    assert!(
        ok_at_up >= u64::from(rise),
        "vega-2 was put back after only {ok_at_up} passing checks (rise {rise})"
    );
    let seen = spread(frontend, 20);
    assert!(
        seen.get(b.name).is_some_and(|n| *n > 0),
        "a recovered backend gets traffic again, got {seen:?}"
    );
}

/// Polls the stats page until `server`'s status is exactly `want`; then
/// returns `probe()` read right after (so a count read there includes
/// every check HAProxy had seen when it reported the state).
fn wait_for_status<T>(stats: SocketAddr, server: &str, want: &str, probe: impl Fn() -> T) -> T {
    let deadline = Instant::now() + STATE_TIMEOUT;
    let mut last = String::new();
    while Instant::now() < deadline {
        last = server_status(stats, server);
        if last == want {
            return probe();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{server} did not become {want} within {STATE_TIMEOUT:?}; last status {last:?}");
}
