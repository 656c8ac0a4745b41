//! The backup repository of Vega: content-addressed, verified storage of
//! backups in a local directory or an S3-compatible bucket.
//!
//! A backup is a [`BackupManifest`]: what it covers ([`Scope`]), when it
//! was made, an optional catalog snapshot (an opaque blob to this crate)
//! and the files it holds — each a path relative to the storage root, as in
//! [`vega_core::Segment::path`], with its sha256 and size.
//!
//! # Layout
//!
//! Under the repository's prefix:
//!
//! - `objects/sha256/<2 hex>/<64 hex>` — content, named by its sha256.
//!   Blobs are immutable and written once: content already stored with the
//!   right size is not uploaded again, so backups of unchanged segments
//!   cost (almost) nothing.
//! - `backups/<backup id>.json` — manifests, written last and in one put,
//!   so a manifest that exists describes a complete backup.
//!
//! # Guarantees
//!
//! - Every file is hashed while it is read; with a caller-given digest a
//!   file that differs is refused, and an upload whose bytes do not match
//!   is aborted before it becomes visible.
//! - [`BackupRepository::verify`] reads every blob back and hashes it,
//!   reporting each missing, wrong-sized or damaged object by path.
//! - [`BackupRepository::restore_file`] writes `<dest>.tmp`, hashes while
//!   writing, fsyncs, and renames onto `dest` only if the digest matches.
//! - [`BackupRepository::delete`] removes a manifest, then only blobs that
//!   no remaining manifest references.
//!
//! Deleting and pruning must not run while a backup is being written to the
//! same repository (see [`BackupRepository`]); callers serialize them.

#![warn(missing_docs)]

mod error;
mod manifest;
mod options;
mod progress;
mod repo;
mod restore;
mod retention;
mod verify;
mod writer;

pub use error::BackupError;
pub use manifest::{BackupManifest, BackupObject, BackupStats, ObjectRef, Scope, FORMAT};
pub use options::S3Options;
pub use progress::Progress;
pub use repo::{BackupRepository, DEFAULT_GC_GRACE, MULTIPART_THRESHOLD};
pub use retention::{DeleteReport, RetentionPolicy};
pub use verify::{Problem, ProblemKind, VerifyReport, CATALOG_PATH};
pub use writer::BackupWriter;
