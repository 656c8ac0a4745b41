//! Health endpoints, Prometheus metrics, JSON logs and trace context.

use serde_json::json;

use crate::server::{server_over, SourceDir, TestServer};

#[test]
fn health_endpoints_report_each_service() {
    let src = SourceDir::new();
    let vega = server_over(&src);
    vega.file_connection("files", &src.path());
    let c = vega.client();
    let live = c.get(format!("{}/health/live", vega.ops)).send().unwrap();
    assert_eq!(live.status(), 200);
    let ready = c.get(format!("{}/health/ready", vega.ops)).send().unwrap();
    assert_eq!(ready.status(), 200);

    let report: serde_json::Value = c
        .get(format!("{}/health", vega.ops))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(report["status"], "healthy");
    assert!(report["node_id"].as_str().unwrap().starts_with("node_"));
    assert_eq!(report["node_name"], "vega");
    assert!(report["uptime_seconds"].as_f64().unwrap() >= 0.0);
    assert!(report["timestamp"].as_str().unwrap().ends_with('Z'));
    assert!(!report["version"].as_str().unwrap().is_empty());
    let services = report["services"].as_array().unwrap();
    for name in ["catalog", "storage", "engine", "connection:files"] {
        let s = services
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(s["status"], "healthy", "{s}");
        assert!(s["response_time_ms"].as_f64().is_some());
        assert!(s["last_error"].is_null());
    }
    // `/health` also answers on the API port.
    assert_eq!(
        c.get(format!("{}/health", vega.api))
            .send()
            .unwrap()
            .status(),
        200
    );
}

#[test]
fn a_broken_connection_degrades_health_without_failing_readiness() {
    let src = SourceDir::new();
    let vega = server_over(&src);
    let sub = src.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    vega.file_connection("gone", &sub);
    std::fs::remove_dir(&sub).unwrap();
    let report: serde_json::Value = vega
        .client()
        .get(format!("{}/health", vega.ops))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(report["status"], "degraded");
    let conn = report["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "connection:gone")
        .unwrap()
        .clone();
    assert_eq!(conn["status"], "unhealthy");
    assert!(conn["last_error"].as_str().unwrap().contains("sub"));
    assert_eq!(
        vega.client()
            .get(format!("{}/health/ready", vega.ops))
            .send()
            .unwrap()
            .status(),
        200
    );
}

#[test]
fn metrics_expose_the_required_families() {
    let src = SourceDir::new();
    src.write("t.csv", "a\n1\n");
    let vega = server_over(&src);
    let con = vega.file_connection("files", &src.path());
    let asset = vega.asset(&con, "s", "t", json!({ "path": "t.csv" }));
    vega.sync(&asset);
    vega.sql("SELECT * FROM s.t");
    let _ = vega.post("/api/v1/query", &json!({ "sql": "SELEC 1" }));
    let text = vega
        .client()
        .get(format!("{}/metrics", vega.ops))
        .send()
        .unwrap()
        .text()
        .unwrap();
    for needle in [
        "http_request_duration_seconds_bucket{",
        "route=\"/api/v1/query\"",
        "status=\"200\"",
        "vega_query_duration_seconds_count{engine=\"duckdb\",status=\"ok\"} 1",
        "vega_query_duration_seconds_count{engine=\"duckdb\",status=\"error\"} 1",
        "vega_query_errors_total{engine=\"duckdb\",code=\"invalid_sql\"} 1",
        "vega_sync_jobs_total{mode=\"full\",outcome=\"succeeded\"} 1",
        "vega_sync_bytes_written_total ",
        "vega_jobs{state=\"succeeded\"} 1",
        "vega_sync_lag_seconds{asset=\"s.t\"} ",
        "process_cpu_seconds_total ",
        "process_resident_memory_bytes ",
        "vega_data_dir_disk_available_bytes ",
        "vega_data_dir_used_bytes ",
        "vega_build_info{version=",
    ] {
        assert!(text.contains(needle), "metrics lack {needle}:\n{text}");
    }
    assert!(!text.contains("SELEC"), "SQL never becomes a label");
}

#[test]
fn logs_are_json_lines_with_trace_context() {
    let src = SourceDir::new();
    src.write("t.csv", "a\n1\n2\n");
    let vega = server_over(&src);
    let con = vega.file_connection("files", &src.path());
    let asset = vega.asset(&con, "s", "t", json!({ "path": "t.csv" }));
    vega.sync(&asset);
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let incoming = format!("00-{trace}-00f067aa0ba902b7-01");
    let r = vega
        .client()
        .post(format!("{}/api/v1/query", vega.api))
        .header("traceparent", &incoming)
        .json(&json!({ "sql": "SELECT * FROM s.t" }))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let out = r.headers()["traceparent"].to_str().unwrap().to_string();
    assert!(out.starts_with(&format!("00-{trace}-")), "{out}");
    assert_ne!(
        out, incoming,
        "the response carries this server's own span id"
    );

    std::thread::sleep(std::time::Duration::from_millis(100));
    let lines = vega.log_lines();
    assert!(!lines.is_empty());
    for line in &lines {
        for key in [
            "datetime", "level", "service", "trace_id", "span_id", "user_id", "message", "context",
        ] {
            assert!(line.get(key).is_some(), "log line lacks {key}: {line}");
        }
    }
    let query_log = lines
        .iter()
        .find(|l| l["message"] == "query answered")
        .expect("a query log line");
    assert_eq!(query_log["trace_id"], trace);
    assert_eq!(query_log["service"], "vega");
    assert_eq!(query_log["user_id"], "dev");
    assert_eq!(query_log["context"]["engine"], "duckdb");
    assert_eq!(query_log["context"]["rows_returned"], 2);
    assert!(query_log["context"]["asset"]
        .as_str()
        .unwrap()
        .contains("s.t"));
    assert!(query_log["context"]["duration_ms"].is_number());
}

#[test]
fn requests_without_traceparent_get_a_new_trace() {
    let vega = TestServer::start();
    let r = vega
        .client()
        .get(format!("{}/api/v1/assets", vega.api))
        .send()
        .unwrap();
    let tp = r.headers()["traceparent"].to_str().unwrap();
    assert_eq!(tp.len(), 55, "{tp}");
    assert!(tp.starts_with("00-"));
}
