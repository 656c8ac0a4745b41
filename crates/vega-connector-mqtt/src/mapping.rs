//! How an MQTT message becomes a [`Point`].
//!
//! **Tags.** With a `topic_pattern`, each `{name}` level of the topic
//! becomes the tag `name` (a string column); the pattern's literal levels
//! must equal the topic's, and the level counts must be equal, else the
//! message is a `topic_mismatch`.
//!
//! **Fields of a JSON payload.** The payload must be a JSON object. Each
//! member becomes a field: numbers become floats (always, so `1` in one
//! message and `1.5` in the next never conflict; integers beyond 2^53 lose
//! precision), booleans booleans, strings strings; `null` members are
//! skipped; nested objects are flattened, joining names with `_`
//! (`{"a": {"b": 1}}` → `a_b`); arrays are refused (`unsupported_value`).
//!
//! **Column names.** A member's key becomes a column name by these rules:
//! 1. an upper-case ASCII letter that follows a lower-case letter or a
//!    digit starts a new word (`tempC` → `temp_c`, `deviceID` →
//!    `device_id`);
//! 2. ASCII letters are lower-cased; digits and `_` are kept;
//! 3. every run of other characters (spaces, `-`, `.`, `/`, non-ASCII, …)
//!    becomes one `_`, except at the start and the end, where it is dropped
//!    (`Temp (°C)` → `temp_c`).
//!
//! The result must be a valid column name — non-empty, at most 63
//! characters, starting with a letter or `_` — and must not be `time` (the
//! time column) or a tag's name, and two members must not end up with the
//! same name; otherwise the message is refused as `bad_key`.
//!
//! **Time.** With `timestamp: {field, format}` the top-level member `field`
//! (matched exactly, before normalization) is the point's time and not a
//! field: an RFC 3339 string, or seconds/milli-/micro-/nanoseconds since the
//! Unix epoch as a number or numeric string (decimals and exponents are
//! computed exactly and truncated to nanoseconds). Without it, the time of
//! receipt is used.
//!
//! **Raw payloads.** The payload, which must be UTF-8, is the one string
//! field `payload`.

use std::collections::HashSet;
use std::fmt;

use serde_json::{Map, Value};
use vega_core::{FieldValue, Point};

use crate::config::{MqttSource, PatternLevel, PayloadFormat, TimestampFormat, TimestampSpec};

/// The field holding a raw payload.
pub const RAW_FIELD: &str = "payload";
/// The name of the time column: neither a tag nor a field may use it.
pub const TIME_COLUMN: &str = "time";
/// The longest column name.
pub const MAX_COLUMN_LEN: usize = 63;
/// How much of a payload error messages quote.
pub const SAMPLE_BYTES: usize = 128;

/// Why a message could not be mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MappingErrorKind {
    /// The payload is not valid JSON.
    NotJson,
    /// The payload is JSON but not an object.
    NotObject,
    /// Nothing but nulls (and the timestamp).
    NoFields,
    /// The topic does not fit the topic pattern.
    TopicMismatch,
    /// The timestamp member is missing or null.
    MissingTimestamp,
    /// The timestamp member cannot be read in the configured format.
    BadTimestamp,
    /// A value of a type that cannot be a field (an array).
    UnsupportedValue,
    /// A raw payload that is not UTF-8.
    NotUtf8,
    /// A key that cannot become a column name, or names that collide.
    BadKey,
}

impl MappingErrorKind {
    /// The kind as metrics and logs name it.
    pub fn as_str(self) -> &'static str {
        match self {
            MappingErrorKind::NotJson => "not_json",
            MappingErrorKind::NotObject => "not_object",
            MappingErrorKind::NoFields => "no_fields",
            MappingErrorKind::TopicMismatch => "topic_mismatch",
            MappingErrorKind::MissingTimestamp => "missing_timestamp",
            MappingErrorKind::BadTimestamp => "bad_timestamp",
            MappingErrorKind::UnsupportedValue => "unsupported_value",
            MappingErrorKind::NotUtf8 => "not_utf8",
            MappingErrorKind::BadKey => "bad_key",
        }
    }
}

/// A message that does not fit its asset's mapping. The message says
/// what is wrong and quotes the start of the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingError {
    kind: MappingErrorKind,
    message: String,
}

impl MappingError {
    fn new(kind: MappingErrorKind, detail: impl fmt::Display, payload: &[u8]) -> Self {
        MappingError {
            kind,
            message: format!("{detail} (payload: {})", sample(payload)),
        }
    }

    /// The kind's name: `not_json`, `not_object`, `no_fields`,
    /// `topic_mismatch`, `missing_timestamp`, `bad_timestamp`,
    /// `unsupported_value`, `not_utf8` or `bad_key`.
    pub fn kind(&self) -> &'static str {
        self.kind.as_str()
    }

    /// The kind as an enum.
    pub fn error_kind(&self) -> MappingErrorKind {
        self.kind
    }

    /// What is wrong, with a sample of the payload.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for MappingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind(), self.message)
    }
}

impl std::error::Error for MappingError {}

/// The first [`SAMPLE_BYTES`] bytes of `payload` as a quoted, escaped
/// string (invalid UTF-8 replaced), with `…` when cut.
pub fn sample(payload: &[u8]) -> String {
    let cut = payload.len() > SAMPLE_BYTES;
    let head = &payload[..payload.len().min(SAMPLE_BYTES)];
    let text = String::from_utf8_lossy(head);
    if cut {
        format!("{text:?}…")
    } else {
        format!("{text:?}")
    }
}

impl MqttSource {
    /// Maps one message of this source's subscription to a point;
    /// `receive_time_ns` is its time when the source has no `timestamp`.
    pub fn map(
        &self,
        topic: &str,
        payload: &[u8],
        receive_time_ns: i64,
    ) -> Result<Point, MappingError> {
        let tags = self.tags(topic, payload)?;
        match self.payload {
            PayloadFormat::Raw => {
                let text = std::str::from_utf8(payload).map_err(|e| {
                    MappingError::new(
                        MappingErrorKind::NotUtf8,
                        format!("the payload is not UTF-8 ({e})"),
                        payload,
                    )
                })?;
                Ok(Point {
                    tags,
                    fields: vec![(RAW_FIELD.to_string(), FieldValue::String(text.to_string()))],
                    time_ns: receive_time_ns,
                })
            }
            PayloadFormat::Json => {
                let value: Value = serde_json::from_slice(payload).map_err(|e| {
                    MappingError::new(
                        MappingErrorKind::NotJson,
                        format!("the payload is not JSON ({e})"),
                        payload,
                    )
                })?;
                let Value::Object(mut object) = value else {
                    return Err(MappingError::new(
                        MappingErrorKind::NotObject,
                        format!("the payload is JSON {}, not an object", json_kind(&value)),
                        payload,
                    ));
                };
                let time_ns = match &self.timestamp {
                    None => receive_time_ns,
                    Some(spec) => take_timestamp(spec, &mut object, payload)?,
                };
                let fields = fields(&object, &tags, payload)?;
                Ok(Point {
                    tags,
                    fields,
                    time_ns,
                })
            }
        }
    }

    fn tags(&self, topic: &str, payload: &[u8]) -> Result<Vec<(String, String)>, MappingError> {
        let Some(pattern) = &self.topic_pattern else {
            return Ok(Vec::new());
        };
        let mismatch = |why: String| {
            MappingError::new(
                MappingErrorKind::TopicMismatch,
                format!(
                    "topic '{topic}' does not fit the pattern '{}': {why}",
                    pattern.text
                ),
                payload,
            )
        };
        let levels: Vec<&str> = topic.split('/').collect();
        if levels.len() != pattern.levels.len() {
            return Err(mismatch(format!(
                "{} levels instead of {}",
                levels.len(),
                pattern.levels.len()
            )));
        }
        let mut tags = Vec::new();
        for (i, (level, expected)) in levels.iter().zip(&pattern.levels).enumerate() {
            match expected {
                PatternLevel::Literal(lit) if lit != level => {
                    return Err(mismatch(format!("level {} is not '{lit}'", i + 1)));
                }
                PatternLevel::Literal(_) => {}
                PatternLevel::Tag(name) => tags.push((name.clone(), (*level).to_string())),
            }
        }
        Ok(tags)
    }
}

/// Removes the timestamp member from `object` and reads it.
fn take_timestamp(
    spec: &TimestampSpec,
    object: &mut Map<String, Value>,
    payload: &[u8],
) -> Result<i64, MappingError> {
    let value = match object.remove(&spec.field) {
        None | Some(Value::Null) => {
            return Err(MappingError::new(
                MappingErrorKind::MissingTimestamp,
                format!("no timestamp member '{}'", spec.field),
                payload,
            ))
        }
        Some(v) => v,
    };
    parse_timestamp(&value, spec.format).map_err(|why| {
        MappingError::new(
            MappingErrorKind::BadTimestamp,
            format!(
                "timestamp member '{}' is not {}: {why}",
                spec.field,
                spec.format.name()
            ),
            payload,
        )
    })
}

/// Reads a timestamp value in `format` as nanoseconds since the epoch.
pub fn parse_timestamp(value: &Value, format: TimestampFormat) -> Result<i64, String> {
    let scale = match format {
        TimestampFormat::Rfc3339 => {
            let Value::String(text) = value else {
                return Err(format!("expected a string, found {}", json_kind(value)));
            };
            let time =
                chrono::DateTime::parse_from_rfc3339(text).map_err(|e| format!("'{text}': {e}"))?;
            return time
                .timestamp_nanos_opt()
                .ok_or_else(|| format!("'{text}' is out of range (years 1677 to 2262)"));
        }
        TimestampFormat::UnixS => 9,
        TimestampFormat::UnixMs => 6,
        TimestampFormat::UnixUs => 3,
        TimestampFormat::UnixNs => 0,
    };
    let text = match value {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        other => {
            return Err(format!(
                "expected a number or numeric string, found {}",
                json_kind(other)
            ))
        }
    };
    decimal_scaled(&text, scale).ok_or_else(|| format!("'{text}' is not a number in range"))
}

/// `text` (a decimal number, optionally with a fraction and an exponent)
/// times 10^`scale`, truncated toward zero; `None` if it is not such a
/// number or does not fit in an `i64`.
fn decimal_scaled(text: &str, scale: i32) -> Option<i64> {
    let (negative, rest) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (mantissa_text, exponent) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], rest[i + 1..].parse::<i32>().ok()?),
        None => (rest, 0),
    };
    let (int_part, frac_part) = match mantissa_text.split_once('.') {
        Some((i, f)) => (i, f),
        None => (mantissa_text, ""),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    if !int_part
        .bytes()
        .chain(frac_part.bytes())
        .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let digits: String = int_part.chars().chain(frac_part.chars()).collect();
    let digits = digits.trim_start_matches('0');
    if digits.len() > 36 {
        return None;
    }
    let mantissa: i128 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    let frac_len = i32::try_from(frac_part.len()).ok()?;
    let shift = exponent.checked_add(scale)?.checked_sub(frac_len)?;
    let magnitude = if mantissa == 0 {
        0
    } else if shift >= 0 {
        let factor = 10i128.checked_pow(u32::try_from(shift).ok()?)?;
        mantissa.checked_mul(factor)?
    } else {
        match 10i128.checked_pow(shift.unsigned_abs()) {
            Some(divisor) => mantissa / divisor,
            None => 0,
        }
    };
    let value = if negative { -magnitude } else { magnitude };
    i64::try_from(value).ok()
}

/// The fields of `object` (flattened), with names checked against the
/// tags and each other.
fn fields(
    object: &Map<String, Value>,
    tags: &[(String, String)],
    payload: &[u8],
) -> Result<Vec<(String, FieldValue)>, MappingError> {
    let mut out = Vec::new();
    let mut names: HashSet<String> = HashSet::new();
    let mut origins: Vec<String> = Vec::new();
    flatten(object, "", "", &mut out, &mut origins, payload)?;
    for ((name, _), origin) in out.iter().zip(&origins) {
        let bad = |why: String| MappingError::new(MappingErrorKind::BadKey, why, payload);
        if name == TIME_COLUMN {
            return Err(bad(format!(
                "key '{origin}' would be the column 'time', which holds the point's time; configure it as the source's timestamp field"
            )));
        }
        if tags.iter().any(|(tag, _)| tag == name) {
            return Err(bad(format!(
                "key '{origin}' would be the column '{name}', which is a tag from the topic pattern"
            )));
        }
        if !names.insert(name.clone()) {
            return Err(bad(format!(
                "key '{origin}' would be the column '{name}', like another key of the payload"
            )));
        }
    }
    if out.is_empty() {
        return Err(MappingError::new(
            MappingErrorKind::NoFields,
            "the payload has no fields (only nulls or the timestamp)",
            payload,
        ));
    }
    Ok(out)
}

fn flatten(
    object: &Map<String, Value>,
    prefix: &str,
    origin_prefix: &str,
    out: &mut Vec<(String, FieldValue)>,
    origins: &mut Vec<String>,
    payload: &[u8],
) -> Result<(), MappingError> {
    for (key, value) in object {
        let origin = if origin_prefix.is_empty() {
            key.clone()
        } else {
            format!("{origin_prefix}.{key}")
        };
        let part = normalize_key(key);
        if part.is_empty() {
            return Err(MappingError::new(
                MappingErrorKind::BadKey,
                format!("key '{origin}' has no letters, digits or '_' to make a column name from"),
                payload,
            ));
        }
        let name = if prefix.is_empty() {
            part
        } else {
            format!("{prefix}_{part}")
        };
        let field = match value {
            Value::Null => continue,
            Value::Bool(b) => FieldValue::Boolean(*b),
            Value::Number(n) => match n.as_f64() {
                Some(f) => FieldValue::Float(f),
                None => {
                    return Err(MappingError::new(
                        MappingErrorKind::UnsupportedValue,
                        format!("member '{origin}' is a number that is not representable"),
                        payload,
                    ))
                }
            },
            Value::String(s) => FieldValue::String(s.clone()),
            Value::Array(_) => {
                return Err(MappingError::new(
                    MappingErrorKind::UnsupportedValue,
                    format!("member '{origin}' is an array; arrays cannot be fields"),
                    payload,
                ))
            }
            Value::Object(inner) => {
                flatten(inner, &name, &origin, out, origins, payload)?;
                continue;
            }
        };
        if !is_valid_column_name(&name) {
            return Err(MappingError::new(
                MappingErrorKind::BadKey,
                format!(
                    "key '{origin}' gives the column name '{name}', which is not valid (it must start with a letter or '_' and have at most {MAX_COLUMN_LEN} characters)"
                ),
                payload,
            ));
        }
        out.push((name, field));
        origins.push(origin);
    }
    Ok(())
}

/// A payload key as a column name (see the module documentation); may be
/// empty or otherwise invalid, which [`is_valid_column_name`] tells.
pub fn normalize_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut pending_separator = false;
    let mut previous: Option<char> = None;
    for c in key.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            let new_word = (pending_separator && !out.is_empty())
                || (c.is_ascii_uppercase()
                    && previous.is_some_and(|p| p.is_ascii_lowercase() || p.is_ascii_digit()));
            if new_word {
                out.push('_');
            }
            pending_separator = false;
            out.push(c.to_ascii_lowercase());
        } else {
            pending_separator = true;
        }
        previous = Some(c);
    }
    out
}

/// Whether `name` is a valid column name: 1 to 63 characters of `a-z`,
/// `0-9` and `_`, not starting with a digit.
pub fn is_valid_column_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_lowercase() || c == '_' => {}
        _ => return false,
    }
    name.len() <= MAX_COLUMN_LEN
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_700_000_000_000_000_000;

    fn source(value: Value) -> MqttSource {
        MqttSource::parse(&value).unwrap()
    }

    fn map_ok(src: &MqttSource, topic: &str, payload: &str) -> Point {
        src.map(topic, payload.as_bytes(), NOW)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn map_err(src: &MqttSource, topic: &str, payload: &[u8]) -> MappingError {
        src.map(topic, payload, NOW).unwrap_err()
    }

    fn field<'a>(point: &'a Point, name: &str) -> Option<&'a FieldValue> {
        point.fields.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    #[test]
    fn json_members_become_typed_fields() {
        let src = source(json!({"topic": "a/#"}));
        let p = map_ok(
            &src,
            "a/b",
            r#"{"temp": 21, "hum": 40.5, "ok": true, "state": "run", "gone": null}"#,
        );
        assert_eq!(p.time_ns, NOW);
        assert!(p.tags.is_empty());
        assert_eq!(field(&p, "temp"), Some(&FieldValue::Float(21.0)));
        assert_eq!(field(&p, "hum"), Some(&FieldValue::Float(40.5)));
        assert_eq!(field(&p, "ok"), Some(&FieldValue::Boolean(true)));
        assert_eq!(field(&p, "state"), Some(&FieldValue::String("run".into())));
        assert_eq!(field(&p, "gone"), None);
        assert_eq!(p.fields.len(), 4);
    }

    #[test]
    fn nested_objects_are_flattened() {
        let src = source(json!({"topic": "a"}));
        let p = map_ok(&src, "a", r#"{"a": {"b": 1, "c": {"d": "x"}}, "e": 2}"#);
        assert_eq!(field(&p, "a_b"), Some(&FieldValue::Float(1.0)));
        assert_eq!(field(&p, "a_c_d"), Some(&FieldValue::String("x".into())));
        assert_eq!(field(&p, "e"), Some(&FieldValue::Float(2.0)));
    }

    #[test]
    fn keys_are_normalized() {
        for (key, column) in [
            ("temp", "temp"),
            ("Temperature", "temperature"),
            ("tempC", "temp_c"),
            ("deviceID", "device_id"),
            ("temp-c", "temp_c"),
            ("Temp (°C)", "temp_c"),
            ("a.b/c d", "a_b_c_d"),
            ("_private", "_private"),
            ("snake_case", "snake_case"),
            ("v2Value", "v2_value"),
            ("  padded  ", "padded"),
            ("2nd", "2nd"),
            ("°", ""),
        ] {
            assert_eq!(normalize_key(key), column, "{key}");
        }
        assert!(is_valid_column_name("temp_c"));
        assert!(is_valid_column_name("_x1"));
        assert!(!is_valid_column_name("2nd"));
        assert!(!is_valid_column_name(""));
        assert!(!is_valid_column_name(&"a".repeat(64)));
    }

    #[test]
    fn bad_keys_are_refused() {
        let src = source(json!({"topic": "+/+", "topic_pattern": "{site}/{x}"}));
        for (payload, why) in [
            (r#"{"2nd": 1}"#, "not valid"),
            (r#"{"°": 1}"#, "no letters"),
            (r#"{"Temp": 1, "temp": 2}"#, "like another key"),
            (r#"{"a": {"b": 1}, "a_b": 2}"#, "like another key"),
            (r#"{"time": 1}"#, "time"),
            (r#"{"Site": "x"}"#, "tag"),
        ] {
            let e = map_err(&src, "s/y", payload.as_bytes());
            assert_eq!(e.kind(), "bad_key", "{payload}: {e}");
            assert!(e.message().contains(why), "{payload}: {e}");
        }
        let long = format!(r#"{{"{}": 1}}"#, "a".repeat(64));
        assert_eq!(map_err(&src, "s/y", long.as_bytes()).kind(), "bad_key");
    }

    #[test]
    fn payload_errors_have_kinds_and_samples() {
        let src = source(json!({"topic": "a"}));
        let e = map_err(&src, "a", b"not json");
        assert_eq!(e.kind(), "not_json");
        assert!(e.message().contains("\"not json\""), "{e}");
        assert_eq!(map_err(&src, "a", b"[1,2]").kind(), "not_object");
        assert_eq!(map_err(&src, "a", b"42").kind(), "not_object");
        assert_eq!(map_err(&src, "a", b"{}").kind(), "no_fields");
        assert_eq!(map_err(&src, "a", br#"{"x": null}"#).kind(), "no_fields");
        let e = map_err(&src, "a", br#"{"x": [1]}"#);
        assert_eq!(e.kind(), "unsupported_value");
        assert!(e.message().contains("'x'"));
        assert_eq!(map_err(&src, "a", b"\xff\xfe").kind(), "not_json");
    }

    #[test]
    fn samples_are_truncated_to_128_bytes() {
        let src = source(json!({"topic": "a"}));
        let payload = format!("x{}", "y".repeat(500));
        let e = map_err(&src, "a", payload.as_bytes());
        assert!(
            e.message().contains(&format!("\"x{}\"…", "y".repeat(127))),
            "{e}"
        );
        assert!(!e.message().contains(&"y".repeat(128)));
        assert_eq!(sample(b"a\nb"), "\"a\\nb\"");
    }

    #[test]
    fn topic_pattern_levels_become_tags() {
        let src = source(json!({
            "topic": "plant/+/line/+/+",
            "topic_pattern": "plant/{site}/line/{line}/{sensor}"
        }));
        let p = map_ok(&src, "plant/north/line/3/temp", r#"{"v": 1}"#);
        assert_eq!(
            p.tags,
            vec![
                ("site".to_string(), "north".to_string()),
                ("line".to_string(), "3".to_string()),
                ("sensor".to_string(), "temp".to_string()),
            ]
        );
        let src = source(json!({"topic": "plant/#", "topic_pattern": "plant/{site}/{sensor}"}));
        assert_eq!(
            map_err(&src, "plant/a/b/c", br#"{"v":1}"#).kind(),
            "topic_mismatch"
        );
        assert_eq!(
            map_err(&src, "plant/a", br#"{"v":1}"#).kind(),
            "topic_mismatch"
        );
        let src = source(json!({"topic": "+/x", "topic_pattern": "plant/{sensor}"}));
        let e = map_err(&src, "other/x", br#"{"v":1}"#);
        assert_eq!(e.kind(), "topic_mismatch");
        assert!(e.message().contains("'plant'"), "{e}");
    }

    #[test]
    fn raw_payloads_are_one_string_field() {
        let src = source(json!({"topic": "a/+", "payload": "raw", "topic_pattern": "a/{dev}"}));
        let p = map_ok(&src, "a/d1", "hello 1,2,3");
        assert_eq!(p.tags, vec![("dev".to_string(), "d1".to_string())]);
        assert_eq!(
            p.fields,
            vec![(
                "payload".to_string(),
                FieldValue::String("hello 1,2,3".into())
            )]
        );
        assert_eq!(p.time_ns, NOW);
        let e = map_err(&src, "a/d1", b"ok\xff");
        assert_eq!(e.kind(), "not_utf8");
        assert!(e.message().contains("ok\u{fffd}"), "{e}");
    }

    fn ts_source(format: &str) -> MqttSource {
        source(json!({"topic": "a", "timestamp": {"field": "ts", "format": format}}))
    }

    #[test]
    fn timestamps_in_every_format() {
        let base = 1_714_564_800_000_000_000i64; // 2024-05-01T12:00:00Z
        let cases: &[(&str, &str, i64)] = &[
            ("rfc3339", r#""2024-05-01T12:00:00Z""#, base),
            (
                "rfc3339",
                r#""2024-05-01T14:00:00.5+02:00""#,
                base + 500_000_000,
            ),
            ("unix_s", "1714564800", base),
            ("unix_s", "1714564800.25", base + 250_000_000),
            ("unix_s", r#""1714564800.000000001""#, base + 1),
            ("unix_s", "1.7145648e9", base),
            ("unix_ms", "1714564800123", base + 123_000_000),
            ("unix_ms", "1714564800123.5", base + 123_500_000),
            ("unix_us", "1714564800123456", base + 123_456_000),
            ("unix_ns", "1714564800123456789", base + 123_456_789),
            ("unix_ns", r#""1714564800123456789""#, base + 123_456_789),
            ("unix_s", "-1", -1_000_000_000),
            ("unix_s", "0", 0),
        ];
        for (format, value, expected) in cases {
            let src = ts_source(format);
            let payload = format!(r#"{{"ts": {value}, "v": 1}}"#);
            let p = map_ok(&src, "a", &payload);
            assert_eq!(p.time_ns, *expected, "{format} {value}");
            assert_eq!(p.fields, vec![("v".to_string(), FieldValue::Float(1.0))]);
        }
    }

    #[test]
    fn timestamp_errors() {
        let src = ts_source("unix_ms");
        assert_eq!(
            map_err(&src, "a", br#"{"v": 1}"#).kind(),
            "missing_timestamp"
        );
        assert_eq!(
            map_err(&src, "a", br#"{"ts": null, "v": 1}"#).kind(),
            "missing_timestamp"
        );
        for bad in [r#""soon""#, "true", "1e30", r#""""#, r#""12a""#, "{}"] {
            let payload = format!(r#"{{"ts": {bad}, "v": 1}}"#);
            let e = map_err(&src, "a", payload.as_bytes());
            assert_eq!(e.kind(), "bad_timestamp", "{bad}: {e}");
        }
        let src = ts_source("rfc3339");
        for bad in [
            "1714564800",
            r#""2024-05-01 12:00""#,
            r#""3000-01-01T00:00:00Z""#,
        ] {
            let payload = format!(r#"{{"ts": {bad}, "v": 1}}"#);
            assert_eq!(
                map_err(&src, "a", payload.as_bytes()).kind(),
                "bad_timestamp",
                "{bad}"
            );
        }
        // Only the timestamp: no fields left.
        let src = ts_source("unix_s");
        assert_eq!(map_err(&src, "a", br#"{"ts": 1}"#).kind(), "no_fields");
    }

    #[test]
    fn decimals_are_exact() {
        assert_eq!(decimal_scaled("1.5", 3), Some(1500));
        assert_eq!(decimal_scaled("0.0015", 3), Some(1));
        assert_eq!(decimal_scaled("-0.0015", 3), Some(-1));
        assert_eq!(decimal_scaled("15e-1", 0), Some(1));
        assert_eq!(decimal_scaled("1E2", 0), Some(100));
        assert_eq!(decimal_scaled(".5", 1), Some(5));
        assert_eq!(decimal_scaled("5.", 1), Some(50));
        assert_eq!(decimal_scaled("0", 9), Some(0));
        assert_eq!(decimal_scaled("1e-400", 9), Some(0));
        assert_eq!(decimal_scaled("0e999999", 9), Some(0));
        assert_eq!(decimal_scaled("9223372036854775807", 0), Some(i64::MAX));
        assert_eq!(decimal_scaled("9223372036854775808", 0), None);
        for bad in ["", "-", ".", "1.2.3", "1e", "abc", "1_000", " 1", "0x10"] {
            assert_eq!(decimal_scaled(bad, 0), None, "{bad:?}");
        }
    }
}
