//! API keys and roles, and the refusal to listen publicly without them.

use serde_json::json;

use crate::server::{vega_command, Options, TestServer};

const ADMIN: &str = "admin-secret-for-tests-0123456789";

#[test]
fn keys_and_roles_are_enforced() {
    let vega = TestServer::start_with(Options {
        admin_key: Some(ADMIN.into()),
        ..Options::default()
    });
    let anon = vega.client();
    let url = |p: &str| format!("{}{p}", vega.api);

    let r = anon.get(url("/api/v1/assets")).send().unwrap();
    assert_eq!(r.status(), 401);
    let r = anon
        .get(url("/api/v1/assets"))
        .bearer_auth("vega_wrong")
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = anon
        .get(url("/api/v1/assets"))
        .header("authorization", "Basic abc")
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);

    // Health and metrics need no key.
    assert_eq!(anon.get(url("/health")).send().unwrap().status(), 200);
    assert_eq!(
        anon.get(format!("{}/metrics", vega.ops))
            .send()
            .unwrap()
            .status(),
        200
    );

    // The admin makes a reader key.
    let r = vega.post("/api/v1/keys", &json!({ "name": "dash", "role": "reader" }));
    assert_eq!(r.status, 201, "{}", r.text);
    let reader = r.json()["secret"].as_str().unwrap().to_string();
    assert!(reader.starts_with("vega_"));
    let listed = vega.get("/api/v1/keys").text;
    assert!(!listed.contains(&reader), "secrets are never listed");
    assert!(!listed.contains("hash"), "hashes are never returned");

    let r = anon
        .post(url("/api/v1/query"))
        .bearer_auth(&reader)
        .json(&json!({ "sql": "SELECT 1" }))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = anon
        .post(url("/api/v1/connections"))
        .bearer_auth(&reader)
        .json(&json!({ "name": "x", "type": "file" }))
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    let body: serde_json::Value = r.json().unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("admin"));

    let r = vega.post(
        "/api/v1/keys",
        &json!({ "name": "bad", "role": "superuser" }),
    );
    assert_eq!(r.status, 400);

    // The bootstrap secret never appears in the logs.
    assert!(!vega.logs().contains(ADMIN));
}

#[test]
fn public_address_without_keys_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = vega_command()
        .arg("serve")
        .env("VEGA_DATA_DIR", dir.path().join("data"))
        .env("VEGA_API__LISTEN", "0.0.0.0:0")
        .env("VEGA_OPS__LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("without authentication"), "{stderr}");
    assert!(stderr.contains("bootstrap_admin_key"), "{stderr}");
}

#[test]
fn public_address_with_a_bootstrap_key_starts() {
    let vega = TestServer::start_with(Options {
        admin_key: Some(ADMIN.into()),
        extra_yaml: String::new(),
        env: vec![("VEGA_API__LISTEN".into(), "0.0.0.0:0".into())],
        ..Options::default()
    });
    assert!(vega.api.contains("0.0.0.0"));
    let local = vega.api.replace("0.0.0.0", "127.0.0.1");
    let anon = vega
        .client()
        .get(format!("{local}/api/v1/assets"))
        .send()
        .unwrap();
    assert_eq!(anon.status(), 401);
    let admin = vega
        .client()
        .get(format!("{local}/api/v1/assets"))
        .bearer_auth(ADMIN)
        .send()
        .unwrap();
    assert_eq!(admin.status(), 200);
}

#[test]
fn loopback_without_keys_is_dev_mode_with_a_warning() {
    let vega = TestServer::start();
    assert_eq!(vega.get("/api/v1/assets").status, 200);
    assert!(vega.log_lines().iter().any(|l| l["level"] == "warn"
        && l["message"]
            .as_str()
            .unwrap_or("")
            .contains("development mode")));
}
