//! Circuit breakers and bulkheads in front of sources: a source that keeps
//! failing opens its connection's breaker, and the next sync fails fast
//! saying so; `/health` and `/metrics` show it; operators force a breaker
//! open or closed, or reset it, through the API.

use serde_json::json;

use crate::server::{Options, SourceDir, TestServer};

/// A breaker that decides after two calls and stays open for an hour.
const BREAKER_YAML: &str = "sync:\n  max_attempts: 1\ncircuit_breaker:\n  services:\n    files:\n      minimum_calls: 2\n      sliding_window_size: 2\n      wait_duration_in_open: 1h\n";

#[test]
fn a_failing_source_opens_its_breaker_and_syncs_fail_fast_until_a_reset() {
    let src = SourceDir::new();
    src.write("t.csv", "a\n1\n2\n");
    let vega = TestServer::start_with(Options {
        extra_yaml: BREAKER_YAML.into(),
        allowed_roots: vec![src.path()],
        ..Options::default()
    });
    let con = vega.file_connection("files", &src.path());
    let asset = vega.asset(&con, "s", "t", json!({ "path": "t.csv" }));
    assert_eq!(vega.sync(&asset)["state"], "succeeded");

    // The source file goes away: one success and one failure in a window
    // of two is a failure rate of 50 %, the default threshold.
    std::fs::remove_file(src.path().join("t.csv")).unwrap();
    let job = vega.sync(&asset);
    assert_eq!(job["state"], "failed", "{job}");
    assert!(
        !job["error"].as_str().unwrap().contains("circuit breaker"),
        "{job}"
    );
    // Open: the next sync fails at once without reading the (restored)
    // source, and says why.
    src.write("t.csv", "a\n1\n2\n3\n");
    let job = vega.sync(&asset);
    assert_eq!(job["state"], "failed", "{job}");
    let error = job["error"].as_str().unwrap();
    assert!(
        error.contains("circuit breaker of connection 'files' is open"),
        "{error}"
    );
    assert_eq!(vega.sql("SELECT count(*) FROM s.t")["rows"], json!([[2]]));

    // Health says degraded and shows the breaker; metrics carry its state.
    let health = vega.get("/health");
    assert_eq!(health.json()["status"], "degraded", "{}", health.text);
    let breakers = health.json()["breakers"].clone();
    let files = breakers
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["service"] == "files")
        .cloned()
        .unwrap_or_else(|| panic!("{breakers}"));
    assert_eq!(files["state"], "open");
    assert_eq!(files["failure_rate"], 50.0);
    assert_eq!(files["fallback"], "fail_fast");
    assert_eq!(
        vega.metric("vega_circuit_breaker_state{service=\"files\",state=\"open\"}"),
        Some(1.0)
    );
    assert_eq!(
        vega.metric("vega_circuit_breaker_state{service=\"files\",state=\"closed\"}"),
        Some(0.0)
    );

    // Reset: closed again, and the sync reads the source.
    let r = vega.put("/api/v1/breakers/files", &json!({ "action": "reset" }));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["state"], "closed");
    assert_eq!(vega.sync(&asset)["state"], "succeeded");
    assert_eq!(vega.sql("SELECT count(*) FROM s.t")["rows"], json!([[3]]));

    // Forced open: rejected without a call; disabled (forced closed):
    // every call passes and nothing is recorded.
    let r = vega.put("/api/v1/breakers/files", &json!({ "action": "force_open" }));
    assert_eq!(r.json()["state"], "forced_open", "{}", r.text);
    let job = vega.sync(&asset);
    assert!(
        job["error"].as_str().unwrap().contains("is forced_open"),
        "{job}"
    );
    let r = vega.put("/api/v1/breakers/files", &json!({ "action": "disable" }));
    assert_eq!(r.json()["state"], "disabled", "{}", r.text);
    std::fs::remove_file(src.path().join("t.csv")).unwrap();
    for _ in 0..3 {
        let job = vega.sync(&asset);
        assert!(
            !job["error"].as_str().unwrap().contains("circuit breaker"),
            "{job}"
        );
    }
    let list = vega.get("/api/v1/breakers").json();
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|b| b["service"] == "files"
                && b["state"] == "disabled"
                && b["buffered_calls"] == 0),
        "{list}"
    );
}

#[test]
fn breaker_requests_with_bad_input_are_refused_and_change_nothing() {
    let vega = TestServer::start();
    let r = vega.put("/api/v1/breakers/nosuch", &json!({ "action": "reset" }));
    assert_eq!(r.status, 404, "{}", r.text);
    assert!(r.message().contains("nosuch"), "{}", r.text);
    let src = SourceDir::new();
    let vega = TestServer::start_with(Options {
        allowed_roots: vec![src.path()],
        ..Options::default()
    });
    vega.file_connection("files", &src.path());
    let r = vega.put("/api/v1/breakers/files", &json!({ "action": "explode" }));
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.message().contains("explode"), "{}", r.text);
    let r = vega.put("/api/v1/breakers/files", &json!({}));
    assert_eq!(r.status, 400, "{}", r.text);
    // Nothing was stored: no breaker was touched.
    assert_eq!(vega.get("/api/v1/breakers").json(), json!([]));
}

/// Settings out of range and unknown fallbacks are refused by `vega
/// config check` with their key paths (exit 78, as for any bad setting).
#[test]
fn breaker_settings_out_of_range_are_refused_with_their_key_path() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "circuit_breaker:\n  default:\n    failure_rate_threshold: 0\n    slow_call_rate_threshold: 101\n    sliding_window_size: 0\n",
            vec![
                "circuit_breaker.default.failure_rate_threshold",
                "circuit_breaker.default.slow_call_rate_threshold",
                "circuit_breaker.default.sliding_window_size",
            ],
        ),
        (
            "circuit_breaker:\n  services:\n    trino:\n      fallback: teleport\n",
            vec!["circuit_breaker.services.trino.fallback", "teleport"],
        ),
        (
            "circuit_breaker:\n  services:\n    files:\n      fallback: route_to_duckdb\n",
            vec!["circuit_breaker.services.files.fallback"],
        ),
    ];
    for (yaml, keys) in cases {
        let path = dir.path().join("vega.yaml");
        std::fs::write(&path, yaml).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_vega"))
            .arg("--config")
            .arg(&path)
            .args(["config", "check"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(78), "{yaml}");
        let err = String::from_utf8_lossy(&out.stderr);
        for key in keys {
            assert!(err.contains(key), "{key} not reported for {yaml}:\n{err}");
        }
    }
}

/// An MQTT broker that keeps refusing connections opens its connection's
/// breaker: the consumer holds its attempts back and health says why.
#[test]
fn a_broker_that_keeps_refusing_opens_its_connections_breaker() {
    let port = vega_testkit::ports::free_port();
    let vega = TestServer::start_with(Options {
        extra_yaml: "circuit_breaker:\n  services:\n    broker-edge-cb:\n      minimum_calls: 2\n      sliding_window_size: 2\n      wait_duration_in_open: 1h\n".into(),
        ..Options::default()
    });
    crate::mqtt::mqtt_asset(&vega, port, "edge", "cb", json!({ "topic": "cb/#" }));
    crate::mqtt::wait_until(
        "the breaker to open and health to say so",
        std::time::Duration::from_secs(30),
        || {
            let h = crate::mqtt::connection_health(&vega, "broker-edge-cb");
            h["last_error"].as_str().is_some_and(|e| {
                e.contains("circuit breaker of connection 'broker-edge-cb' is open")
            })
        },
    );
    let list = vega.get("/api/v1/breakers").json();
    let breaker = list
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["service"] == "broker-edge-cb")
        .cloned()
        .unwrap_or_else(|| panic!("{list}"));
    assert_eq!(breaker["state"], "open", "{breaker}");
    assert_eq!(breaker["failed_calls"], 2, "{breaker}");
}

/// A slow source cannot hold every sync worker: with one slot per
/// connection, a second sync of the slow connection waits for it without
/// a worker, and a sync of another source runs meanwhile.
#[test]
fn a_slow_source_leaves_a_sync_worker_for_the_others() {
    let pg = vega_testkit::postgres::TestPostgres::start();
    let src = SourceDir::new();
    src.write("t.csv", "a\n1\n");
    let vega = TestServer::start_with(Options {
        env: vec![("PG_TEST_PASSWORD".into(), pg.password().to_string())],
        extra_yaml:
            "sync:\n  max_concurrent_jobs: 2\nresilience:\n  bulkhead:\n    per_connection: 1\n"
                .into(),
        allowed_roots: vec![src.path()],
        ..Options::default()
    });
    let r = vega.post(
        "/api/v1/connections",
        &json!({ "name": "slow-pg", "type": "postgres", "params": {
            "host": pg.host(), "port": pg.port(), "database": pg.database(), "user": pg.user(),
            "password": { "env": "PG_TEST_PASSWORD" } } }),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let pg_con = r.json()["id"].as_str().unwrap().to_string();
    let slow = "SELECT g AS x FROM generate_series(1, 3) g CROSS JOIN (SELECT pg_sleep(4)) s";
    let slow_a = vega.asset(&pg_con, "plant", "slow_a", json!({ "query": slow }));
    let slow_b = vega.asset(&pg_con, "plant", "slow_b", json!({ "query": slow }));
    let files = vega.file_connection("files", &src.path());
    let quick = vega.asset(&files, "s", "quick", json!({ "path": "t.csv" }));
    let start = |asset: &str| {
        let r = vega.post(&format!("/api/v1/assets/{asset}/sync"), &json!({}));
        assert_eq!(r.status, 202, "{}", r.text);
        r.json()["id"].as_str().unwrap().to_string()
    };
    let (a, b) = (start(&slow_a), start(&slow_b));
    std::thread::sleep(std::time::Duration::from_millis(500));
    let q = start(&quick);
    let quick_job = vega.wait_job(&q);
    assert_eq!(quick_job["state"], "succeeded", "{quick_job}");
    let a_job = vega.wait_job(&a);
    let b_job = vega.wait_job(&b);
    assert_eq!(a_job["state"], "succeeded", "{a_job}");
    assert_eq!(b_job["state"], "succeeded", "{b_job}");
    // The quick sync did not wait for a slow one to free a worker: it
    // ended before the first slow sync did, and the second slow sync only
    // read its connection after the first.
    let at = |j: &serde_json::Value| {
        chrono::DateTime::parse_from_rfc3339(j["finished_at"].as_str().unwrap()).unwrap()
    };
    assert!(at(&quick_job) < at(&a_job), "{quick_job}\n{a_job}");
    // The source sleeps 4 s per read: after the first ended, the second
    // still needed its whole read.
    assert!(
        at(&b_job) - at(&a_job) >= chrono::Duration::seconds(3),
        "the slow syncs overlapped:\n{a_job}\n{b_job}"
    );
}
