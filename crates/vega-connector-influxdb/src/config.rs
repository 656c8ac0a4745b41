//! The JSON parameters of the InfluxDB connector: the connection's
//! `{"url", "database", "username", "password", "timeout_ms"}` and the
//! asset's `{"measurement"}` or `{"query"}` with an optional `chunk_size`.
//! Unknown fields are refused; every error names its field.

use std::time::Duration;

use reqwest::Url;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use vega_connectors::secret::SecretRef;
use vega_connectors::ConnectorError;

use crate::influxql;

/// Request timeout when the connection does not say (milliseconds).
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// The largest accepted `timeout_ms` (one hour).
pub const MAX_TIMEOUT_MS: u64 = 3_600_000;
/// Rows per chunk (and per batch) when the source does not say.
pub const DEFAULT_CHUNK_SIZE: usize = 10_000;
/// The largest accepted `chunk_size`.
pub const MAX_CHUNK_SIZE: usize = 1_000_000;

const CONNECTION_FIELDS: &[&str] = &["url", "database", "username", "password", "timeout_ms"];
const SOURCE_FIELDS: &[&str] = &["measurement", "query", "chunk_size"];

/// Checked connection parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InfluxdbConnection {
    /// Base URL of the HTTP API (`http://host:8086`), without credentials,
    /// query or fragment.
    pub url: Url,
    /// The database every query runs against.
    pub database: String,
    /// The user to authenticate as; `password` is set exactly when this is.
    pub username: Option<String>,
    /// Where the password is found (never the password itself).
    pub password: Option<SecretRef>,
    /// Timeout of connecting and of each read or write.
    pub timeout: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConnection {
    url: String,
    database: String,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<Value>,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

impl InfluxdbConnection {
    /// Parses and checks connection parameters without contacting the server.
    pub fn parse(value: &Value) -> Result<Self, ConnectorError> {
        let raw: RawConnection = parse_object("params", value, CONNECTION_FIELDS)?;
        let url = parse_url(&raw.url)?;
        if raw.database.trim().is_empty() {
            return Err(invalid("database", "must not be empty"));
        }
        let password = match &raw.password {
            None | Some(Value::Null) => None,
            Some(v) => Some(SecretRef::from_param("password", v)?),
        };
        let username = match raw.username {
            Some(u) if u.is_empty() => return Err(invalid("username", "must not be empty")),
            other => other,
        };
        match (&username, &password) {
            (Some(_), None) => {
                return Err(invalid(
                    "password",
                    "required with a username: give a reference, {\"env\": \"VAR\"} or {\"file\": \"/path\"}",
                ))
            }
            (None, Some(_)) => return Err(invalid("username", "required with a password")),
            _ => {}
        }
        let timeout_ms = raw.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
        if timeout_ms == 0 || timeout_ms > MAX_TIMEOUT_MS {
            return Err(invalid(
                "timeout_ms",
                format!("must be between 1 and {MAX_TIMEOUT_MS}, not {timeout_ms}"),
            ));
        }
        Ok(InfluxdbConnection {
            url,
            database: raw.database,
            username,
            password,
            timeout: Duration::from_millis(timeout_ms),
        })
    }
}

fn parse_url(text: &str) -> Result<Url, ConnectorError> {
    let url = Url::parse(text).map_err(|e| invalid("url", format!("not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(
            "url",
            format!("scheme must be http or https, not '{}'", url.scheme()),
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("url", "has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        // Never echo the URL here: it holds a credential.
        return Err(invalid(
            "url",
            "must not contain credentials; use \"username\" and a \"password\" reference",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("url", "must not have a query or fragment"));
    }
    Ok(url)
}

/// What an asset reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceKind {
    /// Every point of one measurement (`SELECT * FROM "<measurement>"`).
    Measurement(String),
    /// One InfluxQL `SELECT` statement.
    Query(String),
}

/// A checked asset source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InfluxdbSource {
    pub kind: SourceKind,
    /// Rows per chunk requested from the server and per batch produced.
    pub chunk_size: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    #[serde(default)]
    measurement: Option<String>,
    #[serde(default)]
    query: Option<String>,
    #[serde(default)]
    chunk_size: Option<usize>,
}

impl InfluxdbSource {
    /// Parses and checks an asset source: exactly one of `measurement` and
    /// `query`; a query must be a single `SELECT` without `INTO`.
    pub fn parse(value: &Value) -> Result<Self, ConnectorError> {
        let raw: RawSource = parse_object("source", value, SOURCE_FIELDS)?;
        let kind = match (raw.measurement, raw.query) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "query",
                    "give either \"measurement\" or \"query\", not both",
                ))
            }
            (None, None) => {
                return Err(invalid(
                    "measurement",
                    "missing: give either \"measurement\" or \"query\"",
                ))
            }
            (Some(m), None) => {
                if m.is_empty() {
                    return Err(invalid("measurement", "must not be empty"));
                }
                SourceKind::Measurement(m)
            }
            (None, Some(q)) => {
                influxql::check_select(&q).map_err(|message| invalid("query", message))?;
                SourceKind::Query(q)
            }
        };
        let chunk_size = raw.chunk_size.unwrap_or(DEFAULT_CHUNK_SIZE);
        if chunk_size == 0 || chunk_size > MAX_CHUNK_SIZE {
            return Err(invalid(
                "chunk_size",
                format!("must be between 1 and {MAX_CHUNK_SIZE}, not {chunk_size}"),
            ));
        }
        Ok(InfluxdbSource { kind, chunk_size })
    }
}

pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConnectorError {
    ConnectorError::InvalidParams {
        field: field.into(),
        message: message.into(),
    }
}

/// Deserializes a JSON object (`null` counts as empty), refusing unknown
/// fields by name and naming the field of any other error.
fn parse_object<T: DeserializeOwned>(
    what: &str,
    value: &Value,
    known: &[&str],
) -> Result<T, ConnectorError> {
    let value = match value {
        Value::Null => Value::Object(Default::default()),
        Value::Object(map) => {
            if let Some(key) = map.keys().find(|k| !known.contains(&k.as_str())) {
                return Err(invalid(
                    key.clone(),
                    format!("unknown field; expected one of: {}", known.join(", ")),
                ));
            }
            value.clone()
        }
        _ => return Err(invalid(what, "must be a JSON object")),
    };
    serde_path_to_error::deserialize(value).map_err(|e| {
        let message = e.inner().to_string();
        let mut field = e.path().to_string();
        if field == "." {
            field = message
                .strip_prefix("missing field `")
                .and_then(|rest| rest.split('`').next())
                .unwrap_or(what)
                .to_string();
        }
        invalid(field, message)
    })
}
