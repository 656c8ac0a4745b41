//! Batch sources over chunked InfluxDB answers.
//!
//! A [`Layout`] fixes the Arrow schema before the first batch: `time` as
//! `Timestamp(ns, "UTC")` (never null), then tags as `Utf8`, then fields by
//! their InfluxDB type (float → `Float64`, integer → `Int64`, string →
//! `Utf8`, boolean → `Boolean`); every column but `time` is nullable, so
//! sparse fields stay NULL. Series grouped by tags are flattened: the
//! series' tag values fill the tag columns of each of its rows (an empty
//! tag value is NULL, as InfluxDB treats it as absent).
//!
//! Rows are read one chunk at a time and emitted in batches of at most
//! `chunk_size` rows, so memory is bounded by the chunk size, not by the
//! size of the measurement.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder,
    TimestampNanosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use serde_json::Value;
use vega_connectors::{BatchSource, ConnectorError, IncrementalSource, Watermark};

use crate::client::{Chunks, Series};
use crate::influxql;

/// The type of one output column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// The point's time, nanoseconds since the epoch, UTC.
    Time,
    Float,
    Integer,
    /// Text. Tags are text; a field whose type differs between shards
    /// (other than integer/float) is read as text too.
    String,
    Boolean,
}

impl ColumnType {
    /// The type named by `SHOW FIELD KEYS` (`float`, `integer`, `string`,
    /// `boolean`, `unsigned`).
    pub fn from_field_type(name: &str) -> Option<Self> {
        match name {
            "float" => Some(ColumnType::Float),
            "integer" | "unsigned" => Some(ColumnType::Integer),
            "string" => Some(ColumnType::String),
            "boolean" => Some(ColumnType::Boolean),
            _ => None,
        }
    }

    /// The one type that holds values of every type in `types`: integer
    /// and float widen to float, other mixes fall back to text.
    pub fn unify(types: &BTreeSet<&str>) -> Self {
        let parsed: BTreeSet<_> = types
            .iter()
            .map(|t| Self::from_field_type(t).unwrap_or(ColumnType::String))
            .map(|t| t as u8)
            .collect();
        let has = |t: ColumnType| parsed.contains(&(t as u8));
        match parsed.len() {
            0 => ColumnType::String,
            1 if has(ColumnType::Float) => ColumnType::Float,
            1 if has(ColumnType::Integer) => ColumnType::Integer,
            1 if has(ColumnType::Boolean) => ColumnType::Boolean,
            2 if has(ColumnType::Float) && has(ColumnType::Integer) => ColumnType::Float,
            _ => ColumnType::String,
        }
    }

    fn data_type(self) -> DataType {
        match self {
            ColumnType::Time => DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            ColumnType::Float => DataType::Float64,
            ColumnType::Integer => DataType::Int64,
            ColumnType::String => DataType::Utf8,
            ColumnType::Boolean => DataType::Boolean,
        }
    }
}

/// The output columns and which of them are tags.
#[derive(Debug, Clone)]
pub struct Layout {
    columns: Vec<(String, ColumnType)>,
    index: HashMap<String, usize>,
    /// Tag columns (name, index), for series keys.
    tags: Vec<(String, usize)>,
    schema: SchemaRef,
}

impl Layout {
    /// A layout of `time`, then `tags`, then `fields`, in the given order.
    /// The first column must be `time`.
    pub fn new(columns: Vec<(String, ColumnType)>, tag_names: &[String]) -> Self {
        let index: HashMap<String, usize> = columns
            .iter()
            .enumerate()
            .map(|(i, (name, _))| (name.clone(), i))
            .collect();
        let tags = tag_names
            .iter()
            .filter_map(|t| index.get(t).map(|i| (t.clone(), *i)))
            .collect();
        let fields: Vec<Field> = columns
            .iter()
            .map(|(name, ty)| Field::new(name, ty.data_type(), *ty != ColumnType::Time))
            .collect();
        Layout {
            columns,
            index,
            tags,
            schema: Arc::new(Schema::new(fields)),
        }
    }

    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn time_index(&self) -> Option<usize> {
        self.index.get("time").copied()
    }
}

/// One row, aligned with the layout's columns.
type Row = Vec<Value>;

/// Turns a chunk's series into aligned rows.
fn flatten(
    layout: &Layout,
    series: Vec<Series>,
    out: &mut VecDeque<Row>,
) -> Result<(), ConnectorError> {
    for s in series {
        let mut positions = Vec::with_capacity(s.columns.len());
        for column in &s.columns {
            let i = layout.index.get(column).copied().ok_or_else(|| {
                ConnectorError::BadData {
                    location: format!("series '{}'", s.name),
                    message: format!(
                        "column '{column}' is not in the schema fixed at the start of the read (columns: {})",
                        layout.columns.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
                    ),
                }
            })?;
            positions.push(i);
        }
        let mut tag_values = Vec::with_capacity(s.tags.len());
        for (tag, value) in &s.tags {
            let i = layout
                .index
                .get(tag)
                .copied()
                .ok_or_else(|| ConnectorError::BadData {
                    location: format!("series '{}'", s.name),
                    message: format!(
                        "tag '{tag}' is not in the schema fixed at the start of the read"
                    ),
                })?;
            let value = if value.is_empty() {
                Value::Null
            } else {
                Value::String(value.clone())
            };
            tag_values.push((i, value));
        }
        for values in s.values {
            if values.len() != positions.len() {
                return Err(ConnectorError::BadData {
                    location: format!("series '{}'", s.name),
                    message: format!(
                        "a row has {} values for {} columns",
                        values.len(),
                        positions.len()
                    ),
                });
            }
            let mut row = vec![Value::Null; layout.columns.len()];
            for (i, v) in &tag_values {
                row[*i] = v.clone();
            }
            for (i, v) in positions.iter().zip(values) {
                row[*i] = v;
            }
            out.push_back(row);
        }
    }
    Ok(())
}

enum Builder {
    Time(TimestampNanosecondBuilder),
    Float(Float64Builder),
    Integer(Int64Builder),
    String(StringBuilder),
    Boolean(BooleanBuilder),
}

impl Builder {
    fn new(ty: ColumnType, capacity: usize) -> Self {
        match ty {
            ColumnType::Time => Builder::Time(
                TimestampNanosecondBuilder::with_capacity(capacity).with_timezone("UTC"),
            ),
            ColumnType::Float => Builder::Float(Float64Builder::with_capacity(capacity)),
            ColumnType::Integer => Builder::Integer(Int64Builder::with_capacity(capacity)),
            ColumnType::String => Builder::String(StringBuilder::new()),
            ColumnType::Boolean => Builder::Boolean(BooleanBuilder::with_capacity(capacity)),
        }
    }

    /// Appends `value`; `Err` says what did not fit.
    fn append(&mut self, value: &Value) -> Result<(), String> {
        match (self, value) {
            (Builder::Time(_), Value::Null) => return Err("time is missing".into()),
            (Builder::Time(b), v) => {
                b.append_value(v.as_i64().ok_or("time is not integer nanoseconds")?)
            }
            (Builder::Float(b), Value::Null) => b.append_null(),
            (Builder::Float(b), v) => b.append_value(v.as_f64().ok_or("expected a number")?),
            (Builder::Integer(b), Value::Null) => b.append_null(),
            (Builder::Integer(b), v) => b.append_value(v.as_i64().ok_or("expected an integer")?),
            (Builder::String(b), Value::Null) => b.append_null(),
            (Builder::String(b), Value::String(s)) => b.append_value(s),
            (Builder::String(b), v @ (Value::Number(_) | Value::Bool(_))) => {
                b.append_value(v.to_string())
            }
            (Builder::String(_), _) => return Err("expected text".into()),
            (Builder::Boolean(b), Value::Null) => b.append_null(),
            (Builder::Boolean(b), v) => b.append_value(v.as_bool().ok_or("expected a boolean")?),
        }
        Ok(())
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Time(b) => Arc::new(b.finish()),
            Builder::Float(b) => Arc::new(b.finish()),
            Builder::Integer(b) => Arc::new(b.finish()),
            Builder::String(b) => Arc::new(b.finish()),
            Builder::Boolean(b) => Arc::new(b.finish()),
        }
    }
}

/// Skips rows at the watermark time already read, and tracks the new
/// watermark. Only for measurement sources, whose tag columns are known.
#[derive(Debug, Clone)]
struct Resume {
    measurement: String,
    since_ns: Option<i64>,
    seen_keys: HashSet<String>,
    max_ns: Option<i64>,
    keys_at_max: BTreeSet<String>,
}

/// Reads a chunked answer into batches of at most `chunk_size` rows.
pub struct InfluxSource {
    layout: Layout,
    chunks: Chunks,
    pending: VecDeque<Row>,
    chunk_size: usize,
    location: String,
    resume: Option<Resume>,
    rows_read: u64,
    failed: Option<String>,
}

impl InfluxSource {
    /// A full read. `first` is a chunk already read (to settle a query's
    /// schema), if any.
    pub fn new(
        layout: Layout,
        chunks: Chunks,
        first: Option<Vec<Series>>,
        chunk_size: usize,
        location: String,
    ) -> Result<Self, ConnectorError> {
        let mut pending = VecDeque::new();
        if let Some(series) = first {
            flatten(&layout, series, &mut pending)?;
        }
        Ok(InfluxSource {
            layout,
            chunks,
            pending,
            chunk_size,
            location,
            resume: None,
            rows_read: 0,
            failed: None,
        })
    }

    /// An incremental read of `measurement` from `since_ns` (inclusive),
    /// skipping rows at `since_ns` whose series key is in `seen_keys`.
    pub fn incremental(
        layout: Layout,
        chunks: Chunks,
        chunk_size: usize,
        location: String,
        measurement: String,
        since: Option<(i64, Vec<String>)>,
    ) -> Self {
        let (since_ns, seen) = match since {
            Some((ns, keys)) => (Some(ns), keys),
            None => (None, Vec::new()),
        };
        let keys_at_max: BTreeSet<String> = seen.iter().cloned().collect();
        InfluxSource {
            layout,
            chunks,
            pending: VecDeque::new(),
            chunk_size,
            location,
            resume: Some(Resume {
                measurement,
                since_ns,
                seen_keys: seen.into_iter().collect(),
                max_ns: since_ns,
                keys_at_max,
            }),
            rows_read: 0,
            failed: None,
        }
    }

    /// Queues a chunk already read (a query's first, read to settle its
    /// schema); its rows pass the same watermark filter as the rest.
    pub fn push_first(&mut self, series: Vec<Series>) -> Result<(), ConnectorError> {
        flatten(&self.layout, series, &mut self.pending)
    }

    fn series_key(&self, row: &Row) -> String {
        let measurement = self
            .resume
            .as_ref()
            .map(|r| r.measurement.as_str())
            .unwrap_or("");
        influxql::series_key(
            measurement,
            self.layout
                .tags
                .iter()
                .filter_map(|(name, i)| row[*i].as_str().map(|v| (name.as_str(), v))),
        )
    }

    /// Whether `row` is new; updates the watermark if it is.
    fn admit(&mut self, row: &Row) -> bool {
        if self.resume.is_none() {
            return true;
        }
        let Some(time) = self.layout.time_index().and_then(|i| row[i].as_i64()) else {
            return true; // a bad time fails the append with a clear error
        };
        let key = self.series_key(row);
        let Some(resume) = self.resume.as_mut() else {
            return true;
        };
        if resume.since_ns == Some(time) && resume.seen_keys.contains(&key) {
            return false;
        }
        match resume.max_ns {
            Some(max) if time < max => {}
            Some(max) if time == max => {
                resume.keys_at_max.insert(key);
            }
            _ => {
                resume.max_ns = Some(time);
                resume.keys_at_max.clear();
                resume.keys_at_max.insert(key);
            }
        }
        true
    }

    fn read_batch(&mut self) -> Result<Option<RecordBatch>, ConnectorError> {
        let mut builders: Vec<Builder> = self
            .layout
            .columns
            .iter()
            .map(|(_, ty)| Builder::new(*ty, self.chunk_size.min(8192)))
            .collect();
        let mut rows = 0usize;
        while rows < self.chunk_size {
            let Some(row) = self.pending.pop_front() else {
                match self.chunks.next_chunk()? {
                    Some(series) => {
                        flatten(&self.layout, series, &mut self.pending)?;
                        continue;
                    }
                    None => break,
                }
            };
            if !self.admit(&row) {
                continue;
            }
            for ((builder, value), (name, _)) in
                builders.iter_mut().zip(&row).zip(&self.layout.columns)
            {
                builder
                    .append(value)
                    .map_err(|message| ConnectorError::BadData {
                        location: format!("{} row {}", self.location, self.rows_read + 1),
                        message: format!("column '{name}': {message} (got {value})"),
                    })?;
            }
            rows += 1;
            self.rows_read += 1;
        }
        if rows == 0 {
            return Ok(None);
        }
        let arrays: Vec<ArrayRef> = builders.iter_mut().map(Builder::finish).collect();
        RecordBatch::try_new(self.layout.schema(), arrays)
            .map(Some)
            .map_err(|e| ConnectorError::Internal {
                message: format!("assembling a batch: {e}"),
            })
    }
}

impl BatchSource for InfluxSource {
    fn schema(&self) -> SchemaRef {
        self.layout.schema()
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>, ConnectorError> {
        if let Some(previous) = &self.failed {
            return Err(ConnectorError::BadData {
                location: self.location.clone(),
                message: format!("the read already failed: {previous}"),
            });
        }
        let result = self.read_batch();
        if let Err(e) = &result {
            self.failed = Some(e.to_string());
        }
        result
    }
}

impl IncrementalSource for InfluxSource {
    fn watermark(&self) -> Watermark {
        match self.resume.as_ref() {
            Some(Resume {
                max_ns: Some(ns),
                keys_at_max,
                ..
            }) => Watermark {
                value: Some(crate::watermark::to_value(*ns)),
                keys_at_value: keys_at_max.iter().cloned().collect(),
            },
            _ => Watermark::default(),
        }
    }
}
