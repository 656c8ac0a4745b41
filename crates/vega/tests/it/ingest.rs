//! Streaming ingest over line protocol: InfluxDB-compatible write
//! endpoints, partial writes, durability before acknowledgement, queries
//! that see buffered rows, flushes to segments, replay after a restart,
//! backpressure, and the bad-input answers.

use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::server::{Options, TestServer};

fn count(vega: &TestServer, sql: &str) -> i64 {
    vega.sql(sql)["rows"][0][0].as_i64().unwrap()
}

fn wait_until(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ok() {
        assert!(started.elapsed() < within, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn written_lines_are_queryable_at_once_with_typed_columns() {
    let vega = TestServer::start();
    let body =
        "cpu,host=a,region=eu usage=1.5,count=3i,ok=true,note=\"x y\",big=7u 1700000000000000000\n\
                cpu,host=b usage=2.5 1700000000000000001\n\
                mem,host=a used=10i 1700000000000000000\n";
    let r = vega.post_text("/api/v2/write?bucket=tele&precision=ns", body, &[]);
    assert_eq!(r.status, 204, "{}", r.text);
    // No flush has happened yet (flush_age is 10 s): these come from the buffer.
    assert_eq!(count(&vega, "SELECT count(*) FROM tele.cpu"), 2);
    assert_eq!(count(&vega, "SELECT count(*) FROM tele.mem"), 1);
    let out = vega.sql(
        "SELECT host, region, usage, count, ok, note, big, epoch_ns(time) FROM tele.cpu ORDER BY time",
    );
    assert_eq!(
        out["rows"],
        json!([
            ["a", "eu", 1.5, 3, true, "x y", 7, 1700000000000000000i64],
            [
                "b",
                null,
                2.5,
                null,
                null,
                null,
                null,
                1700000000000000001i64
            ]
        ])
    );
    let assets = vega.get("/api/v1/assets").json();
    let cpu = assets
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "cpu")
        .unwrap();
    assert_eq!(cpu["sync_mode"], "stream");
    assert_eq!(cpu["namespace"], "tele");
}

#[test]
fn partial_write_keeps_good_lines_and_lists_every_bad_one() {
    let vega = TestServer::start();
    let r = vega.post_text("/api/v2/write?bucket=tele", "m,host=a v=1.5 1\n", &[]);
    assert_eq!(r.status, 204, "{}", r.text);
    let body = [
        "m,host=a v=2.5 2",              // 1 ok
        "m,host=a",                      // 2 missing fields
        "m v=1 12x",                     // 3 bad timestamp
        "m,host=a v=\"unterminated",     // 4 unterminated string
        "m v=3i 4",                      // 5 type conflict: v is float
        "m v=4.5 5",                     // 6 ok
        "m v=1 99999999999999999999999", // 7 bad timestamp (overflow)
        "m v=1 5 extra",                 // 8 trailing garbage
        "m v=tru 6",                     // 9 bad field value
        "m v=1 1\\",                     // 10 dangling escape
    ]
    .join("\n");
    let r = vega.post_text("/api/v2/write?bucket=tele", body, &[]);
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.code(), "partial_write");
    let details = &r.json()["error"]["details"];
    assert_eq!(details["written"], 2, "{details}");
    let lines: Vec<i64> = details["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["line"].as_i64().unwrap())
        .collect();
    assert_eq!(lines, [2, 3, 4, 5, 7, 8, 9, 10], "{details}");
    let reason = |line: i64| {
        details["rejected"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["line"] == line)
            .unwrap()["reason"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(reason(2), "missing_fields");
    assert_eq!(reason(3), "bad_timestamp");
    assert_eq!(reason(5), "type_conflict");
    assert!(
        details["rejected"][3]["message"]
            .as_str()
            .unwrap()
            .contains("integer here but float"),
        "{details}"
    );
    assert_eq!(count(&vega, "SELECT count(*) FROM tele.m"), 3);
    let metrics = vega
        .client()
        .get(format!("{}/metrics", vega.ops))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("vega_ingest_rejected_lines_total{reason=\"type_conflict\"} 1"),
        "{metrics}"
    );
}

#[test]
fn bad_requests_change_nothing() {
    let vega = TestServer::start_with(Options {
        extra_yaml: "ingest:\n  max_body_bytes: 1KiB\n".into(),
        ..Options::default()
    });
    let line = "m v=1 1\n";
    let r = vega.post_text("/api/v2/write?bucket=tele&precision=fortnights", line, &[]);
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.message().contains("fortnights"), "{}", r.text);
    let r = vega.post_text("/api/v2/write", line, &[]);
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.message().contains("bucket"), "{}", r.text);
    let r = vega.post_text("/write?precision=s", line, &[]);
    assert_eq!(r.status, 400, "{}", r.text);
    let r = vega.post_text("/api/v2/write?bucket=Bad-Bucket", line, &[]);
    assert_eq!(r.status, 400, "{}", r.text);
    let big = line.repeat(200);
    let r = vega.post_text("/api/v2/write?bucket=tele", big.clone(), &[]);
    assert_eq!(r.status, 413, "{}", r.text);
    // A small gzip body that inflates past the limit is refused too.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(big.as_bytes()).unwrap();
    let r = vega.post_text(
        "/api/v2/write?bucket=tele",
        gz.finish().unwrap(),
        &[("content-encoding", "gzip")],
    );
    assert_eq!(r.status, 413, "{}", r.text);
    let r = vega.post_text(
        "/api/v2/write?bucket=tele",
        line,
        &[("content-encoding", "br")],
    );
    assert_eq!(r.status, 415, "{}", r.text);
    let r = vega.post_text(
        "/api/v2/write?bucket=tele",
        "not gzip",
        &[("content-encoding", "gzip")],
    );
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(
        vega.get("/api/v1/assets").json(),
        json!([]),
        "no asset was created"
    );
}

#[test]
fn gzip_v1_precisions_and_influx_style_auth() {
    let vega = TestServer::start_with(Options {
        admin_key: Some("admin-key-for-tests-0123456789".into()),
        ..Options::default()
    });
    let writer = vega.post(
        "/api/v1/keys",
        &json!({ "name": "telegraf", "role": "writer" }),
    );
    assert_eq!(writer.status, 201, "{}", writer.text);
    let writer = writer.json()["secret"].as_str().unwrap().to_string();
    let reader = vega.post("/api/v1/keys", &json!({ "name": "dash", "role": "reader" }));
    let reader = reader.json()["secret"].as_str().unwrap().to_string();

    // InfluxDB 2 clients: "Token <key>", gzip.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(b"t v=1 1700000000\n").unwrap();
    let token = format!("Token {writer}");
    let r = vega.post_text(
        "/api/v2/write?bucket=tele&precision=s",
        gz.finish().unwrap(),
        &[("content-encoding", "gzip"), ("authorization", &token)],
    );
    assert_eq!(r.status, 204, "{}", r.text);
    // Telegraf's influxdb output: HTTP Basic with the key as password, /write?db=.
    use base64::Engine;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("telegraf:{writer}"))
    );
    for (precision, value) in [
        ("ms", "1700000000001"),
        ("u", "1700000000000002"),
        ("h", "472222"),
    ] {
        let r = vega.post_text(
            &format!("/write?db=tele&precision={precision}"),
            format!("t v=2 {value}\n"),
            &[("authorization", &basic)],
        );
        assert_eq!(r.status, 204, "{precision}: {}", r.text);
    }
    let times = vega.sql("SELECT epoch_ns(time) FROM tele.t ORDER BY time")["rows"].clone();
    assert_eq!(
        times,
        json!([
            [1699999200000000000i64],
            [1700000000000000000i64],
            [1700000000001000000i64],
            [1700000000000002000i64]
        ])
        .as_array()
        .map(|a| {
            let mut v = a.clone();
            v.sort_by_key(|x| x[0].as_i64());
            Value::Array(v)
        })
        .unwrap()
    );
    // A reader may not write; no key at all is refused.
    let r = vega.post_text(
        "/api/v2/write?bucket=tele",
        "t v=3 1\n",
        &[("authorization", &format!("Token {reader}"))],
    );
    assert_eq!(r.status, 403, "{}", r.text);
    let r = vega
        .client()
        .post(format!("{}/api/v2/write?bucket=tele", vega.api))
        .body("t v=3 1\n")
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[test]
fn rows_flush_to_segments_and_survive_a_restart_exactly_once() {
    let mut vega = TestServer::start_with(Options {
        extra_yaml: "ingest:\n  flush_age: 200ms\n".into(),
        ..Options::default()
    });
    for i in 0..5 {
        let body: String = (0..100)
            .map(|j| format!("s,dev=d{} v={}i {}\n", j % 7, i * 100 + j, i * 100 + j))
            .collect();
        let r = vega.post_text("/api/v2/write?bucket=plant", body, &[]);
        assert_eq!(r.status, 204, "{}", r.text);
    }
    assert_eq!(count(&vega, "SELECT count(*) FROM plant.s"), 500);
    let asset = vega.get("/api/v1/assets").json()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_until("a flush", Duration::from_secs(20), || {
        vega.get(&format!("/api/v1/assets/{asset}")).json()["active_version"].is_string()
    });
    // Rows keep arriving after the flush; a new field widens the asset.
    let r = vega.post_text(
        "/api/v2/write?bucket=plant",
        "s,dev=x v=1000i,temp=20.5 1000\n",
        &[],
    );
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(count(&vega, "SELECT count(*) FROM plant.s"), 501);
    assert_eq!(count(&vega, "SELECT count(DISTINCT v) FROM plant.s"), 501);
    // Stopped hard: what was not flushed is replayed from the log once.
    vega.kill9();
    let vega = TestServer::start_with(Options {
        data_dir: Some(vega.data_dir.clone()),
        extra_yaml: "ingest:\n  flush_age: 200ms\n".into(),
        ..Options::default()
    });
    assert_eq!(count(&vega, "SELECT count(*) FROM plant.s"), 501);
    assert_eq!(count(&vega, "SELECT count(DISTINCT v) FROM plant.s"), 501);
    assert_eq!(
        count(&vega, "SELECT count(*) FROM plant.s WHERE temp = 20.5"),
        1
    );
    wait_until(
        "the replayed rows to flush",
        Duration::from_secs(20),
        || {
            let m = vega
                .client()
                .get(format!("{}/metrics", vega.ops))
                .send()
                .unwrap()
                .text()
                .unwrap();
            m.contains("vega_ingest_buffer_rows 0")
        },
    );
    assert_eq!(count(&vega, "SELECT count(*) FROM plant.s"), 501);
    let versions = vega.get(&format!("/api/v1/assets/{asset}/versions")).json();
    assert!(!versions.as_array().unwrap().is_empty());
}

#[test]
fn a_full_buffer_answers_503_with_retry_after_and_recovers() {
    let vega = TestServer::start_with(Options {
        extra_yaml: "ingest:\n  buffer_max_rows: 10\n  flush_rows: 10\n  flush_age: 1h\n".into(),
        ..Options::default()
    });
    let body: String = (0..8).map(|i| format!("b v={i} {i}\n")).collect();
    assert_eq!(
        vega.post_text("/api/v2/write?bucket=t", body, &[]).status,
        204
    );
    let body: String = (8..12).map(|i| format!("b v={i} {i}\n")).collect();
    let r = vega.post_text("/api/v2/write?bucket=t", body.clone(), &[]);
    assert_eq!(r.status, 503, "{}", r.text);
    assert_eq!(r.code(), "buffer_full");
    assert!(r.headers.get("retry-after").is_some());
    assert_eq!(
        count(&vega, "SELECT count(*) FROM t.b"),
        8,
        "nothing of the refused write"
    );
    // Room comes back by itself (the full buffer triggers a flush).
    wait_until("room in the buffer", Duration::from_secs(20), || {
        vega.post_text("/api/v2/write?bucket=t", body.clone(), &[])
            .status
            == 204
    });
    assert_eq!(count(&vega, "SELECT count(*) FROM t.b"), 12);
}

#[test]
fn retention_trims_a_stream_asset_and_ingest_goes_on() {
    let vega = TestServer::start_with(Options {
        extra_yaml: "ingest:\n  flush_age: 100ms\n".into(),
        ..Options::default()
    });
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let old = now_s - 90 * 86400;
    let body = format!("r,dev=a v=1 {old}\nr,dev=b v=2 {old}\nr,dev=c v=3 {now_s}\n");
    let r = vega.post_text("/api/v2/write?bucket=plant&precision=s", body, &[]);
    assert_eq!(r.status, 204, "{}", r.text);
    let asset = vega.get("/api/v1/assets").json()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_until("a flush", Duration::from_secs(20), || {
        vega.get(&format!("/api/v1/assets/{asset}")).json()["active_version"].is_string()
    });
    let r = vega.put(
        &format!("/api/v1/assets/{asset}"),
        &json!({ "retention": { "column": "time", "period": "30d" } }),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    // A row still in the buffer when retention runs is kept and flushed after.
    let r = vega.post_text(
        "/api/v2/write?bucket=plant&precision=s",
        format!("r,dev=d v=4 {now_s}\n"),
        &[],
    );
    assert_eq!(r.status, 204, "{}", r.text);
    let r = vega.post(&format!("/api/v1/assets/{asset}/retention"), &json!({}));
    assert_eq!(r.status, 202, "{}", r.text);
    let job = vega.wait_job(r.json()["id"].as_str().unwrap());
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(
        vega.sql("SELECT dev FROM plant.r ORDER BY dev")["rows"],
        json!([["c"], ["d"]])
    );
    let r = vega.post_text(
        "/api/v2/write?bucket=plant&precision=s",
        format!("r,dev=e v=5 {now_s}\n"),
        &[],
    );
    assert_eq!(r.status, 204, "{}", r.text);
    wait_until("everything flushed", Duration::from_secs(20), || {
        let m = vega
            .client()
            .get(format!("{}/metrics", vega.ops))
            .send()
            .unwrap()
            .text()
            .unwrap();
        m.contains("vega_ingest_buffer_rows 0")
    });
    assert_eq!(
        vega.sql("SELECT dev FROM plant.r ORDER BY dev")["rows"],
        json!([["c"], ["d"], ["e"]])
    );
}
