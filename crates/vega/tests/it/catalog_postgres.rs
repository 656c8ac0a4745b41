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

/// Two nodes on one catalog: both are listed with their heartbeats; one
/// holds the scheduler lease; when it is killed, the other takes the lease
/// over within the lease TTL, with the next fencing token.
#[test]
fn the_scheduler_lease_moves_to_a_survivor_within_the_ttl() {
    let pg = TestPostgres::start();
    let node = |name: &str| {
        Options {
        extra_yaml: format!(
            "node:\n  name: {name}\ncatalog:\n  url: \"{}\"\ncluster:\n  heartbeat_interval: 300ms\n  lease_ttl: 1500ms\n",
            pg.url()
        ),
        ..Options::default()
    }
    };
    let mut a = TestServer::start_with(node("node-a"));
    let b = TestServer::start_with(node("node-b"));
    let nodes = b.get("/api/v1/cluster/nodes").json();
    let names: Vec<&str> = nodes
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["node-a", "node-b"], "{nodes}");
    assert_eq!(nodes[1]["this_node"], true);
    assert_eq!(
        nodes[0]["leases"][0]["name"], "scheduler",
        "the first node leads: {nodes}"
    );
    assert_eq!(nodes[0]["leases"][0]["token"], 1);
    assert!(nodes[1]["leases"].as_array().unwrap().is_empty());

    a.kill9();
    let killed_at = Instant::now();
    loop {
        let nodes = b.get("/api/v1/cluster/nodes").json();
        let lease = nodes[1]["leases"].as_array().unwrap().first().cloned();
        if let Some(lease) = lease {
            assert_eq!(lease["name"], "scheduler");
            assert_eq!(lease["token"], 2, "the next fencing token");
            assert!(
                nodes[0]["heartbeat_age_seconds"].as_f64().unwrap() > 1.0,
                "{nodes}"
            );
            break;
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(30),
            "no takeover: {nodes}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = killed_at.elapsed();
    eprintln!("scheduler lease taken over {took:?} after the leader was killed (TTL 1.5 s)");
}
