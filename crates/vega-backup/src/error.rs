//! Errors of the backup repository, each naming the backup, object or file
//! involved, and classified for the HTTP layer ([`Classify`]).

use std::io;
use std::path::PathBuf;

use vega_core::{Classify, ErrorClass};

/// What went wrong in the backup repository. Each variant's fields are
/// what its message shows.
#[allow(missing_docs)]
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// No backup with this id is in the repository.
    #[error("backup '{id}' not found")]
    NotFound { id: String },

    /// A backup that holds no catalog snapshot was asked for one.
    #[error("backup '{id}' has no catalog snapshot")]
    NoCatalog { id: String },

    /// A manifest that cannot be read as a backup manifest (bad JSON, an
    /// unknown format, fields that contradict each other).
    #[error("corrupt manifest of backup '{id}': {message}")]
    CorruptManifest { id: String, message: String },

    /// An object a backup names is not in the repository.
    #[error("object '{path}' (sha256 {sha256}) is missing from the repository")]
    ObjectMissing { path: String, sha256: String },

    /// An object (or a file being backed up) does not have the size it
    /// should have.
    #[error("'{path}' size mismatch: expected {expected} bytes, found {actual}")]
    SizeMismatch {
        path: String,
        expected: u64,
        actual: u64,
    },

    /// An object (or a file being backed up) whose bytes do not hash to the
    /// expected sha256.
    #[error("'{path}' checksum mismatch: expected sha256 {expected}, found {actual}")]
    ChecksumMismatch {
        path: String,
        expected: String,
        actual: String,
    },

    /// An argument that cannot be used: a bad relative path, the same path
    /// twice in one backup, an asset backup without an asset id, …
    #[error("invalid {what}: {message}")]
    Invalid { what: &'static str, message: String },

    /// The object store could not be configured (bad bucket or endpoint).
    #[error("cannot configure the backup store: {message}")]
    Config { message: String },

    /// The object store could not be reached or refused a request.
    #[error("backup store: {action} '{path}': {message}")]
    Store {
        action: &'static str,
        path: String,
        message: String,
    },

    /// A local file-system operation failed.
    #[error("cannot {action} '{path}': {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl BackupError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        BackupError::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn store(
        action: &'static str,
        path: impl std::fmt::Display,
        e: impl std::fmt::Display,
    ) -> Self {
        BackupError::Store {
            action,
            path: path.to_string(),
            message: e.to_string(),
        }
    }

    pub(crate) fn invalid(what: &'static str, message: impl Into<String>) -> Self {
        BackupError::Invalid {
            what,
            message: message.into(),
        }
    }

    pub(crate) fn corrupt(id: impl Into<String>, message: impl Into<String>) -> Self {
        BackupError::CorruptManifest {
            id: id.into(),
            message: message.into(),
        }
    }
}

impl Classify for BackupError {
    fn class(&self) -> ErrorClass {
        match self {
            BackupError::NotFound { .. } | BackupError::NoCatalog { .. } => ErrorClass::NotFound,
            BackupError::Invalid { .. } | BackupError::Config { .. } => ErrorClass::BadInput,
            BackupError::CorruptManifest { .. }
            | BackupError::ObjectMissing { .. }
            | BackupError::SizeMismatch { .. }
            | BackupError::ChecksumMismatch { .. } => ErrorClass::RuleBroken,
            BackupError::Store { .. } => ErrorClass::Unavailable,
            BackupError::Io { .. } => ErrorClass::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        let not_found = BackupError::NotFound { id: "bak_x".into() };
        assert_eq!(not_found.class(), ErrorClass::NotFound);
        assert!(!not_found.is_retryable());
        let corrupt = BackupError::corrupt("bak_x", "expected value at line 1");
        assert_eq!(corrupt.class(), ErrorClass::RuleBroken);
        assert!(corrupt
            .to_string()
            .starts_with("corrupt manifest of backup 'bak_x'"));
        let store = BackupError::store("uploading", "objects/x", "connection refused");
        assert!(store.is_retryable());
        let io = BackupError::io("read", "/x", io::Error::other("boom"));
        assert_eq!(io.class(), ErrorClass::Internal);
    }
}
