//! Validation-gated publish: an asset's checks run on every new version
//! before it is published; `POST /assets/{id}/validate` reports on the
//! active version.

use serde_json::json;

use crate::server::{server_over, SourceDir, TestServer};

fn asset_with_checks(vega: &TestServer, con: &str, checks: serde_json::Value) -> String {
    let r = vega.post(
        "/api/v1/assets",
        &json!({ "namespace": "sales", "name": "orders", "connection_id": con,
                 "source": { "path": "orders.csv", "csv": { "null": "NULL" } }, "checks": checks }),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    r.json()["id"].as_str().unwrap().to_string()
}

#[test]
fn each_failing_check_blocks_the_publish_naming_the_rule_and_an_example() {
    let src = SourceDir::new();
    src.write("orders.csv", "id,amount,region\n1,10,eu\n2,20,us\n");
    let vega = server_over(&src);
    let con = vega.file_connection("files", &src.path());
    let asset = asset_with_checks(
        &vega,
        &con,
        json!({ "not_null": ["region"], "unique": [["id"]], "max_rows": 5,
                "sql": ["SELECT * FROM asset WHERE amount < 0"] }),
    );
    assert_eq!(vega.sync(&asset)["state"], "succeeded");

    for (data, rule, example) in [
        (
            "id,amount,region\n1,10,eu\n2,20,NULL\n",
            "not_null(region)",
            "\"id\":2",
        ),
        (
            "id,amount,region\n1,10,eu\n1,20,us\n",
            "unique(id)",
            "\"occurrences\":2",
        ),
        (
            "id,amount,region\n1,10,eu\n2,-5,us\n",
            "sql(SELECT * FROM asset WHERE amount < 0)",
            "\"amount\":-5",
        ),
        (
            "id,amount,region\n1,1,a\n2,1,a\n3,1,a\n4,1,a\n5,1,a\n6,1,a\n",
            "max_rows(5)",
            "",
        ),
    ] {
        src.write("orders.csv", data);
        let job = vega.sync(&asset);
        assert_eq!(job["state"], "failed", "{rule}: {job}");
        let error = job["error"].as_str().unwrap();
        assert!(error.contains(rule), "{rule}: {error}");
        assert!(error.contains(example), "{rule}: {error}");
        assert_eq!(
            vega.sql("SELECT count(*) FROM sales.orders")["rows"],
            json!([[2]]),
            "v1 stays active"
        );
    }
    assert_eq!(
        vega.get(&format!("/api/v1/assets/{asset}")).json()["active_version"],
        "v1"
    );
}

#[test]
fn validate_reports_every_check_on_the_active_version() {
    let src = SourceDir::new();
    src.write(
        "orders.csv",
        "id,amount,ts\n1,10,2020-01-01 00:00:00\n2,20,2020-01-02 00:00:00\n",
    );
    let vega = server_over(&src);
    let con = vega.file_connection("files", &src.path());
    let asset = asset_with_checks(&vega, &con, json!({}));
    let r = vega.post(&format!("/api/v1/assets/{asset}/validate"), &json!({}));
    assert_eq!(r.status, 422, "no version yet: {}", r.text);
    assert_eq!(vega.sync(&asset)["state"], "succeeded");
    let r = vega.put(
        &format!("/api/v1/assets/{asset}"),
        &json!({ "checks": { "min_rows": 1, "unique": [["id"]], "freshness": { "column": "ts", "max_age": "1h" } } }),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let r = vega.post(&format!("/api/v1/assets/{asset}/validate"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    let report = r.json();
    assert_eq!(report["version"], "v1");
    let ts = vega.sql("SELECT ts FROM sales.orders LIMIT 1");
    assert!(
        ts["columns"][0]["type"]
            .as_str()
            .unwrap()
            .starts_with("TIMESTAMP"),
        "{ts}"
    );
    assert_eq!(report["passed"], false);
    let rules = report["rules"].as_array().unwrap();
    let find = |name: &str| {
        rules
            .iter()
            .find(|r| r["rule"].as_str().unwrap().starts_with(name))
            .unwrap()
            .clone()
    };
    assert_eq!(find("min_rows")["passed"], true);
    assert_eq!(find("unique")["passed"], true);
    let fresh = find("freshness");
    assert_eq!(
        fresh["passed"], false,
        "data from 2020 is not fresh: {fresh}"
    );
}

#[test]
fn checks_that_could_never_run_are_refused() {
    let src = SourceDir::new();
    src.write("orders.csv", "id\n1\n");
    let vega = server_over(&src);
    let con = vega.file_connection("files", &src.path());
    for (checks, field) in [
        (json!({ "sql": ["DROP TABLE asset"] }), "checks.sql[0]"),
        (
            json!({ "sql": ["SELECT * FROM read_csv('/etc/passwd')"] }),
            "checks.sql[0]",
        ),
        (
            json!({ "sql": ["SELECT 1", "SELECT * FROM other.table"] }),
            "checks.sql[1]",
        ),
        (
            json!({ "freshness": { "column": "ts", "max_age": "soon" } }),
            "checks.freshness.max_age",
        ),
        (json!({ "unique": [[]] }), "checks.unique[0]"),
    ] {
        let r = vega.post(
            "/api/v1/assets",
            &json!({ "namespace": "s", "name": "t", "connection_id": con,
                     "source": { "path": "orders.csv" }, "checks": checks }),
        );
        assert!(r.status == 400 || r.status == 403, "{checks}: {}", r.text);
        assert_eq!(r.json()["error"]["details"]["field"], field, "{}", r.text);
    }
    let r = vega.post(
        "/api/v1/assets",
        &json!({ "namespace": "s", "name": "t", "connection_id": con,
                 "source": { "path": "orders.csv" }, "checks": { "colour": 1 } }),
    );
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(vega
        .get("/api/v1/assets")
        .json()
        .as_array()
        .unwrap()
        .is_empty());
}
