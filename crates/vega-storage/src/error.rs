//! Errors of the segment store, each naming the path (or field) involved and
//! classified for the HTTP layer.

use std::io;
use std::path::PathBuf;

use vega_core::{Classify, ErrorClass};

/// What went wrong in the segment store.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The object store (S3-compatible) could not be reached or refused a
    /// request; worth a retry.
    #[error("object store: {action} '{path}': {message}")]
    Remote {
        action: &'static str,
        path: String,
        message: String,
    },

    /// A segment path that is not a plain relative path under the root.
    #[error("invalid segment path '{path}': {reason}")]
    InvalidPath { path: String, reason: String },

    /// An option or argument with a value that cannot be used.
    #[error("invalid {field}: {message}")]
    InvalidOption {
        field: &'static str,
        message: String,
    },

    /// A batch whose schema differs from the schema of the staged version.
    #[error("batch schema does not match the staged schema: {difference}")]
    SchemaMismatch { difference: String },

    /// The staging directory already holds files from another writer.
    #[error("staging directory '{path}' already exists and is not empty")]
    StagingExists { path: String },

    /// A manifest with no segments (every version has at least one).
    #[error("manifest has no segments")]
    EmptyManifest,

    /// A segment named by a manifest is not on disk.
    #[error("segment '{path}' is missing")]
    SegmentMissing { path: String },

    /// A segment on disk does not match its manifest entry.
    #[error("segment '{path}' is invalid: {problem}")]
    SegmentInvalid { path: String, problem: String },

    /// A segment's bytes do not hash to the sha256 in the manifest.
    #[error("segment '{path}' checksum mismatch: manifest says {expected}, file has {actual}")]
    ChecksumMismatch {
        path: String,
        expected: String,
        actual: String,
    },

    /// The manifest's schema is not a valid serialized Arrow schema.
    #[error("manifest schema is not a valid Arrow schema: {message}")]
    ManifestSchema { message: String },

    /// A file-system operation failed (disk full, permissions, I/O error).
    #[error("cannot {action} '{path}': {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The Parquet writer failed for a reason other than I/O.
    #[error("parquet error on '{path}': {source}")]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },
}

impl StorageError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        StorageError::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// Maps a Parquet error, keeping I/O failures (such as a full disk) as
    /// [`StorageError::Io`] so they stay retryable.
    pub(crate) fn parquet(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: parquet::errors::ParquetError,
    ) -> Self {
        let path = path.into();
        match source {
            parquet::errors::ParquetError::External(e) => match e.downcast::<io::Error>() {
                Ok(io_err) => StorageError::Io {
                    action,
                    path,
                    source: *io_err,
                },
                Err(other) => StorageError::Parquet {
                    path,
                    source: parquet::errors::ParquetError::External(other),
                },
            },
            other => StorageError::Parquet {
                path,
                source: other,
            },
        }
    }
}

impl Classify for StorageError {
    fn class(&self) -> ErrorClass {
        match self {
            StorageError::InvalidPath { .. } | StorageError::InvalidOption { .. } => {
                ErrorClass::BadInput
            }
            StorageError::SchemaMismatch { .. }
            | StorageError::EmptyManifest
            | StorageError::SegmentMissing { .. }
            | StorageError::SegmentInvalid { .. }
            | StorageError::ChecksumMismatch { .. } => ErrorClass::RuleBroken,
            StorageError::StagingExists { .. } => ErrorClass::Conflict,
            StorageError::Io { .. } | StorageError::Remote { .. } => ErrorClass::Unavailable,
            StorageError::ManifestSchema { .. } | StorageError::Parquet { .. } => {
                ErrorClass::Internal
            }
        }
    }
}
