//! [`BackupRepository`]: the repository over an object store (a local
//! directory or an S3-compatible bucket) and a prefix; its layout, and
//! reading manifests back ([`BackupRepository::list`],
//! [`BackupRepository::get`]).
//!
//! Writing is in `writer.rs`, checking in `verify.rs`, restoring in
//! `restore.rs`, deleting and retention in `retention.rs`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::ObjectStore;
use vega_core::{Clock, Id, IdKind, SystemClock};

use crate::error::BackupError;
use crate::manifest::{BackupManifest, ObjectRef};

/// Files above this size are uploaded in parts, never held in memory.
pub const MULTIPART_THRESHOLD: u64 = 8 * 1024 * 1024;

/// How long an unreferenced blob is left alone by garbage collection unless
/// the deleted backup referenced it: it may belong to a backup still being
/// written.
pub const DEFAULT_GC_GRACE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Where content-addressed blobs live, under the prefix.
pub(crate) const OBJECTS_DIR: &str = "objects/sha256";
/// Where manifests live, under the prefix.
pub(crate) const BACKUPS_DIR: &str = "backups";

/// A backup repository: blobs at `objects/sha256/<2 hex>/<64 hex>` and
/// manifests at `backups/<backup id>.json`, under an optional prefix of an
/// object store. Cheap to clone.
///
/// Backups may be written concurrently with each other. Deleting (which
/// collects garbage) must not run while a backup is being written to the
/// same repository: a blob the new backup found already stored could be
/// collected before its manifest is written. Callers serialize the two.
#[derive(Clone)]
pub struct BackupRepository {
    pub(crate) store: Arc<dyn ObjectStore>,
    /// No leading or trailing `/`; may be empty.
    pub(crate) prefix: String,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) gc_grace: std::time::Duration,
    /// The directory of a local repository: its writes are fsynced, which
    /// the object store alone does not do.
    pub(crate) local_root: Option<PathBuf>,
}

impl std::fmt::Debug for BackupRepository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupRepository")
            .field("store", &self.store.to_string())
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// What the store holds at a blob's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlobState {
    Present,
    Missing,
    WrongSize(u64),
}

impl BackupRepository {
    /// A repository in `store` under `prefix` (may be empty).
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str) -> Self {
        Self {
            store,
            prefix: prefix.trim_matches('/').to_string(),
            clock: Arc::new(SystemClock),
            gc_grace: DEFAULT_GC_GRACE,
            local_root: None,
        }
    }

    /// A repository in a local directory, created if missing.
    pub fn local(dir: &Path) -> Result<Self, BackupError> {
        std::fs::create_dir_all(dir).map_err(|e| BackupError::io("create directory", dir, e))?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(dir)
            .map_err(|e| BackupError::Config {
                message: format!("directory '{}': {e}", dir.display()),
            })?
            .with_automatic_cleanup(true);
        let mut repo = Self::new(Arc::new(store), "");
        repo.local_root = Some(dir.to_path_buf());
        Ok(repo)
    }

    /// A repository in a bucket of an S3-compatible server, under
    /// `options.prefix`.
    pub fn s3(options: &crate::S3Options) -> Result<Self, BackupError> {
        let store = options.build().map_err(|e| BackupError::Config {
            message: format!("bucket '{}': {e}", options.bucket),
        })?;
        Ok(Self::new(Arc::new(store), &options.prefix))
    }

    /// Uses `clock` for backup ids and times and for garbage collection's
    /// grace period.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// How long garbage collection leaves an unreferenced blob alone unless
    /// the deleted backup referenced it (default [`DEFAULT_GC_GRACE`]).
    pub fn with_gc_grace(mut self, grace: std::time::Duration) -> Self {
        self.gc_grace = grace;
        self
    }

    /// The object name (with the prefix) of the blob with this sha256.
    pub fn blob_key(&self, sha256: &str) -> String {
        self.key(&format!(
            "{OBJECTS_DIR}/{}/{sha256}",
            &sha256[..2.min(sha256.len())]
        ))
    }

    /// The object name (with the prefix) of a backup's manifest.
    pub fn manifest_key(&self, id: &str) -> String {
        self.key(&format!("{BACKUPS_DIR}/{id}.json"))
    }

    /// Every backup, oldest first (by `created_at`, then id). Fails on a
    /// manifest that does not parse, naming it.
    pub async fn list(&self) -> Result<Vec<BackupManifest>, BackupError> {
        let mut manifests = Vec::new();
        for id in self.manifest_ids().await? {
            manifests.push(self.get(&id).await?);
        }
        manifests.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(manifests)
    }

    /// One backup's manifest; [`BackupError::NotFound`] if there is none,
    /// [`BackupError::CorruptManifest`] if it does not parse.
    pub async fn get(&self, id: &str) -> Result<BackupManifest, BackupError> {
        let bytes = self.read_manifest_bytes(id).await?;
        BackupManifest::parse(id, &bytes)
    }

    /// The raw bytes of a manifest.
    pub(crate) async fn read_manifest_bytes(&self, id: &str) -> Result<Bytes, BackupError> {
        if Id::parse(IdKind::Backup, id).is_none() {
            return Err(BackupError::NotFound { id: id.to_string() });
        }
        let key = self.manifest_key(id);
        let result = match self.store.get(&ObjectPath::from(key.as_str())).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(BackupError::NotFound { id: id.to_string() })
            }
            Err(e) => return Err(BackupError::store("reading", &key, e)),
        };
        result
            .bytes()
            .await
            .map_err(|e| BackupError::store("reading", &key, e))
    }

    /// The ids of every stored manifest, parsed or not.
    pub(crate) async fn manifest_ids(&self) -> Result<Vec<String>, BackupError> {
        let dir = self.key(BACKUPS_DIR);
        let metas: Vec<_> = self
            .store
            .list(Some(&ObjectPath::from(dir.as_str())))
            .try_collect()
            .await
            .map_err(|e| BackupError::store("listing", &dir, e))?;
        let mut ids: Vec<String> = metas
            .iter()
            .filter_map(|m| m.location.filename())
            .filter_map(|name| name.strip_suffix(".json"))
            .filter(|id| Id::parse(IdKind::Backup, id).is_some())
            .map(str::to_string)
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Every stored blob: its sha256, size and last modification.
    pub(crate) async fn list_blobs(
        &self,
    ) -> Result<Vec<(String, u64, chrono::DateTime<chrono::Utc>)>, BackupError> {
        let dir = self.key(OBJECTS_DIR);
        let mut stream = self.store.list(Some(&ObjectPath::from(dir.as_str())));
        let mut blobs = Vec::new();
        while let Some(meta) = stream.next().await {
            let meta = meta.map_err(|e| BackupError::store("listing", &dir, e))?;
            if let Some(name) = meta.location.filename() {
                if crate::manifest::is_sha256(name) {
                    blobs.push((name.to_string(), meta.size, meta.last_modified));
                }
            }
        }
        Ok(blobs)
    }

    /// Whether the blob is stored with the right size.
    pub(crate) async fn blob_state(&self, blob: &ObjectRef) -> Result<BlobState, BackupError> {
        let key = self.blob_key(&blob.sha256);
        match self.store.head(&ObjectPath::from(key.as_str())).await {
            Ok(meta) if meta.size == blob.bytes => Ok(BlobState::Present),
            Ok(meta) => Ok(BlobState::WrongSize(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(BlobState::Missing),
            Err(e) => Err(BackupError::store("checking", &key, e)),
        }
    }

    pub(crate) fn blob_path(&self, sha256: &str) -> ObjectPath {
        ObjectPath::from(self.blob_key(sha256).as_str())
    }

    pub(crate) fn manifest_path(&self, id: &str) -> ObjectPath {
        ObjectPath::from(self.manifest_key(id).as_str())
    }

    /// In a local repository, fsyncs the file of `key` and its directory
    /// (and the directories up to the root, which may be new), so what was
    /// written survives a crash. A no-op for other stores.
    pub(crate) async fn sync_local(&self, key: &str) -> Result<(), BackupError> {
        let Some(root) = self.local_root.clone() else {
            return Ok(());
        };
        let file = root.join(key);
        tokio::task::spawn_blocking(move || {
            let f = std::fs::File::open(&file).map_err(|e| BackupError::io("open", &file, e))?;
            f.sync_all()
                .map_err(|e| BackupError::io("fsync", &file, e))?;
            let mut dir = file.parent();
            while let Some(d) = dir {
                if let Ok(handle) = std::fs::File::open(d) {
                    let _ = handle.sync_all();
                }
                if d == root {
                    break;
                }
                dir = d.parent();
            }
            Ok(())
        })
        .await
        .map_err(|e| BackupError::io("fsync", key, std::io::Error::other(e)))?
    }

    fn key(&self, rest: &str) -> String {
        if self.prefix.is_empty() {
            rest.to_string()
        } else {
            format!("{}/{rest}", self.prefix)
        }
    }
}
