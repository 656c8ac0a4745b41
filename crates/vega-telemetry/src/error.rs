//! The error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong while setting up logging, parsing trace
/// context or reading process statistics.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The log filter is not a valid `EnvFilter` directive.
    #[error("invalid log filter {directive:?}: {reason}")]
    InvalidFilter {
        /// The filter string as given.
        directive: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A global subscriber was already installed.
    #[error("cannot install the log subscriber: {0}")]
    SubscriberInstall(String),
    /// A `traceparent` header value is malformed.
    #[error("invalid traceparent: {0}")]
    InvalidTraceparent(&'static str),
    /// The statistic is not available on this platform.
    #[error("{0} is not supported on this platform")]
    Unsupported(&'static str),
    /// Reading a file or querying the file system failed.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path that was read.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A system file did not have the expected format.
    #[error("cannot parse {path}: {reason}")]
    Parse {
        /// The file that was parsed.
        path: PathBuf,
        /// What was missing or malformed.
        reason: String,
    },
}
