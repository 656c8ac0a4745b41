//! The command line: `--version`, `config check`, `vega sql`, `serve --demo`.

use crate::server::{vega_command, Options, TestServer};

#[test]
fn version_flag_prints_the_version() {
    let out = vega_command().arg("--version").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("vega "), "{text}");
    assert!(text.contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn config_check_accepts_a_valid_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vega.yaml");
    std::fs::write(&path, "data_dir: ./somewhere\nquery:\n  pool_size: 8\n").unwrap();
    let out = vega_command()
        .arg("--config")
        .arg(&path)
        .args(["config", "check"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("pool_size: 8"));
}

/// A backup schedule that does not parse is found by `config check`, not
/// only at start.
#[test]
fn config_check_parses_backup_schedules() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vega.yaml");
    std::fs::write(
        &path,
        "backup:\n  schedules:\n    - name: nightly\n      scope: full\n      schedule: \"0 0 3 * * *\"\n    - name: broken\n      scope: full\n      schedule: \"every blue moon\"\n    - name: hourly\n      scope: catalog\n      schedule: \"0 61 * * * *\"\n",
    )
    .unwrap();
    let out = vega_command()
        .arg("--config")
        .arg(&path)
        .args(["config", "check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("backup.schedules[1].schedule"), "{err}");
    assert!(err.contains("backup.schedules[2].schedule"), "{err}");
    assert!(!err.contains("backup.schedules[0]"), "{err}");
}

#[test]
fn config_check_reports_every_problem_with_its_key_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vega.yaml");
    std::fs::write(
        &path,
        "api:\n  listen: not-an-address\n  colour: blue\nquery:\n  pool_size: many\nunknown_top: 1\n",
    )
    .unwrap();
    let out = vega_command()
        .arg("--config")
        .arg(&path)
        .args(["config", "check"])
        .env("VEGA_QUERY__THREADS", "0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    for key in [
        "api.listen",
        "api.colour",
        "query.pool_size",
        "unknown_top",
        "query.threads",
    ] {
        assert!(err.contains(key), "{key} not reported:\n{err}");
    }
}

#[test]
fn config_check_reports_malformed_yaml_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vega.yaml");
    std::fs::write(&path, "api:\n  listen: [unclosed\n").unwrap();
    let out = vega_command()
        .arg("--config")
        .arg(&path)
        .args(["config", "check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line"), "{err}");
}

#[test]
fn demo_loads_assets_and_vega_sql_prints_a_table() {
    let vega = TestServer::start_with(Options {
        demo: true,
        ..Options::default()
    });
    let out = vega_command()
        .args([
            "sql",
            "SELECT weather, count(*) AS days FROM weather.seattle_daily GROUP BY weather ORDER BY days DESC, weather",
            "--url",
            &vega.api,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("weather") && table.contains("days"),
        "{table}"
    );
    assert!(table.contains("rain") && table.contains("sun"), "{table}");
    assert!(table.contains("5 rows"), "{table}");

    let energy = vega.sql("SELECT count(*) FROM energy.iowa_generation");
    assert_eq!(energy["rows"][0][0], 51);

    let out = vega_command()
        .args([
            "sql",
            "SELECT 1 AS one",
            "--url",
            &vega.api,
            "--format",
            "csv",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "one\n1\n");

    let out = vega_command()
        .args(["sql", "DROP VIEW weather.seattle_daily", "--url", &vega.api])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(65));
    assert!(String::from_utf8_lossy(&out.stderr).contains("403"));
}

#[test]
fn vega_sql_reports_an_unreachable_server() {
    let out = vega_command()
        .args(["sql", "SELECT 1", "--url", "http://127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(69));
}

/// `vega lb render` renders the shipped HAProxy file from its block, and
/// reports a broken block with key paths (exit 1), changing nothing.
#[test]
fn lb_render_reproduces_the_shipped_haproxy_file_and_reports_bad_blocks() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let block = root.join("deploy/haproxy/load-balancer.yaml");
    let shipped = std::fs::read_to_string(root.join("deploy/haproxy/haproxy.cfg")).unwrap();
    let out = vega_command()
        .args(["lb", "render", "--stats", "127.0.0.1:8404"])
        .args(["--check-port-of", "127.0.0.1:50113=9190"])
        .args(["--check-port-of", "127.0.0.1:50213=9290"])
        .args(["--check-port-of", "127.0.0.1:50313=9390"])
        .arg(&block)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rendered = String::from_utf8(out.stdout).unwrap();
    // The same configuration (the shipped file's header has more comments).
    let body = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
            .map(str::to_string)
            .collect()
    };
    assert_eq!(body(&rendered), body(&shipped));
    assert!(rendered.contains("balance leastconn"), "{rendered}");
    assert!(
        rendered.contains("option httpchk GET /health/ready"),
        "{rendered}"
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("lb.yaml");
    std::fs::write(
        &bad,
        "load_balancer:\n  algorithm: fastest\n  backends:\n    - address: nohost\n      weight: 0\n",
    )
    .unwrap();
    let target = dir.path().join("haproxy.cfg");
    let out = vega_command()
        .args(["lb", "render", "-o"])
        .arg(&target)
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("load_balancer.algorithm"), "{err}");
    assert!(!target.exists(), "nothing is written");
}
