//! The query API: formats, limits, errors with positions, timeouts with real
//! cancellation, and consistency while a new version is published.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::server::{server_over, SourceDir, TestServer};

fn numbers_server(n: usize) -> (SourceDir, TestServer, String) {
    let src = SourceDir::new();
    let mut csv = String::from("n,label\n");
    for i in 0..n {
        csv.push_str(&format!("{i},item{i}\n"));
    }
    src.write("numbers.csv", &csv);
    let vega = server_over(&src);
    let con = vega.file_connection("files", &src.path());
    let asset = vega.asset(&con, "demo", "numbers", json!({ "path": "numbers.csv" }));
    assert_eq!(vega.sync(&asset)["state"], "succeeded");
    (src, vega, asset)
}

#[test]
fn json_result_has_columns_types_and_rows() {
    let (_src, vega, _) = numbers_server(5);
    let r = vega
        .sql("SELECT n, label, n * 1.5 AS half, n > 2 AS big FROM demo.numbers ORDER BY n LIMIT 2");
    assert_eq!(
        r["columns"],
        json!([
            {"name": "n", "type": "BIGINT"},
            {"name": "label", "type": "VARCHAR"},
            {"name": "half", "type": "DECIMAL(21,1)"},
            {"name": "big", "type": "BOOLEAN"}
        ])
    );
    assert_eq!(r["rows"][1][1], "item1");
    assert_eq!(r["row_count"], 2);
    assert_eq!(r["truncated"], false);
    assert_eq!(r["engine"], "duckdb");
    assert_eq!(
        r["assets"],
        json!([{"name": "demo.numbers", "version": "v1"}])
    );
}

#[test]
fn duplicate_column_names_keep_their_values() {
    let vega = TestServer::start();
    let r = vega.sql("SELECT 1 AS a, 2 AS a");
    assert_eq!(r["rows"], json!([[1, 2]]));
}

#[test]
fn csv_and_arrow_formats() {
    let (_src, vega, _) = numbers_server(3);
    let r = vega.post(
        "/api/v1/query",
        &json!({ "sql": "SELECT n, label FROM demo.numbers ORDER BY n", "format": "csv" }),
    );
    assert_eq!(r.status, 200);
    assert!(r.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    assert_eq!(r.text, "n,label\n0,item0\n1,item1\n2,item2\n");

    let bytes = vega
        .client()
        .post(format!("{}/api/v1/query", vega.api))
        .json(&json!({ "sql": "SELECT n FROM demo.numbers ORDER BY n", "format": "arrow" }))
        .send()
        .unwrap();
    assert_eq!(
        bytes.headers()["content-type"],
        "application/vnd.apache.arrow.stream"
    );
    let body = bytes.bytes().unwrap();
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(body.to_vec()), None)
            .unwrap();
    let batches: Vec<_> = reader.map(|b| b.unwrap()).collect();
    let total: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(total, 3);
    assert_eq!(batches[0].schema().field(0).name(), "n");

    let r = vega.post(
        "/api/v1/query",
        &json!({ "sql": "SELECT 1", "format": "xml" }),
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["details"]["field"], "format");
}

#[test]
fn max_rows_truncates_and_says_so() {
    let (_src, vega, _) = numbers_server(50);
    let r = vega.post(
        "/api/v1/query",
        &json!({ "sql": "SELECT n FROM demo.numbers ORDER BY n", "max_rows": 10 }),
    );
    let v = r.json();
    assert_eq!(v["row_count"], 10);
    assert_eq!(v["truncated"], true);
    assert_eq!(r.headers["x-vega-truncated"], "true");
    assert_eq!(v["rows"][9][0], 9);
    let r = vega.post(
        "/api/v1/query",
        &json!({ "sql": "SELECT 1", "max_rows": 0 }),
    );
    assert_eq!(r.status, 400);
}

#[test]
fn invalid_sql_is_400_with_the_position() {
    let vega = TestServer::start();
    let sql = "SELECT 1 FORM x";
    let r = vega.post("/api/v1/query", &json!({ "sql": sql }));
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.code(), "invalid_sql");
    let position = r.json()["error"]["details"]["position"]
        .as_u64()
        .expect("position");
    assert!(
        sql[position as usize..].starts_with("x") || sql[position as usize..].starts_with("FORM"),
        "position {position} in {sql}"
    );

    let r = vega.post(
        "/api/v1/query",
        &json!({ "sql": "SELECT nope FROM range(3)" }),
    );
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.message().contains("nope"), "{}", r.text);

    let r = vega.post(
        "/api/v1/query",
        &json!({ "sql": "SELECT * FROM nosuch.asset" }),
    );
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.message().contains("nosuch.asset"), "{}", r.text);
}

#[test]
fn timeout_cancels_the_query_and_frees_its_thread() {
    let vega = TestServer::start_with(crate::server::Options {
        extra_yaml: "query:\n  pool_size: 2\n  max_concurrency: 2\n".into(),
        ..Default::default()
    });
    // Far more work than 300 ms allows.
    let slow = "SELECT count(*) FROM range(1000000000000) a WHERE a.range % 7 = 3";
    let started = Instant::now();
    let r = vega.post("/api/v1/query", &json!({ "sql": slow, "timeout_ms": 300 }));
    assert_eq!(r.status, 504, "{}", r.text);
    assert_eq!(r.code(), "query_timeout");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "cancellation took {:?}",
        started.elapsed()
    );
    // Both pool connections are usable afterwards: run two cancellations more
    // and then normal queries on every connection.
    for _ in 0..2 {
        let r = vega.post("/api/v1/query", &json!({ "sql": slow, "timeout_ms": 200 }));
        assert_eq!(r.status, 504);
    }
    for _ in 0..4 {
        assert_eq!(vega.sql("SELECT 42")["rows"], json!([[42]]));
    }
    let r = vega.post(
        "/api/v1/query",
        &json!({ "sql": "SELECT 1", "timeout_ms": 0 }),
    );
    assert_eq!(r.status, 400);
}

#[test]
fn queries_during_publish_see_old_or_new_version_never_an_error() {
    let (src, vega, asset) = numbers_server(100);
    let vega = Arc::new(vega);
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..3 {
        let vega = vega.clone();
        let stop = stop.clone();
        readers.push(std::thread::spawn(move || {
            let mut seen = std::collections::BTreeSet::new();
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) && n < 2000 {
                let r = vega.post(
                    "/api/v1/query",
                    &json!({ "sql": "SELECT count(*) FROM demo.numbers" }),
                );
                assert_eq!(r.status, 200, "query failed during publish: {}", r.text);
                seen.insert(r.json()["rows"][0][0].as_i64().unwrap());
                n += 1;
            }
            seen
        }));
    }
    let mut sizes = vec![100i64];
    for round in 1..=4 {
        let n = 100 + round * 50;
        let mut csv = String::from("n,label\n");
        for i in 0..n {
            csv.push_str(&format!("{i},item{i}\n"));
        }
        src.write("numbers.csv", &csv);
        assert_eq!(vega.sync(&asset)["state"], "succeeded");
        sizes.push(n as i64);
    }
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::SeqCst);
    for reader in readers {
        let seen = reader.join().expect("reader thread");
        for count in seen {
            assert!(
                sizes.contains(&count),
                "saw {count} rows, not one of the published versions {sizes:?}"
            );
        }
    }
}

#[test]
fn concurrency_limit_queues_then_answers() {
    let vega = Arc::new(TestServer::start_with(crate::server::Options {
        extra_yaml: "query:\n  pool_size: 1\n  max_concurrency: 1\n  queue_timeout: 30s\n".into(),
        ..Default::default()
    }));
    let handles: Vec<_> = (0..6)
        .map(|i| {
            let vega = vega.clone();
            std::thread::spawn(move || {
                vega.sql(&format!("SELECT {i} AS i"))["rows"][0][0]
                    .as_i64()
                    .unwrap()
            })
        })
        .collect();
    let mut got: Vec<i64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    got.sort();
    assert_eq!(got, vec![0, 1, 2, 3, 4, 5]);
}
