//! Trino as the remote engine, against a protocol-faithful Trino test
//! server (Trino itself cannot be installed here; see
//! `vega_testkit::trino`): statements the sandbox accepted go to a
//! coordinator, Trino's own errors come back as they are, and when Trino
//! fails its breaker opens and `route_to_duckdb` lets DuckDB answer —
//! the response, the log and a metric say so.

use serde_json::json;
use vega_testkit::trino::{Script, TrinoErrorSpec, TrinoTestServer};

use crate::server::{Options, SourceDir, TestServer};

fn start(trino: &TrinoTestServer, fallback: &str, src: &SourceDir) -> TestServer {
    start_with(trino, fallback, src, "")
}

fn start_with(trino: &TrinoTestServer, fallback: &str, src: &SourceDir, extra: &str) -> TestServer {
    TestServer::start_with(Options {
        extra_yaml: format!(
            "{extra}query:\n  trino:\n    coordinators: [\"{}\"]\n    catalog: vega\n    health_check:\n      interval: 30s\n      timeout: 1s\ncircuit_breaker:\n  services:\n    trino:\n      failure_rate_threshold: 40\n      minimum_calls: 2\n      sliding_window_size: 2\n      wait_duration_in_open: 1h\n      fallback: {fallback}\n",
            trino.url()
        ),
        allowed_roots: vec![src.path()],
        ..Options::default()
    })
}

fn query(
    vega: &TestServer,
    sql: &str,
    engine: &str,
) -> (u16, serde_json::Value, Option<String>, Option<String>) {
    let r = vega
        .client()
        .post(format!("{}/api/v1/query", vega.api))
        .header("cache-control", "no-store")
        .json(&json!({ "sql": sql, "engine": engine }))
        .send()
        .unwrap();
    let header = |name: &str| {
        r.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    let (engine, fallback) = (header("x-vega-engine"), header("x-vega-fallback"));
    let status = r.status().as_u16();
    (status, r.json().unwrap_or_default(), engine, fallback)
}

#[test]
fn trino_answers_and_duckdb_takes_over_when_its_breaker_opens() {
    let trino = TrinoTestServer::start();
    let src = SourceDir::new();
    src.write("t.csv", "a\n1\n2\n3\n");
    let vega = start(&trino, "route_to_duckdb", &src);
    let con = vega.file_connection("files", &src.path());
    let asset = vega.asset(&con, "s", "t", json!({ "path": "t.csv" }));
    assert_eq!(vega.sync(&asset)["state"], "succeeded");
    // Trino's answer differs from DuckDB's, to tell who answered.
    let sql = "SELECT sum(a) AS total FROM s.t";
    trino.script(
        sql,
        Script::rows(&[("total", "bigint")], vec![vec![json!(600)]]),
    );

    let (status, body, engine, fallback) = query(&vega, sql, "trino");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"], json!([[600]]));
    assert_eq!(body["engine"], "trino");
    assert_eq!((engine.as_deref(), fallback), (Some("trino"), None));
    assert_eq!(body["assets"], json!([{ "name": "s.t", "version": "v1" }]));
    let post = trino
        .requests()
        .into_iter()
        .find(|r| r.method == "POST")
        .unwrap();
    assert_eq!(post.header("x-trino-user"), Some("vega"));
    assert_eq!(post.header("x-trino-catalog"), Some("vega"));
    assert_eq!(post.body, sql);

    // `auto` with the default size threshold (10 GiB): DuckDB.
    let before = trino.statements().len();
    let (_, body, engine, _) = query(&vega, sql, "auto");
    assert_eq!(
        (body["rows"].clone(), engine.as_deref()),
        (json!([[6]]), Some("duckdb"))
    );
    assert_eq!(trino.statements().len(), before, "auto did not call trino");

    // Trino's verdict on the statement comes back as is, and is not held
    // against Trino.
    let bad = "SELECT a FROM s.t WHERE a > 1";
    trino.script(
        bad,
        Script::failing(TrinoErrorSpec::syntax_error("mismatched input 'WHERE'")),
    );
    let (status, body, _, _) = query(&vega, bad, "trino");
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("mismatched input"),
        "{body}"
    );

    // The sandbox refuses before Trino sees anything.
    let before = trino.statements().len();
    let (status, _, _, _) = query(&vega, "SELECT * FROM read_csv('/etc/passwd')", "trino");
    assert_eq!(status, 403);
    assert_eq!(trino.statements().len(), before);

    // Trino goes down: DuckDB answers, saying why. With the success
    // before, that is one failure in a window of two: 50 %, past the
    // threshold of 40 %...
    trino.set_available(false);
    let (status, body, engine, fallback) = query(&vega, sql, "trino");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"], json!([[6]]));
    assert_eq!(body["engine"], "duckdb");
    assert_eq!(
        (engine.as_deref(), fallback.as_deref()),
        (Some("duckdb"), Some("error"))
    );
    // ...so the breaker is open: DuckDB answers without a call.
    let before = trino.requests().len();
    let (_, body, _, fallback) = query(&vega, sql, "trino");
    assert_eq!(
        (body["rows"].clone(), fallback.as_deref()),
        (json!([[6]]), Some("breaker_open"))
    );
    assert_eq!(trino.requests().len(), before, "no call while open");
    assert_eq!(
        vega.metric("vega_query_fallbacks_total{from=\"trino\",to=\"duckdb\",reason=\"error\"}"),
        Some(1.0)
    );
    assert_eq!(
        vega.metric(
            "vega_query_fallbacks_total{from=\"trino\",to=\"duckdb\",reason=\"breaker_open\"}"
        ),
        Some(1.0)
    );
    assert!(vega
        .logs()
        .contains("trino did not answer; DuckDB answers instead"));
    let health = vega.get("/health").json();
    let breaker = health["breakers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["service"] == "trino")
        .cloned()
        .unwrap();
    assert_eq!(
        (breaker["state"].clone(), breaker["fallback"].clone()),
        (json!("open"), json!("route_to_duckdb"))
    );

    // Back up and reset: Trino answers again.
    trino.set_available(true);
    let r = vega.put("/api/v1/breakers/trino", &json!({ "action": "reset" }));
    assert_eq!(r.status, 200, "{}", r.text);
    let (_, body, engine, _) = query(&vega, sql, "trino");
    assert_eq!(
        (body["rows"].clone(), engine.as_deref()),
        (json!([[600]]), Some("trino"))
    );
}

/// Without a fallback a failing Trino is a 503 naming it; without
/// `query.trino`, asking for Trino is refused.
#[test]
fn without_a_fallback_a_failing_trino_is_unavailable() {
    let trino = TrinoTestServer::start();
    let src = SourceDir::new();
    src.write("t.csv", "a\n1\n");
    let vega = start(&trino, "fail_fast", &src);
    let con = vega.file_connection("files", &src.path());
    let asset = vega.asset(&con, "s", "t", json!({ "path": "t.csv" }));
    assert_eq!(vega.sync(&asset)["state"], "succeeded");
    trino.set_available(false);
    let (status, body, _, _) = query(&vega, "SELECT count(*) FROM s.t", "trino");
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("trino"),
        "{body}"
    );

    let plain = TestServer::start();
    let (status, body, _, _) = query(&plain, "SELECT 1", "trino");
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("query.trino"),
        "{body}"
    );
    let (status, _, _, _) = query(&plain, "SELECT 1", "presto");
    assert_eq!(status, 400);
}

/// At most `resilience.bulkhead.per_pool` queries run on Trino at once: a
/// query arriving while the pool is full is answered by DuckDB, saying why.
#[test]
fn a_full_trino_bulkhead_routes_to_duckdb() {
    let trino = TrinoTestServer::start();
    let src = SourceDir::new();
    src.write("t.csv", "a\n1\n2\n");
    let vega = start_with(
        &trino,
        "route_to_duckdb",
        &src,
        "resilience:\n  bulkhead:\n    per_pool: 1\n",
    );
    let con = vega.file_connection("files", &src.path());
    let asset = vega.asset(&con, "s", "t", json!({ "path": "t.csv" }));
    assert_eq!(vega.sync(&asset)["state"], "succeeded");
    let slow = "SELECT max(a) AS m FROM s.t";
    trino.script(
        slow,
        Script {
            pages: 2,
            delay_per_page: std::time::Duration::from_secs(2),
            ..Script::rows(&[("m", "bigint")], vec![vec![json!(200)]])
        },
    );
    let fast = "SELECT min(a) AS m FROM s.t";
    trino.script(
        fast,
        Script::rows(&[("m", "bigint")], vec![vec![json!(100)]]),
    );
    std::thread::scope(|scope| {
        let first = scope.spawn(|| query(&vega, slow, "trino"));
        std::thread::sleep(std::time::Duration::from_millis(500));
        let (status, body, engine, fallback) = query(&vega, fast, "trino");
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["rows"], json!([[1]]), "DuckDB's answer");
        assert_eq!(
            (engine.as_deref(), fallback.as_deref()),
            (Some("duckdb"), Some("bulkhead_full"))
        );
        let (status, body, engine, _) = first.join().unwrap();
        assert_eq!((status, engine.as_deref()), (200, Some("trino")), "{body}");
        assert_eq!(body["rows"], json!([[200]]));
    });
}

/// With `engine: auto`, statements reading an asset of
/// `query.trino.assets` go to Trino whatever their size; others stay on
/// DuckDB.
#[test]
fn auto_sends_the_assets_listed_for_trino_to_trino() {
    let trino = TrinoTestServer::start();
    let src = SourceDir::new();
    src.write("t.csv", "a\n1\n2\n");
    src.write("u.csv", "a\n5\n");
    let vega = TestServer::start_with(Options {
        extra_yaml: format!(
            "query:\n  trino:\n    coordinators: [\"{}\"]\n    assets: [s.t]\n    health_check:\n      interval: 30s\n      timeout: 1s\n",
            trino.url()
        ),
        allowed_roots: vec![src.path()],
        ..Options::default()
    });
    let con = vega.file_connection("files", &src.path());
    for (name, file) in [("t", "t.csv"), ("u", "u.csv")] {
        let asset = vega.asset(&con, "s", name, json!({ "path": file }));
        assert_eq!(vega.sync(&asset)["state"], "succeeded");
    }
    let on_trino = "SELECT count(*) AS n FROM s.t";
    trino.script(
        on_trino,
        Script::rows(&[("n", "bigint")], vec![vec![json!(700)]]),
    );
    let (_, body, engine, _) = query(&vega, on_trino, "auto");
    assert_eq!(
        (body["rows"].clone(), engine.as_deref()),
        (json!([[700]]), Some("trino"))
    );
    let (_, body, engine, _) = query(&vega, "SELECT count(*) AS n FROM s.u", "auto");
    assert_eq!(
        (body["rows"].clone(), engine.as_deref()),
        (json!([[1]]), Some("duckdb"))
    );
}

/// An `https` coordinator signed by a private CA, trusted through
/// `query.trino.ca_file`; a CA file that cannot be read stops the start.
#[test]
fn an_https_coordinator_with_a_private_ca_answers() {
    let trino = TrinoTestServer::start();
    let front = vega_testkit::tls::TlsFront::start(trino.addr());
    trino.set_public_url(&front.url());
    let src = SourceDir::new();
    src.write("t.csv", "a\n1\n");
    let vega = TestServer::start_with(Options {
        extra_yaml: format!(
            "query:\n  trino:\n    coordinators: [\"{}\"]\n    ca_file: \"{}\"\n    health_check:\n      interval: 200ms\n      timeout: 150ms\n",
            front.url(),
            front.ca_file().display()
        ),
        allowed_roots: vec![src.path()],
        ..Options::default()
    });
    let con = vega.file_connection("files", &src.path());
    let asset = vega.asset(&con, "s", "t", json!({ "path": "t.csv" }));
    assert_eq!(vega.sync(&asset)["state"], "succeeded");
    let sql = "SELECT count(*) AS n FROM s.t";
    trino.script(
        sql,
        Script::rows(&[("n", "bigint")], vec![vec![json!(900)]]),
    );
    // Several health checks over TLS have run: they trust the CA too, so
    // the coordinator stays in the pool.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let (status, body, engine, fallback) = query(&vega, sql, "trino");
    assert_eq!(fallback, None, "{body}");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["rows"].clone(), engine.as_deref()),
        (json!([[900]]), Some("trino"))
    );

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("vega.yaml");
    std::fs::write(
        &config,
        format!(
            "data_dir: \"{}\"\napi:\n  listen: 127.0.0.1:0\nops:\n  listen: 127.0.0.1:0\nquery:\n  trino:\n    coordinators: [\"{}\"]\n    ca_file: /nonexistent/ca.pem\n",
            dir.path().join("data").display(),
            front.url()
        ),
    )
    .unwrap();
    let out = crate::server::vega_command()
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(err.contains("/nonexistent/ca.pem"), "{err}");
}
