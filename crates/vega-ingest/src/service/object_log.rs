//! Write-ahead logs in an object store, for nodes that share a bucket but
//! no directory: every batch a node's log commits is also stored as one
//! object before it is acknowledged ([`vega_wal::WalMirror`]), so a
//! survivor can replay the acknowledged, unflushed rows of a node whose
//! disk is gone.
//!
//! Layout under `<prefix>/wal/`:
//!
//! - `<node id>/<first seq>-<last seq>.wal` — one committed batch, framed
//!   exactly as in the log file (both numbers 20 zero-padded digits, so
//!   name order is sequence order). Removed once every asset flushed past
//!   its last record.
//! - `<node id>/delivery-keys` — the node's MQTT delivery keys of records
//!   no longer in the log (a copy of the local file).
//! - `<node id>/adopted` — written by the node that took the log over
//!   (JSON: through which record, by whom, when). A log with this marker is
//!   not adopted again; its owner, should it start again on the same disk,
//!   drops its local copy (every acknowledged record of it is in segments
//!   now) and removes the marker.
//! - `adopted-keys-<node id>` — delivery keys of an adopted log, for the
//!   next consumer of its MQTT connections.

use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload};
use vega_wal::{Record, WalMirror};

use crate::error::IngestError;

/// The file name of a batch object.
fn batch_name(first_seq: u64, last_seq: u64) -> String {
    format!("{first_seq:020}-{last_seq:020}.wal")
}

/// The (first, last) sequence numbers of a batch object's file name.
fn parse_batch_name(name: &str) -> Option<(u64, u64)> {
    let (first, last) = name.strip_suffix(".wal")?.split_once('-')?;
    if first.len() != 20 || last.len() != 20 {
        return None;
    }
    Some((first.parse().ok()?, last.parse().ok()?))
}

const KEYS_OBJECT: &str = "delivery-keys";
const ADOPTED_MARKER: &str = "adopted";
const ADOPTED_KEYS_PREFIX: &str = "adopted-keys-";

/// The write-ahead logs of every node in one bucket.
#[derive(Clone)]
pub struct ObjectLogs {
    store: Arc<dyn ObjectStore>,
    /// `<prefix>/wal` (or `wal` without a prefix).
    root: String,
    /// The runtime that runs the store's requests for the log's committer
    /// thread, which is not a runtime thread.
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for ObjectLogs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectLogs")
            .field("store", &self.store.to_string())
            .field("root", &self.root)
            .finish()
    }
}

/// A log found in the bucket: its objects, oldest first.
#[derive(Debug, Clone)]
pub struct ObjectLog {
    pub node: String,
    batches: Vec<(u64, u64, ObjectPath)>,
}

impl ObjectLogs {
    /// The logs under `<prefix>/wal/` of `store`; requests made for the
    /// log's committer run on `runtime`.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str, runtime: tokio::runtime::Handle) -> Self {
        let prefix = prefix.trim_matches('/');
        let root = if prefix.is_empty() {
            "wal".to_string()
        } else {
            format!("{prefix}/wal")
        };
        ObjectLogs {
            store,
            root,
            runtime,
        }
    }

    fn path(&self, rest: &str) -> ObjectPath {
        ObjectPath::from(format!("{}/{rest}", self.root))
    }

    fn failed(action: &str, path: &ObjectPath, e: impl std::fmt::Display) -> IngestError {
        IngestError::Unavailable(format!("cannot {action} {path} in the object store: {e}"))
    }

    /// The mirror that stores the batches of node `node`'s log.
    pub fn mirror(&self, node: &str) -> Arc<dyn WalMirror> {
        Arc::new(Mirror {
            logs: self.clone(),
            node: node.to_string(),
        })
    }

    /// The batch objects of `node`'s log, oldest first.
    async fn batches(&self, node: &str) -> Result<Vec<(u64, u64, ObjectPath)>, IngestError> {
        let dir = self.path(node);
        let objects: Vec<_> = self
            .store
            .list(Some(&dir))
            .try_collect()
            .await
            .map_err(|e| Self::failed("list", &dir, e))?;
        let mut batches: Vec<_> = objects
            .into_iter()
            .filter_map(|meta| {
                let (first, last) = parse_batch_name(meta.location.filename()?)?;
                Some((first, last, meta.location))
            })
            .collect();
        batches.sort_by_key(|(first, _, _)| *first);
        Ok(batches)
    }

    async fn exists(&self, path: &ObjectPath) -> Result<bool, IngestError> {
        match self.store.head(path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(Self::failed("look up", path, e)),
        }
    }

    /// The logs of nodes other than `own` that hold batches and were not
    /// adopted yet.
    pub async fn others(&self, own: &str) -> Result<Vec<ObjectLog>, IngestError> {
        let root = ObjectPath::from(self.root.as_str());
        let listing = self
            .store
            .list_with_delimiter(Some(&root))
            .await
            .map_err(|e| Self::failed("list", &root, e))?;
        let mut logs = Vec::new();
        for dir in listing.common_prefixes {
            let Some(node) = dir.filename().map(str::to_string) else {
                continue;
            };
            let is_node = vega_core::Id::parse(vega_core::IdKind::Node, &node).is_some();
            if !is_node || node == own {
                continue;
            }
            if self
                .exists(&self.path(&format!("{node}/{ADOPTED_MARKER}")))
                .await?
            {
                continue;
            }
            let batches = self.batches(&node).await?;
            if !batches.is_empty() {
                logs.push(ObjectLog { node, batches });
            }
        }
        logs.sort_by(|a, b| a.node.cmp(&b.node));
        Ok(logs)
    }

    /// Every record of `log`, in sequence order, checked frame by frame.
    pub async fn read(&self, log: &ObjectLog) -> Result<Vec<Record>, IngestError> {
        let mut records: Vec<Record> = Vec::new();
        for (first, last, path) in &log.batches {
            let bytes = self
                .store
                .get(path)
                .await
                .map_err(|e| Self::failed("read", path, e))?
                .bytes()
                .await
                .map_err(|e| Self::failed("read", path, e))?;
            let batch = vega_wal::decode_records(&bytes, *first).map_err(|e| {
                IngestError::Internal(format!("write-ahead log object {path} is damaged {e}"))
            })?;
            if batch.last().map(|r| r.seq) != Some(*last) {
                return Err(IngestError::Internal(format!(
                    "write-ahead log object {path} ends before record {last}"
                )));
            }
            records.extend(batch);
        }
        // A batch given up after a failed store may have left a copy whose
        // numbers were never used again: numbers are unique, so keep the
        // first of each (there is at most one).
        records.sort_by_key(|r| r.seq);
        records.dedup_by_key(|r| r.seq);
        Ok(records)
    }

    /// The saved delivery keys of `node`'s log (empty if none).
    pub async fn read_keys(&self, node: &str) -> Result<Vec<u8>, IngestError> {
        self.read_optional(&self.path(&format!("{node}/{KEYS_OBJECT}")))
            .await
    }

    async fn read_optional(&self, path: &ObjectPath) -> Result<Vec<u8>, IngestError> {
        match self.store.get(path).await {
            Ok(r) => Ok(r
                .bytes()
                .await
                .map_err(|e| Self::failed("read", path, e))?
                .to_vec()),
            Err(object_store::Error::NotFound { .. }) => Ok(Vec::new()),
            Err(e) => Err(Self::failed("read", path, e)),
        }
    }

    async fn put(&self, path: &ObjectPath, bytes: Vec<u8>) -> Result<(), IngestError> {
        self.store
            .put(path, PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(|e| Self::failed("write", path, e))
    }

    /// Stores `node`'s delivery keys (the local file's contents).
    pub async fn put_keys(&self, node: &str, bytes: Vec<u8>) -> Result<(), IngestError> {
        self.put(&self.path(&format!("{node}/{KEYS_OBJECT}")), bytes)
            .await
    }

    /// Stores the delivery keys of adopted log `node`.
    pub async fn put_adopted_keys(&self, node: &str, bytes: Vec<u8>) -> Result<(), IngestError> {
        self.put(&self.path(&format!("{ADOPTED_KEYS_PREFIX}{node}")), bytes)
            .await
    }

    /// The delivery keys of every adopted log.
    pub async fn adopted_keys(&self) -> Result<Vec<Vec<u8>>, IngestError> {
        let root = ObjectPath::from(self.root.as_str());
        let listing = self
            .store
            .list_with_delimiter(Some(&root))
            .await
            .map_err(|e| Self::failed("list", &root, e))?;
        let mut all = Vec::new();
        for meta in listing.objects {
            if meta
                .location
                .filename()
                .is_some_and(|n| n.starts_with(ADOPTED_KEYS_PREFIX))
            {
                all.push(self.read_optional(&meta.location).await?);
            }
        }
        Ok(all)
    }

    /// Marks `log` adopted (through record `through`, by node `by`) and
    /// removes its batches and keys.
    pub async fn finish_adoption(
        &self,
        log: &ObjectLog,
        through: u64,
        by: &str,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), IngestError> {
        let marker = serde_json::json!({
            "through_seq": through,
            "by": by,
            "at": vega_core::clock::to_catalog_time(at),
        });
        self.put(
            &self.path(&format!("{}/{ADOPTED_MARKER}", log.node)),
            marker.to_string().into_bytes(),
        )
        .await?;
        // Everything else under the node's name goes, including batches it
        // stored after the listing: it wrote them without its lease, so it
        // acknowledged none of them.
        let dir = self.path(&log.node);
        let objects: Vec<_> = self
            .store
            .list(Some(&dir))
            .try_collect()
            .await
            .map_err(|e| Self::failed("list", &dir, e))?;
        for meta in objects {
            if meta.location.filename() == Some(ADOPTED_MARKER) {
                continue;
            }
            self.delete(&meta.location).await?;
        }
        Ok(())
    }

    async fn delete(&self, path: &ObjectPath) -> Result<(), IngestError> {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(Self::failed("delete", path, e)),
        }
    }

    /// Whether another node adopted `node`'s log (its marker is there).
    pub async fn was_adopted(&self, node: &str) -> Result<bool, IngestError> {
        self.exists(&self.path(&format!("{node}/{ADOPTED_MARKER}")))
            .await
    }

    /// Removes everything stored under `node`'s name: its owner starts a
    /// fresh log after another node adopted the old one.
    pub async fn clear(&self, node: &str) -> Result<(), IngestError> {
        let dir = self.path(node);
        let objects: Vec<_> = self
            .store
            .list(Some(&dir))
            .try_collect()
            .await
            .map_err(|e| Self::failed("list", &dir, e))?;
        // The marker last: until it is gone, nobody adopts what is left.
        let mut marker = None;
        for meta in objects {
            if meta.location.filename() == Some(ADOPTED_MARKER) {
                marker = Some(meta.location);
            } else {
                self.delete(&meta.location).await?;
            }
        }
        if let Some(marker) = marker {
            self.delete(&marker).await?;
        }
        Ok(())
    }
}

/// The mirror of one node's log.
struct Mirror {
    logs: ObjectLogs,
    node: String,
}

impl WalMirror for Mirror {
    fn put(&self, first_seq: u64, last_seq: u64, bytes: &[u8]) -> Result<(), String> {
        let path = self.logs.path(&format!(
            "{}/{}",
            self.node,
            batch_name(first_seq, last_seq)
        ));
        let payload = PutPayload::from(bytes.to_vec());
        self.logs
            .runtime
            .block_on(self.logs.store.put(&path, payload))
            .map(|_| ())
            .map_err(|e| format!("storing {path}: {e}"))
    }

    fn truncate_through(&self, seq: u64) -> Result<(), String> {
        self.logs.runtime.block_on(async {
            let batches = self
                .logs
                .batches(&self.node)
                .await
                .map_err(|e| e.to_string())?;
            for (_, last, path) in batches {
                if last <= seq {
                    self.logs.delete(&path).await.map_err(|e| e.to_string())?;
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_names_sort_by_sequence_and_parse_back() {
        let a = batch_name(9, 12);
        let b = batch_name(13, 100);
        assert!(a < b);
        assert_eq!(parse_batch_name(&a), Some((9, 12)));
        assert_eq!(parse_batch_name(&b), Some((13, 100)));
        assert_eq!(parse_batch_name("delivery-keys"), None);
        assert_eq!(parse_batch_name("1-2.wal"), None);
    }
}
