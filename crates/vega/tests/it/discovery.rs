//! Service discovery: nodes register themselves with a real etcd (Debian's
//! `etcd-server`) and with a Consul agent (a protocol-faithful stand-in,
//! `vega_testkit::consul`, as Consul cannot be installed here), find each
//! other through `GET /api/v1/discovery`, deregister on a graceful stop,
//! and a node whose discovery backend is unreachable at start keeps
//! retrying with readiness 503 saying why.

use std::time::{Duration, Instant};

use serde_json::Value;
use vega_testkit::consul::TestConsul;
use vega_testkit::etcd::TestEtcd;

use crate::server::{Options, TestServer};

fn etcd_node(etcd: &str, name: &str, skip_readiness: bool) -> TestServer {
    TestServer::start_with(Options {
        extra_yaml: format!(
            "node:\n  name: {name}\nservice_discovery:\n  provider: etcd\n  registration:\n    service_name: vega-gateway\n    tags: [api, v2]\n  discovery:\n    services:\n      - name: vega-gateway\n        load_balance: round_robin\n  etcd:\n    endpoints: [\"{etcd}\"]\n    lease_ttl: 2s\n"
        ),
        skip_readiness,
        ..Options::default()
    })
}

fn instances(vega: &TestServer) -> Vec<Value> {
    let r = vega.get("/api/v1/discovery");
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["services"][0]["instances"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn wait_instances(vega: &TestServer, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let found = instances(vega);
        if found.len() == n {
            return found;
        }
        assert!(Instant::now() < deadline, "{found:?}\n{}", vega.logs());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn nodes_register_in_etcd_find_each_other_and_deregister_on_stop() {
    let etcd = TestEtcd::start();
    let a = etcd_node(&etcd.endpoint(), "node-a", false);
    let mut b = etcd_node(&etcd.endpoint(), "node-b", false);
    let found = wait_instances(&a, 2);
    let addresses: Vec<&str> = found.iter().filter_map(|i| i["address"].as_str()).collect();
    for node in [&a, &b] {
        let addr = node.api.trim_start_matches("http://");
        assert!(addresses.contains(&addr), "{addr} not in {addresses:?}");
    }
    assert!(
        found
            .iter()
            .all(|i| i["tags"] == serde_json::json!(["api", "v2"])),
        "{found:?}"
    );
    let view = a.get("/api/v1/discovery").json();
    assert_eq!(view["provider"], "etcd");
    assert_eq!(view["registered"], true);
    assert_eq!(view["services"][0]["load_balance"], "round_robin");
    assert_eq!(etcd.keys("/vega/services/vega-gateway/").len(), 2);

    // A graceful stop removes B's entry at once (no TTL wait).
    b.signal(libc::SIGTERM);
    let status = b.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "{status}");
    assert!(
        b.logs().contains("deregistered from service discovery"),
        "{}",
        b.logs()
    );
    let left = wait_instances(&a, 1);
    assert_eq!(left[0]["address"], a.api.trim_start_matches("http://"));
}

#[test]
fn an_unreachable_discovery_backend_keeps_the_node_unready_and_says_why() {
    let mut etcd = TestEtcd::start();
    let endpoint = etcd.endpoint();
    etcd.kill();
    let vega = etcd_node(&endpoint, "lonely", true);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = vega
            .client()
            .get(format!("{}/health/ready", vega.ops))
            .send()
            .unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().unwrap_or_default();
        let discovery = body["services"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["name"] == "discovery").cloned());
        if let Some(d) = discovery {
            assert_eq!(status, 503, "{body}");
            let reason = d["last_error"].as_str().unwrap_or_default().to_string();
            if reason.contains("not registered in service discovery (etcd)")
                && reason.contains("127.0.0.1")
            {
                break;
            }
        }
        assert!(Instant::now() < deadline, "{body}\n{}", vega.logs());
        std::thread::sleep(Duration::from_millis(100));
    }
    // Live all the same, and retrying.
    let live = vega
        .client()
        .get(format!("{}/health/live", vega.ops))
        .send()
        .unwrap();
    assert_eq!(live.status().as_u16(), 200);
    assert!(vega
        .logs()
        .contains("registering this node in service discovery failed; retrying"));
}

#[test]
fn a_node_registers_with_consul_and_its_check_follows_its_health_url() {
    let consul = TestConsul::start();
    let src = "service_discovery:\n  provider: consul\n  registration:\n    service_name: vega-gateway\n    health_check:\n      http: \"HEALTH\"\n      interval: 1s\n    tags: [api]\n  discovery:\n    services:\n      - name: vega-gateway\n  consul:\n    address: \"CONSUL\"\n";
    // Fixed ports, so that the check can name the node's readiness URL.
    let (api, ops) = (
        vega_testkit::ports::free_port(),
        vega_testkit::ports::free_port(),
    );
    let health = format!("http://127.0.0.1:{ops}/health/ready");
    let vega = TestServer::start_with(Options {
        extra_yaml: src
            .replace("CONSUL", &consul.url())
            .replace("HEALTH", &health),
        ports: Some((api, ops)),
        ..Options::default()
    });
    let node_id = std::fs::read_to_string(vega.data_dir.join("node_id")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !consul.service_ids().contains(&node_id) {
        assert!(
            Instant::now() < deadline,
            "{:?}\n{}",
            consul.service_ids(),
            vega.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let register = consul
        .requests()
        .into_iter()
        .find(|r| r.path.starts_with("/v1/agent/service/register"))
        .unwrap();
    let body: Value = serde_json::from_str(&register.body).unwrap();
    assert_eq!(body["Name"], "vega-gateway");
    assert_eq!(body["ID"], node_id.as_str());
    assert_eq!(body["Check"]["HTTP"], health.as_str());
    assert_eq!(body["Tags"], serde_json::json!(["api"]));
    // The agent's check passes against the node: discovery lists it.
    let found = wait_instances(&vega, 1);
    assert_eq!(found[0]["address"], format!("127.0.0.1:{api}"));
}
