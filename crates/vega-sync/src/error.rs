//! Sync errors and their classes.

use vega_catalog::CatalogError;
use vega_connectors::ConnectorError;
use vega_core::{Classify, ErrorClass};
use vega_storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Connector(#[from] ConnectorError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The new version failed a check; the previous version stays active.
    #[error("check failed: {0}")]
    CheckFailed(String),
    /// The connection is disabled (an operator cut it off).
    #[error("connection '{0}' is disabled")]
    ConnectionDisabled(String),
    /// The asset's sync mode cannot be run this way.
    #[error("{0}")]
    Unsupported(String),
    #[error("sync timed out after {0} s")]
    Timeout(u64),
    #[error("sync cancelled: {0}")]
    Cancelled(String),
    /// A failpoint fired (tests only).
    #[error("failpoint {0} fired")]
    Failpoint(String),
    /// The connection's circuit breaker rejects calls: its source failed
    /// (or was slow) too often lately, so the job fails without trying it.
    #[error("the circuit breaker of connection '{connection}' is {state}: its source failed too often lately, so the sync fails fast without calling it{}", retry_after_secs.map(|s| format!(" (trial calls in {s} s)")).unwrap_or_default())]
    CircuitOpen {
        connection: String,
        state: &'static str,
        retry_after_secs: Option<u64>,
    },
    /// The connection already has as many syncs reading it as its bulkhead
    /// allows.
    #[error("connection '{connection}' already has {max_concurrent} syncs reading it (its bulkhead is full)")]
    Bulkhead {
        connection: String,
        max_concurrent: u32,
    },
    #[error("internal sync error: {0}")]
    Internal(String),
}

impl Classify for SyncError {
    fn class(&self) -> ErrorClass {
        match self {
            SyncError::Catalog(e) => e.class(),
            SyncError::Connector(e) => e.class(),
            SyncError::Storage(e) => e.class(),
            SyncError::CheckFailed(_) | SyncError::Unsupported(_) => ErrorClass::RuleBroken,
            SyncError::ConnectionDisabled(_) => ErrorClass::Conflict,
            SyncError::Timeout(_) => ErrorClass::Timeout,
            SyncError::Cancelled(_) => ErrorClass::Unavailable,
            SyncError::CircuitOpen { .. } | SyncError::Bulkhead { .. } => ErrorClass::Unavailable,
            SyncError::Failpoint(_) | SyncError::Internal(_) => ErrorClass::Internal,
        }
    }

    /// An open breaker is the answer to "should this be tried again now":
    /// no. A connector error says for itself.
    fn is_retryable(&self) -> bool {
        match self {
            SyncError::CircuitOpen { .. } => false,
            SyncError::Connector(e) => e.is_retryable(),
            other => matches!(other.class(), ErrorClass::Unavailable | ErrorClass::Timeout),
        }
    }
}
