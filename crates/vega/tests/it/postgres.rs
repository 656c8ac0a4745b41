//! Syncing from a real PostgreSQL, started per test on a free loopback port:
//! full and incremental syncs through the API, the password only by
//! reference, and a source that goes down.

use serde_json::json;
use vega_testkit::postgres::TestPostgres;

use crate::server::{Options, TestServer};

fn vega_for(pg: &TestPostgres) -> (TestServer, String) {
    let vega = TestServer::start_with(Options {
        env: vec![("PG_TEST_PASSWORD".into(), pg.password().to_string())],
        extra_yaml:
            "sync:\n  max_attempts: 2\n  retry_initial_backoff: 50ms\n  retry_max_backoff: 100ms\n"
                .into(),
        ..Options::default()
    });
    let r = vega.post(
        "/api/v1/connections",
        &json!({ "name": "pg", "type": "postgres", "params": {
            "host": pg.host(), "port": pg.port(), "database": pg.database(), "user": pg.user(),
            "password": { "env": "PG_TEST_PASSWORD" } } }),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert!(
        !r.text.contains(pg.password()),
        "the password is never returned"
    );
    let con = r.json()["id"].as_str().unwrap().to_string();
    (vega, con)
}

#[test]
fn full_and_incremental_sync_from_postgres() {
    let pg = TestPostgres::start();
    pg.execute(
        "CREATE TABLE orders (id int PRIMARY KEY, placed timestamptz NOT NULL, amount numeric(10,2), tags text[]);
         INSERT INTO orders VALUES
           (1, '2026-01-01 10:00:00+00', 10.50, ARRAY['a']),
           (2, '2026-01-02 10:00:00+00', NULL, ARRAY['b','c']),
           (3, '2026-01-02 10:00:00+00', 7.25, NULL);",
    );
    let (vega, con) = vega_for(&pg);

    // A full sync keeps types and NULLs.
    let full = vega.asset(&con, "shop", "orders", json!({ "table": "public.orders" }));
    assert_eq!(vega.sync(&full)["state"], "succeeded");
    let r = vega.sql("SELECT id, amount, tags, placed FROM shop.orders ORDER BY id");
    assert_eq!(r["columns"][1]["type"], "DECIMAL(10,2)");
    assert_eq!(r["columns"][2]["type"], "VARCHAR[]");
    assert!(r["columns"][3]["type"]
        .as_str()
        .unwrap()
        .starts_with("TIMESTAMP"));
    assert_eq!(r["rows"][1][1], serde_json::Value::Null);
    assert_eq!(r["rows"][1][2], json!(["b", "c"]));

    // Incremental: ties at the watermark are neither lost nor duplicated.
    let r = vega.post(
        "/api/v1/assets",
        &json!({ "namespace": "shop", "name": "orders_inc", "connection_id": con, "sync_mode": "incremental",
                 "source": { "table": "public.orders", "cursor_column": "placed", "key_columns": ["id"] } }),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let inc = r.json()["id"].as_str().unwrap().to_string();
    let r = vega.post(
        &format!("/api/v1/assets/{inc}/sync?mode=incremental"),
        &json!({}),
    );
    assert_eq!(
        vega.wait_job(r.json()["id"].as_str().unwrap())["state"],
        "succeeded"
    );
    pg.execute(
        "INSERT INTO orders VALUES (4, '2026-01-02 10:00:00+00', 1.00, NULL), (5, '2026-01-03 10:00:00+00', 2.00, NULL);",
    );
    let r = vega.post(
        &format!("/api/v1/assets/{inc}/sync?mode=incremental"),
        &json!({}),
    );
    let job = vega.wait_job(r.json()["id"].as_str().unwrap());
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["rows"], 2);
    assert_eq!(
        vega.sql("SELECT id FROM shop.orders_inc ORDER BY id")["rows"],
        json!([[1], [2], [3], [4], [5]])
    );
}

#[test]
fn a_source_that_is_down_fails_after_its_retries_and_keeps_the_active_version() {
    let mut pg = TestPostgres::start();
    pg.execute("CREATE TABLE t (id int); INSERT INTO t VALUES (1), (2);");
    let (vega, con) = vega_for(&pg);
    let asset = vega.asset(&con, "s", "t", json!({ "table": "public.t" }));
    assert_eq!(vega.sync(&asset)["state"], "succeeded");
    pg.stop();
    let job = vega.sync(&asset);
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["attempts"], 2, "retried once: {job}");
    assert!(
        job["error"].as_str().unwrap().contains("cannot reach"),
        "{job}"
    );
    assert_eq!(vega.sql("SELECT count(*) FROM s.t")["rows"], json!([[2]]));
    let health = vega
        .client()
        .get(format!("{}/health", vega.ops))
        .send()
        .unwrap();
    let report: serde_json::Value = health.json().unwrap();
    assert_eq!(report["status"], "degraded", "{report}");
    let metrics = vega
        .client()
        .get(format!("{}/metrics", vega.ops))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("vega_sync_failures_total{asset=\"s.t\"} 1"),
        "{metrics}"
    );
}

#[test]
fn plain_text_passwords_and_bad_sources_are_refused() {
    let pg = TestPostgres::start();
    let (vega, con) = vega_for(&pg);
    let r = vega.post(
        "/api/v1/connections",
        &json!({ "name": "pg2", "type": "postgres", "params": {
            "host": pg.host(), "port": pg.port(), "database": pg.database(), "user": pg.user(),
            "password": "hunter2" } }),
    );
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(r.message().contains("password"), "{}", r.text);
    assert!(!r.text.contains("hunter2"));
    let r = vega.post(
        "/api/v1/assets",
        &json!({ "namespace": "s", "name": "missing", "connection_id": con, "source": { "table": "public.nope" } }),
    );
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(r.message().contains("nope"), "{}", r.text);
}

#[test]
fn wrong_credentials_fail_at_once_without_retries() {
    let pg = TestPostgres::start();
    pg.execute("CREATE TABLE t (id int); INSERT INTO t VALUES (1);");
    let (vega, con) = vega_for(&pg);
    let asset = vega.asset(&con, "s", "t", json!({ "table": "public.t" }));
    assert_eq!(vega.sync(&asset)["state"], "succeeded");
    // The password changes under Vega's feet.
    pg.execute(&format!(
        "ALTER ROLE \"{}\" PASSWORD 'a-new-password'",
        pg.user()
    ));
    let job = vega.sync(&asset);
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(
        job["attempts"], 1,
        "a permanent error is not retried: {job}"
    );
    assert!(
        job["error"].as_str().unwrap().contains("credentials"),
        "{job}"
    );
    let r = vega.post(&format!("/api/v1/connections/{con}/test"), &json!({}));
    assert_eq!(r.json()["ok"], false, "{}", r.text);
    assert!(!r.text.contains(pg.password()));
    assert_eq!(vega.sql("SELECT count(*) FROM s.t")["rows"], json!([[1]]));
}
