//! Escaping, with the examples of the InfluxDB documentation.

use vega_core::FieldValue;

use super::{field_keys, kind, one, tags, value};
use crate::LineErrorKind;

#[test]
fn measurement_escapes_space_and_comma() {
    assert_eq!(one(r"my\ Meas\,urement f=1").measurement, "my Meas,urement");
}

#[test]
fn measurement_keeps_a_backslash_before_an_equals_sign() {
    assert_eq!(one(r"a\=b f=1").measurement, r"a\=b");
}

#[test]
fn tag_keys_and_values_escape_comma_equals_and_space() {
    let p = one(r"m,k\ e\,y\==v\ a\,l\=ue f=1");
    assert_eq!(p.point.tags, tags(&[("k e,y=", "v a,l=ue")]));
}

#[test]
fn field_keys_escape_comma_equals_and_space() {
    let p = one(r"m f\ k\,e\=y=1");
    assert_eq!(field_keys(&p), vec!["f k,e=y"]);
}

#[test]
fn string_values_escape_double_quote() {
    // The documentation's example.
    let line = r#"myMeasurement fieldKey="\"string\" within a string""#;
    assert_eq!(
        value(line),
        FieldValue::String(r#""string" within a string"#.into())
    );
}

#[test]
fn string_values_escape_backslash() {
    assert_eq!(
        value(r#"m s="C:\\temp\\""#),
        FieldValue::String(r"C:\temp\".into())
    );
}

#[test]
fn string_values_follow_the_documented_backslash_table() {
    // Backslashes in a row → what they mean (the documentation's table);
    // an `x` follows so that the last backslash escapes nothing.
    let table = [
        (r"\", r"\"),
        (r"\\", r"\"),
        (r"\\\", r"\\"),
        (r"\\\\", r"\\"),
        (r"\\\\\", r"\\\"),
        (r"\\\\\\", r"\\\"),
    ];
    for (written, meant) in table {
        let line = format!(r#"m s="{written}x""#);
        assert_eq!(
            value(&line),
            FieldValue::String(format!("{meant}x")),
            "{line}"
        );
    }
}

#[test]
fn string_values_keep_a_backslash_before_other_characters() {
    assert_eq!(
        value(r#"m s="a\nb\tc""#),
        FieldValue::String(r"a\nb\tc".into())
    );
}

#[test]
fn string_values_may_hold_spaces_commas_and_equals_signs() {
    let p = one(r#"m s="a b,c=d e",n=1i 5"#);
    assert_eq!(p.point.fields[0].1, FieldValue::String("a b,c=d e".into()));
    assert_eq!(p.point.fields[1].1, FieldValue::Integer(1));
    assert_eq!(p.point.time_ns, 5);
}

#[test]
fn a_backslash_before_other_characters_is_literal_in_tags() {
    let p = one(r#"m,path=C:\Windows,q=a\"b f=1"#);
    assert_eq!(
        p.point.tags,
        tags(&[("path", r"C:\Windows"), ("q", r#"a\"b"#)])
    );
}

#[test]
fn a_doubled_backslash_stays_doubled_in_tags() {
    assert_eq!(one(r"m,t=a\\b f=1").point.tags, tags(&[("t", r"a\\b")]));
}

#[test]
fn a_literal_backslash_may_precede_an_escaped_comma() {
    // `\` before `\` is literal; the second backslash escapes the comma.
    assert_eq!(one(r"m,t=a\\,b f=1").point.tags, tags(&[("t", r"a\,b")]));
}

#[test]
fn an_escaped_space_does_not_end_the_measurement() {
    let p = one(r"m\ 1,t=v f=1");
    assert_eq!(p.measurement, "m 1");
    assert_eq!(p.point.tags, tags(&[("t", "v")]));
}

#[test]
fn docs_example_measurement_with_spaces() {
    let p = one(r#"my\ Measurement fieldKey="string value""#);
    assert_eq!(p.measurement, "my Measurement");
    assert_eq!(
        p.point.fields[0].1,
        FieldValue::String("string value".into())
    );
}

#[test]
fn docs_example_tag_keys_and_values_with_spaces() {
    let p = one(r"myMeasurement,tag\ Key1=tag\ Value1,tag\ Key2=tag\ Value2 fieldKey=100");
    assert_eq!(
        p.point.tags,
        tags(&[("tag Key1", "tag Value1"), ("tag Key2", "tag Value2")])
    );
    assert_eq!(p.point.fields[0].1, FieldValue::Float(100.0));
}

#[test]
fn docs_example_emojis() {
    let p = one(r#"myMeasurement,tagKey=🍭 fieldKey="Launch 🚀" 1556813561098000000"#);
    assert_eq!(p.point.tags, tags(&[("tagKey", "🍭")]));
    assert_eq!(p.point.fields[0].1, FieldValue::String("Launch 🚀".into()));
    assert_eq!(p.point.time_ns, 1_556_813_561_098_000_000);
}

#[test]
fn docs_example_escaped_comma_in_tag_value_and_space_in_tag_key() {
    let p = one(r"weather,location\ place=us\,midwest temperature=82 1465839830100400200");
    assert_eq!(p.point.tags, tags(&[("location place", "us,midwest")]));
    assert_eq!(p.point.time_ns, 1_465_839_830_100_400_200);
}

#[test]
fn docs_example_escaped_equals_in_field_key() {
    let p = one(r"weather,location=us-midwest temp\=rature=82 1465839830100400200");
    assert_eq!(field_keys(&p), vec!["temp=rature"]);
}

#[test]
fn docs_example_escaped_comma_and_space_in_measurement() {
    assert_eq!(
        one(r"wea\,ther,location=us-midwest temperature=82").measurement,
        "wea,ther"
    );
    assert_eq!(
        one(r"wea\ ther,location=us-midwest temperature=82").measurement,
        "wea ther"
    );
}

#[test]
fn an_unescaped_quote_inside_a_string_ends_it() {
    assert_eq!(kind(r#"m s="a"b""#), LineErrorKind::BadFieldValue);
}
