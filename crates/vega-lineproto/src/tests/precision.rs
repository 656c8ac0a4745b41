//! The `precision` parameter of both write APIs.

use vega_core::{Classify, ErrorClass};

use crate::Precision;

#[test]
fn v2_accepts_its_four_units() {
    assert_eq!(Precision::parse_v2("ns"), Ok(Precision::Nanoseconds));
    assert_eq!(Precision::parse_v2("us"), Ok(Precision::Microseconds));
    assert_eq!(Precision::parse_v2("ms"), Ok(Precision::Milliseconds));
    assert_eq!(Precision::parse_v2("s"), Ok(Precision::Seconds));
}

#[test]
fn v2_defaults_to_nanoseconds() {
    assert_eq!(Precision::parse_v2(""), Ok(Precision::Nanoseconds));
}

#[test]
fn v2_rejects_the_one_letter_units_and_other_spellings() {
    for value in [
        "n", "u", "µ", "µs", "m", "h", "NS", "S", "seconds", " s", "s ",
    ] {
        assert!(Precision::parse_v2(value).is_err(), "{value:?}");
    }
}

#[test]
fn v1_accepts_what_influxdb_1_accepts() {
    let cases = [
        ("n", Precision::Nanoseconds),
        ("ns", Precision::Nanoseconds),
        ("u", Precision::Microseconds),
        ("ms", Precision::Milliseconds),
        ("s", Precision::Seconds),
        ("m", Precision::Minutes),
        ("h", Precision::Hours),
    ];
    for (value, precision) in cases {
        assert_eq!(Precision::parse_v1(value), Ok(precision), "{value}");
    }
}

#[test]
fn v1_also_accepts_us_and_the_micro_sign() {
    assert_eq!(Precision::parse_v1("us"), Ok(Precision::Microseconds));
    assert_eq!(Precision::parse_v1("\u{b5}"), Ok(Precision::Microseconds));
}

#[test]
fn v1_defaults_to_nanoseconds() {
    assert_eq!(Precision::parse_v1(""), Ok(Precision::Nanoseconds));
}

#[test]
fn v1_rejects_unknown_values_instead_of_falling_back() {
    for value in ["x", "NS", "M", "H", "d", "µs", "mins"] {
        assert!(Precision::parse_v1(value).is_err(), "{value:?}");
    }
}

#[test]
fn unknown_precision_names_the_value_and_the_accepted_ones() {
    let e = Precision::parse_v2("minutes").unwrap_err();
    assert_eq!(e.value, "minutes");
    assert_eq!(e.accepted, Precision::V2_VALUES);
    assert_eq!(
        e.to_string(),
        "unknown precision `minutes`; accepted values: ns, us, ms, s"
    );
}

#[test]
fn unknown_v1_precision_lists_the_v1_values() {
    let e = Precision::parse_v1("d").unwrap_err();
    assert_eq!(
        e.to_string(),
        "unknown precision `d`; accepted values: n, ns, u, us, µ, ms, s, m, h"
    );
}

#[test]
fn unknown_precision_is_bad_input() {
    assert_eq!(
        Precision::parse_v2("x").unwrap_err().class(),
        ErrorClass::BadInput
    );
}

#[test]
fn nanos_per_unit_matches_each_unit() {
    assert_eq!(Precision::Nanoseconds.nanos_per_unit(), 1);
    assert_eq!(Precision::Microseconds.nanos_per_unit(), 1_000);
    assert_eq!(Precision::Milliseconds.nanos_per_unit(), 1_000_000);
    assert_eq!(Precision::Seconds.nanos_per_unit(), 1_000_000_000);
    assert_eq!(Precision::Minutes.nanos_per_unit(), 60_000_000_000);
    assert_eq!(Precision::Hours.nanos_per_unit(), 3_600_000_000_000);
}

#[test]
fn the_default_precision_is_nanoseconds() {
    assert_eq!(Precision::default(), Precision::Nanoseconds);
}

#[test]
fn precisions_display_as_their_short_name() {
    assert_eq!(Precision::Microseconds.to_string(), "us");
    assert_eq!(Precision::Hours.to_string(), "h");
}

#[test]
fn to_nanos_detects_overflow() {
    assert_eq!(Precision::Seconds.to_nanos(2), Some(2_000_000_000));
    assert_eq!(Precision::Seconds.to_nanos(i64::MAX / 10), None);
}
