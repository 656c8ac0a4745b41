//! Deleting backups and retention.
//!
//! [`BackupRepository::delete`] removes a manifest, then collects garbage:
//! blobs no remaining manifest references are removed, content shared with
//! other backups stays. A blob nobody references that the deleted backups
//! did not reference either (left by a backup that never finished) is
//! removed only once it is older than the grace period, as it may belong to
//! a backup still being written. If any remaining manifest does not parse,
//! nothing is deleted: what it references is unknown.
//!
//! [`BackupRepository::prune`] applies a [`RetentionPolicy`]: keep the last
//! N backups and none older than a maximum age, per series (scope and
//! asset), never deleting the newest backup of a series.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use vega_core::Id;

use crate::error::BackupError;
use crate::manifest::{BackupManifest, Scope};
use crate::repo::BackupRepository;

/// What deleting backups freed and kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DeleteReport {
    /// The backups whose manifests were removed.
    pub deleted: Vec<Id>,
    /// Blobs removed.
    pub freed_objects: u64,
    /// Bytes of the blobs removed.
    pub freed_bytes: u64,
    /// Blobs of the deleted backups kept because other backups still
    /// reference them.
    pub kept_shared_objects: u64,
    /// Bytes of those kept blobs.
    pub kept_shared_bytes: u64,
}

/// Which backups to keep. A backup is deleted when it is outside either
/// limit; with neither set nothing is deleted. The newest backup of each
/// series is always kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionPolicy {
    /// Keep at most this many backups per series (newest first).
    pub keep_last: Option<usize>,
    /// Keep no backup created longer ago than this.
    pub max_age: Option<Duration>,
}

impl RetentionPolicy {
    /// The backups of `manifests` the policy deletes at `now`, oldest
    /// first. Backups form series by scope and asset; only series of
    /// `scope` are considered when it is given.
    pub fn select(
        &self,
        manifests: &[BackupManifest],
        scope: Option<Scope>,
        now: DateTime<Utc>,
    ) -> Vec<Id> {
        let mut series: HashMap<(Scope, Option<&str>), Vec<&BackupManifest>> = HashMap::new();
        for m in manifests {
            if scope.is_none_or(|s| s == m.scope) {
                series
                    .entry((m.scope, m.asset_id.as_deref()))
                    .or_default()
                    .push(m);
            }
        }
        let max_age = self
            .max_age
            .and_then(|d| chrono::Duration::from_std(d).ok());
        let mut doomed: Vec<&BackupManifest> = Vec::new();
        for mut members in series.into_values() {
            // Newest first.
            members.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
            for (i, m) in members.into_iter().enumerate() {
                if i == 0 {
                    continue;
                }
                let beyond_count = self.keep_last.is_some_and(|n| i >= n);
                let too_old = max_age.is_some_and(|age| now - m.created_at > age);
                if beyond_count || too_old {
                    doomed.push(m);
                }
            }
        }
        doomed.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        doomed.into_iter().map(|m| m.id.clone()).collect()
    }
}

impl BackupRepository {
    /// Deletes backup `id` and the blobs no other backup references (see
    /// the module docs). [`BackupError::NotFound`] for an unknown id. A
    /// backup whose own manifest is corrupt can still be deleted.
    pub async fn delete(&self, id: &str) -> Result<DeleteReport, BackupError> {
        self.delete_many(&[id.to_string()]).await
    }

    /// Applies `policy` at `now` to the series of `scope` (every series if
    /// `None`) and deletes what it selects; returns the deleted ids, oldest
    /// first.
    pub async fn prune(
        &self,
        policy: &RetentionPolicy,
        scope: Option<Scope>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Id>, BackupError> {
        let manifests = self.list().await?;
        let doomed = policy.select(&manifests, scope, now);
        if doomed.is_empty() {
            return Ok(doomed);
        }
        let ids: Vec<String> = doomed.iter().map(|id| id.to_string()).collect();
        let report = self.delete_many(&ids).await?;
        tracing::info!(
            deleted = report.deleted.len(),
            freed_bytes = report.freed_bytes,
            "backups pruned"
        );
        Ok(report.deleted)
    }

    /// Removes blobs no backup references that are older than the grace
    /// period (left by backups that never finished).
    pub async fn collect_garbage(&self) -> Result<DeleteReport, BackupError> {
        self.delete_many(&[]).await
    }

    async fn delete_many(&self, ids: &[String]) -> Result<DeleteReport, BackupError> {
        let all = self.manifest_ids().await?;
        let targets: HashSet<&str> = ids.iter().map(String::as_str).collect();
        for id in &targets {
            if !all.iter().any(|a| a == id) {
                return Err(BackupError::NotFound { id: id.to_string() });
            }
        }
        // What stays referenced, and what the deleted backups referenced.
        let mut referenced: HashSet<String> = HashSet::new();
        let mut released: HashSet<String> = HashSet::new();
        for id in &all {
            let is_target = targets.contains(id.as_str());
            match self.get(id).await {
                Ok(manifest) => {
                    let set = if is_target {
                        &mut released
                    } else {
                        &mut referenced
                    };
                    set.extend(manifest.blobs().map(|b| b.sha256));
                }
                // A corrupt manifest being deleted references nothing we
                // can know; its blobs fall to the grace period.
                Err(BackupError::CorruptManifest { .. }) if is_target => {}
                // Deleted meanwhile: it references nothing any more.
                Err(BackupError::NotFound { .. }) if !is_target => {}
                Err(e) => return Err(e),
            }
        }

        let mut report = DeleteReport::default();
        for id in ids {
            let key = self.manifest_key(id);
            match self.store.delete(&self.manifest_path(id)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(BackupError::store("deleting", &key, e)),
            }
            report.deleted.push(Id::from_trusted(id.clone()));
        }

        let grace = chrono::Duration::from_std(self.gc_grace).unwrap_or(chrono::Duration::MAX);
        let cutoff = self
            .clock
            .now()
            .checked_sub_signed(grace)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        for (sha256, size, modified) in self.list_blobs().await? {
            if referenced.contains(&sha256) {
                if released.contains(&sha256) {
                    report.kept_shared_objects += 1;
                    report.kept_shared_bytes += size;
                }
                continue;
            }
            if !released.contains(&sha256) && modified > cutoff {
                continue;
            }
            let key = self.blob_key(&sha256);
            match self.store.delete(&self.blob_path(&sha256)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(BackupError::store("deleting", &key, e)),
            }
            report.freed_objects += 1;
            report.freed_bytes += size;
        }
        if !report.deleted.is_empty() || report.freed_objects > 0 {
            tracing::info!(
                deleted = report.deleted.len(),
                freed_objects = report.freed_objects,
                freed_bytes = report.freed_bytes,
                kept_shared_objects = report.kept_shared_objects,
                "backups deleted"
            );
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{BackupStats, FORMAT};
    use chrono::TimeZone;
    use vega_core::IdKind;

    fn manifest(scope: Scope, asset: Option<&str>, created: DateTime<Utc>) -> BackupManifest {
        BackupManifest {
            format: FORMAT,
            id: Id::new(IdKind::Backup, created.timestamp_millis() as u64),
            scope,
            asset_id: asset.map(str::to_string),
            description: None,
            created_at: created,
            finished_at: created,
            vega_version: vega_core::VERSION.into(),
            catalog: None,
            objects: Vec::new(),
            newest_data_at: None,
            stats: BackupStats::default(),
        }
    }

    fn day(d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, d, 0, 0, 0).unwrap()
    }

    #[test]
    fn keep_last_per_series_and_never_the_newest() {
        let full: Vec<_> = (1..=5)
            .map(|d| manifest(Scope::Full, None, day(d)))
            .collect();
        let asset_a = manifest(Scope::Asset, Some("ast_a"), day(1));
        let asset_b = manifest(Scope::Asset, Some("ast_b"), day(2));
        let mut all = full.clone();
        all.extend([asset_a, asset_b]);

        let policy = RetentionPolicy {
            keep_last: Some(2),
            max_age: None,
        };
        let doomed = policy.select(&all, None, day(10));
        let expected: Vec<Id> = full[..3].iter().map(|m| m.id.clone()).collect();
        assert_eq!(doomed, expected, "one backup per asset series is kept");

        let none = RetentionPolicy {
            keep_last: Some(0),
            max_age: None,
        };
        assert_eq!(none.select(&all, Some(Scope::Full), day(10)).len(), 4);
        assert!(RetentionPolicy::default()
            .select(&all, None, day(10))
            .is_empty());
    }

    #[test]
    fn max_age_spares_the_newest() {
        let all: Vec<_> = (1..=3)
            .map(|d| manifest(Scope::Catalog, None, day(d)))
            .collect();
        let policy = RetentionPolicy {
            keep_last: None,
            max_age: Some(Duration::from_secs(36 * 3600)),
        };
        // On day 3: day 1 is too old, day 2 is 24 h old.
        assert_eq!(policy.select(&all, None, day(3)), vec![all[0].id.clone()]);
        // Long after: all too old, but the newest stays.
        assert_eq!(
            policy.select(&all, None, day(30)),
            vec![all[0].id.clone(), all[1].id.clone()]
        );
        assert!(policy.select(&all, Some(Scope::Full), day(30)).is_empty());
    }
}
