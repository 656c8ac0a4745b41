//! The JSON parameters of the HTTP connector: the connection's
//! `{"base_url": …, "headers": …, "timeout_ms": …, …}` and the asset's
//! `{"path": …, "query": …, "format": …, "records": …, "pagination": …}`.
//!
//! Parsing refuses unknown fields and names the offending field by its
//! dotted path (`pagination.limit`, `headers.X-Api-Key`). Nothing here
//! contacts the source or resolves a secret.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue};
use reqwest::Url;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use vega_connectors::secret::SecretRef;
use vega_connectors::ConnectorError;

/// Per-request timeout when `timeout_ms` is not given.
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// Connect timeout when `connect_timeout_ms` is not given.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 10_000;
/// Pages read at most when `max_pages` is not given.
pub const DEFAULT_MAX_PAGES: u64 = 10_000;
/// The largest response body accepted when `max_response_bytes` is not given.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 256 * 1024 * 1024;
/// Rows per batch when the source does not say.
pub const DEFAULT_BATCH_SIZE: usize = 8192;
/// The largest accepted `batch_size`.
pub const MAX_BATCH_SIZE: usize = 1_000_000;
/// Page size of offset pagination when `limit` is not given.
pub const DEFAULT_PAGE_LIMIT: u64 = 100;

/// Headers whose value is a credential by nature: they must be given as a
/// secret reference, never as a plain `{"value": …}`.
const CREDENTIAL_HEADERS: &[&str] = &["authorization", "proxy-authorization", "cookie"];

/// How a header's value is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderSpec {
    /// A plain, non-secret value stored with the connection.
    Plain(HeaderValue),
    /// A secret, resolved only when a request is made.
    Secret(SecretRef),
}

/// Validated connection parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConnectionParams {
    /// `http` or `https`, without credentials, query or fragment.
    pub base_url: Url,
    /// Headers sent with every request, in name order.
    pub headers: Vec<(HeaderName, HeaderSpec)>,
    /// Bound on each request, from sending it to reading the whole body.
    pub timeout: Duration,
    /// Bound on establishing a connection.
    pub connect_timeout: Duration,
    /// Most pages one read may fetch; more is an error, not a silent cut.
    pub max_pages: u64,
    /// The largest response body accepted.
    pub max_response_bytes: u64,
    /// Path (below `base_url`) that `test` requests instead of `base_url`.
    pub health_path: Option<String>,
    /// A PEM file of CA certificates trusted in addition to the public
    /// roots (for HTTPS servers with a private CA or self-signed
    /// certificate).
    pub ca_file: Option<std::path::PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConnection {
    base_url: String,
    #[serde(default)]
    headers: BTreeMap<String, Value>,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    connect_timeout_ms: Option<u64>,
    #[serde(default)]
    max_pages: Option<u64>,
    #[serde(default)]
    max_response_bytes: Option<u64>,
    #[serde(default)]
    health_path: Option<String>,
    #[serde(default)]
    ca_file: Option<std::path::PathBuf>,
}

impl HttpConnectionParams {
    /// Parses and checks connection parameters.
    pub fn parse(value: &Value) -> Result<Self, ConnectorError> {
        let raw: RawConnection = parse_json("params", value)?;
        let base_url = parse_base_url(&raw.base_url)?;
        let mut headers = Vec::with_capacity(raw.headers.len());
        for (name, spec) in &raw.headers {
            headers.push(parse_header(name, spec)?);
        }
        let timeout_ms = positive("timeout_ms", raw.timeout_ms, DEFAULT_TIMEOUT_MS)?;
        let connect_ms = positive(
            "connect_timeout_ms",
            raw.connect_timeout_ms,
            DEFAULT_CONNECT_TIMEOUT_MS,
        )?;
        let max_pages = positive("max_pages", raw.max_pages, DEFAULT_MAX_PAGES)?;
        let max_response_bytes = positive(
            "max_response_bytes",
            raw.max_response_bytes,
            DEFAULT_MAX_RESPONSE_BYTES,
        )?;
        let health_path = match raw.health_path {
            Some(p) => Some(check_path("health_path", &p)?),
            None => None,
        };
        Ok(Self {
            base_url,
            headers,
            timeout: Duration::from_millis(timeout_ms),
            connect_timeout: Duration::from_millis(connect_ms),
            max_pages,
            max_response_bytes,
            health_path,
            ca_file: raw.ca_file,
        })
    }

    /// The URL of `path` (which starts with `/`) below the base URL: the
    /// base URL's own path is kept as a prefix.
    pub fn url_for(&self, path: &str) -> Result<Url, ConnectorError> {
        let base = self.base_url.as_str().trim_end_matches('/');
        Url::parse(&format!("{base}{path}")).map_err(|e| ConnectorError::InvalidParams {
            field: "path".into(),
            message: format!("'{path}' does not make a valid URL with the base URL: {e}"),
        })
    }
}

fn parse_base_url(text: &str) -> Result<Url, ConnectorError> {
    let url = Url::parse(text).map_err(|e| invalid("base_url", format!("not a valid URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(
            "base_url",
            format!(
                "scheme '{}' is not supported; use http or https",
                url.scheme()
            ),
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("base_url", "has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "base_url",
            "must not hold credentials; send them in a header given by a secret reference",
        ));
    }
    if url.query().is_some() {
        return Err(invalid(
            "base_url",
            "must not have a query string; put query parameters in the asset's \"query\"",
        ));
    }
    if url.fragment().is_some() {
        return Err(invalid("base_url", "must not have a fragment"));
    }
    Ok(url)
}

fn parse_header(name: &str, spec: &Value) -> Result<(HeaderName, HeaderSpec), ConnectorError> {
    let field = format!("headers.{name}");
    let header = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| invalid(&field, "not a valid HTTP header name"))?;
    let plain = match spec {
        Value::Object(map) if map.contains_key("value") => {
            if map.len() != 1 {
                return Err(invalid(
                    &field,
                    "give either {\"value\": \"…\"} or a secret reference, not both",
                ));
            }
            map.get("value")
        }
        Value::String(_) => {
            return Err(invalid(
                &field,
                "give {\"value\": \"…\"} for a plain value, or a secret reference {\"env\": \"VAR\"} / {\"file\": \"/path\"}",
            ))
        }
        _ => None,
    };
    let Some(plain) = plain else {
        return Ok((
            header,
            HeaderSpec::Secret(SecretRef::from_param(&field, spec)?),
        ));
    };
    if CREDENTIAL_HEADERS.contains(&header.as_str()) {
        return Err(invalid(
            &field,
            "carries credentials, which are not stored: give a secret reference {\"env\": \"VAR\"} or {\"file\": \"/path\"}",
        ));
    }
    let Value::String(text) = plain else {
        return Err(invalid(format!("{field}.value"), "must be a string"));
    };
    let value = HeaderValue::from_str(text)
        .map_err(|_| invalid(format!("{field}.value"), "not a valid HTTP header value"))?;
    Ok((header, HeaderSpec::Plain(value)))
}

/// The asset formats the HTTP connector reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HttpFormat {
    /// One JSON document per page holding the records (see `records`).
    #[default]
    Json,
    /// One JSON object per line.
    Ndjson,
    /// CSV with a header line on every page.
    Csv,
}

impl HttpFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            HttpFormat::Json => "json",
            HttpFormat::Ndjson => "ndjson",
            HttpFormat::Csv => "csv",
        }
    }
}

/// How the next page is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pagination {
    /// The next page's URL (absolute or relative to the page) is in the
    /// body at a JSON pointer; absent, `null` or `""` ends the read.
    NextLink { pointer: String },
    /// The next page's URL is in an RFC 8288 (RFC 5988) `Link` header with
    /// `rel="next"`; no such link ends the read.
    LinkHeader,
    /// `offset_param`/`limit_param` query parameters; a page with fewer
    /// than `limit` records ends the read.
    Offset {
        limit_param: String,
        offset_param: String,
        limit: u64,
    },
    /// An opaque cursor from the body at a JSON pointer, sent back as
    /// `cursor_param`; absent, `null` or `""` ends the read.
    Cursor {
        cursor_param: String,
        pointer: String,
    },
}

impl Pagination {
    fn parse(value: &Value) -> Result<Self, ConnectorError> {
        let Value::Object(map) = value else {
            return Err(invalid("pagination", "must be an object with a \"type\""));
        };
        let kind = match map.get("type") {
            Some(Value::String(t)) => t.as_str(),
            Some(_) => return Err(invalid("pagination.type", "must be a string")),
            None => return Err(invalid("pagination.type", "missing field `type`")),
        };
        let known: &[&str] = match kind {
            "next_link" => &["type", "pointer"],
            "link_header" => &["type"],
            "offset" => &["type", "limit_param", "offset_param", "limit"],
            "cursor" => &["type", "cursor_param", "pointer"],
            other => {
                return Err(invalid(
                    "pagination.type",
                    format!(
                        "unknown pagination type '{other}'; expected next_link, link_header, offset or cursor"
                    ),
                ))
            }
        };
        if let Some(key) = map.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(invalid(
                format!("pagination.{key}"),
                format!(
                    "unknown field for pagination type '{kind}'; expected one of: {}",
                    known.join(", ")
                ),
            ));
        }
        let text = |name: &str, default: Option<&str>| -> Result<String, ConnectorError> {
            match map.get(name) {
                Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
                Some(_) => Err(invalid(
                    format!("pagination.{name}"),
                    "must be a non-empty string",
                )),
                None => default.map(str::to_string).ok_or_else(|| {
                    invalid(
                        format!("pagination.{name}"),
                        format!("missing field `{name}`"),
                    )
                }),
            }
        };
        let pointer = |name: &str| -> Result<String, ConnectorError> {
            let p = text(name, None)?;
            check_pointer(&format!("pagination.{name}"), &p)?;
            Ok(p)
        };
        Ok(match kind {
            "next_link" => Pagination::NextLink {
                pointer: pointer("pointer")?,
            },
            "link_header" => Pagination::LinkHeader,
            "offset" => {
                let limit = match map.get("limit") {
                    None => DEFAULT_PAGE_LIMIT,
                    Some(v) => match v.as_u64() {
                        Some(n) if n > 0 => n,
                        _ => return Err(invalid("pagination.limit", "must be a positive integer")),
                    },
                };
                Pagination::Offset {
                    limit_param: text("limit_param", Some("limit"))?,
                    offset_param: text("offset_param", Some("offset"))?,
                    limit,
                }
            }
            _ => Pagination::Cursor {
                cursor_param: text("cursor_param", Some("cursor"))?,
                pointer: pointer("pointer")?,
            },
        })
    }

    /// Whether the pagination reads the JSON body (and so needs the json
    /// format).
    fn reads_body(&self) -> bool {
        matches!(
            self,
            Pagination::NextLink { .. } | Pagination::Cursor { .. }
        )
    }
}

/// CSV options of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CsvSettings {
    /// One ASCII byte; `,` by default.
    pub delimiter: u8,
    /// Whether every page starts with a header line; `true` by default.
    pub header: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCsv {
    #[serde(default)]
    delimiter: Option<String>,
    #[serde(default)]
    header: Option<bool>,
}

/// Incremental reads: which query parameter carries the watermark and
/// which record field holds each record's cursor value.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncrementalSettings {
    /// Query parameter sent with the watermark value (absent on the first
    /// read). The server is expected to return records whose cursor is at
    /// or after it.
    pub cursor_param: String,
    /// Top-level record field holding the cursor (a number or a string
    /// that sorts in order, such as an RFC 3339 timestamp in UTC).
    pub cursor_field: String,
    /// Top-level record field identifying a record, to skip records at the
    /// watermark already read; without it the whole record identifies it.
    #[serde(default)]
    pub key_field: Option<String>,
}

/// A validated asset source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSource {
    /// Path below the connection's base URL, starting with `/`.
    pub path: String,
    /// Query parameters of the first request, in name order.
    pub query: Vec<(String, String)>,
    pub format: HttpFormat,
    /// JSON pointer to the array of records in each page (json only);
    /// `None` means the document itself is the array.
    pub records: Option<String>,
    pub pagination: Option<Pagination>,
    /// CSV options (csv only; defaults otherwise).
    pub csv: CsvSettings,
    /// Rows per batch.
    pub batch_size: usize,
    pub incremental: Option<IncrementalSettings>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    path: String,
    #[serde(default)]
    query: BTreeMap<String, Value>,
    #[serde(default)]
    format: Option<HttpFormat>,
    #[serde(default)]
    records: Option<String>,
    #[serde(default)]
    pagination: Option<Value>,
    #[serde(default)]
    csv: Option<RawCsv>,
    #[serde(default)]
    batch_size: Option<usize>,
    #[serde(default)]
    incremental: Option<IncrementalSettings>,
}

impl HttpSource {
    /// Parses and checks an asset source.
    pub fn parse(value: &Value) -> Result<Self, ConnectorError> {
        let raw: RawSource = parse_json("source", value)?;
        let path = check_path("path", &raw.path)?;
        let format = raw.format.unwrap_or_default();
        let mut query = Vec::with_capacity(raw.query.len());
        for (name, value) in raw.query {
            let text = match value {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => {
                    return Err(invalid(
                        format!("query.{name}"),
                        "must be a string, a number or a boolean",
                    ))
                }
            };
            query.push((name, text));
        }
        if let Some(records) = &raw.records {
            if format != HttpFormat::Json {
                return Err(invalid(
                    "records",
                    format!("applies only to the json format, not {}", format.as_str()),
                ));
            }
            check_pointer("records", records)?;
        }
        let pagination = match &raw.pagination {
            None | Some(Value::Null) => None,
            Some(v) => Some(Pagination::parse(v)?),
        };
        if let Some(p) = &pagination {
            if p.reads_body() && format != HttpFormat::Json {
                return Err(invalid(
                    "pagination.type",
                    format!(
                        "reads the next page from a JSON body, which the {} format has not; use link_header or offset",
                        format.as_str()
                    ),
                ));
            }
        }
        let csv = match raw.csv {
            None => CsvSettings {
                delimiter: b',',
                header: true,
            },
            Some(_) if format != HttpFormat::Csv => {
                return Err(invalid(
                    "csv",
                    format!("applies only to the csv format, not {}", format.as_str()),
                ))
            }
            Some(c) => CsvSettings {
                delimiter: match c.delimiter.as_deref() {
                    None => b',',
                    Some(d) => match d.as_bytes() {
                        [b] if b.is_ascii() && !matches!(b, b'"' | b'\n' | b'\r') => *b,
                        _ => {
                            return Err(invalid(
                                "csv.delimiter",
                                format!("'{d}' must be exactly one ASCII character other than '\"' and newline"),
                            ))
                        }
                    },
                },
                header: c.header.unwrap_or(true),
            },
        };
        let batch_size = match raw.batch_size {
            None => DEFAULT_BATCH_SIZE,
            Some(n) if (1..=MAX_BATCH_SIZE).contains(&n) => n,
            Some(n) => {
                return Err(invalid(
                    "batch_size",
                    format!("{n} is out of range; use 1 to {MAX_BATCH_SIZE}"),
                ))
            }
        };
        if let Some(inc) = &raw.incremental {
            if format == HttpFormat::Csv {
                return Err(invalid(
                    "incremental",
                    "incremental reads need json or ndjson records",
                ));
            }
            for (name, v) in [
                ("incremental.cursor_param", Some(&inc.cursor_param)),
                ("incremental.cursor_field", Some(&inc.cursor_field)),
                ("incremental.key_field", inc.key_field.as_ref()),
            ] {
                if v.is_some_and(|s| s.is_empty()) {
                    return Err(invalid(name, "must not be empty"));
                }
            }
        }
        Ok(Self {
            path,
            query,
            format,
            records: raw.records,
            pagination,
            csv,
            batch_size,
            incremental: raw.incremental,
        })
    }
}

/// A path below the base URL: starts with `/`, no query, fragment or
/// scheme.
fn check_path(field: &str, path: &str) -> Result<String, ConnectorError> {
    if !path.starts_with('/') {
        return Err(invalid(field, format!("'{path}' must start with '/'")));
    }
    if path.starts_with("//") {
        return Err(invalid(field, format!("'{path}' must not start with '//'")));
    }
    if path.contains(['?', '#']) {
        return Err(invalid(
            field,
            format!("'{path}' must not contain '?' or '#'; put query parameters in \"query\""),
        ));
    }
    if path.chars().any(|c| c.is_control() || c == ' ') {
        return Err(invalid(
            field,
            "must not contain spaces or control characters",
        ));
    }
    if path.split('/').any(|segment| segment == "..") {
        return Err(invalid(field, format!("'{path}' must not contain '..'")));
    }
    Ok(path.to_string())
}

/// A JSON pointer (RFC 6901): empty or starting with `/`.
fn check_pointer(field: &str, pointer: &str) -> Result<(), ConnectorError> {
    if pointer.is_empty() || pointer.starts_with('/') {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!(
                "'{pointer}' is not a JSON pointer; it must start with '/' (e.g. \"/data/items\")"
            ),
        ))
    }
}

fn positive(field: &str, value: Option<u64>, default: u64) -> Result<u64, ConnectorError> {
    match value {
        None => Ok(default),
        Some(0) => Err(invalid(field, "must be greater than 0")),
        Some(n) => Ok(n),
    }
}

pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConnectorError {
    ConnectorError::InvalidParams {
        field: field.into(),
        message: message.into(),
    }
}

/// Deserializes `value` (`null` counts as `{}`), naming the field of any
/// error by its dotted path, unknown fields included.
fn parse_json<T: DeserializeOwned>(what: &str, value: &Value) -> Result<T, ConnectorError> {
    let value = match value {
        Value::Null => Value::Object(Default::default()),
        Value::Object(_) => value.clone(),
        _ => return Err(invalid(what, "must be a JSON object")),
    };
    serde_path_to_error::deserialize(value).map_err(|e| {
        let message = e.inner().to_string();
        let path = e.path().to_string();
        let prefix = if path == "." { None } else { Some(path) };
        // serde_path_to_error's path already ends at an unknown field, but
        // stops at the object that misses a field.
        let missing = between(&message, "missing field `", "`");
        let field = match (prefix, missing) {
            (Some(p), Some(n)) => format!("{p}.{n}"),
            (Some(p), None) => p,
            (None, Some(n)) => n.to_string(),
            (None, None) => what.to_string(),
        };
        invalid(field, message)
    })
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let rest = text.strip_prefix(start)?;
    rest.split(end).next()
}
