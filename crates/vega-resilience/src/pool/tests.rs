//! Pool tests: algorithms, active health, outlier ejection, the checker
//! task. Time is a manual ticker or paused tokio time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::ticker::{ManualTicker, TokioTicker};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn backends(spec: &[(&str, u32)]) -> Vec<Backend> {
    spec.iter().map(|(a, w)| Backend::new(*a, *w)).collect()
}

fn settings(algorithm: Algorithm) -> PoolSettings {
    PoolSettings {
        algorithm,
        outlier: OutlierSettings {
            consecutive_failures: 3,
            ejection_time: Duration::from_secs(30),
        },
        ..PoolSettings::default()
    }
}

fn pool_with(algorithm: Algorithm, spec: &[(&str, u32)]) -> (ServicePool, Arc<ManualTicker>) {
    let ticker = Arc::new(ManualTicker::new());
    let pool = ServicePool::new("svc", backends(spec), settings(algorithm), ticker.clone())
        .expect("valid pool");
    (pool, ticker)
}

fn pool(algorithm: Algorithm, spec: &[(&str, u32)]) -> ServicePool {
    pool_with(algorithm, spec).0
}

/// Picks `n` times, releasing each lease at once; returns the addresses.
fn picks(pool: &ServicePool, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| pool.pick(None).expect("healthy").address().to_string())
        .collect()
}

fn counts(addresses: &[String]) -> HashMap<&str, usize> {
    let mut m = HashMap::new();
    for a in addresses {
        *m.entry(a.as_str()).or_default() += 1;
    }
    m
}

/// A lease on `address`, skipping other backends.
fn lease_on(pool: &ServicePool, address: &str) -> Lease {
    for _ in 0..100 {
        let lease = pool.pick(None).expect("healthy");
        if lease.address() == address {
            return lease;
        }
    }
    panic!("{address} was never picked");
}

fn healthy(pool: &ServicePool, address: &str) -> bool {
    pool.status()
        .into_iter()
        .find(|s| s.address == address)
        .map(|s| s.healthy)
        .expect("known backend")
}

#[test]
fn empty_pool_is_a_construction_error() {
    let err = ServicePool::new(
        "svc",
        Vec::new(),
        PoolSettings::default(),
        Arc::new(ManualTicker::new()),
    )
    .unwrap_err();
    assert_eq!(err.errors[0].field, "backends");
}

#[test]
fn construction_reports_every_bad_backend_and_setting() {
    let mut s = PoolSettings::default();
    s.health_check.path = "health".into();
    let err = ServicePool::new(
        "svc",
        backends(&[("a", 0), ("a", 1), ("", 1)]),
        s,
        Arc::new(ManualTicker::new()),
    )
    .unwrap_err();
    let fields: Vec<&str> = err.errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "backends.0.weight",
            "backends.1.address",
            "backends.2.address",
            "health_check.path"
        ]
    );
}

#[test]
fn default_health_check_settings_are_the_documented_ones() {
    let hc = HealthCheckSettings::default();
    assert_eq!(hc.path, "/health/ready");
    assert_eq!((hc.interval, hc.timeout), (ms(5000), ms(2000)));
    assert_eq!((hc.healthy_threshold, hc.unhealthy_threshold), (2, 3));
}

#[test]
fn smooth_round_robin_interleaves_a_heavy_backend() {
    let p = pool(Algorithm::RoundRobin, &[("a", 5), ("b", 1), ("c", 1)]);
    // nginx's documented sequence for weights 5, 1, 1.
    assert_eq!(picks(&p, 7), ["a", "a", "b", "a", "c", "a", "a"]);
}

#[test]
fn weights_are_respected_over_many_picks() {
    let p = pool(Algorithm::RoundRobin, &[("a", 5), ("b", 3), ("c", 2)]);
    let all = picks(&p, 1000);
    let c = counts(&all);
    assert_eq!((c["a"], c["b"], c["c"]), (500, 300, 200));
}

#[test]
fn round_robin_skips_an_unhealthy_backend() {
    let p = pool(Algorithm::RoundRobin, &[("a", 1), ("b", 1)]);
    for _ in 0..3 {
        p.report_check("a", false).expect("known");
    }
    assert!(picks(&p, 10).iter().all(|a| a == "b"));
}

#[test]
fn least_connections_prefers_the_idlest_backend() {
    let p = pool(Algorithm::LeastConnections, &[("a", 1), ("b", 1), ("c", 1)]);
    let _a = lease_on(&p, "a");
    let _b = lease_on(&p, "b");
    assert_eq!(p.pick(None).expect("healthy").address(), "c");
}

#[test]
fn least_connections_divides_by_weight() {
    let p = pool(Algorithm::LeastConnections, &[("a", 2), ("b", 1)]);
    let _a = lease_on(&p, "a");
    let _b = lease_on(&p, "b");
    // a: 1 of weight 2 beats b: 1 of weight 1.
    let leases: Vec<Lease> = (0..3).map(|_| p.pick(None).expect("healthy")).collect();
    let addresses: Vec<String> = leases.iter().map(|l| l.address().to_string()).collect();
    let c = counts(&addresses);
    assert_eq!(c.get("a"), Some(&2));
    assert_eq!(c.get("b"), Some(&1));
}

#[test]
fn least_connections_breaks_ties_in_turn() {
    let p = pool(Algorithm::LeastConnections, &[("a", 1), ("b", 1), ("c", 1)]);
    assert_eq!(picks(&p, 6), ["a", "b", "c", "a", "b", "c"]);
}

#[tokio::test(start_paused = true)]
async fn least_connections_favours_a_fast_backend_under_uneven_latency() {
    let p = ServicePool::new(
        "svc",
        backends(&[("fast", 1), ("slow", 1)]),
        settings(Algorithm::LeastConnections),
        Arc::new(TokioTicker::new()),
    )
    .expect("valid");
    let mut tasks = Vec::new();
    // One request per millisecond; fast answers in 1 ms, slow in 50 ms.
    for _ in 0..200 {
        let lease = p.pick(None).expect("healthy");
        let latency = if lease.address() == "fast" {
            ms(1)
        } else {
            ms(50)
        };
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(latency).await;
            lease.success();
        }));
        tokio::time::sleep(ms(1)).await;
    }
    for t in tasks {
        t.await.expect("request task");
    }
    let status = p.status();
    let fast = status[0].picks;
    assert!(fast >= 160, "fast got {fast} of 200");
    assert!(status.iter().all(|s| s.in_flight == 0));
}

#[test]
fn lease_drop_ends_the_in_flight_request() {
    let p = pool(Algorithm::RoundRobin, &[("a", 1)]);
    let lease = p.pick(None).expect("healthy");
    assert_eq!(p.status()[0].in_flight, 1);
    drop(lease);
    assert_eq!(p.status()[0].in_flight, 0);
}

fn keys(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("10.1.{}.{}", i / 256, i % 256))
        .collect()
}

fn placement(p: &ServicePool, keys: &[String]) -> Vec<String> {
    keys.iter()
        .map(|k| p.pick(Some(k)).expect("healthy").address().to_string())
        .collect()
}

#[test]
fn ip_hash_keeps_a_key_on_its_backend() {
    let p = pool(Algorithm::IpHash, &[("a", 1), ("b", 1), ("c", 1)]);
    let k = keys(200);
    assert_eq!(placement(&p, &k), placement(&p, &k));
    let other = pool(Algorithm::IpHash, &[("a", 1), ("b", 1), ("c", 1)]);
    assert_eq!(
        placement(&p, &k),
        placement(&other, &k),
        "stable across pools"
    );
}

#[test]
fn ip_hash_moves_only_the_removed_backends_keys() {
    let four = pool(Algorithm::IpHash, &[("a", 1), ("b", 1), ("c", 1), ("d", 1)]);
    let three = pool(Algorithm::IpHash, &[("a", 1), ("b", 1), ("c", 1)]);
    let k = keys(2000);
    let before = placement(&four, &k);
    let after = placement(&three, &k);
    let mut moved = 0;
    for (b, a) in before.iter().zip(&after) {
        if b == "d" {
            moved += 1;
        } else {
            assert_eq!(b, a, "a key not on the removed backend moved");
        }
    }
    assert!((300..700).contains(&moved), "d held {moved} of 2000 keys");
}

#[test]
fn ip_hash_moves_only_an_unhealthy_backends_keys() {
    let p = pool(Algorithm::IpHash, &[("a", 1), ("b", 1), ("c", 1)]);
    let k = keys(1000);
    let before = placement(&p, &k);
    for _ in 0..3 {
        p.report_check("b", false).expect("known");
    }
    let after = placement(&p, &k);
    for (b, a) in before.iter().zip(&after) {
        if b != "b" {
            assert_eq!(b, a);
        } else {
            assert_ne!(a, "b");
        }
    }
}

#[test]
fn ip_hash_shares_keys_by_weight() {
    let p = pool(Algorithm::IpHash, &[("light", 1), ("heavy", 3)]);
    let all = placement(&p, &keys(4000));
    let heavy = counts(&all)["heavy"] as f64 / 4000.0;
    assert!((0.68..0.82).contains(&heavy), "heavy share {heavy}");
}

#[test]
fn ip_hash_without_a_key_falls_back_to_round_robin() {
    let p = pool(Algorithm::IpHash, &[("a", 1), ("b", 1)]);
    assert_eq!(picks(&p, 4), ["a", "b", "a", "b"]);
}

#[test]
fn backend_turns_unhealthy_after_the_unhealthy_threshold() {
    let p = pool(Algorithm::RoundRobin, &[("a", 1), ("b", 1)]);
    p.report_check("a", false).expect("known");
    p.report_check("a", false).expect("known");
    assert!(
        healthy(&p, "a"),
        "two failures are below the threshold of 3"
    );
    p.report_check("a", false).expect("known");
    assert!(!healthy(&p, "a"));
}

#[test]
fn a_passing_check_interrupts_the_failure_streak() {
    let p = pool(Algorithm::RoundRobin, &[("a", 1)]);
    for ok in [false, false, true, false, false] {
        p.report_check("a", ok).expect("known");
    }
    assert!(healthy(&p, "a"));
}

#[test]
fn backend_is_readmitted_after_the_healthy_threshold() {
    let p = pool(Algorithm::RoundRobin, &[("a", 1)]);
    for _ in 0..3 {
        p.report_check("a", false).expect("known");
    }
    p.report_check("a", true).expect("known");
    assert!(!healthy(&p, "a"), "one pass is below the threshold of 2");
    p.report_check("a", true).expect("known");
    assert!(healthy(&p, "a"));
    assert!(p.pick(None).is_ok());
}

#[test]
fn all_unhealthy_gives_no_healthy_backend() {
    let p = pool(Algorithm::LeastConnections, &[("a", 1), ("b", 1)]);
    for a in ["a", "b"] {
        for _ in 0..3 {
            p.report_check(a, false).expect("known");
        }
    }
    let err = p.pick(None).unwrap_err();
    assert_eq!(err, PoolError::NoHealthyBackend { pool: "svc".into() });
    assert_eq!(err.to_string(), "no healthy backend in pool svc");
}

#[test]
fn report_check_of_an_unknown_backend_fails() {
    let p = pool(Algorithm::RoundRobin, &[("a", 1)]);
    assert!(matches!(
        p.report_check("z", true),
        Err(PoolError::UnknownBackend { .. })
    ));
}

#[test]
fn backend_is_ejected_after_consecutive_failures() {
    let p = pool(Algorithm::RoundRobin, &[("a", 1), ("b", 1)]);
    lease_on(&p, "a").failure();
    lease_on(&p, "a").failure();
    assert!(healthy(&p, "a"));
    lease_on(&p, "a").failure();
    let status = &p.status()[0];
    assert!(status.ejected && !status.healthy);
    assert_eq!(status.ejections, 1);
    assert!(picks(&p, 6).iter().all(|a| a == "b"));
}

#[test]
fn a_success_interrupts_the_outlier_failure_streak() {
    let p = pool(Algorithm::RoundRobin, &[("a", 1), ("b", 1)]);
    lease_on(&p, "a").failure();
    lease_on(&p, "a").failure();
    lease_on(&p, "a").success();
    lease_on(&p, "a").failure();
    lease_on(&p, "a").failure();
    assert!(healthy(&p, "a"));
}

#[test]
fn ejected_backend_is_readmitted_after_the_ejection_time() {
    let (p, ticker) = pool_with(Algorithm::RoundRobin, &[("a", 1), ("b", 1)]);
    for _ in 0..3 {
        lease_on(&p, "a").failure();
    }
    ticker.advance(Duration::from_secs(29));
    assert!(!healthy(&p, "a"));
    ticker.advance(Duration::from_secs(1));
    assert!(healthy(&p, "a"));
    assert!(picks(&p, 4).iter().any(|a| a == "a"));
}

#[derive(Debug, Default)]
struct FakeChecker {
    failing: AtomicBool,
    delay: Option<Duration>,
    calls: AtomicU32,
}

#[async_trait]
impl HealthChecker for FakeChecker {
    async fn check(&self, _address: &str, path: &str, _timeout: Duration) -> bool {
        assert_eq!(path, DEFAULT_HEALTH_CHECK_PATH);
        self.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(d) = self.delay {
            tokio::time::sleep(d).await;
        }
        !self.failing.load(Ordering::SeqCst)
    }
}

#[tokio::test(start_paused = true)]
async fn health_checks_run_each_interval_and_stop_when_dropped() {
    let (p, _) = pool_with(Algorithm::RoundRobin, &[("a", 1), ("b", 1)]);
    let checker = Arc::new(FakeChecker {
        failing: AtomicBool::new(true),
        ..FakeChecker::default()
    });
    let task = spawn_health_checks(p.clone(), checker.clone());
    // Rounds at 0 s, 5 s and 10 s: three failures each.
    tokio::time::sleep(ms(10_001)).await;
    assert_eq!(checker.calls.load(Ordering::SeqCst), 6);
    assert!(p.pick(None).is_err());
    checker.failing.store(false, Ordering::SeqCst);
    tokio::time::sleep(ms(10_000)).await;
    assert!(p.pick(None).is_ok(), "two passes readmit");
    drop(task);
    let calls = checker.calls.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(checker.calls.load(Ordering::SeqCst), calls);
}

#[tokio::test(start_paused = true)]
async fn health_check_task_stop_waits_for_the_task() {
    let (p, _) = pool_with(Algorithm::RoundRobin, &[("a", 1)]);
    let checker = Arc::new(FakeChecker::default());
    let task = spawn_health_checks(p, checker.clone());
    tokio::time::sleep(ms(1)).await;
    task.stop().await;
    let calls = checker.calls.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(checker.calls.load(Ordering::SeqCst), calls);
}

#[tokio::test(start_paused = true)]
async fn a_check_outlasting_the_timeout_fails() {
    let (p, _) = pool_with(Algorithm::RoundRobin, &[("a", 1)]);
    let checker = FakeChecker {
        delay: Some(Duration::from_secs(3)),
        ..FakeChecker::default()
    };
    for _ in 0..3 {
        p.check_all(&checker).await;
    }
    assert!(!healthy(&p, "a"));
}
