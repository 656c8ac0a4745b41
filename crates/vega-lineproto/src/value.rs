//! Unquoted field values (floats, integers, unsigned integers, booleans)
//! and timestamps. Every function here takes the exact token text, checks
//! its shape byte by byte first, and only then converts it, so that the
//! standard library's more liberal number syntax (`+1`, `inf`, `NaN`,
//! `infinity`) never gets through.

use vega_core::FieldValue;

use crate::error::excerpt;
use crate::precision::Precision;

/// The earliest timestamp InfluxDB accepts, in nanoseconds
/// (`i64::MIN + 2`; the two lowest values are reserved there).
pub const MIN_TIME_NS: i64 = i64::MIN + 2;

/// The latest timestamp InfluxDB accepts, in nanoseconds (`i64::MAX - 1`).
pub const MAX_TIME_NS: i64 = i64::MAX - 1;

/// Parses an unquoted field value. The error is a message without the
/// field's name, which the caller adds.
pub(crate) fn parse_unquoted(text: &str) -> Result<FieldValue, String> {
    let bytes = text.as_bytes();
    match bytes.first() {
        Some(b't' | b'T' | b'f' | b'F') => parse_bool(text),
        Some(b'-' | b'0'..=b'9' | b'.') => match bytes.last() {
            Some(b'i') => parse_integer(text),
            Some(b'u') => parse_unsigned(text),
            _ => parse_float(text),
        },
        Some(_) => Err(format!(
            "{} is not a number, a boolean or a double-quoted string",
            excerpt(text)
        )),
        None => Err("missing value".to_owned()),
    }
}

fn parse_bool(text: &str) -> Result<FieldValue, String> {
    match text {
        "t" | "T" | "true" | "True" | "TRUE" => Ok(FieldValue::Boolean(true)),
        "f" | "F" | "false" | "False" | "FALSE" => Ok(FieldValue::Boolean(false)),
        _ => Err(format!(
            "{} is not a boolean (t, T, true, True, TRUE, f, F, false, False, FALSE) \
             nor a double-quoted string",
            excerpt(text)
        )),
    }
}

/// `-?[0-9]+`
fn is_decimal_integer(digits: &[u8]) -> bool {
    let unsigned = match digits.split_first() {
        Some((b'-', rest)) => rest,
        _ => digits,
    };
    !unsigned.is_empty() && unsigned.iter().all(u8::is_ascii_digit)
}

fn parse_integer(text: &str) -> Result<FieldValue, String> {
    let digits = text.strip_suffix('i').unwrap_or(text);
    if !is_decimal_integer(digits.as_bytes()) {
        return Err(format!("{} is not a valid integer", excerpt(text)));
    }
    // The shape is right, so the only possible failure is the range.
    digits.parse::<i64>().map(FieldValue::Integer).map_err(|_| {
        format!(
            "integer {} is out of range ({}..={})",
            excerpt(text),
            i64::MIN,
            i64::MAX
        )
    })
}

fn parse_unsigned(text: &str) -> Result<FieldValue, String> {
    let digits = text.strip_suffix('u').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{} is not a valid unsigned integer", excerpt(text)));
    }
    digits
        .parse::<u64>()
        .map(FieldValue::UInteger)
        .map_err(|_| {
            format!(
                "unsigned integer {} is out of range (0..={})",
                excerpt(text),
                u64::MAX
            )
        })
}

fn parse_float(text: &str) -> Result<FieldValue, String> {
    let shape_ok = text
        .bytes()
        .all(|b| matches!(b, b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-'));
    let parsed = if shape_ok {
        text.parse::<f64>().ok()
    } else {
        None
    };
    match parsed {
        Some(v) if v.is_finite() => Ok(FieldValue::Float(v)),
        Some(_) => Err(format!(
            "float {} is out of range (beyond ±{:e})",
            excerpt(text),
            f64::MAX
        )),
        None => Err(format!("{} is not a valid number", excerpt(text))),
    }
}

/// Parses a timestamp token in `precision` and returns nanoseconds.
pub(crate) fn parse_timestamp(text: &str, precision: Precision) -> Result<i64, String> {
    if !is_decimal_integer(text.as_bytes()) {
        return Err(format!(
            "timestamp {} is not an integer (a Unix time in {})",
            excerpt(text),
            precision
        ));
    }
    let out_of_range = || {
        format!(
            "timestamp {} in precision {} is outside the supported range \
             ({MIN_TIME_NS}..={MAX_TIME_NS} ns)",
            excerpt(text),
            precision
        )
    };
    let value = text.parse::<i64>().map_err(|_| out_of_range())?;
    match precision.to_nanos(value) {
        Some(ns) if (MIN_TIME_NS..=MAX_TIME_NS).contains(&ns) => Ok(ns),
        _ => Err(out_of_range()),
    }
}
