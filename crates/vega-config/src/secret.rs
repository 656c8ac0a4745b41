//! A string that must never appear in logs, debug output or printed
//! configuration.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What a [`Secret`] prints instead of its value, in `Debug`, `Display` and
/// when serialized.
pub const REDACTED: &str = "***";

/// A secret string such as an API key. `Debug`, `Display` and `Serialize`
/// all print [`REDACTED`]; only [`Secret::expose`] gives the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret value itself. Call this only where the value is used,
    /// never to print it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    /// Serializes as [`REDACTED`], so that printing a configuration can
    /// never leak the value.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SecretVisitor)
    }
}

/// Reads a string; for any other kind of value, fails with a message that
/// does not repeat the value (serde's default messages would).
struct SecretVisitor;

impl SecretVisitor {
    fn not_text<E: de::Error>(kind: &str) -> E {
        E::custom(format!(
            "must be text, found {kind} (quote it; the value is not shown because it is secret)"
        ))
    }
}

impl<'de> Visitor<'de> for SecretVisitor {
    type Value = Secret;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a secret string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Secret, E> {
        Ok(Secret(v.to_string()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Secret, E> {
        Ok(Secret(v))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Secret, E> {
        Err(Self::not_text("a boolean"))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Secret, E> {
        Err(Self::not_text("a number"))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Secret, E> {
        Err(Self::not_text("a number"))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Secret, E> {
        Err(Self::not_text("a number"))
    }

    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Secret, E> {
        Err(Self::not_text("bytes"))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Secret, E> {
        Err(Self::not_text("nothing"))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<Secret, A::Error> {
        Err(Self::not_text("a list"))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, _: A) -> Result<Secret, A::Error> {
        Err(Self::not_text("a mapping"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_are_redacted() {
        let s = Secret::new("hunter2-hunter2-hunter2-hunter2");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(format!("{s}"), "***");
    }

    #[test]
    fn serialize_is_redacted() {
        let s = Secret::new("hunter2-hunter2-hunter2-hunter2");
        assert_eq!(serde_yaml::to_string(&s).unwrap().trim(), "'***'");
    }

    #[test]
    fn non_text_value_is_rejected_without_echoing_it() {
        let value = serde_yaml::Value::from(123456789012345678u64);
        let err = serde_yaml::from_value::<Secret>(value).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("must be text"), "{message}");
        assert!(!message.contains("123456789012345678"), "{message}");
    }

    #[test]
    fn expose_returns_the_value() {
        let s: Secret = serde_yaml::from_str("abc").unwrap();
        assert_eq!(s.expose(), "abc");
    }
}
