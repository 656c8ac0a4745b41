//! The providers against servers: a real etcd (`TestEtcd`), the Consul
//! agent stand-in (`TestConsul`), the system resolver for `localhost`, and
//! a minimal DNS server defined here for SRV records.
//!
//! The etcd tests are plain tests that run their async part on a runtime
//! of their own: the etcd harness uses a blocking HTTP client, which must
//! not be used or dropped inside a runtime.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vega_core::{Classify, ErrorClass};
use vega_discovery::{
    register_with_backoff, Discovery, DiscoveryError, Instance, Provider, Registration, Secret,
};
use vega_testkit::consul::TestConsul;
use vega_testkit::etcd::TestEtcd;
use vega_testkit::ports::free_port;

/// The longest any eventual condition below may take (TTLs are 1–2 s).
const EVENTUALLY: Duration = Duration::from_secs(10);

fn registration(service: &str, id: &str, port: u16, ttl: Duration) -> Registration {
    Registration {
        service_name: service.into(),
        instance_id: id.into(),
        address: format!("127.0.0.1:{port}"),
        health_url: None,
        tags: vec!["api".into(), "v2".into()],
        ttl,
        check_interval: Duration::from_secs(1),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a Tokio runtime")
}

async fn ids(discovery: &dyn Discovery, service: &str) -> Vec<String> {
    let mut ids: Vec<String> = discovery
        .discover(service)
        .await
        .unwrap_or_else(|e| panic!("discovering {service}: {e}"))
        .into_iter()
        .map(|i| i.id)
        .collect();
    ids.sort();
    ids
}

/// Polls `check` until it holds; panics with `what` after [`EVENTUALLY`].
async fn eventually<F, Fut>(what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < EVENTUALLY, "{what} within {EVENTUALLY:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn etcd(endpoints: Vec<String>, lease_ttl: Option<Duration>) -> Arc<dyn Discovery> {
    Provider::Etcd {
        endpoints,
        prefix: "/vega-test/services/".into(),
        lease_ttl,
    }
    .build()
    .expect("etcd settings")
}

fn consul(server: &TestConsul, token: Option<&str>) -> Arc<dyn Discovery> {
    Provider::Consul {
        address: server.url(),
        token: token.map(Secret::new),
        datacenter: None,
    }
    .build()
    .expect("consul settings")
}

// ---------------------------------------------------------------- static

#[tokio::test]
async fn static_provider_lists_its_addresses_and_registers_as_a_no_op() {
    let discovery = Provider::Static {
        services: BTreeMap::from([(
            "vega-worker".to_string(),
            vec!["10.0.0.1:8080".to_string(), "10.0.0.2:8080".to_string()],
        )]),
    }
    .build()
    .unwrap();
    assert_eq!(
        ids(&*discovery, "vega-worker").await,
        ["10.0.0.1:8080", "10.0.0.2:8080"]
    );
    let handle = discovery
        .register(&registration(
            "vega-worker",
            "n1",
            1,
            Duration::from_secs(5),
        ))
        .await
        .unwrap();
    handle.deregister().await.unwrap();
}

// ------------------------------------------------------------------- dns

/// A stand-in for a DNS server (none, e.g. dnsmasq, is installed where the
/// tests run): answers queries over UDP from a fixed table with crafted
/// responses. It parses only the header and the question; it answers SRV
/// and A records, NODATA for other types of a known name, NXDOMAIN for an
/// unknown one, and optionally puts the SRV targets' A records in the
/// additional section, as many servers do.
struct TestDns {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    queries: Arc<Mutex<Vec<(String, u16)>>>,
}

#[derive(Clone, Default)]
struct Zone {
    /// name → (priority, weight, port, target)
    srv: BTreeMap<String, Vec<(u16, u16, u16, String)>>,
    a: BTreeMap<String, Vec<Ipv4Addr>>,
    /// SRV names whose answers carry their targets' addresses.
    glue: BTreeSet<String>,
}

const TYPE_A: u16 = 1;
const TYPE_SRV: u16 = 33;

impl TestDns {
    fn start(zone: Zone) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("binding the DNS test server");
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let queries = Arc::new(Mutex::new(Vec::new()));
        let (s, q) = (stop.clone(), queries.clone());
        thread::spawn(move || {
            let mut buffer = [0u8; 1500];
            while !s.load(Ordering::SeqCst) {
                let Ok((n, from)) = socket.recv_from(&mut buffer) else {
                    continue;
                };
                if let Some(reply) = dns_answer(&zone, &buffer[..n], &q) {
                    let _ = socket.send_to(&reply, from);
                }
            }
        });
        TestDns {
            addr,
            stop,
            queries,
        }
    }

    fn queries(&self) -> Vec<(String, u16)> {
        self.queries.lock().unwrap().clone()
    }
}

impl Drop for TestDns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn encode_name(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name.trim_end_matches('.').split('.') {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

fn resource(name: &[u8], kind: u16, rdata: &[u8]) -> Vec<u8> {
    let mut out = name.to_vec();
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes()); // class IN
    out.extend_from_slice(&60u32.to_be_bytes()); // TTL
    out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    out.extend_from_slice(rdata);
    out
}

fn dns_answer(zone: &Zone, packet: &[u8], log: &Mutex<Vec<(String, u16)>>) -> Option<Vec<u8>> {
    if packet.len() < 12 || u16::from_be_bytes([packet[4], packet[5]]) != 1 {
        return None;
    }
    let mut labels = Vec::new();
    let mut pos = 12;
    loop {
        let len = usize::from(*packet.get(pos)?);
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(packet.get(pos + 1..pos + 1 + len)?).to_lowercase());
        pos += 1 + len;
    }
    let kind = u16::from_be_bytes([*packet.get(pos + 1)?, *packet.get(pos + 2)?]);
    let question_end = pos + 5;
    packet.get(..question_end)?;
    let name = labels.join(".");
    log.lock().unwrap().push((name.clone(), kind));

    // The answers' owner is the question's name: a pointer to offset 12.
    let pointer = [0xc0, 0x0c];
    let mut answers = Vec::new();
    let mut additionals = Vec::new();
    match kind {
        TYPE_SRV => {
            for (priority, weight, port, target) in zone.srv.get(&name).into_iter().flatten() {
                let mut rdata = Vec::new();
                for n in [priority, weight, port] {
                    rdata.extend_from_slice(&n.to_be_bytes());
                }
                rdata.extend_from_slice(&encode_name(target));
                answers.push(resource(&pointer, TYPE_SRV, &rdata));
                if zone.glue.contains(&name) {
                    for ip in zone.a.get(target).into_iter().flatten() {
                        additionals.push(resource(&encode_name(target), TYPE_A, &ip.octets()));
                    }
                }
            }
        }
        TYPE_A => {
            for ip in zone.a.get(&name).into_iter().flatten() {
                answers.push(resource(&pointer, TYPE_A, &ip.octets()));
            }
        }
        _ => {}
    }
    let known = zone.srv.contains_key(&name) || zone.a.contains_key(&name);
    let rcode = if known { 0 } else { 3 };
    let query_flags = u16::from_be_bytes([packet[2], packet[3]]);
    // QR, AA, RD copied from the query, RA.
    let flags = 0x8000 | 0x0400 | (query_flags & 0x0100) | 0x0080 | rcode;
    let mut out = Vec::new();
    out.extend_from_slice(&packet[..2]);
    out.extend_from_slice(&flags.to_be_bytes());
    for count in [1, answers.len(), 0, additionals.len()] {
        out.extend_from_slice(&(count as u16).to_be_bytes());
    }
    out.extend_from_slice(&packet[12..question_end]);
    for record in answers.iter().chain(&additionals) {
        out.extend_from_slice(record);
    }
    Some(out)
}

fn test_zone() -> Zone {
    let mut zone = Zone::default();
    zone.srv.insert(
        "_vega._tcp.example.test".into(),
        vec![
            (20, 1, 8082, "node2.example.test".into()),
            (10, 5, 8081, "node1.example.test".into()),
            (10, 50, 8083, "node3.example.test".into()),
        ],
    );
    zone.srv.insert(
        "_glue._tcp.example.test".into(),
        vec![(0, 0, 9000, "node1.example.test".into())],
    );
    zone.glue.insert("_glue._tcp.example.test".into());
    zone.a.insert(
        "node1.example.test".into(),
        vec![Ipv4Addr::new(127, 0, 0, 1)],
    );
    zone.a.insert(
        "node2.example.test".into(),
        vec![Ipv4Addr::new(127, 0, 0, 2)],
    );
    zone.a.insert(
        "node3.example.test".into(),
        vec![Ipv4Addr::new(127, 0, 0, 3), Ipv4Addr::new(127, 0, 0, 4)],
    );
    zone
}

fn dns(names: &[(&str, &str)], resolver: Option<SocketAddr>) -> Arc<dyn Discovery> {
    Provider::Dns {
        names: names
            .iter()
            .map(|(s, n)| (s.to_string(), n.to_string()))
            .collect(),
        resolver,
    }
    .build()
    .expect("dns settings")
}

#[tokio::test]
async fn dns_host_names_resolve_through_the_system_resolver() {
    let port = free_port();
    let discovery = dns(&[("vega-worker", &format!("localhost:{port}"))], None);
    let found = discovery.discover("vega-worker").await.unwrap();
    let addresses: Vec<&str> = found.iter().map(|i| i.address.as_str()).collect();
    assert!(
        addresses.contains(&format!("127.0.0.1:{port}").as_str()),
        "{addresses:?}"
    );
    assert!(found
        .iter()
        .all(|i| i.healthy && i.service == "vega-worker"));
    // A service without a mapping is looked up under its own name.
    let own = discovery
        .discover(&format!("127.0.0.1:{port}"))
        .await
        .unwrap();
    assert_eq!(own[0].address, format!("127.0.0.1:{port}"));
}

#[tokio::test]
async fn dns_srv_records_become_instances_in_priority_then_weight_order() {
    let server = TestDns::start(test_zone());
    let discovery = dns(
        &[("vega-worker", "_vega._tcp.example.test")],
        Some(server.addr),
    );
    let found: Vec<Instance> = discovery.discover("vega-worker").await.unwrap();
    let addresses: Vec<&str> = found.iter().map(|i| i.address.as_str()).collect();
    assert_eq!(
        addresses,
        [
            "127.0.0.3:8083",
            "127.0.0.4:8083",
            "127.0.0.1:8081",
            "127.0.0.2:8082"
        ]
    );
    assert_eq!(found[0].meta["priority"], "10");
    assert_eq!(found[0].meta["weight"], "50");
    assert_eq!(found[0].meta["target"], "node3.example.test");
    let queried: BTreeSet<_> = server.queries().into_iter().collect();
    assert!(queried.contains(&("_vega._tcp.example.test".into(), TYPE_SRV)));
    assert!(queried.contains(&("node1.example.test".into(), TYPE_A)));
}

#[tokio::test]
async fn dns_srv_targets_in_the_additional_section_need_no_lookup() {
    let server = TestDns::start(test_zone());
    let discovery = dns(&[], Some(server.addr));
    let found = discovery.discover("_glue._tcp.example.test").await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].address, "127.0.0.1:9000");
    assert!(
        !server.queries().iter().any(|(_, kind)| *kind == TYPE_A),
        "{:?}",
        server.queries()
    );
}

#[tokio::test]
async fn dns_names_without_records_have_no_instances() {
    let server = TestDns::start(test_zone());
    let discovery = dns(
        &[
            ("gone", "_gone._tcp.example.test"),
            ("host", "missing.example.test:80"),
        ],
        Some(server.addr),
    );
    assert!(discovery.discover("gone").await.unwrap().is_empty());
    assert!(discovery.discover("host").await.unwrap().is_empty());
}

#[tokio::test]
async fn dns_host_names_use_the_given_resolver() {
    let server = TestDns::start(test_zone());
    let discovery = dns(&[("w", "node3.example.test:7000")], Some(server.addr));
    assert_eq!(
        ids(&*discovery, "w").await,
        ["127.0.0.3:7000", "127.0.0.4:7000"]
    );
}

#[tokio::test]
async fn dns_unreachable_resolver_is_unavailable() {
    // A UDP port nobody listens on.
    let port = UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .unwrap()
        .port();
    let discovery = dns(&[], Some(SocketAddr::from(([127, 0, 0, 1], port))));
    let err = discovery
        .discover("_vega._tcp.example.test")
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Unavailable, "{err}");
}

// ------------------------------------------------------------------ etcd

#[test]
fn etcd_registers_two_instances_and_discovers_both() {
    let server = TestEtcd::start();
    let discovery = etcd(vec![server.endpoint()], None);
    let rt = runtime();
    let (a, b) = rt.block_on(async {
        let a = discovery
            .register(&registration(
                "vega-gateway",
                "node-1",
                8081,
                Duration::from_secs(10),
            ))
            .await
            .unwrap();
        let b = discovery
            .register(&registration(
                "vega-gateway",
                "node-2",
                8082,
                Duration::from_secs(10),
            ))
            .await
            .unwrap();
        let found = discovery.discover("vega-gateway").await.unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].address, "127.0.0.1:8081");
        assert_eq!(found[0].tags, ["api", "v2"]);
        assert!(found.iter().all(|i| i.healthy));
        assert!(discovery.discover("other").await.unwrap().is_empty());
        (a, b)
    });
    let keys = server.keys("/vega-test/services/");
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0].0, "/vega-test/services/vega-gateway/node-1");
    let stored: Value = serde_json::from_str(&keys[0].1).unwrap();
    assert_eq!(stored["address"], "127.0.0.1:8081");
    assert_eq!(stored["service"], "vega-gateway");
    rt.block_on(async {
        a.deregister().await.unwrap();
        b.deregister().await.unwrap();
    });
}

#[test]
fn etcd_instance_disappears_after_its_ttl_once_the_handle_is_dropped() {
    let server = TestEtcd::start();
    let discovery = etcd(vec![server.endpoint()], Some(Duration::from_secs(2)));
    runtime().block_on(async {
        let handle = discovery
            .register(&registration(
                "vega-gateway",
                "node-1",
                8081,
                Duration::from_secs(30),
            ))
            .await
            .unwrap();
        // Kept alive past its TTL.
        tokio::time::sleep(Duration::from_millis(3500)).await;
        assert_eq!(ids(&*discovery, "vega-gateway").await, ["node-1"]);
        assert_eq!(handle.last_error(), None);
        drop(handle);
        assert_eq!(ids(&*discovery, "vega-gateway").await, ["node-1"]);
        let took = eventually("the dropped instance expires", || async {
            ids(&*discovery, "vega-gateway").await.is_empty()
        })
        .await;
        assert!(took > Duration::from_millis(500), "expired after {took:?}");
    });
}

#[test]
fn etcd_deregister_removes_the_instance_at_once() {
    let server = TestEtcd::start();
    let discovery = etcd(vec![server.endpoint()], None);
    runtime().block_on(async {
        let handle = discovery
            .register(&registration(
                "vega-gateway",
                "node-1",
                8081,
                Duration::from_secs(30),
            ))
            .await
            .unwrap();
        handle.deregister().await.unwrap();
        assert!(ids(&*discovery, "vega-gateway").await.is_empty());
    });
    assert!(server.keys("/vega-test/").is_empty());
}

#[test]
fn etcd_registers_again_when_the_lease_is_lost() {
    let server = TestEtcd::start();
    let discovery = etcd(vec![server.endpoint()], Some(Duration::from_secs(3)));
    let endpoint = server.endpoint();
    runtime().block_on(async {
        let handle = discovery
            .register(&registration(
                "vega-gateway",
                "node-1",
                8081,
                Duration::from_secs(30),
            ))
            .await
            .unwrap();
        // Revoke every lease behind the client's back, as a restore would.
        let http = reqwest::Client::new();
        let leases: Value = http
            .post(format!("{endpoint}/v3/lease/leases"))
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for lease in leases["leases"].as_array().unwrap() {
            http.post(format!("{endpoint}/v3/lease/revoke"))
                .json(&json!({"ID": lease["ID"]}))
                .send()
                .await
                .unwrap();
        }
        assert!(ids(&*discovery, "vega-gateway").await.is_empty());
        eventually("the instance is registered again", || async {
            ids(&*discovery, "vega-gateway").await == ["node-1"]
        })
        .await;
        handle.deregister().await.unwrap();
        assert!(ids(&*discovery, "vega-gateway").await.is_empty());
    });
}

#[test]
fn etcd_unreachable_endpoint_is_unavailable() {
    let dead = format!("http://127.0.0.1:{}", free_port());
    let discovery = etcd(vec![dead.clone()], None);
    runtime().block_on(async {
        let err = discovery
            .register(&registration(
                "vega-gateway",
                "node-1",
                8081,
                Duration::from_secs(5),
            ))
            .await
            .unwrap_err();
        assert_eq!(err.class(), ErrorClass::Unavailable, "{err}");
        assert!(err.is_retryable());
        assert!(err.to_string().contains(&dead), "{err}");
        let err = discovery.discover("vega-gateway").await.unwrap_err();
        assert!(matches!(err, DiscoveryError::Unavailable { .. }), "{err}");
    });
}

#[test]
fn etcd_second_endpoint_is_used_when_the_first_is_down() {
    let server = TestEtcd::start();
    let dead = format!("http://127.0.0.1:{}", free_port());
    let discovery = etcd(vec![dead, server.endpoint()], None);
    runtime().block_on(async {
        let handle = discovery
            .register(&registration(
                "vega-gateway",
                "node-1",
                8081,
                Duration::from_secs(10),
            ))
            .await
            .unwrap();
        assert_eq!(ids(&*discovery, "vega-gateway").await, ["node-1"]);
        handle.deregister().await.unwrap();
    });
}

#[test]
fn start_up_registration_retries_an_unreachable_backend_and_reports_its_error() {
    let discovery = etcd(vec![format!("http://127.0.0.1:{}", free_port())], None);
    runtime().block_on(async {
        let mut retries = 0;
        let err = register_with_backoff(
            &*discovery,
            &registration("vega-gateway", "node-1", 8081, Duration::from_secs(5)),
            Duration::from_secs(1),
            |attempt| {
                assert!(attempt.error.is_retryable());
                retries += 1;
            },
        )
        .await
        .unwrap_err();
        assert!(retries >= 1);
        assert!(matches!(err, DiscoveryError::Unavailable { .. }), "{err}");
    });
}

// ---------------------------------------------------------------- consul

#[tokio::test]
async fn consul_registers_two_instances_and_discovers_both() {
    let server = TestConsul::start();
    let discovery = consul(&server, None);
    let a = discovery
        .register(&registration(
            "vega-gateway",
            "node-1",
            8081,
            Duration::from_secs(10),
        ))
        .await
        .unwrap();
    let b = discovery
        .register(&registration(
            "vega-gateway",
            "node-2",
            8082,
            Duration::from_secs(10),
        ))
        .await
        .unwrap();
    let found = discovery.discover("vega-gateway").await.unwrap();
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].id, "node-1");
    assert_eq!(found[0].address, "127.0.0.1:8081");
    assert_eq!(found[0].tags, ["api", "v2"]);
    assert!(discovery.discover("other").await.unwrap().is_empty());
    a.deregister().await.unwrap();
    b.deregister().await.unwrap();
}

#[tokio::test]
async fn consul_register_request_matches_consuls_documented_shape() {
    let server = TestConsul::start_with_token("s3cret");
    let discovery = consul(&server, Some("s3cret"));
    let handle = discovery
        .register(&registration(
            "vega-gateway",
            "node-1",
            8081,
            Duration::from_secs(15),
        ))
        .await
        .unwrap();
    let requests = server.requests();
    let register = &requests[0];
    assert_eq!(register.method, "PUT");
    assert_eq!(register.path, "/v1/agent/service/register");
    assert_eq!(register.header("x-consul-token"), Some("s3cret"));
    assert_eq!(
        register.json(),
        json!({
            "ID": "node-1",
            "Name": "vega-gateway",
            "Tags": ["api", "v2"],
            "Address": "127.0.0.1",
            "Port": 8081,
            "Check": {"TTL": "15s", "DeregisterCriticalServiceAfter": "60s"},
        })
    );
    // The TTL check starts critical in Consul: it is passed right away.
    assert_eq!(requests[1].method, "PUT");
    assert_eq!(requests[1].path, "/v1/agent/check/pass/service%3Anode-1");
    assert_eq!(server.check_status("node-1").as_deref(), Some("passing"));
    handle.deregister().await.unwrap();
    let last = server.requests().pop().unwrap();
    assert_eq!(last.path, "/v1/agent/service/deregister/node-1");
}

#[tokio::test]
async fn consul_instance_disappears_after_its_ttl_once_the_handle_is_dropped() {
    let server = TestConsul::start();
    let discovery = consul(&server, None);
    let handle = discovery
        .register(&registration(
            "vega-gateway",
            "node-1",
            8081,
            Duration::from_secs(1),
        ))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(ids(&*discovery, "vega-gateway").await, ["node-1"]);
    drop(handle);
    let took = eventually("the dropped instance's check goes critical", || async {
        ids(&*discovery, "vega-gateway").await.is_empty()
    })
    .await;
    assert!(took > Duration::from_millis(300), "critical after {took:?}");
    assert_eq!(server.check_status("node-1").as_deref(), Some("critical"));
}

#[tokio::test]
async fn consul_deregister_removes_the_instance_at_once() {
    let server = TestConsul::start();
    let discovery = consul(&server, None);
    let handle = discovery
        .register(&registration(
            "vega-gateway",
            "node-1",
            8081,
            Duration::from_secs(10),
        ))
        .await
        .unwrap();
    handle.deregister().await.unwrap();
    assert!(server.service_ids().is_empty());
    assert!(ids(&*discovery, "vega-gateway").await.is_empty());
}

#[tokio::test]
async fn consul_registers_again_when_the_agent_forgets_the_service() {
    let server = TestConsul::start();
    let discovery = consul(&server, None);
    let handle = discovery
        .register(&registration(
            "vega-gateway",
            "node-1",
            8081,
            Duration::from_secs(1),
        ))
        .await
        .unwrap();
    server.forget_services();
    assert!(ids(&*discovery, "vega-gateway").await.is_empty());
    eventually("the instance is registered again", || async {
        ids(&*discovery, "vega-gateway").await == ["node-1"]
    })
    .await;
    handle.deregister().await.unwrap();
}

#[tokio::test]
async fn consul_unreachable_agent_is_unavailable() {
    let discovery = Provider::Consul {
        address: format!("127.0.0.1:{}", free_port()),
        token: None,
        datacenter: None,
    }
    .build()
    .unwrap();
    let err = discovery
        .register(&registration(
            "vega-gateway",
            "node-1",
            8081,
            Duration::from_secs(5),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Unavailable, "{err}");
    let err = discovery.discover("vega-gateway").await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Unavailable, "{err}");
}

#[tokio::test]
async fn consul_wrong_token_is_unauthenticated() {
    let server = TestConsul::start_with_token("s3cret");
    for token in [Some("wrong"), None] {
        let discovery = consul(&server, token);
        let err = discovery
            .register(&registration(
                "vega-gateway",
                "node-1",
                8081,
                Duration::from_secs(5),
            ))
            .await
            .unwrap_err();
        assert_eq!(err.class(), ErrorClass::Unauthenticated, "{err}");
        assert!(!err.is_retryable());
        let err = discovery.discover("vega-gateway").await.unwrap_err();
        assert_eq!(err.class(), ErrorClass::Unauthenticated, "{err}");
        assert!(!format!("{err} {err:?} {discovery:?}").contains("wrong"));
    }
    assert!(server.service_ids().is_empty());
}

#[tokio::test]
async fn consul_discovery_asks_the_configured_datacenter() {
    let server = TestConsul::start();
    for (dc, ok) in [("dc1", true), ("dc2", false)] {
        let discovery = Provider::Consul {
            address: server.url(),
            token: None,
            datacenter: Some(dc.into()),
        }
        .build()
        .unwrap();
        let result = discovery.discover("vega-gateway").await;
        assert_eq!(result.is_ok(), ok, "{result:?}");
        let path = server.requests().pop().unwrap().path;
        assert_eq!(
            path,
            format!("/v1/health/service/vega-gateway?passing=true&dc={dc}")
        );
    }
}

/// An HTTP endpoint answering every request with the current `status`.
fn health_endpoint(status: Arc<AtomicU16>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buffer = [0u8; 4096];
            let _ = std::io::Read::read(&mut stream, &mut buffer);
            let code = status.load(Ordering::SeqCst);
            let reply =
                format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            let _ = std::io::Write::write_all(&mut stream, reply.as_bytes());
        }
    });
    port
}

#[tokio::test]
async fn consul_http_checks_follow_the_health_url() {
    let server = TestConsul::start();
    let status = Arc::new(AtomicU16::new(200));
    let port = health_endpoint(status.clone());
    let discovery = consul(&server, None);
    let mut reg = registration("vega-gateway", "node-1", port, Duration::from_secs(10));
    reg.health_url = Some(format!("http://127.0.0.1:{port}/health/ready"));
    reg.check_interval = Duration::from_millis(200);
    let handle = discovery.register(&reg).await.unwrap();
    assert_eq!(
        server.requests()[0].json()["Check"],
        json!({
            "HTTP": format!("http://127.0.0.1:{port}/health/ready"),
            "Interval": "200ms",
            "Timeout": "200ms",
            "DeregisterCriticalServiceAfter": "60s",
        })
    );
    eventually("the HTTP check passes", || async {
        ids(&*discovery, "vega-gateway").await == ["node-1"]
    })
    .await;
    status.store(503, Ordering::SeqCst);
    eventually("the failing HTTP check takes the instance out", || async {
        ids(&*discovery, "vega-gateway").await.is_empty()
    })
    .await;
    handle.deregister().await.unwrap();
    assert!(server.service_ids().is_empty());
}
