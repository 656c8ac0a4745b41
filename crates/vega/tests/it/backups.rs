//! Backups and restores over the API: full, catalog and asset backups
//! (deduplicated), list/get/verify/delete, restores as a new version or a
//! new asset, refusal of damaged backups, and a repository in S3.

use std::path::PathBuf;

use serde_json::{json, Value};

use crate::server::{Options, Resp, SourceDir, TestServer};

const UNKNOWN_ASSET: &str = "ast_00000000000000000000000000";

/// A node over `src` with two synced assets: `shop.a` (1, 2, 3) and
/// `shop.b` (x, y). Returns the node and the two asset ids.
fn node_with_two_assets(src: &SourceDir, extra_yaml: &str) -> (TestServer, String, String) {
    src.write("a.csv", "n\n1\n2\n3\n");
    src.write("b.csv", "s\nx\ny\n");
    let vega = TestServer::start_with(Options {
        allowed_roots: vec![src.path()],
        extra_yaml: extra_yaml.to_string(),
        ..Options::default()
    });
    let conn = vega.file_connection("files", &src.path());
    let a = vega.asset(
        &conn,
        "shop",
        "a",
        json!({ "path": "a.csv", "format": "csv" }),
    );
    let b = vega.asset(
        &conn,
        "shop",
        "b",
        json!({ "path": "b.csv", "format": "csv" }),
    );
    for asset in [&a, &b] {
        assert_eq!(vega.sync(asset)["state"], "succeeded");
    }
    (vega, a, b)
}

fn backup(vega: &TestServer, body: Value) -> Value {
    let r = vega.post("/api/v1/backups", &body);
    assert_eq!(r.status, 201, "{}", r.text);
    r.json()
}

fn sum_a(vega: &TestServer, table: &str) -> Value {
    vega.sql(&format!(
        "SELECT CAST(sum(n) AS BIGINT) AS s, count(*) AS c FROM {table}"
    ))["rows"][0]
        .clone()
}

fn versions(vega: &TestServer, asset: &str) -> Vec<Value> {
    let r = vega.get(&format!("/api/v1/assets/{asset}/versions"));
    assert_eq!(r.status, 200, "{}", r.text);
    r.json().as_array().unwrap().clone()
}

fn active_version(vega: &TestServer, asset: &str) -> Value {
    vega.get(&format!("/api/v1/assets/{asset}")).json()["active_version"].clone()
}

fn verify(vega: &TestServer, id: &str) -> Value {
    let r = vega.post(&format!("/api/v1/backups/{id}/verify"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()
}

/// The blob of a backup's file in a local repository.
fn blob_path(vega: &TestServer, sha256: &str) -> PathBuf {
    vega.data_dir
        .join("backups/objects/sha256")
        .join(&sha256[..2])
        .join(sha256)
}

#[test]
fn full_backups_are_listed_verified_and_deduplicated() {
    let src = SourceDir::new();
    let (vega, a, _b) = node_with_two_assets(&src, "");

    let first = backup(&vega, json!({ "scope": "full", "description": "nightly" }));
    let id = first["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("bak_"), "{first}");
    assert_eq!(first["scope"], "full");
    assert_eq!(first["description"], "nightly");
    assert_eq!(first["asset_id"], Value::Null);
    assert_eq!(first["catalog"], true);
    assert_eq!(first["objects"], 2, "one segment per asset: {first}");
    assert!(first["stats"]["bytes_written"].as_u64().unwrap() > 0);
    assert_eq!(first["bytes"], first["stats"]["bytes_total"]);
    assert!(first["newest_data_at"].is_string(), "{first}");

    let list = vega.get("/api/v1/backups").json();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["id"], id.as_str());

    let got = vega.get(&format!("/api/v1/backups/{id}"));
    assert_eq!(got.status, 200, "{}", got.text);
    let files = got.json()["files"].as_array().unwrap().clone();
    assert_eq!(files.len(), 2);
    assert!(files
        .iter()
        .any(|f| f["path"].as_str().unwrap().starts_with(&format!("{a}/"))));

    let report = verify(&vega, &id);
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["objects_checked"], 3, "two files and the catalog");
    assert_eq!(report["problems"], json!([]));

    // Nothing changed: the segments are not sent again; only the catalog
    // snapshot (which records when it was taken) is new.
    let second = backup(&vega, json!({ "scope": "full" }));
    let stats = &second["stats"];
    assert_eq!(stats["objects_deduplicated"], 2, "{second}");
    assert!(stats["objects_written"].as_u64().unwrap() <= 1, "{second}");
    let segment_bytes: u64 = files.iter().map(|f| f["bytes"].as_u64().unwrap()).sum();
    assert!(
        stats["bytes_deduplicated"].as_u64().unwrap() >= segment_bytes,
        "{second}"
    );
    assert!(
        stats["bytes_written"].as_u64().unwrap()
            < first["stats"]["bytes_written"].as_u64().unwrap(),
        "{second}"
    );

    // A catalog backup holds no files.
    let catalog = backup(&vega, json!({ "scope": "catalog" }));
    assert_eq!(catalog["objects"], 0, "{catalog}");
    assert_eq!(catalog["catalog"], true);

    // Filters.
    let future = vega.get("/api/v1/backups?from=2999-01-01T00:00:00Z").json();
    assert_eq!(future, json!([]));
    let all = vega.get("/api/v1/backups?from=2000-01-01T00:00:00Z").json();
    assert_eq!(all.as_array().unwrap().len(), 3);
    let r = vega.get("/api/v1/backups?from=yesterday");
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.message().contains("from"), "{}", r.text);

    // Metrics.
    assert!(vega.metric_sum("vega_backup_last_success_timestamp_seconds{scope=\"full\"}") > 0.0);
    assert!(vega.metric_sum("vega_backup_bytes_written_total{scope=\"full\"}") > 0.0);
    assert!(vega.metric_sum("vega_backup_bytes_deduplicated_total{scope=\"full\"}") > 0.0);
    assert!(vega.metric_sum("vega_backup_duration_seconds_count{scope=\"full\"}") >= 2.0);
}

#[test]
fn bad_backup_requests_are_refused() {
    let src = SourceDir::new();
    let (vega, a, _b) = node_with_two_assets(&src, "");

    let r = vega.post(
        "/api/v1/backups",
        &json!({ "scope": "asset", "asset_id": UNKNOWN_ASSET }),
    );
    assert_eq!(r.status, 404, "{}", r.text);
    assert!(r.message().contains("not found"), "{}", r.text);

    let r = vega.post("/api/v1/backups", &json!({ "scope": "everything" }));
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.message().contains("scope"), "{}", r.text);
    assert_eq!(r.json()["error"]["details"]["field"], "scope");

    let r = vega.post("/api/v1/backups", &json!({ "scope": "asset" }));
    assert!(r.status == 400 || r.status == 422, "{}", r.text);
    assert!(r.message().contains("asset_id"), "{}", r.text);

    let unknown = "bak_00000000000000000000000000";
    for r in [
        vega.get(&format!("/api/v1/backups/{unknown}")),
        vega.post(&format!("/api/v1/backups/{unknown}/verify"), &json!({})),
        vega.delete(&format!("/api/v1/backups/{unknown}")),
        vega.post(
            "/api/v1/restore",
            &json!({ "backup_id": unknown, "target": a }),
        ),
    ] {
        assert_eq!(r.status, 404, "{}", r.text);
    }

    let full = backup(&vega, json!({ "scope": "full" }));
    let id = full["id"].as_str().unwrap();
    let r = vega.post(
        "/api/v1/restore",
        &json!({ "backup_id": id, "target": a, "mode": "overwrite" }),
    );
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.message().contains("mode"), "{}", r.text);

    // A full restore into a running instance is the CLI's job.
    let r = vega.post("/api/v1/restore", &json!({ "backup_id": id }));
    assert_eq!(r.status, 409, "{}", r.text);
    assert!(r.message().contains("empty instance"), "{}", r.text);
}

#[test]
fn restore_replace_publishes_a_new_version_that_rolls_back() {
    let src = SourceDir::new();
    let (vega, a, _b) = node_with_two_assets(&src, "");
    assert_eq!(sum_a(&vega, "shop.a"), json!([6, 3]));
    let full = backup(&vega, json!({ "scope": "full" }));
    let full_id = full["id"].as_str().unwrap().to_string();

    // The source changes: v2 holds other rows.
    src.write("a.csv", "n\n10\n");
    assert_eq!(vega.sync(&a)["state"], "succeeded");
    assert_eq!(sum_a(&vega, "shop.a"), json!([10, 1]));
    assert_eq!(versions(&vega, &a).len(), 2);

    let r = vega.post(
        "/api/v1/restore",
        &json!({ "backup_id": full_id, "target": a, "mode": "replace" }),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let restored = r.json();
    assert_eq!(restored["version"]["version"], "v3", "{restored}");
    assert_eq!(restored["created"], false);
    assert_eq!(sum_a(&vega, "shop.a"), json!([6, 3]));
    assert_eq!(versions(&vega, &a).len(), 3);
    assert_eq!(active_version(&vega, &a), "v3");

    // The restore is a version like any other: roll back to v2.
    let r = vega.post(
        &format!("/api/v1/assets/{a}/rollback?version=v2"),
        &json!({}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(sum_a(&vega, "shop.a"), json!([10, 1]));

    // The per-asset endpoint, from an asset backup, restores again (v4).
    src.write("a.csv", "n\n100\n200\n");
    assert_eq!(vega.sync(&a)["state"], "succeeded");
    let asset_backup = backup(&vega, json!({ "scope": "asset", "asset_id": a }));
    assert_eq!(asset_backup["asset_id"], a.as_str());
    assert_eq!(asset_backup["objects"], 1, "{asset_backup}");
    let filtered = vega.get(&format!("/api/v1/backups?asset_id={a}")).json();
    assert_eq!(filtered.as_array().unwrap().len(), 1, "{filtered}");
    let r = vega.post(
        &format!("/api/v1/assets/{a}/restore?backup_id={full_id}"),
        &json!({}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(sum_a(&vega, "shop.a"), json!([6, 3]));
    let r = vega.post(
        &format!(
            "/api/v1/assets/{a}/restore?backup_id={}",
            asset_backup["id"].as_str().unwrap()
        ),
        &json!({}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(sum_a(&vega, "shop.a"), json!([300, 2]));
    assert_eq!(versions(&vega, &a).len(), 6);
}

#[test]
fn restore_into_a_new_asset() {
    let src = SourceDir::new();
    let (vega, a, _b) = node_with_two_assets(&src, "");
    let bak = backup(&vega, json!({ "scope": "asset", "asset_id": a }));
    let r = vega.post(
        "/api/v1/restore",
        &json!({ "backup_id": bak["id"], "mode": "new_asset", "name": "restored.a_copy" }),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let body = r.json();
    assert_eq!(body["created"], true);
    assert_eq!(body["version"]["version"], "v1");
    assert_ne!(body["asset"]["id"], a.as_str());
    assert_eq!(sum_a(&vega, "restored.a_copy"), json!([6, 3]));
    // The original is untouched.
    assert_eq!(versions(&vega, &a).len(), 1);

    // A taken name is a conflict; a bad one a 400.
    let r = vega.post(
        "/api/v1/restore",
        &json!({ "backup_id": bak["id"], "mode": "new_asset", "name": "restored.a_copy" }),
    );
    assert_eq!(r.status, 409, "{}", r.text);
    let r = vega.post(
        "/api/v1/restore",
        &json!({ "backup_id": bak["id"], "mode": "new_asset", "name": "nodot" }),
    );
    assert_eq!(r.status, 400, "{}", r.text);
}

#[test]
fn a_damaged_backup_is_reported_and_never_restored() {
    let src = SourceDir::new();
    let (vega, a, _b) = node_with_two_assets(&src, "");
    let bak = backup(&vega, json!({ "scope": "full" }));
    let id = bak["id"].as_str().unwrap().to_string();
    src.write("a.csv", "n\n10\n");
    assert_eq!(vega.sync(&a)["state"], "succeeded");

    let files = vega.get(&format!("/api/v1/backups/{id}")).json()["files"].clone();
    let file = files
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"].as_str().unwrap().starts_with(&format!("{a}/")))
        .unwrap()
        .clone();
    let path = file["path"].as_str().unwrap().to_string();
    let blob = blob_path(&vega, file["sha256"].as_str().unwrap());
    let mut bytes = std::fs::read(&blob).expect("blob exists");
    for b in bytes.iter_mut().take(16) {
        *b = !*b;
    }
    std::fs::write(&blob, &bytes).unwrap();

    let report = verify(&vega, &id);
    assert_eq!(report["ok"], false, "{report}");
    let problems = report["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{report}");
    assert_eq!(problems[0]["path"], path.as_str());
    assert_eq!(problems[0]["kind"], "checksum_mismatch");

    let r = vega.post(
        "/api/v1/restore",
        &json!({ "backup_id": id, "target": a, "mode": "replace" }),
    );
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(r.message().contains(&path), "{}", r.text);
    assert_eq!(active_version(&vega, &a), "v2");
    assert_eq!(versions(&vega, &a).len(), 2);
    assert_eq!(sum_a(&vega, "shop.a"), json!([10, 1]));
    // Nothing was left in the segment store either.
    let leftovers: Vec<_> = std::fs::read_dir(vega.data_dir.join("segments").join(&a))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("restore-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn deleting_a_backup_keeps_objects_another_one_shares() {
    let src = SourceDir::new();
    let (vega, _a, _b) = node_with_two_assets(&src, "");
    let first = backup(&vega, json!({ "scope": "full" }));
    let second = backup(&vega, json!({ "scope": "full" }));
    let r = vega.delete(&format!(
        "/api/v1/backups/{}",
        first["id"].as_str().unwrap()
    ));
    assert_eq!(r.status, 200, "{}", r.text);
    let report = r.json();
    assert_eq!(report["deleted"], json!([first["id"]]));
    assert!(
        report["kept_shared_objects"].as_u64().unwrap() >= 2,
        "{report}"
    );
    let list = vega.get("/api/v1/backups").json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    let check = verify(&vega, second["id"].as_str().unwrap());
    assert_eq!(check["ok"], true, "{check}");
    let r = vega.delete(&format!(
        "/api/v1/backups/{}",
        first["id"].as_str().unwrap()
    ));
    assert_eq!(r.status, 404, "{}", r.text);
}

#[test]
fn a_repository_in_s3_backs_up_verifies_and_restores() {
    let s3 = vega_testkit::s3::TestS3::start();
    let yaml = format!(
        "backup:\n  object_store:\n    url: s3://{}/vega-backups\n    endpoint: \"{}\"\n    access_key_id: {}\n    secret_access_key: {}\n    allow_http: true\n",
        s3.bucket(),
        s3.endpoint(),
        s3.access_key_id(),
        s3.secret_access_key()
    );
    let src = SourceDir::new();
    let (vega, a, _b) = node_with_two_assets(&src, &yaml);
    let bak = backup(&vega, json!({ "scope": "asset", "asset_id": a }));
    let id = bak["id"].as_str().unwrap().to_string();
    assert!(
        s3.list("vega-backups/backups/")
            .iter()
            .any(|k| k.contains(&id)),
        "{:?}",
        s3.list("")
    );
    assert!(!vega.data_dir.join("backups").exists());
    let report = verify(&vega, &id);
    assert_eq!(report["ok"], true, "{report}");

    src.write("a.csv", "n\n10\n");
    assert_eq!(vega.sync(&a)["state"], "succeeded");
    let r: Resp = vega.post(
        &format!("/api/v1/assets/{a}/restore?backup_id={id}"),
        &json!({}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(sum_a(&vega, "shop.a"), json!([6, 3]));
    assert_eq!(versions(&vega, &a).len(), 3);
}

#[test]
fn a_backup_outlives_the_request_deadline() {
    let src = SourceDir::new();
    let (mut vega, _a, _b) = node_with_two_assets(&src, "");
    let data_dir = vega.data_dir.clone();
    let tmp = vega.take_tmp();
    vega.kill9();
    drop(vega);

    // Every API request now gets 1 ms: the backup's answer comes too late,
    // but the backup itself completes.
    let hurried = TestServer::start_with(Options {
        allowed_roots: vec![src.path()],
        data_dir: Some(data_dir.clone()),
        env: vec![("VEGA_API__REQUEST_TIMEOUT".into(), "1ms".into())],
        ..Options::default()
    });
    let r = hurried.post("/api/v1/backups", &json!({ "scope": "full" }));
    assert!(r.status == 504 || r.status == 201, "{}", r.text);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while hurried.metric_sum("vega_backup_last_success_timestamp_seconds{scope=\"full\"}") == 0.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the backup never finished"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let mut hurried = hurried;
    hurried.kill9();
    drop(hurried);

    let vega = TestServer::start_with(Options {
        allowed_roots: vec![src.path()],
        data_dir: Some(data_dir),
        ..Options::default()
    });
    let list = vega.get("/api/v1/backups").json();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    let report = verify(&vega, list[0]["id"].as_str().unwrap());
    assert_eq!(report["ok"], true, "{report}");
    drop(tmp);
}
