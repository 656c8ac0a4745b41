//! The subscription loop of one MQTT connection.
//!
//! [`MqttConsumer::spawn`] starts two tasks:
//!
//! - the **poll task** owns the MQTT event loop and polls it without pause,
//!   so keep-alive pings and acknowledgements keep flowing while deliveries
//!   wait on backpressure. On every connection it subscribes to the
//!   assets' filters; it hands each message to the delivery task and never
//!   waits for it. When the connection fails it records the error and
//!   reconnects after an exponential backoff with jitter (between
//!   `reconnect_min_ms` and `reconnect_max_ms`), resolving the password
//!   and reading TLS files anew for every attempt. A broker that cannot
//!   be reached at start is retried the same way.
//! - the **delivery task** takes messages in order, maps each to a point
//!   for every subscription whose filter matches its topic, and hands the
//!   points to the [`MessageSink`]. `Busy` and `Unavailable` are retried
//!   (after `retry_after`, or with backoff) until accepted or shut down; a
//!   QoS 1 message is acknowledged only after every matching asset's
//!   delivery returned `Ok` (`Stored`, `Duplicate`) or was `Rejected`.
//!   Messages that do not fit their mapping are not data: they are counted
//!   ([`MessageSink::mapping_failed`]), logged once per asset and kind with
//!   a sample, and acknowledged.
//!
//! **Bounds.** Unacknowledged QoS 1 messages are bounded by the broker's
//! in-flight window: MQTT 5 brokers honour the `inflight` receive maximum;
//! MQTT 3.1.1 brokers use their own limit (Mosquitto's
//! `max_inflight_messages`, 20 by default). At most `inflight` QoS 0
//! messages wait for delivery; more are dropped and counted (QoS 0 may be
//! lost by definition).
//!
//! **Acknowledgements and reconnects.** An acknowledgement is only sent on
//! the connection the message arrived on. Messages received before a
//! connection was lost are still delivered, but not acknowledged: with a
//! persistent session the broker sends them again (with the DUP flag), and
//! the sink sees the same [`DeliveryKey`] content again.
//!
//! **Subscriptions.** Equal filters and filters covered by a broader one
//! of the same connection (`a/+` under `a/#`) are subscribed once, with the
//! highest QoS asked for, so the broker sends such messages once; each
//! message is still routed to every asset whose own filter matches. With
//! MQTT 3.1.1, a reconnect that resumes the session does not subscribe
//! again once the broker has confirmed the subscriptions (subscribing again
//! would make it resend retained messages); MQTT 5 subscribes on every
//! connection and asks for retained messages only for new subscriptions.
//!
//! A subscription the broker refuses is reported in `last_error` (and
//! `subscribed` stays false); it is asked for again on the next connection.
//!
//! **Shutdown.** [`MqttHandle::shutdown`] stops the delivery task (a
//! delivery in progress completes; nothing not yet delivered is
//! acknowledged), then sends DISCONNECT after the acknowledgements already
//! queued, and ends the poll task.

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rand::Rng;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vega_core::{Clock, Id, Point, SystemClock};

use crate::config::{MqttConnection, MqttSource, Qos};
use crate::session::{self, Client, EventLoop, Message, SessionEvent};
use crate::tls;
use crate::topic;

/// First delay after a sink answers `Unavailable`.
const SINK_RETRY_MIN: Duration = Duration::from_millis(100);
/// Largest delay between attempts when a sink stays unavailable or busy.
const SINK_RETRY_MAX: Duration = Duration::from_secs(30);
/// Shortest wait after `Busy`, whatever `retry_after` says.
const BUSY_RETRY_MIN: Duration = Duration::from_millis(10);
/// How long shutdown waits for a delivery in progress.
const SHUTDOWN_DELIVERY_GRACE: Duration = Duration::from_secs(30);
/// How long shutdown waits for the DISCONNECT to be written.
const SHUTDOWN_DISCONNECT_GRACE: Duration = Duration::from_secs(5);
/// Pause before trying again to queue an acknowledgement.
const ACK_RETRY: Duration = Duration::from_millis(5);

/// Where the consumer delivers points: Vega's ingest path (write-ahead log
/// and buffer) in production, a recorder in tests.
#[async_trait]
pub trait MessageSink: Send + Sync + 'static {
    /// Makes `points` durable for `asset`; returns Ok only once durable.
    /// The consumer acknowledges (QoS 1) only after Ok.
    async fn deliver(
        &self,
        asset: &Id,
        points: Vec<Point>,
        key: DeliveryKey,
    ) -> Result<Delivered, SinkError>;

    /// A payload that does not match its asset's mapping (for metrics);
    /// `kind` is [`crate::MappingError::kind`].
    fn mapping_failed(&self, asset: &Id, kind: &'static str);
}

/// Identifies a delivery so the sink can recognise a message it already
/// stored (MQTT QoS 1 is at least once).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeliveryKey {
    /// Stable hash of (client id, packet id): equal for a redelivery of the
    /// same unacknowledged message in the same session (packet ids are
    /// reused after acknowledgement; QoS 0 messages all have packet id 0).
    pub session: u64,
    /// Stable hash of (topic, payload).
    pub content: u64,
    /// The DUP flag: the broker may have sent this message before.
    pub redelivery: bool,
}

/// What the sink did with a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// The points are durable.
    Stored,
    /// The sink already had them; nothing was stored.
    Duplicate,
}

/// Why the sink did not take a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkError {
    /// Buffer full: retry later, do not acknowledge.
    Busy { retry_after: Duration },
    /// E.g. disk full: retry with backoff, do not acknowledge.
    Unavailable(String),
    /// Can never be stored (e.g. a type conflict): count, log, acknowledge
    /// so the broker drops it.
    Rejected(String),
}

impl fmt::Display for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SinkError::Busy { retry_after } => write!(f, "busy (retry after {retry_after:?})"),
            SinkError::Unavailable(m) => write!(f, "unavailable: {m}"),
            SinkError::Rejected(m) => write!(f, "rejected: {m}"),
        }
    }
}

impl std::error::Error for SinkError {}

/// One stream asset fed by the connection.
#[derive(Debug, Clone)]
pub struct Subscription {
    /// The asset's id, passed to the sink.
    pub asset: Id,
    /// The asset's name (`namespace.name`), for logs.
    pub asset_name: String,
    /// What to subscribe to and how messages become points.
    pub source: MqttSource,
}

/// The state of the connection to the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    /// Connecting (or about to).
    Connecting,
    /// Connected; the broker accepted the session.
    Connected,
    /// Not connected: waiting before the next attempt, or shut down.
    Disconnected,
}

impl ConnectionState {
    /// The state's name for the API and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionState::Connecting => "connecting",
            ConnectionState::Connected => "connected",
            ConnectionState::Disconnected => "disconnected",
        }
    }
}

/// A snapshot of a connection's state and counters.
#[derive(Debug, Clone, PartialEq)]
pub struct MqttStatus {
    /// The connection's name.
    pub connection: String,
    /// Connected or not.
    pub state: ConnectionState,
    /// The broker confirmed every subscription on the current connection
    /// (or resumed a session that has them).
    pub subscribed: bool,
    /// Connection attempts after the first one (each retry after a failed
    /// attempt or a lost connection).
    pub reconnects: u64,
    /// The latest connection error (kept after reconnecting).
    pub last_error: Option<String>,
    /// Messages received.
    pub received: u64,
    /// Deliveries the sink stored (one per message and matching asset).
    pub stored: u64,
    /// Deliveries the sink already had.
    pub duplicates: u64,
    /// Messages that did not fit an asset's mapping (per asset).
    pub mapping_errors: u64,
    /// Deliveries the sink rejected for good.
    pub rejected: u64,
    /// QoS 0 messages dropped because the delivery queue was full.
    pub dropped: u64,
    /// When the current connection was established.
    pub connected_since: Option<DateTime<Utc>>,
}

/// What may hold connection attempts back (the connection's circuit
/// breaker): asked before every attempt to reach the broker, told how it
/// went.
pub trait ConnectGuard: Send + Sync {
    /// `Ok`: try now, and report the outcome on the returned attempt.
    /// `Err((wait, reason))`: do not try for `wait`; `reason` becomes the
    /// connection's last error.
    fn admit(&self) -> Result<Box<dyn ConnectAttempt>, (Duration, String)>;
}

/// One admitted connection attempt. Dropped without an outcome (shut down,
/// or the connection settings could not be read), it counts as neither.
pub trait ConnectAttempt: Send {
    fn connected(self: Box<Self>);
    fn failed(self: Box<Self>);
}

/// Starts consumers.
pub struct MqttConsumer;

impl MqttConsumer {
    /// Starts consuming `subs` over one connection to the broker of
    /// `conn`, delivering to `sink`. `connection_name` names the status and
    /// logs and gives the default client id (`vega-<name>`). Returns at
    /// once; connecting happens in the background (a broker that cannot be
    /// reached is retried until shutdown). Must be called within a Tokio
    /// runtime.
    pub fn spawn(
        connection_name: &str,
        conn: MqttConnection,
        subs: Vec<Subscription>,
        sink: Arc<dyn MessageSink>,
    ) -> MqttHandle {
        Self::spawn_with_clock(connection_name, conn, subs, sink, Arc::new(SystemClock))
    }

    /// Like [`spawn`](Self::spawn), with the clock giving receive times (the
    /// time of points without a timestamp member) and `connected_since`.
    pub fn spawn_with_clock(
        connection_name: &str,
        conn: MqttConnection,
        subs: Vec<Subscription>,
        sink: Arc<dyn MessageSink>,
        clock: Arc<dyn Clock>,
    ) -> MqttHandle {
        Self::spawn_inner(connection_name, conn, subs, sink, clock, None)
    }

    /// Like [`spawn`](Self::spawn), with every attempt to reach the broker
    /// passing `guard` first (the connection's circuit breaker).
    pub fn spawn_guarded(
        connection_name: &str,
        conn: MqttConnection,
        subs: Vec<Subscription>,
        sink: Arc<dyn MessageSink>,
        guard: Arc<dyn ConnectGuard>,
    ) -> MqttHandle {
        Self::spawn_inner(
            connection_name,
            conn,
            subs,
            sink,
            Arc::new(SystemClock),
            Some(guard),
        )
    }

    fn spawn_inner(
        connection_name: &str,
        conn: MqttConnection,
        subs: Vec<Subscription>,
        sink: Arc<dyn MessageSink>,
        clock: Arc<dyn Clock>,
        guard: Option<Arc<dyn ConnectGuard>>,
    ) -> MqttHandle {
        let client_id = conn.effective_client_id(connection_name);
        let (client, eventloop) = session::new_session(&conn, &client_id);
        let shared = Arc::new(Shared {
            status: Mutex::new(MqttStatus {
                connection: connection_name.to_string(),
                state: ConnectionState::Connecting,
                subscribed: false,
                reconnects: 0,
                last_error: None,
                received: 0,
                stored: 0,
                duplicates: 0,
                mapping_errors: 0,
                rejected: 0,
                dropped: 0,
                connected_since: None,
            }),
            epoch: Mutex::new(0),
            queued_qos0: AtomicUsize::new(0),
        });
        let stop_delivery = CancellationToken::new();
        let stop_poll = CancellationToken::new();
        let (tx, rx) = mpsc::unbounded_channel();
        let subs = Arc::new(subs);

        let poller = Poller {
            name: connection_name.to_string(),
            client_id: client_id.clone(),
            filters: subscribe_set(&subs),
            conn,
            client: client.clone(),
            shared: shared.clone(),
            clock: clock.clone(),
            tx,
            stop: stop_poll.clone(),
            guard,
        };
        let poll_task = tokio::spawn(poller.run(eventloop));

        let deliverer = Deliverer {
            name: connection_name.to_string(),
            client_id,
            subs,
            sink,
            client: client.clone(),
            shared: shared.clone(),
            stop: stop_delivery.clone(),
            warned: HashSet::new(),
        };
        let delivery_task = tokio::spawn(deliverer.run(rx));

        MqttHandle {
            shared,
            client,
            stop_delivery,
            stop_poll,
            poll_task,
            delivery_task,
        }
    }
}

/// A running consumer: its status, and the way to stop it.
pub struct MqttHandle {
    shared: Arc<Shared>,
    client: Client,
    stop_delivery: CancellationToken,
    stop_poll: CancellationToken,
    poll_task: JoinHandle<()>,
    delivery_task: JoinHandle<()>,
}

impl fmt::Debug for MqttHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MqttHandle")
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

impl MqttHandle {
    /// The connection's state and counters now.
    pub fn status(&self) -> MqttStatus {
        self.shared.status().clone()
    }

    /// Stops consuming: the delivery in progress (if any) completes,
    /// nothing not yet delivered is acknowledged (the broker sends it
    /// again to the next session), acknowledgements already queued are
    /// written, and the client disconnects. Bounded in time.
    pub async fn shutdown(mut self) {
        self.stop_delivery.cancel();
        if tokio::time::timeout(SHUTDOWN_DELIVERY_GRACE, &mut self.delivery_task)
            .await
            .is_err()
        {
            tracing::warn!(
                connection = %self.shared.status().connection,
                "a delivery did not finish within {SHUTDOWN_DELIVERY_GRACE:?} of shutdown; abandoning it"
            );
            self.delivery_task.abort();
        }
        // The poll task ends once the DISCONNECT is written, or at once
        // when not connected.
        self.stop_poll.cancel();
        if self.shared.status().state == ConnectionState::Connected {
            self.client.disconnect(SHUTDOWN_DISCONNECT_GRACE).await;
        }
        if tokio::time::timeout(SHUTDOWN_DISCONNECT_GRACE, &mut self.poll_task)
            .await
            .is_err()
        {
            self.poll_task.abort();
        }
        let mut status = self.shared.status();
        status.state = ConnectionState::Disconnected;
        status.subscribed = false;
        status.connected_since = None;
    }
}

impl Drop for MqttHandle {
    fn drop(&mut self) {
        // Dropped without shutdown: stop both tasks (nothing more is
        // acknowledged).
        self.stop_delivery.cancel();
        self.stop_poll.cancel();
        self.poll_task.abort();
        self.delivery_task.abort();
    }
}

/// State both tasks and the handle share.
struct Shared {
    status: Mutex<MqttStatus>,
    /// The connection epoch: changes whenever a connection is made or
    /// lost. Held while queueing an acknowledgement so none slips onto a
    /// later connection.
    epoch: Mutex<u64>,
    /// QoS 0 messages waiting for the delivery task.
    queued_qos0: AtomicUsize,
}

impl Shared {
    fn status(&self) -> MutexGuard<'_, MqttStatus> {
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn epoch(&self) -> MutexGuard<'_, u64> {
        self.epoch.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A message on its way from the poll task to the delivery task.
struct Inbound {
    message: Box<Message>,
    epoch: u64,
    receive_time_ns: i64,
}

/// The filters to subscribe to: one per distinct filter, without filters
/// covered by a broader one, each with the highest QoS asked for among the
/// filters it covers.
fn subscribe_set(subs: &[Subscription]) -> Vec<(String, Qos)> {
    let mut set: Vec<(String, Qos)> = Vec::new();
    for sub in subs {
        let filter = sub.source.topic.as_str();
        if set.iter().any(|(f, _)| f == filter) {
            continue;
        }
        set.push((filter.to_string(), sub.source.qos));
    }
    // Drop filters covered by another (keep the first of equal ones).
    let kept: Vec<(String, Qos)> = set
        .iter()
        .filter(|(f, _)| !set.iter().any(|(g, _)| g != f && topic::covers(g, f)))
        .cloned()
        .collect();
    kept.into_iter()
        .map(|(filter, _)| {
            let qos = subs
                .iter()
                .filter(|s| topic::covers(&filter, s.source.topic.as_str()))
                .map(|s| s.source.qos)
                .max_by_key(|q| matches!(q, Qos::AtLeastOnce))
                .unwrap_or(Qos::AtLeastOnce);
            (filter, qos)
        })
        .collect()
}

struct Poller {
    name: String,
    client_id: String,
    filters: Vec<(String, Qos)>,
    conn: MqttConnection,
    client: Client,
    shared: Arc<Shared>,
    clock: Arc<dyn Clock>,
    tx: mpsc::UnboundedSender<Inbound>,
    stop: CancellationToken,
    guard: Option<Arc<dyn ConnectGuard>>,
}

impl Poller {
    async fn run(self, mut eventloop: EventLoop) {
        let broker = format!("{}:{}", self.conn.host, self.conn.port);
        let mut attempt: u32 = 0;
        let mut first_attempt = true;
        let mut must_prepare = true;
        let mut connected = false;
        let mut epoch: u64 = 0;
        // The broker confirmed every subscription in this process.
        let mut subscribed = false;
        let mut subscriber: Option<JoinHandle<()>> = None;
        // The guard's admission of the attempt in progress.
        let mut admitted: Option<Box<dyn ConnectAttempt>> = None;
        loop {
            if must_prepare {
                if self.stop.is_cancelled() {
                    break;
                }
                if let Some(guard) = &self.guard {
                    match guard.admit() {
                        Ok(attempt) => admitted = Some(attempt),
                        Err((wait, reason)) => {
                            {
                                let mut status = self.shared.status();
                                status.state = ConnectionState::Disconnected;
                                status.last_error = Some(reason.clone());
                            }
                            tracing::debug!(connection = %self.name, %reason, "MQTT connection attempt held back");
                            let wait = wait.clamp(self.conn.reconnect_min, self.conn.reconnect_max);
                            tokio::select! {
                                _ = self.stop.cancelled() => break,
                                _ = tokio::time::sleep(wait) => {}
                            }
                            continue;
                        }
                    }
                }
                {
                    let mut status = self.shared.status();
                    if !first_attempt {
                        status.reconnects += 1;
                    }
                    status.state = ConnectionState::Connecting;
                }
                first_attempt = false;
                match self.connect_settings() {
                    Ok((login, tls)) => {
                        eventloop.prepare(login, tls);
                        must_prepare = false;
                    }
                    Err(e) => {
                        self.failed(&broker, &e, attempt, false);
                        if !self.backoff(&mut attempt).await {
                            break;
                        }
                        continue;
                    }
                }
            }

            let event = tokio::select! {
                // While connected, shutdown goes through DISCONNECT (which
                // also flushes the acknowledgements queued before it).
                _ = self.stop.cancelled(), if !connected => break,
                event = eventloop.poll() => event,
            };
            match event {
                Ok(SessionEvent::Connected { session_present }) => {
                    if self.stop.is_cancelled() {
                        // Shut down while connecting: leave without a
                        // session to tend.
                        break;
                    }
                    {
                        let mut guard = self.shared.epoch();
                        *guard += 1;
                        epoch = *guard;
                    }
                    connected = true;
                    attempt = 0;
                    if let Some(admitted) = admitted.take() {
                        admitted.connected();
                    }
                    {
                        let mut status = self.shared.status();
                        status.state = ConnectionState::Connected;
                        status.connected_since = Some(self.clock.now());
                    }
                    tracing::info!(
                        connection = %self.name,
                        client_id = %self.client_id,
                        broker = %broker,
                        session_present,
                        "connected to the MQTT broker"
                    );
                    let resumed = session_present
                        && subscribed
                        && self.conn.protocol == crate::config::Protocol::V311;
                    self.shared.status().subscribed = resumed || self.filters.is_empty();
                    if !resumed && !self.filters.is_empty() {
                        if let Some(previous) = subscriber.take() {
                            previous.abort();
                        }
                        let client = self.client.clone();
                        let filters = self.filters.clone();
                        let name = self.name.clone();
                        subscriber = Some(tokio::spawn(async move {
                            if let Err(e) = client.subscribe(&filters).await {
                                tracing::warn!(connection = %name, "could not queue the subscription: {e}");
                            }
                        }));
                    }
                }
                Ok(SessionEvent::Message(message)) => self.forward(message, epoch),
                Ok(SessionEvent::SubAck(granted)) => {
                    subscribed = self.check_suback(&granted);
                    self.shared.status().subscribed = subscribed;
                }
                Ok(SessionEvent::DisconnectSent) => {
                    if self.stop.is_cancelled() {
                        break;
                    }
                }
                Ok(SessionEvent::Other) => {}
                Err(e) => {
                    {
                        // Under the epoch lock: no acknowledgement queued
                        // for the lost connection survives to the next.
                        let mut guard = self.shared.epoch();
                        *guard += 1;
                        eventloop.clean();
                    }
                    let was_connected = connected;
                    connected = false;
                    must_prepare = true;
                    if let Some(admitted) = admitted.take() {
                        admitted.failed();
                    }
                    if self.stop.is_cancelled() {
                        break;
                    }
                    self.failed(&broker, &e, attempt, was_connected);
                    if !self.backoff(&mut attempt).await {
                        break;
                    }
                }
            }
        }
        if let Some(task) = subscriber {
            task.abort();
        }
        let mut status = self.shared.status();
        status.state = ConnectionState::Disconnected;
        status.subscribed = false;
        status.connected_since = None;
    }

    /// Resolves the password and builds the TLS configuration for the next
    /// attempt.
    fn connect_settings(&self) -> Result<ConnectSettings, String> {
        let login = match &self.conn.username {
            None => None,
            Some(user) => {
                let password = match &self.conn.password {
                    None => String::new(),
                    Some(reference) => reference
                        .resolve()
                        .map_err(|e| format!("password: {e}"))?
                        .expose()
                        .to_string(),
                };
                Some((user.clone(), password))
            }
        };
        let tls = match &self.conn.tls {
            None => None,
            Some(params) => Some(rumqttc::TlsConfiguration::Rustls(tls::client_config(
                params,
            )?)),
        };
        Ok((login, tls))
    }

    fn failed(&self, broker: &str, error: &str, attempt: u32, was_connected: bool) {
        let message = if was_connected {
            format!("connection to {broker} lost: {error}")
        } else {
            format!("connecting to {broker}: {error}")
        };
        {
            let mut status = self.shared.status();
            status.state = ConnectionState::Disconnected;
            status.subscribed = false;
            status.connected_since = None;
            status.last_error = Some(message.clone());
        }
        // The first failure of a streak is a warning; repeats are quieter.
        if attempt == 0 {
            tracing::warn!(connection = %self.name, "MQTT {message}; retrying");
        } else {
            tracing::debug!(connection = %self.name, attempt, "MQTT {message}; retrying");
        }
    }

    /// Waits before the next attempt; `false` when shut down meanwhile.
    async fn backoff(&self, attempt: &mut u32) -> bool {
        let delay = backoff_delay(*attempt, self.conn.reconnect_min, self.conn.reconnect_max);
        *attempt = attempt.saturating_add(1);
        tokio::select! {
            _ = self.stop.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }

    fn forward(&self, message: Box<Message>, epoch: u64) {
        let receive_time_ns = self.clock.now().timestamp_nanos_opt().unwrap_or(0);
        self.shared.status().received += 1;
        if message.qos == 0 {
            let limit = usize::from(self.conn.inflight);
            if self.shared.queued_qos0.load(Ordering::Acquire) >= limit {
                self.shared.status().dropped += 1;
                tracing::debug!(connection = %self.name, topic = %message.topic, "delivery queue full: QoS 0 message dropped");
                return;
            }
            self.shared.queued_qos0.fetch_add(1, Ordering::AcqRel);
        }
        // Fails only when the delivery task has ended (shutdown): the
        // message is then not acknowledged, as it should not be.
        let _ = self.tx.send(Inbound {
            message,
            epoch,
            receive_time_ns,
        });
    }

    /// Logs refused subscriptions; `true` when all were granted.
    fn check_suback(&self, granted: &[Option<u8>]) -> bool {
        let mut all = granted.len() == self.filters.len();
        for ((filter, qos), code) in self.filters.iter().zip(granted) {
            match code {
                None => {
                    all = false;
                    let message = format!("the broker refused the subscription to '{filter}'");
                    tracing::warn!(connection = %self.name, "MQTT {message}");
                    self.shared.status().last_error = Some(message);
                }
                Some(0) if *qos == Qos::AtLeastOnce => {
                    tracing::warn!(
                        connection = %self.name,
                        "the broker granted QoS 0 for '{filter}' instead of 1: messages may be lost"
                    );
                }
                Some(_) => {}
            }
        }
        all
    }
}

/// Credentials (user, password) and TLS configuration of one attempt.
type ConnectSettings = (Option<(String, String)>, Option<rumqttc::TlsConfiguration>);

/// Exponential backoff with jitter: the bound doubles from `min` per
/// attempt up to `max`; the delay is random between half the bound and the
/// bound, and never below `min`.
fn backoff_delay(attempt: u32, min: Duration, max: Duration) -> Duration {
    let factor = 2u32.saturating_pow(attempt.min(31));
    let bound = min.saturating_mul(factor).min(max).max(min);
    let low = (bound / 2).max(min);
    if low >= bound {
        return bound;
    }
    let nanos = rand::thread_rng().gen_range(low.as_nanos()..=bound.as_nanos());
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

struct Deliverer {
    name: String,
    client_id: String,
    subs: Arc<Vec<Subscription>>,
    sink: Arc<dyn MessageSink>,
    client: Client,
    shared: Arc<Shared>,
    stop: CancellationToken,
    /// (subscription index, mapping error kind) already logged.
    warned: HashSet<(usize, &'static str)>,
}

/// Messages delivered at once. Their deliveries run concurrently (the
/// write-ahead log commits them together), and their acknowledgements are
/// still sent in the order the messages arrived, as MQTT requires.
const DELIVERY_WINDOW: usize = 256;

/// What a delivery needs, shared by the concurrent deliveries.
#[derive(Clone)]
struct DeliveryContext {
    name: Arc<str>,
    subs: Arc<Vec<Subscription>>,
    sink: Arc<dyn MessageSink>,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl Deliverer {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Inbound>) {
        use futures::stream::{FuturesOrdered, StreamExt};
        let ctx = DeliveryContext {
            name: Arc::from(self.name.as_str()),
            subs: self.subs.clone(),
            sink: self.sink.clone(),
            shared: self.shared.clone(),
            stop: self.stop.clone(),
        };
        let mut in_flight = FuturesOrdered::new();
        let mut open = true;
        loop {
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => return,
                done = in_flight.next(), if !in_flight.is_empty() => {
                    let Some((inbound, delivered)): Option<(Inbound, bool)> = done else { continue };
                    if !delivered {
                        return;
                    }
                    if inbound.message.qos > 0 && !self.ack(&inbound).await {
                        return;
                    }
                }
                inbound = rx.recv(), if open && in_flight.len() < DELIVERY_WINDOW => {
                    let Some(inbound) = inbound else {
                        open = false;
                        if in_flight.is_empty() {
                            return;
                        }
                        continue;
                    };
                    if inbound.message.qos == 0 {
                        self.shared.queued_qos0.fetch_sub(1, Ordering::AcqRel);
                    }
                    let (deliveries, key) = self.route(&inbound);
                    let ctx = ctx.clone();
                    in_flight.push_back(async move {
                        for (index, point) in deliveries {
                            if !ctx.deliver(index, point, key).await {
                                return (inbound, false);
                            }
                        }
                        (inbound, true)
                    });
                }
                else => return,
            }
        }
    }

    /// Maps a message for every matching asset (counting and logging, once
    /// per kind, what does not fit) and gives its delivery key.
    fn route(&mut self, inbound: &Inbound) -> (Vec<(usize, Point)>, DeliveryKey) {
        let message = &inbound.message;
        let payload = message.payload();
        let mut deliveries = Vec::new();
        let mut routed = false;
        for (index, sub) in self.subs.iter().enumerate() {
            if !sub.source.topic.matches(&message.topic) {
                continue;
            }
            routed = true;
            match sub
                .source
                .map(&message.topic, payload, inbound.receive_time_ns)
            {
                Ok(point) => deliveries.push((index, point)),
                Err(e) => {
                    self.shared.status().mapping_errors += 1;
                    self.sink.mapping_failed(&sub.asset, e.kind());
                    if self.warned.insert((index, e.kind())) {
                        tracing::warn!(
                            connection = %self.name,
                            asset = %sub.asset_name,
                            topic = %message.topic,
                            kind = e.kind(),
                            "MQTT message does not fit the asset's mapping (further ones of this kind are counted, not logged): {}",
                            e.message()
                        );
                    }
                }
            }
        }
        if !routed {
            tracing::debug!(connection = %self.name, topic = %message.topic, "MQTT message matches no subscription; ignored");
        }
        let key = DeliveryKey {
            session: session_hash(&self.client_id, message.pkid),
            content: content_hash(&message.topic, payload),
            redelivery: message.dup,
        };
        (deliveries, key)
    }
    /// Queues the acknowledgement if the message's connection is still the
    /// current one; `false` when shut down first.
    async fn ack(&self, inbound: &Inbound) -> bool {
        loop {
            {
                let epoch = self.shared.epoch();
                if *epoch != inbound.epoch {
                    tracing::debug!(
                        connection = %self.name,
                        topic = %inbound.message.topic,
                        "connection changed since the message arrived; not acknowledging (the broker sends it again)"
                    );
                    return true;
                }
                if self.client.try_ack(&inbound.message) {
                    return true;
                }
            }
            tokio::select! {
                _ = self.stop.cancelled() => return false,
                _ = tokio::time::sleep(ACK_RETRY) => {}
            }
        }
    }
}

impl DeliveryContext {
    /// Delivers to one asset, retrying until the sink answers for good;
    /// `false` when shut down first.
    async fn deliver(&self, index: usize, point: Point, key: DeliveryKey) -> bool {
        let sub = &self.subs[index];
        let mut attempt: u32 = 0;
        loop {
            let result = self
                .sink
                .deliver(&sub.asset, vec![point.clone()], key)
                .await;
            let delay = match result {
                Ok(Delivered::Stored) => {
                    self.shared.status().stored += 1;
                    return true;
                }
                Ok(Delivered::Duplicate) => {
                    self.shared.status().duplicates += 1;
                    return true;
                }
                Err(SinkError::Rejected(reason)) => {
                    self.shared.status().rejected += 1;
                    tracing::warn!(
                        connection = %self.name,
                        asset = %sub.asset_name,
                        "MQTT message rejected by the ingest path; acknowledged and dropped: {reason}"
                    );
                    return true;
                }
                Err(SinkError::Busy { retry_after }) => {
                    tracing::debug!(connection = %self.name, asset = %sub.asset_name, "ingest busy; retrying in {retry_after:?}");
                    retry_after.clamp(BUSY_RETRY_MIN, SINK_RETRY_MAX)
                }
                Err(SinkError::Unavailable(reason)) => {
                    let delay = backoff_delay(attempt, SINK_RETRY_MIN, SINK_RETRY_MAX);
                    if attempt == 0 {
                        tracing::warn!(connection = %self.name, asset = %sub.asset_name, "ingest unavailable, retrying (the message stays unacknowledged): {reason}");
                    } else {
                        tracing::debug!(connection = %self.name, asset = %sub.asset_name, attempt, "ingest still unavailable: {reason}");
                    }
                    delay
                }
            };
            attempt = attempt.saturating_add(1);
            tokio::select! {
                _ = self.stop.cancelled() => return false,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }
}

/// FNV-1a, 64 bits: stable across builds and platforms, unlike the
/// standard library's hasher.
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// The stable hash of (client id, packet id).
pub fn session_hash(client_id: &str, packet_id: u16) -> u64 {
    let mut h = Fnv::new();
    h.write(&(client_id.len() as u64).to_le_bytes());
    h.write(client_id.as_bytes());
    h.write(&packet_id.to_le_bytes());
    h.0
}

/// The stable hash of (topic, payload).
pub fn content_hash(topic: &str, payload: &[u8]) -> u64 {
    let mut h = Fnv::new();
    h.write(&(topic.len() as u64).to_le_bytes());
    h.write(topic.as_bytes());
    h.write(payload);
    h.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sub(topic: &str, qos: u8) -> Subscription {
        Subscription {
            asset: Id::from_trusted(format!("ast_{topic}")),
            asset_name: format!("test.{}", topic.len()),
            source: MqttSource::parse(&json!({"topic": topic, "qos": qos})).unwrap(),
        }
    }

    #[test]
    fn covered_and_equal_filters_are_subscribed_once() {
        let set = subscribe_set(&[
            sub("a/+", 1),
            sub("a/#", 0),
            sub("b/c", 0),
            sub("b/c", 1),
            sub("x/+/z", 0),
            sub("x/y/+", 0),
        ]);
        assert_eq!(
            set,
            vec![
                ("a/#".to_string(), Qos::AtLeastOnce),
                ("b/c".to_string(), Qos::AtLeastOnce),
                ("x/+/z".to_string(), Qos::AtMostOnce),
                ("x/y/+".to_string(), Qos::AtMostOnce),
            ]
        );
        assert!(subscribe_set(&[]).is_empty());
    }

    #[test]
    fn backoff_grows_with_jitter_within_bounds() {
        let min = Duration::from_millis(100);
        let max = Duration::from_secs(30);
        for attempt in 0..40 {
            let d = backoff_delay(attempt, min, max);
            assert!(d >= min && d <= max, "{attempt}: {d:?}");
        }
        assert_eq!(backoff_delay(0, min, max), min);
        let d = backoff_delay(3, min, max);
        assert!(d >= Duration::from_millis(400) && d <= Duration::from_millis(800));
        let d = backoff_delay(30, min, max);
        assert!(d >= Duration::from_secs(15));
        assert_eq!(backoff_delay(5, min, min), min);
    }

    #[test]
    fn hashes_are_stable_and_distinguish_their_inputs() {
        // Fixed values: these must not change between releases.
        assert_eq!(session_hash("vega-a", 1), session_hash("vega-a", 1));
        assert_ne!(session_hash("vega-a", 1), session_hash("vega-a", 2));
        assert_ne!(session_hash("vega-a", 1), session_hash("vega-b", 1));
        assert_ne!(content_hash("a", b"bc"), content_hash("ab", b"c"));
        assert_eq!(content_hash("t", b"p"), content_hash("t", b"p"));
        let mut h = Fnv::new();
        h.write(b"a");
        assert_eq!(h.0, 0xaf63_dc4c_8601_ec8c);
    }
}
