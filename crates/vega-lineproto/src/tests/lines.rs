//! Lines: splitting, skipping, whitespace, order, partial writes.

use vega_core::FieldValue;

use super::{bad, field_keys, one, parse_ns, tags, DEFAULT_NS};
use crate::{parse, LineErrorKind, Precision};

#[test]
fn a_minimal_line_is_measurement_and_one_field() {
    let p = one("m f=1");
    assert_eq!(p.line, 1);
    assert_eq!(p.measurement, "m");
    assert!(p.point.tags.is_empty());
    assert_eq!(
        p.point.fields,
        vec![("f".to_string(), FieldValue::Float(1.0))]
    );
}

#[test]
fn a_line_without_timestamp_gets_the_default_time() {
    assert_eq!(one("m f=1").point.time_ns, DEFAULT_NS);
}

#[test]
fn the_default_time_is_used_as_given_whatever_the_precision() {
    let parsed = parse(b"m f=1", Precision::Seconds, 1_234_567);
    assert_eq!(parsed.points[0].point.time_ns, 1_234_567);
}

#[test]
fn lines_are_split_on_newline_and_numbered_from_one() {
    let parsed = parse_ns("a f=1\nb f=2\nc f=3");
    let got: Vec<(usize, &str)> = parsed
        .points
        .iter()
        .map(|p| (p.line, p.measurement.as_str()))
        .collect();
    assert_eq!(got, vec![(1, "a"), (2, "b"), (3, "c")]);
}

#[test]
fn a_trailing_carriage_return_is_stripped() {
    let parsed = parse_ns("a f=1i\r\nb f=2i 5\r\n");
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    assert_eq!(parsed.points[0].point.fields[0].1, FieldValue::Integer(1));
    assert_eq!(parsed.points[1].point.time_ns, 5);
}

#[test]
fn only_one_carriage_return_is_stripped() {
    assert_eq!(bad("m f=1\r\r").kind, LineErrorKind::BadFieldValue);
}

#[test]
fn a_trailing_newline_does_not_make_an_extra_line() {
    let parsed = parse_ns("m f=1\n");
    assert_eq!(parsed.points.len(), 1);
    assert!(parsed.errors.is_empty());
}

#[test]
fn an_empty_body_gives_nothing() {
    let parsed = parse_ns("");
    assert!(parsed.points.is_empty());
    assert!(parsed.errors.is_empty());
}

#[test]
fn blank_lines_are_skipped_but_counted() {
    let parsed = parse_ns("\n\nm f=1\n\n\r\n");
    assert!(parsed.errors.is_empty());
    assert_eq!(parsed.points.len(), 1);
    assert_eq!(parsed.points[0].line, 3);
}

#[test]
fn whitespace_only_lines_are_skipped() {
    let parsed = parse_ns("  \t \nm f=1");
    assert!(parsed.errors.is_empty());
    assert_eq!(parsed.points[0].line, 2);
}

#[test]
fn comment_lines_are_skipped() {
    let parsed = parse_ns("# a comment\nm f=1\n");
    assert!(parsed.errors.is_empty());
    assert_eq!(parsed.points.len(), 1);
    assert_eq!(parsed.points[0].line, 2);
}

#[test]
fn indented_comment_lines_are_skipped() {
    let parsed = parse_ns("m f=1\n \t# indented comment, with = and \"\n");
    assert!(parsed.errors.is_empty());
    assert_eq!(parsed.points.len(), 1);
}

#[test]
fn comment_lines_may_hold_invalid_utf8() {
    let parsed = parse(b"# caf\xe9\nm f=1", Precision::Nanoseconds, 0);
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    assert_eq!(parsed.points[0].line, 2);
}

#[test]
fn a_hash_after_the_start_is_part_of_the_measurement() {
    assert_eq!(one("m#1 f=1").measurement, "m#1");
}

#[test]
fn leading_whitespace_is_allowed() {
    assert_eq!(one(" \t m f=1").measurement, "m");
}

#[test]
fn several_spaces_may_separate_the_sections() {
    let p = one("m,t=a   f=1    5");
    assert_eq!(p.point.time_ns, 5);
}

#[test]
fn trailing_spaces_are_allowed() {
    assert_eq!(one("m f=1 5   ").point.time_ns, 5);
    assert_eq!(one("m f=1   ").point.time_ns, DEFAULT_NS);
}

#[test]
fn a_tab_is_not_a_separator() {
    assert_eq!(bad("m f=1\t5").kind, LineErrorKind::BadFieldValue);
}

#[test]
fn tags_keep_the_order_of_the_line() {
    let p = one("m,z=1,a=2,m=3 f=1");
    assert_eq!(p.point.tags, tags(&[("z", "1"), ("a", "2"), ("m", "3")]));
}

#[test]
fn fields_keep_the_order_of_the_line() {
    let p = one("m z=1,a=2i,m=true");
    assert_eq!(field_keys(&p), vec!["z", "a", "m"]);
}

#[test]
fn an_equals_sign_in_the_measurement_is_part_of_it() {
    assert_eq!(one("a=b f=1").measurement, "a=b");
}

#[test]
fn quotes_in_names_are_part_of_the_names() {
    let p = one(r#""m",'t'="v" 'f'=1"#);
    assert_eq!(p.measurement, r#""m""#);
    assert_eq!(p.point.tags, tags(&[("'t'", r#""v""#)]));
    assert_eq!(field_keys(&p), vec!["'f'"]);
}

#[test]
fn a_bad_line_does_not_stop_the_others() {
    let parsed = parse_ns("a f=1\nb\nc f=3\nd f=\ne f=5");
    let ok: Vec<usize> = parsed.points.iter().map(|p| p.line).collect();
    let bad: Vec<usize> = parsed.errors.iter().map(|e| e.line).collect();
    assert_eq!(ok, vec![1, 3, 5]);
    assert_eq!(bad, vec![2, 4]);
}

#[test]
fn each_bad_line_gives_exactly_one_error() {
    // Several problems on one line: only the first is reported.
    let parsed = parse_ns("m,t= f=x 1.5 junk");
    assert_eq!(parsed.errors.len(), 1);
    assert_eq!(parsed.errors[0].kind, LineErrorKind::BadTag);
}
