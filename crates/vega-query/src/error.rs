//! Query errors and their classes.

use vega_core::{Classify, ErrorClass};

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The SQL does not parse or bind; `position` is the 0-based character
    /// offset DuckDB reported, when it did.
    #[error("{message}")]
    BadSql {
        message: String,
        position: Option<usize>,
    },
    /// A table that is not an asset.
    #[error("{0}")]
    UnknownAsset(String),
    /// The SQL tries something the sandbox never allows.
    #[error("{0}")]
    Forbidden(String),
    /// The query failed while running (a cast that fails, division by zero).
    #[error("query failed: {0}")]
    Execution(String),
    /// The query ran past its deadline and was cancelled.
    #[error("query cancelled after its timeout of {timeout_ms} ms")]
    Timeout { timeout_ms: u64 },
    /// No query slot became free in time.
    #[error("too many queries running; no slot became free within {waited_ms} ms")]
    Busy { waited_ms: u64 },
    /// The engine is shutting down or not ready.
    #[error("query engine unavailable: {0}")]
    Unavailable(String),
    /// Anything else; details are logged, not returned.
    #[error("internal query engine error: {0}")]
    Internal(String),
}

impl Classify for QueryError {
    fn class(&self) -> ErrorClass {
        match self {
            QueryError::BadSql { .. } | QueryError::UnknownAsset(_) | QueryError::Execution(_) => {
                ErrorClass::BadInput
            }
            QueryError::Forbidden(_) => ErrorClass::Forbidden,
            QueryError::Timeout { .. } => ErrorClass::Timeout,
            QueryError::Busy { .. } | QueryError::Unavailable(_) => ErrorClass::Unavailable,
            QueryError::Internal(_) => ErrorClass::Internal,
        }
    }
}

impl QueryError {
    /// A short machine-readable code for the error body and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            QueryError::BadSql { .. } => "invalid_sql",
            QueryError::UnknownAsset(_) => "unknown_asset",
            QueryError::Forbidden(_) => "forbidden_sql",
            QueryError::Execution(_) => "query_failed",
            QueryError::Timeout { .. } => "query_timeout",
            QueryError::Busy { .. } => "busy",
            QueryError::Unavailable(_) => "unavailable",
            QueryError::Internal(_) => "internal",
        }
    }
}
