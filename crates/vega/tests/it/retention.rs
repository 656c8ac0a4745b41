//! Retention: rows older than the period are removed in a new version;
//! whole old segments are dropped, the straddling one is rewritten, recent
//! ones are kept as the same files.

use serde_json::json;

use crate::server::{Options, SourceDir, TestServer};

#[test]
fn retention_drops_old_segments_rewrites_the_straddler_and_keeps_history() {
    let src = SourceDir::new();
    // Six rows, two per segment: [old, old] [old, recent] [recent, recent].
    src.write(
        "events.csv",
        "id,day\n1,2019-01-01\n2,2019-01-02\n3,2019-01-03\n4,2999-01-01\n5,2999-01-02\n6,2999-01-03\n",
    );
    let vega = TestServer::start_with(Options {
        allowed_roots: vec![src.path()],
        extra_yaml: "sync:\n  rows_per_segment: 2\n".into(),
        ..Options::default()
    });
    let con = vega.file_connection("files", &src.path());
    let r = vega.post(
        "/api/v1/assets",
        &json!({ "namespace": "ops", "name": "events", "connection_id": con,
                 "source": { "path": "events.csv" }, "retention": { "column": "day", "period": "30d" } }),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let asset = r.json()["id"].as_str().unwrap().to_string();
    assert_eq!(r.json()["retention"]["period"], "30d");
    assert_eq!(vega.sync(&asset)["state"], "succeeded");
    let v1 = vega.get(&format!("/api/v1/assets/{asset}/versions")).json()[0].clone();
    assert_eq!(v1["segments"].as_array().unwrap().len(), 3);

    let r = vega.post(&format!("/api/v1/assets/{asset}/retention"), &json!({}));
    assert_eq!(r.status, 202, "{}", r.text);
    let job = vega.wait_job(r.json()["id"].as_str().unwrap());
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["result_version"], "v2");
    assert_eq!(
        vega.sql("SELECT id FROM ops.events ORDER BY id")["rows"],
        json!([[4], [5], [6]])
    );

    let v2 = vega.get(&format!("/api/v1/assets/{asset}/versions")).json()[0].clone();
    let paths: Vec<&str> = v2["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths.len(), 2, "{v2}");
    assert!(
        paths.contains(&v1["segments"][2]["path"].as_str().unwrap()),
        "the recent segment is kept as is"
    );

    // Nothing older remains: a second run publishes nothing.
    let r = vega.post(&format!("/api/v1/assets/{asset}/retention"), &json!({}));
    let job = vega.wait_job(r.json()["id"].as_str().unwrap());
    assert_eq!(job["state"], "succeeded");
    assert!(job["result_version"].is_null(), "{job}");

    // History is kept: roll back to before retention.
    let r = vega.post(
        &format!("/api/v1/assets/{asset}/rollback?version=v1"),
        &json!({}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        vega.sql("SELECT count(*) FROM ops.events")["rows"],
        json!([[6]])
    );
}

#[test]
fn bad_retention_is_refused_and_missing_retention_cannot_run() {
    let src = SourceDir::new();
    src.write("t.csv", "id,day\n1,2020-01-01\n");
    let vega = TestServer::start_with(Options {
        allowed_roots: vec![src.path()],
        ..Options::default()
    });
    let con = vega.file_connection("files", &src.path());
    let r = vega.post(
        "/api/v1/assets",
        &json!({ "namespace": "s", "name": "t", "connection_id": con,
                 "source": { "path": "t.csv" }, "retention": { "column": "day", "period": "forever" } }),
    );
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.json()["error"]["details"]["field"], "retention.period");
    let asset = vega.asset(&con, "s", "t", json!({ "path": "t.csv" }));
    let r = vega.post(&format!("/api/v1/assets/{asset}/retention"), &json!({}));
    assert_eq!(r.status, 422, "{}", r.text);
}
