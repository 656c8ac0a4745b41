//! Reading a backup back: a file to a local path
//! ([`BackupRepository::restore_file`]) or the catalog snapshot into memory
//! ([`BackupRepository::read_catalog`]), each checked against the manifest
//! (size and sha256) before it is handed over.
//!
//! A file is downloaded to `<dest>.tmp`, hashed while it is written,
//! fsynced, and renamed onto `dest` only if its digest matches; otherwise
//! the temporary file is removed, so `dest` is never a damaged file.

use std::path::{Path, PathBuf};

use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::error::BackupError;
use crate::manifest::{BackupManifest, BackupObject};
use crate::progress::Progress;
use crate::repo::BackupRepository;

impl BackupRepository {
    /// Restores one object of a backup to `dest` (see the module docs);
    /// the parent directories are created. Errors name the object.
    pub async fn restore_file(&self, obj: &BackupObject, dest: &Path) -> Result<(), BackupError> {
        self.restore_file_with_progress(obj, dest, &Progress::new())
            .await
    }

    /// [`BackupRepository::restore_file`], counting the bytes written into
    /// `progress` (whose total the caller sets, e.g. by summing the
    /// manifest's objects).
    pub async fn restore_file_with_progress(
        &self,
        obj: &BackupObject,
        dest: &Path,
        progress: &Progress,
    ) -> Result<(), BackupError> {
        let tmp = tmp_path(dest);
        if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| BackupError::io("create directory", dir, e))?;
        }
        match self.download(obj, &tmp, progress).await {
            Ok(()) => {}
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(e);
            }
        }
        if let Err(e) = tokio::fs::rename(&tmp, dest).await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(BackupError::io("rename", &tmp, e));
        }
        if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Ok(d) = tokio::fs::File::open(dir).await {
                let _ = d.sync_all().await;
            }
        }
        progress.add_object();
        Ok(())
    }

    /// The catalog snapshot of a backup, checked against its manifest.
    pub async fn read_catalog(&self, manifest: &BackupManifest) -> Result<Vec<u8>, BackupError> {
        let Some(catalog) = &manifest.catalog else {
            return Err(BackupError::NoCatalog {
                id: manifest.id.to_string(),
            });
        };
        let what = format!("catalog of backup {}", manifest.id);
        let key = self.blob_key(&catalog.sha256);
        let bytes = match self.store.get(&self.blob_path(&catalog.sha256)).await {
            Ok(r) => r
                .bytes()
                .await
                .map_err(|e| BackupError::store("reading", &key, e))?,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(BackupError::ObjectMissing {
                    path: what,
                    sha256: catalog.sha256.clone(),
                })
            }
            Err(e) => return Err(BackupError::store("reading", &key, e)),
        };
        if bytes.len() as u64 != catalog.bytes {
            return Err(BackupError::SizeMismatch {
                path: what,
                expected: catalog.bytes,
                actual: bytes.len() as u64,
            });
        }
        let actual = hex::encode(Sha256::digest(&bytes));
        if actual != catalog.sha256 {
            return Err(BackupError::ChecksumMismatch {
                path: what,
                expected: catalog.sha256.clone(),
                actual,
            });
        }
        Ok(bytes.to_vec())
    }

    /// Streams the blob of `obj` into `tmp`, hashing it; fsyncs; checks
    /// size and digest.
    async fn download(
        &self,
        obj: &BackupObject,
        tmp: &Path,
        progress: &Progress,
    ) -> Result<(), BackupError> {
        let key = self.blob_key(&obj.sha256);
        let result = match self.store.get(&self.blob_path(&obj.sha256)).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(BackupError::ObjectMissing {
                    path: obj.path.clone(),
                    sha256: obj.sha256.clone(),
                })
            }
            Err(e) => return Err(BackupError::store("downloading", &key, e)),
        };
        if result.meta.size != obj.bytes {
            return Err(BackupError::SizeMismatch {
                path: obj.path.clone(),
                expected: obj.bytes,
                actual: result.meta.size,
            });
        }
        let mut file = tokio::fs::File::create(tmp)
            .await
            .map_err(|e| BackupError::io("create", tmp, e))?;
        let mut stream = result.into_stream();
        let mut hasher = Sha256::new();
        let mut written = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| BackupError::store("downloading", &key, e))?;
            hasher.update(&chunk);
            file.write_all(&chunk)
                .await
                .map_err(|e| BackupError::io("write", tmp, e))?;
            written += chunk.len() as u64;
            progress.add_bytes(chunk.len() as u64);
        }
        file.flush()
            .await
            .map_err(|e| BackupError::io("write", tmp, e))?;
        file.sync_all()
            .await
            .map_err(|e| BackupError::io("fsync", tmp, e))?;
        drop(file);
        if written != obj.bytes {
            return Err(BackupError::SizeMismatch {
                path: obj.path.clone(),
                expected: obj.bytes,
                actual: written,
            });
        }
        let actual = hex::encode(hasher.finalize());
        if actual != obj.sha256 {
            return Err(BackupError::ChecksumMismatch {
                path: obj.path.clone(),
                expected: obj.sha256.clone(),
                actual,
            });
        }
        Ok(())
    }
}

/// `<dest>.tmp`, next to `dest`.
fn tmp_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    dest.with_file_name(name)
}
