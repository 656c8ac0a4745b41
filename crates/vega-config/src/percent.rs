//! Percentages for configuration values: `50`, `12.5`.
//!
//! Deserializes from an integer or a decimal number (not from text, so
//! `"50%"` is refused with a message saying how to write it) and serializes
//! back as an integer when the value is whole. The range a key accepts is a
//! rule of that key, checked with the other rules.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A percentage: a finite number, usually between 0 and 100.
#[derive(Clone, Copy, PartialEq, PartialOrd, Default)]
pub struct Percent(f64);

impl Percent {
    /// `value` percent. Not-a-number becomes zero, so a `Percent` is always
    /// comparable.
    pub const fn new(value: f64) -> Self {
        if value.is_nan() {
            Percent(0.0)
        } else {
            Percent(value)
        }
    }

    /// The number of percent, e.g. `50.0`.
    pub const fn value(&self) -> f64 {
        self.0
    }

    /// The fraction it stands for, e.g. `0.5` for 50 %.
    pub fn as_fraction(&self) -> f64 {
        self.0 / 100.0
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.0)
    }
}

/// Largest whole value printed as an integer; beyond it an `f64` is no
/// longer exact and is printed as a decimal.
const MAX_EXACT_WHOLE: f64 = 9_007_199_254_740_992.0;

impl Serialize for Percent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.0.fract() == 0.0 && self.0.abs() <= MAX_EXACT_WHOLE {
            // Whole and exact: `50`, not `50.0`.
            serializer.serialize_i64(self.0 as i64)
        } else {
            serializer.serialize_f64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(PercentVisitor)
    }
}

struct PercentVisitor;

impl PercentVisitor {
    fn not_a_number<E: de::Error>(found: &str) -> E {
        E::custom(format!(
            "must be a number of percent such as 50 or 12.5, found {found}"
        ))
    }
}

impl Visitor<'_> for PercentVisitor {
    type Value = Percent;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number of percent such as 50 or 12.5")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Percent, E> {
        Ok(Percent(v as f64))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Percent, E> {
        Ok(Percent(v as f64))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Percent, E> {
        if v.is_finite() {
            Ok(Percent(v))
        } else {
            Err(Self::not_a_number(&format!("{v}")))
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Percent, E> {
        Err(Self::not_a_number(&format!(
            "the text \"{v}\" (write the number without quotes or %)"
        )))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Percent, E> {
        Err(Self::not_a_number("a boolean"))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Percent, E> {
        Err(Self::not_a_number("nothing"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<Percent, String> {
        serde_yaml::from_str(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn integers_and_decimals_are_read() {
        assert_eq!(parse("50"), Ok(Percent::new(50.0)));
        assert_eq!(parse("12.5"), Ok(Percent::new(12.5)));
        assert_eq!(parse("-3"), Ok(Percent::new(-3.0)));
        assert_eq!(parse("50").unwrap().as_fraction(), 0.5);
    }

    #[test]
    fn text_and_non_finite_values_are_refused_with_a_hint() {
        let err = parse("\"50%\"").unwrap_err();
        assert!(err.contains("without quotes or %"), "{err}");
        assert!(parse(".nan").unwrap_err().contains("must be a number"));
        assert!(parse(".inf").unwrap_err().contains("must be a number"));
        assert!(parse("true").is_err());
        assert!(parse("~").is_err());
    }

    #[test]
    fn whole_values_print_as_integers() {
        assert_eq!(serde_yaml::to_string(&Percent::new(50.0)).unwrap(), "50\n");
        assert_eq!(
            serde_yaml::to_string(&Percent::new(12.5)).unwrap(),
            "12.5\n"
        );
    }

    #[test]
    fn nan_becomes_zero() {
        assert_eq!(Percent::new(f64::NAN).value(), 0.0);
    }
}
