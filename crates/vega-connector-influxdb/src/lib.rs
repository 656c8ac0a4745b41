//! The InfluxDB 1.x connector: one measurement, or one InfluxQL `SELECT`,
//! per asset, read over the HTTP API with blocking requests.
//!
//! Connection parameters: `{"url": "http://host:8086", "database": "db",
//! "username": "reader", "password": {"env": "INFLUX_PASSWORD"},
//! "timeout_ms": 30000}`; `url` and `database` are required, the password is
//! only ever a secret reference and goes with a username. Asset source:
//! `{"measurement": "cpu"}` or `{"query": "SELECT … FROM …"}` (exactly
//! one), optionally `"chunk_size"` (rows per chunk and per batch, default
//! 10,000).
//!
//! # Reads
//!
//! Every read is a chunked `/query` (`epoch=ns`, `chunked=true`,
//! `chunk_size`), consumed one chunk at a time, so memory is bounded by the
//! chunk size. A measurement read is `SELECT * FROM "<measurement>"`; its
//! schema comes from `SHOW TAG KEYS` and `SHOW FIELD KEYS` before the read:
//! `time` (`Timestamp(ns, "UTC")`), the tags (`Utf8`, sorted), the fields
//! (sorted; float → `Float64`, integer → `Int64`, string → `Utf8`, boolean →
//! `Boolean`; a field that is integer in some shards and float in others is
//! `Float64`, other mixes `Utf8`). A query's schema is settled from its first
//! chunk: `time`, the tags it groups by (`Utf8`), then its columns in order,
//! typed by the database's field and tag keys of the same name, or else by
//! their first value (numbers → `Float64`, text, booleans; all-NULL →
//! `Utf8`). A later chunk with a column outside that schema fails the read
//! rather than dropping it.
//!
//! # Incremental reads
//!
//! Measurement sources read incrementally by time: `WHERE time >= <watermark>`,
//! skipping rows at exactly the watermark time whose series key
//! (`measurement,tag=value,…`, tags sorted, as in line protocol) is in the
//! watermark's `keys_at_value`. A point is identified by its series key and
//! time, so points sharing the watermark time are neither lost nor read
//! twice. The new watermark is the newest time read with the series keys
//! read at it. Query sources read incrementally through a `$since`
//! placeholder in their WHERE clause (`WHERE time >= $since`), replaced by
//! the watermark in nanoseconds (0 on the first and on full reads); rows at
//! the watermark are de-duplicated by their series key the same way.

mod client;
mod config;
mod influxql;
mod source;
#[cfg(test)]
mod tests;
mod watermark;

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde_json::Value;
use vega_connectors::{BatchSource, Connector, ConnectorError, IncrementalSource, Watermark};
use vega_core::ConnectorKind;

use client::{Client, Series};
pub use config::{
    InfluxdbConnection, InfluxdbSource, SourceKind, DEFAULT_CHUNK_SIZE, DEFAULT_TIMEOUT_MS,
    MAX_CHUNK_SIZE, MAX_TIMEOUT_MS,
};
pub use source::{ColumnType, InfluxSource, Layout};

/// Reads InfluxDB 1.x measurements and queries.
#[derive(Debug, Clone, Default)]
pub struct InfluxdbConnector;

impl InfluxdbConnector {
    pub fn new() -> Self {
        InfluxdbConnector
    }
}

impl Connector for InfluxdbConnector {
    fn kind(&self) -> ConnectorKind {
        ConnectorKind::Influxdb
    }

    fn check_connection(&self, params: &Value) -> Result<(), ConnectorError> {
        InfluxdbConnection::parse(params).map(|_| ())
    }

    fn check_source(&self, params: &Value, source: &Value) -> Result<(), ConnectorError> {
        InfluxdbConnection::parse(params)?;
        InfluxdbSource::parse(source).map(|_| ())
    }

    /// Pings the server, then runs `SHOW RETENTION POLICIES ON "<database>"`,
    /// which checks the credentials and that the database exists.
    fn test(&self, params: &Value) -> Result<(), ConnectorError> {
        let connection = InfluxdbConnection::parse(params)?;
        let client = Client::new(&connection)?;
        client.ping()?;
        let q = format!(
            "SHOW RETENTION POLICIES ON {}",
            influxql::quote_ident(&connection.database)
        );
        client.query_small(&q).map(|_| ())
    }

    fn open_full(
        &self,
        params: &Value,
        source: &Value,
    ) -> Result<Box<dyn BatchSource>, ConnectorError> {
        let connection = InfluxdbConnection::parse(params)?;
        let source = InfluxdbSource::parse(source)?;
        let client = Client::new(&connection)?;
        match &source.kind {
            SourceKind::Measurement(m) => {
                let layout = measurement_layout(&client, &connection.database, m)?;
                let q = format!("SELECT * FROM {}", influxql::quote_ident(m));
                let chunks = client.query_chunked(&q, source.chunk_size)?;
                let location = format!("measurement '{m}'");
                Ok(Box::new(InfluxSource::new(
                    layout,
                    chunks,
                    None,
                    source.chunk_size,
                    location,
                )?))
            }
            SourceKind::Query(q) => {
                // A full read starts from the beginning of time.
                let q = q.replace(SINCE, "0");
                let (fields, tags) = database_keys(&client)?;
                let mut chunks = client.query_chunked(&q, source.chunk_size)?;
                let mut first = Vec::new();
                while let Some(series) = chunks.next_chunk()? {
                    if !series.is_empty() {
                        first = series;
                        break;
                    }
                }
                let layout = query_layout(&first, &fields, &tags);
                let location = "query".to_string();
                Ok(Box::new(InfluxSource::new(
                    layout,
                    chunks,
                    Some(first),
                    source.chunk_size,
                    location,
                )?))
            }
        }
    }

    fn open_incremental(
        &self,
        params: &Value,
        source: &Value,
        since: &Watermark,
    ) -> Result<Box<dyn IncrementalSource>, ConnectorError> {
        let connection = InfluxdbConnection::parse(params)?;
        let source = InfluxdbSource::parse(source)?;
        let since = match &since.value {
            None | Some(Value::Null) => None,
            Some(v) => Some((watermark::from_value(v)?, since.keys_at_value.clone())),
        };
        let client = Client::new(&connection)?;
        let m = match &source.kind {
            SourceKind::Measurement(m) => m,
            SourceKind::Query(q) => {
                // A query resumes through its `$since` placeholder: the
                // watermark (ns) replaces it, or 0 on the first read.
                if !q.contains(SINCE) {
                    return Err(ConnectorError::Unsupported {
                        message: format!(
                            "an incremental InfluxDB query must filter on the watermark: put `time >= {SINCE}` in its WHERE clause"
                        ),
                    });
                }
                let start = since.as_ref().map(|(ns, _)| *ns).unwrap_or(0);
                let q = q.replace(SINCE, &start.to_string());
                let (fields, tags) = database_keys(&client)?;
                let mut chunks = client.query_chunked(&q, source.chunk_size)?;
                let mut first = Vec::new();
                while let Some(series) = chunks.next_chunk()? {
                    if !series.is_empty() {
                        first = series;
                        break;
                    }
                }
                let layout = query_layout(&first, &fields, &tags);
                let mut reader = InfluxSource::incremental(
                    layout,
                    chunks,
                    source.chunk_size,
                    "query".to_string(),
                    "query".to_string(),
                    since,
                );
                reader.push_first(first)?;
                return Ok(Box::new(reader));
            }
        };
        let layout = measurement_layout(&client, &connection.database, m)?;
        let mut q = format!("SELECT * FROM {}", influxql::quote_ident(m));
        if let Some((ns, _)) = &since {
            q.push_str(&format!(" WHERE time >= {ns}"));
        }
        let chunks = client.query_chunked(&q, source.chunk_size)?;
        Ok(Box::new(InfluxSource::incremental(
            layout,
            chunks,
            source.chunk_size,
            format!("measurement '{m}'"),
            m.clone(),
            since,
        )))
    }
}

/// The placeholder an incremental query source filters on
/// (`WHERE time >= $since`); replaced by the watermark in nanoseconds.
pub const SINCE: &str = "$since";

/// The value of column `name` in each row of `series`.
fn column<'a>(series: &'a [Series], name: &str) -> impl Iterator<Item = &'a Value> + 'a {
    let name = name.to_string();
    series.iter().flat_map(move |s| {
        let i = s.columns.iter().position(|c| *c == name);
        s.values
            .iter()
            .filter_map(move |row| i.and_then(|i| row.get(i)))
    })
}

/// Field types (name → every type seen) and tag names from `SHOW FIELD
/// KEYS` / `SHOW TAG KEYS` answers.
/// Field names with every type seen for each (a field's type may differ
/// between shards), and tag names.
type Keys = (BTreeMap<String, BTreeSet<String>>, BTreeSet<String>);

fn keys(field_series: &[Series], tag_series: &[Series]) -> Keys {
    let mut fields: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for s in field_series {
        let key = s.columns.iter().position(|c| c == "fieldKey");
        let ty = s.columns.iter().position(|c| c == "fieldType");
        if let (Some(k), Some(t)) = (key, ty) {
            for row in &s.values {
                if let (Some(Value::String(k)), Some(Value::String(t))) = (row.get(k), row.get(t)) {
                    fields.entry(k.clone()).or_default().insert(t.clone());
                }
            }
        }
    }
    let tags = column(tag_series, "tagKey")
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    (fields, tags)
}

/// The field and tag keys of the whole database.
fn database_keys(client: &Client) -> Result<Keys, ConnectorError> {
    let field_series = client.query_small("SHOW FIELD KEYS")?;
    let tag_series = client.query_small("SHOW TAG KEYS")?;
    Ok(keys(&field_series, &tag_series))
}

/// `time`, the sorted tags and the sorted, typed fields of a measurement.
fn measurement_layout(
    client: &Client,
    database: &str,
    measurement: &str,
) -> Result<Layout, ConnectorError> {
    let from = influxql::quote_ident(measurement);
    let field_series = client.query_small(&format!("SHOW FIELD KEYS FROM {from}"))?;
    let tag_series = client.query_small(&format!("SHOW TAG KEYS FROM {from}"))?;
    let (fields, tags) = keys(&field_series, &tag_series);
    if fields.is_empty() {
        return Err(ConnectorError::Remote {
            what: client.what().to_string(),
            message: format!("measurement '{measurement}' not found in database '{database}'"),
            permanent: true,
        });
    }
    if let Some(both) = fields.keys().find(|f| tags.contains(*f) || *f == "time") {
        return Err(ConnectorError::BadData {
            location: format!("measurement '{measurement}'"),
            message: format!(
                "'{both}' is both a field and a tag (or named time); read it with a query source that aliases it"
            ),
        });
    }
    let mut columns = vec![("time".to_string(), ColumnType::Time)];
    columns.extend(tags.iter().map(|t| (t.clone(), ColumnType::String)));
    for (name, types) in &fields {
        let types: BTreeSet<&str> = types.iter().map(String::as_str).collect();
        columns.push((name.clone(), ColumnType::unify(&types)));
    }
    let tag_names: Vec<String> = tags.into_iter().collect();
    Ok(Layout::new(columns, &tag_names))
}

/// The layout of a query's answer, from its first chunk.
fn query_layout(
    first: &[Series],
    fields: &BTreeMap<String, BTreeSet<String>>,
    tags: &BTreeSet<String>,
) -> Layout {
    let mut names: Vec<String> = vec!["time".to_string()];
    let mut seen: HashSet<String> = names.iter().cloned().collect();
    let mut group_tags = Vec::new();
    for s in first {
        for tag in s.tags.keys() {
            if seen.insert(tag.clone()) {
                names.push(tag.clone());
                group_tags.push(tag.clone());
            }
        }
    }
    for s in first {
        for c in &s.columns {
            if seen.insert(c.clone()) {
                names.push(c.clone());
            }
        }
    }
    let columns = names
        .into_iter()
        .map(|name| {
            let ty = if name == "time" {
                ColumnType::Time
            } else if group_tags.contains(&name) {
                ColumnType::String
            } else if let Some(types) = fields.get(&name) {
                ColumnType::unify(&types.iter().map(String::as_str).collect())
            } else if tags.contains(&name) {
                ColumnType::String
            } else {
                match column(first, &name).find(|v| !v.is_null()) {
                    Some(Value::Bool(_)) => ColumnType::Boolean,
                    Some(Value::Number(_)) => ColumnType::Float,
                    _ => ColumnType::String,
                }
            };
            (name, ty)
        })
        .collect();
    let mut tag_names = group_tags;
    tag_names.extend(tags.iter().cloned());
    Layout::new(columns, &tag_names)
}
