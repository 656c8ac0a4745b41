//! Errors of the ingest path, sorted into the classes the HTTP layer maps
//! to status codes.

use std::time::Duration;

use vega_catalog::CatalogError;
use vega_core::{Classify, ErrorClass};

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The buffer is full: try again after `retry_after` (HTTP 503).
    #[error("the ingest buffer is full ({detail}); retry after {}s", retry_after.as_secs().max(1))]
    Busy {
        retry_after: Duration,
        detail: String,
    },
    /// The write-ahead log's disk is full: nothing was acknowledged.
    #[error("the write-ahead log's disk is full, the write was not accepted: {0}")]
    DiskFull(String),
    /// The write-ahead log failed otherwise, or ingest is shutting down.
    #[error("ingest is unavailable: {0}")]
    Unavailable(String),
    /// The target is not a stream asset of the right kind, or a name is
    /// not a valid asset name.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("ingest failed: {0}")]
    Internal(String),
}

impl IngestError {
    /// When a client should try again, for 503 answers.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            IngestError::Busy { retry_after, .. } => Some(*retry_after),
            IngestError::DiskFull(_) | IngestError::Unavailable(_) => Some(Duration::from_secs(5)),
            _ => None,
        }
    }
}

impl Classify for IngestError {
    fn class(&self) -> ErrorClass {
        match self {
            IngestError::Busy { .. } | IngestError::DiskFull(_) | IngestError::Unavailable(_) => {
                ErrorClass::Unavailable
            }
            IngestError::Invalid(_) => ErrorClass::BadInput,
            IngestError::Catalog(e) => e.class(),
            IngestError::Internal(_) => ErrorClass::Internal,
        }
    }
}
