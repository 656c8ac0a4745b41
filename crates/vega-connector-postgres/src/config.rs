//! The JSON parameters of the PostgreSQL connector: the connection's
//! `{"host"|"hosts", "port", "database", "user", "password", "sslmode",
//! "connect_timeout_ms"}` and the asset's `{"table"|"query", "batch_rows",
//! "cursor_column", "key_columns"}`. Unknown fields are refused and every
//! error names its field.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use vega_connectors::secret::SecretRef;
use vega_connectors::ConnectorError;

/// The port used when the connection does not say.
pub const DEFAULT_PORT: u16 = 5432;
/// Rows per batch when the source does not say.
pub const DEFAULT_BATCH_ROWS: usize = 8192;
/// The largest accepted `batch_rows`.
pub const MAX_BATCH_ROWS: usize = 1_000_000;
/// The connect timeout when the connection does not say.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How to use TLS, with libpq's meanings: `disable` never, `prefer` when
/// the server offers it, `require` always (the connection fails without).
/// The server's certificate is not checked (libpq's `verify-full` is not
/// offered yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SslMode {
    Disable,
    #[default]
    Prefer,
    Require,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConnection {
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    hosts: Option<Vec<String>>,
    #[serde(default)]
    port: Option<u16>,
    database: String,
    user: String,
    #[serde(default)]
    password: Option<Value>,
    #[serde(default)]
    sslmode: Option<SslMode>,
    #[serde(default)]
    connect_timeout_ms: Option<u64>,
}

const CONNECTION_FIELDS: &[&str] = &[
    "host",
    "hosts",
    "port",
    "database",
    "user",
    "password",
    "sslmode",
    "connect_timeout_ms",
];

/// Checked connection parameters. The password is a reference, resolved
/// only when connecting.
#[derive(Debug, Clone, PartialEq)]
pub struct PostgresConnectionParams {
    /// Hosts tried in order (names, addresses, or unix socket directories
    /// starting with `/`).
    pub hosts: Vec<String>,
    pub port: u16,
    pub database: String,
    pub user: String,
    pub password: Option<SecretRef>,
    pub sslmode: SslMode,
    pub connect_timeout: Duration,
}

impl PostgresConnectionParams {
    /// Parses and checks connection parameters without contacting anyone.
    pub fn parse(value: &Value) -> Result<Self, ConnectorError> {
        let raw: RawConnection = parse_object("connection", value, CONNECTION_FIELDS)?;
        let hosts = match (raw.host, raw.hosts) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "hosts",
                    "give either \"host\" or \"hosts\", not both",
                ))
            }
            (Some(h), None) => vec![h],
            (None, Some(hs)) => hs,
            (None, None) => return Err(invalid("host", "missing field `host` (or `hosts`)")),
        };
        if hosts.is_empty() {
            return Err(invalid("hosts", "must list at least one host"));
        }
        for (i, h) in hosts.iter().enumerate() {
            let field = if hosts.len() == 1 {
                "host".to_string()
            } else {
                format!("hosts[{i}]")
            };
            if h.trim().is_empty() || h.contains(['\0', ' ', ',']) {
                return Err(invalid(
                    field,
                    format!("'{h}' is not a host name or address"),
                ));
            }
        }
        if raw.port == Some(0) {
            return Err(invalid("port", "must be between 1 and 65535"));
        }
        if raw.database.is_empty() || raw.database.contains('\0') {
            return Err(invalid("database", "must be a non-empty name"));
        }
        if raw.user.is_empty() || raw.user.contains('\0') {
            return Err(invalid("user", "must be a non-empty name"));
        }
        let password = match &raw.password {
            None | Some(Value::Null) => None,
            Some(v) => Some(SecretRef::from_param("password", v)?),
        };
        let sslmode = raw.sslmode.unwrap_or_default();
        let connect_timeout = match raw.connect_timeout_ms {
            None => DEFAULT_CONNECT_TIMEOUT,
            Some(0) => return Err(invalid("connect_timeout_ms", "must be at least 1")),
            Some(ms) => Duration::from_millis(ms),
        };
        Ok(PostgresConnectionParams {
            hosts,
            port: raw.port.unwrap_or(DEFAULT_PORT),
            database: raw.database,
            user: raw.user,
            password,
            sslmode,
            connect_timeout,
        })
    }

    /// `host:port` of every host, for messages.
    pub fn describe_hosts(&self) -> String {
        self.hosts
            .iter()
            .map(|h| {
                if h.starts_with('/') {
                    h.clone()
                } else {
                    format!("{h}:{}", self.port)
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    #[serde(default)]
    table: Option<String>,
    #[serde(default)]
    query: Option<String>,
    #[serde(default)]
    batch_rows: Option<usize>,
    #[serde(default)]
    cursor_column: Option<String>,
    #[serde(default)]
    key_columns: Option<Vec<String>>,
}

const SOURCE_FIELDS: &[&str] = &[
    "table",
    "query",
    "batch_rows",
    "cursor_column",
    "key_columns",
];

/// What an asset reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relation {
    /// A table or view: `(schema, name)`, schema optional.
    Table {
        schema: Option<String>,
        name: String,
    },
    /// A `SELECT` (or `WITH … SELECT`, `VALUES`, `TABLE`) query, without a
    /// trailing semicolon.
    Query(String),
}

impl Relation {
    /// The SQL that reads every row.
    pub fn select_sql(&self) -> String {
        match self {
            Relation::Table { schema, name } => match schema {
                Some(s) => format!("SELECT * FROM {}.{}", quote_ident(s), quote_ident(name)),
                None => format!("SELECT * FROM {}", quote_ident(name)),
            },
            Relation::Query(q) => q.clone(),
        }
    }

    /// Where the data comes from, for messages.
    pub fn describe(&self) -> String {
        match self {
            Relation::Table {
                schema: Some(s),
                name,
            } => format!("table {s}.{name}"),
            Relation::Table { schema: None, name } => format!("table {name}"),
            Relation::Query(_) => "query".into(),
        }
    }
}

/// A checked asset source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresSource {
    pub relation: Relation,
    pub batch_rows: usize,
    /// The column incremental reads order and filter by.
    pub cursor_column: Option<String>,
    /// The columns that identify a row (used to skip rows already read at
    /// the watermark value).
    pub key_columns: Vec<String>,
}

impl PostgresSource {
    /// Parses and checks an asset source without contacting anyone.
    pub fn parse(value: &Value) -> Result<Self, ConnectorError> {
        let raw: RawSource = parse_object("source", value, SOURCE_FIELDS)?;
        let relation = match (raw.table, raw.query) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "query",
                    "give either \"table\" or \"query\", not both",
                ))
            }
            (None, None) => {
                return Err(invalid("table", "missing field `table` (or `query`)"));
            }
            (Some(t), None) => parse_table(&t)?,
            (None, Some(q)) => Relation::Query(parse_query(&q)?),
        };
        let batch_rows = match raw.batch_rows {
            None => DEFAULT_BATCH_ROWS,
            Some(n) if (1..=MAX_BATCH_ROWS).contains(&n) => n,
            Some(n) => {
                return Err(invalid(
                    "batch_rows",
                    format!("{n} is out of range: must be between 1 and {MAX_BATCH_ROWS}"),
                ))
            }
        };
        if let Some(c) = &raw.cursor_column {
            check_column_name("cursor_column", c)?;
        }
        let key_columns = raw.key_columns.unwrap_or_default();
        for (i, k) in key_columns.iter().enumerate() {
            check_column_name(&format!("key_columns[{i}]"), k)?;
        }
        Ok(PostgresSource {
            relation,
            batch_rows,
            cursor_column: raw.cursor_column,
            key_columns,
        })
    }

    /// The cursor and key columns, required for incremental reads.
    pub fn incremental_columns(&self) -> Result<(&str, &[String]), ConnectorError> {
        let cursor = self.cursor_column.as_deref().ok_or_else(|| {
            invalid(
                "cursor_column",
                "required for incremental reads: the column to read new rows by",
            )
        })?;
        if self.key_columns.is_empty() {
            return Err(invalid(
                "key_columns",
                "required for incremental reads: the columns that identify a row uniquely",
            ));
        }
        Ok((cursor, &self.key_columns))
    }
}

fn check_column_name(field: &str, name: &str) -> Result<(), ConnectorError> {
    if name.is_empty() || name.contains('\0') {
        return Err(invalid(field, "must be a non-empty column name"));
    }
    Ok(())
}

/// `"name"` or `"schema.name"`; each part is taken literally (quoted when
/// used), so mixed case and special characters work.
fn parse_table(t: &str) -> Result<Relation, ConnectorError> {
    if t.contains('\0') {
        return Err(invalid("table", "must not contain NUL"));
    }
    let parts: Vec<&str> = t.split('.').collect();
    match parts.as_slice() {
        [name] if !name.is_empty() => Ok(Relation::Table {
            schema: None,
            name: name.to_string(),
        }),
        [schema, name] if !schema.is_empty() && !name.is_empty() => Ok(Relation::Table {
            schema: Some(schema.to_string()),
            name: name.to_string(),
        }),
        _ => Err(invalid(
            "table",
            format!("'{t}' is not a table name: expected \"name\" or \"schema.name\""),
        )),
    }
}

/// A query must read, not write: it must start with SELECT, WITH, VALUES
/// or TABLE. (The read also runs in a READ ONLY transaction and as a single
/// statement, so this check is for a clear error, not the only guard.)
fn parse_query(q: &str) -> Result<String, ConnectorError> {
    let trimmed = q.trim().trim_end_matches(';').trim_end();
    if trimmed.is_empty() {
        return Err(invalid("query", "must not be empty"));
    }
    if trimmed.contains('\0') {
        return Err(invalid("query", "must not contain NUL"));
    }
    let first: String = trimmed
        .trim_start_matches('(')
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_ascii_lowercase();
    if !matches!(first.as_str(), "select" | "with" | "values" | "table") {
        return Err(invalid(
            "query",
            "must be a SELECT query (starting with SELECT, WITH, VALUES or TABLE)",
        ));
    }
    Ok(trimmed.to_string())
}

/// Quotes an identifier for SQL (`"` doubled).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConnectorError {
    ConnectorError::InvalidParams {
        field: field.into(),
        message: message.into(),
    }
}

/// Deserializes a JSON object, refusing unknown fields by name and naming
/// the field of any other error.
fn parse_object<T: DeserializeOwned>(
    what: &str,
    value: &Value,
    known: &[&str],
) -> Result<T, ConnectorError> {
    let map = match value {
        Value::Object(map) => map,
        Value::Null => return Err(invalid(what, "missing: expected a JSON object")),
        _ => return Err(invalid(what, "must be a JSON object")),
    };
    for key in map.keys() {
        if !known.contains(&key.as_str()) {
            return Err(invalid(
                key.clone(),
                format!("unknown field; expected one of: {}", known.join(", ")),
            ));
        }
    }
    for (key, v) in map {
        // Each field is checked on its own so that the error names it.
        if key == "password" {
            continue;
        }
        let mut single = serde_json::Map::new();
        single.insert(key.clone(), v.clone());
        if let Err(e) = serde_json::from_value::<PartialCheck>(Value::Object(single)) {
            return Err(invalid(key.clone(), e.to_string()));
        }
    }
    serde_json::from_value(value.clone()).map_err(|e| {
        let message = e.to_string();
        let field = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next())
            .unwrap_or(what)
            .to_string();
        invalid(field, message)
    })
}

/// Every field of both objects, all optional, for per-field type checks.
#[derive(Deserialize)]
#[allow(dead_code)]
struct PartialCheck {
    host: Option<String>,
    hosts: Option<Vec<String>>,
    port: Option<u16>,
    database: Option<String>,
    user: Option<String>,
    sslmode: Option<SslMode>,
    connect_timeout_ms: Option<u64>,
    table: Option<String>,
    query: Option<String>,
    batch_rows: Option<usize>,
    cursor_column: Option<String>,
    key_columns: Option<Vec<String>>,
}
