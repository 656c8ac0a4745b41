//! Chaos tests of a 3-node cluster behind a real HAProxy (rendered by
//! `vega_deploy`), on one PostgreSQL catalog and one shared storage
//! directory, under a mixed load of queries and line-protocol writes sent
//! through the load balancer. Each test reports its figures (failed
//! requests, the error window, recovery time) on stderr; BENCHMARKS.md
//! records them. Everything runs on loopback, bounded in time and count.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vega_config::HumanDuration;
use vega_deploy::{
    render_haproxy, Algorithm, Backend, HealthCheckConfig, LoadBalancerConfig, RenderOptions,
    StickySessionConfig,
};
use vega_testkit::haproxy::TestHaproxy;
use vega_testkit::postgres::TestPostgres;

use crate::server::{Options, TestServer};

/// Short heartbeats and leases, fast health checks: a takeover waits for
/// the lease TTL, the load balancer for `fall` checks.
const NODE_YAML: &str =
    "cluster:\n  heartbeat_interval: 200ms\n  lease_ttl: 1500ms\ningest:\n  flush_age: 500ms\n";

/// Three nodes, HAProxy in front, the catalog and storage shared.
struct Cluster {
    _pg: TestPostgres,
    shared: tempfile::TempDir,
    nodes: Vec<TestServer>,
    /// Each node's (API, operations) ports, kept across restarts.
    ports: Vec<(u16, u16)>,
    _lb: TestHaproxy,
    url: String,
    catalog_url: String,
}

impl Cluster {
    fn start() -> Cluster {
        let pg = TestPostgres::start();
        let shared = tempfile::tempdir().unwrap();
        let catalog_url = pg.url();
        let mut nodes = Vec::new();
        let mut ports = Vec::new();
        for i in 1..=3 {
            let p = (
                vega_testkit::ports::free_port(),
                vega_testkit::ports::free_port(),
            );
            ports.push(p);
            nodes.push(start_node(
                &catalog_url,
                shared.path(),
                &format!("node-{i}"),
                p,
                None,
            ));
        }
        let addr = |url: &str| url.trim_start_matches("http://").to_string();
        let config = LoadBalancerConfig {
            algorithm: Algorithm::LeastConnections,
            health_check: HealthCheckConfig {
                path: "/health/ready".into(),
                interval: HumanDuration::from_millis(200),
                timeout: HumanDuration::from_millis(150),
                healthy_threshold: 1,
                unhealthy_threshold: 2,
            },
            sticky_session: StickySessionConfig::default(),
            backends: nodes
                .iter()
                .map(|n| Backend {
                    address: addr(&n.api),
                    weight: 100,
                })
                .collect(),
        };
        let frontend: SocketAddr = format!("127.0.0.1:{}", vega_testkit::ports::free_port())
            .parse()
            .unwrap();
        let options = RenderOptions {
            bind: frontend,
            check_ports: nodes
                .iter()
                .map(|n| {
                    let port: u16 = n.ops.rsplit(':').next().unwrap().parse().unwrap();
                    (addr(&n.api), port)
                })
                .collect::<BTreeMap<_, _>>(),
            ..RenderOptions::default()
        };
        let lb = TestHaproxy::start(&render_haproxy(&config, &options), frontend)
            .unwrap_or_else(|e| panic!("{e}"));
        Cluster {
            _pg: pg,
            shared,
            nodes,
            ports,
            _lb: lb,
            url: format!("http://{frontend}"),
            catalog_url,
        }
    }
}

fn start_node(
    catalog_url: &str,
    shared: &std::path::Path,
    name: &str,
    ports: (u16, u16),
    data_dir: Option<std::path::PathBuf>,
) -> TestServer {
    TestServer::start_with(Options {
        extra_yaml: format!(
            "node:\n  name: {name}\ncatalog:\n  url: \"{catalog_url}\"\nstorage:\n  shared_dir: \"{}\"\n{NODE_YAML}",
            shared.display()
        ),
        ports: Some(ports),
        data_dir,
        ..Options::default()
    })
}

/// What the load saw.
#[derive(Default)]
struct LoadReport {
    requests: u64,
    failed: u64,
    first_failure: Option<Instant>,
    last_failure: Option<Instant>,
    /// Ids of the rows in acknowledged writes.
    acked: Vec<u64>,
    /// Ids of the rows in writes that failed: not acknowledged, but they
    /// may have become durable before the failure (a node killed between
    /// its fsync and its answer), so they may or may not be served.
    in_doubt: Vec<u64>,
    failures: Vec<String>,
}

impl LoadReport {
    fn error_window(&self) -> Duration {
        match (self.first_failure, self.last_failure) {
            (Some(a), Some(b)) => b - a,
            _ => Duration::ZERO,
        }
    }
}

/// Sends, until `stop`, writes of 20 rows each (ids unique) alternating
/// with queries, through the load balancer; two clients.
fn run_load(url: &str, stop: Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<LoadReport>> {
    (0..2u64)
        .map(|client| {
            let url = url.to_string();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let http = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .unwrap();
                let mut report = LoadReport::default();
                let mut next = client * 1_000_000;
                let mut i = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    i += 1;
                    let (ok, what) = if i.is_multiple_of(2) {
                        let ids: Vec<u64> = (next..next + 20).collect();
                        next += 20;
                        let body: String = ids
                            .iter()
                            .map(|id| format!("load,client=c{client} id={id}i {id}\n"))
                            .collect();
                        let r = http
                            .post(format!("{url}/api/v2/write?bucket=chaos"))
                            .body(body)
                            .send();
                        match r {
                            Ok(r) if r.status().as_u16() == 204 => {
                                report.acked.extend(ids);
                                (true, String::new())
                            }
                            Ok(r) => {
                                report.in_doubt.extend(ids);
                                (false, format!("write {}", r.status()))
                            }
                            Err(e) => {
                                report.in_doubt.extend(ids);
                                (false, format!("write: {e}"))
                            }
                        }
                    } else {
                        let r = http
                            .post(format!("{url}/api/v1/query"))
                            .json(&json!({ "sql": "SELECT 1 AS one" }))
                            .send();
                        match r {
                            Ok(r) if r.status().is_success() => (true, String::new()),
                            Ok(r) => (false, format!("query {}", r.status())),
                            Err(e) => (false, format!("query: {e}")),
                        }
                    };
                    report.requests += 1;
                    if !ok {
                        let now = Instant::now();
                        report.failed += 1;
                        report.first_failure.get_or_insert(now);
                        report.last_failure = Some(now);
                        if report.failures.len() < 10 {
                            report.failures.push(what);
                        }
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                report
            })
        })
        .collect()
}

fn merge(reports: Vec<LoadReport>) -> LoadReport {
    let mut all = LoadReport::default();
    for r in reports {
        all.requests += r.requests;
        all.failed += r.failed;
        all.acked.extend(r.acked);
        all.in_doubt.extend(r.in_doubt);
        all.failures.extend(r.failures);
        for t in [r.first_failure, r.last_failure].into_iter().flatten() {
            all.first_failure = Some(all.first_failure.map_or(t, |f| f.min(t)));
            all.last_failure = Some(all.last_failure.map_or(t, |l| l.max(t)));
        }
    }
    all
}

/// Waits until the load balancer serves every acknowledged row exactly
/// once — and nothing else but rows of failed writes, which may have
/// become durable before their failure; returns how long that took.
fn wait_all_rows(url: &str, report: &LoadReport, within: Duration) -> Duration {
    let http = reqwest::blocking::Client::new();
    let started = Instant::now();
    let acked: std::collections::HashSet<u64> = report.acked.iter().copied().collect();
    let in_doubt: std::collections::HashSet<u64> = report.in_doubt.iter().copied().collect();
    let mut last = String::new();
    while started.elapsed() < within {
        let r = http
            .post(format!("{url}/api/v1/query"))
            .json(&json!({ "sql": "SELECT id FROM chaos.load", "max_rows": 1_000_000 }))
            .send();
        if let Ok(r) = r {
            if r.status().is_success() {
                let v: Value = r.json().unwrap();
                let ids: Vec<u64> = v["rows"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|row| row[0].as_u64().unwrap())
                    .collect();
                let served: std::collections::HashSet<u64> = ids.iter().copied().collect();
                let missing = acked.difference(&served).count();
                let strays = served
                    .iter()
                    .filter(|id| !acked.contains(id) && !in_doubt.contains(id))
                    .count();
                let twice = ids.len() - served.len();
                assert_eq!(strays, 0, "rows served that no write sent");
                if missing == 0 && twice == 0 {
                    return started.elapsed();
                }
                last = format!(
                    "{} served, {missing} acknowledged missing, {twice} twice",
                    ids.len()
                );
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "the {} acknowledged rows were never all served once: last {last}",
        acked.len()
    );
}

/// (a) `kill -9` of one of three nodes under mixed load through HAProxy:
/// the failed requests and the error window are reported; no acknowledged
/// write is lost or doubled, and the killed node's unflushed rows are
/// served again (its log adopted) within about a lease TTL.
#[test]
fn chaos_kill_9_one_of_three_nodes_under_load() {
    let mut cluster = Cluster::start();
    let stop = Arc::new(AtomicBool::new(false));
    let load = run_load(&cluster.url, stop.clone());
    std::thread::sleep(Duration::from_secs(3));
    cluster.nodes[1].kill9();
    let killed = Instant::now();
    std::thread::sleep(Duration::from_secs(5));
    stop.store(true, Ordering::SeqCst);
    let report = merge(load.into_iter().map(|h| h.join().unwrap()).collect());
    let recovered = wait_all_rows(&cluster.url, &report, Duration::from_secs(30));
    let adopted = cluster
        .nodes
        .iter()
        .filter(|n| n.logs().contains("took over the write-ahead log"))
        .count();
    eprintln!(
        "chaos kill -9: {} requests, {} failed ({:.3}%), error window {:?}, {} acknowledged rows all served once {:?} after the load ended ({:?} after the kill); logs adopted by {adopted} node(s); failures: {:?}",
        report.requests,
        report.failed,
        100.0 * report.failed as f64 / report.requests.max(1) as f64,
        report.error_window(),
        report.acked.len(),
        recovered,
        killed.elapsed(),
        report.failures
    );
    assert!(report.requests > 100, "the load ran");
    // Failures are bounded by what was in flight on the killed node and
    // the health checks' detection (2 × 200 ms).
    assert!(
        report.error_window() < Duration::from_secs(3),
        "error window {:?}",
        report.error_window()
    );
}

/// (c) SIGTERM of a node under load (a rolling restart): it drains
/// (readiness 503 at once, new requests refused with 503, which HAProxy
/// retries on another node), finishes what is in flight and exits; then it
/// starts again. Zero failed requests, nothing acknowledged lost.
#[test]
fn chaos_rolling_restart_under_load_fails_no_request() {
    let mut cluster = Cluster::start();
    let stop = Arc::new(AtomicBool::new(false));
    let load = run_load(&cluster.url, stop.clone());
    std::thread::sleep(Duration::from_secs(2));
    let restarted = Mutex::new(Vec::new());
    let mut keep = Vec::new();
    for i in 0..3 {
        let data_dir = cluster.nodes[i].data_dir.clone();
        keep.push(cluster.nodes[i].take_tmp());
        let began = Instant::now();
        cluster.nodes[i].signal(libc::SIGTERM);
        let status = cluster.nodes[i].wait_exit(Duration::from_secs(30));
        assert!(status.success(), "{status}");
        // Same ports and data directory: HAProxy sees the node come back.
        cluster.nodes[i] = start_node(
            &cluster.catalog_url,
            cluster.shared.path(),
            &format!("node-{}", i + 1),
            cluster.ports[i],
            Some(data_dir),
        );
        restarted.lock().unwrap().push(began.elapsed());
        // Let HAProxy see it healthy again before the next one goes.
        std::thread::sleep(Duration::from_secs(1));
    }
    stop.store(true, Ordering::SeqCst);
    let report = merge(load.into_iter().map(|h| h.join().unwrap()).collect());
    let recovered = wait_all_rows(&cluster.url, &report, Duration::from_secs(30));
    eprintln!(
        "chaos rolling restart (SIGTERM): {} requests, {} failed, {} acknowledged rows all served once ({:?} to converge); restarts took {:?}; failures: {:?}",
        report.requests,
        report.failed,
        report.acked.len(),
        recovered,
        restarted.lock().unwrap(),
        report.failures
    );
    assert!(report.requests > 100, "the load ran");
    assert_eq!(report.failed, 0, "{:?}", report.failures);
}

/// (b) The catalog's primary is killed and its (synchronous) replica
/// promoted while two nodes run with a multi-host catalog URL: the time
/// until Vega accepts writes again is reported; what was acknowledged
/// before (an asset and its published version, streamed rows) is all there
/// afterwards; there is one primary (the old one is dead), and the nodes'
/// leases carry on from the promoted server.
#[test]
fn chaos_catalog_primary_killed_and_replica_promoted() {
    use vega_testkit::replication::TestReplicaSet;

    let mut set = TestReplicaSet::start_synchronous();
    let (p, r) = (set.primary().port(), set.replica().port());
    let url = format!(
        "postgres://{}:{}@127.0.0.1:{p},127.0.0.1:{r}/{}?target_session_attrs=read-write",
        set.primary().user(),
        set.primary().password(),
        set.primary().database()
    );
    let shared = tempfile::tempdir().unwrap();
    let start = |name: &str| {
        TestServer::start_with(Options {
            extra_yaml: format!(
                "node:\n  name: {name}\ncatalog:\n  url: \"{url}\"\nstorage:\n  shared_dir: \"{}\"\n{NODE_YAML}",
                shared.path().display()
            ),
            ..Options::default()
        })
    };
    let a = start("node-a");
    let b = start("node-b");
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    // Acknowledged before the failover: streamed rows, flushed.
    for i in 0..10 {
        let body: String = (0..10)
            .map(|j| format!("pre,node=a id={}i {}\n", i * 10 + j, i * 10 + j))
            .collect();
        let r = a.post_text("/api/v2/write?bucket=chaos", body, &[]);
        assert_eq!(r.status, 204, "{}", r.text);
    }
    let sql = "SELECT count(*) FROM chaos.pre";
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let asset = a.get("/api/v1/assets").json();
        let flushed = asset
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["active_version"] == "v1");
        if flushed && b.post("/api/v1/query", &json!({ "sql": sql })).status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "not flushed\n{}", a.logs());
        std::thread::sleep(Duration::from_millis(100));
    }

    set.kill_primary();
    let killed = Instant::now();
    set.promote_replica();
    let promoted = killed.elapsed();
    // Writes through the API (a new connection) until one is accepted.
    let mut attempt = 0;
    let resumed = loop {
        attempt += 1;
        let r = http
            .post(format!("{}/api/v1/connections", a.api))
            .json(&json!({ "name": format!("after-{attempt}"), "type": "line_protocol", "params": {} }))
            .send();
        if r.as_ref().is_ok_and(|r| r.status().as_u16() == 201) {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(60),
            "writes never resumed: {:?}\n{}",
            r.map(|r| r.status()),
            a.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // Streamed writes resume too, on both nodes.
    let deadline = Instant::now() + Duration::from_secs(30);
    let stream_resumed = loop {
        let ra = a.post_text(
            "/api/v2/write?bucket=chaos",
            "pre,node=a id=1000i 1000\n",
            &[],
        );
        if ra.status == 204 {
            break killed.elapsed();
        }
        assert!(Instant::now() < deadline, "{} {}", ra.status, ra.text);
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!(
        "chaos catalog failover: primary killed, replica promoted after {promoted:?}; API writes accepted again {resumed:?} after the kill ({attempt} attempts), streamed writes {stream_resumed:?}"
    );
    // Nothing acknowledged is lost, on either node.
    for node in [&a, &b] {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let r = node.post(
                "/api/v1/query",
                &json!({ "sql": "SELECT count(*), count(DISTINCT id) FROM chaos.pre" }),
            );
            if r.status == 200 && r.json()["rows"] == json!([[101, 101]]) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} {}\n{}",
                r.status,
                r.text,
                node.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    // One primary: the promoted server, which holds the nodes' leases.
    let leases = set
        .replica()
        .execute("SELECT count(*) FROM leases WHERE expires_at > to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')");
    assert!(leases.trim().parse::<u32>().unwrap() >= 1, "{leases}");
    let metrics = http
        .get(format!("{}/metrics", a.ops))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("vega_catalog_failovers_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("vega_connection_pool_active{role=\"primary\""),
        "{metrics}"
    );
}
