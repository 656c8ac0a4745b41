//! Incremental reads of files that grow (append-only logs, exports that
//! gain rows): the whole file is read and only rows past the watermark are
//! kept. Rows are new when `cursor > watermark.value`, or when
//! `cursor = watermark.value` and their key (the `key_columns`) is not in
//! `watermark.keys_at_value`. The new watermark is the highest cursor seen,
//! with the keys of every row at that value.

use std::collections::BTreeSet;

use arrow::array::{Array, ArrayRef, BooleanArray};
use arrow::compute::filter_record_batch;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::error::ConnectorError;
use crate::{BatchSource, IncrementalSource, Watermark};

/// Wraps a full read of a file and keeps only the rows past a watermark.
pub struct IncrementalFile {
    inner: Box<dyn BatchSource>,
    cursor: usize,
    keys: Vec<usize>,
    cursor_name: String,
    since: Watermark,
    /// The highest cursor value seen (as text for ordering-preserving
    /// comparison of the column's type) and the keys at that value.
    high: Option<CursorValue>,
    keys_at_high: BTreeSet<String>,
}

/// A cursor value with the order of its column's type.
#[derive(Debug, Clone, PartialEq, PartialOrd)]
enum CursorValue {
    Int(i64),
    Float(f64),
    Text(String),
}

impl CursorValue {
    fn to_json(&self) -> serde_json::Value {
        match self {
            CursorValue::Int(i) => serde_json::json!(i),
            CursorValue::Float(f) => serde_json::json!(f),
            CursorValue::Text(s) => serde_json::json!(s),
        }
    }

    fn from_json(v: &serde_json::Value) -> Option<Self> {
        match v {
            serde_json::Value::Number(n) => n
                .as_i64()
                .map(CursorValue::Int)
                .or_else(|| n.as_f64().map(CursorValue::Float)),
            serde_json::Value::String(s) => Some(CursorValue::Text(s.clone())),
            _ => None,
        }
    }
}

impl IncrementalFile {
    pub fn new(
        inner: Box<dyn BatchSource>,
        cursor_column: &str,
        key_columns: &[String],
        since: &Watermark,
    ) -> Result<Self, ConnectorError> {
        let schema = inner.schema();
        let index = |name: &str, field: &str| {
            schema
                .index_of(name)
                .map_err(|_| ConnectorError::InvalidParams {
                    field: field.to_string(),
                    message: format!("the file has no column '{name}'"),
                })
        };
        let cursor = index(cursor_column, "cursor_column")?;
        let keys = key_columns
            .iter()
            .map(|k| index(k, "key_columns"))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            inner,
            cursor,
            keys,
            cursor_name: cursor_column.to_string(),
            since: since.clone(),
            high: since.value.as_ref().and_then(CursorValue::from_json),
            keys_at_high: since.keys_at_value.iter().cloned().collect(),
        })
    }

    fn value_at(
        &self,
        column: &ArrayRef,
        row: usize,
    ) -> Result<Option<CursorValue>, ConnectorError> {
        use arrow::array::AsArray;
        use arrow::datatypes::{DataType, Float64Type, Int64Type};
        if column.is_null(row) {
            return Ok(None);
        }
        Ok(Some(match column.data_type() {
            DataType::Int64 => CursorValue::Int(column.as_primitive::<Int64Type>().value(row)),
            DataType::Float64 => CursorValue::Float(column.as_primitive::<Float64Type>().value(row)),
            DataType::Utf8
            | DataType::Date32
            | DataType::Date64
            | DataType::Timestamp(_, _) => {
                // ISO text orders like the value for dates and timestamps.
                let formatter = ArrayFormatter::try_new(column.as_ref(), &FormatOptions::default())
                    .map_err(|e| ConnectorError::Internal { message: e.to_string() })?;
                CursorValue::Text(formatter.value(row).to_string())
            }
            other => {
                return Err(ConnectorError::InvalidParams {
                    field: "cursor_column".into(),
                    message: format!(
                        "column '{}' has type {other}; a cursor must be an integer, float, text, date or timestamp",
                        self.cursor_name
                    ),
                })
            }
        }))
    }

    fn key_at(&self, batch: &RecordBatch, row: usize) -> Result<String, ConnectorError> {
        let mut parts = Vec::with_capacity(self.keys.len());
        for &k in &self.keys {
            let formatter =
                ArrayFormatter::try_new(batch.column(k).as_ref(), &FormatOptions::default())
                    .map_err(|e| ConnectorError::Internal {
                        message: e.to_string(),
                    })?;
            parts.push(formatter.value(row).to_string());
        }
        Ok(parts.join("\u{1f}"))
    }
}

impl BatchSource for IncrementalFile {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>, ConnectorError> {
        loop {
            let Some(batch) = self.inner.next_batch()? else {
                return Ok(None);
            };
            let since_value = self.since.value.as_ref().and_then(CursorValue::from_json);
            let column = batch.column(self.cursor).clone();
            let mut keep = Vec::with_capacity(batch.num_rows());
            for row in 0..batch.num_rows() {
                let Some(value) = self.value_at(&column, row)? else {
                    keep.push(false);
                    continue;
                };
                let new = match &since_value {
                    None => true,
                    Some(w) if value > *w => true,
                    Some(w) if value == *w => {
                        let key = self.key_at(&batch, row)?;
                        !self.since.keys_at_value.contains(&key)
                    }
                    Some(_) => false,
                };
                keep.push(new);
                if !new {
                    continue;
                }
                let key = self.key_at(&batch, row)?;
                match &self.high {
                    Some(h) if value < *h => {}
                    Some(h) if value == *h => {
                        self.keys_at_high.insert(key);
                    }
                    _ => {
                        self.high = Some(value);
                        self.keys_at_high = BTreeSet::from([key]);
                    }
                }
            }
            let mask = BooleanArray::from(keep);
            let kept =
                filter_record_batch(&batch, &mask).map_err(|e| ConnectorError::Internal {
                    message: e.to_string(),
                })?;
            if kept.num_rows() > 0 {
                return Ok(Some(kept));
            }
        }
    }
}

impl IncrementalSource for IncrementalFile {
    fn watermark(&self) -> Watermark {
        Watermark {
            value: self.high.as_ref().map(CursorValue::to_json),
            keys_at_value: self.keys_at_high.iter().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::file::FileConnector;
    use crate::{Connector, Watermark};

    fn read_all(source: &mut dyn crate::IncrementalSource) -> Vec<i64> {
        use arrow::array::AsArray;
        use arrow::datatypes::Int64Type;
        let mut ids = Vec::new();
        while let Some(batch) = source.next_batch().unwrap() {
            let col = batch.column(0).as_primitive::<Int64Type>();
            ids.extend(col.values().iter().copied());
        }
        ids
    }

    #[test]
    fn rows_sharing_the_watermark_are_neither_lost_nor_duplicated() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let file = root.join("log.csv");
        std::fs::write(&file, "id,ts\n1,10\n2,20\n3,20\n").unwrap();
        let c = FileConnector::new(vec![root.clone()]);
        let params = json!({ "root": root });
        let source = json!({ "path": "log.csv", "cursor_column": "ts", "key_columns": ["id"] });

        let mut first = c
            .open_incremental(&params, &source, &Watermark::default())
            .unwrap();
        assert_eq!(read_all(first.as_mut()), vec![1, 2, 3]);
        let w1 = first.watermark();
        assert_eq!(w1.value, Some(json!(20)));
        assert_eq!(w1.keys_at_value, vec!["2".to_string(), "3".to_string()]);

        // A late row at the watermark's value, and newer rows.
        std::fs::write(&file, "id,ts\n1,10\n2,20\n3,20\n4,20\n5,30\n").unwrap();
        let mut second = c.open_incremental(&params, &source, &w1).unwrap();
        assert_eq!(read_all(second.as_mut()), vec![4, 5]);
        let w2 = second.watermark();
        assert_eq!(w2.value, Some(json!(30)));

        // Nothing new: nothing read, the watermark stays.
        let mut third = c.open_incremental(&params, &source, &w2).unwrap();
        assert!(read_all(third.as_mut()).is_empty());
        assert_eq!(third.watermark(), w2);
    }

    #[test]
    fn a_missing_cursor_column_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::write(root.join("t.csv"), "id\n1\n").unwrap();
        let c = FileConnector::new(vec![root.clone()]);
        let params = json!({ "root": root });
        let err = c
            .open_incremental(
                &params,
                &json!({ "path": "t.csv", "cursor_column": "ts" }),
                &Watermark::default(),
            )
            .err()
            .unwrap();
        assert!(err.to_string().contains("ts"), "{err}");
        let err = c
            .open_incremental(&params, &json!({ "path": "t.csv" }), &Watermark::default())
            .err()
            .unwrap();
        assert!(err.to_string().contains("cursor_column"), "{err}");
    }
}
