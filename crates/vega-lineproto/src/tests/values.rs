//! Field values: floats, integers, unsigned integers, strings, booleans.

use vega_core::FieldValue;

use super::{kind, value};
use crate::LineErrorKind;

fn float(text: &str) -> FieldValue {
    value(&format!("m f={text}"))
}

fn rejected(text: &str) -> LineErrorKind {
    kind(&format!("m f={text}"))
}

#[test]
fn a_number_without_suffix_is_a_float() {
    assert_eq!(float("1"), FieldValue::Float(1.0));
    assert_eq!(float("1.0"), FieldValue::Float(1.0));
    assert_eq!(float("-3.25"), FieldValue::Float(-3.25));
}

#[test]
fn floats_may_use_scientific_notation() {
    assert_eq!(float("-1.5e3"), FieldValue::Float(-1500.0));
    assert_eq!(float("1E5"), FieldValue::Float(1e5));
    assert_eq!(float("1e+5"), FieldValue::Float(1e5));
    assert_eq!(float("2.5e-3"), FieldValue::Float(2.5e-3));
    assert_eq!(float("-1.234456e+78"), FieldValue::Float(-1.234456e78));
}

#[test]
fn floats_may_end_or_start_with_the_decimal_point() {
    assert_eq!(float("1."), FieldValue::Float(1.0));
    assert_eq!(float(".5"), FieldValue::Float(0.5));
    assert_eq!(float("-.5"), FieldValue::Float(-0.5));
}

#[test]
fn nan_and_infinities_are_rejected() {
    for text in ["NaN", "nan", "inf", "-inf", "infinity", "-Infinity", "+inf"] {
        assert_eq!(rejected(text), LineErrorKind::BadFieldValue, "{text}");
    }
}

#[test]
fn floats_beyond_the_f64_range_are_rejected() {
    assert_eq!(rejected("1e400"), LineErrorKind::BadFieldValue);
    assert_eq!(rejected("-1e400"), LineErrorKind::BadFieldValue);
}

#[test]
fn a_leading_plus_sign_is_rejected() {
    assert_eq!(rejected("+1"), LineErrorKind::BadFieldValue);
}

#[test]
fn malformed_numbers_are_rejected() {
    for text in ["1.2.3", "1e", "-", ".", "1-2", "0x10", "1_000", "12a"] {
        assert_eq!(rejected(text), LineErrorKind::BadFieldValue, "{text}");
    }
}

#[test]
fn a_trailing_i_makes_an_integer() {
    assert_eq!(float("1i"), FieldValue::Integer(1));
    assert_eq!(float("-12485903i"), FieldValue::Integer(-12_485_903));
    assert_eq!(float("0i"), FieldValue::Integer(0));
    assert_eq!(float("007i"), FieldValue::Integer(7));
}

#[test]
fn integers_cover_the_whole_i64_range() {
    assert_eq!(float("9223372036854775807i"), FieldValue::Integer(i64::MAX));
    assert_eq!(
        float("-9223372036854775808i"),
        FieldValue::Integer(i64::MIN)
    );
}

#[test]
fn integer_overflow_is_rejected() {
    assert_eq!(
        rejected("9223372036854775808i"),
        LineErrorKind::BadFieldValue
    );
    assert_eq!(
        rejected("-9223372036854775809i"),
        LineErrorKind::BadFieldValue
    );
    assert_eq!(
        rejected("99999999999999999999999i"),
        LineErrorKind::BadFieldValue
    );
}

#[test]
fn malformed_integers_are_rejected() {
    for text in ["1.5i", "1e3i", "-i", "+1i", "i", "1ii", "--1i"] {
        assert_eq!(rejected(text), LineErrorKind::BadFieldValue, "{text}");
    }
}

#[test]
fn a_trailing_u_makes_an_unsigned_integer() {
    assert_eq!(float("1u"), FieldValue::UInteger(1));
    assert_eq!(
        float("18446744073709551615u"),
        FieldValue::UInteger(u64::MAX)
    );
}

#[test]
fn unsigned_overflow_is_rejected() {
    assert_eq!(
        rejected("18446744073709551616u"),
        LineErrorKind::BadFieldValue
    );
}

#[test]
fn negative_unsigned_integers_are_rejected() {
    assert_eq!(rejected("-1u"), LineErrorKind::BadFieldValue);
    assert_eq!(rejected("1.5u"), LineErrorKind::BadFieldValue);
}

#[test]
fn double_quoted_values_are_strings() {
    assert_eq!(float(r#""hello""#), FieldValue::String("hello".into()));
}

#[test]
fn an_empty_string_is_a_string() {
    assert_eq!(float(r#""""#), FieldValue::String(String::new()));
}

#[test]
fn quoted_numbers_and_booleans_are_strings() {
    assert_eq!(float(r#""1""#), FieldValue::String("1".into()));
    assert_eq!(float(r#""true""#), FieldValue::String("true".into()));
}

#[test]
fn strings_may_hold_any_unicode() {
    assert_eq!(
        float(r#""größe ≥ 5 🚀""#),
        FieldValue::String("größe ≥ 5 🚀".into())
    );
}

#[test]
fn all_documented_boolean_spellings_are_accepted() {
    for text in ["t", "T", "true", "True", "TRUE"] {
        assert_eq!(float(text), FieldValue::Boolean(true), "{text}");
    }
    for text in ["f", "F", "false", "False", "FALSE"] {
        assert_eq!(float(text), FieldValue::Boolean(false), "{text}");
    }
}

#[test]
fn other_boolean_spellings_are_rejected() {
    for text in ["tRUE", "yes", "truee", "FaLsE", "fals", "on", "1b"] {
        assert_eq!(rejected(text), LineErrorKind::BadFieldValue, "{text}");
    }
}

#[test]
fn an_unquoted_word_is_rejected() {
    assert_eq!(rejected("hello"), LineErrorKind::BadFieldValue);
}

#[test]
fn a_missing_value_is_rejected() {
    assert_eq!(kind("m f="), LineErrorKind::BadFieldValue);
    assert_eq!(kind("m f=,g=1"), LineErrorKind::BadFieldValue);
    assert_eq!(kind("m f= 5"), LineErrorKind::BadFieldValue);
}

#[test]
fn text_after_a_closing_quote_is_rejected() {
    assert_eq!(kind(r#"m s="a"b"#), LineErrorKind::BadFieldValue);
}

#[test]
fn a_field_set_may_mix_all_types() {
    let p = super::one(r#"m a=1.5,b=-2i,c=3u,d="x y",e=F"#);
    let values: Vec<&FieldValue> = p.point.fields.iter().map(|(_, v)| v).collect();
    assert_eq!(
        values,
        vec![
            &FieldValue::Float(1.5),
            &FieldValue::Integer(-2),
            &FieldValue::UInteger(3),
            &FieldValue::String("x y".into()),
            &FieldValue::Boolean(false),
        ]
    );
}
