//! Full sync from files: versions, checks, rollback, failures that leave the
//! active version untouched.

use serde_json::json;

use crate::server::{server_over, SourceDir};

fn count(vega: &crate::server::TestServer, table: &str) -> i64 {
    vega.sql(&format!("SELECT count(*) AS n FROM {table}"))["rows"][0][0]
        .as_i64()
        .unwrap()
}

#[test]
fn csv_full_sync_publishes_a_queryable_version() {
    let src = SourceDir::new();
    src.write(
        "orders.csv",
        "id,amount,region\n1,10.5,eu\n2,20,us\n3,7.25,eu\n",
    );
    let vega = server_over(&src);
    let con = vega.file_connection("files", &src.path());
    let asset = vega.asset(&con, "sales", "orders", json!({ "path": "orders.csv" }));
    let job = vega.sync(&asset);
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["result_version"], "v1");
    assert_eq!(job["rows"], 3);

    let versions = vega.get(&format!("/api/v1/assets/{asset}/versions")).json();
    let v1 = &versions[0];
    assert_eq!(v1["version"], "v1");
    assert_eq!(v1["active"], true);
    assert_eq!(v1["rows"], 3);
    let seg = &v1["segments"][0];
    assert_eq!(seg["sha256"].as_str().unwrap().len(), 64);
    assert!(seg["bytes"].as_u64().unwrap() > 0);
    assert!(vega
        .data_dir
        .join("segments")
        .join(seg["path"].as_str().unwrap())
        .exists());

    let r = vega.sql(
        "SELECT region, sum(amount) AS total FROM sales.orders GROUP BY region ORDER BY region",
    );
    assert_eq!(r["rows"], json!([["eu", 17.75], ["us", 20.0]]));
    assert_eq!(r["columns"][1]["type"], "DOUBLE");
}

#[test]
fn parquet_and_ndjson_sources_sync() {
    let src = SourceDir::new();
    src.write(
        "events.ndjson",
        "{\"id\": 1, \"kind\": \"start\"}\n{\"id\": 2, \"kind\": \"stop\"}\n",
    );
    src.write("list.json", "[{\"x\": 1.5}, {\"x\": 2.5}, {\"x\": null}]");
    let vega = server_over(&src);
    let con = vega.file_connection("files", &src.path());
    let a = vega.asset(&con, "ev", "events", json!({ "path": "events.ndjson" }));
    let b = vega.asset(
        &con,
        "ev",
        "list",
        json!({ "path": "list.json", "format": "json" }),
    );
    assert_eq!(vega.sync(&a)["state"], "succeeded");
    assert_eq!(vega.sync(&b)["state"], "succeeded");
    assert_eq!(
        vega.sql("SELECT kind FROM ev.events ORDER BY id")["rows"],
        json!([["start"], ["stop"]])
    );
    assert_eq!(
        vega.sql("SELECT sum(x) FROM ev.list")["rows"],
        json!([[4.0]])
    );

    // A Parquet source: the segment of the CSV version above is one.
    let seg = vega.get(&format!("/api/v1/assets/{a}/versions")).json()[0]["segments"][0]["path"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::copy(
        vega.data_dir.join("segments").join(seg),
        src.path().join("events.parquet"),
    )
    .unwrap();
    let c = vega.asset(
        &con,
        "ev",
        "from_parquet",
        json!({ "path": "events.parquet" }),
    );
    assert_eq!(vega.sync(&c)["state"], "succeeded");
    assert_eq!(
        vega.sql("SELECT count(*) FROM ev.from_parquet")["rows"],
        json!([[2]])
    );
}

#[test]
fn resync_makes_v2_and_rollback_returns_to_v1() {
    let src = SourceDir::new();
    src.write("t.csv", "a\n1\n2\n");
    let vega = server_over(&src);
    let con = vega.file_connection("files", &src.path());
    let asset = vega.asset(&con, "s", "t", json!({ "path": "t.csv" }));
    vega.sync(&asset);
    src.write("t.csv", "a\n1\n2\n3\n4\n");
    let job = vega.sync(&asset);
    assert_eq!(job["result_version"], "v2");
    assert_eq!(count(&vega, "s.t"), 4);

    let r = vega.post(
        &format!("/api/v1/assets/{asset}/rollback?version=v1"),
        &json!({}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["active_version"], "v1");
    assert_eq!(count(&vega, "s.t"), 2);
    let versions = vega.get(&format!("/api/v1/assets/{asset}/versions")).json();
    assert_eq!(versions.as_array().unwrap().len(), 2, "history is kept");

    let r = vega.post(
        &format!("/api/v1/assets/{asset}/rollback?version=v9"),
        &json!({}),
    );
    assert_eq!(r.status, 404, "{}", r.text);
    let r = vega.post(
        &format!("/api/v1/assets/{asset}/rollback?version=latest"),
        &json!({}),
    );
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(count(&vega, "s.t"), 2, "a refused rollback changes nothing");
}

#[test]
fn csv_with_a_bad_row_fails_the_job_naming_the_row_and_keeps_the_active_version() {
    let src = SourceDir::new();
    src.write("t.csv", "id,amount\n1,10\n2,20\n");
    let vega = server_over(&src);
    let con = vega.file_connection("files", &src.path());
    let asset = vega.asset(&con, "s", "t", json!({ "path": "t.csv" }));
    assert_eq!(vega.sync(&asset)["state"], "succeeded");

    let mut bad = String::from("id,amount\n");
    for i in 1..=2000 {
        bad.push_str(&format!("{i},{}\n", i * 10));
    }
    bad.push_str("2001,not-a-number\n");
    src.write("t.csv", &bad);
    let job = vega.sync(&asset);
    assert_eq!(job["state"], "failed", "{job}");
    let error = job["error"].as_str().unwrap();
    assert!(
        error.contains("2002"),
        "the error names line 2002 of the file: {error}"
    );

    let asset_now = vega.get(&format!("/api/v1/assets/{asset}")).json();
    assert_eq!(asset_now["active_version"], "v1");
    assert_eq!(count(&vega, "s.t"), 2);
    let versions = vega.get(&format!("/api/v1/assets/{asset}/versions")).json();
    assert_eq!(versions.as_array().unwrap().len(), 1);
}

#[test]
fn min_rows_check_blocks_the_publish() {
    let src = SourceDir::new();
    src.write("t.csv", "a\n1\n2\n3\n");
    let vega = server_over(&src);
    let con = vega.file_connection("files", &src.path());
    let r = vega.post(
        "/api/v1/assets",
        &json!({ "namespace": "s", "name": "t", "connection_id": con,
                 "source": { "path": "t.csv" }, "checks": { "min_rows": 3 } }),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let asset = r.json()["id"].as_str().unwrap().to_string();
    assert_eq!(vega.sync(&asset)["state"], "succeeded");
    src.write("t.csv", "a\n1\n");
    let job = vega.sync(&asset);
    assert_eq!(job["state"], "failed");
    assert!(job["error"].as_str().unwrap().contains("min_rows"), "{job}");
    assert_eq!(count(&vega, "s.t"), 3);
}

#[test]
fn disabled_connection_refuses_sync() {
    let src = SourceDir::new();
    src.write("t.csv", "a\n1\n");
    let vega = server_over(&src);
    let con = vega.file_connection("files", &src.path());
    let asset = vega.asset(&con, "s", "t", json!({ "path": "t.csv" }));
    vega.put(&format!("/api/v1/connections/{con}/disable"), &json!({}));
    let r = vega.post(
        &format!("/api/v1/assets/{asset}/sync?mode=full"),
        &json!({}),
    );
    assert_eq!(r.status, 409, "{}", r.text);
    assert!(r.message().contains("disabled"));
}

#[test]
fn second_sync_while_one_runs_is_409_with_the_running_job() {
    let src = SourceDir::new();
    let mut big = String::from("a,b\n");
    for i in 0..400_000 {
        big.push_str(&format!("{i},row{i}\n"));
    }
    src.write("t.csv", &big);
    let vega = server_over(&src);
    let con = vega.file_connection("files", &src.path());
    let asset = vega.asset(&con, "s", "t", json!({ "path": "t.csv" }));
    let first = vega.post(&format!("/api/v1/assets/{asset}/sync"), &json!({}));
    assert_eq!(first.status, 202);
    let first_id = first.json()["id"].as_str().unwrap().to_string();
    let second = vega.post(&format!("/api/v1/assets/{asset}/sync"), &json!({}));
    if second.status == 409 {
        assert_eq!(
            second.json()["error"]["details"]["existing"],
            first_id.as_str()
        );
    } else {
        // The first job finished before the second request arrived.
        assert_eq!(
            vega.get(&format!("/api/v1/jobs/{first_id}")).json()["state"],
            "succeeded"
        );
    }
    vega.wait_job(&first_id);
    let r = vega.post(
        &format!("/api/v1/assets/{asset}/sync?mode=stream"),
        &json!({}),
    );
    assert_eq!(r.status, 400);
}

#[test]
fn jobs_are_listed_and_filtered() {
    let src = SourceDir::new();
    src.write("t.csv", "a\n1\n");
    let vega = server_over(&src);
    let con = vega.file_connection("files", &src.path());
    let asset = vega.asset(&con, "s", "t", json!({ "path": "t.csv" }));
    vega.sync(&asset);
    let jobs = vega
        .get(&format!("/api/v1/jobs?asset_id={asset}&state=succeeded"))
        .json();
    assert_eq!(jobs.as_array().unwrap().len(), 1);
    assert_eq!(jobs[0]["kind"], "sync");
    assert_eq!(vega.get("/api/v1/jobs?state=weird").status, 400);
    assert_eq!(vega.get("/api/v1/jobs?limit=0").status, 400);
}

#[test]
fn a_changed_source_schema_makes_a_new_version_unless_a_rule_forbids_it() {
    let src = SourceDir::new();
    src.write("t.csv", "a,b\n1,x\n");
    let vega = server_over(&src);
    let con = vega.file_connection("files", &src.path());
    let free = vega.asset(&con, "s", "free", json!({ "path": "t.csv" }));
    let r = vega.post(
        "/api/v1/assets",
        &json!({ "namespace": "s", "name": "pinned", "connection_id": con,
                 "source": { "path": "t.csv" }, "checks": { "same_schema": true } }),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let pinned = r.json()["id"].as_str().unwrap().to_string();
    assert_eq!(vega.sync(&free)["state"], "succeeded");
    assert_eq!(vega.sync(&pinned)["state"], "succeeded");

    src.write("t.csv", "a,b,c\n1,x,2.5\n");
    assert_eq!(vega.sync(&free)["state"], "succeeded");
    assert_eq!(
        vega.sql("SELECT c FROM s.free")["rows"],
        json!([[2.5]]),
        "the new version has the new column"
    );
    let job = vega.sync(&pinned);
    assert_eq!(job["state"], "failed", "{job}");
    assert!(
        job["error"].as_str().unwrap().contains("same_schema"),
        "{job}"
    );
    let r = vega.post("/api/v1/query", &json!({ "sql": "SELECT c FROM s.pinned" }));
    assert_eq!(
        r.status, 400,
        "the pinned asset keeps its old schema: {}",
        r.text
    );
}

#[test]
fn a_running_sync_reports_its_progress() {
    let src = SourceDir::new();
    let mut big = String::from("a,b\n");
    for i in 0..1_500_000 {
        big.push_str(&format!("{i},row{i}\n"));
    }
    src.write("t.csv", &big);
    let vega = server_over(&src);
    let con = vega.file_connection("files", &src.path());
    let asset = vega.asset(
        &con,
        "s",
        "t",
        json!({ "path": "t.csv", "batch_size": 10000 }),
    );
    let r = vega.post(
        &format!("/api/v1/assets/{asset}/sync?mode=full"),
        &json!({}),
    );
    let job = r.json()["id"].as_str().unwrap().to_string();
    let mut seen_progress = false;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let j = vega.get(&format!("/api/v1/jobs/{job}")).json();
        if j["state"] == "running" && j["rows"].as_u64().unwrap_or(0) > 0 {
            seen_progress = true;
        }
        if j["state"] != "running" {
            assert_eq!(j["state"], "succeeded", "{j}");
            assert_eq!(j["rows"], 1_500_000);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the sync did not finish"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(seen_progress, "no progress was reported while the sync ran");
}
