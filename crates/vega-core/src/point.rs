//! The unit of streamed data: a point (tags, typed fields, a time in
//! nanoseconds since the Unix epoch). Line protocol and MQTT payloads are
//! both turned into points; the buffer turns points into Arrow rows.

/// A field's value, with the five types of InfluxDB line protocol.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    Float(f64),
    Integer(i64),
    UInteger(u64),
    String(String),
    Boolean(bool),
}

impl FieldValue {
    /// The type's name as error messages and the API say it.
    pub fn type_name(&self) -> &'static str {
        match self {
            FieldValue::Float(_) => "float",
            FieldValue::Integer(_) => "integer",
            FieldValue::UInteger(_) => "unsigned",
            FieldValue::String(_) => "string",
            FieldValue::Boolean(_) => "boolean",
        }
    }
}

/// One row to ingest.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// Tag key → value, in the order given; become string columns.
    pub tags: Vec<(String, String)>,
    /// Field key → value, in the order given; at least one.
    pub fields: Vec<(String, FieldValue)>,
    /// Nanoseconds since 1970-01-01T00:00:00Z.
    pub time_ns: i64,
}
