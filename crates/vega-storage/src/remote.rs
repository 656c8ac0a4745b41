//! Segments in an S3-compatible object store, so that nodes without a
//! shared directory serve each other's assets. The local segment root is
//! then a cache: a version's files are pushed to the store before the
//! version is committed ([`SegmentStore::push`]), and a node fetches the
//! files it lacks — checking each against the manifest's sha256 — before
//! it serves a version ([`SegmentStore::pull`]). Objects are named
//! `<prefix>/<segment path>`; segments are immutable, so an object that
//! exists with the right size is never sent again.
//!
//! Write-ahead logs use the same bucket (`vega-ingest`'s object logs) when
//! there is no `storage.shared_dir`.

use std::io::Write;
use std::sync::Arc;

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload};
use sha2::{Digest, Sha256};
use vega_core::Manifest;

use crate::{SegmentStore, StorageError};

/// Where segments go in the object store.
#[derive(Clone)]
pub struct RemoteSegments {
    store: Arc<dyn ObjectStore>,
    /// Object name prefix (no leading or trailing `/`), may be empty.
    prefix: String,
}

impl std::fmt::Debug for RemoteSegments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteSegments")
            .field("store", &self.store.to_string())
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// How to reach an S3-compatible bucket (segments, logs, backups).
#[derive(Clone, Default)]
pub struct S3Options {
    /// The bucket's name.
    pub bucket: String,
    /// Object name prefix inside the bucket; may be empty.
    pub prefix: String,
    /// `http://127.0.0.1:9000` for a local server; `None` for AWS.
    pub endpoint: Option<String>,
    /// The bucket's region (any value for most local servers).
    pub region: String,
    /// The access key; `None` to take credentials from the environment.
    pub access_key_id: Option<String>,
    /// The secret key; never shown by `Debug`.
    pub secret_access_key: Option<String>,
    /// Allow plain HTTP (a local server).
    pub allow_http: bool,
}

impl std::fmt::Debug for S3Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Options")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "***"),
            )
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

impl S3Options {
    /// The client of the bucket (the prefix is the caller's to apply).
    pub fn build(&self) -> Result<object_store::aws::AmazonS3, object_store::Error> {
        let mut builder = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(&self.bucket)
            .with_region(&self.region)
            .with_allow_http(self.allow_http)
            // Local servers do not serve virtual-hosted bucket names.
            .with_virtual_hosted_style_request(false);
        if let Some(endpoint) = &self.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(key) = &self.access_key_id {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &self.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        builder.build()
    }
}

impl RemoteSegments {
    /// A bucket of an S3-compatible server.
    pub fn s3(options: &S3Options) -> Result<Self, StorageError> {
        let store = options.build().map_err(|e| StorageError::Remote {
            action: "configuring",
            path: options.bucket.clone(),
            message: e.to_string(),
        })?;
        Ok(Self::new(Arc::new(store), &options.prefix))
    }

    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str) -> Self {
        Self {
            store,
            prefix: prefix.trim_matches('/').to_string(),
        }
    }

    /// The bucket, for other objects kept beside the segments (write-ahead
    /// logs).
    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    /// The object name prefix (no leading or trailing `/`), may be empty.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn object(&self, segment: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(segment)
        } else {
            ObjectPath::from(format!("{}/{segment}", self.prefix))
        }
    }

    fn failed(action: &'static str, path: &str, e: impl std::fmt::Display) -> StorageError {
        StorageError::Remote {
            action,
            path: path.to_string(),
            message: e.to_string(),
        }
    }
}

impl SegmentStore {
    /// Adds an object store that holds every segment (see the module docs).
    pub fn with_remote(mut self, remote: RemoteSegments) -> Self {
        self.remote = Some(remote);
        self
    }

    /// Whether segments also live in an object store.
    pub fn has_remote(&self) -> bool {
        self.remote.is_some()
    }

    /// Sends `manifest`'s files to the object store, those it does not hold
    /// yet; call before the version is committed. A no-op without one.
    pub async fn push(&self, manifest: &Manifest) -> Result<(), StorageError> {
        let Some(remote) = &self.remote else {
            return Ok(());
        };
        for segment in &manifest.segments {
            let object = remote.object(&segment.path);
            if let Ok(meta) = remote.store.head(&object).await {
                if meta.size == segment.bytes {
                    continue;
                }
            }
            let local = self.absolute(&segment.path)?;
            let bytes = tokio::fs::read(&local)
                .await
                .map_err(|e| StorageError::io("read", &local, e))?;
            remote
                .store
                .put(&object, PutPayload::from(bytes))
                .await
                .map_err(|e| RemoteSegments::failed("uploading", &segment.path, e))?;
        }
        Ok(())
    }

    /// Fetches the files of `manifest` this node lacks from the object
    /// store, each checked against the manifest (size and sha256) before it
    /// is put in place (written to a temporary file, fsynced, renamed). A
    /// no-op without an object store.
    pub async fn pull(&self, manifest: &Manifest) -> Result<usize, StorageError> {
        let Some(remote) = &self.remote else {
            return Ok(0);
        };
        let mut fetched = 0;
        for segment in &manifest.segments {
            let local = self.absolute(&segment.path)?;
            if tokio::fs::metadata(&local)
                .await
                .is_ok_and(|m| m.len() == segment.bytes)
            {
                continue;
            }
            let object = remote.object(&segment.path);
            let bytes = remote
                .store
                .get(&object)
                .await
                .map_err(|e| RemoteSegments::failed("downloading", &segment.path, e))?
                .bytes()
                .await
                .map_err(|e| RemoteSegments::failed("downloading", &segment.path, e))?;
            let actual = hex::encode(Sha256::digest(&bytes));
            if actual != segment.sha256 {
                return Err(StorageError::ChecksumMismatch {
                    path: segment.path.clone(),
                    expected: segment.sha256.clone(),
                    actual,
                });
            }
            let target = local.clone();
            tokio::task::spawn_blocking(move || write_durably(&target, &bytes))
                .await
                .map_err(|e| StorageError::io("write", &local, std::io::Error::other(e)))??;
            fetched += 1;
        }
        Ok(fetched)
    }
}

/// Writes `bytes` to `path` through a temporary file: fsync, rename, fsync
/// of the directory.
fn write_durably(path: &std::path::Path, bytes: &[u8]) -> Result<(), StorageError> {
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| StorageError::io("create directory", dir, e))?;
    let tmp = path.with_extension("fetch.tmp");
    {
        let mut f = std::fs::File::create(&tmp).map_err(|e| StorageError::io("create", &tmp, e))?;
        f.write_all(bytes)
            .map_err(|e| StorageError::io("write", &tmp, e))?;
        f.sync_all()
            .map_err(|e| StorageError::io("fsync", &tmp, e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| StorageError::io("rename", &tmp, e))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
