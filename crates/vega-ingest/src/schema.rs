//! The columns of a stream asset and how points become Arrow rows: `time`
//! (nanoseconds, no time zone: UTC by convention) first, then tags
//! (strings) and fields (typed) in the order they first appeared. A key
//! keeps its type for the life of the asset: a later point that gives it
//! another type is rejected, naming both types.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder,
    TimestampNanosecondArray, UInt64Builder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use vega_core::{FieldValue, Point};

/// The time column of every stream asset.
pub const TIME_COLUMN: &str = "time";
/// Names Vega uses itself and refuses as tag or field keys.
pub const RESERVED: &[&str] = &[TIME_COLUMN, "_seq"];

pub fn time_type() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, None)
}

fn field_type(v: &FieldValue) -> DataType {
    match v {
        FieldValue::Float(_) => DataType::Float64,
        FieldValue::Integer(_) => DataType::Int64,
        FieldValue::UInteger(_) => DataType::UInt64,
        FieldValue::String(_) => DataType::Utf8,
        FieldValue::Boolean(_) => DataType::Boolean,
    }
}

/// The line-protocol name of a column type, for error messages.
fn type_word(t: &DataType) -> &'static str {
    match t {
        DataType::Float64 => "float",
        DataType::Int64 => "integer",
        DataType::UInt64 => "unsigned",
        DataType::Utf8 => "string",
        DataType::Boolean => "boolean",
        DataType::Timestamp(_, _) => "time",
        _ => "other",
    }
}

/// The columns of one stream asset.
#[derive(Debug, Clone, Default)]
pub struct AssetSchema {
    columns: Vec<(String, DataType)>,
    index: HashMap<String, usize>,
}

impl AssetSchema {
    /// A new asset's schema: just `time`.
    pub fn new() -> Self {
        let mut s = Self::default();
        s.push(TIME_COLUMN.to_string(), time_type());
        s
    }

    /// The schema of the asset's active version; `time` is added when the
    /// version lacks it.
    pub fn from_arrow(schema: &Schema) -> Self {
        let mut s = Self::default();
        if schema.field_with_name(TIME_COLUMN).is_err() {
            s.push(TIME_COLUMN.to_string(), time_type());
        }
        for f in schema.fields() {
            s.push(f.name().clone(), f.data_type().clone());
        }
        s
    }

    /// Adds the columns of `schema` this one lacks (another node's writes
    /// brought them): later points are checked against them too.
    pub fn absorb(&mut self, schema: &Schema) {
        for f in schema.fields() {
            if self.find(f.name()).is_none() {
                self.push(f.name().clone(), f.data_type().clone());
            }
        }
    }

    fn push(&mut self, name: String, t: DataType) {
        self.index.insert(name.to_lowercase(), self.columns.len());
        self.columns.push((name, t));
    }

    /// The column named `key`, compared without case: SQL names are
    /// case-insensitive, so `Host` and `host` cannot both be columns.
    fn find(&self, key: &str) -> Option<usize> {
        if key.bytes().any(|b| b.is_ascii_uppercase()) || !key.is_ascii() {
            self.index.get(&key.to_lowercase()).copied()
        } else {
            self.index.get(key).copied()
        }
    }

    pub fn len(&self) -> usize {
        self.columns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    /// Checks a point against the columns, adding the new keys it brings.
    /// On a conflict nothing is added and the reason names the key and
    /// both types.
    pub fn admit(&mut self, asset: &str, point: &Point) -> Result<(), String> {
        let mut new: Vec<(String, DataType)> = Vec::new();
        let tags = point.tags.iter().map(|(k, _)| (k, DataType::Utf8, "tag"));
        let fields = point
            .fields
            .iter()
            .map(|(k, v)| (k, field_type(v), "field"));
        for (key, t, what) in tags.chain(fields) {
            if RESERVED.contains(&key.as_str()) {
                return Err(format!("{what} key '{key}' is reserved"));
            }
            match self.find(key) {
                Some(i) if self.columns[i].0 != *key => {
                    return Err(format!(
                        "{what} '{key}' clashes with column '{}' of asset {asset} (column names ignore case)",
                        self.columns[i].0
                    ))
                }
                Some(i) if self.columns[i].1 == t => {}
                Some(i) => {
                    return Err(format!(
                        "{what} '{key}' is {} here but {} in asset {asset}",
                        type_word(&t),
                        type_word(&self.columns[i].1)
                    ))
                }
                None => match new.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)) {
                    Some((k, _)) if k != key => {
                        return Err(format!(
                            "keys '{k}' and '{key}' differ only in case (column names ignore case)"
                        ))
                    }
                    Some((_, existing)) if *existing != t => {
                        return Err(format!("key '{key}' is used twice with different types"))
                    }
                    Some(_) => {}
                    None => new.push((key.clone(), t)),
                },
            }
        }
        for (k, t) in new {
            self.push(k, t);
        }
        Ok(())
    }

    /// The Arrow schema of all columns (every column nullable but `time`).
    pub fn arrow(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|(n, t)| Field::new(n, t.clone(), n != TIME_COLUMN))
                .collect::<Vec<_>>(),
        ))
    }

    /// Rows for `points` (each already admitted), with only the columns
    /// the points use, in schema order. One pass over the points' keys.
    pub fn batch(&self, points: &[Point]) -> Result<RecordBatch, arrow::error::ArrowError> {
        let n = points.len();
        let mut builders: Vec<Option<ColumnBuilder>> =
            (0..self.columns.len()).map(|_| None).collect();
        for (row, p) in points.iter().enumerate() {
            for (k, v) in &p.tags {
                self.builder(&mut builders, k, n)?.put(row, Value::Str(v))?;
            }
            for (k, v) in &p.fields {
                self.builder(&mut builders, k, n)?
                    .put(row, Value::Field(v))?;
            }
        }
        let mut fields = Vec::new();
        let mut arrays: Vec<ArrayRef> = Vec::new();
        for ((name, t), builder) in self.columns.iter().zip(builders) {
            if name == TIME_COLUMN {
                fields.push(Field::new(name, t.clone(), false));
                arrays.push(Arc::new(TimestampNanosecondArray::from_iter_values(
                    points.iter().map(|p| p.time_ns),
                )));
            } else if let Some(b) = builder {
                fields.push(Field::new(name, t.clone(), true));
                arrays.push(b.finish(n));
            }
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
    }

    fn builder<'b>(
        &self,
        builders: &'b mut [Option<ColumnBuilder>],
        key: &str,
        rows: usize,
    ) -> Result<&'b mut ColumnBuilder, arrow::error::ArrowError> {
        let i = self.find(key).ok_or_else(|| {
            arrow::error::ArrowError::SchemaError(format!("key {key} was not admitted"))
        })?;
        if builders[i].is_none() {
            builders[i] = Some(ColumnBuilder::new(
                &self.columns[i].0,
                &self.columns[i].1,
                rows,
            )?);
        }
        builders[i]
            .as_mut()
            .ok_or_else(|| arrow::error::ArrowError::SchemaError("no builder".into()))
    }
}

enum Value<'a> {
    Str(&'a str),
    Field(&'a FieldValue),
}

/// One column being built; `filled` rows so far (missing rows are NULLs).
struct ColumnBuilder {
    filled: usize,
    kind: Kind,
}

enum Kind {
    Utf8(StringBuilder),
    Float(Float64Builder),
    Int(Int64Builder),
    UInt(UInt64Builder),
    Bool(BooleanBuilder),
}

impl ColumnBuilder {
    fn new(name: &str, t: &DataType, n: usize) -> Result<Self, arrow::error::ArrowError> {
        let kind = match t {
            DataType::Utf8 => Kind::Utf8(StringBuilder::with_capacity(n, n * 8)),
            DataType::Float64 => Kind::Float(Float64Builder::with_capacity(n)),
            DataType::Int64 => Kind::Int(Int64Builder::with_capacity(n)),
            DataType::UInt64 => Kind::UInt(UInt64Builder::with_capacity(n)),
            DataType::Boolean => Kind::Bool(BooleanBuilder::with_capacity(n)),
            other => {
                return Err(arrow::error::ArrowError::SchemaError(format!(
                    "column {name} has type {other}, which points cannot fill"
                )))
            }
        };
        Ok(Self { filled: 0, kind })
    }

    fn nulls(&mut self, count: usize) {
        match &mut self.kind {
            Kind::Utf8(b) => b.append_nulls(count),
            Kind::Float(b) => b.append_nulls(count),
            Kind::Int(b) => b.append_nulls(count),
            Kind::UInt(b) => b.append_nulls(count),
            Kind::Bool(b) => b.append_nulls(count),
        }
        self.filled += count;
    }

    fn put(&mut self, row: usize, v: Value<'_>) -> Result<(), arrow::error::ArrowError> {
        if row < self.filled {
            // A key given twice in one point: the first value stands.
            return Ok(());
        }
        self.nulls(row - self.filled);
        match (&mut self.kind, v) {
            (Kind::Utf8(b), Value::Str(s)) => b.append_value(s),
            (Kind::Utf8(b), Value::Field(FieldValue::String(s))) => b.append_value(s),
            (Kind::Float(b), Value::Field(FieldValue::Float(x))) => b.append_value(*x),
            (Kind::Int(b), Value::Field(FieldValue::Integer(x))) => b.append_value(*x),
            (Kind::UInt(b), Value::Field(FieldValue::UInteger(x))) => b.append_value(*x),
            (Kind::Bool(b), Value::Field(FieldValue::Boolean(x))) => b.append_value(*x),
            _ => {
                return Err(arrow::error::ArrowError::SchemaError(
                    "a value does not match its admitted column type".into(),
                ))
            }
        }
        self.filled += 1;
        Ok(())
    }

    fn finish(mut self, rows: usize) -> ArrayRef {
        self.nulls(rows - self.filled);
        match self.kind {
            Kind::Utf8(mut b) => Arc::new(b.finish()),
            Kind::Float(mut b) => Arc::new(b.finish()),
            Kind::Int(mut b) => Arc::new(b.finish()),
            Kind::UInt(mut b) => Arc::new(b.finish()),
            Kind::Bool(mut b) => Arc::new(b.finish()),
        }
    }
}

/// A rough size of a point in memory, for the buffer's byte bound.
pub fn point_bytes(p: &Point) -> u64 {
    let tags: usize = p.tags.iter().map(|(k, v)| k.len() + v.len() + 16).sum();
    let fields: usize = p
        .fields
        .iter()
        .map(|(k, v)| {
            k.len()
                + 16
                + match v {
                    FieldValue::String(s) => s.len(),
                    _ => 8,
                }
        })
        .sum();
    (tags + fields + 8) as u64
}

/// `batch` with exactly `schema`'s columns, in its order (missing ones as
/// NULLs), so batches written at different times concatenate.
pub fn conform(
    batch: &RecordBatch,
    schema: &SchemaRef,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let arrays = schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(a) => a.clone(),
            None => arrow::array::new_null_array(f.data_type(), batch.num_rows()),
        })
        .collect();
    RecordBatch::try_new(schema.clone(), arrays)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(tags: &[(&str, &str)], fields: Vec<(&str, FieldValue)>, t: i64) -> Point {
        Point {
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            fields: fields
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            time_ns: t,
        }
    }

    #[test]
    fn points_become_typed_columns_with_time_first() {
        let mut s = AssetSchema::new();
        let pts = vec![
            point(&[("host", "a")], vec![("u", FieldValue::Float(1.5))], 10),
            point(&[], vec![("n", FieldValue::Integer(3))], 20),
        ];
        for p in &pts {
            s.admit("t.cpu", p).unwrap();
        }
        let b = s.batch(&pts).unwrap();
        let names: Vec<_> = b
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(names, ["time", "host", "u", "n"]);
        assert_eq!(b.num_rows(), 2);
        assert_eq!(b.column(1).null_count(), 1);
        assert_eq!(b.column(3).data_type(), &DataType::Int64);
    }

    #[test]
    fn a_type_conflict_names_the_key_and_both_types_and_adds_nothing() {
        let mut s = AssetSchema::new();
        s.admit("t.cpu", &point(&[], vec![("u", FieldValue::Float(1.0))], 1))
            .unwrap();
        let err = s
            .admit(
                "t.cpu",
                &point(&[("new_tag", "x")], vec![("u", FieldValue::Integer(1))], 1),
            )
            .unwrap_err();
        assert_eq!(err, "field 'u' is integer here but float in asset t.cpu");
        assert_eq!(
            s.len(),
            2,
            "the new tag of the rejected point was not added"
        );
    }

    #[test]
    fn a_tag_and_a_field_of_the_same_name_conflict_unless_both_strings() {
        let mut s = AssetSchema::new();
        s.admit(
            "t.m",
            &point(&[("k", "v")], vec![("f", FieldValue::Boolean(true))], 1),
        )
        .unwrap();
        assert!(s
            .admit("t.m", &point(&[], vec![("k", FieldValue::Float(1.0))], 1))
            .is_err());
        assert!(s
            .admit(
                "t.m",
                &point(&[], vec![("k", FieldValue::String("s".into()))], 1)
            )
            .is_ok());
    }

    #[test]
    fn keys_that_differ_only_in_case_are_refused() {
        let mut s = AssetSchema::new();
        s.admit(
            "t.m",
            &point(&[("host", "a")], vec![("v", FieldValue::Float(1.0))], 1),
        )
        .unwrap();
        let err = s
            .admit(
                "t.m",
                &point(&[("Host", "a")], vec![("v", FieldValue::Float(1.0))], 1),
            )
            .unwrap_err();
        assert!(err.contains("clashes with column 'host'"), "{err}");
        assert!(s
            .admit(
                "t.m",
                &point(&[], vec![("Time", FieldValue::Float(1.0))], 1)
            )
            .is_err());
    }

    #[test]
    fn conform_pads_missing_columns_with_nulls() {
        let mut s = AssetSchema::new();
        let a = point(&[], vec![("x", FieldValue::Float(1.0))], 1);
        let b = point(&[], vec![("y", FieldValue::Boolean(true))], 2);
        s.admit("t.m", &a).unwrap();
        let first = s.batch(std::slice::from_ref(&a)).unwrap();
        s.admit("t.m", &b).unwrap();
        let all = conform(&first, &s.arrow()).unwrap();
        assert_eq!(all.num_columns(), 3);
        assert_eq!(all.column(2).null_count(), 1);
    }
}
