//! Human-readable durations for configuration values: `"250ms"`, `"30s"`,
//! `"5m"`, `"1h"`, `"1d"`, or a plain integer meaning seconds.
//!
//! Deserializes from a string or a non-negative integer and serializes back
//! to a string in the largest unit that represents the value exactly.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

const MS_PER_SECOND: u64 = 1_000;
const MS_PER_MINUTE: u64 = 60 * MS_PER_SECOND;
const MS_PER_HOUR: u64 = 60 * MS_PER_MINUTE;
const MS_PER_DAY: u64 = 24 * MS_PER_HOUR;

/// Units accepted by the parser, largest first (the order used to print).
const UNITS: [(&str, u64); 5] = [
    ("d", MS_PER_DAY),
    ("h", MS_PER_HOUR),
    ("m", MS_PER_MINUTE),
    ("s", MS_PER_SECOND),
    ("ms", 1),
];

/// The list of units shown in error messages.
const UNIT_HINT: &str = "use ms, s, m, h, d";

/// A duration read from configuration, with millisecond precision.
///
/// Written as an integer followed by a unit (`ms`, `s`, `m`, `h`, `d`), for
/// example `"250ms"` or `"5m"`; a bare integer means seconds. Fractions and
/// negative values are rejected.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HumanDuration {
    millis: u64,
}

impl HumanDuration {
    /// The zero duration.
    pub const ZERO: HumanDuration = HumanDuration { millis: 0 };

    /// A duration of `millis` milliseconds.
    pub const fn from_millis(millis: u64) -> Self {
        HumanDuration { millis }
    }

    /// A duration of `secs` seconds, saturating at the largest representable
    /// value.
    pub const fn from_secs(secs: u64) -> Self {
        HumanDuration {
            millis: secs.saturating_mul(MS_PER_SECOND),
        }
    }

    /// A duration of `mins` minutes, saturating at the largest representable
    /// value.
    pub const fn from_mins(mins: u64) -> Self {
        HumanDuration {
            millis: mins.saturating_mul(MS_PER_MINUTE),
        }
    }

    /// A duration of `hours` hours, saturating at the largest representable
    /// value.
    pub const fn from_hours(hours: u64) -> Self {
        HumanDuration {
            millis: hours.saturating_mul(MS_PER_HOUR),
        }
    }

    /// The length in whole milliseconds.
    pub const fn as_millis(&self) -> u64 {
        self.millis
    }

    /// The same length as a [`std::time::Duration`].
    pub const fn as_std(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.millis)
    }

    /// Whether this is the zero duration.
    pub const fn is_zero(&self) -> bool {
        self.millis == 0
    }
}

impl From<HumanDuration> for std::time::Duration {
    fn from(value: HumanDuration) -> Self {
        value.as_std()
    }
}

/// Why a duration could not be parsed. The message quotes the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The input was empty or only whitespace.
    #[error("invalid duration \"{input}\": empty value (write e.g. \"30s\")")]
    Empty { input: String },
    /// The input started with a minus sign.
    #[error("invalid duration \"{input}\": negative durations are not allowed")]
    Negative { input: String },
    /// The input did not start with a whole number.
    #[error(
        "invalid duration \"{input}\": expected a whole number followed by a unit, e.g. \"30s\" ({UNIT_HINT})"
    )]
    NoNumber { input: String },
    /// The number had a fractional part.
    #[error(
        "invalid duration \"{input}\": fractions are not supported, use a smaller unit ({UNIT_HINT})"
    )]
    Fraction { input: String },
    /// The unit is not one of the known units.
    #[error("invalid duration \"{input}\": unknown unit \"{unit}\" ({UNIT_HINT})")]
    UnknownUnit { input: String, unit: String },
    /// The value does not fit in 64-bit milliseconds.
    #[error("invalid duration \"{input}\": too large")]
    Overflow { input: String },
}

impl FromStr for HumanDuration {
    type Err = DurationError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let owned = || input.to_string();
        let text = input.trim();
        if text.is_empty() {
            return Err(DurationError::Empty { input: owned() });
        }
        if text.starts_with('-') {
            return Err(DurationError::Negative { input: owned() });
        }
        let text = text.strip_prefix('+').unwrap_or(text);
        let digits_end = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (digits, rest) = text.split_at(digits_end);
        if rest.starts_with(['.', ',']) {
            return Err(DurationError::Fraction { input: owned() });
        }
        if digits.is_empty() {
            return Err(DurationError::NoNumber { input: owned() });
        }
        let number: u64 = digits
            .parse()
            .map_err(|_| DurationError::Overflow { input: owned() })?;
        let unit = rest.trim_start();
        let per_unit = if unit.is_empty() {
            MS_PER_SECOND
        } else {
            UNITS
                .iter()
                .find(|(name, _)| *name == unit)
                .map(|(_, ms)| *ms)
                .ok_or_else(|| DurationError::UnknownUnit {
                    input: owned(),
                    unit: unit.to_string(),
                })?
        };
        number
            .checked_mul(per_unit)
            .map(HumanDuration::from_millis)
            .ok_or_else(|| DurationError::Overflow { input: owned() })
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.millis == 0 {
            return f.write_str("0s");
        }
        for (name, per_unit) in UNITS {
            if self.millis.is_multiple_of(per_unit) {
                return write!(f, "{}{}", self.millis / per_unit, name);
            }
        }
        // Unreachable: every value is a whole number of milliseconds.
        write!(f, "{}ms", self.millis)
    }
}

impl fmt::Debug for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DurationVisitor)
    }
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = HumanDuration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "a duration such as \"250ms\", \"30s\", \"5m\", \"1h\", \"1d\" or whole seconds",
        )
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        v.checked_mul(MS_PER_SECOND)
            .map(HumanDuration::from_millis)
            .ok_or_else(|| E::custom(format!("invalid duration {v}: too large")))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => Err(E::custom(format!(
                "invalid duration {v}: negative durations are not allowed"
            ))),
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Err(E::custom(format!(
            "invalid duration {v}: fractions are not supported, use a smaller unit ({UNIT_HINT})"
        )))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        v.parse().map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<HumanDuration, DurationError> {
        s.parse()
    }

    #[test]
    fn parses_every_unit() {
        assert_eq!(parse("250ms"), Ok(HumanDuration::from_millis(250)));
        assert_eq!(parse("30s"), Ok(HumanDuration::from_secs(30)));
        assert_eq!(parse("5m"), Ok(HumanDuration::from_mins(5)));
        assert_eq!(parse("1h"), Ok(HumanDuration::from_hours(1)));
        assert_eq!(parse("1d"), Ok(HumanDuration::from_hours(24)));
    }

    #[test]
    fn bare_number_string_means_seconds() {
        assert_eq!(parse("45"), Ok(HumanDuration::from_secs(45)));
    }

    #[test]
    fn allows_surrounding_and_inner_whitespace() {
        assert_eq!(parse("  10 s "), Ok(HumanDuration::from_secs(10)));
    }

    #[test]
    fn zero_is_accepted_by_the_parser() {
        assert_eq!(parse("0s"), Ok(HumanDuration::ZERO));
    }

    #[test]
    fn rejects_unknown_unit_with_hint() {
        let err = parse("5 parsecs").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid duration \"5 parsecs\": unknown unit \"parsecs\" (use ms, s, m, h, d)"
        );
    }

    #[test]
    fn units_are_case_sensitive() {
        assert!(matches!(
            parse("5S"),
            Err(DurationError::UnknownUnit { .. })
        ));
    }

    #[test]
    fn rejects_negative() {
        assert!(matches!(parse("-5s"), Err(DurationError::Negative { .. })));
    }

    #[test]
    fn rejects_empty() {
        assert!(matches!(parse("  "), Err(DurationError::Empty { .. })));
    }

    #[test]
    fn rejects_missing_number() {
        assert!(matches!(parse("ms"), Err(DurationError::NoNumber { .. })));
    }

    #[test]
    fn rejects_fraction() {
        assert!(matches!(parse("1.5h"), Err(DurationError::Fraction { .. })));
    }

    #[test]
    fn rejects_number_too_large_for_u64() {
        assert!(matches!(
            parse("99999999999999999999999s"),
            Err(DurationError::Overflow { .. })
        ));
    }

    #[test]
    fn rejects_unit_multiplication_overflow() {
        assert!(matches!(
            parse("999999999999999999d"),
            Err(DurationError::Overflow { .. })
        ));
    }

    #[test]
    fn displays_in_largest_exact_unit() {
        assert_eq!(HumanDuration::from_millis(1500).to_string(), "1500ms");
        assert_eq!(HumanDuration::from_secs(90).to_string(), "90s");
        assert_eq!(HumanDuration::from_secs(600).to_string(), "10m");
        assert_eq!(HumanDuration::from_hours(48).to_string(), "2d");
        assert_eq!(HumanDuration::ZERO.to_string(), "0s");
    }

    #[test]
    fn display_round_trips_through_parse() {
        for ms in [0, 1, 999, 1000, 61_000, 3_600_000, 90_000_000, u64::MAX] {
            let d = HumanDuration::from_millis(ms);
            assert_eq!(parse(&d.to_string()), Ok(d));
        }
    }

    #[test]
    fn converts_to_std_duration() {
        let std: std::time::Duration = HumanDuration::from_millis(1500).into();
        assert_eq!(std, std::time::Duration::from_millis(1500));
    }

    #[test]
    fn deserializes_from_yaml_string() {
        let d: HumanDuration = serde_yaml::from_str("\"5m\"").unwrap();
        assert_eq!(d, HumanDuration::from_mins(5));
    }

    #[test]
    fn deserializes_from_yaml_integer_as_seconds() {
        let d: HumanDuration = serde_yaml::from_str("12").unwrap();
        assert_eq!(d, HumanDuration::from_secs(12));
    }

    #[test]
    fn deserialize_rejects_negative_integer() {
        let err = serde_yaml::from_str::<HumanDuration>("-3").unwrap_err();
        assert!(err.to_string().contains("negative"), "{err}");
    }

    #[test]
    fn deserialize_rejects_float() {
        let err = serde_yaml::from_str::<HumanDuration>("1.5").unwrap_err();
        assert!(err.to_string().contains("fractions"), "{err}");
    }

    #[test]
    fn deserialize_rejects_bool() {
        assert!(serde_yaml::from_str::<HumanDuration>("true").is_err());
    }

    #[test]
    fn serializes_as_string() {
        let text = serde_yaml::to_string(&HumanDuration::from_secs(30)).unwrap();
        assert_eq!(text.trim(), "30s");
    }
}
