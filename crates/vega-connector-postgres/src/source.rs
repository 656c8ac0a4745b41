//! Batch sources over a server-side cursor.
//!
//! A read opens one connection, starts a `REPEATABLE READ READ ONLY`
//! transaction (one consistent snapshot for the whole read), declares a
//! `NO SCROLL` cursor over the source's query and then fetches
//! `batch_rows` rows per [`BatchSource::next_batch`]: at most one batch of
//! rows is held in memory, whatever the table's size. Rows arrive in
//! PostgreSQL's binary format and are decoded by [`crate::types`].
//!
//! Incremental reads wrap the query:
//!
//! ```sql
//! SELECT *, (cursor)::text, <key text> FROM (<query>) AS vega_src
//! WHERE cursor IS NOT NULL
//!   AND cursor >= $1
//!   AND NOT (cursor = $1 AND (<key text> = ANY($2)) IS TRUE)
//! ORDER BY cursor, key columns
//! ```
//!
//! `$1` is the watermark value, sent as text and parsed by the server as
//! the cursor column's type; `$2` the keys already read at that value. The
//! two extra text columns (not part of the output) give the new watermark
//! exactly as the server prints the values.

use std::sync::Arc;

use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use postgres::types::{to_sql_checked, Format, IsNull, ToSql, Type};
use postgres::{Client, Row, Statement};
use serde_json::Value;
use vega_connectors::{BatchSource, ConnectorError, IncrementalSource, Watermark};

use crate::config::{invalid, quote_ident, PostgresSource};
use crate::connect::{map_error, Connection};
use crate::types::{ColumnType, Raw, Scalar};

/// The cursor's name inside the read's transaction.
const CURSOR: &str = "vega_read";

/// A result column: its name and Arrow-side type.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub ty: ColumnType,
    pub pg_type: Type,
}

/// Describes the source's query: its columns mapped to Arrow. Fails on a
/// missing table or bad SQL (permanent [`ConnectorError::Remote`]), an
/// unsupported type ([`ConnectorError::Unsupported`]) or a duplicated
/// column name.
pub fn describe(
    conn: &mut Connection,
    source: &PostgresSource,
) -> Result<Vec<Column>, ConnectorError> {
    let sql = source.relation.select_sql();
    let stmt = conn
        .client
        .prepare(&sql)
        .map_err(|e| map_error(&conn.what, e))?;
    let mut columns: Vec<Column> = Vec::with_capacity(stmt.columns().len());
    for c in stmt.columns() {
        if columns.iter().any(|x| x.name == c.name()) {
            return Err(invalid(
                "query",
                format!(
                    "the column name '{}' appears twice in the {}; give each column a distinct name",
                    c.name(),
                    source.relation.describe()
                ),
            ));
        }
        columns.push(Column {
            name: c.name().to_string(),
            ty: ColumnType::from_pg(c.name(), c.type_(), c.type_modifier())?,
            pg_type: c.type_().clone(),
        });
    }
    Ok(columns)
}

/// How a cursor value is written in a watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CursorKind {
    Integer,
    Float,
    Text,
}

fn cursor_kind(column: &Column) -> Result<CursorKind, ConnectorError> {
    match column.ty {
        ColumnType::Scalar(Scalar::Int2 | Scalar::Int4 | Scalar::Int8) => Ok(CursorKind::Integer),
        ColumnType::Scalar(Scalar::Float4 | Scalar::Float8) => Ok(CursorKind::Float),
        ColumnType::Scalar(
            Scalar::Text
            | Scalar::Date
            | Scalar::Time
            | Scalar::Timestamp
            | Scalar::Timestamptz
            | Scalar::Interval
            | Scalar::Uuid
            | Scalar::Decimal { .. }
            | Scalar::NumericText,
        ) => Ok(CursorKind::Text),
        _ => Err(invalid(
            "cursor_column",
            format!(
                "column '{}' has type {}, which cannot order an incremental read; use an integer, numeric, text, date or timestamp column",
                column.name,
                column.pg_type.name()
            ),
        )),
    }
}

fn find_column<'a>(
    columns: &'a [Column],
    field: &str,
    name: &str,
) -> Result<&'a Column, ConnectorError> {
    columns.iter().find(|c| c.name == name).ok_or_else(|| {
        let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
        invalid(
            field,
            format!(
                "no column '{name}' in the source; its columns are: {}",
                names.join(", ")
            ),
        )
    })
}

/// Checks the incremental settings against the described columns.
pub fn check_incremental(
    columns: &[Column],
    source: &PostgresSource,
) -> Result<(), ConnectorError> {
    let (cursor, keys) = source.incremental_columns()?;
    cursor_kind(find_column(columns, "cursor_column", cursor)?)?;
    for (i, k) in keys.iter().enumerate() {
        find_column(columns, &format!("key_columns[{i}]"), k)?;
    }
    Ok(())
}

/// A parameter sent in text format, parsed by the server as whatever type
/// it infers for the placeholder.
#[derive(Debug)]
struct TextParam(String);

impl ToSql for TextParam {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    fn encode_format(&self, _ty: &Type) -> Format {
        Format::Text
    }

    to_sql_checked!();
}

/// The incremental part of a read: what the watermark was and is.
#[derive(Debug)]
struct Tracker {
    kind: CursorKind,
    /// The highest cursor value read (or the starting watermark's), as text.
    value: Option<String>,
    keys: Vec<String>,
}

/// Reads a PostgreSQL query through a server-side cursor, one bounded batch
/// at a time.
pub struct PostgresBatchSource {
    /// `None` once the read finished or failed.
    client: Option<Client>,
    fetch: Option<Statement>,
    what: String,
    columns: Vec<Column>,
    schema: SchemaRef,
    batch_rows: usize,
    tracker: Option<Tracker>,
    failed: Option<String>,
}

impl std::fmt::Debug for PostgresBatchSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresBatchSource")
            .field("what", &self.what)
            .field("schema", &self.schema)
            .field("batch_rows", &self.batch_rows)
            .finish_non_exhaustive()
    }
}

impl PostgresBatchSource {
    /// Opens a read: everything (`since == None`) or what is new since a
    /// watermark.
    pub fn open(
        mut conn: Connection,
        source: &PostgresSource,
        since: Option<&Watermark>,
    ) -> Result<Self, ConnectorError> {
        let what = conn.what.clone();
        let err = |e| map_error(&what, e);
        conn.client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .map_err(err)?;
        let columns = describe(&mut conn, source)?;
        let base = source.relation.select_sql();

        let tracker = match since {
            None => {
                let sql = format!("DECLARE {CURSOR} NO SCROLL CURSOR FOR {base}");
                conn.client.execute(sql.as_str(), &[]).map_err(err)?;
                None
            }
            Some(since) => {
                check_incremental(&columns, source)?;
                let (cursor, keys) = source.incremental_columns()?;
                let kind = cursor_kind(find_column(&columns, "cursor_column", cursor)?)?;
                let c = format!("vega_src.{}", quote_ident(cursor));
                let key_text = if keys.len() == 1 {
                    format!("(vega_src.{})::text", quote_ident(&keys[0]))
                } else {
                    let list: Vec<String> = keys
                        .iter()
                        .map(|k| format!("vega_src.{}", quote_ident(k)))
                        .collect();
                    format!("json_build_array({})::text", list.join(", "))
                };
                let order: Vec<String> = std::iter::once(c.clone())
                    .chain(keys.iter().map(|k| format!("vega_src.{}", quote_ident(k))))
                    .collect();
                let start = watermark_text(since)?;
                let mut sql = format!(
                    "DECLARE {CURSOR} NO SCROLL CURSOR FOR SELECT vega_src.*, ({c})::text AS vega_cursor_text, {key_text} AS vega_key_text FROM ({base}) AS vega_src WHERE {c} IS NOT NULL"
                );
                if start.is_some() {
                    sql.push_str(&format!(
                        " AND {c} >= $1 AND NOT ({c} = $1 AND ({key_text} = ANY($2)) IS TRUE)"
                    ));
                }
                sql.push_str(&format!(" ORDER BY {}", order.join(", ")));
                match &start {
                    Some(value) => {
                        let p1 = TextParam(value.clone());
                        conn.client
                            .execute(sql.as_str(), &[&p1, &since.keys_at_value])
                            .map_err(err)?;
                    }
                    None => {
                        conn.client.execute(sql.as_str(), &[]).map_err(err)?;
                    }
                }
                Some(Tracker {
                    kind,
                    keys: if start.is_some() {
                        since.keys_at_value.clone()
                    } else {
                        Vec::new()
                    },
                    value: start,
                })
            }
        };
        let fetch = conn
            .client
            .prepare(&format!(
                "FETCH FORWARD {} FROM {CURSOR}",
                source.batch_rows
            ))
            .map_err(err)?;
        let extra = if tracker.is_some() { 2 } else { 0 };
        if fetch.columns().len() != columns.len() + extra {
            return Err(ConnectorError::Internal {
                message: format!(
                    "the cursor returns {} columns, expected {}",
                    fetch.columns().len(),
                    columns.len() + extra
                ),
            });
        }
        let schema = Arc::new(Schema::new(
            columns
                .iter()
                .map(|c| Field::new(&c.name, c.ty.data_type(), true))
                .collect::<Vec<_>>(),
        ));
        Ok(PostgresBatchSource {
            client: Some(conn.client),
            fetch: Some(fetch),
            what,
            columns,
            schema,
            batch_rows: source.batch_rows,
            tracker,
            failed: None,
        })
    }

    fn fetch_batch(&mut self) -> Result<Option<RecordBatch>, ConnectorError> {
        let (Some(client), Some(fetch)) = (self.client.as_mut(), self.fetch.as_ref()) else {
            return Ok(None);
        };
        let rows = client
            .query(fetch, &[])
            .map_err(|e| map_error(&self.what, e))?;
        if rows.is_empty() {
            // The end: close the transaction, then the connection.
            let result = client.batch_execute("COMMIT");
            self.fetch = None;
            self.client = None;
            result.map_err(|e| map_error(&self.what, e))?;
            return Ok(None);
        }
        let batch = self.to_batch(&rows)?;
        if let Some(tracker) = self.tracker.as_mut() {
            let n = self.columns.len();
            for row in &rows {
                let cursor = text_at(row, n, "cursor")?;
                let key = text_at(row, n + 1, "key")?;
                if tracker.value.as_deref() != Some(cursor.as_str()) {
                    tracker.value = Some(cursor);
                    tracker.keys.clear();
                }
                tracker.keys.push(key);
            }
        }
        Ok(Some(batch))
    }

    fn to_batch(&self, rows: &[Row]) -> Result<RecordBatch, ConnectorError> {
        let mut arrays = Vec::with_capacity(self.columns.len());
        for (i, column) in self.columns.iter().enumerate() {
            let bad = |message: String| ConnectorError::BadData {
                location: format!("column '{}' ({})", column.name, column.pg_type.name()),
                message,
            };
            let mut builder = column.ty.builder(rows.len());
            for row in rows {
                let raw: Raw<'_> = row.try_get(i).map_err(|e| bad(e.to_string()))?;
                builder.append(raw.0).map_err(bad)?;
            }
            arrays.push(builder.finish().map_err(bad)?);
        }
        RecordBatch::try_new(self.schema.clone(), arrays).map_err(|e| ConnectorError::Internal {
            message: format!("building a batch: {e}"),
        })
    }
}

fn text_at(row: &Row, i: usize, what: &str) -> Result<String, ConnectorError> {
    let raw: Raw<'_> = row.try_get(i).map_err(|e| ConnectorError::Internal {
        message: format!("reading the {what} text: {e}"),
    })?;
    let bytes = raw.0.ok_or_else(|| ConnectorError::BadData {
        location: format!("incremental {what}"),
        message: "NULL where a value was expected".into(),
    })?;
    String::from_utf8(bytes.to_vec()).map_err(|_| ConnectorError::BadData {
        location: format!("incremental {what}"),
        message: "not valid UTF-8".into(),
    })
}

/// The watermark's value as the text sent to the server.
fn watermark_text(since: &Watermark) -> Result<Option<String>, ConnectorError> {
    match &since.value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid("watermark.value", "must be a number or a string")),
    }
}

impl BatchSource for PostgresBatchSource {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>, ConnectorError> {
        if let Some(message) = &self.failed {
            return Err(ConnectorError::Internal {
                message: format!("the read already failed: {message}"),
            });
        }
        match self.fetch_batch() {
            Ok(b) => Ok(b),
            Err(e) => {
                self.failed = Some(e.to_string());
                self.fetch = None;
                self.client = None;
                Err(e)
            }
        }
    }
}

impl IncrementalSource for PostgresBatchSource {
    fn watermark(&self) -> Watermark {
        let Some(tracker) = &self.tracker else {
            return Watermark::default();
        };
        let value = tracker.value.as_ref().map(|v| match tracker.kind {
            CursorKind::Integer => v
                .parse::<i64>()
                .map(Value::from)
                .unwrap_or_else(|_| Value::String(v.clone())),
            CursorKind::Float => v
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .unwrap_or_else(|| Value::String(v.clone())),
            CursorKind::Text => Value::String(v.clone()),
        });
        Watermark {
            value,
            keys_at_value: tracker.keys.clone(),
        }
    }
}
