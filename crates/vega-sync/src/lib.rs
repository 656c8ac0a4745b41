//! Sync: moves data from a connection into a new version of an asset.
//!
//! A full sync is write-audit-publish: read the whole source into a staged
//! set of Parquet segments, fsync them, check the result (files readable,
//! row counts, the asset's `min_rows`), and only then publish the manifest in
//! one catalog transaction. Until that commit the previous version stays
//! active; a crash at any step leaves it active and intact, and the staged
//! files become orphans removed at the next start ([`SyncService::recover`]).

mod error;
mod failpoint;
mod guard;
pub mod retention;
pub mod schedule;
mod scheduler;
mod service;
pub mod validate;

pub use error::SyncError;
pub use failpoint::{FailAction, Failpoint};
pub use guard::SourceGuards;
pub use scheduler::Scheduler;
pub use service::{AssetWriters, PublishListener, RecoveryReport, SyncOptions, SyncService};
