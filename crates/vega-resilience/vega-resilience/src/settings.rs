//! Settings errors shared by every component.
//!
//! Each settings struct has a `validate()` that checks every field and
//! returns all problems at once, each with the path of the field, so a
//! configuration loader can report them together before giving up.

use std::fmt;
use std::time::Duration;

/// One invalid settings field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SettingError {
    /// Path of the field, e.g. `services.trino.failure_rate_threshold`.
    pub field: String,
    /// What is wrong with it, in words for an operator.
    pub message: String,
}

impl SettingError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The same error with `prefix.` in front of its field path.
    pub fn prefixed(mut self, prefix: &str) -> Self {
        if !prefix.is_empty() {
            self.field = format!("{prefix}.{}", self.field);
        }
        self
    }
}

/// Settings rejected by a constructor, with every problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct InvalidSettings {
    pub errors: Vec<SettingError>,
}

impl fmt::Display for InvalidSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid settings: ")?;
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl From<Vec<SettingError>> for InvalidSettings {
    fn from(errors: Vec<SettingError>) -> Self {
        Self { errors }
    }
}

impl vega_core::Classify for InvalidSettings {
    fn class(&self) -> vega_core::ErrorClass {
        vega_core::ErrorClass::BadInput
    }
}

/// Collects errors while a settings struct is checked field by field.
#[derive(Debug, Default)]
pub(crate) struct Checker {
    errors: Vec<SettingError>,
}

impl Checker {
    pub(crate) fn percent(&mut self, field: &str, value: f32) {
        // Written so that NaN fails too.
        if !(value > 0.0 && value <= 100.0) {
            self.fail(field, format!("must be a percent in (0, 100], got {value}"));
        }
    }

    pub(crate) fn at_least(&mut self, field: &str, value: u32, min: u32) {
        if value < min {
            self.fail(field, format!("must be at least {min}, got {value}"));
        }
    }

    pub(crate) fn positive(&mut self, field: &str, value: Duration) {
        if value.is_zero() {
            self.fail(field, "must be longer than zero");
        }
    }

    pub(crate) fn fail(&mut self, field: &str, message: impl Into<String>) {
        self.errors.push(SettingError::new(field, message));
    }

    pub(crate) fn finish(self) -> Result<(), Vec<SettingError>> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(self.errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_settings_lists_every_error() {
        let e = InvalidSettings::from(vec![
            SettingError::new("a", "bad"),
            SettingError::new("b", "worse"),
        ]);
        assert_eq!(e.to_string(), "invalid settings: a: bad; b: worse");
    }

    #[test]
    fn prefix_builds_a_path() {
        let e = SettingError::new("weight", "x").prefixed("backends.0");
        assert_eq!(e.field, "backends.0.weight");
    }

    #[test]
    fn percent_rejects_nan_zero_and_above_hundred() {
        let mut c = Checker::default();
        c.percent("nan", f32::NAN);
        c.percent("zero", 0.0);
        c.percent("big", 100.5);
        c.percent("ok", 100.0);
        let errors = c.finish().unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["nan", "zero", "big"]);
    }
}
