//! Crash safety of publish: the process is aborted between the steps of a
//! full sync; after a restart the interrupted job is marked failed and run
//! again as a new job, orphaned files are gone, and every version's files
//! are intact. (That the previous version stays active until the rerun
//! publishes is proven step by step in vega-sync's own tests.)

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use crate::server::{Options, SourceDir, TestServer};

fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

fn crash_at(failpoint: &str) {
    let src = SourceDir::new();
    src.write("t.csv", "a\n1\n2\n");
    let mut vega = TestServer::start_with(Options {
        allowed_roots: vec![src.path()],
        env: vec![("VEGA_FAILPOINT".into(), format!("{failpoint}=abort"))],
        ..Options::default()
    });
    let tmp = vega.take_tmp();
    let data_dir = vega.data_dir.clone();
    let con = vega.file_connection("files", &src.path());
    let asset = vega.asset(&con, "s", "t", json!({ "path": "t.csv" }));

    // v1 cannot be made with the failpoint armed: restart without it first.
    vega.kill9();
    let vega = TestServer::start_with(Options {
        allowed_roots: vec![src.path()],
        data_dir: Some(data_dir.clone()),
        ..Options::default()
    });
    assert_eq!(vega.sync(&asset)["state"], "succeeded");
    let files_v1 = files_under(&data_dir.join("segments"));
    drop(vega);

    // Now crash in the middle of the v2 sync.
    src.write("t.csv", "a\n1\n2\n3\n4\n5\n");
    let mut vega = TestServer::start_with(Options {
        allowed_roots: vec![src.path()],
        data_dir: Some(data_dir.clone()),
        env: vec![("VEGA_FAILPOINT".into(), format!("{failpoint}=abort"))],
        ..Options::default()
    });
    let r = vega.post(
        &format!("/api/v1/assets/{asset}/sync?mode=full"),
        &json!({}),
    );
    assert_eq!(r.status, 202, "{}", r.text);
    let job = r.json()["id"].as_str().unwrap().to_string();
    let status = vega.wait_exit(Duration::from_secs(60));
    assert!(
        !status.success(),
        "the failpoint should have aborted the process"
    );

    let vega = TestServer::start_with(Options {
        allowed_roots: vec![src.path()],
        data_dir: Some(data_dir.clone()),
        ..Options::default()
    });
    // The crashed job is failed as interrupted, and run again as a new job.
    let j = vega.get(&format!("/api/v1/jobs/{job}")).json();
    assert_eq!(j["state"], "failed", "{j}");
    assert!(j["error"].as_str().unwrap().contains("interrupted"), "{j}");
    let jobs = vega.get(&format!("/api/v1/jobs?asset_id={asset}")).json();
    let resumed = jobs
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] != job.as_str() && x["created_at"].as_str() > j["created_at"].as_str())
        .unwrap_or_else(|| panic!("no job was restarted after the crash at {failpoint}: {jobs}"))
        .clone();
    let resumed = vega.wait_job(resumed["id"].as_str().unwrap());
    assert_eq!(resumed["state"], "succeeded", "{resumed}");
    let expected_version = if failpoint == "sync.after_publish" {
        "v3"
    } else {
        "v2"
    };
    let a = vega.get(&format!("/api/v1/assets/{asset}")).json();
    assert_eq!(
        a["active_version"], expected_version,
        "after a crash at {failpoint}"
    );
    assert_eq!(
        vega.sql("SELECT count(*) FROM s.t")["rows"],
        json!([[5]]),
        "after a crash at {failpoint}"
    );
    // On disk are exactly the files the versions reference: the crashed
    // attempt's orphans are gone, and every segment is intact.
    let mut referenced = Vec::new();
    for v in vega
        .get(&format!("/api/v1/assets/{asset}/versions"))
        .json()
        .as_array()
        .unwrap()
    {
        for seg in v["segments"].as_array().unwrap() {
            let path = seg["path"].as_str().unwrap().to_string();
            let bytes = std::fs::read(data_dir.join("segments").join(&path)).unwrap();
            assert_eq!(bytes.len() as u64, seg["bytes"].as_u64().unwrap());
            referenced.push(path);
        }
    }
    referenced.sort();
    referenced.dedup();
    assert_eq!(
        files_under(&data_dir.join("segments")),
        referenced,
        "after a crash at {failpoint}"
    );
    assert!(
        files_v1.iter().all(|f| referenced.contains(f)),
        "v1's files are intact"
    );
    // And a new sync works.
    assert_eq!(vega.sync(&asset)["state"], "succeeded");
    drop(tmp);
}

#[test]
fn crash_after_segments_are_written_loses_nothing_and_the_job_runs_again() {
    crash_at("sync.after_segments_written");
}

#[test]
fn crash_after_checks_loses_nothing_and_the_job_runs_again() {
    crash_at("sync.after_checks");
}

#[test]
fn crash_after_publish_keeps_the_new_version_and_the_job_runs_again() {
    crash_at("sync.after_publish");
}

#[test]
fn an_asset_whose_files_are_gone_does_not_stop_the_node() {
    let src = SourceDir::new();
    src.write("a.csv", "x\n1\n");
    src.write("b.csv", "y\n2\n");
    let mut vega = TestServer::start_with(Options {
        allowed_roots: vec![src.path()],
        ..Options::default()
    });
    let _tmp = vega.take_tmp();
    let data_dir = vega.data_dir.clone();
    let con = vega.file_connection("files", &src.path());
    let a = vega.asset(&con, "s", "a", json!({ "path": "a.csv" }));
    let b = vega.asset(&con, "s", "b", json!({ "path": "b.csv" }));
    assert_eq!(vega.sync(&a)["state"], "succeeded");
    assert_eq!(vega.sync(&b)["state"], "succeeded");
    vega.kill9();
    std::fs::remove_dir_all(data_dir.join("segments").join(&a)).unwrap();
    let vega = TestServer::start_with(Options {
        allowed_roots: vec![src.path()],
        data_dir: Some(data_dir.clone()),
        ..Options::default()
    });
    assert_eq!(vega.sql("SELECT y FROM s.b")["rows"], json!([[2]]));
    let r = vega.post("/api/v1/query", &json!({ "sql": "SELECT x FROM s.a" }));
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.code(), "unknown_asset");
    assert!(
        vega.logs().contains("cannot be read on this node"),
        "the missing files are logged"
    );
}
