//! Secret references. Connection parameters never hold a secret itself, only
//! where to find it: `{"env": "PG_PASSWORD"}` (an environment variable of
//! the Vega process) or `{"file": "/run/secrets/pg"}` (a file's contents,
//! trailing newline removed). A plain string where a secret belongs is
//! refused, so no secret is ever stored in the catalog or returned by the
//! API. Resolved values live only as long as the read that needs them.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::ConnectorError;

/// Where a secret is found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum SecretRef {
    /// An environment variable of the Vega process.
    Env(String),
    /// A file whose contents (without a trailing newline) are the secret.
    File(std::path::PathBuf),
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(var) => write!(f, "env:{var}"),
            SecretRef::File(path) => write!(f, "file:{}", path.display()),
        }
    }
}

/// A resolved secret: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl SecretRef {
    /// Parses a parameter that must be a secret reference; `field` names it
    /// in errors. A plain string is refused with a hint.
    pub fn from_param(field: &str, value: &serde_json::Value) -> Result<Self, ConnectorError> {
        if value.is_string() {
            return Err(ConnectorError::InvalidParams {
                field: field.to_string(),
                message: "secrets are not stored: give a reference, {\"env\": \"VAR\"} or {\"file\": \"/path\"}".into(),
            });
        }
        serde_json::from_value(value.clone()).map_err(|e| ConnectorError::InvalidParams {
            field: field.to_string(),
            message: format!("expected {{\"env\": \"VAR\"}} or {{\"file\": \"/path\"}}: {e}"),
        })
    }

    /// Reads the secret now.
    pub fn resolve(&self) -> Result<SecretValue, ConnectorError> {
        match self {
            SecretRef::Env(var) => {
                std::env::var(var)
                    .map(SecretValue)
                    .map_err(|_| ConnectorError::SecretRef {
                        reference: self.to_string(),
                        message: "the environment variable is not set or not valid text".into(),
                    })
            }
            SecretRef::File(path) => std::fs::read_to_string(path)
                .map(|s| SecretValue(s.trim_end_matches(['\n', '\r']).to_string()))
                .map_err(|e| ConnectorError::SecretRef {
                    reference: self.to_string(),
                    message: e.kind().to_string(),
                }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn plain_strings_are_refused() {
        let err = SecretRef::from_param("password", &json!("hunter2")).unwrap_err();
        assert!(err.to_string().contains("password"));
        assert!(!err.to_string().contains("hunter2"));
    }

    #[test]
    fn env_and_file_references_resolve() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        std::fs::write(&path, "from-file\n").unwrap();
        let r = SecretRef::from_param("password", &json!({ "file": path })).unwrap();
        assert_eq!(r.resolve().unwrap().expose(), "from-file");
        let r = SecretRef::from_param("password", &json!({ "env": "PATH" })).unwrap();
        assert!(!r.resolve().unwrap().expose().is_empty());
    }

    #[test]
    fn unresolvable_references_name_the_reference_not_the_secret() {
        let r = SecretRef::Env("VEGA_TEST_SURELY_UNSET_VARIABLE".into());
        let err = r.resolve().unwrap_err();
        assert!(err
            .to_string()
            .contains("env:VEGA_TEST_SURELY_UNSET_VARIABLE"));
        assert_eq!(format!("{:?}", SecretValue("x".into())), "***");
    }

    #[test]
    fn unknown_reference_kinds_are_refused() {
        assert!(SecretRef::from_param("password", &json!({ "vault": "x" })).is_err());
    }
}
