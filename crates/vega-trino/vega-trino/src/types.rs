//! Trino types and their Arrow counterparts: [`TrinoType::parse`] reads the
//! `type` of a result column, [`TrinoType::arrow_type`] names the Arrow
//! type it becomes, and [`to_record_batch`] converts the JSON rows of a
//! result.
//!
//! How Trino's JSON carries values, and what they become:
//! numbers for `boolean` and the integer types; numbers or the strings
//! `NaN`, `Infinity`, `-Infinity` for `real` and `double`; decimal text for
//! `decimal(p,s)` (Decimal128); `YYYY-MM-DD` for `date` (Date32);
//! `YYYY-MM-DD HH:MM:SS[.f…]` for `timestamp(p)` and the same followed by a
//! zone (`UTC`, `Europe/Paris`, `+01:00`) for `timestamp(p) with time zone`
//! (Timestamp in microseconds, the latter in UTC); `HH:MM:SS[.f…]` for
//! `time(p)` (Time64 in microseconds); base64 for `varbinary` (Binary).
//! Fractions finer than a microsecond are truncated. `varchar`, `char`,
//! `json`, `uuid` and every other type (`array`, `map`, `row`, intervals,
//! `time with time zone`, `ipaddress`) become Utf8: strings as they are,
//! other JSON values as JSON text.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;

use arrow::array::timezone::Tz;
use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder,
    Float64Builder, Int16Builder, Int32Builder, Int64Builder, Int8Builder, StringBuilder,
    Time64MicrosecondBuilder, TimestampMicrosecondBuilder,
};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use chrono::{NaiveDate, NaiveDateTime, NaiveTime, TimeZone};
use serde_json::Value;

use crate::error::TrinoError;
use crate::protocol::Column;

/// The metadata key of an Arrow field that holds the column's Trino type.
pub const TRINO_TYPE_METADATA_KEY: &str = "trino.type";

/// The widest decimal Arrow's Decimal128 holds (and Trino's maximum).
const MAX_DECIMAL_PRECISION: u8 = 38;

/// The precision of `timestamp with time zone` when Trino omits it (older
/// versions print the type without one): milliseconds, their only precision.
const LEGACY_TIMESTAMP_PRECISION: u8 = 3;

/// Characters of an unconvertible value quoted in an error.
const VALUE_SNIPPET_CHARS: usize = 40;

/// The time zone of converted `timestamp with time zone` values.
const UTC: &str = "UTC";

/// A Trino type, as far as the conversion to Arrow needs to tell them apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrinoType {
    Boolean,
    TinyInt,
    SmallInt,
    Integer,
    BigInt,
    Real,
    Double,
    Decimal {
        precision: u8,
        scale: i8,
    },
    Varchar,
    Char,
    Varbinary,
    Json,
    Uuid,
    Date,
    Time {
        precision: u8,
    },
    Timestamp {
        precision: u8,
    },
    TimestampTz {
        precision: u8,
    },
    /// Any other type (`array(…)`, `map(…)`, `row(…)`, intervals, …),
    /// carried as text; the type as Trino printed it.
    Other(String),
}

impl TrinoType {
    /// Reads a column's `type` (`decimal(10,2)`, `varchar(20)`,
    /// `timestamp(6) with time zone`). Unknown types are [`TrinoType::Other`].
    pub fn parse(text: &str) -> TrinoType {
        let lower = text.trim().to_ascii_lowercase();
        let (base, args, suffix) = split_type(&lower);
        let precision = |default: u8| match args.as_slice() {
            [p] => p.trim().parse::<u8>().ok(),
            [] => Some(default),
            _ => None,
        };
        let parsed = match (base, suffix) {
            ("boolean", "") => Some(TrinoType::Boolean),
            ("tinyint", "") => Some(TrinoType::TinyInt),
            ("smallint", "") => Some(TrinoType::SmallInt),
            ("integer" | "int", "") => Some(TrinoType::Integer),
            ("bigint", "") => Some(TrinoType::BigInt),
            ("real", "") => Some(TrinoType::Real),
            ("double", "") => Some(TrinoType::Double),
            ("decimal", "") => decimal(&args),
            ("varchar", "") => Some(TrinoType::Varchar),
            ("char", "") => Some(TrinoType::Char),
            ("varbinary", "") => Some(TrinoType::Varbinary),
            ("json", "") => Some(TrinoType::Json),
            ("uuid", "") => Some(TrinoType::Uuid),
            ("date", "") => Some(TrinoType::Date),
            ("time", "") => precision(3).map(|precision| TrinoType::Time { precision }),
            ("timestamp", "") => precision(3).map(|precision| TrinoType::Timestamp { precision }),
            ("timestamp", "with time zone") | ("timestamp with time zone", "") => {
                precision(LEGACY_TIMESTAMP_PRECISION)
                    .map(|precision| TrinoType::TimestampTz { precision })
            }
            _ => None,
        };
        parsed.unwrap_or_else(|| TrinoType::Other(text.trim().to_string()))
    }

    /// The Arrow type values of this type become.
    pub fn arrow_type(&self) -> DataType {
        match self {
            TrinoType::Boolean => DataType::Boolean,
            TrinoType::TinyInt => DataType::Int8,
            TrinoType::SmallInt => DataType::Int16,
            TrinoType::Integer => DataType::Int32,
            TrinoType::BigInt => DataType::Int64,
            TrinoType::Real => DataType::Float32,
            TrinoType::Double => DataType::Float64,
            TrinoType::Decimal { precision, scale } => DataType::Decimal128(*precision, *scale),
            TrinoType::Varbinary => DataType::Binary,
            TrinoType::Date => DataType::Date32,
            TrinoType::Time { .. } => DataType::Time64(TimeUnit::Microsecond),
            TrinoType::Timestamp { .. } => DataType::Timestamp(TimeUnit::Microsecond, None),
            TrinoType::TimestampTz { .. } => {
                DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into()))
            }
            TrinoType::Varchar
            | TrinoType::Char
            | TrinoType::Json
            | TrinoType::Uuid
            | TrinoType::Other(_) => DataType::Utf8,
        }
    }
}

/// `decimal(p,s)` when both fit Decimal128.
fn decimal(args: &[&str]) -> Option<TrinoType> {
    let (precision, scale) = match args {
        [p, s] => (p.trim().parse::<u8>().ok()?, s.trim().parse::<i8>().ok()?),
        [p] => (p.trim().parse::<u8>().ok()?, 0),
        _ => return None,
    };
    let fits = (1..=MAX_DECIMAL_PRECISION).contains(&precision)
        && scale >= 0
        && scale.unsigned_abs() <= precision;
    fits.then_some(TrinoType::Decimal { precision, scale })
}

/// Splits `name(arg, arg) suffix` into its name, its top-level arguments
/// and what follows the closing parenthesis.
fn split_type(text: &str) -> (&str, Vec<&str>, &str) {
    let Some(open) = text.find('(') else {
        return (text.trim(), Vec::new(), "");
    };
    let mut depth = 0usize;
    let mut args = Vec::new();
    let mut start = open + 1;
    for (i, c) in text.char_indices().skip_while(|(i, _)| *i < open) {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    args.push(&text[start..i]);
                    return (text[..open].trim(), args, text[i + 1..].trim());
                }
            }
            ',' if depth == 1 => {
                args.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    // Unbalanced: no known type looks like this.
    (text, Vec::new(), "")
}

/// The Arrow schema of `columns`, each field holding its Trino type in its
/// metadata under [`TRINO_TYPE_METADATA_KEY`].
pub fn arrow_schema(columns: &[Column]) -> Schema {
    Schema::new(
        columns
            .iter()
            .map(|c| {
                Field::new(&c.name, TrinoType::parse(&c.data_type).arrow_type(), true)
                    .with_metadata(HashMap::from([(
                        TRINO_TYPE_METADATA_KEY.to_string(),
                        c.data_type.clone(),
                    )]))
            })
            .collect::<Vec<_>>(),
    )
}

/// Converts JSON rows of `columns` into one record batch.
pub fn to_record_batch(columns: &[Column], rows: &[Vec<Value>]) -> Result<RecordBatch, TrinoError> {
    if let Some(row) = rows.iter().find(|r| r.len() != columns.len()) {
        return Err(TrinoError::Protocol(format!(
            "a row has {} values for {} columns",
            row.len(),
            columns.len()
        )));
    }
    let schema = Arc::new(arrow_schema(columns));
    let arrays = columns
        .iter()
        .enumerate()
        .map(|(i, column)| convert_column(column, rows.iter().map(|r| &r[i]), rows.len()))
        .collect::<Result<Vec<_>, _>>()?;
    let options = RecordBatchOptions::new().with_row_count(Some(rows.len()));
    RecordBatch::try_new_with_options(schema, arrays, &options)
        .map_err(|e| TrinoError::Protocol(format!("building the record batch: {e}")))
}

/// Converts one column's values.
fn convert_column<'a>(
    column: &Column,
    values: impl Iterator<Item = &'a Value>,
    len: usize,
) -> Result<ArrayRef, TrinoError> {
    let trino_type = TrinoType::parse(&column.data_type);
    let fail = |value: &Value, why: &str| {
        let mut text = value.to_string();
        if text.chars().count() > VALUE_SNIPPET_CHARS {
            text = text.chars().take(VALUE_SNIPPET_CHARS).collect::<String>() + "…";
        }
        TrinoError::Convert {
            column: column.name.clone(),
            trino_type: column.data_type.clone(),
            message: format!("{why}: {text}"),
        }
    };
    macro_rules! build {
        ($builder:expr, $convert:expr) => {{
            let mut builder = $builder;
            for value in values {
                if value.is_null() {
                    builder.append_null();
                } else {
                    let converted: Option<_> = $convert(value);
                    match converted {
                        Some(v) => builder.append_value(v),
                        None => return Err(fail(value, "not a valid value")),
                    }
                }
            }
            Arc::new(builder.finish()) as ArrayRef
        }};
    }
    let array = match &trino_type {
        TrinoType::Boolean => build!(BooleanBuilder::with_capacity(len), Value::as_bool),
        TrinoType::TinyInt => build!(Int8Builder::with_capacity(len), |v: &Value| v
            .as_i64()
            .and_then(|n| i8::try_from(n).ok())),
        TrinoType::SmallInt => build!(Int16Builder::with_capacity(len), |v: &Value| v
            .as_i64()
            .and_then(|n| i16::try_from(n).ok())),
        TrinoType::Integer => build!(Int32Builder::with_capacity(len), |v: &Value| v
            .as_i64()
            .and_then(|n| i32::try_from(n).ok())),
        TrinoType::BigInt => build!(Int64Builder::with_capacity(len), Value::as_i64),
        TrinoType::Real => build!(Float32Builder::with_capacity(len), |v: &Value| float(v)
            .map(|f| f as f32)),
        TrinoType::Double => build!(Float64Builder::with_capacity(len), float),
        TrinoType::Decimal { precision, scale } => {
            let builder = Decimal128Builder::with_capacity(len)
                .with_precision_and_scale(*precision, *scale)
                .map_err(|e| fail(&Value::Null, &e.to_string()))?;
            build!(builder, |v: &Value| decimal_value(v, *precision, *scale))
        }
        TrinoType::Varbinary => build!(BinaryBuilder::with_capacity(len, len * 16), |v: &Value| v
            .as_str()
            .and_then(crate::base64::decode)),
        TrinoType::Date => build!(Date32Builder::with_capacity(len), |v: &Value| v
            .as_str()
            .and_then(parse_date)),
        TrinoType::Time { .. } => {
            build!(Time64MicrosecondBuilder::with_capacity(len), |v: &Value| v
                .as_str()
                .and_then(parse_time))
        }
        TrinoType::Timestamp { .. } => {
            build!(
                TimestampMicrosecondBuilder::with_capacity(len),
                |v: &Value| v.as_str().and_then(parse_timestamp)
            )
        }
        TrinoType::TimestampTz { .. } => build!(
            TimestampMicrosecondBuilder::with_capacity(len).with_timezone(UTC),
            |v: &Value| v.as_str().and_then(parse_timestamp_tz)
        ),
        TrinoType::Varchar
        | TrinoType::Char
        | TrinoType::Json
        | TrinoType::Uuid
        | TrinoType::Other(_) => {
            build!(StringBuilder::with_capacity(len, len * 16), |v: &Value| {
                Some(match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
            })
        }
    };
    Ok(array)
}

/// A JSON number, or one of the strings Trino uses for values JSON lacks.
fn float(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match s.as_str() {
            "NaN" => Some(f64::NAN),
            "Infinity" => Some(f64::INFINITY),
            "-Infinity" => Some(f64::NEG_INFINITY),
            _ => None,
        },
        _ => None,
    }
}

/// Decimal text (`-12.30`) as the unscaled integer of a `decimal(p,s)`:
/// `None` when it has more fractional digits than the scale or more digits
/// than the precision.
fn decimal_value(value: &Value, precision: u8, scale: i8) -> Option<i128> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let text = text.trim();
    let (negative, digits) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (int_part, frac_part) = digits.split_once('.').unwrap_or((digits, ""));
    let scale = usize::from(scale.unsigned_abs());
    if (int_part.is_empty() && frac_part.is_empty())
        || !int_part
            .bytes()
            .chain(frac_part.bytes())
            .all(|b| b.is_ascii_digit())
        || frac_part.len() > scale
    {
        return None;
    }
    let int_part = int_part.trim_start_matches('0');
    if int_part.len() + scale > usize::from(precision) {
        return None;
    }
    let mut unscaled: i128 = 0;
    let padded = frac_part.bytes().chain(std::iter::repeat(b'0')).take(scale);
    for b in int_part.bytes().chain(padded) {
        unscaled = unscaled
            .checked_mul(10)?
            .checked_add(i128::from(b - b'0'))?;
    }
    Some(if negative { -unscaled } else { unscaled })
}

/// Days since 1970-01-01 of `YYYY-MM-DD`.
fn parse_date(text: &str) -> Option<i32> {
    let date = NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").ok()?;
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1)?;
    i32::try_from((date - epoch).num_days()).ok()
}

/// Splits `…SS.ffffff…` into the part before the fraction and the fraction
/// in microseconds (truncated).
fn split_fraction(text: &str) -> Option<(&str, i64)> {
    let Some((whole, fraction)) = text.split_once('.') else {
        return Some((text, 0));
    };
    if fraction.is_empty() || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let micros = fraction
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(6)
        .fold(0i64, |acc, b| acc * 10 + i64::from(b - b'0'));
    Some((whole, micros))
}

/// Microseconds since midnight of `HH:MM:SS[.f…]`.
fn parse_time(text: &str) -> Option<i64> {
    let (whole, micros) = split_fraction(text.trim())?;
    let time = NaiveTime::parse_from_str(whole, "%H:%M:%S").ok()?;
    let seconds = i64::from(chrono::Timelike::num_seconds_from_midnight(&time));
    Some(seconds * 1_000_000 + micros)
}

/// `YYYY-MM-DD HH:MM:SS[.f…]` as a local date-time and its microseconds.
fn parse_naive(text: &str) -> Option<(NaiveDateTime, i64)> {
    let (whole, micros) = split_fraction(text.trim())?;
    let at = NaiveDateTime::parse_from_str(whole, "%Y-%m-%d %H:%M:%S").ok()?;
    Some((at, micros))
}

/// Microseconds since the epoch of a `timestamp(p)` value (no zone).
fn parse_timestamp(text: &str) -> Option<i64> {
    let (at, micros) = parse_naive(text)?;
    at.and_utc().timestamp_micros().checked_add(micros)
}

/// Microseconds since the epoch (UTC) of a `timestamp(p) with time zone`
/// value: the date, the time, then the zone (`UTC`, a name or an offset).
fn parse_timestamp_tz(text: &str) -> Option<i64> {
    let mut parts = text.trim().splitn(3, ' ');
    let (date, time, zone) = (parts.next()?, parts.next()?, parts.next()?.trim());
    let (at, micros) = parse_naive(&format!("{date} {time}"))?;
    let tz = Tz::from_str(zone).ok()?;
    let local = tz.from_local_datetime(&at).earliest()?;
    local.timestamp_micros().checked_add(micros)
}

#[cfg(test)]
mod tests {
    use arrow::array::{
        Array, BinaryArray, BooleanArray, Date32Array, Decimal128Array, Float32Array, Float64Array,
        Int16Array, Int32Array, Int64Array, Int8Array, StringArray, Time64MicrosecondArray,
        TimestampMicrosecondArray,
    };
    use serde_json::json;

    use super::*;

    fn column(name: &str, data_type: &str) -> Column {
        Column {
            name: name.into(),
            data_type: data_type.into(),
            type_signature: None,
        }
    }

    #[test]
    fn parses_type_names() {
        use TrinoType::*;
        assert_eq!(TrinoType::parse("boolean"), Boolean);
        assert_eq!(TrinoType::parse("integer"), Integer);
        assert_eq!(TrinoType::parse("varchar(20)"), Varchar);
        assert_eq!(TrinoType::parse("char(3)"), Char);
        assert_eq!(
            TrinoType::parse("decimal(10,2)"),
            Decimal {
                precision: 10,
                scale: 2
            }
        );
        assert_eq!(TrinoType::parse("timestamp(6)"), Timestamp { precision: 6 });
        assert_eq!(
            TrinoType::parse("timestamp(3) with time zone"),
            TimestampTz { precision: 3 }
        );
        assert_eq!(
            TrinoType::parse("timestamp with time zone"),
            TimestampTz { precision: 3 }
        );
        assert_eq!(TrinoType::parse("time(3)"), Time { precision: 3 });
        assert_eq!(
            TrinoType::parse("time(3) with time zone"),
            Other("time(3) with time zone".into())
        );
        assert_eq!(
            TrinoType::parse("array(row(a integer, b varchar))"),
            Other("array(row(a integer, b varchar))".into())
        );
        assert_eq!(
            TrinoType::parse("decimal(40,2)"),
            Other("decimal(40,2)".into())
        );
        assert_eq!(
            TrinoType::parse("interval day to second"),
            Other("interval day to second".into())
        );
    }

    #[test]
    fn maps_types_to_arrow() {
        assert_eq!(TrinoType::parse("tinyint").arrow_type(), DataType::Int8);
        assert_eq!(TrinoType::parse("real").arrow_type(), DataType::Float32);
        assert_eq!(
            TrinoType::parse("decimal(38,10)").arrow_type(),
            DataType::Decimal128(38, 10)
        );
        assert_eq!(
            TrinoType::parse("timestamp(3) with time zone").arrow_type(),
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        );
        assert_eq!(
            TrinoType::parse("map(varchar, bigint)").arrow_type(),
            DataType::Utf8
        );
        assert_eq!(TrinoType::parse("varbinary").arrow_type(), DataType::Binary);
    }

    #[test]
    fn converts_every_mapped_type() {
        let columns = vec![
            column("b", "boolean"),
            column("t", "tinyint"),
            column("s", "smallint"),
            column("i", "integer"),
            column("l", "bigint"),
            column("r", "real"),
            column("d", "double"),
            column("m", "decimal(10,2)"),
            column("v", "varchar(5)"),
            column("dt", "date"),
            column("ts", "timestamp(3)"),
            column("tz", "timestamp(6) with time zone"),
            column("tm", "time(3)"),
            column("bin", "varbinary"),
            column("j", "json"),
            column("a", "array(integer)"),
        ];
        let rows = vec![
            vec![
                json!(true),
                json!(-8),
                json!(300),
                json!(70000),
                json!(9007199254740993i64),
                json!(1.5),
                json!("NaN"),
                json!("-12.3"),
                json!("héllo"),
                json!("2024-02-29"),
                json!("2024-02-29 13:45:01.123"),
                json!("2024-02-29 13:45:01.123456 Europe/Paris"),
                json!("13:45:01.5"),
                json!("3q2+7w=="),
                json!("{\"k\":1}"),
                json!([1, 2]),
            ],
            vec![Value::Null; 16],
        ];
        let batch = to_record_batch(&columns, &rows).expect("batch");
        assert_eq!(batch.num_rows(), 2);
        let col = |i: usize| batch.column(i).clone();
        macro_rules! get {
            ($i:expr, $t:ty) => {
                col($i)
                    .as_any()
                    .downcast_ref::<$t>()
                    .expect("array type")
                    .clone()
            };
        }
        assert!(get!(0, BooleanArray).value(0));
        assert_eq!(get!(1, Int8Array).value(0), -8);
        assert_eq!(get!(2, Int16Array).value(0), 300);
        assert_eq!(get!(3, Int32Array).value(0), 70000);
        assert_eq!(get!(4, Int64Array).value(0), 9007199254740993);
        assert_eq!(get!(5, Float32Array).value(0), 1.5);
        assert!(get!(6, Float64Array).value(0).is_nan());
        let m = get!(7, Decimal128Array);
        assert_eq!(m.value(0), -1230);
        assert_eq!(m.value_as_string(0), "-12.30");
        assert_eq!(get!(8, StringArray).value(0), "héllo");
        // 2024-02-29 is day 19782 after the epoch.
        assert_eq!(get!(9, Date32Array).value(0), 19782);
        let ts = get!(10, TimestampMicrosecondArray);
        assert_eq!(ts.value(0), 1_709_214_301_123_000);
        let tz = get!(11, TimestampMicrosecondArray);
        // Paris is UTC+1 in February.
        assert_eq!(tz.value(0), 1_709_210_701_123_456);
        assert_eq!(tz.timezone(), Some("UTC"));
        assert_eq!(
            get!(12, Time64MicrosecondArray).value(0),
            (13 * 3600 + 45 * 60 + 1) * 1_000_000 + 500_000
        );
        assert_eq!(get!(13, BinaryArray).value(0), &[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(get!(14, StringArray).value(0), "{\"k\":1}");
        assert_eq!(get!(15, StringArray).value(0), "[1,2]");
        for i in 0..16 {
            assert!(batch.column(i).is_null(1), "column {i} row 1 is null");
        }
        let field = batch.schema().field(7).clone();
        assert_eq!(
            field
                .metadata()
                .get(TRINO_TYPE_METADATA_KEY)
                .map(String::as_str),
            Some("decimal(10,2)")
        );
    }

    #[test]
    fn decimals_follow_precision_and_scale() {
        assert_eq!(decimal_value(&json!("1"), 5, 2), Some(100));
        assert_eq!(decimal_value(&json!("0.05"), 5, 2), Some(5));
        assert_eq!(decimal_value(&json!("-0.5"), 5, 2), Some(-50));
        assert_eq!(decimal_value(&json!("999.99"), 5, 2), Some(99999));
        assert_eq!(decimal_value(&json!("1000.00"), 5, 2), None);
        assert_eq!(decimal_value(&json!("1.234"), 5, 2), None);
        assert_eq!(decimal_value(&json!("1e3"), 5, 2), None);
        assert_eq!(decimal_value(&json!("."), 5, 2), None);
        assert_eq!(
            decimal_value(&json!("12345678901234567890123456789012345678"), 38, 0),
            Some(12345678901234567890123456789012345678)
        );
    }

    #[test]
    fn timestamps_keep_microseconds_and_zones() {
        assert_eq!(parse_timestamp("1970-01-01 00:00:00"), Some(0));
        assert_eq!(
            parse_timestamp("1970-01-01 00:00:01.123456789012"),
            Some(1_123_456)
        );
        assert_eq!(parse_timestamp("1969-12-31 23:59:59.5"), Some(-500_000));
        assert_eq!(
            parse_timestamp_tz("1970-01-01 01:00:00.000 UTC"),
            Some(3_600_000_000)
        );
        assert_eq!(parse_timestamp_tz("1970-01-01 01:00:00 +01:00"), Some(0));
        assert_eq!(parse_timestamp_tz("1970-01-01 01:00:00 Mars/Olympus"), None);
        assert_eq!(parse_timestamp("2024-13-01 00:00:00"), None);
        assert_eq!(parse_time("00:00:00.000001"), Some(1));
    }

    #[test]
    fn a_bad_value_names_its_column() {
        let columns = vec![column("n", "integer")];
        let err = to_record_batch(&columns, &[vec![json!("x")]]).expect_err("bad value");
        match err {
            TrinoError::Convert {
                column, trino_type, ..
            } => {
                assert_eq!(column, "n");
                assert_eq!(trino_type, "integer");
            }
            other => panic!("unexpected {other:?}"),
        }
        let err = to_record_batch(&columns, &[vec![json!(1), json!(2)]]).expect_err("wide row");
        assert!(matches!(err, TrinoError::Protocol(_)));
        let big = to_record_batch(&[column("t", "tinyint")], &[vec![json!(300)]]);
        assert!(big.is_err());
    }

    #[test]
    fn no_columns_make_an_empty_batch_with_a_row_count() {
        let batch = to_record_batch(&[], &[vec![], vec![]]).expect("batch");
        assert_eq!(batch.num_columns(), 0);
        assert_eq!(batch.num_rows(), 2);
    }
}
