//! Arrow helpers shared by the connectors that turn JSON or CSV text into
//! record batches (the file and HTTP connectors): the strict JSON decoder,
//! the treatment of columns whose type could not be inferred, header checks,
//! and Arrow error messages without their kind prefix.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;

use crate::error::ConnectorError;

pub fn json_decoder(
    schema: &SchemaRef,
    batch_size: usize,
) -> Result<arrow::json::reader::Decoder, ConnectorError> {
    arrow::json::ReaderBuilder::new(schema.clone())
        .with_batch_size(batch_size.max(1))
        .with_strict_mode(true)
        .with_coerce_primitive(true)
        .build_decoder()
        .map_err(|e| ConnectorError::Internal {
            message: format!("cannot build a JSON decoder: {}", arrow_message(&e)),
        })
}

/// Columns whose type could not be inferred (all NULL in the sample)
/// become nullable strings, at any depth.
pub fn denull_schema(schema: &Schema) -> Schema {
    let fields: Vec<Field> = schema.fields().iter().map(|f| denull_field(f)).collect();
    Schema::new_with_metadata(fields, schema.metadata().clone())
}

fn denull_field(field: &Field) -> Field {
    let data_type = match field.data_type() {
        DataType::Null => DataType::Utf8,
        DataType::List(inner) => DataType::List(Arc::new(denull_field(inner))),
        DataType::LargeList(inner) => DataType::LargeList(Arc::new(denull_field(inner))),
        DataType::Struct(fields) => {
            DataType::Struct(fields.iter().map(|f| denull_field(f)).collect())
        }
        other => other.clone(),
    };
    let nullable = field.is_nullable() || field.data_type() == &DataType::Null;
    field
        .clone()
        .with_data_type(data_type)
        .with_nullable(nullable)
}

/// Refuses empty and duplicate column names from a header.
pub fn check_column_names(schema: &Schema, location: &str) -> Result<(), ConnectorError> {
    let mut seen = std::collections::HashSet::new();
    for (i, field) in schema.fields().iter().enumerate() {
        if field.name().trim().is_empty() {
            return Err(ConnectorError::bad_data(
                location,
                format!("column {} has an empty name", i + 1),
            ));
        }
        if !seen.insert(field.name().as_str()) {
            return Err(ConnectorError::bad_data(
                location,
                format!("duplicate column name '{}'", field.name()),
            ));
        }
    }
    Ok(())
}

/// The message of an Arrow error without its kind prefix.
pub fn arrow_message(error: &ArrowError) -> String {
    match error {
        ArrowError::JsonError(m)
        | ArrowError::ParseError(m)
        | ArrowError::CsvError(m)
        | ArrowError::SchemaError(m)
        | ArrowError::CastError(m)
        | ArrowError::InvalidArgumentError(m)
        | ArrowError::ComputeError(m) => m.clone(),
        other => other.to_string(),
    }
}
