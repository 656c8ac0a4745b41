//! The JSON parameters of the MQTT connector: the connection's broker
//! address, protocol, session, credentials, TLS and flow-control settings
//! ([`MqttConnection`]), and the asset's subscription with its mapping of
//! messages to points ([`MqttSource`]). Unknown fields are refused; every
//! error names its field (dotted for nested objects, e.g. `tls.ca_file`).
//!
//! Connection parameters:
//!
//! | field | default | meaning |
//! |---|---|---|
//! | `host` | required | broker host name or IP address |
//! | `port` | 1883, or 8883 with `tls` | broker port |
//! | `protocol` | `"3.1.1"` | `"3.1.1"` or `"5"` |
//! | `client_id` | `vega-<connection name>` | the MQTT client identifier |
//! | `clean_session` | `false` | `false`: a persistent session, so messages published while Vega is away are queued by the broker (MQTT 5: clean start off and a session expiry interval) |
//! | `session_expiry_secs` | 604800 (7 days) | MQTT 5 with a persistent session only; 4294967295 = never |
//! | `keep_alive_secs` | 30 | 5 to 65535 |
//! | `username` | none | |
//! | `password` | none | a secret reference, `{"env": …}` or `{"file": …}`; needs `username` |
//! | `tls` | off | `{ca_file?, client_cert_file?, client_key_file?}`; present = TLS on; without `ca_file` the system's roots are trusted |
//! | `inflight` | 64 | QoS 1 messages the broker may send before Vega acknowledges (MQTT 5 receive maximum; with 3.1.1 the broker's own limit applies) |
//! | `reconnect_min_ms`, `reconnect_max_ms` | 100, 30000 | bounds of the exponential reconnect backoff |
//!
//! Source parameters: `topic` (a filter with `+` and `#`), `qos` (0 or 1,
//! default 1), `payload` (`"json"` or `"raw"`, default json),
//! `topic_pattern` (e.g. `plant/{site}/line/{line}/{sensor}`: `{name}`
//! levels become tags) and `timestamp` (`{field, format?}`, format one of
//! `rfc3339` (default), `unix_s`, `unix_ms`, `unix_us`, `unix_ns`). See
//! [`crate::mapping`] for how a message becomes a point.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Map, Value};
use vega_connectors::secret::SecretRef;
use vega_connectors::ConnectorError;

use crate::mapping::{is_valid_column_name, RAW_FIELD};
use crate::topic::TopicFilter;

/// The broker port without TLS.
pub const DEFAULT_PORT: u16 = 1883;
/// The broker port with TLS.
pub const DEFAULT_TLS_PORT: u16 = 8883;
/// Keep-alive interval when the connection does not say (seconds).
pub const DEFAULT_KEEP_ALIVE_SECS: u64 = 30;
/// The shortest keep-alive interval accepted (seconds).
pub const MIN_KEEP_ALIVE_SECS: u64 = 5;
/// Session expiry of a persistent MQTT 5 session when not given (7 days).
pub const DEFAULT_SESSION_EXPIRY_SECS: u32 = 7 * 24 * 3600;
/// Unacknowledged QoS 1 messages the broker may send (receive maximum).
pub const DEFAULT_INFLIGHT: u16 = 64;
/// First reconnect delay bound when not given (milliseconds).
pub const DEFAULT_RECONNECT_MIN_MS: u64 = 100;
/// Largest reconnect delay bound when not given (milliseconds).
pub const DEFAULT_RECONNECT_MAX_MS: u64 = 30_000;
/// The largest accepted `reconnect_max_ms` (one hour).
pub const MAX_RECONNECT_MS: u64 = 3_600_000;
/// The longest client identifier accepted (bytes).
pub const MAX_CLIENT_ID_LEN: usize = 256;

const CONNECTION_FIELDS: &[&str] = &[
    "host",
    "port",
    "protocol",
    "client_id",
    "clean_session",
    "session_expiry_secs",
    "keep_alive_secs",
    "username",
    "password",
    "tls",
    "inflight",
    "reconnect_min_ms",
    "reconnect_max_ms",
];
const TLS_FIELDS: &[&str] = &["ca_file", "client_cert_file", "client_key_file"];
const SOURCE_FIELDS: &[&str] = &["topic", "qos", "payload", "topic_pattern", "timestamp"];
const TIMESTAMP_FIELDS: &[&str] = &["field", "format"];

/// The MQTT protocol version spoken to the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// MQTT 3.1.1.
    V311,
    /// MQTT 5.0.
    V5,
}

/// TLS settings; their presence turns TLS on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsParams {
    /// PEM file of the CA certificates to trust instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// PEM file of a client certificate (chain); set exactly when
    /// `client_key_file` is.
    pub client_cert_file: Option<PathBuf>,
    /// PEM file of the client certificate's private key.
    pub client_key_file: Option<PathBuf>,
}

/// Checked connection parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttConnection {
    /// Broker host name or IP address.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// Protocol version.
    pub protocol: Protocol,
    /// The client identifier; `None` means `vega-<connection name>` (see
    /// [`MqttConnection::effective_client_id`]).
    pub client_id: Option<String>,
    /// `false` (the default) keeps a persistent session at the broker.
    pub clean_session: bool,
    /// Session expiry interval sent with MQTT 5 (seconds; `None` with
    /// MQTT 3.1.1 or a clean session).
    pub session_expiry_secs: Option<u32>,
    /// Keep-alive interval.
    pub keep_alive: Duration,
    /// The user to authenticate as.
    pub username: Option<String>,
    /// Where the password is found (never the password itself).
    pub password: Option<SecretRef>,
    /// TLS settings; `None` = plain TCP.
    pub tls: Option<TlsParams>,
    /// Unacknowledged QoS 1 messages the broker may send.
    pub inflight: u16,
    /// First reconnect delay bound.
    pub reconnect_min: Duration,
    /// Largest reconnect delay bound.
    pub reconnect_max: Duration,
}

impl MqttConnection {
    /// Parses and checks connection parameters without contacting the
    /// broker or reading any file.
    pub fn parse(value: &Value) -> Result<Self, ConnectorError> {
        let map = object("params", value, CONNECTION_FIELDS)?;

        let host = required_str(map, "", "host")?;
        if host.trim().is_empty() {
            return Err(invalid("host", "must not be empty"));
        }
        if host.contains("://") {
            return Err(invalid(
                "host",
                "give a host name or IP address, not a URL (use \"port\" and \"tls\")",
            ));
        }
        if host.chars().any(|c| c.is_whitespace() || c == '/') {
            return Err(invalid(
                "host",
                "must be a host name or IP address without spaces or '/'",
            ));
        }

        let tls = match map.get("tls") {
            None | Some(Value::Null) => None,
            Some(v) => Some(parse_tls(v)?),
        };

        let port = match opt_u64(map, "", "port")? {
            None => {
                if tls.is_some() {
                    DEFAULT_TLS_PORT
                } else {
                    DEFAULT_PORT
                }
            }
            Some(p) => match u16::try_from(p) {
                Ok(p) if p > 0 => p,
                _ => return Err(invalid("port", format!("must be 1 to 65535, not {p}"))),
            },
        };

        let protocol = match opt_str(map, "", "protocol")? {
            None | Some("3.1.1") => Protocol::V311,
            Some("5") | Some("5.0") => Protocol::V5,
            Some(other) => {
                return Err(invalid(
                    "protocol",
                    format!("must be \"3.1.1\" or \"5\", not \"{other}\""),
                ))
            }
        };

        let client_id = match opt_str(map, "", "client_id")? {
            None => None,
            Some(id) => {
                check_client_id(id).map_err(|m| invalid("client_id", m))?;
                Some(id.to_string())
            }
        };

        let clean_session = opt_bool(map, "", "clean_session")?.unwrap_or(false);
        let session_expiry_secs = match opt_u64(map, "", "session_expiry_secs")? {
            Some(_) if protocol == Protocol::V311 => return Err(invalid(
                "session_expiry_secs",
                "only with protocol \"5\" (MQTT 3.1.1 sessions last until the broker drops them)",
            )),
            Some(_) if clean_session => {
                return Err(invalid(
                    "session_expiry_secs",
                    "only with a persistent session (clean_session false)",
                ))
            }
            Some(s) => match u32::try_from(s) {
                Ok(s) if s > 0 => Some(s),
                _ => {
                    return Err(invalid(
                        "session_expiry_secs",
                        format!("must be 1 to {}, not {s}", u32::MAX),
                    ))
                }
            },
            None if protocol == Protocol::V5 && !clean_session => Some(DEFAULT_SESSION_EXPIRY_SECS),
            None => None,
        };

        let keep_alive_secs =
            opt_u64(map, "", "keep_alive_secs")?.unwrap_or(DEFAULT_KEEP_ALIVE_SECS);
        if !(MIN_KEEP_ALIVE_SECS..=u64::from(u16::MAX)).contains(&keep_alive_secs) {
            return Err(invalid(
                "keep_alive_secs",
                format!(
                    "must be {MIN_KEEP_ALIVE_SECS} to {}, not {keep_alive_secs}",
                    u16::MAX
                ),
            ));
        }

        let username = match opt_str(map, "", "username")? {
            None => None,
            Some("") => return Err(invalid("username", "must not be empty")),
            Some(u) => Some(u.to_string()),
        };
        let password = match map.get("password") {
            None | Some(Value::Null) => None,
            Some(v) => Some(SecretRef::from_param("password", v)?),
        };
        if password.is_some() && username.is_none() {
            return Err(invalid("username", "required with a password"));
        }

        let inflight = match opt_u64(map, "", "inflight")? {
            None => DEFAULT_INFLIGHT,
            Some(n) => match u16::try_from(n) {
                Ok(n) if n > 0 => n,
                _ => {
                    return Err(invalid(
                        "inflight",
                        format!("must be 1 to {}, not {n}", u16::MAX),
                    ))
                }
            },
        };

        let reconnect_min_ms =
            opt_u64(map, "", "reconnect_min_ms")?.unwrap_or(DEFAULT_RECONNECT_MIN_MS);
        let reconnect_max_ms = opt_u64(map, "", "reconnect_max_ms")?
            .unwrap_or(DEFAULT_RECONNECT_MAX_MS.max(reconnect_min_ms));
        if reconnect_min_ms == 0 || reconnect_min_ms > MAX_RECONNECT_MS {
            return Err(invalid(
                "reconnect_min_ms",
                format!("must be 1 to {MAX_RECONNECT_MS}, not {reconnect_min_ms}"),
            ));
        }
        if reconnect_max_ms < reconnect_min_ms || reconnect_max_ms > MAX_RECONNECT_MS {
            return Err(invalid(
                "reconnect_max_ms",
                format!(
                    "must be {reconnect_min_ms} (reconnect_min_ms) to {MAX_RECONNECT_MS}, not {reconnect_max_ms}"
                ),
            ));
        }

        Ok(MqttConnection {
            host: host.to_string(),
            port,
            protocol,
            client_id,
            clean_session,
            session_expiry_secs,
            keep_alive: Duration::from_secs(keep_alive_secs),
            username,
            password,
            tls,
            inflight,
            reconnect_min: Duration::from_millis(reconnect_min_ms),
            reconnect_max: Duration::from_millis(reconnect_max_ms),
        })
    }

    /// The client identifier to use: the configured one, else
    /// `vega-<connection_name>`.
    pub fn effective_client_id(&self, connection_name: &str) -> String {
        match &self.client_id {
            Some(id) => id.clone(),
            None => format!("vega-{connection_name}"),
        }
    }
}

fn check_client_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("must not be empty (a persistent session needs an identifier)".into());
    }
    if id.len() > MAX_CLIENT_ID_LEN {
        return Err(format!("must be at most {MAX_CLIENT_ID_LEN} bytes"));
    }
    if id.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(())
}

fn parse_tls(value: &Value) -> Result<TlsParams, ConnectorError> {
    let map = object("tls", value, TLS_FIELDS).map_err(|e| prefix_field("tls", e))?;
    let path = |key: &str| -> Result<Option<PathBuf>, ConnectorError> {
        match opt_str(map, "tls.", key)? {
            None => Ok(None),
            Some("") => Err(invalid(format!("tls.{key}"), "must not be empty")),
            Some(p) => Ok(Some(PathBuf::from(p))),
        }
    };
    let params = TlsParams {
        ca_file: path("ca_file")?,
        client_cert_file: path("client_cert_file")?,
        client_key_file: path("client_key_file")?,
    };
    match (&params.client_cert_file, &params.client_key_file) {
        (Some(_), None) => Err(invalid(
            "tls.client_key_file",
            "required with tls.client_cert_file",
        )),
        (None, Some(_)) => Err(invalid(
            "tls.client_cert_file",
            "required with tls.client_key_file",
        )),
        _ => Ok(params),
    }
}

/// The quality of service of a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qos {
    /// QoS 0: at most once; never acknowledged, may be lost.
    AtMostOnce,
    /// QoS 1: at least once; acknowledged after the points are durable.
    AtLeastOnce,
}

/// How a message's payload is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadFormat {
    /// A JSON object whose members become fields.
    Json,
    /// The payload as text in one string field, `payload`.
    Raw,
}

/// How the timestamp field is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampFormat {
    /// An RFC 3339 string, e.g. `2024-05-01T12:00:00.5Z`.
    Rfc3339,
    /// Seconds since the Unix epoch (a number or numeric string; decimals
    /// allowed).
    UnixS,
    /// Milliseconds since the Unix epoch.
    UnixMs,
    /// Microseconds since the Unix epoch.
    UnixUs,
    /// Nanoseconds since the Unix epoch.
    UnixNs,
}

impl TimestampFormat {
    /// The name used in the parameters.
    pub fn name(self) -> &'static str {
        match self {
            TimestampFormat::Rfc3339 => "rfc3339",
            TimestampFormat::UnixS => "unix_s",
            TimestampFormat::UnixMs => "unix_ms",
            TimestampFormat::UnixUs => "unix_us",
            TimestampFormat::UnixNs => "unix_ns",
        }
    }
}

/// Where a point's time comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimestampSpec {
    /// The top-level payload member holding the time (as written in the
    /// payload, before column-name normalization). It is not a field.
    pub field: String,
    /// How it is written.
    pub format: TimestampFormat,
}

/// One level of a topic pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatternLevel {
    /// Must equal the topic's level.
    Literal(String),
    /// The topic's level becomes the value of this tag.
    Tag(String),
}

/// A checked topic pattern such as `plant/{site}/line/{line}/{sensor}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPattern {
    /// The pattern as given.
    pub text: String,
    /// Its levels.
    pub levels: Vec<PatternLevel>,
}

impl TopicPattern {
    /// The tag names, in order.
    pub fn tag_names(&self) -> impl Iterator<Item = &str> {
        self.levels.iter().filter_map(|l| match l {
            PatternLevel::Tag(name) => Some(name.as_str()),
            PatternLevel::Literal(_) => None,
        })
    }
}

/// A checked asset source: what to subscribe to and how a message becomes
/// a point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttSource {
    /// The topic filter subscribed to.
    pub topic: TopicFilter,
    /// The subscription's quality of service.
    pub qos: Qos,
    /// How payloads are read.
    pub payload: PayloadFormat,
    /// Topic levels that become tags.
    pub topic_pattern: Option<TopicPattern>,
    /// Where the time comes from; `None` = the time of receipt.
    pub timestamp: Option<TimestampSpec>,
}

impl MqttSource {
    /// Parses and checks an asset source.
    pub fn parse(value: &Value) -> Result<Self, ConnectorError> {
        let map = object("source", value, SOURCE_FIELDS)?;
        let topic_text = required_str(map, "", "topic")?;
        let topic = TopicFilter::parse(topic_text).map_err(|m| invalid("topic", m))?;

        let qos =
            match map.get("qos") {
                None | Some(Value::Null) => Qos::AtLeastOnce,
                Some(v) => match v.as_u64() {
                    Some(0) => Qos::AtMostOnce,
                    Some(1) => Qos::AtLeastOnce,
                    Some(2) => return Err(invalid(
                        "qos",
                        "QoS 2 is not supported: use 1 (deliveries carry keys for de-duplication)",
                    )),
                    _ => return Err(invalid("qos", format!("must be 0 or 1, not {v}"))),
                },
            };

        let payload = match opt_str(map, "", "payload")? {
            None | Some("json") => PayloadFormat::Json,
            Some("raw") => PayloadFormat::Raw,
            Some(other) => {
                return Err(invalid(
                    "payload",
                    format!("must be \"json\" or \"raw\", not \"{other}\""),
                ))
            }
        };

        let topic_pattern = match opt_str(map, "", "topic_pattern")? {
            None => None,
            Some(text) => {
                let pattern = parse_pattern(text).map_err(|m| invalid("topic_pattern", m))?;
                check_compatible(&topic, &pattern).map_err(|m| invalid("topic_pattern", m))?;
                if payload == PayloadFormat::Raw && pattern.tag_names().any(|t| t == RAW_FIELD) {
                    return Err(invalid(
                        "topic_pattern",
                        format!("tag '{RAW_FIELD}' would collide with the field of a raw payload"),
                    ));
                }
                Some(pattern)
            }
        };

        let timestamp = match map.get("timestamp") {
            None | Some(Value::Null) => None,
            Some(v) => {
                if payload == PayloadFormat::Raw {
                    return Err(invalid(
                        "timestamp",
                        "only with payload \"json\" (a raw payload has no fields)",
                    ));
                }
                Some(parse_timestamp(v)?)
            }
        };

        Ok(MqttSource {
            topic,
            qos,
            payload,
            topic_pattern,
            timestamp,
        })
    }
}

fn parse_timestamp(value: &Value) -> Result<TimestampSpec, ConnectorError> {
    let map =
        object("timestamp", value, TIMESTAMP_FIELDS).map_err(|e| prefix_field("timestamp", e))?;
    let field = required_str(map, "timestamp.", "field")?;
    if field.is_empty() {
        return Err(invalid("timestamp.field", "must not be empty"));
    }
    let format = match opt_str(map, "timestamp.", "format")? {
        None | Some("rfc3339") => TimestampFormat::Rfc3339,
        Some("unix_s") => TimestampFormat::UnixS,
        Some("unix_ms") => TimestampFormat::UnixMs,
        Some("unix_us") => TimestampFormat::UnixUs,
        Some("unix_ns") => TimestampFormat::UnixNs,
        Some(other) => {
            return Err(invalid(
                "timestamp.format",
                format!(
                    "must be one of rfc3339, unix_s, unix_ms, unix_us, unix_ns; not \"{other}\""
                ),
            ))
        }
    };
    Ok(TimestampSpec {
        field: field.to_string(),
        format,
    })
}

fn parse_pattern(text: &str) -> Result<TopicPattern, String> {
    if text.is_empty() {
        return Err("must not be empty".into());
    }
    let mut levels = Vec::new();
    let mut names: Vec<&str> = Vec::new();
    for (i, level) in text.split('/').enumerate() {
        if let Some(name) = level.strip_prefix('{').and_then(|l| l.strip_suffix('}')) {
            if !is_valid_column_name(name) {
                return Err(format!(
                    "level {} '{{{name}}}': a tag name must be a lower-case identifier (a-z, 0-9, '_'; not starting with a digit; at most 63 characters)",
                    i + 1
                ));
            }
            if name == "time" {
                return Err(format!(
                    "level {}: 'time' is the time column, not a tag name",
                    i + 1
                ));
            }
            if names.contains(&name) {
                return Err(format!("tag '{name}' appears twice"));
            }
            names.push(name);
            levels.push(PatternLevel::Tag(name.to_string()));
        } else {
            if level.contains(['{', '}']) {
                return Err(format!(
                    "level {} '{level}': a tag is a whole level written {{name}}",
                    i + 1
                ));
            }
            if level.contains(['+', '#']) {
                return Err(format!(
                    "level {} '{level}': wildcards belong in \"topic\", not in the pattern",
                    i + 1
                ));
            }
            levels.push(PatternLevel::Literal(level.to_string()));
        }
    }
    Ok(TopicPattern {
        text: text.to_string(),
        levels,
    })
}

/// Checks that the topics the filter matches can match the pattern: level
/// by level, literals must agree; without `#` the level counts must be
/// equal; with `#` the pattern must have at least the levels before it.
fn check_compatible(filter: &TopicFilter, pattern: &TopicPattern) -> Result<(), String> {
    let filter_levels: Vec<&str> = filter.levels().collect();
    let hash_at = filter_levels.iter().position(|l| *l == "#");
    let fixed = hash_at.unwrap_or(filter_levels.len());
    for (i, (f, p)) in filter_levels[..fixed]
        .iter()
        .zip(pattern.levels.iter())
        .enumerate()
    {
        if let PatternLevel::Literal(lit) = p {
            if *f != "+" && f != lit {
                return Err(format!(
                    "level {} is '{lit}' but the topic filter's level is '{f}': no topic can match both",
                    i + 1
                ));
            }
        }
    }
    match hash_at {
        None if pattern.levels.len() != filter_levels.len() => Err(format!(
            "has {} levels but topics matching \"{filter}\" have {}",
            pattern.levels.len(),
            filter_levels.len()
        )),
        Some(k) if pattern.levels.len() < k => Err(format!(
            "has {} levels but topics matching \"{filter}\" have at least {k}",
            pattern.levels.len()
        )),
        _ => Ok(()),
    }
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConnectorError {
    ConnectorError::InvalidParams {
        field: field.into(),
        message: message.into(),
    }
}

/// Puts `prefix.` before the field of an `InvalidParams` error (used for
/// unknown fields of nested objects).
fn prefix_field(prefix: &str, err: ConnectorError) -> ConnectorError {
    match err {
        ConnectorError::InvalidParams { field, message } if field != prefix => {
            invalid(format!("{prefix}.{field}"), message)
        }
        other => other,
    }
}

/// The object `value` (`null` counts as empty), refusing unknown fields by
/// name.
fn object<'a>(
    what: &str,
    value: &'a Value,
    known: &[&str],
) -> Result<&'a Map<String, Value>, ConnectorError> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    match value {
        Value::Null => Ok(EMPTY.get_or_init(Map::new)),
        Value::Object(map) => {
            if let Some(key) = map.keys().find(|k| !known.contains(&k.as_str())) {
                return Err(invalid(
                    key.clone(),
                    format!("unknown field; expected one of: {}", known.join(", ")),
                ));
            }
            Ok(map)
        }
        _ => Err(invalid(what, "must be a JSON object")),
    }
}

fn opt_str<'a>(
    map: &'a Map<String, Value>,
    prefix: &str,
    key: &str,
) -> Result<Option<&'a str>, ConnectorError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(invalid(
            format!("{prefix}{key}"),
            format!("must be a string, not {}", json_type(other)),
        )),
    }
}

fn required_str<'a>(
    map: &'a Map<String, Value>,
    prefix: &str,
    key: &str,
) -> Result<&'a str, ConnectorError> {
    opt_str(map, prefix, key)?.ok_or_else(|| invalid(format!("{prefix}{key}"), "missing"))
}

fn opt_u64(
    map: &Map<String, Value>,
    prefix: &str,
    key: &str,
) -> Result<Option<u64>, ConnectorError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            invalid(
                format!("{prefix}{key}"),
                format!("must be a non-negative integer, not {v}"),
            )
        }),
    }
}

fn opt_bool(
    map: &Map<String, Value>,
    prefix: &str,
    key: &str,
) -> Result<Option<bool>, ConnectorError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(invalid(
            format!("{prefix}{key}"),
            format!("must be true or false, not {}", json_type(other)),
        )),
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field_of(err: ConnectorError) -> (String, String) {
        match err {
            ConnectorError::InvalidParams { field, message } => (field, message),
            other => panic!("not InvalidParams: {other}"),
        }
    }

    fn conn_err(value: Value) -> (String, String) {
        field_of(MqttConnection::parse(&value).unwrap_err())
    }

    fn source_err(value: Value) -> (String, String) {
        field_of(MqttSource::parse(&value).unwrap_err())
    }

    #[test]
    fn connection_defaults() {
        let c = MqttConnection::parse(&json!({"host": "broker.local"})).unwrap();
        assert_eq!(c.host, "broker.local");
        assert_eq!(c.port, 1883);
        assert_eq!(c.protocol, Protocol::V311);
        assert_eq!(c.client_id, None);
        assert_eq!(c.effective_client_id("plant1"), "vega-plant1");
        assert!(!c.clean_session);
        assert_eq!(c.session_expiry_secs, None);
        assert_eq!(c.keep_alive, Duration::from_secs(30));
        assert_eq!(c.inflight, 64);
        assert_eq!(c.reconnect_min, Duration::from_millis(100));
        assert_eq!(c.reconnect_max, Duration::from_secs(30));
        assert!(c.tls.is_none());
        assert!(c.username.is_none() && c.password.is_none());
    }

    #[test]
    fn tls_changes_the_default_port() {
        let c = MqttConnection::parse(&json!({"host": "h", "tls": {}})).unwrap();
        assert_eq!(c.port, 8883);
        assert_eq!(c.tls, Some(TlsParams::default()));
        let c = MqttConnection::parse(
            &json!({"host": "h", "port": 9000, "tls": {"ca_file": "/ca.pem"}}),
        )
        .unwrap();
        assert_eq!(c.port, 9000);
        assert_eq!(c.tls.unwrap().ca_file, Some(PathBuf::from("/ca.pem")));
    }

    #[test]
    fn mqtt5_persistent_sessions_get_an_expiry() {
        let c = MqttConnection::parse(&json!({"host": "h", "protocol": "5"})).unwrap();
        assert_eq!(c.protocol, Protocol::V5);
        assert_eq!(c.session_expiry_secs, Some(DEFAULT_SESSION_EXPIRY_SECS));
        let c = MqttConnection::parse(
            &json!({"host": "h", "protocol": "5", "session_expiry_secs": 60}),
        )
        .unwrap();
        assert_eq!(c.session_expiry_secs, Some(60));
        let c =
            MqttConnection::parse(&json!({"host": "h", "protocol": "5", "clean_session": true}))
                .unwrap();
        assert_eq!(c.session_expiry_secs, None);
    }

    #[test]
    fn full_connection_parses() {
        let c = MqttConnection::parse(&json!({
            "host": "10.0.0.5", "port": 1884, "protocol": "3.1.1", "client_id": "gw-1",
            "clean_session": true, "keep_alive_secs": 10, "username": "vega",
            "password": {"env": "MQTT_PW"}, "inflight": 8,
            "tls": {"ca_file": "/ca", "client_cert_file": "/c", "client_key_file": "/k"},
            "reconnect_min_ms": 50, "reconnect_max_ms": 1000
        }))
        .unwrap();
        assert_eq!(c.client_id.as_deref(), Some("gw-1"));
        assert_eq!(c.effective_client_id("x"), "gw-1");
        assert!(c.clean_session);
        assert_eq!(c.password, Some(SecretRef::Env("MQTT_PW".into())));
        assert_eq!(c.inflight, 8);
        assert_eq!(c.keep_alive, Duration::from_secs(10));
        assert_eq!(c.reconnect_max, Duration::from_secs(1));
    }

    #[test]
    fn connection_errors_name_their_field() {
        let cases = [
            (json!({}), "host"),
            (json!({"host": ""}), "host"),
            (json!({"host": "mqtt://h"}), "host"),
            (json!({"host": "h", "bogus": 1}), "bogus"),
            (json!({"host": "h", "port": 0}), "port"),
            (json!({"host": "h", "port": 70000}), "port"),
            (json!({"host": "h", "port": "1883"}), "port"),
            (json!({"host": "h", "protocol": "3.1"}), "protocol"),
            (json!({"host": "h", "client_id": ""}), "client_id"),
            (json!({"host": "h", "clean_session": "no"}), "clean_session"),
            (
                json!({"host": "h", "session_expiry_secs": 5}),
                "session_expiry_secs",
            ),
            (
                json!({"host": "h", "protocol": "5", "clean_session": true, "session_expiry_secs": 5}),
                "session_expiry_secs",
            ),
            (
                json!({"host": "h", "protocol": "5", "session_expiry_secs": 0}),
                "session_expiry_secs",
            ),
            (
                json!({"host": "h", "keep_alive_secs": 1}),
                "keep_alive_secs",
            ),
            (
                json!({"host": "h", "keep_alive_secs": 70000}),
                "keep_alive_secs",
            ),
            (json!({"host": "h", "password": {"env": "X"}}), "username"),
            (
                json!({"host": "h", "username": "u", "password": "plain"}),
                "password",
            ),
            (json!({"host": "h", "username": ""}), "username"),
            (json!({"host": "h", "inflight": 0}), "inflight"),
            (json!({"host": "h", "tls": {"cafile": "/x"}}), "tls.cafile"),
            (json!({"host": "h", "tls": {"ca_file": ""}}), "tls.ca_file"),
            (
                json!({"host": "h", "tls": {"client_cert_file": "/c"}}),
                "tls.client_key_file",
            ),
            (json!({"host": "h", "tls": "yes"}), "tls"),
            (
                json!({"host": "h", "reconnect_min_ms": 0}),
                "reconnect_min_ms",
            ),
            (
                json!({"host": "h", "reconnect_min_ms": 500, "reconnect_max_ms": 100}),
                "reconnect_max_ms",
            ),
            (json!("h"), "params"),
        ];
        for (value, field) in cases {
            let (got, message) = conn_err(value.clone());
            assert_eq!(got, field, "{value}: {message}");
        }
    }

    #[test]
    fn plain_password_is_not_echoed() {
        let (_, message) = conn_err(json!({"host": "h", "username": "u", "password": "hunter2"}));
        assert!(!message.contains("hunter2"));
    }

    #[test]
    fn source_defaults() {
        let s = MqttSource::parse(&json!({"topic": "plant/+/temp"})).unwrap();
        assert_eq!(s.topic.as_str(), "plant/+/temp");
        assert_eq!(s.qos, Qos::AtLeastOnce);
        assert_eq!(s.payload, PayloadFormat::Json);
        assert!(s.topic_pattern.is_none());
        assert!(s.timestamp.is_none());
    }

    #[test]
    fn full_source_parses() {
        let s = MqttSource::parse(&json!({
            "topic": "plant/+/line/+/#", "qos": 0, "payload": "json",
            "topic_pattern": "plant/{site}/line/{line}/{sensor}",
            "timestamp": {"field": "ts", "format": "unix_ms"}
        }))
        .unwrap();
        assert_eq!(s.qos, Qos::AtMostOnce);
        let p = s.topic_pattern.unwrap();
        assert_eq!(
            p.tag_names().collect::<Vec<_>>(),
            ["site", "line", "sensor"]
        );
        assert_eq!(p.levels[0], PatternLevel::Literal("plant".into()));
        let ts = s.timestamp.unwrap();
        assert_eq!(ts.field, "ts");
        assert_eq!(ts.format, TimestampFormat::UnixMs);
        let s = MqttSource::parse(&json!({"topic": "a", "timestamp": {"field": "t"}})).unwrap();
        assert_eq!(s.timestamp.unwrap().format, TimestampFormat::Rfc3339);
    }

    #[test]
    fn source_errors_name_their_field() {
        let cases = [
            (json!({}), "topic"),
            (json!({"topic": ""}), "topic"),
            (json!({"topic": "a/#/b"}), "topic"),
            (json!({"topic": "a+"}), "topic"),
            (json!({"topic": "a", "extra": true}), "extra"),
            (json!({"topic": "a", "qos": 2}), "qos"),
            (json!({"topic": "a", "qos": "1"}), "qos"),
            (json!({"topic": "a", "payload": "csv"}), "payload"),
            (
                json!({"topic": "a", "timestamp": {"format": "unix_s"}}),
                "timestamp.field",
            ),
            (
                json!({"topic": "a", "timestamp": {"field": "t", "format": "unix"}}),
                "timestamp.format",
            ),
            (
                json!({"topic": "a", "timestamp": {"field": "t", "zone": "utc"}}),
                "timestamp.zone",
            ),
            (
                json!({"topic": "a", "payload": "raw", "timestamp": {"field": "t"}}),
                "timestamp",
            ),
            (
                json!({"topic": "a/+", "topic_pattern": "a/{Site}"}),
                "topic_pattern",
            ),
            (
                json!({"topic": "a/+", "topic_pattern": "a/{time}"}),
                "topic_pattern",
            ),
            (
                json!({"topic": "+/+", "topic_pattern": "{x}/{x}"}),
                "topic_pattern",
            ),
            (
                json!({"topic": "a/+", "topic_pattern": "a/x{y}"}),
                "topic_pattern",
            ),
            (
                json!({"topic": "a/+", "topic_pattern": "a/+"}),
                "topic_pattern",
            ),
            (
                json!({"topic": "a/+", "payload": "raw", "topic_pattern": "a/{payload}"}),
                "topic_pattern",
            ),
        ];
        for (value, field) in cases {
            let (got, message) = source_err(value.clone());
            assert_eq!(got, field, "{value}: {message}");
        }
    }

    #[test]
    fn patterns_must_be_compatible_with_the_filter() {
        let ok = [
            ("plant/+/temp", "plant/{site}/temp"),
            ("plant/+/temp", "plant/{site}/{kind}"),
            ("plant/+/temp", "{root}/{site}/temp"),
            ("plant/+/temp", "plant/north/temp"),
            ("plant/#", "plant"),
            ("plant/#", "plant/{site}/{line}/{sensor}"),
            ("#", "{a}/{b}"),
        ];
        for (topic, pattern) in ok {
            MqttSource::parse(&json!({"topic": topic, "topic_pattern": pattern}))
                .unwrap_or_else(|e| panic!("{topic} {pattern}: {e}"));
        }
        let bad = [
            ("plant/+/temp", "plant/{site}", "levels"),
            ("plant/+/temp", "plant/{site}/temp/{x}", "levels"),
            ("plant/+/temp", "factory/{site}/temp", "no topic can match"),
            ("plant/+/#", "plant", "at least 2"),
        ];
        for (topic, pattern, reason) in bad {
            let (field, message) = source_err(json!({"topic": topic, "topic_pattern": pattern}));
            assert_eq!(field, "topic_pattern");
            assert!(message.contains(reason), "{topic} {pattern}: {message}");
        }
    }
}
