//! Tests against a real InfluxDB 1.x started by `vega_testkit`.

use std::io::Read;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use arrow::array::{
    Array, BooleanArray, Float64Array, Int64Array, StringArray, TimestampNanosecondArray,
};
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, TimeUnit};
use arrow::record_batch::RecordBatch;
use serde_json::{json, Value};
use vega_connectors::{BatchSource, Connector, ConnectorError, Watermark};
use vega_testkit::influxdb::TestInfluxdb;
use vega_testkit::ports::free_port;

use crate::InfluxdbConnector;

const DB: &str = "metrics";

fn server_with_db() -> TestInfluxdb {
    let server = TestInfluxdb::start();
    server.create_database(DB);
    server
}

fn params(server: &TestInfluxdb) -> Value {
    json!({ "url": server.url(), "database": DB, "timeout_ms": 10_000 })
}

fn drain(source: &mut dyn BatchSource) -> Vec<RecordBatch> {
    let mut batches = Vec::new();
    while let Some(batch) = source.next_batch().expect("reading a batch") {
        assert_eq!(batch.schema(), source.schema());
        batches.push(batch);
    }
    batches
}

fn read_full(server: &TestInfluxdb, source: Value) -> RecordBatch {
    let mut reader = InfluxdbConnector
        .open_full(&params(server), &source)
        .expect("open_full");
    let schema = reader.schema();
    let batches = drain(reader.as_mut());
    concat_batches(&schema, &batches).expect("concat")
}

fn col<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> &'a T {
    batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name}"))
        .as_any()
        .downcast_ref::<T>()
        .unwrap_or_else(|| panic!("column {name} has another type"))
}

fn strings(batch: &RecordBatch, name: &str) -> Vec<Option<String>> {
    let a = col::<StringArray>(batch, name);
    (0..a.len())
        .map(|i| a.is_valid(i).then(|| a.value(i).to_string()))
        .collect()
}

fn times(batch: &RecordBatch) -> Vec<i64> {
    col::<TimestampNanosecondArray>(batch, "time")
        .values()
        .to_vec()
}

fn incremental(
    server: &TestInfluxdb,
    measurement: &str,
    since: &Watermark,
) -> (RecordBatch, Watermark) {
    let mut reader = InfluxdbConnector
        .open_incremental(
            &params(server),
            &json!({ "measurement": measurement }),
            since,
        )
        .expect("open_incremental");
    let schema = reader.schema();
    let mut batches = Vec::new();
    while let Some(batch) = reader.next_batch().expect("reading a batch") {
        batches.push(batch);
    }
    let batch = concat_batches(&schema, &batches).expect("concat");
    (batch, reader.watermark())
}

fn invalid_field(err: ConnectorError) -> String {
    match err {
        ConnectorError::InvalidParams { field, .. } => field,
        other => panic!("expected InvalidParams, got {other:?}"),
    }
}

fn expect_err<T>(result: Result<T, ConnectorError>) -> ConnectorError {
    match result {
        Ok(_) => panic!("expected an error"),
        Err(e) => e,
    }
}

#[test]
fn measurement_reads_tags_and_every_field_type_with_sparse_nulls() {
    let server = server_with_db();
    server.write_line_protocol(
        DB,
        "cpu,host=a,region=eu usage=1.5,count=3i,label=\"x y\",ok=true 1000\n\
         cpu,host=b usage=2 2000\n\
         cpu,host=a,region=eu count=-4i,ok=false 3000\n\
         other,host=z v=1 1500",
    );
    let batch = read_full(&server, json!({ "measurement": "cpu" }));

    let schema = batch.schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(
        names,
        ["time", "host", "region", "count", "label", "ok", "usage"]
    );
    assert_eq!(
        schema.field(0).data_type(),
        &DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
    );
    assert!(!schema.field(0).is_nullable());
    assert_eq!(schema.field(3).data_type(), &DataType::Int64);
    assert_eq!(schema.field(4).data_type(), &DataType::Utf8);
    assert_eq!(schema.field(5).data_type(), &DataType::Boolean);
    assert_eq!(schema.field(6).data_type(), &DataType::Float64);

    assert_eq!(times(&batch), [1000, 2000, 3000]);
    assert_eq!(
        strings(&batch, "host"),
        [Some("a".into()), Some("b".into()), Some("a".into())]
    );
    assert_eq!(
        strings(&batch, "region"),
        [Some("eu".into()), None, Some("eu".into())]
    );
    let count = col::<Int64Array>(&batch, "count");
    assert_eq!(
        (count.value(0), count.is_null(1), count.value(2)),
        (3, true, -4)
    );
    assert_eq!(strings(&batch, "label"), [Some("x y".into()), None, None]);
    let ok = col::<BooleanArray>(&batch, "ok");
    assert_eq!(
        (ok.value(0), ok.is_null(1), ok.value(2)),
        (true, true, false)
    );
    let usage = col::<Float64Array>(&batch, "usage");
    // A float written as 2 arrives as the JSON integer 2 and stays a float.
    assert_eq!(
        (usage.value(0), usage.value(1), usage.is_null(2)),
        (1.5, 2.0, true)
    );
}

#[test]
fn measurement_names_are_quoted() {
    let server = server_with_db();
    server.write_line_protocol(DB, "we\\ ird\"m,host=a v=1i 10");
    let batch = read_full(&server, json!({ "measurement": "we ird\"m" }));
    assert_eq!(times(&batch), [10]);
    assert_eq!(col::<Int64Array>(&batch, "v").value(0), 1);
}

#[test]
fn query_source_flattens_grouped_series_into_rows() {
    let server = server_with_db();
    server.write_line_protocol(
        DB,
        "cpu,host=a usage=1,count=1i 1000\n\
         cpu,host=a usage=3,count=2i 2000\n\
         cpu,host=b usage=5.5,count=7i 1000",
    );
    let batch = read_full(
        &server,
        json!({ "query": "SELECT usage, count, usage * 2 AS doubled FROM cpu GROUP BY host" }),
    );
    let schema = batch.schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["time", "host", "usage", "count", "doubled"]);
    assert_eq!(schema.field(2).data_type(), &DataType::Float64);
    assert_eq!(schema.field(3).data_type(), &DataType::Int64);
    assert_eq!(schema.field(4).data_type(), &DataType::Float64);
    assert_eq!(
        strings(&batch, "host"),
        [Some("a".into()), Some("a".into()), Some("b".into())]
    );
    assert_eq!(times(&batch), [1000, 2000, 1000]);
    assert_eq!(
        col::<Float64Array>(&batch, "usage").values().to_vec(),
        [1.0, 3.0, 5.5]
    );
    assert_eq!(
        col::<Int64Array>(&batch, "count").values().to_vec(),
        [1, 2, 7]
    );
    assert_eq!(
        col::<Float64Array>(&batch, "doubled").values().to_vec(),
        [2.0, 6.0, 11.0]
    );
}

#[test]
fn query_source_with_no_rows_yields_no_batches() {
    let server = server_with_db();
    server.write_line_protocol(DB, "cpu,host=a usage=1 1000");
    let batch = read_full(
        &server,
        json!({ "query": "SELECT usage FROM cpu WHERE time > 5000" }),
    );
    assert_eq!(batch.num_rows(), 0);
}

#[test]
fn reads_come_in_batches_of_at_most_chunk_size_rows() {
    let server = server_with_db();
    let lines: Vec<String> = (0..25)
        .map(|i| format!("cpu,host=h{} v={i}i {}", i % 3, 1000 + i))
        .collect();
    server.write_line_protocol(DB, &lines.join("\n"));
    let mut reader = InfluxdbConnector
        .open_full(
            &params(&server),
            &json!({ "measurement": "cpu", "chunk_size": 4 }),
        )
        .expect("open_full");
    let batches = drain(reader.as_mut());
    let sizes: Vec<usize> = batches.iter().map(RecordBatch::num_rows).collect();
    assert!(sizes.iter().all(|n| (1..=4).contains(n)), "{sizes:?}");
    assert_eq!(sizes.iter().sum::<usize>(), 25);
    let all = concat_batches(&reader.schema(), &batches).expect("concat");
    assert_eq!(times(&all), (1000..1025).collect::<Vec<i64>>());
}

#[test]
fn incremental_reads_keep_points_sharing_the_watermark_time_exactly_once() {
    let server = server_with_db();
    server.write_line_protocol(DB, "cpu,host=a v=1i 1000\ncpu,host=b v=2i 500");

    let (first, mark) = incremental(&server, "cpu", &Watermark::default());
    assert_eq!(first.num_rows(), 2);
    assert_eq!(mark.value, Some(json!("1970-01-01T00:00:00.000001000Z")));
    assert_eq!(mark.keys_at_value, ["cpu,host=a"]);

    // A late point at the watermark time from another series, and a newer one.
    server.write_line_protocol(DB, "cpu,host=c v=3i 1000\ncpu,host=a v=4i 2000");
    let (second, mark) = incremental(&server, "cpu", &mark);
    assert_eq!(times(&second), [1000, 2000]);
    assert_eq!(
        strings(&second, "host"),
        [Some("c".into()), Some("a".into())]
    );
    assert_eq!(mark.value, Some(json!("1970-01-01T00:00:00.000002000Z")));
    assert_eq!(mark.keys_at_value, ["cpu,host=a"]);

    // Two more points at the new watermark time, then nothing new.
    server.write_line_protocol(DB, "cpu,host=b v=5i 2000\ncpu,host=c v=6i 2000");
    let (third, mark) = incremental(&server, "cpu", &mark);
    assert_eq!(
        strings(&third, "host"),
        [Some("b".into()), Some("c".into())]
    );
    assert_eq!(
        mark.keys_at_value,
        ["cpu,host=a", "cpu,host=b", "cpu,host=c"]
    );
    let (fourth, unchanged) = incremental(&server, "cpu", &mark);
    assert_eq!(fourth.num_rows(), 0);
    assert_eq!(unchanged, mark);
}

#[test]
fn incremental_reads_refuse_queries_without_since_and_bad_watermarks() {
    let server = server_with_db();
    server.write_line_protocol(DB, "cpu v=1i 1000");
    let err = expect_err(InfluxdbConnector.open_incremental(
        &params(&server),
        &json!({ "query": "SELECT * FROM cpu" }),
        &Watermark::default(),
    ));
    assert!(matches!(err, ConnectorError::Unsupported { .. }), "{err:?}");
    let bad = Watermark {
        value: Some(json!("last tuesday")),
        keys_at_value: vec![],
    };
    let err = expect_err(InfluxdbConnector.open_incremental(
        &params(&server),
        &json!({ "measurement": "cpu" }),
        &bad,
    ));
    assert_eq!(invalid_field(err), "watermark.value");
}

#[test]
fn connection_params_refuse_unknown_fields_and_plain_passwords() {
    let c = InfluxdbConnector;
    let base = json!({ "url": "http://127.0.0.1:8086", "database": "db" });
    assert!(c.check_connection(&base).is_ok());
    let with = |k: &str, v: Value| {
        let mut p = base.clone();
        p[k] = v;
        p
    };
    assert_eq!(
        invalid_field(c.check_connection(&with("host", json!("x"))).unwrap_err()),
        "host"
    );
    let plain = with("username", json!("u"));
    let plain = {
        let mut p = plain;
        p["password"] = json!("hunter2");
        p
    };
    let err = c.check_connection(&plain).unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
    assert_eq!(invalid_field(err), "password");
    assert_eq!(
        invalid_field(
            c.check_connection(&with("password", json!({ "env": "X" })))
                .unwrap_err()
        ),
        "username"
    );
    assert_eq!(
        invalid_field(
            c.check_connection(&with("url", json!("ftp://h")))
                .unwrap_err()
        ),
        "url"
    );
    let err = c
        .check_connection(&with("url", json!("http://u:hunter2@h:8086")))
        .unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
    assert_eq!(invalid_field(err), "url");
    assert_eq!(
        invalid_field(
            c.check_connection(&with("timeout_ms", json!(0)))
                .unwrap_err()
        ),
        "timeout_ms"
    );
    assert_eq!(
        invalid_field(
            c.check_connection(&json!({ "url": "http://h" }))
                .unwrap_err()
        ),
        "database"
    );
}

#[test]
fn source_descriptions_are_checked() {
    let c = InfluxdbConnector;
    let p = json!({ "url": "http://127.0.0.1:8086", "database": "db" });
    assert!(c
        .check_source(&p, &json!({ "measurement": "cpu", "chunk_size": 10 }))
        .is_ok());
    let field = |s: Value| invalid_field(c.check_source(&p, &s).unwrap_err());
    assert_eq!(
        field(json!({ "measurement": "cpu", "table": "x" })),
        "table"
    );
    assert_eq!(
        field(json!({ "measurement": "cpu", "query": "SELECT * FROM cpu" })),
        "query"
    );
    assert_eq!(field(json!({})), "measurement");
    assert_eq!(field(json!({ "measurement": "" })), "measurement");
    assert_eq!(field(json!({ "query": "DROP MEASUREMENT cpu" })), "query");
    assert_eq!(
        field(json!({ "query": "SELECT * INTO other FROM cpu" })),
        "query"
    );
    assert_eq!(
        field(json!({ "query": "SELECT * FROM cpu; DROP DATABASE db" })),
        "query"
    );
    assert_eq!(
        field(json!({ "measurement": "cpu", "chunk_size": 0 })),
        "chunk_size"
    );
    assert_eq!(
        field(json!({ "measurement": "cpu", "chunk_size": "big" })),
        "chunk_size"
    );
}

#[test]
fn test_passes_with_the_right_password() {
    let server = TestInfluxdb::start_with_auth("admin", "s3cret-pass");
    server.create_database(DB);
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("pw");
    std::fs::write(&secret, "s3cret-pass\n").expect("write secret");
    let p = json!({
        "url": server.url(), "database": DB, "username": "admin",
        "password": { "file": secret }, "timeout_ms": 10_000,
    });
    InfluxdbConnector
        .test(&p)
        .expect("test with the right password");
}

#[test]
fn wrong_password_is_an_auth_error() {
    let server = TestInfluxdb::start_with_auth("admin", "s3cret-pass");
    server.create_database(DB);
    server.write_line_protocol(DB, "cpu v=1i 1000");
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("pw");
    std::fs::write(&secret, "wrong-pass").expect("write secret");
    let p = json!({
        "url": server.url(), "database": DB, "username": "admin",
        "password": { "file": secret }, "timeout_ms": 10_000,
    });
    let err = InfluxdbConnector.test(&p).unwrap_err();
    assert!(matches!(err, ConnectorError::Auth { .. }), "{err:?}");
    assert!(!err.to_string().contains("wrong-pass"), "{err}");
    let err = expect_err(InfluxdbConnector.open_full(&p, &json!({ "measurement": "cpu" })));
    assert!(matches!(err, ConnectorError::Auth { .. }), "{err:?}");
}

#[test]
fn nothing_listening_is_unreachable() {
    let port = free_port();
    let p =
        json!({ "url": format!("http://127.0.0.1:{port}"), "database": DB, "timeout_ms": 2_000 });
    let err = InfluxdbConnector.test(&p).unwrap_err();
    match &err {
        ConnectorError::Unreachable { what, .. } => {
            assert!(what.contains(&port.to_string()), "{err}")
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
    let err = expect_err(InfluxdbConnector.open_full(&p, &json!({ "measurement": "cpu" })));
    assert!(matches!(err, ConnectorError::Unreachable { .. }), "{err:?}");
}

#[test]
fn a_server_that_never_answers_times_out_as_unreachable() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    // Accept and read, never answer.
    std::thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            let mut buf = [0u8; 1024];
            while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
        }
    });
    let p = json!({ "url": format!("http://127.0.0.1:{port}"), "database": DB, "timeout_ms": 300 });
    let started = Instant::now();
    let err = InfluxdbConnector.test(&p).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(matches!(err, ConnectorError::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains("timed out"), "{err}");
}

#[test]
fn bad_influxql_is_a_permanent_remote_error() {
    let server = server_with_db();
    server.write_line_protocol(DB, "cpu v=1i 1000");
    let err = expect_err(InfluxdbConnector.open_full(
        &params(&server),
        &json!({ "query": "SELECT FROM WHERE cpu" }),
    ));
    match &err {
        ConnectorError::Remote {
            permanent, message, ..
        } => {
            assert!(*permanent, "{err}");
            assert!(message.contains("parsing"), "{err}");
        }
        other => panic!("expected Remote, got {other:?}"),
    }
}

#[test]
fn a_missing_database_is_permanent() {
    let server = TestInfluxdb::start();
    let p = json!({ "url": server.url(), "database": "nope", "timeout_ms": 10_000 });
    let err = InfluxdbConnector.test(&p).unwrap_err();
    assert!(
        matches!(
            err,
            ConnectorError::Remote {
                permanent: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("database not found"), "{err}");
    let err = expect_err(InfluxdbConnector.open_full(&p, &json!({ "query": "SELECT * FROM cpu" })));
    assert!(
        matches!(
            err,
            ConnectorError::Remote {
                permanent: true,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn a_missing_measurement_is_permanent() {
    let server = server_with_db();
    server.write_line_protocol(DB, "cpu v=1i 1000");
    let err = expect_err(
        InfluxdbConnector.open_full(&params(&server), &json!({ "measurement": "nope" })),
    );
    assert!(
        matches!(
            err,
            ConnectorError::Remote {
                permanent: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("'nope'"), "{err}");
}

#[test]
fn the_harness_answers_queries() {
    let server = server_with_db();
    server.write_line_protocol(DB, "cpu v=1i 1000");
    let answer = server.query_db(DB, "SELECT count(v) FROM cpu");
    assert_eq!(answer["results"][0]["series"][0]["values"][0][1], json!(1));
    assert_eq!(InfluxdbConnector.kind(), vega_core::ConnectorKind::Influxdb);
}

fn incremental_query(
    server: &TestInfluxdb,
    query: &str,
    since: &Watermark,
) -> (RecordBatch, Watermark) {
    let mut reader = InfluxdbConnector
        .open_incremental(&params(server), &json!({ "query": query }), since)
        .expect("open_incremental");
    let schema = reader.schema();
    let mut batches = Vec::new();
    while let Some(batch) = reader.next_batch().expect("reading a batch") {
        batches.push(batch);
    }
    let batch = concat_batches(&schema, &batches).expect("concat");
    (batch, reader.watermark())
}

#[test]
fn incremental_query_sources_resume_from_since_without_losing_ties() {
    let server = server_with_db();
    server.write_line_protocol(DB, "cpu,host=a v=1i 1000\ncpu,host=b v=2i 500");
    let query = "SELECT v FROM cpu WHERE time >= $since GROUP BY host";

    let (first, mark) = incremental_query(&server, query, &Watermark::default());
    assert_eq!(first.num_rows(), 2);
    assert_eq!(mark.value, Some(json!("1970-01-01T00:00:00.000001000Z")));

    // A late point at the watermark time from another series, and a newer one.
    server.write_line_protocol(DB, "cpu,host=c v=3i 1000\ncpu,host=a v=4i 2000");
    let (second, mark) = incremental_query(&server, query, &mark);
    let mut hosts = strings(&second, "host");
    hosts.sort();
    assert_eq!(
        hosts,
        [Some("a".into()), Some("c".into())],
        "only the new points"
    );
    assert_eq!(mark.value, Some(json!("1970-01-01T00:00:00.000002000Z")));

    // Nothing new: nothing read, the watermark stays.
    let (third, again) = incremental_query(&server, query, &mark);
    assert_eq!(third.num_rows(), 0);
    assert_eq!(again, mark);

    // A full read of the same query reads everything.
    let all = read_full(&server, json!({ "query": query }));
    assert_eq!(all.num_rows(), 4);
}
