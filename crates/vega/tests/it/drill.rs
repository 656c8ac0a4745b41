//! Disaster recovery from the command line: `vega backup create` through a
//! running node, `vega backup list|verify` on the repository alone, a full
//! restore into an empty data directory that answers every query as the
//! lost node did, refusal of a damaged backup, and `vega drill`'s RTO/RPO
//! report and exit status.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::{json, Value};

use crate::server::{vega_command, Options, SourceDir, TestServer};

fn vega(config: &Path, args: &[&str]) -> Output {
    vega_command()
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("running vega")
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The answers the tests compare before and after a restore.
fn answers(vega: &TestServer) -> Vec<Value> {
    [
        "SELECT * FROM s.orders ORDER BY id",
        "SELECT count(*), sum(v) FROM s.readings",
    ]
    .iter()
    .map(|sql| vega.sql(sql)["rows"].clone())
    .collect()
}

/// A node with two assets (one with two versions, v1 active after a
/// rollback) and a full backup of it, taken with `vega backup create`.
fn node_with_a_backup(src: &SourceDir) -> (TestServer, PathBuf) {
    src.write("orders.csv", "id,item\n1,apple\n2,pear\n");
    src.write("readings.csv", "v\n1.5\n2.5\n3.0\n");
    let node = TestServer::start_with(Options {
        allowed_roots: vec![src.path()],
        ..Options::default()
    });
    let con = node.file_connection("files", &src.path());
    let orders = node.asset(&con, "s", "orders", json!({ "path": "orders.csv" }));
    let readings = node.asset(&con, "s", "readings", json!({ "path": "readings.csv" }));
    assert_eq!(node.sync(&orders)["state"], "succeeded");
    assert_eq!(node.sync(&readings)["state"], "succeeded");
    src.write("orders.csv", "id,item\n1,apple\n2,pear\n3,plum\n");
    assert_eq!(node.sync(&orders)["state"], "succeeded");
    let r = node.post(
        &format!("/api/v1/assets/{orders}/rollback?version=v1"),
        &json!({}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let config = node.data_dir.with_extension("yaml");
    let out = vega(
        &config,
        &[
            "backup",
            "create",
            "--url",
            &node.api,
            "--description",
            "before the drill",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("(full) done"),
        "{}",
        text(&out)
    );
    (node, config)
}

#[test]
fn a_full_backup_rebuilds_the_instance_in_an_empty_data_directory() {
    let src = SourceDir::new();
    let (mut node, config) = node_with_a_backup(&src);
    let before = answers(&node);
    let versions = node.get("/api/v1/assets").json();
    // The node is lost; the repository in its data directory remains.
    node.kill9();

    let out = vega(&config, &["backup", "list", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["scope"], "full");
    assert_eq!(listed[0]["description"], "before the drill");
    let out = vega(&config, &["backup", "verify"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("intact"),
        "{}",
        text(&out)
    );

    let fresh = tempfile::tempdir().unwrap();
    let data = fresh.path().join("data");
    let out = vega(
        &config,
        &["backup", "restore", "--data-dir", data.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out));
    // A second restore into the now populated directory is refused.
    let out = vega(
        &config,
        &["backup", "restore", "--data-dir", data.to_str().unwrap()],
    );
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not empty"),
        "{}",
        text(&out)
    );

    let restored = TestServer::start_with(Options {
        data_dir: Some(data),
        allowed_roots: vec![src.path()],
        ..Options::default()
    });
    assert_eq!(answers(&restored), before);
    let after = restored.get("/api/v1/assets").json();
    let pick = |v: &Value| {
        v.as_array()
            .unwrap()
            .iter()
            .map(|a| (a["id"].clone(), a["active_version"].clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(pick(&after), pick(&versions));
    // History came back too: the newer version can be rolled forward to.
    let orders = after
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "orders")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = restored.post(
        &format!("/api/v1/assets/{orders}/rollback?version=v2"),
        &json!({}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        restored.sql("SELECT count(*) FROM s.orders")["rows"],
        json!([[3]])
    );
}

#[test]
fn a_damaged_backup_is_refused_and_nothing_is_restored() {
    let src = SourceDir::new();
    let (node, config) = node_with_a_backup(&src);
    // Damage one stored object (same size, other bytes).
    let objects = node.data_dir.join("backups/objects");
    let victim = walk(&objects).into_iter().next().expect("a stored object");
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[0] ^= 0xff;
    std::fs::write(&victim, &bytes).unwrap();

    let out = vega(&config, &["backup", "verify"]);
    assert_eq!(out.status.code(), Some(65), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("checksum"),
        "{}",
        text(&out)
    );
    let fresh = tempfile::tempdir().unwrap();
    let data = fresh.path().join("data");
    let out = vega(
        &config,
        &["backup", "restore", "--data-dir", data.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(65), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("damaged"), "{}", text(&out));
    // Nothing was written: no catalog, no segments.
    assert!(!data.join("segments").exists(), "{}", text(&out));
    assert!(!data.join("catalog.db").exists(), "{}", text(&out));

    let out = vega(&config, &["drill", "--json"]);
    assert_eq!(out.status.code(), Some(65), "{}", text(&out));
}

#[test]
fn a_drill_reports_rto_and_rpo_against_the_targets() {
    let src = SourceDir::new();
    let (node, config) = node_with_a_backup(&src);

    let out = vega(&config, &["drill", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["passed"], true, "{report}");
    assert_eq!(report["rto_met"], true);
    assert_eq!(report["rpo_met"], true);
    assert!(report["rto_seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(report["rto_target_seconds"], 900.0);
    assert_eq!(report["rpo_target_seconds"], 300.0);
    let assets = report["assets"].as_array().unwrap();
    assert_eq!(assets.len(), 2, "{report}");
    let rows = |name: &str| {
        assets.iter().find(|a| a["name"] == name).unwrap()["rows"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(rows("s.orders"), 2);
    assert_eq!(rows("s.readings"), 3);
    assert!(assets.iter().all(|a| a["valid"] == true), "{report}");

    // A target the backup cannot meet fails the drill.
    let out = vega(&config, &["drill", "--json", "--rpo-target", "1ms"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["rpo_met"], false);
    assert_eq!(report["passed"], false);
    // The node itself was never touched.
    assert_eq!(
        node.sql("SELECT count(*) FROM s.orders")["rows"],
        json!([[2]])
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if std::fs::metadata(&p).unwrap().len() > 0 {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// `backup.schedules`: the scheduler takes a backup each period and keeps
/// only the newest `keep_last` of that schedule; a backup taken by hand is
/// not the schedule's to delete. A schedule that does not parse stops the
/// start with the key named.
#[test]
fn scheduled_backups_run_and_keep_the_newest() {
    let vega = TestServer::start_with(Options {
        extra_yaml: "sync:\n  scheduler_tick: 200ms\nbackup:\n  schedules:\n    - name: often\n      scope: catalog\n      schedule: 1s\n      keep_last: 2\n".into(),
        ..Options::default()
    });
    let r = vega.post(
        "/api/v1/backups",
        &json!({ "scope": "catalog", "description": "by hand" }),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let scheduled = || {
        vega.get("/api/v1/backups")
            .json()
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let log = vega.logs();
        if log.matches("expired backup deleted").count() >= 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no expiry within 30 s:\n{log}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let all = scheduled();
    let own: Vec<&Value> = all
        .iter()
        .filter(|b| b["description"] == "scheduled: often")
        .collect();
    assert!(
        (1..=3).contains(&own.len()),
        "keep_last 2 (one more may be in flight): {all:?}"
    );
    assert!(all.iter().any(|b| b["description"] == "by hand"), "{all:?}");
    // Each backup, by hand or scheduled, is a job of kind backup.
    let jobs = vega.get("/api/v1/jobs").json();
    let backups: Vec<&Value> = jobs
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["kind"] == "backup")
        .collect();
    assert!(
        backups
            .iter()
            .any(|j| j["params"]["description"] == "scheduled: often"
                && j["state"] == "succeeded"
                && j["params"]["scope"] == "catalog"),
        "{jobs}"
    );
    assert!(
        backups
            .iter()
            .any(|j| j["params"]["description"] == "by hand"),
        "{jobs}"
    );
    drop(vega);

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("vega.yaml");
    std::fs::write(
        &config,
        format!(
            "data_dir: \"{}\"\napi:\n  listen: 127.0.0.1:0\nops:\n  listen: 127.0.0.1:0\nbackup:\n  schedules:\n    - name: bad\n      schedule: \"every day\"\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let out = vega_command()
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("backup.schedules[0].schedule"), "{all}");
}
