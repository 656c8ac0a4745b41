//! Timestamps: precision, sign, range and shape.

use super::{kind, one};
use crate::{parse, LineErrorKind, Precision, MAX_TIME_NS, MIN_TIME_NS};

fn time_in(precision: Precision, line: &str) -> i64 {
    let parsed = parse(line.as_bytes(), precision, 0);
    assert!(parsed.errors.is_empty(), "{line}: {:?}", parsed.errors);
    parsed.points[0].point.time_ns
}

fn error_in(precision: Precision, line: &str) -> LineErrorKind {
    let parsed = parse(line.as_bytes(), precision, 0);
    assert!(parsed.points.is_empty(), "{line}");
    parsed.errors[0].kind
}

#[test]
fn nanosecond_timestamps_are_taken_as_they_are() {
    assert_eq!(
        one("m f=1 1700000000000000000").point.time_ns,
        1_700_000_000_000_000_000
    );
}

#[test]
fn timestamps_may_be_negative() {
    assert_eq!(one("m f=1 -1").point.time_ns, -1);
    assert_eq!(
        time_in(Precision::Seconds, "m f=1 -86400"),
        -86_400_000_000_000
    );
}

#[test]
fn timestamps_are_scaled_by_the_precision() {
    let cases = [
        (Precision::Nanoseconds, 1),
        (Precision::Microseconds, 1_000),
        (Precision::Milliseconds, 1_000_000),
        (Precision::Seconds, 1_000_000_000),
        (Precision::Minutes, 60_000_000_000),
        (Precision::Hours, 3_600_000_000_000),
    ];
    for (precision, factor) in cases {
        assert_eq!(time_in(precision, "m f=1 7"), 7 * factor, "{precision}");
    }
}

#[test]
fn second_timestamps_of_today_fit() {
    assert_eq!(
        time_in(Precision::Seconds, "m f=1 1700000000"),
        1_700_000_000_000_000_000
    );
}

#[test]
fn overflow_when_scaling_is_a_bad_timestamp() {
    // 9.3e9 s is past the year 2262, the end of the nanosecond range.
    assert_eq!(
        error_in(Precision::Seconds, "m f=1 9300000000"),
        LineErrorKind::BadTimestamp
    );
    assert_eq!(
        error_in(Precision::Hours, "m f=1 -2600000"),
        LineErrorKind::BadTimestamp
    );
}

#[test]
fn a_timestamp_beyond_i64_is_a_bad_timestamp() {
    assert_eq!(
        kind("m f=1 99999999999999999999"),
        LineErrorKind::BadTimestamp
    );
    assert_eq!(
        kind("m f=1 -99999999999999999999"),
        LineErrorKind::BadTimestamp
    );
}

#[test]
fn the_documented_range_limits_are_accepted() {
    assert_eq!(
        one(&format!("m f=1 {MAX_TIME_NS}")).point.time_ns,
        i64::MAX - 1
    );
    assert_eq!(
        one(&format!("m f=1 {MIN_TIME_NS}")).point.time_ns,
        i64::MIN + 2
    );
}

#[test]
fn values_just_outside_the_documented_range_are_rejected() {
    assert_eq!(
        kind(&format!("m f=1 {}", i64::MAX)),
        LineErrorKind::BadTimestamp
    );
    assert_eq!(
        kind(&format!("m f=1 {}", i64::MIN + 1)),
        LineErrorKind::BadTimestamp
    );
    assert_eq!(
        kind(&format!("m f=1 {}", i64::MIN)),
        LineErrorKind::BadTimestamp
    );
}

#[test]
fn a_non_integer_timestamp_is_a_bad_timestamp() {
    for ts in [
        "1.5",
        "1e9",
        "+5",
        "abc",
        "5i",
        "-",
        "0x10",
        "1,2",
        "2023-11-14T22:13:20Z",
    ] {
        assert_eq!(
            kind(&format!("m f=1 {ts}")),
            LineErrorKind::BadTimestamp,
            "{ts}"
        );
    }
}

#[test]
fn a_field_after_a_space_is_read_as_a_bad_timestamp() {
    // A common mistake: fields separated by a space instead of a comma.
    assert_eq!(kind("m a=1 b=2"), LineErrorKind::BadTimestamp);
}

#[test]
fn text_after_the_timestamp_is_trailing_garbage() {
    assert_eq!(kind("m f=1 5 x"), LineErrorKind::TrailingGarbage);
    assert_eq!(kind("m f=1 5 6"), LineErrorKind::TrailingGarbage);
}
