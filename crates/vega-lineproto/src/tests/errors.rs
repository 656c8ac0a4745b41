//! Error kinds, their labels, and the messages.

use vega_core::{Classify, ErrorClass};

use super::{bad, kind, one, parse_ns};
use crate::{parse, LineErrorKind, Precision, EXCERPT_CHARS};

#[test]
fn an_invalid_utf8_line_is_reported_and_the_others_are_kept() {
    let parsed = parse(b"a f=1\nb,t=caf\xe9 f=2\nc f=3", Precision::Nanoseconds, 0);
    let ok: Vec<usize> = parsed.points.iter().map(|p| p.line).collect();
    assert_eq!(ok, vec![1, 3]);
    assert_eq!(parsed.errors.len(), 1);
    assert_eq!(parsed.errors[0].line, 2);
    assert_eq!(parsed.errors[0].kind, LineErrorKind::InvalidUtf8);
    assert!(
        parsed.errors[0].message.contains("offset 7"),
        "{}",
        parsed.errors[0]
    );
}

#[test]
fn invalid_utf8_inside_a_string_value_is_reported() {
    let parsed = parse(b"m s=\"\xff\xfe\"", Precision::Nanoseconds, 0);
    assert_eq!(parsed.errors[0].kind, LineErrorKind::InvalidUtf8);
}

#[test]
fn a_line_starting_with_a_comma_has_no_measurement() {
    assert_eq!(kind(",t=a f=1"), LineErrorKind::MissingMeasurement);
}

#[test]
fn a_line_with_only_a_measurement_has_no_fields() {
    assert_eq!(kind("m"), LineErrorKind::MissingFields);
    assert_eq!(kind("m   "), LineErrorKind::MissingFields);
}

#[test]
fn a_line_with_only_tags_has_no_fields() {
    assert_eq!(kind("m,t=a"), LineErrorKind::MissingFields);
    assert_eq!(kind("m,t=a "), LineErrorKind::MissingFields);
}

#[test]
fn a_tag_without_equals_sign_is_a_bad_tag() {
    assert_eq!(kind("m,t f=1"), LineErrorKind::BadTag);
    assert_eq!(kind("m,t"), LineErrorKind::BadTag);
}

#[test]
fn a_tag_with_an_empty_key_is_a_bad_tag() {
    assert_eq!(kind("m,=a f=1"), LineErrorKind::BadTag);
}

#[test]
fn a_tag_with_an_empty_value_is_a_bad_tag() {
    assert_eq!(kind("m,t= f=1"), LineErrorKind::BadTag);
    assert_eq!(kind("m,t=,u=1 f=1"), LineErrorKind::BadTag);
}

#[test]
fn an_unescaped_equals_sign_in_a_tag_value_is_a_bad_tag() {
    assert_eq!(kind("m,t=a=b f=1"), LineErrorKind::BadTag);
}

#[test]
fn an_empty_tag_between_commas_is_a_bad_tag() {
    assert_eq!(kind("m,,t=a f=1"), LineErrorKind::BadTag);
    assert_eq!(kind("m, f=1"), LineErrorKind::BadTag);
    assert_eq!(kind("m,t=a, f=1"), LineErrorKind::BadTag);
}

#[test]
fn a_field_without_equals_sign_is_a_bad_field() {
    assert_eq!(kind("m f"), LineErrorKind::BadField);
    assert_eq!(kind("m f 5"), LineErrorKind::BadField);
    assert_eq!(kind("m a=1,b"), LineErrorKind::BadField);
}

#[test]
fn a_field_with_an_empty_key_is_a_bad_field() {
    assert_eq!(kind("m =1"), LineErrorKind::BadField);
}

#[test]
fn a_trailing_comma_in_the_field_set_is_a_bad_field() {
    assert_eq!(kind("m f=1,"), LineErrorKind::BadField);
    assert_eq!(kind("m f=1, 5"), LineErrorKind::BadField);
}

#[test]
fn an_unparseable_value_is_a_bad_field_value_naming_the_text() {
    let e = bad("m usage=12abc");
    assert_eq!(e.kind, LineErrorKind::BadFieldValue);
    assert!(e.message.contains("`usage`"), "{}", e.message);
    assert!(e.message.contains("`12abc`"), "{}", e.message);
}

#[test]
fn a_backslash_ending_the_measurement_is_a_bad_escape() {
    assert_eq!(kind(r"m\"), LineErrorKind::BadEscape);
}

#[test]
fn a_backslash_ending_a_tag_is_a_bad_escape() {
    assert_eq!(kind(r"m,t=a\"), LineErrorKind::BadEscape);
    assert_eq!(kind(r"m,t\"), LineErrorKind::BadEscape);
}

#[test]
fn a_backslash_ending_a_field_key_or_value_is_a_bad_escape() {
    assert_eq!(kind(r"m f\"), LineErrorKind::BadEscape);
    assert_eq!(kind(r"m f=1\"), LineErrorKind::BadEscape);
}

#[test]
fn a_backslash_ending_the_timestamp_is_a_bad_escape() {
    assert_eq!(kind(r"m f=1 5\"), LineErrorKind::BadEscape);
}

#[test]
fn a_backslash_before_the_carriage_return_is_a_bad_escape() {
    assert_eq!(kind("m,t=a\\\r"), LineErrorKind::BadEscape);
}

#[test]
fn a_string_without_closing_quote_is_unterminated() {
    assert_eq!(kind(r#"m s="abc"#), LineErrorKind::UnterminatedString);
    assert_eq!(kind(r#"m s="abc 5"#), LineErrorKind::UnterminatedString);
}

#[test]
fn an_escaped_closing_quote_leaves_the_string_unterminated() {
    assert_eq!(kind(r#"m s="abc\""#), LineErrorKind::UnterminatedString);
}

#[test]
fn a_newline_inside_a_string_ends_the_line() {
    // No newlines in values: both halves are bad lines.
    let parsed = parse_ns("m s=\"two\nlines\"\nm f=1");
    let kinds: Vec<(usize, LineErrorKind)> =
        parsed.errors.iter().map(|e| (e.line, e.kind)).collect();
    assert_eq!(
        kinds,
        vec![
            (1, LineErrorKind::UnterminatedString),
            (2, LineErrorKind::MissingFields)
        ]
    );
    assert_eq!(parsed.points.len(), 1);
    assert_eq!(parsed.points[0].line, 3);
}

#[test]
fn a_bad_timestamp_names_the_text() {
    let e = bad("m f=1 12:30");
    assert_eq!(e.kind, LineErrorKind::BadTimestamp);
    assert!(e.message.contains("`12:30`"), "{}", e.message);
}

#[test]
fn the_same_tag_twice_is_a_duplicate_tag() {
    let e = bad("m,host=a,host=b f=1");
    assert_eq!(e.kind, LineErrorKind::DuplicateTag);
    assert!(e.message.contains("`host`"), "{}", e.message);
}

#[test]
fn the_same_field_twice_is_a_duplicate_field() {
    let e = bad("m v=1,w=2,v=3");
    assert_eq!(e.kind, LineErrorKind::DuplicateField);
    assert!(e.message.contains("`v`"), "{}", e.message);
}

#[test]
fn duplicates_are_compared_after_unescaping() {
    assert_eq!(kind(r"m a\ b=1,a\ b=2"), LineErrorKind::DuplicateField);
}

#[test]
fn duplicates_are_found_among_many_fields() {
    let mut line = String::from("m ");
    for i in 0..200 {
        line.push_str(&format!("f{i}=1,"));
    }
    line.push_str("f150=2");
    let e = bad(&line);
    assert_eq!(e.kind, LineErrorKind::DuplicateField);
    assert!(e.message.contains("`f150`"), "{}", e.message);
}

#[test]
fn duplicates_are_found_among_many_tags() {
    let mut line = String::from("m");
    for i in 0..100 {
        line.push_str(&format!(",t{i}=x"));
    }
    line.push_str(",t7=y f=1");
    assert_eq!(kind(&line), LineErrorKind::DuplicateTag);
}

#[test]
fn a_tag_named_time_is_a_reserved_key() {
    assert_eq!(kind("m,time=1 f=1"), LineErrorKind::ReservedKey);
}

#[test]
fn a_field_named_time_is_a_reserved_key() {
    let e = bad("m time=1i");
    assert_eq!(e.kind, LineErrorKind::ReservedKey);
    assert!(e.message.contains("`time`"), "{}", e.message);
}

#[test]
fn a_measurement_named_time_is_allowed() {
    assert_eq!(one("time f=1").measurement, "time");
}

#[test]
fn a_key_used_as_tag_and_field_is_a_key_conflict() {
    let e = bad("m,host=a host=1");
    assert_eq!(e.kind, LineErrorKind::KeyConflict);
    assert!(e.message.contains("`host`"), "{}", e.message);
}

#[test]
fn key_conflicts_are_found_among_many_keys() {
    let mut line = String::from("m");
    for i in 0..40 {
        line.push_str(&format!(",k{i}=x"));
    }
    line.push(' ');
    for i in 40..80 {
        line.push_str(&format!("k{i}=1,"));
    }
    line.push_str("k3=1");
    assert_eq!(kind(&line), LineErrorKind::KeyConflict);
}

#[test]
fn text_after_the_timestamp_is_trailing_garbage_naming_the_text() {
    let e = bad("m f=1 5 oops");
    assert_eq!(e.kind, LineErrorKind::TrailingGarbage);
    assert!(e.message.contains("`oops`"), "{}", e.message);
}

#[test]
fn syntax_errors_come_before_key_checks() {
    assert_eq!(kind("m,time=a f=1 bad"), LineErrorKind::BadTimestamp);
}

#[test]
fn errors_display_with_their_line_number() {
    let parsed = parse_ns("m f=1\nm f=1 5 x");
    let shown = parsed.errors[0].to_string();
    assert!(shown.starts_with("line 2: "), "{shown}");
    assert!(shown.ends_with(&parsed.errors[0].message), "{shown}");
}

#[test]
fn messages_shorten_long_text() {
    let long = "x".repeat(500);
    let e = bad(&format!("m f={long}"));
    assert!(
        e.message
            .contains(&format!("`{}…`", "x".repeat(EXCERPT_CHARS))),
        "{}",
        e.message
    );
    assert!(e.message.len() < 200, "{}", e.message);
}

#[test]
fn messages_shorten_on_character_boundaries() {
    let long = "é".repeat(100);
    let e = bad(&format!("m f={long}"));
    assert!(
        e.message
            .contains(&format!("`{}…`", "é".repeat(EXCERPT_CHARS))),
        "{}",
        e.message
    );
}

#[test]
fn messages_escape_control_characters() {
    let e = bad("m f=a\u{1b}[31mb");
    assert!(e.message.contains(r"\u{1b}"), "{}", e.message);
    assert!(!e.message.contains('\u{1b}'), "{}", e.message);
}

#[test]
fn a_bad_escape_message_quotes_the_end_of_a_long_line() {
    let e = bad(&format!("m,t=a{}\\", "y".repeat(100)));
    assert_eq!(e.kind, LineErrorKind::BadEscape);
    assert!(e.message.contains(r"yyy\`"), "{}", e.message);
    assert!(e.message.contains("`…"), "{}", e.message);
}

#[test]
fn labels_are_stable() {
    let labels: Vec<&str> = LineErrorKind::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(
        labels,
        vec![
            "invalid_utf8",
            "missing_measurement",
            "missing_fields",
            "bad_tag",
            "bad_field",
            "bad_field_value",
            "bad_escape",
            "unterminated_string",
            "bad_timestamp",
            "duplicate_tag",
            "duplicate_field",
            "reserved_key",
            "key_conflict",
            "trailing_garbage",
        ]
    );
}

#[test]
fn kinds_display_as_their_label() {
    for k in LineErrorKind::ALL {
        assert_eq!(k.to_string(), k.as_str());
    }
}

#[test]
fn line_errors_are_bad_input() {
    assert_eq!(bad("m").class(), ErrorClass::BadInput);
}
