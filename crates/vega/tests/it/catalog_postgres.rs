//! Vega on a PostgreSQL catalog (`catalog.url`): the same API, sync,
//! streaming ingest and restart behaviour as on the embedded SQLite file.

use std::time::{Duration, Instant};

use serde_json::json;
use vega_testkit::postgres::TestPostgres;

use crate::server::{Options, SourceDir, TestServer};

#[test]
fn a_node_on_a_postgres_catalog_syncs_ingests_and_restarts() {
    let pg = TestPostgres::start();
    let src = SourceDir::new();
    src.write("orders.csv", "id,amount\n1,9.5\n2,20\n");
    let tmp = tempfile::tempdir().unwrap();
    let options = Options {
        data_dir: Some(tmp.path().join("data")),
        allowed_roots: vec![src.path()],
        extra_yaml: format!(
            "catalog:\n  url: \"{}\"\ningest:\n  flush_age: 200ms\n",
            pg.url()
        ),
        ..Options::default()
    };
    let mut vega = TestServer::start_with(options.clone());
    assert!(
        !vega.logs().contains(pg.password()),
        "the catalog URL's password is never logged"
    );
    let con = vega.file_connection("files", &src.path());
    let asset = vega.asset(&con, "sales", "orders", json!({ "path": "orders.csv" }));
    assert_eq!(vega.sync(&asset)["state"], "succeeded");
    assert_eq!(
        vega.sql("SELECT sum(amount) FROM sales.orders")["rows"],
        json!([[29.5]])
    );
    let r = vega.post_text(
        "/api/v2/write?bucket=plant",
        "m,dev=a v=1i 1\nm,dev=b v=2i 2\n",
        &[],
    );
    assert_eq!(r.status, 204, "{}", r.text);
    // The catalog is PostgreSQL's: the tables are there.
    let tables = pg.execute("SELECT count(*) FROM assets");
    assert_eq!(tables.trim(), "2", "sales.orders and plant.m");
    // Wait for the flush, then restart on the same catalog.
    let started = Instant::now();
    while pg.execute("SELECT count(*) FROM versions WHERE asset_id IN (SELECT id FROM assets WHERE name = 'm')").trim() != "1" {
        assert!(started.elapsed() < Duration::from_secs(20), "no flush");
        std::thread::sleep(Duration::from_millis(50));
    }
    vega.kill9();
    let vega = TestServer::start_with(options);
    assert_eq!(
        vega.sql("SELECT count(*) FROM plant.m")["rows"],
        json!([[2]])
    );
    assert_eq!(
        vega.sql("SELECT sum(amount) FROM sales.orders")["rows"],
        json!([[29.5]])
    );
    let versions = vega.get(&format!("/api/v1/assets/{asset}/versions")).json();
    assert_eq!(versions.as_array().unwrap().len(), 1);
}

#[test]
fn an_unreachable_postgres_catalog_stops_the_start_with_a_clear_error() {
    let port = vega_testkit::ports::free_port();
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("vega.yaml");
    std::fs::write(
        &config,
        format!(
            "data_dir: \"{}\"\ncatalog:\n  url: \"postgres://vega:hunter2-secret@127.0.0.1:{port}/vega\"\napi:\n  listen: 127.0.0.1:0\nops:\n  listen: 127.0.0.1:0\n",
            tmp.path().join("data").display()
        ),
    )
    .unwrap();
    let out = crate::server::vega_command()
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("PostgreSQL catalog"), "{text}");
    assert!(!text.contains("hunter2-secret"), "{text}");
}
