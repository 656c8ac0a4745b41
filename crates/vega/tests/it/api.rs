//! Connections and assets over the API, and the error contract: status
//! codes, error bodies, and that bad input changes nothing.

use serde_json::json;

use crate::server::{server_over, SourceDir};

#[test]
fn connection_crud_round_trip() {
    let src = SourceDir::new();
    let vega = server_over(&src);
    let id = vega.file_connection("files", &src.path());
    assert!(id.starts_with("con_"));

    let got = vega.get(&format!("/api/v1/connections/{id}")).json();
    assert_eq!(got["name"], "files");
    assert_eq!(got["type"], "file");
    assert_eq!(got["enabled"], true);

    let r = vega.put(
        &format!("/api/v1/connections/{id}"),
        &json!({ "name": "renamed" }),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["name"], "renamed");

    let r = vega.put(&format!("/api/v1/connections/{id}/disable"), &json!({}));
    assert_eq!(r.json()["enabled"], false);
    let r = vega.put(&format!("/api/v1/connections/{id}/enable"), &json!({}));
    assert_eq!(r.json()["enabled"], true);

    let r = vega.post(&format!("/api/v1/connections/{id}/test"), &json!({}));
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["ok"], true);

    let list = vega.get("/api/v1/connections").json();
    assert_eq!(list.as_array().unwrap().len(), 1);

    assert_eq!(
        vega.delete(&format!("/api/v1/connections/{id}")).status,
        204
    );
    assert_eq!(vega.get(&format!("/api/v1/connections/{id}")).status, 404);
}

#[test]
fn duplicate_connection_name_is_a_conflict() {
    let src = SourceDir::new();
    let vega = server_over(&src);
    vega.file_connection("files", &src.path());
    let r = vega.post(
        "/api/v1/connections",
        &json!({ "name": "files", "type": "file", "params": { "root": src.path() } }),
    );
    assert_eq!(r.status, 409, "{}", r.text);
    assert!(r.message().contains("files"), "{}", r.text);
    assert_eq!(
        vega.get("/api/v1/connections")
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn unknown_ids_are_not_found() {
    let vega = crate::server::TestServer::start();
    for path in [
        "/api/v1/connections/con_00000000000000000000000000",
        "/api/v1/connections/nonsense",
        "/api/v1/assets/ast_00000000000000000000000000",
        "/api/v1/assets/ast_00000000000000000000000000/versions",
        "/api/v1/jobs/job_00000000000000000000000000",
    ] {
        let r = vega.get(path);
        assert_eq!(r.status, 404, "{path}: {}", r.text);
        assert_eq!(r.code(), "not_found", "{path}");
        assert!(!r.message().is_empty());
    }
    let r = vega.post(
        "/api/v1/assets/ast_00000000000000000000000000/sync?mode=full",
        &json!({}),
    );
    assert_eq!(r.status, 404);
}

#[test]
fn malformed_json_unknown_fields_and_wrong_types_are_bad_requests() {
    let src = SourceDir::new();
    let vega = server_over(&src);
    let r = vega.post_raw("/api/v1/connections", "{\"name\": ");
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.code(), "invalid_json");

    let r = vega.post(
        "/api/v1/connections",
        &json!({ "name": "x", "type": "file", "params": {}, "colour": "red" }),
    );
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.message().contains("colour"), "{}", r.text);

    let r = vega.post("/api/v1/connections", &json!({ "name": 5, "type": "file" }));
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.message().contains("name"), "{}", r.text);

    let r = vega.post(
        "/api/v1/connections",
        &json!({ "name": "x", "type": "ftp" }),
    );
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.json()["error"]["details"]["field"], "type");

    assert_eq!(
        vega.get("/api/v1/connections")
            .json()
            .as_array()
            .unwrap()
            .len(),
        0
    );
}

#[test]
fn oversized_body_is_413() {
    let vega = crate::server::TestServer::start_with(crate::server::Options {
        extra_yaml: String::new(),
        ..Default::default()
    });
    let big = format!("{{\"sql\": \"SELECT '{}'\"}}", "x".repeat(11 * 1024 * 1024));
    let r = vega.post_raw("/api/v1/query", big);
    assert_eq!(r.status, 413, "{}", &r.text[..r.text.len().min(300)]);
    assert_eq!(r.code(), "body_too_large");
}

#[test]
fn connection_root_outside_allowed_roots_is_422_naming_the_path() {
    let src = SourceDir::new();
    let vega = server_over(&src);
    let r = vega.post(
        "/api/v1/connections",
        &json!({ "name": "etc", "type": "file", "params": { "root": "/etc" } }),
    );
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(r.message().contains("/etc"), "{}", r.text);
    assert_eq!(
        vega.get("/api/v1/connections")
            .json()
            .as_array()
            .unwrap()
            .len(),
        0
    );
}

#[test]
fn asset_source_missing_or_outside_roots_is_422_naming_the_path() {
    let src = SourceDir::new();
    src.write("ok.csv", "a\n1\n");
    let vega = server_over(&src);
    let con = vega.file_connection("files", &src.path());
    for (path, needle) in [
        ("missing.csv", "missing.csv"),
        ("../../etc/passwd", "passwd"),
        ("/etc/passwd", "/etc/passwd"),
    ] {
        let r = vega.post(
            "/api/v1/assets",
            &json!({ "namespace": "s", "name": "t", "connection_id": con, "source": { "path": path, "format": "csv" } }),
        );
        assert_eq!(r.status, 422, "{path}: {}", r.text);
        assert!(r.message().contains(needle), "{path}: {}", r.text);
    }
    assert_eq!(
        vega.get("/api/v1/assets").json().as_array().unwrap().len(),
        0
    );
}

#[test]
fn asset_names_must_be_sql_identifiers_and_unique() {
    let src = SourceDir::new();
    src.write("ok.csv", "a\n1\n");
    let vega = server_over(&src);
    let con = vega.file_connection("files", &src.path());
    let r = vega.post(
        "/api/v1/assets",
        &json!({ "namespace": "Sales", "name": "t", "connection_id": con, "source": { "path": "ok.csv" } }),
    );
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.json()["error"]["details"]["field"], "namespace");

    vega.asset(&con, "sales", "orders", json!({ "path": "ok.csv" }));
    let r = vega.post(
        "/api/v1/assets",
        &json!({ "namespace": "sales", "name": "orders", "connection_id": con, "source": { "path": "ok.csv" } }),
    );
    assert_eq!(r.status, 409, "{}", r.text);
    assert!(r.message().contains("sales.orders"), "{}", r.text);

    let r = vega.post(
        "/api/v1/assets",
        &json!({ "namespace": "sales", "name": "x", "connection_id": "con_00000000000000000000000000", "source": { "path": "ok.csv" } }),
    );
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.json()["error"]["details"]["field"], "connection_id");
}

#[test]
fn connection_in_use_cannot_be_deleted() {
    let src = SourceDir::new();
    src.write("ok.csv", "a\n1\n");
    let vega = server_over(&src);
    let con = vega.file_connection("files", &src.path());
    let asset = vega.asset(&con, "s", "t", json!({ "path": "ok.csv" }));
    let r = vega.delete(&format!("/api/v1/connections/{con}"));
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(vega.get(&format!("/api/v1/connections/{con}")).status, 200);
    assert_eq!(vega.delete(&format!("/api/v1/assets/{asset}")).status, 204);
    assert_eq!(
        vega.delete(&format!("/api/v1/connections/{con}")).status,
        204
    );
}

#[test]
fn openapi_document_lists_every_route() {
    let vega = crate::server::TestServer::start();
    let doc = vega.get("/api/v1/openapi.json").json();
    let paths = doc["paths"].as_object().expect("paths");
    let expected = [
        ("post", "/api/v1/connections"),
        ("get", "/api/v1/connections"),
        ("get", "/api/v1/connections/{id}"),
        ("put", "/api/v1/connections/{id}"),
        ("delete", "/api/v1/connections/{id}"),
        ("put", "/api/v1/connections/{id}/disable"),
        ("put", "/api/v1/connections/{id}/enable"),
        ("post", "/api/v1/connections/{id}/test"),
        ("post", "/api/v1/assets"),
        ("get", "/api/v1/assets"),
        ("get", "/api/v1/assets/{id}"),
        ("put", "/api/v1/assets/{id}"),
        ("delete", "/api/v1/assets/{id}"),
        ("post", "/api/v1/assets/{id}/sync"),
        ("get", "/api/v1/assets/{id}/versions"),
        ("post", "/api/v1/assets/{id}/rollback"),
        ("post", "/api/v1/assets/{id}/validate"),
        ("post", "/api/v1/assets/{id}/retention"),
        ("post", "/api/v1/query"),
        ("get", "/api/v1/jobs"),
        ("get", "/api/v1/jobs/{id}"),
        ("post", "/api/v1/jobs/{id}/cancel"),
        ("post", "/api/v1/keys"),
        ("get", "/api/v1/keys"),
        ("delete", "/api/v1/keys/{id}"),
        ("post", "/api/v1/backups"),
        ("get", "/api/v1/backups"),
        ("get", "/api/v1/backups/{id}"),
        ("delete", "/api/v1/backups/{id}"),
        ("post", "/api/v1/backups/{id}/verify"),
        ("post", "/api/v1/restore"),
        ("post", "/api/v1/assets/{id}/restore"),
        ("get", "/health"),
        ("get", "/health/live"),
        ("get", "/health/ready"),
        ("get", "/metrics"),
    ];
    for (method, path) in expected {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} missing from the OpenAPI document"
        );
    }
    // And nothing is served that the document does not describe: every
    // documented operation answers something other than 404/405 for its
    // method (an unknown id may still be 404 with Vega's error code).
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            let url = format!(
                "{}{}",
                if path == "/metrics" {
                    &vega.ops
                } else {
                    &vega.api
                },
                path.replace("{id}", "x")
            );
            let rb = match method.as_str() {
                "get" => vega.client().get(&url),
                "post" => vega.client().post(&url).json(&json!({})),
                "put" => vega.client().put(&url).json(&json!({})),
                "delete" => vega.client().delete(&url),
                other => panic!("unexpected method {other}"),
            };
            let r = rb.send().unwrap();
            assert_ne!(r.status().as_u16(), 405, "{method} {path}");
            if r.status().as_u16() == 404 {
                let body: serde_json::Value = r.json().unwrap();
                assert!(
                    !body["error"]["message"]
                        .as_str()
                        .unwrap_or("")
                        .starts_with("no route"),
                    "{method} {path} is documented but not routed"
                );
            }
        }
    }
}
