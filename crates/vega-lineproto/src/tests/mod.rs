//! Unit tests, one behaviour per test, grouped by area.

use vega_core::FieldValue;

use crate::{parse, LineError, LineErrorKind, Parsed, ParsedPoint, Precision};

mod bench;
mod errors;
mod escapes;
mod fuzz;
mod lines;
mod precision;
mod telegraf;
mod timestamps;
mod values;

/// The default time the helpers pass for lines without a timestamp.
const DEFAULT_NS: i64 = 1_000;

/// Parses `body` in nanoseconds with [`DEFAULT_NS`].
fn parse_ns(body: &str) -> Parsed {
    parse(body.as_bytes(), Precision::Nanoseconds, DEFAULT_NS)
}

/// The single point of a one-line body; fails on any error.
fn one(line: &str) -> ParsedPoint {
    let mut parsed = parse_ns(line);
    assert!(parsed.errors.is_empty(), "{line:?}: {:?}", parsed.errors);
    assert_eq!(parsed.points.len(), 1, "{line:?}");
    parsed.points.remove(0)
}

/// The single error of a one-line body; fails if the line parses.
fn bad(line: &str) -> LineError {
    let mut parsed = parse_ns(line);
    assert!(parsed.points.is_empty(), "{line:?}: {:?}", parsed.points);
    assert_eq!(parsed.errors.len(), 1, "{line:?}");
    parsed.errors.remove(0)
}

/// The kind of the single error of a one-line body.
fn kind(line: &str) -> LineErrorKind {
    bad(line).kind
}

/// The value of the only field of a one-line body.
fn value(line: &str) -> FieldValue {
    let point = one(line);
    assert_eq!(point.point.fields.len(), 1, "{line:?}");
    point.point.fields[0].1.clone()
}

/// Owned (key, value) tag pairs, for comparisons.
fn tags(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The field keys of a point, in order.
fn field_keys(point: &ParsedPoint) -> Vec<&str> {
    point.point.fields.iter().map(|(k, _)| k.as_str()).collect()
}
