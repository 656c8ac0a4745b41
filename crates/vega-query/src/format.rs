//! Turns query results into the wire formats of `POST /api/v1/query`:
//! JSON (column names and SQL types, rows as arrays), CSV with a header, and
//! an Arrow IPC stream.

use arrow::datatypes::{DataType, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use serde::Serialize;
use serde_json::Value;

use crate::engine::QueryOutput;
use crate::error::QueryError;

/// A result column as the JSON format describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Column {
    pub name: String,
    /// The SQL type name (`BIGINT`, `VARCHAR`, `TIMESTAMP WITH TIME ZONE` …).
    #[serde(rename = "type")]
    pub sql_type: String,
}

/// The columns of a result.
pub fn columns(schema: &Schema) -> Vec<Column> {
    schema
        .fields()
        .iter()
        .map(|f| Column {
            name: f.name().clone(),
            sql_type: sql_type_name(f.data_type()),
        })
        .collect()
}

/// The SQL name of an Arrow type, as DuckDB would print it.
pub fn sql_type_name(t: &DataType) -> String {
    match t {
        DataType::Null => "NULL".into(),
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int8 => "TINYINT".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INTEGER".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::UInt8 => "UTINYINT".into(),
        DataType::UInt16 => "USMALLINT".into(),
        DataType::UInt32 => "UINTEGER".into(),
        DataType::UInt64 => "UBIGINT".into(),
        DataType::Float16 | DataType::Float32 => "FLOAT".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "VARCHAR".into(),
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => "BLOB".into(),
        DataType::Date32 | DataType::Date64 => "DATE".into(),
        DataType::Time32(_) | DataType::Time64(_) => "TIME".into(),
        DataType::Timestamp(_, Some(_)) => "TIMESTAMP WITH TIME ZONE".into(),
        DataType::Timestamp(TimeUnit::Second, None) => "TIMESTAMP_S".into(),
        DataType::Timestamp(TimeUnit::Millisecond, None) => "TIMESTAMP_MS".into(),
        DataType::Timestamp(TimeUnit::Nanosecond, None) => "TIMESTAMP_NS".into(),
        DataType::Timestamp(_, None) => "TIMESTAMP".into(),
        DataType::Interval(_) | DataType::Duration(_) => "INTERVAL".into(),
        DataType::Decimal32(p, s) | DataType::Decimal64(p, s) | DataType::Decimal128(p, s) => {
            format!("DECIMAL({p},{s})")
        }
        DataType::Decimal256(p, s) => format!("DECIMAL({p},{s})"),
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::ListView(f)
        | DataType::LargeListView(f) => {
            format!("{}[]", sql_type_name(f.data_type()))
        }
        DataType::FixedSizeList(f, n) => format!("{}[{n}]", sql_type_name(f.data_type())),
        DataType::Struct(fields) => {
            let inner: Vec<String> = fields
                .iter()
                .map(|f| format!("{} {}", f.name(), sql_type_name(f.data_type())))
                .collect();
            format!("STRUCT({})", inner.join(", "))
        }
        DataType::Map(f, _) => match f.data_type() {
            DataType::Struct(kv) if kv.len() == 2 => format!(
                "MAP({}, {})",
                sql_type_name(kv[0].data_type()),
                sql_type_name(kv[1].data_type())
            ),
            _ => "MAP".into(),
        },
        DataType::Dictionary(_, value) => sql_type_name(value),
        DataType::Union(_, _) => "UNION".into(),
        DataType::RunEndEncoded(_, values) => sql_type_name(values.data_type()),
    }
}

/// Writes the rows as a JSON array of arrays (one array per row, values in
/// column order) in a single pass over the Arrow columns.
pub fn write_json_rows(output: &QueryOutput, out: &mut Vec<u8>) -> Result<(), QueryError> {
    let options = arrow::json::writer::EncoderOptions::default();
    out.push(b'[');
    let mut first_row = true;
    for batch in &output.batches {
        let schema = batch.schema();
        let mut encoders = Vec::with_capacity(batch.num_columns());
        for (field, column) in schema.fields().iter().zip(batch.columns()) {
            encoders.push(
                arrow::json::writer::make_encoder(field, column.as_ref(), &options)
                    .map_err(|e| QueryError::Internal(format!("encoding JSON: {e}")))?,
            );
        }
        for row in 0..batch.num_rows() {
            if !first_row {
                out.push(b',');
            }
            first_row = false;
            out.push(b'[');
            for (i, encoder) in encoders.iter_mut().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                if encoder.is_null(row) {
                    out.extend_from_slice(b"null");
                } else {
                    encoder.encode(row, out);
                }
            }
            out.push(b']');
        }
    }
    out.push(b']');
    Ok(())
}

/// Rows as JSON values (arrays in column order); for tests and small results.
pub fn json_rows(output: &QueryOutput) -> Result<Vec<Value>, QueryError> {
    let mut bytes = Vec::new();
    write_json_rows(output, &mut bytes)?;
    serde_json::from_slice(&bytes)
        .map_err(|e| QueryError::Internal(format!("re-reading JSON: {e}")))
}

/// CSV with a header line.
pub fn csv(output: &QueryOutput) -> Result<Vec<u8>, QueryError> {
    let mut out = Vec::new();
    {
        let mut writer = arrow::csv::WriterBuilder::new()
            .with_header(true)
            .build(&mut out);
        if output.batches.is_empty() {
            let empty = RecordBatch::new_empty(output.schema.clone());
            writer
                .write(&empty)
                .map_err(|e| QueryError::Internal(format!("encoding CSV: {e}")))?;
        }
        for batch in &output.batches {
            writer
                .write(batch)
                .map_err(|e| QueryError::Internal(format!("encoding CSV: {e}")))?;
        }
    }
    Ok(out)
}

/// An Arrow IPC stream (`application/vnd.apache.arrow.stream`).
pub fn arrow_ipc(output: &QueryOutput) -> Result<Vec<u8>, QueryError> {
    let mut out = Vec::new();
    {
        let mut writer = arrow::ipc::writer::StreamWriter::try_new(&mut out, &output.schema)
            .map_err(|e| QueryError::Internal(format!("encoding Arrow: {e}")))?;
        for batch in &output.batches {
            writer
                .write(batch)
                .map_err(|e| QueryError::Internal(format!("encoding Arrow: {e}")))?;
        }
        writer
            .finish()
            .map_err(|e| QueryError::Internal(format!("encoding Arrow: {e}")))?;
    }
    Ok(out)
}
