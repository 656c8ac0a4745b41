//! Human-readable byte sizes for configuration values: `"512KB"`,
//! `"10MiB"`, `"1GiB"`, `"1GB"`, or a plain integer meaning bytes.
//!
//! Decimal units (`KB`, `MB`, `GB`, `TB`) are powers of 1000, binary units
//! (`KiB`, `MiB`, `GiB`, `TiB`) powers of 1024. Units are matched without
//! regard to case. Deserializes from a string or a non-negative integer and
//! serializes back to a string in the largest unit that is exact.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const TIB: u64 = 1 << 40;
const KB: u64 = 1_000;
const MB: u64 = 1_000_000;
const GB: u64 = 1_000_000_000;
const TB: u64 = 1_000_000_000_000;

/// Units accepted by the parser, largest first (the order used to print).
const UNITS: [(&str, u64); 9] = [
    ("TiB", TIB),
    ("TB", TB),
    ("GiB", GIB),
    ("GB", GB),
    ("MiB", MIB),
    ("MB", MB),
    ("KiB", KIB),
    ("KB", KB),
    ("B", 1),
];

/// The list of units shown in error messages.
const UNIT_HINT: &str = "use B, KB, MB, GB, TB, KiB, MiB, GiB, TiB";

/// A number of bytes read from configuration.
///
/// Written as an integer, optionally followed by a unit, for example
/// `"512KB"`, `"10MiB"` or `1048576`. Fractions and negative values are
/// rejected.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(u64);

impl ByteSize {
    /// A size of `bytes` bytes.
    pub const fn b(bytes: u64) -> Self {
        ByteSize(bytes)
    }

    /// A size of `n` kibibytes (1024 bytes each), saturating on overflow.
    pub const fn kib(n: u64) -> Self {
        ByteSize(n.saturating_mul(KIB))
    }

    /// A size of `n` mebibytes, saturating on overflow.
    pub const fn mib(n: u64) -> Self {
        ByteSize(n.saturating_mul(MIB))
    }

    /// A size of `n` gibibytes, saturating on overflow.
    pub const fn gib(n: u64) -> Self {
        ByteSize(n.saturating_mul(GIB))
    }

    /// The size in bytes.
    pub const fn as_u64(&self) -> u64 {
        self.0
    }

    /// Whether the size is zero bytes.
    pub const fn is_zero(&self) -> bool {
        self.0 == 0
    }
}

/// Why a byte size could not be parsed. The message quotes the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ByteSizeError {
    /// The input was empty or only whitespace.
    #[error("invalid byte size \"{input}\": empty value (write e.g. \"10MiB\")")]
    Empty { input: String },
    /// The input started with a minus sign.
    #[error("invalid byte size \"{input}\": negative sizes are not allowed")]
    Negative { input: String },
    /// The input did not start with a whole number.
    #[error(
        "invalid byte size \"{input}\": expected a whole number followed by a unit, e.g. \"10MiB\" ({UNIT_HINT})"
    )]
    NoNumber { input: String },
    /// The number had a fractional part.
    #[error(
        "invalid byte size \"{input}\": fractions are not supported, use a smaller unit ({UNIT_HINT})"
    )]
    Fraction { input: String },
    /// The unit is not one of the known units.
    #[error("invalid byte size \"{input}\": unknown unit \"{unit}\" ({UNIT_HINT})")]
    UnknownUnit { input: String, unit: String },
    /// The value does not fit in 64 bits.
    #[error("invalid byte size \"{input}\": too large")]
    Overflow { input: String },
}

impl FromStr for ByteSize {
    type Err = ByteSizeError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let owned = || input.to_string();
        let text = input.trim();
        if text.is_empty() {
            return Err(ByteSizeError::Empty { input: owned() });
        }
        if text.starts_with('-') {
            return Err(ByteSizeError::Negative { input: owned() });
        }
        let text = text.strip_prefix('+').unwrap_or(text);
        let digits_end = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (digits, rest) = text.split_at(digits_end);
        if rest.starts_with(['.', ',']) {
            return Err(ByteSizeError::Fraction { input: owned() });
        }
        if digits.is_empty() {
            return Err(ByteSizeError::NoNumber { input: owned() });
        }
        let number: u64 = digits
            .parse()
            .map_err(|_| ByteSizeError::Overflow { input: owned() })?;
        let unit = rest.trim_start();
        let per_unit = if unit.is_empty() {
            1
        } else {
            UNITS
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(unit))
                .map(|(_, bytes)| *bytes)
                .ok_or_else(|| ByteSizeError::UnknownUnit {
                    input: owned(),
                    unit: unit.to_string(),
                })?
        };
        number
            .checked_mul(per_unit)
            .map(ByteSize)
            .ok_or_else(|| ByteSizeError::Overflow { input: owned() })
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("0B");
        }
        for (name, per_unit) in UNITS {
            if self.0.is_multiple_of(per_unit) {
                return write!(f, "{}{}", self.0 / per_unit, name);
            }
        }
        // Unreachable: the last unit is one byte.
        write!(f, "{}B", self.0)
    }
}

impl fmt::Debug for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ByteSizeVisitor)
    }
}

struct ByteSizeVisitor;

impl Visitor<'_> for ByteSizeVisitor {
    type Value = ByteSize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte size such as \"512KB\", \"10MiB\", \"1GiB\" or whole bytes")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(ByteSize(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        match u64::try_from(v) {
            Ok(v) => Ok(ByteSize(v)),
            Err(_) => Err(E::custom(format!(
                "invalid byte size {v}: negative sizes are not allowed"
            ))),
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Err(E::custom(format!(
            "invalid byte size {v}: fractions are not supported, use a smaller unit ({UNIT_HINT})"
        )))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        v.parse().map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<ByteSize, ByteSizeError> {
        s.parse()
    }

    #[test]
    fn parses_decimal_units() {
        assert_eq!(parse("512KB"), Ok(ByteSize::b(512_000)));
        assert_eq!(parse("3MB"), Ok(ByteSize::b(3_000_000)));
        assert_eq!(parse("1GB"), Ok(ByteSize::b(1_000_000_000)));
        assert_eq!(parse("2TB"), Ok(ByteSize::b(2_000_000_000_000)));
    }

    #[test]
    fn parses_binary_units() {
        assert_eq!(parse("4KiB"), Ok(ByteSize::b(4096)));
        assert_eq!(parse("10MiB"), Ok(ByteSize::b(10 * 1024 * 1024)));
        assert_eq!(parse("1GiB"), Ok(ByteSize::b(1 << 30)));
        assert_eq!(parse("1TiB"), Ok(ByteSize::b(1 << 40)));
    }

    #[test]
    fn units_ignore_case() {
        assert_eq!(parse("10mib"), Ok(ByteSize::mib(10)));
        assert_eq!(parse("1gb"), Ok(ByteSize::b(1_000_000_000)));
    }

    #[test]
    fn bare_number_means_bytes() {
        assert_eq!(parse("1234"), Ok(ByteSize::b(1234)));
        assert_eq!(parse("1234B"), Ok(ByteSize::b(1234)));
    }

    #[test]
    fn allows_whitespace_before_unit() {
        assert_eq!(parse(" 2 GiB "), Ok(ByteSize::gib(2)));
    }

    #[test]
    fn rejects_unknown_unit_with_hint() {
        let err = parse("5 parsecs").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid byte size \"5 parsecs\": unknown unit \"parsecs\" \
             (use B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)"
        );
    }

    #[test]
    fn rejects_negative() {
        assert!(matches!(parse("-1MB"), Err(ByteSizeError::Negative { .. })));
    }

    #[test]
    fn rejects_fraction() {
        assert!(matches!(
            parse("1.5GiB"),
            Err(ByteSizeError::Fraction { .. })
        ));
    }

    #[test]
    fn rejects_empty() {
        assert!(matches!(parse(""), Err(ByteSizeError::Empty { .. })));
    }

    #[test]
    fn rejects_missing_number() {
        assert!(matches!(parse("GiB"), Err(ByteSizeError::NoNumber { .. })));
    }

    #[test]
    fn rejects_overflow() {
        assert!(matches!(
            parse("20000000TiB"),
            Err(ByteSizeError::Overflow { .. })
        ));
        assert!(matches!(
            parse("999999999999999999999"),
            Err(ByteSizeError::Overflow { .. })
        ));
    }

    #[test]
    fn displays_in_largest_exact_unit() {
        assert_eq!(ByteSize::mib(10).to_string(), "10MiB");
        assert_eq!(ByteSize::gib(2).to_string(), "2GiB");
        assert_eq!(ByteSize::b(2_000_000_000).to_string(), "2GB");
        assert_eq!(ByteSize::b(1000).to_string(), "1KB");
        assert_eq!(ByteSize::b(1001).to_string(), "1001B");
        assert_eq!(ByteSize::b(0).to_string(), "0B");
    }

    #[test]
    fn display_round_trips_through_parse() {
        for n in [0, 1, 1000, 1024, 1_048_577, 5 << 40, u64::MAX] {
            let size = ByteSize::b(n);
            assert_eq!(parse(&size.to_string()), Ok(size));
        }
    }

    #[test]
    fn deserializes_from_yaml_string_and_integer() {
        let a: ByteSize = serde_yaml::from_str("10MiB").unwrap();
        let b: ByteSize = serde_yaml::from_str("4096").unwrap();
        assert_eq!(a, ByteSize::mib(10));
        assert_eq!(b, ByteSize::kib(4));
    }

    #[test]
    fn deserialize_rejects_negative_integer() {
        let err = serde_yaml::from_str::<ByteSize>("-1").unwrap_err();
        assert!(err.to_string().contains("negative"), "{err}");
    }

    #[test]
    fn serializes_as_string() {
        let text = serde_yaml::to_string(&ByteSize::gib(2)).unwrap();
        assert_eq!(text.trim(), "2GiB");
    }
}
