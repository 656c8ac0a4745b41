//! The SQL sandbox: every statement that would read outside asset data,
//! write, change settings, load code or reach the network is refused with a
//! clear 400/403, and nothing changes.

use serde_json::json;

use crate::server::{server_over, SourceDir, TestServer};

fn setup() -> (SourceDir, TestServer) {
    let src = SourceDir::new();
    src.write("t.csv", "a,b\n1,x\n2,y\n");
    let vega = server_over(&src);
    let con = vega.file_connection("files", &src.path());
    let asset = vega.asset(&con, "s", "t", json!({ "path": "t.csv" }));
    assert_eq!(vega.sync(&asset)["state"], "succeeded");
    (src, vega)
}

#[test]
fn every_forbidden_statement_is_refused_and_changes_nothing() {
    let (src, vega) = setup();
    let outside = src.path().join("t.csv");
    let segment_dir = vega.data_dir.join("segments");
    let escape = std::env::temp_dir().join("vega-sandbox-escape.csv");
    let _ = std::fs::remove_file(&escape);
    let cases: Vec<String> = vec![
        // Reading files outside asset data, with every reading function.
        "SELECT * FROM read_csv('/etc/passwd')".into(),
        "SELECT * FROM read_csv_auto('/etc/passwd')".into(),
        "SELECT * FROM '/etc/passwd'".into(),
        "SELECT * FROM read_text('/etc/passwd')".into(),
        "SELECT * FROM read_blob('/etc/passwd')".into(),
        "SELECT * FROM read_json('/etc/passwd')".into(),
        "SELECT * FROM read_json_auto('/etc/passwd')".into(),
        "SELECT * FROM read_ndjson('/etc/passwd')".into(),
        "SELECT * FROM read_parquet('/etc/passwd')".into(),
        "SELECT * FROM parquet_scan('/etc/passwd')".into(),
        "SELECT * FROM parquet_metadata('/etc/passwd')".into(),
        "SELECT * FROM glob('/etc/*')".into(),
        format!("SELECT * FROM read_csv('{}')", outside.display()),
        format!(
            "SELECT * FROM read_csv('{}/../catalog.db')",
            segment_dir.display()
        ),
        "SELECT * FROM (SELECT * FROM read_csv('/etc/passwd'))".into(),
        "WITH x AS (SELECT * FROM read_csv('/etc/passwd')) SELECT * FROM x".into(),
        "SELECT (SELECT count(*) FROM read_csv('/etc/passwd'))".into(),
        "SELECT * FROM s.t UNION ALL SELECT * FROM read_csv('/etc/passwd')".into(),
        "SELECT * FROM query('SELECT 1')".into(),
        "SELECT * FROM duckdb_settings()".into(),
        "SELECT * FROM information_schema.tables".into(),
        // Network.
        "SELECT * FROM read_csv('http://127.0.0.1:9/x.csv')".into(),
        "SELECT * FROM read_parquet('https://example.invalid/x.parquet')".into(),
        "SELECT * FROM 's3://bucket/x.parquet'".into(),
        // Writes, exports, settings, code loading.
        format!("COPY (SELECT 1) TO '{}'", escape.display()),
        format!("COPY s.t TO '{}'", escape.display()),
        format!("EXPORT DATABASE '{}'", escape.display()),
        "ATTACH ':memory:' AS other".into(),
        "ATTACH '/tmp/x.db'".into(),
        "DETACH other".into(),
        "INSTALL httpfs".into(),
        "LOAD httpfs".into(),
        "SET enable_external_access = true".into(),
        "SET lock_configuration = false".into(),
        "RESET enable_external_access".into(),
        "PRAGMA enable_profiling".into(),
        "CREATE TABLE x AS SELECT 1".into(),
        "CREATE VIEW s.t2 AS SELECT 1".into(),
        "CREATE OR REPLACE VIEW s.t AS SELECT 42 AS a".into(),
        "CREATE MACRO m(x) AS x".into(),
        "CREATE SECRET (TYPE s3)".into(),
        "INSERT INTO s.t VALUES (3, 'z')".into(),
        "UPDATE s.t SET a = 0".into(),
        "DELETE FROM s.t".into(),
        "DROP VIEW s.t".into(),
        "DROP SCHEMA s CASCADE".into(),
        "ALTER VIEW s.t RENAME TO u".into(),
        "CHECKPOINT".into(),
        "CALL pragma_version()".into(),
        "VACUUM".into(),
        "EXPLAIN ANALYZE SELECT 1".into(),
        // More than one statement.
        "SELECT 1; SELECT 2".into(),
        "SELECT 1; DROP VIEW s.t".into(),
        "SELECT * FROM s.t; COPY s.t TO '/tmp/x.csv'".into(),
    ];
    for sql in &cases {
        let r = vega.post("/api/v1/query", &json!({ "sql": sql }));
        assert!(
            r.status == 400 || r.status == 403,
            "expected 400/403 for {sql:?}, got {}: {}",
            r.status,
            r.text
        );
        let message = r.message();
        assert!(!message.is_empty(), "no message for {sql:?}");
        assert!(
            !message.contains("root:"),
            "file content leaked for {sql:?}: {message}"
        );
    }
    // Nothing changed: the asset reads as before, no file was written.
    assert_eq!(
        vega.sql("SELECT a, b FROM s.t ORDER BY a")["rows"],
        json!([[1, "x"], [2, "y"]])
    );
    assert!(!escape.exists(), "a COPY escaped the sandbox");
    assert!(!vega.data_dir.join("other").exists());
    // Settings are still locked down.
    let r = vega.sql("SELECT current_setting('enable_external_access')");
    assert_eq!(r["rows"], json!([[false]]));
}

#[test]
fn forbidden_reasons_are_specific() {
    let (_src, vega) = setup();
    let r = vega.post(
        "/api/v1/query",
        &json!({ "sql": "SELECT * FROM read_csv('/etc/passwd')" }),
    );
    assert_eq!(r.status, 403);
    assert!(r.message().contains("read_csv"), "{}", r.text);
    let r = vega.post("/api/v1/query", &json!({ "sql": "DROP VIEW s.t" }));
    assert_eq!(r.status, 403);
    assert!(r.message().contains("read-only"), "{}", r.text);
    let r = vega.post("/api/v1/query", &json!({ "sql": "SELECT 1; SELECT 2" }));
    assert_eq!(r.status, 400);
    assert!(r.message().contains("one statement"), "{}", r.text);
}

#[test]
fn allowed_queries_still_work() {
    let (_src, vega) = setup();
    for sql in [
        "SELECT * FROM s.t",
        "WITH x AS (SELECT a FROM s.t) SELECT sum(a) FROM x",
        "SELECT * FROM range(3)",
        "SELECT * FROM generate_series(1, 3)",
        "SELECT unnest([1, 2, 3])",
        "SELECT a FROM s.t WHERE a IN (SELECT a FROM s.t WHERE b = 'x')",
        "SELECT 1;",
        "FROM s.t SELECT a",
        "SELECT t1.a FROM s.t t1 JOIN s.t t2 USING (a)",
    ] {
        let r = vega.post("/api/v1/query", &json!({ "sql": sql }));
        assert_eq!(r.status, 200, "{sql}: {}", r.text);
    }
}
