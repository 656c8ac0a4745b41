//! The consumer against a real Mosquitto broker (one per test): routing,
//! acknowledgement only after the sink accepted, redelivery, persistent
//! sessions, MQTT 5, authentication, TLS, reconnects, mapping.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{json, Value};
use vega_connector_mqtt::{
    ConnectionState, Delivered, DeliveryKey, MessageSink, MqttConnection, MqttConsumer, MqttHandle,
    MqttSource, SinkError, Subscription,
};
use vega_core::{FieldValue, Id, ManualClock, Point};
use vega_testkit::mosquitto::TestMosquitto;

/// Bound of every wait in these tests.
const WAIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------
// A sink that records into memory and answers as told.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Accept,
    Busy,
    Unavailable,
    Reject,
}

#[derive(Debug, Clone)]
struct Record {
    asset: Id,
    point: Point,
    key: DeliveryKey,
}

struct Recorder {
    mode: Mutex<Mode>,
    /// Answer `Busy` this many more times before following `mode`.
    busy_first: AtomicUsize,
    attempts: Mutex<Vec<DeliveryKey>>,
    stored: Mutex<Vec<Record>>,
    failures: Mutex<Vec<(Id, &'static str)>>,
}

impl Recorder {
    fn new(mode: Mode) -> Arc<Self> {
        Arc::new(Recorder {
            mode: Mutex::new(mode),
            busy_first: AtomicUsize::new(0),
            attempts: Mutex::new(Vec::new()),
            stored: Mutex::new(Vec::new()),
            failures: Mutex::new(Vec::new()),
        })
    }

    fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn attempts(&self) -> Vec<DeliveryKey> {
        self.attempts.lock().unwrap().clone()
    }

    fn stored(&self) -> Vec<Record> {
        self.stored.lock().unwrap().clone()
    }

    fn stored_for(&self, asset: &str) -> Vec<Record> {
        self.stored()
            .into_iter()
            .filter(|r| r.asset.as_str() == asset)
            .collect()
    }

    fn failures(&self) -> Vec<(Id, &'static str)> {
        self.failures.lock().unwrap().clone()
    }
}

#[async_trait]
impl MessageSink for Recorder {
    async fn deliver(
        &self,
        asset: &Id,
        points: Vec<Point>,
        key: DeliveryKey,
    ) -> Result<Delivered, SinkError> {
        self.attempts.lock().unwrap().push(key);
        if self
            .busy_first
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(SinkError::Busy {
                retry_after: Duration::from_millis(20),
            });
        }
        let mode = *self.mode.lock().unwrap();
        match mode {
            Mode::Busy => Err(SinkError::Busy {
                retry_after: Duration::from_millis(20),
            }),
            Mode::Unavailable => Err(SinkError::Unavailable("disk full".into())),
            Mode::Reject => Err(SinkError::Rejected("type conflict".into())),
            Mode::Accept => {
                let mut stored = self.stored.lock().unwrap();
                for point in points {
                    stored.push(Record {
                        asset: asset.clone(),
                        point,
                        key,
                    });
                }
                Ok(Delivered::Stored)
            }
        }
    }

    fn mapping_failed(&self, asset: &Id, kind: &'static str) {
        self.failures.lock().unwrap().push((asset.clone(), kind));
    }
}

// ---------------------------------------------------------------------
// Helpers.

/// Connection parameters for `broker` with fast reconnects, plus `extra`.
fn connection(broker: &TestMosquitto, extra: Value) -> MqttConnection {
    let mut params = json!({
        "host": broker.host(),
        "port": broker.port(),
        "reconnect_min_ms": 50,
        "reconnect_max_ms": 500,
    });
    if let (Some(map), Value::Object(more)) = (params.as_object_mut(), extra) {
        map.extend(more);
    }
    MqttConnection::parse(&params).unwrap()
}

fn subscription(asset: &str, source: Value) -> Subscription {
    Subscription {
        asset: Id::from_trusted(asset),
        asset_name: format!("test.{asset}"),
        source: MqttSource::parse(&source).unwrap(),
    }
}

/// Waits until `cond` holds; panics with `what` and the consumer's status
/// after [`WAIT`].
async fn wait_until(what: &str, handle: &MqttHandle, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        if Instant::now() > deadline {
            panic!(
                "timed out waiting for {what}; status: {:?}",
                handle.status()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_ready(handle: &MqttHandle) {
    wait_until("connected and subscribed", handle, || {
        let s = handle.status();
        s.state == ConnectionState::Connected && s.subscribed
    })
    .await;
}

/// Publishes over its own MQTT 3.1.1 connection, waiting for PUBACK.
struct Publisher {
    client: rumqttc::AsyncClient,
    eventloop: rumqttc::EventLoop,
}

impl Publisher {
    fn new(broker: &TestMosquitto) -> Self {
        Self::with(broker, |_| {})
    }

    fn with(broker: &TestMosquitto, configure: impl FnOnce(&mut rumqttc::MqttOptions)) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let id = format!("test-publisher-{}", NEXT.fetch_add(1, Ordering::SeqCst));
        let mut options = rumqttc::MqttOptions::new(id, broker.host(), broker.port());
        options.set_max_packet_size(1 << 20, 1 << 20);
        configure(&mut options);
        let (client, eventloop) = rumqttc::AsyncClient::new(options, 100);
        Publisher { client, eventloop }
    }

    /// Publishes at QoS 1 and waits for the broker's PUBACK.
    async fn publish(&mut self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.publish_qos(topic, payload, rumqttc::QoS::AtLeastOnce)
            .await;
    }

    async fn publish_qos(&mut self, topic: &str, payload: impl Into<Vec<u8>>, qos: rumqttc::QoS) {
        self.client
            .publish(topic, qos, false, payload.into())
            .await
            .unwrap();
        let wait = async {
            loop {
                match self.eventloop.poll().await {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_)))
                        if qos == rumqttc::QoS::AtLeastOnce =>
                    {
                        return
                    }
                    Ok(rumqttc::Event::Outgoing(rumqttc::Outgoing::Publish(_)))
                        if qos == rumqttc::QoS::AtMostOnce =>
                    {
                        return
                    }
                    Ok(_) => {}
                    Err(e) => panic!("test publisher: {e}"),
                }
            }
        };
        tokio::time::timeout(WAIT, wait)
            .await
            .expect("test publisher: no PUBACK in time");
    }
}

fn float(point: &Point, name: &str) -> Option<f64> {
    point.fields.iter().find_map(|(n, v)| match v {
        FieldValue::Float(f) if n == name => Some(*f),
        _ => None,
    })
}

fn values(records: &[Record], name: &str) -> Vec<f64> {
    let mut v: Vec<f64> = records
        .iter()
        .filter_map(|r| float(&r.point, name))
        .collect();
    v.sort_by(f64::total_cmp);
    v
}

/// Gives a message that is not coming the time to arrive (nothing to wait
/// for but time).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(700)).await;
}

// ---------------------------------------------------------------------
// Tests.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_filters_route_messages_to_every_matching_asset() {
    let broker = TestMosquitto::start();
    let sink = Recorder::new(Mode::Accept);
    let subs = vec![
        subscription("ast_temp", json!({"topic": "plant/+/temp"})),
        subscription("ast_all", json!({"topic": "plant/#"})),
        subscription("ast_other", json!({"topic": "other/x", "qos": 0})),
    ];
    let handle = MqttConsumer::spawn(
        "routing",
        connection(&broker, json!({})),
        subs,
        sink.clone(),
    );
    wait_ready(&handle).await;

    let mut publisher = Publisher::new(&broker);
    publisher.publish("plant/a/temp", r#"{"v": 1}"#).await;
    publisher.publish("plant/a/hum", r#"{"v": 2}"#).await;
    publisher.publish("plant", r#"{"v": 3}"#).await;
    publisher.publish("unrelated/x", r#"{"v": 4}"#).await;
    publisher
        .publish_qos("other/x", r#"{"v": 5}"#, rumqttc::QoS::AtMostOnce)
        .await;
    wait_until("all deliveries", &handle, || sink.stored().len() == 5).await;
    settle().await;

    assert_eq!(values(&sink.stored_for("ast_temp"), "v"), [1.0]);
    assert_eq!(values(&sink.stored_for("ast_all"), "v"), [1.0, 2.0, 3.0]);
    assert_eq!(values(&sink.stored_for("ast_other"), "v"), [5.0]);
    let status = handle.status();
    assert_eq!(status.connection, "routing");
    // `plant/+/temp` is covered by `plant/#`: subscribed once, so the
    // broker sent `plant/a/temp` once, routed to both assets; nothing was
    // subscribed for `unrelated/x`.
    assert_eq!(status.received, 4, "{status:?}");
    assert_eq!(status.stored, 5);
    assert_eq!(status.reconnects, 0);
    assert!(status.connected_since.is_some());
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos1_is_acknowledged_only_after_the_sink_accepts() {
    let broker = TestMosquitto::start();
    let subs = || vec![subscription("ast_a", json!({"topic": "acks/#"}))];
    let conn = connection(&broker, json!({"client_id": "vega-acks"}));

    // Busy three times, then stored: acknowledged once stored.
    let sink = Recorder::new(Mode::Accept);
    sink.busy_first.store(3, Ordering::SeqCst);
    let handle = MqttConsumer::spawn("acks", conn.clone(), subs(), sink.clone());
    wait_ready(&handle).await;
    Publisher::new(&broker)
        .publish("acks/1", r#"{"v": 1}"#)
        .await;
    wait_until("the delivery", &handle, || sink.stored().len() == 1).await;
    assert_eq!(sink.attempts().len(), 4);
    assert!(!sink.stored()[0].key.redelivery);
    handle.shutdown().await;

    // Always busy: never acknowledged.
    let sink = Recorder::new(Mode::Busy);
    let handle = MqttConsumer::spawn("acks", conn.clone(), subs(), sink.clone());
    wait_ready(&handle).await;
    settle().await;
    assert!(sink.attempts().is_empty(), "the stored message came back");
    Publisher::new(&broker)
        .publish("acks/2", r#"{"v": 2}"#)
        .await;
    wait_until("repeated attempts", &handle, || sink.attempts().len() >= 5).await;
    let first_key = sink.attempts()[0];
    assert!(!first_key.redelivery);
    assert_eq!(handle.status().stored, 0);
    handle.shutdown().await;

    // The broker sends it again to the next consumer with the same client
    // id, flagged as a redelivery, with the same keys.
    let sink = Recorder::new(Mode::Accept);
    let handle = MqttConsumer::spawn("acks", conn.clone(), subs(), sink.clone());
    wait_until("the redelivery", &handle, || sink.stored().len() == 1).await;
    let record = &sink.stored()[0];
    assert_eq!(float(&record.point, "v"), Some(2.0));
    assert!(record.key.redelivery);
    assert_eq!(record.key.session, first_key.session);
    assert_eq!(record.key.content, first_key.content);
    wait_ready(&handle).await;
    handle.shutdown().await;

    // Acknowledged now: not sent again.
    let sink = Recorder::new(Mode::Accept);
    let handle = MqttConsumer::spawn("acks", conn, subs(), sink.clone());
    wait_ready(&handle).await;
    settle().await;
    assert!(sink.attempts().is_empty(), "{:?}", sink.stored());
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_sink_is_retried_with_backoff_until_it_recovers() {
    let broker = TestMosquitto::start();
    let sink = Recorder::new(Mode::Unavailable);
    let subs = vec![subscription("ast_u", json!({"topic": "u"}))];
    let handle = MqttConsumer::spawn(
        "unavail",
        connection(&broker, json!({})),
        subs,
        sink.clone(),
    );
    wait_ready(&handle).await;
    Publisher::new(&broker).publish("u", r#"{"v": 1}"#).await;
    wait_until("retries", &handle, || sink.attempts().len() >= 3).await;
    sink.set_mode(Mode::Accept);
    wait_until("the delivery", &handle, || sink.stored().len() == 1).await;
    assert_eq!(handle.status().stored, 1);
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_continues_while_a_delivery_waits() {
    // The broker drops a client silent for 1.5 keep-alive intervals; the
    // sink stays busy longer than that.
    let broker = TestMosquitto::start();
    let sink = Recorder::new(Mode::Busy);
    let subs = vec![subscription("ast_k", json!({"topic": "k"}))];
    let conn = connection(&broker, json!({"keep_alive_secs": 5}));
    let handle = MqttConsumer::spawn("keepalive", conn, subs, sink.clone());
    wait_ready(&handle).await;
    Publisher::new(&broker).publish("k", r#"{"v": 1}"#).await;
    wait_until("an attempt", &handle, || !sink.attempts().is_empty()).await;
    tokio::time::sleep(Duration::from_secs(9)).await;
    sink.set_mode(Mode::Accept);
    wait_until("the delivery", &handle, || sink.stored().len() == 1).await;
    let status = handle.status();
    assert_eq!(status.reconnects, 0, "{status:?}");
    assert_eq!(status.state, ConnectionState::Connected);
    assert_eq!(status.last_error, None);
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_session_keeps_messages_published_while_away() {
    for protocol in ["3.1.1", "5"] {
        let broker = TestMosquitto::start();
        let conn = connection(&broker, json!({"protocol": protocol}));
        let subs = || vec![subscription("ast_p", json!({"topic": "away/+"}))];
        let sink = Recorder::new(Mode::Accept);
        let handle = MqttConsumer::spawn("persist", conn.clone(), subs(), sink.clone());
        wait_ready(&handle).await;
        handle.shutdown().await;

        let mut publisher = Publisher::new(&broker);
        for i in 0..3 {
            publisher
                .publish(&format!("away/{i}"), format!(r#"{{"v": {i}}}"#))
                .await;
        }

        let handle = MqttConsumer::spawn("persist", conn, subs(), sink.clone());
        wait_until("the queued messages", &handle, || sink.stored().len() == 3).await;
        assert_eq!(values(&sink.stored(), "v"), [0.0, 1.0, 2.0], "{protocol}");
        handle.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_sessions_do_not_keep_messages() {
    let broker = TestMosquitto::start();
    let conn = connection(&broker, json!({"clean_session": true}));
    let subs = || vec![subscription("ast_c", json!({"topic": "clean"}))];
    let sink = Recorder::new(Mode::Accept);
    let handle = MqttConsumer::spawn("clean", conn.clone(), subs(), sink.clone());
    wait_ready(&handle).await;
    handle.shutdown().await;
    Publisher::new(&broker)
        .publish("clean", r#"{"v": 1}"#)
        .await;
    let handle = MqttConsumer::spawn("clean", conn, subs(), sink.clone());
    wait_ready(&handle).await;
    settle().await;
    assert!(sink.stored().is_empty());
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_routes_acknowledges_and_redelivers() {
    let broker = TestMosquitto::start();
    let conn = connection(
        &broker,
        json!({"protocol": "5", "session_expiry_secs": 300}),
    );
    let subs = || {
        vec![
            subscription("ast_x", json!({"topic": "v5/+/x"})),
            subscription("ast_all", json!({"topic": "v5/#"})),
        ]
    };
    let sink = Recorder::new(Mode::Busy);
    let handle = MqttConsumer::spawn("five", conn.clone(), subs(), sink.clone());
    wait_ready(&handle).await;
    let mut publisher = Publisher::new(&broker);
    publisher.publish("v5/a/x", r#"{"v": 1}"#).await;
    wait_until("attempts", &handle, || sink.attempts().len() >= 3).await;
    handle.shutdown().await;

    let sink = Recorder::new(Mode::Accept);
    let handle = MqttConsumer::spawn("five", conn, subs(), sink.clone());
    wait_until("the redelivery to both assets", &handle, || {
        sink.stored().len() == 2
    })
    .await;
    assert!(sink.stored().iter().all(|r| r.key.redelivery));
    wait_ready(&handle).await;
    publisher.publish("v5/b/y", r#"{"v": 2}"#).await;
    wait_until("the next message", &handle, || sink.stored().len() == 3).await;
    assert_eq!(values(&sink.stored_for("ast_x"), "v"), [1.0]);
    assert_eq!(values(&sink.stored_for("ast_all"), "v"), [1.0, 2.0]);
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_authentication_and_retry_after_a_wrong_password() {
    let broker = TestMosquitto::start_with_password("vega", "right-password");
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("mqtt-password");
    std::fs::write(&secret, "wrong-password\n").unwrap();
    let conn = connection(
        &broker,
        json!({"username": "vega", "password": {"file": secret}}),
    );
    let sink = Recorder::new(Mode::Accept);
    let subs = vec![subscription("ast_pw", json!({"topic": "pw"}))];
    let handle = MqttConsumer::spawn("auth", conn, subs, sink.clone());

    wait_until("a refused connection", &handle, || {
        let s = handle.status();
        s.reconnects >= 2
            && s.last_error
                .as_deref()
                .is_some_and(|e| e.contains("refused"))
    })
    .await;
    let status = handle.status();
    assert_ne!(status.state, ConnectionState::Connected);
    assert!(!status.last_error.unwrap().contains("wrong-password"));

    // The password is read again for every attempt.
    std::fs::write(&secret, "right-password\n").unwrap();
    wait_ready(&handle).await;
    let mut publisher = Publisher::with(&broker, |o| {
        o.set_credentials("vega", "right-password");
    });
    publisher.publish("pw", r#"{"v": 1}"#).await;
    wait_until("the delivery", &handle, || sink.stored().len() == 1).await;
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_secret_is_reported_and_retried() {
    let broker = TestMosquitto::start_with_password("vega", "pw");
    let conn = connection(
        &broker,
        json!({"username": "vega", "password": {"env": "VEGA_TEST_MQTT_SURELY_UNSET"}}),
    );
    let sink = Recorder::new(Mode::Accept);
    let subs = vec![subscription("ast_s", json!({"topic": "s"}))];
    let handle = MqttConsumer::spawn("secret", conn, subs, sink);
    wait_until("the secret error", &handle, || {
        let s = handle.status();
        s.reconnects >= 2
            && s.last_error
                .as_deref()
                .is_some_and(|e| e.contains("env:VEGA_TEST_MQTT_SURELY_UNSET"))
    })
    .await;
    assert_eq!(handle.status().state, ConnectionState::Disconnected);
    handle.shutdown().await;
}

/// A TLS client configuration trusting `ca_file`, for the test publisher.
fn publisher_tls(ca_file: &std::path::Path) -> rumqttc::Transport {
    let pem = std::fs::read(ca_file).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(Arc::new(config)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_the_test_ca() {
    let broker = TestMosquitto::start_with_tls();
    let ca = broker.ca_file();
    let sink = Recorder::new(Mode::Accept);
    let subs = vec![subscription("ast_tls", json!({"topic": "tls/#"}))];
    let conn = connection(&broker, json!({"tls": {"ca_file": ca}}));
    let handle = MqttConsumer::spawn("tls", conn, subs, sink.clone());
    wait_ready(&handle).await;
    let mut publisher = Publisher::with(&broker, |o| {
        o.set_transport(publisher_tls(&ca));
    });
    publisher.publish("tls/a", r#"{"v": 1}"#).await;
    wait_until("the delivery", &handle, || sink.stored().len() == 1).await;
    handle.shutdown().await;

    // Without the CA the server is not trusted.
    let other_dir = tempfile::tempdir().unwrap();
    let other = other_dir.path().join("other-ca.pem");
    let foreign = TestMosquitto::start_with_tls();
    std::fs::copy(foreign.ca_file(), &other).unwrap();
    let conn = connection(&broker, json!({"tls": {"ca_file": other}}));
    let handle = MqttConsumer::spawn(
        "tls-untrusted",
        conn,
        vec![subscription("ast_tls", json!({"topic": "tls/#"}))],
        Recorder::new(Mode::Accept),
    );
    wait_until("a TLS error", &handle, || {
        handle
            .status()
            .last_error
            .is_some_and(|e| e.contains("TLS"))
    })
    .await;
    assert_ne!(handle.status().state, ConnectionState::Connected);
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_client_certificates() {
    let broker = TestMosquitto::builder().require_client_cert().start();
    let ca = broker.ca_file();
    let sink = Recorder::new(Mode::Accept);
    let subs = || vec![subscription("ast_mtls", json!({"topic": "m"}))];

    // Without a client certificate the broker refuses.
    let conn = connection(&broker, json!({"tls": {"ca_file": ca}}));
    let handle = MqttConsumer::spawn("mtls-none", conn, subs(), sink.clone());
    wait_until("a refusal", &handle, || {
        let s = handle.status();
        s.reconnects >= 1 && s.last_error.is_some()
    })
    .await;
    assert_ne!(handle.status().state, ConnectionState::Connected);
    handle.shutdown().await;

    let conn = connection(
        &broker,
        json!({"tls": {
            "ca_file": ca,
            "client_cert_file": broker.client_cert_file(),
            "client_key_file": broker.client_key_file(),
        }}),
    );
    let handle = MqttConsumer::spawn("mtls", conn, subs(), sink.clone());
    wait_ready(&handle).await;
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_broker_at_start_is_retried_until_it_runs() {
    let port = vega_testkit::ports::free_port();
    let conn = MqttConnection::parse(&json!({
        "host": "127.0.0.1", "port": port, "reconnect_min_ms": 50, "reconnect_max_ms": 300
    }))
    .unwrap();
    let sink = Recorder::new(Mode::Accept);
    let subs = vec![subscription("ast_late", json!({"topic": "late"}))];
    let handle = MqttConsumer::spawn("late", conn, subs, sink.clone());
    wait_until("failed attempts", &handle, || {
        let s = handle.status();
        s.reconnects >= 3 && s.last_error.is_some()
    })
    .await;
    let status = handle.status();
    assert_ne!(status.state, ConnectionState::Connected);
    assert!(
        status
            .last_error
            .as_deref()
            .unwrap()
            .contains(&port.to_string()),
        "{status:?}"
    );

    let broker = TestMosquitto::builder().port(port).start();
    wait_ready(&handle).await;
    Publisher::new(&broker).publish("late", r#"{"v": 1}"#).await;
    wait_until("the delivery", &handle, || sink.stored().len() == 1).await;
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_is_survived() {
    let mut broker = TestMosquitto::start();
    let sink = Recorder::new(Mode::Accept);
    let subs = vec![subscription("ast_r", json!({"topic": "r/#"}))];
    let handle = MqttConsumer::spawn(
        "restart",
        connection(&broker, json!({})),
        subs,
        sink.clone(),
    );
    wait_ready(&handle).await;
    Publisher::new(&broker).publish("r/1", r#"{"v": 1}"#).await;
    wait_until("the first delivery", &handle, || sink.stored().len() == 1).await;

    broker.stop();
    wait_until("the lost connection", &handle, || {
        handle.status().state != ConnectionState::Connected
    })
    .await;
    broker.restart();
    wait_ready(&handle).await;
    let status = handle.status();
    assert!(status.reconnects >= 1, "{status:?}");
    assert!(status.last_error.is_some());

    // The session survived the restart (persistence), and so did the
    // subscription.
    Publisher::new(&broker).publish("r/2", r#"{"v": 2}"#).await;
    wait_until("the second delivery", &handle, || sink.stored().len() == 2).await;
    assert_eq!(values(&sink.stored(), "v"), [1.0, 2.0]);
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_patterns_timestamps_and_raw_payloads() {
    let broker = TestMosquitto::start();
    let sink = Recorder::new(Mode::Accept);
    let subs = vec![
        subscription(
            "ast_tags",
            json!({"topic": "plant/+/line/+/+", "topic_pattern": "plant/{site}/line/{line}/{sensor}"}),
        ),
        subscription(
            "ast_ms",
            json!({"topic": "ts/ms", "timestamp": {"field": "ts", "format": "unix_ms"}}),
        ),
        subscription(
            "ast_rfc",
            json!({"topic": "ts/rfc", "timestamp": {"field": "at"}}),
        ),
        subscription(
            "ast_raw",
            json!({"topic": "raw/+", "payload": "raw", "topic_pattern": "raw/{device}"}),
        ),
    ];
    let clock = ManualClock::new("2024-05-01T12:00:00Z".parse().unwrap());
    let handle = MqttConsumer::spawn_with_clock(
        "mapping",
        connection(&broker, json!({})),
        subs,
        sink.clone(),
        Arc::new(clock),
    );
    wait_ready(&handle).await;
    let mut publisher = Publisher::new(&broker);
    publisher
        .publish("plant/north/line/3/temp", r#"{"value": 21.5, "Unit": "C"}"#)
        .await;
    publisher
        .publish("ts/ms", r#"{"ts": 1714564800123, "v": 1}"#)
        .await;
    publisher
        .publish("ts/rfc", r#"{"at": "2024-05-01T12:00:01.5Z", "v": 2}"#)
        .await;
    publisher.publish("raw/dev-7", "a,b,c").await;
    wait_until("four deliveries", &handle, || sink.stored().len() == 4).await;

    let receive_ns = 1_714_564_800_000_000_000;
    let tags = &sink.stored_for("ast_tags")[0].point;
    assert_eq!(
        tags.tags,
        vec![
            ("site".to_string(), "north".to_string()),
            ("line".to_string(), "3".to_string()),
            ("sensor".to_string(), "temp".to_string()),
        ]
    );
    assert_eq!(float(tags, "value"), Some(21.5));
    assert!(tags
        .fields
        .contains(&("unit".to_string(), FieldValue::String("C".into()))));
    assert_eq!(tags.time_ns, receive_ns);

    let ms = &sink.stored_for("ast_ms")[0].point;
    assert_eq!(ms.time_ns, receive_ns + 123_000_000);
    assert_eq!(ms.fields, vec![("v".to_string(), FieldValue::Float(1.0))]);
    let rfc = &sink.stored_for("ast_rfc")[0].point;
    assert_eq!(rfc.time_ns, receive_ns + 1_500_000_000);

    let raw = &sink.stored_for("ast_raw")[0].point;
    assert_eq!(raw.tags, vec![("device".to_string(), "dev-7".to_string())]);
    assert_eq!(
        raw.fields,
        vec![("payload".to_string(), FieldValue::String("a,b,c".into()))]
    );
    assert_eq!(raw.time_ns, receive_ns);
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapping_errors_and_rejections_are_counted_and_acknowledged() {
    let broker = TestMosquitto::start();
    let conn = connection(&broker, json!({}));
    let subs = || {
        vec![
            subscription("ast_json", json!({"topic": "bad/json"})),
            subscription(
                "ast_ts",
                json!({"topic": "bad/ts", "timestamp": {"field": "ts", "format": "unix_s"}}),
            ),
            subscription("ast_rej", json!({"topic": "bad/rej"})),
        ]
    };
    let sink = Recorder::new(Mode::Accept);
    let handle = MqttConsumer::spawn("bad", conn.clone(), subs(), sink.clone());
    wait_ready(&handle).await;
    let mut publisher = Publisher::new(&broker);
    publisher.publish("bad/json", "not json").await;
    publisher.publish("bad/json", "[1, 2]").await;
    publisher.publish("bad/json", "also not json").await;
    publisher.publish("bad/ts", r#"{"v": 1}"#).await;
    publisher
        .publish("bad/ts", r#"{"ts": "soon", "v": 1}"#)
        .await;
    wait_until("the mapping errors", &handle, || sink.failures().len() == 5).await;
    let kinds: Vec<(String, &str)> = sink
        .failures()
        .into_iter()
        .map(|(asset, kind)| (asset.as_str().to_string(), kind))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("ast_json".to_string(), "not_json"),
            ("ast_json".to_string(), "not_object"),
            ("ast_json".to_string(), "not_json"),
            ("ast_ts".to_string(), "missing_timestamp"),
            ("ast_ts".to_string(), "bad_timestamp"),
        ]
    );
    sink.set_mode(Mode::Reject);
    publisher.publish("bad/rej", r#"{"v": 1}"#).await;
    wait_until("the rejection", &handle, || handle.status().rejected == 1).await;
    let status = handle.status();
    assert_eq!(status.mapping_errors, 5);
    assert_eq!(status.stored, 0);
    assert_eq!(status.received, 6);
    handle.shutdown().await;

    // All were acknowledged: nothing comes back to the same session.
    let sink = Recorder::new(Mode::Accept);
    let handle = MqttConsumer::spawn("bad", conn, subs(), sink.clone());
    wait_ready(&handle).await;
    settle().await;
    assert!(sink.failures().is_empty());
    assert!(sink.attempts().is_empty());
    assert_eq!(handle.status().received, 0);
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_while_connecting_is_prompt() {
    let port = vega_testkit::ports::free_port();
    let conn = MqttConnection::parse(&json!({"host": "127.0.0.1", "port": port})).unwrap();
    let handle = MqttConsumer::spawn(
        "nowhere",
        conn,
        vec![subscription("ast_n", json!({"topic": "n"}))],
        Recorder::new(Mode::Accept),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    handle.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_pending_across_a_broker_restart_is_redelivered_not_lost() {
    let mut broker = TestMosquitto::start();
    let conn = connection(&broker, json!({"client_id": "vega-pending"}));
    let subs = || vec![subscription("ast_pend", json!({"topic": "pend"}))];
    let sink = Recorder::new(Mode::Busy);
    let handle = MqttConsumer::spawn("pending", conn.clone(), subs(), sink.clone());
    wait_ready(&handle).await;
    Publisher::new(&broker).publish("pend", r#"{"v": 1}"#).await;
    wait_until("attempts", &handle, || sink.attempts().len() >= 2).await;

    // The connection the message came on goes away while it waits.
    broker.stop();
    broker.restart();
    wait_until("the reconnect", &handle, || {
        let s = handle.status();
        s.reconnects >= 1 && s.state == ConnectionState::Connected
    })
    .await;
    sink.set_mode(Mode::Accept);
    // The first copy is delivered but cannot be acknowledged on the new
    // connection; the broker's redelivery is, and carries the same keys.
    wait_until("both copies", &handle, || sink.stored().len() == 2).await;
    // Deliveries run concurrently: either copy may be stored first.
    let stored = sink.stored();
    let mut flags: Vec<bool> = stored.iter().map(|s| s.key.redelivery).collect();
    flags.sort();
    assert_eq!(flags, [false, true]);
    assert_eq!(stored[0].key.content, stored[1].key.content);
    assert_eq!(stored[0].key.session, stored[1].key.session);
    handle.shutdown().await;

    let sink = Recorder::new(Mode::Accept);
    let handle = MqttConsumer::spawn("pending", conn, subs(), sink.clone());
    wait_ready(&handle).await;
    settle().await;
    assert!(sink.attempts().is_empty(), "{:?}", sink.stored());
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos0_messages_beyond_the_queue_are_dropped_and_counted() {
    let broker = TestMosquitto::start();
    let sink = Recorder::new(Mode::Busy);
    let subs = vec![subscription("ast_q0", json!({"topic": "q0", "qos": 0}))];
    let conn = connection(&broker, json!({"inflight": 4}));
    let handle = MqttConsumer::spawn("qos0", conn, subs, sink.clone());
    wait_ready(&handle).await;
    let mut publisher = Publisher::new(&broker);
    publisher
        .publish_qos("q0", r#"{"v": 0}"#, rumqttc::QoS::AtMostOnce)
        .await;
    wait_until("the first attempt", &handle, || !sink.attempts().is_empty()).await;
    for i in 1..10 {
        publisher
            .publish_qos("q0", format!(r#"{{"v": {i}}}"#), rumqttc::QoS::AtMostOnce)
            .await;
    }
    wait_until("all received", &handle, || handle.status().received == 10).await;
    sink.set_mode(Mode::Accept);
    // Deliveries in flight hold messages too, so how many overflow the
    // queue depends on timing; every message is either stored or counted
    // as dropped, and the first one (which waited) is stored.
    wait_until("every message stored or dropped", &handle, || {
        let s = handle.status();
        s.stored + s.dropped == 10
    })
    .await;
    settle().await;
    let status = handle.status();
    assert_eq!(status.stored + status.dropped, 10, "{status:?}");
    assert_eq!(sink.stored().len() as u64, status.stored);
    assert_eq!(values(&sink.stored(), "v")[0], 0.0);
    handle.shutdown().await;
}
