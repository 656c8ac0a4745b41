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
    /// The catalog was migrated by a newer release past a breaking
    /// migration this build does not know: refused rather than misread.
    #[error("the catalog's schema is at migration {catalog_version} ('{catalog_migration}'), written by a newer Vega, and migration {breaking} cannot be used by older releases; this binary knows migrations up to {binary_version}: run a newer Vega")]
    SchemaTooNew {
        catalog_version: i64,
        catalog_migration: String,
        breaking: i64,
        binary_version: i64,
    },
    /// A catalog snapshot that cannot be imported (unknown format, a schema
    /// newer than this build's migrations, references to objects it does not
    /// hold, duplicates), or a catalog this build cannot export completely.
    /// Nothing was written.
    #[error("catalog snapshot refused: {message}")]
    Snapshot {
        /// What is wrong, naming the object or versions at fault.
        message: String,
    },
    /// A migration failed.
    #[error("catalog migration {version} failed: {message}")]
    Migration { version: i64, message: String },
    /// The catalog URL is malformed; `parameter` names the part at fault
    /// (`host`, `port`, `replicas`, `max_replica_lag`, …).
    #[error("invalid catalog URL: {parameter}: {message}")]
    InvalidUrl { parameter: String, message: String },
    /// None of the catalog's hosts is a writable primary (all unreachable
    /// or in recovery) within the failover bound. Nothing was written.
    #[error("catalog database error while connecting to the PostgreSQL catalog: no writable primary among {hosts}: {message}")]
    NoPrimary { hosts: String, message: String },
}

impl Classify for CatalogError {
    fn class(&self) -> ErrorClass {
        match self {
            CatalogError::NotFound { .. } => ErrorClass::NotFound,
            CatalogError::Conflict { .. } | CatalogError::Fenced { .. } => ErrorClass::Conflict,
            CatalogError::Corrupt { .. }
            | CatalogError::Migration { .. }
            | CatalogError::SchemaTooNew { .. } => ErrorClass::Internal,
            CatalogError::InvalidUrl { .. } => ErrorClass::BadInput,
            CatalogError::Snapshot { .. } => ErrorClass::RuleBroken,
            CatalogError::NoPrimary { .. } => ErrorClass::Unavailable,
            // A lost or refused connection, or a demoted primary (25006):
            // a failover in progress; trying again later can succeed.
            CatalogError::Database { source, .. }
                if crate::sql::pool::is_connection_error(source)
                    || crate::sql::pool::is_read_only_error(source) =>
            {
                ErrorClass::Unavailable
            }
            CatalogError::Database { .. } => ErrorClass::Internal,
        }
    }
}
