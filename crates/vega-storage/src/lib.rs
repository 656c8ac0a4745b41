//! Parquet segments on local disk.
//!
//! A version of an asset is a [`Manifest`](vega_core::Manifest): the Arrow
//! schema plus a list of immutable Parquet segment files. This crate writes
//! those files ([`SegmentStore::stage`] → [`StagedVersion`]), checks them
//! ([`SegmentStore::validate`], [`SegmentStore::verify_checksums`]) and
//! collects files no version refers to ([`SegmentStore::remove_orphans`]).
//!
//! # Layout
//!
//! Everything lives under one root directory (for example
//! `<data_dir>/segments`). A staged version writes into
//! `<asset_id>/<staging_id>/part-00000.parquet`, `part-00001.parquet`, …
//! Segment paths in manifests are relative to the root and `/`-separated, so
//! a manifest stays valid when the root moves.
//!
//! # Durability protocol
//!
//! The rest of Vega relies on this invariant: **when
//! [`StagedVersion::finish`] returns a manifest, every file it names is
//! complete and durable on disk, and its `bytes` and `sha256` describe the
//! file as it is on disk.** It holds because:
//!
//! 1. each part is written as `part-NNNNN.parquet.tmp`, its Parquet footer
//!    written, the file flushed and `fsync`ed, and only then renamed to
//!    `part-NNNNN.parquet` (so a file without the `.tmp` suffix is always a
//!    complete Parquet file);
//! 2. `finish` then `fsync`s the staging directory, its parent (the asset
//!    directory) and the root, so the renames and the new directories
//!    survive a crash;
//! 3. the byte size and sha256 in the manifest are computed by reading back
//!    the final (renamed) files;
//! 4. a manifest always has at least one segment: when no rows were written
//!    the version gets one empty Parquet file that still carries the schema.
//!
//! A crash before `finish` returns leaves only files that no committed
//! manifest refers to; [`SegmentStore::remove_orphans`] deletes them later,
//! along with any leftover `*.tmp` files.
//!
//! The manifest's `schema` is the Arrow schema in arrow-schema's serde JSON
//! form; [`schema_from_manifest`] reads it back. Values are stored as Arrow
//! gives them (timestamps keep their unit and time zone).

mod error;
mod options;
mod remote;
mod stage;
mod store;

pub use error::StorageError;
pub use options::{SegmentCompression, WriteOptions};
pub use remote::{RemoteSegments, S3Options};
pub use stage::StagedVersion;
pub use store::{schema_from_manifest, DiskUsage, HoldGuard, OrphanReport, SegmentStore};
