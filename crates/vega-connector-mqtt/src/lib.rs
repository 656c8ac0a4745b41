//! MQTT subscriptions feeding stream assets.
//!
//! A connection ([`MqttConnection`]) names a broker; each stream asset
//! subscribes with a topic filter and says how a message becomes a point
//! ([`MqttSource`], [`mapping`]). [`MqttConsumer::spawn`] runs one client per
//! connection: it subscribes to every asset's filter, routes each message to
//! the assets whose filters match it, hands the points to a
//! [`MessageSink`] and acknowledges a QoS 1 message only after the sink has
//! made it durable, so a crash or a full buffer never loses an
//! acknowledged message. MQTT 3.1.1 and 5, persistent sessions, TLS and
//! password authentication (through secret references) are supported.
//!
//! Modules: [`config`] (parameters), [`topic`] (filter matching),
//! [`mapping`] (message → point), [`consumer`] (the subscription loop).

pub mod config;
pub mod connector;
pub mod consumer;
pub mod mapping;
mod session;
mod tls;
pub mod topic;

pub use config::{
    MqttConnection, MqttSource, PayloadFormat, Protocol, Qos, TimestampFormat, TimestampSpec,
    TlsParams, TopicPattern,
};
pub use connector::MqttConnector;
pub use consumer::{
    ConnectAttempt, ConnectGuard, ConnectionState, Delivered, DeliveryKey, MessageSink,
    MqttConsumer, MqttHandle, MqttStatus, SinkError, Subscription,
};
pub use mapping::{MappingError, MappingErrorKind};
pub use topic::TopicFilter;
