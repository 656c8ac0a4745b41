//! One MQTT client over either protocol version: rumqttc's MQTT 3.1.1 and
//! MQTT 5 clients behind one small interface, so the consumer's loops do
//! not care which one runs. Acknowledgements are manual.

use std::time::Duration;

use rumqttc::v5;
use rumqttc::{TlsConfiguration, Transport};

use crate::config::{MqttConnection, Protocol, Qos};

/// The largest packet accepted from the broker (1 MiB). With MQTT 5 the
/// broker is told and drops larger messages; with 3.1.1 a larger message
/// breaks the connection.
pub(crate) const MAX_PACKET_BYTES: usize = 1024 * 1024;
/// How long connecting (TCP, TLS, CONNECT/CONNACK) may take.
const CONNECT_TIMEOUT_SECS: u64 = 10;

/// Sends requests (acknowledgements, subscriptions, disconnect) to the
/// event loop.
#[derive(Clone)]
pub(crate) enum Client {
    V4(rumqttc::AsyncClient),
    V5(v5::AsyncClient),
}

/// Talks to the broker; must be polled continuously.
pub(crate) enum EventLoop {
    V4(Box<rumqttc::EventLoop>),
    V5(Box<v5::EventLoop>),
}

/// What one poll of the event loop yielded.
pub(crate) enum SessionEvent {
    /// The broker accepted the connection.
    Connected { session_present: bool },
    /// A message.
    Message(Box<Message>),
    /// The answer to a subscription: per filter, the granted QoS or `None`
    /// when refused.
    SubAck(Vec<Option<u8>>),
    /// A DISCONNECT was written to the broker.
    DisconnectSent,
    /// Anything else (pings, acknowledgements going out, …).
    Other,
}

/// A received PUBLISH; what is needed to acknowledge it is kept inside.
pub(crate) struct Message {
    pub topic: String,
    pub qos: u8,
    pub pkid: u16,
    pub dup: bool,
    publish: Publish,
}

enum Publish {
    V4(rumqttc::Publish),
    V5(v5::mqttbytes::v5::Publish),
}

impl Message {
    /// The payload.
    pub fn payload(&self) -> &[u8] {
        match &self.publish {
            Publish::V4(p) => &p.payload,
            Publish::V5(p) => &p.payload,
        }
    }
}

/// Makes a client and its event loop for `conn` (not connected yet).
pub(crate) fn new_session(conn: &MqttConnection, client_id: &str) -> (Client, EventLoop) {
    // Room for an acknowledgement per unacknowledged message and a few
    // subscription requests.
    let capacity = usize::from(conn.inflight).max(64) * 2;
    match conn.protocol {
        Protocol::V311 => {
            let mut options = rumqttc::MqttOptions::new(client_id, conn.host.clone(), conn.port);
            options
                .set_keep_alive(conn.keep_alive)
                .set_clean_session(conn.clean_session)
                .set_manual_acks(true)
                .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES)
                .set_request_channel_capacity(capacity);
            let (client, mut eventloop) = rumqttc::AsyncClient::new(options, capacity);
            let mut network = rumqttc::NetworkOptions::new();
            network.set_connection_timeout(CONNECT_TIMEOUT_SECS);
            eventloop.set_network_options(network);
            (Client::V4(client), EventLoop::V4(Box::new(eventloop)))
        }
        Protocol::V5 => {
            let mut options = v5::MqttOptions::new(client_id, conn.host.clone(), conn.port);
            options
                .set_keep_alive(conn.keep_alive)
                .set_clean_start(conn.clean_session)
                .set_session_expiry_interval(conn.session_expiry_secs)
                .set_receive_maximum(Some(conn.inflight))
                .set_max_packet_size(Some(MAX_PACKET_BYTES as u32))
                .set_manual_acks(true)
                .set_connection_timeout(CONNECT_TIMEOUT_SECS)
                .set_request_channel_capacity(capacity);
            let (client, eventloop) = v5::AsyncClient::new(options, capacity);
            (Client::V5(client), EventLoop::V5(Box::new(eventloop)))
        }
    }
}

impl EventLoop {
    /// Sets what the next connection attempt uses: the credentials and the
    /// transport (TLS configuration or plain TCP).
    pub fn prepare(&mut self, login: Option<(String, String)>, tls: Option<TlsConfiguration>) {
        let transport = match tls {
            Some(config) => Transport::tls_with_config(config),
            None => Transport::tcp(),
        };
        match self {
            EventLoop::V4(el) => {
                if let Some((user, password)) = login {
                    el.mqtt_options.set_credentials(user, password);
                }
                el.mqtt_options.set_transport(transport);
            }
            EventLoop::V5(el) => {
                if let Some((user, password)) = login {
                    el.options.set_credentials(user, password);
                }
                el.options.set_transport(transport);
            }
        }
    }

    /// Connects if needed and yields the next event; an error means the
    /// connection is gone (polling again reconnects).
    pub async fn poll(&mut self) -> Result<SessionEvent, String> {
        match self {
            EventLoop::V4(el) => el.poll().await.map(v4_event).map_err(|e| v4_error(&e)),
            EventLoop::V5(el) => el.poll().await.map(v5_event).map_err(|e| v5_error(&e)),
        }
    }

    /// Forgets the connection and drops acknowledgements still queued for
    /// it (the broker redelivers those messages).
    pub fn clean(&mut self) {
        match self {
            EventLoop::V4(el) => el.clean(),
            EventLoop::V5(el) => el.clean(),
        }
    }
}

impl Client {
    /// Queues the acknowledgement of `message` without waiting; `false`
    /// when the request queue is full (or the event loop is gone).
    pub fn try_ack(&self, message: &Message) -> bool {
        match (self, &message.publish) {
            (Client::V4(c), Publish::V4(p)) => c.try_ack(p).is_ok(),
            (Client::V5(c), Publish::V5(p)) => c.try_ack(p).is_ok(),
            // A message always comes from its own client's event loop.
            _ => true,
        }
    }

    /// Subscribes to `filters` in one SUBSCRIBE (MQTT 5: retained messages
    /// only for subscriptions the session did not have yet).
    pub async fn subscribe(&self, filters: &[(String, Qos)]) -> Result<(), String> {
        match self {
            Client::V4(c) => c
                .subscribe_many(
                    filters
                        .iter()
                        .map(|(f, q)| rumqttc::SubscribeFilter::new(f.clone(), v4_qos(*q))),
                )
                .await
                .map_err(|e| e.to_string()),
            Client::V5(c) => c
                .subscribe_many(filters.iter().map(|(f, q)| {
                    let mut filter = v5::mqttbytes::v5::Filter::new(f.clone(), v5_qos(*q));
                    filter.retain_forward_rule =
                        v5::mqttbytes::v5::RetainForwardRule::OnNewSubscribe;
                    filter
                }))
                .await
                .map_err(|e| e.to_string()),
        }
    }

    /// Queues a DISCONNECT, waiting at most `timeout` for room.
    pub async fn disconnect(&self, timeout: Duration) -> bool {
        let send = async {
            match self {
                Client::V4(c) => c.disconnect().await.is_ok(),
                Client::V5(c) => c.disconnect().await.is_ok(),
            }
        };
        tokio::time::timeout(timeout, send).await.unwrap_or(false)
    }
}

fn v4_qos(q: Qos) -> rumqttc::QoS {
    match q {
        Qos::AtMostOnce => rumqttc::QoS::AtMostOnce,
        Qos::AtLeastOnce => rumqttc::QoS::AtLeastOnce,
    }
}

fn v5_qos(q: Qos) -> v5::mqttbytes::QoS {
    match q {
        Qos::AtMostOnce => v5::mqttbytes::QoS::AtMostOnce,
        Qos::AtLeastOnce => v5::mqttbytes::QoS::AtLeastOnce,
    }
}

fn v4_event(event: rumqttc::Event) -> SessionEvent {
    use rumqttc::{Event, Outgoing, Packet, SubscribeReasonCode};
    match event {
        Event::Incoming(Packet::ConnAck(ack)) => SessionEvent::Connected {
            session_present: ack.session_present,
        },
        Event::Incoming(Packet::Publish(p)) => SessionEvent::Message(Box::new(Message {
            topic: p.topic.clone(),
            qos: p.qos as u8,
            pkid: p.pkid,
            dup: p.dup,
            publish: Publish::V4(p),
        })),
        Event::Incoming(Packet::SubAck(ack)) => SessionEvent::SubAck(
            ack.return_codes
                .iter()
                .map(|c| match c {
                    SubscribeReasonCode::Success(q) => Some(*q as u8),
                    SubscribeReasonCode::Failure => None,
                })
                .collect(),
        ),
        Event::Outgoing(Outgoing::Disconnect) => SessionEvent::DisconnectSent,
        _ => SessionEvent::Other,
    }
}

fn v5_event(event: v5::Event) -> SessionEvent {
    use v5::mqttbytes::v5::{Packet, SubscribeReasonCode};
    use v5::Event;
    match event {
        Event::Incoming(Packet::ConnAck(ack)) => SessionEvent::Connected {
            session_present: ack.session_present,
        },
        Event::Incoming(Packet::Publish(p)) => SessionEvent::Message(Box::new(Message {
            // Topics are UTF-8 by the specification; a broker that breaks
            // it gets its bytes replaced rather than the connection dropped.
            topic: String::from_utf8_lossy(&p.topic).into_owned(),
            qos: p.qos as u8,
            pkid: p.pkid,
            dup: p.dup,
            publish: Publish::V5(p),
        })),
        Event::Incoming(Packet::SubAck(ack)) => SessionEvent::SubAck(
            ack.return_codes
                .iter()
                .map(|c| match c {
                    SubscribeReasonCode::Success(q) => Some(*q as u8),
                    _ => None,
                })
                .collect(),
        ),
        Event::Outgoing(rumqttc::Outgoing::Disconnect) => SessionEvent::DisconnectSent,
        _ => SessionEvent::Other,
    }
}

fn v4_error(e: &rumqttc::ConnectionError) -> String {
    use rumqttc::ConnectionError as E;
    match e {
        E::ConnectionRefused(code) => format!("the broker refused the connection: {code:?}"),
        E::NetworkTimeout => "timed out connecting".into(),
        E::FlushTimeout => "timed out writing to the broker".into(),
        E::Io(io) => format!("I/O: {io}"),
        E::Tls(tls) => format!("TLS: {tls}"),
        other => other.to_string(),
    }
}

fn v5_error(e: &v5::ConnectionError) -> String {
    use v5::ConnectionError as E;
    match e {
        E::ConnectionRefused(code) => format!("the broker refused the connection: {code:?}"),
        E::Timeout(_) => "timed out connecting".into(),
        E::Io(io) => format!("I/O: {io}"),
        E::Tls(tls) => format!("TLS: {tls}"),
        E::MqttState(state) => format!("MQTT: {state}"),
        other => other.to_string(),
    }
}
