//! Errors of connectors. Each names what was wrong (the parameter, the path,
//! the file and line) and is classified for the HTTP layer.

use std::io;
use std::path::PathBuf;

use vega_core::{Classify, ErrorClass};

/// What went wrong while resolving or reading a source.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// A connection parameter or source field with a bad value, an unknown
    /// field, or a missing required field. `field` is its dotted path
    /// (e.g. `csv.delimiter`).
    #[error("invalid parameter '{field}': {message}")]
    InvalidParams { field: String, message: String },

    /// A path outside the configured allowed roots (after following
    /// symlinks and `..`).
    #[error("path '{}' is outside the allowed roots of the file connector", path.display())]
    PathNotAllowed { path: PathBuf },

    /// No allowed roots are configured, so no path may be read.
    #[error(
        "path '{}' refused: the file connector has no allowed roots; set `connectors.file.allowed_roots` to the directories it may read",
        path.display()
    )]
    NoAllowedRoots { path: PathBuf },

    /// The file or directory does not exist.
    #[error("path '{}' does not exist", path.display())]
    PathNotFound { path: PathBuf },

    /// The process may not read the path.
    #[error("permission denied reading '{}'", path.display())]
    PermissionDenied { path: PathBuf },

    /// A file too large for the reader that would have to load it whole.
    #[error("file '{}' is {bytes} bytes; at most {limit} bytes are accepted for {what}", path.display())]
    FileTooLarge {
        path: PathBuf,
        bytes: u64,
        limit: u64,
        what: &'static str,
    },

    /// Data that does not fit: a malformed record, a value that does not
    /// parse as its column's type. `location` names the file and, where
    /// known, the line (e.g. `orders.csv line 17`). Permanent.
    #[error("bad data at {location}: {message}")]
    BadData { location: String, message: String },

    /// A source that cannot be reached (connection refused, DNS, a lost
    /// connection, a timeout). Retryable.
    #[error("cannot reach {what}: {message}")]
    Unreachable { what: String, message: String },

    /// The source answered with an error. `permanent` says whether retrying
    /// the same request can succeed (a 503 can; a missing table cannot).
    #[error("{what} answered with an error: {message}")]
    Remote {
        what: String,
        message: String,
        permanent: bool,
    },

    /// The source refused the credentials. Permanent.
    #[error("{what} refused the credentials: {message}")]
    Auth { what: String, message: String },

    /// A secret reference (`{"env": …}` or `{"file": …}`) that cannot be
    /// resolved. The message never contains the secret.
    #[error("secret reference {reference} cannot be resolved: {message}")]
    SecretRef { reference: String, message: String },

    /// The connector does not do what was asked (e.g. incremental reads).
    #[error("{message}")]
    Unsupported { message: String },

    /// Reading failed at the file-system level. Retryable.
    #[error("cannot read '{}': {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// An unexpected failure (a bug or an unsupported corner of a library).
    #[error("internal connector error: {message}")]
    Internal { message: String },
}

impl ConnectorError {
    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConnectorError::InvalidParams {
            field: field.into(),
            message: message.into(),
        }
    }

    pub(crate) fn bad_data(location: impl Into<String>, message: impl Into<String>) -> Self {
        ConnectorError::BadData {
            location: location.into(),
            message: message.into(),
        }
    }

    /// Maps an I/O error on `path` to the matching variant.
    pub(crate) fn from_io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        let path = path.into();
        match source.kind() {
            io::ErrorKind::NotFound => ConnectorError::PathNotFound { path },
            io::ErrorKind::PermissionDenied => ConnectorError::PermissionDenied { path },
            _ => ConnectorError::Io { path, source },
        }
    }
}

impl Classify for ConnectorError {
    fn class(&self) -> ErrorClass {
        match self {
            ConnectorError::InvalidParams { .. }
            | ConnectorError::PathNotAllowed { .. }
            | ConnectorError::NoAllowedRoots { .. }
            | ConnectorError::PathNotFound { .. }
            | ConnectorError::PermissionDenied { .. }
            | ConnectorError::FileTooLarge { .. }
            | ConnectorError::BadData { .. }
            | ConnectorError::Auth { .. }
            | ConnectorError::SecretRef { .. }
            | ConnectorError::Unsupported { .. }
            | ConnectorError::Remote {
                permanent: true, ..
            } => ErrorClass::RuleBroken,
            ConnectorError::Io { .. }
            | ConnectorError::Unreachable { .. }
            | ConnectorError::Remote {
                permanent: false, ..
            } => ErrorClass::Unavailable,
            ConnectorError::Internal { .. } => ErrorClass::Internal,
        }
    }
}
