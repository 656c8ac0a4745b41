//! MQTT-fed stream assets against a real Mosquitto: topic filters and
//! topic-level columns, JSON mapping, QoS 1 acknowledged only once durable,
//! mapping errors counted and not stored, a broker that is down at start,
//! the persistent session across a Vega restart, and backpressure.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vega_testkit::mosquitto::TestMosquitto;

use crate::server::{Options, TestServer};

/// A QoS 1 publisher; `acked` counts PUBACKs from the broker.
pub struct Publisher {
    client: rumqttc::Client,
    pub acked: Arc<AtomicU64>,
    stopping: Arc<std::sync::atomic::AtomicBool>,
    driver: Option<std::thread::JoinHandle<()>>,
}

impl Publisher {
    pub fn connect(port: u16, id: &str) -> Self {
        let mut opts = rumqttc::MqttOptions::new(id, "127.0.0.1", port);
        opts.set_keep_alive(Duration::from_secs(10));
        let (client, mut connection) = rumqttc::Client::new(opts, 1000);
        let acked = Arc::new(AtomicU64::new(0));
        let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let counter = acked.clone();
        let stop = stopping.clone();
        let driver = std::thread::spawn(move || {
            for event in connection.iter() {
                match event {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => {
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(rumqttc::Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return,
                    Ok(_) => {}
                    Err(_) if stop.load(Ordering::SeqCst) => return,
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        });
        Self {
            client,
            acked,
            stopping,
            driver: Some(driver),
        }
    }

    pub fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(topic, rumqttc::QoS::AtLeastOnce, false, payload.into())
            .expect("publish");
    }

    /// Waits until the broker acknowledged `n` messages in all.
    pub fn wait_acked(&self, n: u64) {
        let started = Instant::now();
        while self.acked.load(Ordering::SeqCst) < n {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the broker did not acknowledge"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = self.client.disconnect();
        if let Some(d) = self.driver.take() {
            let _ = d.join();
        }
    }
}

pub fn wait_until(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ok() {
        assert!(started.elapsed() < within, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn count(vega: &TestServer, sql: &str) -> i64 {
    let r = vega.post("/api/v1/query", &json!({ "sql": sql }));
    if r.status != 200 {
        return -1; // the asset has no rows yet
    }
    r.json()["rows"][0][0].as_i64().unwrap_or(-1)
}

/// Creates an MQTT connection and a stream asset on it; returns the
/// connection's id.
pub fn mqtt_asset(vega: &TestServer, port: u16, ns: &str, name: &str, source: Value) -> String {
    let r = vega.post(
        "/api/v1/connections",
        &json!({ "name": format!("broker-{ns}-{name}"), "type": "mqtt",
                 "params": { "host": "127.0.0.1", "port": port, "client_id": format!("vega-test-{ns}-{name}") } }),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let con = r.json()["id"].as_str().unwrap().to_string();
    let r = vega.post(
        "/api/v1/assets",
        &json!({ "namespace": ns, "name": name, "connection_id": con, "source": source }),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json()["sync_mode"], "stream");
    con
}

pub fn connection_health(vega: &TestServer, name: &str) -> Value {
    let health = vega.get("/health").json();
    health["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == format!("connection:{name}"))
        .cloned()
        .unwrap_or(Value::Null)
}

#[test]
fn json_messages_become_rows_with_topic_levels_and_bad_ones_are_counted() {
    let broker = TestMosquitto::start();
    let vega = TestServer::start();
    mqtt_asset(
        &vega,
        broker.port(),
        "plant",
        "sensors",
        json!({ "topic": "plant/+/line/+/#", "qos": 1,
                "topic_pattern": "plant/{site}/line/{line}/{sensor}",
                "timestamp": { "field": "ts", "format": "unix_ms" } }),
    );
    wait_until("the consumer to connect", Duration::from_secs(20), || {
        connection_health(&vega, "broker-plant-sensors")["status"] == "healthy"
    });
    let publisher = Publisher::connect(broker.port(), "pub-1");
    for i in 0..100 {
        publisher.publish(
            &format!("plant/s{}/line/{}/temp", i % 2, i % 5),
            json!({ "ts": 1_700_000_000_000i64 + i, "value": i as f64 + 0.5, "ok": i % 2 == 0 })
                .to_string(),
        );
    }
    // Not matching the filter: never stored.
    publisher.publish("other/topic", json!({ "value": 1 }).to_string());
    publisher.wait_acked(101);
    wait_until("100 rows", Duration::from_secs(30), || {
        count(&vega, "SELECT count(*) FROM plant.sensors") == 100
    });
    let out = vega.sql(
        "SELECT site, line, sensor, value, ok, epoch_ms(time) FROM plant.sensors WHERE value = 7.5",
    );
    assert_eq!(
        out["rows"],
        json!([["s1", "2", "temp", 7.5, false, 1_700_000_000_007i64]])
    );

    // A payload that is not JSON and one whose type conflicts: counted, not stored.
    publisher.publish("plant/s0/line/1/temp", "not json");
    publisher.publish(
        "plant/s0/line/1/temp",
        json!({ "ts": 1_700_000_000_500i64, "value": "hot" }).to_string(),
    );
    publisher.wait_acked(103);
    let started = Instant::now();
    loop {
        let m = vega.metrics_text();
        if m.contains("vega_ingest_rejected_lines_total{reason=\"mqtt_not_json\"} 1")
            && m.contains("vega_ingest_rejected_lines_total{reason=\"type_conflict\"} 1")
        {
            break;
        }
        let shown: Vec<&str> = m
            .lines()
            .filter(|l| l.contains("rejected") || l.contains("mqtt"))
            .collect();
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "bad messages not counted: {shown:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(count(&vega, "SELECT count(*) FROM plant.sensors"), 100);
    let m = vega.metrics_text();
    assert!(
        m.contains("vega_mqtt_connected{connection=\"broker-plant-sensors\"} 1"),
        "{m}"
    );
    assert!(
        m.contains(
            "vega_mqtt_messages{connection=\"broker-plant-sensors\",outcome=\"stored\"} 100"
        ),
        "{m}"
    );
}

#[test]
fn a_broker_down_at_start_is_retried_and_shown_in_health() {
    let port = vega_testkit::ports::free_port();
    let vega = TestServer::start();
    mqtt_asset(&vega, port, "edge", "late", json!({ "topic": "late/#" }));
    wait_until(
        "health to report the broker down",
        Duration::from_secs(20),
        || {
            let h = connection_health(&vega, "broker-edge-late");
            h["status"] == "unhealthy"
                && h["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("reconnects"))
        },
    );
    let health = vega.get("/health").json();
    assert_eq!(health["status"], "degraded", "{health}");

    let broker = TestMosquitto::builder().port(port).start();
    wait_until("the consumer to connect", Duration::from_secs(60), || {
        connection_health(&vega, "broker-edge-late")["status"] == "healthy"
    });
    let publisher = Publisher::connect(broker.port(), "pub-late");
    publisher.publish("late/a", json!({ "v": 1 }).to_string());
    publisher.wait_acked(1);
    wait_until("the row", Duration::from_secs(30), || {
        count(&vega, "SELECT count(*) FROM edge.late") == 1
    });
}

#[test]
fn messages_sent_while_vega_is_down_arrive_after_its_restart() {
    let broker = TestMosquitto::start();
    let tmp = tempfile::tempdir().unwrap();
    let options = Options {
        data_dir: Some(tmp.path().join("data")),
        ..Options::default()
    };
    let mut vega = TestServer::start_with(options.clone());
    mqtt_asset(
        &vega,
        broker.port(),
        "edge",
        "offline",
        json!({ "topic": "offline/#" }),
    );
    wait_until("the consumer to connect", Duration::from_secs(20), || {
        connection_health(&vega, "broker-edge-offline")["status"] == "healthy"
    });
    let publisher = Publisher::connect(broker.port(), "pub-offline");
    publisher.publish("offline/a", json!({ "id": 0 }).to_string());
    publisher.wait_acked(1);
    wait_until("the first row", Duration::from_secs(30), || {
        count(&vega, "SELECT count(*) FROM edge.offline") == 1
    });
    vega.signal(libc::SIGTERM);
    vega.wait_exit(Duration::from_secs(30));
    for i in 1..=50 {
        publisher.publish("offline/a", json!({ "id": i }).to_string());
    }
    publisher.wait_acked(51);
    let vega = TestServer::start_with(options);
    wait_until("51 rows", Duration::from_secs(30), || {
        count(&vega, "SELECT count(DISTINCT id) FROM edge.offline") == 51
    });
    assert_eq!(count(&vega, "SELECT count(*) FROM edge.offline"), 51);
}

#[test]
fn a_full_buffer_stops_acknowledging_and_nothing_is_lost() {
    let broker = TestMosquitto::start();
    let vega = TestServer::start_with(Options {
        extra_yaml: "ingest:\n  buffer_max_rows: 20\n  flush_rows: 20\n  flush_age: 1h\n".into(),
        ..Options::default()
    });
    mqtt_asset(
        &vega,
        broker.port(),
        "edge",
        "burst",
        json!({ "topic": "burst/#" }),
    );
    wait_until("the consumer to connect", Duration::from_secs(20), || {
        connection_health(&vega, "broker-edge-burst")["status"] == "healthy"
    });
    let publisher = Publisher::connect(broker.port(), "pub-burst");
    for i in 0..300 {
        publisher.publish("burst/a", json!({ "id": i }).to_string());
    }
    publisher.wait_acked(300);
    wait_until("300 rows", Duration::from_secs(60), || {
        count(&vega, "SELECT count(DISTINCT id) FROM edge.burst") == 300
    });
    assert_eq!(count(&vega, "SELECT count(*) FROM edge.burst"), 300);
    // The buffer never held more than its bound: flushes made the room.
    let versions = vega.get("/api/v1/assets").json()[0]["active_version"].clone();
    assert!(versions.is_string(), "{versions}");
}
