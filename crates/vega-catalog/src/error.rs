//! Catalog errors and their classes.

use vega_core::{Classify, ErrorClass};

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// No object of this kind with this id or name.
    #[error("{what} '{key}' not found")]
    NotFound { what: &'static str, key: String },
    /// A unique name is taken, an object is in use, or a job already runs.
    /// `existing` names the object in the way (e.g. the running job's id).
    #[error("{message}")]
    Conflict {
        message: String,
        existing: Option<String>,
    },
    /// Work done under a lease that is no longer held (the fencing check):
    /// a job's result after its lease expired or another node took it over,
    /// or a flush by a node that lost its log's lease. `what` names the job
    /// or the lease.
    #[error("fenced: {message}")]
    Fenced { what: String, message: String },
    /// Stored data that does not decode (a bug or a hand-edited catalog).
    #[error("corrupt catalog row in {table}: {message}")]
    Corrupt {
        table: &'static str,
        message: String,
    },
    /// The database could not be reached or answered with an error.
    #[error("catalog database error while {action}: {source}")]
    Database {
        action: &'static str,
        #[source]
        source: sqlx::Error,
    },
    /// A migration failed.
    #[error("catalog migration {version} failed: {message}")]
    Migration { version: i64, message: String },
}

impl Classify for CatalogError {
    fn class(&self) -> ErrorClass {
        match self {
            CatalogError::NotFound { .. } => ErrorClass::NotFound,
            CatalogError::Conflict { .. } | CatalogError::Fenced { .. } => ErrorClass::Conflict,
            CatalogError::Corrupt { .. } | CatalogError::Migration { .. } => ErrorClass::Internal,
            CatalogError::Database { source, .. } => match source {
                sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                    ErrorClass::Unavailable
                }
                _ => ErrorClass::Internal,
            },
        }
    }
}
