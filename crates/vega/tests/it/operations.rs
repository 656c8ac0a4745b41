//! Runbook operations at runtime: the result cache (hits, misses, never a
//! stale answer, `Cache-Control`, `DELETE /api/v1/cache`) and the rate
//! limits (`PUT/GET /api/v1/rate-limit`, 429 with `Retry-After`, per-key
//! buckets, exemptions), on one node and across nodes sharing a catalog.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vega_testkit::postgres::TestPostgres;

use crate::server::{Options, Resp, SourceDir, TestServer};

const ADMIN: &str = "vega_operations_admin_key_0123456789";

fn query(vega: &TestServer, sql: &str, headers: &[(&str, &str)]) -> Resp {
    let mut rb = vega
        .client()
        .post(format!("{}/api/v1/query", vega.api))
        .json(&json!({ "sql": sql }));
    if let Some(key) = &vega.admin_key {
        rb = rb.bearer_auth(key);
    }
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    Resp::from(rb.send())
}

fn cache_header(r: &Resp) -> String {
    r.headers
        .get("x-vega-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

fn rows(r: &Resp) -> Value {
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["rows"].clone()
}

#[test]
fn answers_are_cached_until_the_data_changes() {
    let src = SourceDir::new();
    src.write("t.csv", "a\n1\n2\n");
    let vega = TestServer::start_with(Options {
        allowed_roots: vec![src.path()],
        ..Options::default()
    });
    let con = vega.file_connection("files", &src.path());
    let asset = vega.asset(&con, "s", "t", json!({ "path": "t.csv" }));
    assert_eq!(vega.sync(&asset)["state"], "succeeded");

    let sql = "SELECT count(*) FROM s.t";
    let first = query(&vega, sql, &[]);
    assert_eq!(cache_header(&first), "miss");
    assert_eq!(rows(&first), json!([[2]]));
    // The same statement, spelt differently, is answered from the cache
    // with the very same bytes.
    let second = query(&vega, "select   COUNT(*)\nfrom s.t -- again", &[]);
    assert_eq!(cache_header(&second), "hit");
    assert_eq!(second.text, first.text);
    assert!(vega.metric_sum("vega_cache_hits_total") >= 1.0);
    assert!(vega.metric_sum("vega_cache_bytes") > 0.0);

    // `no-cache` computes afresh; `no-store` neither reads nor keeps.
    let fresh = query(&vega, sql, &[("cache-control", "no-cache")]);
    assert_eq!(cache_header(&fresh), "miss");
    let bypass = query(&vega, sql, &[("cache-control", "no-store")]);
    assert_eq!(cache_header(&bypass), "bypass");

    // A new version is never answered from an entry of the old one.
    src.write("t.csv", "a\n1\n2\n3\n");
    assert_eq!(vega.sync(&asset)["state"], "succeeded");
    let after = query(&vega, sql, &[]);
    assert_eq!(cache_header(&after), "miss");
    assert_eq!(rows(&after), json!([[3]]));
    // A rollback neither.
    let r = vega.post(
        &format!("/api/v1/assets/{asset}/rollback?version=v1"),
        &json!({}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(rows(&query(&vega, sql, &[])), json!([[2]]));

    // Streamed rows arriving change the answer at once.
    let r = vega.post_text("/api/v2/write?bucket=tele", "m,host=a v=1 1\n", &[]);
    assert_eq!(r.status, 204, "{}", r.text);
    let live = "SELECT count(*) FROM tele.m";
    assert_eq!(rows(&query(&vega, live, &[])), json!([[1]]));
    assert_eq!(cache_header(&query(&vega, live, &[])), "hit");
    let r = vega.post_text("/api/v2/write?bucket=tele", "m,host=b v=2 2\n", &[]);
    assert_eq!(r.status, 204, "{}", r.text);
    let grown = query(&vega, live, &[]);
    assert_eq!(cache_header(&grown), "miss");
    assert_eq!(rows(&grown), json!([[2]]));

    // The clock is never cached.
    assert_eq!(cache_header(&query(&vega, "SELECT now()", &[])), "bypass");
    assert_eq!(cache_header(&query(&vega, "SELECT now()", &[])), "bypass");

    // Clearing empties it.
    assert_eq!(cache_header(&query(&vega, sql, &[])), "hit");
    let r = vega.delete("/api/v1/cache");
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.json()["entries"].as_u64().unwrap() >= 1);
    assert_eq!(cache_header(&query(&vega, sql, &[])), "miss");

    // Bad SQL is still refused, never cached.
    let bad = query(&vega, "SELEC 1", &[]);
    assert_eq!(bad.status, 400, "{}", bad.text);
}

#[test]
fn the_cache_can_be_turned_off() {
    let vega = TestServer::start_with(Options {
        extra_yaml: "cache:\n  enabled: false\n".into(),
        ..Options::default()
    });
    for _ in 0..2 {
        assert_eq!(cache_header(&query(&vega, "SELECT 42", &[])), "bypass");
    }
}

#[test]
fn rate_limits_apply_at_once_and_refuse_with_retry_after() {
    let vega = TestServer::start_with(Options {
        admin_key: Some(ADMIN.into()),
        ..Options::default()
    });
    let r = vega.get("/api/v1/rate-limit");
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["qps"], Value::Null);

    // Out of range: 422 naming the field, nothing changed.
    for (body, field) in [
        (json!({ "qps": 0 }), "qps"),
        (json!({ "qps": 5, "burst": 0 }), "burst"),
        (json!({ "qps": 2000000 }), "qps"),
        (json!({ "burst": 3 }), "burst"),
        (json!({ "per_key": { "qps": -1 } }), "per_key.qps"),
    ] {
        let r = vega.put("/api/v1/rate-limit", &body);
        assert_eq!(r.status, 422, "{body}: {}", r.text);
        assert_eq!(r.json()["error"]["details"]["field"], field, "{}", r.text);
    }
    let r = vega.put("/api/v1/rate-limit", &json!({ "qps": "fast" }));
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(vega.get("/api/v1/rate-limit").json()["qps"], Value::Null);

    // A slow global rate: the burst passes, the next is refused.
    let r = vega.put("/api/v1/rate-limit", &json!({ "qps": 0.2, "burst": 3 }));
    assert_eq!(r.status, 200, "{}", r.text);
    let mut refused = None;
    for _ in 0..6 {
        let r = vega.get("/api/v1/assets");
        if r.status == 429 {
            refused = Some(r);
            break;
        }
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let refused = refused.expect("a request over the limit is refused");
    assert_eq!(refused.code(), "rate_limited");
    let retry: u64 = refused.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=5).contains(&retry), "Retry-After {retry}");
    assert!(vega.metric_sum("vega_rate_limited_requests_total") >= 1.0);

    // Health, metrics and the rate-limit endpoint itself are exempt.
    let anon = vega.client();
    for _ in 0..5 {
        assert_eq!(
            anon.get(format!("{}/health", vega.api))
                .send()
                .unwrap()
                .status(),
            200
        );
        assert_eq!(
            anon.get(format!("{}/metrics", vega.ops))
                .send()
                .unwrap()
                .status(),
            200
        );
    }
    let got = vega.get("/api/v1/rate-limit");
    assert_eq!(got.status, 200, "{}", got.text);
    assert_eq!(got.json()["qps"], 0.2);
    assert_eq!(got.json()["burst"], 3);

    // Per key: every key has its own small bucket; one key running dry
    // does not hold another back.
    let r = vega.put(
        "/api/v1/rate-limit",
        &json!({ "per_key": { "qps": 0.1, "burst": 2 } }),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let r = vega.post("/api/v1/keys", &json!({ "name": "dash", "role": "reader" }));
    assert_eq!(r.status, 201, "{}", r.text);
    let reader = r.json()["secret"].as_str().unwrap().to_string();
    let as_reader = || {
        anon.get(format!("{}/api/v1/assets", vega.api))
            .bearer_auth(&reader)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(as_reader(), 200);
    assert_eq!(as_reader(), 200);
    assert_eq!(as_reader(), 429);
    // The admin key spent one of its two tokens creating the reader key.
    assert_eq!(vega.get("/api/v1/assets").status, 200);
    let text = anon
        .get(format!("{}/metrics", vega.ops))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        text.contains("vega_rate_limited_requests_total{limit=\"per_key\",key_class=\"reader\"}"),
        "{text}"
    );

    // Lifting the limits lifts them at once.
    let r = vega.put("/api/v1/rate-limit", &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(as_reader(), 200);
}

fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Two nodes on one PostgreSQL catalog: a rate limit set on one is
/// enforced by the other, and a cache clear on one clears the other's.
#[test]
fn rate_limits_and_cache_clears_reach_every_node() {
    let pg = TestPostgres::start();
    let node = |name: &str| {
        TestServer::start_with(Options {
            extra_yaml: format!(
                "node:\n  name: {name}\ncatalog:\n  url: \"{}\"\ncluster:\n  heartbeat_interval: 200ms\n  lease_ttl: 1500ms\n",
                pg.url()
            ),
            ..Options::default()
        })
    };
    let a = node("node-a");
    let b = node("node-b");

    // B caches an answer.
    let sql = "SELECT 40 + 2 AS answer";
    assert_eq!(cache_header(&query(&b, sql, &[])), "miss");
    assert_eq!(cache_header(&query(&b, sql, &[])), "hit");
    // A clears the cache: B's entry goes within a few heartbeats.
    let r = a.delete("/api/v1/cache");
    assert_eq!(r.status, 200, "{}", r.text);
    wait_until("B to clear its cache", Duration::from_secs(10), || {
        // A miss re-fills the entry; look without keeping anything.
        cache_header(&query(&b, sql, &[])) == "miss"
    });

    // A sets a limit; B enforces it.
    let r = a.put("/api/v1/rate-limit", &json!({ "qps": 0.1, "burst": 1 }));
    assert_eq!(r.status, 200, "{}", r.text);
    wait_until("B to enforce the limit", Duration::from_secs(10), || {
        b.get("/api/v1/assets").status == 429
    });
    assert_eq!(b.get("/api/v1/rate-limit").json()["qps"], 0.1);
    // And lifts it everywhere.
    let r = a.put("/api/v1/rate-limit", &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    wait_until("B to lift the limit", Duration::from_secs(10), || {
        b.get("/api/v1/assets").status == 200
    });
}

/// The runbook of SPEC §4 end to end, each step through the API and each
/// effect observed: disable a connection, set the QPS limit, force a full
/// sync, clear the cache, roll an asset back.
#[test]
fn the_runbook_works_end_to_end() {
    let src = SourceDir::new();
    src.write("t.csv", "a\n1\n2\n");
    let vega = TestServer::start_with(Options {
        allowed_roots: vec![src.path()],
        ..Options::default()
    });
    let con = vega.file_connection("files", &src.path());
    let asset = vega.asset(&con, "s", "t", json!({ "path": "t.csv" }));
    assert_eq!(vega.sync(&asset)["state"], "succeeded");
    let sql = "SELECT count(*) FROM s.t";
    assert_eq!(rows(&query(&vega, sql, &[])), json!([[2]]));
    assert_eq!(cache_header(&query(&vega, sql, &[])), "hit");

    // 1. Disable the connection: syncs from it are refused.
    src.write("t.csv", "a\n1\n2\n3\n");
    let r = vega.put(&format!("/api/v1/connections/{con}/disable"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    let r = vega.post(
        &format!("/api/v1/assets/{asset}/sync?mode=full"),
        &json!({}),
    );
    assert_eq!(r.status, 409, "{}", r.text);
    assert!(r.message().contains("disabled"), "{}", r.text);
    assert_eq!(rows(&query(&vega, sql, &[])), json!([[2]]));

    // 2. Set the QPS limit: requests beyond it get 429.
    let r = vega.put("/api/v1/rate-limit", &json!({ "qps": 0.5, "burst": 2 }));
    assert_eq!(r.status, 200, "{}", r.text);
    let statuses: Vec<u16> = (0..4).map(|_| vega.get("/api/v1/assets").status).collect();
    assert!(statuses.contains(&429), "{statuses:?}");
    let r = vega.put("/api/v1/rate-limit", &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);

    // 3. Force a full sync (after enabling the connection again): the new
    // rows are served at once, never a cached answer of the old version.
    let r = vega.put(&format!("/api/v1/connections/{con}/enable"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    let job = vega.sync(&asset);
    assert_eq!(job["state"], "succeeded", "{job}");
    let fresh = query(&vega, sql, &[]);
    assert_eq!(rows(&fresh), json!([[3]]));
    assert_eq!(cache_header(&fresh), "miss");
    assert_eq!(cache_header(&query(&vega, sql, &[])), "hit");

    // 4. Clear the cache: the next answer is computed afresh.
    let r = vega.delete("/api/v1/cache");
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(cache_header(&query(&vega, sql, &[])), "miss");

    // 5. Roll back: the previous version answers at once.
    let r = vega.post(
        &format!("/api/v1/assets/{asset}/rollback?version=v1"),
        &json!({}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(rows(&query(&vega, sql, &[])), json!([[2]]));
}
