//! Writing a backup: [`BackupRepository::begin`] → [`BackupWriter`] →
//! `add_file` / `add_catalog` → [`BackupWriter::finish`].
//!
//! Each file is read as a stream and hashed while it is read. Its blob is
//! written once, at `objects/sha256/<2 hex>/<64 hex>`: a blob already
//! stored with the right size is not sent again (deduplicated). Files up to
//! [`MULTIPART_THRESHOLD`] are read into memory and sent with one put;
//! larger ones go in parts (multipart upload), so a multi-gigabyte file is
//! never held in memory, and an upload whose bytes do not hash as expected
//! is aborted before it becomes visible. The manifest is written last, in
//! one put, so a backup is visible only once all its blobs are stored.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use object_store::{PutPayload, WriteMultipart};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use vega_core::{Id, IdKind};

use crate::error::BackupError;
use crate::manifest::{
    check_rel_path, is_sha256, BackupManifest, BackupObject, BackupStats, ObjectRef, Scope, FORMAT,
};
use crate::progress::Progress;
use crate::repo::{BackupRepository, BlobState, MULTIPART_THRESHOLD};

/// Bytes read from a local file at a time.
const READ_CHUNK: usize = 1024 * 1024;
/// Smallest part of a multipart upload (S3 needs at least 5 MiB).
const MIN_PART: u64 = 8 * 1024 * 1024;
/// Parts per upload we aim to stay under (S3 allows 10 000).
const MAX_PARTS: u64 = 9_000;
/// Parts uploaded at the same time.
const PART_CONCURRENCY: usize = 4;

/// A backup being written. Nothing is visible in the repository's list
/// until [`BackupWriter::finish`]; a writer dropped before that leaves only
/// unreferenced blobs, collected later by garbage collection.
#[derive(Debug)]
pub struct BackupWriter {
    repo: BackupRepository,
    id: Id,
    scope: Scope,
    asset_id: Option<String>,
    description: Option<String>,
    created_at: DateTime<Utc>,
    catalog: Option<ObjectRef>,
    objects: Vec<BackupObject>,
    paths: HashSet<String>,
    newest_data_at: Option<DateTime<Utc>>,
    stats: BackupStats,
    progress: Arc<Progress>,
    total_announced: bool,
}

/// How a blob got into the repository.
enum Stored {
    Written,
    Deduplicated,
}

impl BackupRepository {
    /// Starts a backup. An [`Scope::Asset`] backup needs `asset_id`; the
    /// other scopes must not have one.
    pub async fn begin(
        &self,
        scope: Scope,
        asset_id: Option<&str>,
        description: Option<&str>,
    ) -> Result<BackupWriter, BackupError> {
        match (scope, asset_id) {
            (Scope::Asset, None) => {
                return Err(BackupError::invalid(
                    "asset_id",
                    "an asset backup needs the asset's id",
                ))
            }
            (Scope::Full | Scope::Catalog, Some(_)) => {
                return Err(BackupError::invalid(
                    "asset_id",
                    format!("a {} backup has no asset id", scope.as_str()),
                ))
            }
            _ => {}
        }
        let created_at = self.clock.now();
        let id = Id::new(IdKind::Backup, created_at.timestamp_millis().max(0) as u64);
        Ok(BackupWriter {
            repo: self.clone(),
            id,
            scope,
            asset_id: asset_id.map(str::to_string),
            description: description.map(str::to_string),
            created_at,
            catalog: None,
            objects: Vec::new(),
            paths: HashSet::new(),
            newest_data_at: None,
            stats: BackupStats::default(),
            progress: Arc::new(Progress::new()),
            total_announced: false,
        })
    }
}

impl BackupWriter {
    /// The id the backup will have.
    pub fn id(&self) -> &Id {
        &self.id
    }

    /// The progress counter of this backup, to poll from elsewhere.
    pub fn progress(&self) -> Arc<Progress> {
        Arc::clone(&self.progress)
    }

    /// Announces the total bytes and objects (files plus catalog snapshot)
    /// the backup will hold, so the progress total is right from the
    /// start. Without it the total grows as files are added.
    pub fn announce_total(&mut self, bytes: u64, objects: u64) {
        if !self.total_announced {
            self.progress.add_total(bytes, objects);
            self.total_announced = true;
        }
    }

    /// What the backup has cost so far.
    pub fn stats(&self) -> &BackupStats {
        &self.stats
    }

    /// Adds the local file `local_path` as `rel_path` (relative to the
    /// storage root, `/`-separated). With `expected_sha256`, a file whose
    /// bytes hash differently is refused with an error naming it.
    pub async fn add_file(
        &mut self,
        rel_path: &str,
        local_path: &Path,
        expected_sha256: Option<&str>,
    ) -> Result<BackupObject, BackupError> {
        if self.scope == Scope::Catalog {
            return Err(BackupError::invalid(
                "file",
                format!("a catalog backup holds no files ('{rel_path}')"),
            ));
        }
        check_rel_path(rel_path).map_err(|m| BackupError::invalid("path", m))?;
        if self.paths.contains(rel_path) {
            return Err(BackupError::invalid(
                "path",
                format!("'{rel_path}' is already in the backup"),
            ));
        }
        if let Some(expected) = expected_sha256 {
            if !is_sha256(expected) {
                return Err(BackupError::invalid(
                    "sha256",
                    format!("'{expected}' for '{rel_path}' is not 64 lower-case hex digits"),
                ));
            }
        }
        let size = tokio::fs::metadata(local_path)
            .await
            .map_err(|e| BackupError::io("read", local_path, e))?
            .len();
        if !self.total_announced {
            self.progress.add_total(size, 1);
        }
        let (blob, stored) = if size <= MULTIPART_THRESHOLD {
            self.put_small(rel_path, local_path, expected_sha256)
                .await?
        } else {
            self.put_large(rel_path, local_path, size, expected_sha256)
                .await?
        };
        self.count(&blob, stored);
        let object = BackupObject {
            path: rel_path.to_string(),
            sha256: blob.sha256,
            bytes: blob.bytes,
        };
        self.paths.insert(object.path.clone());
        self.objects.push(object.clone());
        Ok(object)
    }

    /// Adds the catalog snapshot (opaque bytes; once per backup).
    pub async fn add_catalog(&mut self, bytes: impl Into<Bytes>) -> Result<ObjectRef, BackupError> {
        if self.catalog.is_some() {
            return Err(BackupError::invalid(
                "catalog",
                "the backup already has a catalog snapshot",
            ));
        }
        let bytes: Bytes = bytes.into();
        if !self.total_announced {
            self.progress.add_total(bytes.len() as u64, 1);
        }
        let blob = ObjectRef {
            sha256: hex::encode(Sha256::digest(&bytes)),
            bytes: bytes.len() as u64,
        };
        let stored = self.put_bytes(&blob, bytes, "catalog").await?;
        self.progress.add_bytes(blob.bytes);
        self.progress.add_object();
        self.count(&blob, stored);
        self.catalog = Some(blob.clone());
        Ok(blob)
    }

    /// Records the newest data the backup holds (its recovery point).
    pub fn set_newest_data_at(&mut self, at: DateTime<Utc>) {
        self.newest_data_at = Some(at);
    }

    /// Writes the manifest, making the backup visible, and returns it. A
    /// full or catalog backup needs a catalog snapshot.
    pub async fn finish(self) -> Result<BackupManifest, BackupError> {
        if matches!(self.scope, Scope::Full | Scope::Catalog) && self.catalog.is_none() {
            return Err(BackupError::invalid(
                "catalog",
                format!("a {} backup needs a catalog snapshot", self.scope.as_str()),
            ));
        }
        let manifest = BackupManifest {
            format: FORMAT,
            id: self.id,
            scope: self.scope,
            asset_id: self.asset_id,
            description: self.description,
            created_at: self.created_at,
            finished_at: self.repo.clock.now(),
            vega_version: vega_core::VERSION.to_string(),
            catalog: self.catalog,
            objects: self.objects,
            newest_data_at: self.newest_data_at,
            stats: self.stats,
        };
        let json = serde_json::to_vec_pretty(&manifest).map_err(|e| {
            BackupError::corrupt(manifest.id.as_str(), format!("cannot serialize: {e}"))
        })?;
        let key = self.repo.manifest_key(manifest.id.as_str());
        self.repo
            .store
            .put(
                &self.repo.manifest_path(manifest.id.as_str()),
                PutPayload::from(json),
            )
            .await
            .map_err(|e| BackupError::store("writing", &key, e))?;
        self.repo.sync_local(&key).await?;
        tracing::info!(
            backup_id = %manifest.id,
            scope = manifest.scope.as_str(),
            objects = manifest.objects.len(),
            bytes_total = manifest.stats.bytes_total,
            bytes_written = manifest.stats.bytes_written,
            "backup written"
        );
        Ok(manifest)
    }

    fn count(&mut self, blob: &ObjectRef, stored: Stored) {
        self.stats.bytes_total += blob.bytes;
        match stored {
            Stored::Written => {
                self.stats.bytes_written += blob.bytes;
                self.stats.objects_written += 1;
            }
            Stored::Deduplicated => {
                self.stats.bytes_deduplicated += blob.bytes;
                self.stats.objects_deduplicated += 1;
            }
        }
    }

    /// A file read whole: hash, compare, store unless already stored.
    async fn put_small(
        &self,
        rel_path: &str,
        local_path: &Path,
        expected: Option<&str>,
    ) -> Result<(ObjectRef, Stored), BackupError> {
        let bytes = tokio::fs::read(local_path)
            .await
            .map_err(|e| BackupError::io("read", local_path, e))?;
        let blob = ObjectRef {
            sha256: hex::encode(Sha256::digest(&bytes)),
            bytes: bytes.len() as u64,
        };
        check_expected(rel_path, local_path, expected, &blob.sha256)?;
        let stored = self.put_bytes(&blob, Bytes::from(bytes), rel_path).await?;
        self.progress.add_bytes(blob.bytes);
        self.progress.add_object();
        Ok((blob, stored))
    }

    /// Stores `bytes` as `blob` unless it is already stored.
    async fn put_bytes(
        &self,
        blob: &ObjectRef,
        bytes: Bytes,
        what: &str,
    ) -> Result<Stored, BackupError> {
        if self.repo.blob_state(blob).await? == BlobState::Present {
            return Ok(Stored::Deduplicated);
        }
        let key = self.repo.blob_key(&blob.sha256);
        self.repo
            .store
            .put(&self.repo.blob_path(&blob.sha256), PutPayload::from(bytes))
            .await
            .map_err(|e| BackupError::store("uploading", format!("{what} ({key})"), e))?;
        self.repo.sync_local(&key).await?;
        Ok(Stored::Written)
    }

    /// A file streamed in parts. With the expected digest its address is
    /// known first: one read, either to confirm a stored blob or while
    /// uploading. Without it the file is hashed first, then (if not stored
    /// yet) read again while uploading and hashed again, so a file that
    /// changed in between is refused.
    async fn put_large(
        &self,
        rel_path: &str,
        local_path: &Path,
        size: u64,
        expected: Option<&str>,
    ) -> Result<(ObjectRef, Stored), BackupError> {
        let (sha256, hashed) = match expected {
            Some(expected) => (expected.to_string(), false),
            None => {
                let (digest, _) = hash_file(local_path, None).await?;
                (digest, true)
            }
        };
        let blob = ObjectRef {
            sha256,
            bytes: size,
        };
        if self.repo.blob_state(&blob).await? == BlobState::Present {
            if !hashed {
                // Confirm the local file is what the caller said it is.
                let (digest, _) = hash_file(local_path, Some(&self.progress)).await?;
                check_expected(rel_path, local_path, expected, &digest)?;
            } else {
                self.progress.add_bytes(size);
            }
            self.progress.add_object();
            return Ok((blob, Stored::Deduplicated));
        }
        let bytes = self
            .upload_stream(rel_path, local_path, size, &blob)
            .await?;
        self.progress.add_object();
        Ok((
            ObjectRef {
                sha256: blob.sha256,
                bytes,
            },
            Stored::Written,
        ))
    }

    /// Uploads the file in parts, hashing it; completes the upload only if
    /// the bytes hash to `blob.sha256`, aborts it otherwise.
    async fn upload_stream(
        &self,
        rel_path: &str,
        local_path: &Path,
        size: u64,
        blob: &ObjectRef,
    ) -> Result<u64, BackupError> {
        let key = self.repo.blob_key(&blob.sha256);
        let upload = self
            .repo
            .store
            .put_multipart(&self.repo.blob_path(&blob.sha256))
            .await
            .map_err(|e| BackupError::store("uploading", format!("{rel_path} ({key})"), e))?;
        let part = size
            .div_ceil(MAX_PARTS)
            .max(MIN_PART)
            .next_multiple_of(1024 * 1024);
        let mut writer = WriteMultipart::new_with_chunk_size(upload, part as usize);
        let fed = feed(&mut writer, rel_path, local_path, &key, &self.progress).await;
        let (digest, bytes) = match fed {
            Ok(done) => done,
            Err(e) => {
                let _ = writer.abort().await;
                return Err(e);
            }
        };
        if digest != blob.sha256 {
            let _ = writer.abort().await;
            return Err(BackupError::ChecksumMismatch {
                path: format!("{rel_path} ({})", local_path.display()),
                expected: blob.sha256.clone(),
                actual: digest,
            });
        }
        writer
            .finish()
            .await
            .map_err(|e| BackupError::store("uploading", format!("{rel_path} ({key})"), e))?;
        self.repo.sync_local(&key).await?;
        Ok(bytes)
    }
}

/// Reads the file into the multipart writer; returns its sha256 and size.
async fn feed(
    writer: &mut WriteMultipart,
    rel_path: &str,
    local_path: &Path,
    key: &str,
    progress: &Progress,
) -> Result<(String, u64), BackupError> {
    let mut file = tokio::fs::File::open(local_path)
        .await
        .map_err(|e| BackupError::io("open", local_path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; READ_CHUNK];
    let mut total = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .await
            .map_err(|e| BackupError::io("read", local_path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        writer
            .wait_for_capacity(PART_CONCURRENCY)
            .await
            .map_err(|e| BackupError::store("uploading", format!("{rel_path} ({key})"), e))?;
        writer.write(&buf[..n]);
        total += n as u64;
        progress.add_bytes(n as u64);
    }
    Ok((hex::encode(hasher.finalize()), total))
}

/// Hashes a local file as a stream; counts its bytes into `progress`.
async fn hash_file(path: &Path, progress: Option<&Progress>) -> Result<(String, u64), BackupError> {
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| BackupError::io("open", path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; READ_CHUNK];
    let mut total = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .await
            .map_err(|e| BackupError::io("read", path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
        if let Some(p) = progress {
            p.add_bytes(n as u64);
        }
    }
    Ok((hex::encode(hasher.finalize()), total))
}

fn check_expected(
    rel_path: &str,
    local_path: &Path,
    expected: Option<&str>,
    actual: &str,
) -> Result<(), BackupError> {
    match expected {
        Some(expected) if expected != actual => Err(BackupError::ChecksumMismatch {
            path: format!("{rel_path} ({})", local_path.display()),
            expected: expected.to_string(),
            actual: actual.to_string(),
        }),
        _ => Ok(()),
    }
}
