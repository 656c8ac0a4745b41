//! Incremental sync, schedules and job cancellation, end to end.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::server::{Options, SourceDir, TestServer};

fn server(src: &SourceDir) -> TestServer {
    TestServer::start_with(Options {
        allowed_roots: vec![src.path()],
        extra_yaml: "sync:\n  scheduler_tick: 200ms\n".into(),
        ..Options::default()
    })
}

#[test]
fn incremental_sync_appends_only_new_rows_to_the_active_version() {
    let src = SourceDir::new();
    src.write("log.csv", "id,ts,v\n1,10,a\n2,20,b\n3,20,c\n");
    let vega = server(&src);
    let con = vega.file_connection("files", &src.path());
    let r = vega.post(
        "/api/v1/assets",
        &json!({ "namespace": "ops", "name": "log", "connection_id": con, "sync_mode": "incremental",
                 "source": { "path": "log.csv", "cursor_column": "ts", "key_columns": ["id"] } }),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let asset = r.json()["id"].as_str().unwrap().to_string();

    let r = vega.post(
        &format!("/api/v1/assets/{asset}/sync?mode=incremental"),
        &json!({}),
    );
    assert_eq!(r.status, 202, "{}", r.text);
    let job = vega.wait_job(r.json()["id"].as_str().unwrap());
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(
        vega.sql("SELECT count(*) FROM ops.log")["rows"],
        json!([[3]])
    );
    let a = vega.get(&format!("/api/v1/assets/{asset}")).json();
    assert_eq!(a["active_version"], "v1");
    assert_eq!(a["watermark"]["value"], 20);

    // A late row at the watermark's value and a newer one.
    src.write(
        "log.csv",
        "id,ts,v\n1,10,a\n2,20,b\n3,20,c\n4,20,d\n5,30,e\n",
    );
    let r = vega.post(
        &format!("/api/v1/assets/{asset}/sync?mode=incremental"),
        &json!({}),
    );
    let job = vega.wait_job(r.json()["id"].as_str().unwrap());
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["rows"], 2);
    assert_eq!(
        vega.sql("SELECT id FROM ops.log ORDER BY id")["rows"],
        json!([[1], [2], [3], [4], [5]]),
        "no row lost or duplicated"
    );
    let versions = vega.get(&format!("/api/v1/assets/{asset}/versions")).json();
    assert_eq!(versions.as_array().unwrap().len(), 1, "appended to v1");
    assert_eq!(versions[0]["rows"], 5);

    // Nothing new: the job succeeds and changes nothing.
    let r = vega.post(
        &format!("/api/v1/assets/{asset}/sync?mode=incremental"),
        &json!({}),
    );
    let job = vega.wait_job(r.json()["id"].as_str().unwrap());
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(
        vega.sql("SELECT count(*) FROM ops.log")["rows"],
        json!([[5]])
    );

    // A full sync rebuilds a new version from scratch.
    let job = vega.sync(&asset);
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["result_version"], "v2");
    assert_eq!(
        vega.sql("SELECT count(*) FROM ops.log")["rows"],
        json!([[5]])
    );
}

#[test]
fn incremental_mode_on_a_full_asset_is_refused() {
    let src = SourceDir::new();
    src.write("t.csv", "a\n1\n");
    let vega = server(&src);
    let con = vega.file_connection("files", &src.path());
    let asset = vega.asset(&con, "s", "t", json!({ "path": "t.csv" }));
    let r = vega.post(
        &format!("/api/v1/assets/{asset}/sync?mode=incremental"),
        &json!({}),
    );
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(r.message().contains("full mode"), "{}", r.text);
}

#[test]
fn a_scheduled_asset_syncs_on_its_own() {
    let src = SourceDir::new();
    src.write("t.csv", "a\n1\n2\n");
    let vega = server(&src);
    let con = vega.file_connection("files", &src.path());
    let r = vega.post(
        "/api/v1/assets",
        &json!({ "namespace": "s", "name": "t", "connection_id": con,
                 "source": { "path": "t.csv" }, "schedule": "1s" }),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let asset = r.json()["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let a = vega.get(&format!("/api/v1/assets/{asset}")).json();
        if a["active_version"].is_string() {
            break;
        }
        assert!(Instant::now() < deadline, "the schedule never ran a sync");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(vega.sql("SELECT count(*) FROM s.t")["rows"], json!([[2]]));
    // Removing the schedule stops it.
    let r = vega.put(
        &format!("/api/v1/assets/{asset}"),
        &json!({ "schedule": "" }),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.json()["schedule"].is_null());
}

#[test]
fn invalid_schedules_are_refused_naming_the_field() {
    let src = SourceDir::new();
    src.write("t.csv", "a\n1\n");
    let vega = server(&src);
    let con = vega.file_connection("files", &src.path());
    for bad in ["soon", "0 0 0 0 0 0 0 0", "500ms"] {
        let r = vega.post(
            "/api/v1/assets",
            &json!({ "namespace": "s", "name": "t", "connection_id": con,
                     "source": { "path": "t.csv" }, "schedule": bad }),
        );
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
        assert_eq!(r.json()["error"]["details"]["field"], "schedule");
    }
    assert!(vega
        .get("/api/v1/assets")
        .json()
        .as_array()
        .unwrap()
        .is_empty());
}

#[test]
fn cancelling_a_running_sync_keeps_the_active_version() {
    let src = SourceDir::new();
    src.write("t.csv", "a,b\n1,x\n");
    let vega = server(&src);
    let con = vega.file_connection("files", &src.path());
    let asset = vega.asset(
        &con,
        "s",
        "t",
        json!({ "path": "t.csv", "batch_size": 1000 }),
    );
    assert_eq!(vega.sync(&asset)["state"], "succeeded");
    let mut big = String::from("a,b\n");
    for i in 0..600_000 {
        big.push_str(&format!("{i},row{i}\n"));
    }
    src.write("t.csv", &big);
    let r = vega.post(
        &format!("/api/v1/assets/{asset}/sync?mode=full"),
        &json!({}),
    );
    let job = r.json()["id"].as_str().unwrap().to_string();
    let r = vega.post(&format!("/api/v1/jobs/{job}/cancel"), &json!({}));
    if r.status == 409 {
        // It finished first: that is allowed, but then it must have succeeded.
        assert_eq!(
            vega.get(&format!("/api/v1/jobs/{job}")).json()["state"],
            "succeeded"
        );
        return;
    }
    assert_eq!(r.status, 200, "{}", r.text);
    let finished = vega.wait_job(&job);
    assert_eq!(finished["state"], "cancelled", "{finished}");
    assert_eq!(
        vega.get(&format!("/api/v1/assets/{asset}")).json()["active_version"],
        "v1"
    );
    assert_eq!(vega.sql("SELECT count(*) FROM s.t")["rows"], json!([[1]]));
    let r = vega.post(&format!("/api/v1/jobs/{job}/cancel"), &json!({}));
    assert_eq!(r.status, 409, "{}", r.text);
}

#[test]
fn a_disabled_connection_pauses_the_schedule_and_enable_resumes_it() {
    let src = SourceDir::new();
    src.write("t.csv", "a\n1\n");
    let vega = server(&src);
    let con = vega.file_connection("files", &src.path());
    let r = vega.put(&format!("/api/v1/connections/{con}/disable"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    let r = vega.post(
        "/api/v1/assets",
        &json!({ "namespace": "s", "name": "t", "connection_id": con,
                 "source": { "path": "t.csv" }, "schedule": "1s" }),
    );
    let asset = r.json()["id"].as_str().unwrap().to_string();
    std::thread::sleep(Duration::from_millis(2500));
    let jobs = vega.get(&format!("/api/v1/jobs?asset_id={asset}")).json();
    assert!(
        jobs.as_array().unwrap().is_empty(),
        "a disabled connection starts no sync: {jobs}"
    );
    let health: serde_json::Value = vega
        .client()
        .get(format!("{}/health", vega.ops))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let svc = health["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "connection:files")
        .unwrap()
        .clone();
    assert_eq!(svc["status"], "disabled");

    vega.put(&format!("/api/v1/connections/{con}/enable"), &json!({}));
    let deadline = Instant::now() + Duration::from_secs(30);
    while vega.get(&format!("/api/v1/assets/{asset}")).json()["active_version"].is_null() {
        assert!(
            Instant::now() < deadline,
            "enabling did not resume the schedule"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
