//! Watermark values of incremental reads: the time of the newest point
//! read, stored as an RFC 3339 string with nanoseconds in UTC
//! (`2024-05-01T12:00:00.000000001Z`). Integer nanoseconds since the epoch
//! are accepted too.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;
use vega_connectors::ConnectorError;

use crate::config::invalid;

/// The stored form of a time in nanoseconds since the epoch.
pub fn to_value(ns: i64) -> Value {
    Value::String(
        DateTime::<Utc>::from_timestamp_nanos(ns).to_rfc3339_opts(SecondsFormat::Nanos, true),
    )
}

/// Nanoseconds since the epoch from a stored watermark value.
pub fn from_value(value: &Value) -> Result<i64, ConnectorError> {
    let parsed = match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => match s.parse::<i64>() {
            Ok(ns) => Some(ns),
            Err(_) => DateTime::parse_from_rfc3339(s)
                .ok()
                .and_then(|t| t.timestamp_nanos_opt()),
        },
        _ => None,
    };
    parsed.ok_or_else(|| {
        invalid(
            "watermark.value",
            format!("expected an RFC 3339 time or integer nanoseconds, not {value}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_round_trip_with_nanoseconds() {
        let ns = 1_714_564_800_000_000_001;
        assert_eq!(to_value(ns), json!("2024-05-01T12:00:00.000000001Z"));
        assert_eq!(from_value(&to_value(ns)).unwrap(), ns);
        assert_eq!(from_value(&json!(ns)).unwrap(), ns);
    }

    #[test]
    fn bad_values_name_the_watermark() {
        let err = from_value(&json!("yesterday")).unwrap_err();
        assert!(err.to_string().contains("watermark.value"), "{err}");
        assert!(from_value(&json!(true)).is_err());
    }
}
