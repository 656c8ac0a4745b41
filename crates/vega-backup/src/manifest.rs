//! The manifest of a backup: what it covers, when it was made, and every
//! object it holds by content address (sha256 and size). Stored as JSON at
//! `backups/<backup id>.json`, written after all its objects, so a manifest
//! that exists describes a complete backup.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use vega_core::Id;

use crate::error::BackupError;

/// The manifest format this crate writes and reads.
pub const FORMAT: u32 = 1;

/// What a backup covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// The catalog snapshot and the segments of every asset.
    Full,
    /// The catalog snapshot only, no segments.
    Catalog,
    /// The segments (and optionally a catalog snapshot) of one asset.
    Asset,
}

impl Scope {
    /// `full`, `catalog` or `asset`, as in the manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Full => "full",
            Scope::Catalog => "catalog",
            Scope::Asset => "asset",
        }
    }

    /// The inverse of [`Scope::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "full" => Some(Scope::Full),
            "catalog" => Some(Scope::Catalog),
            "asset" => Some(Scope::Asset),
            _ => None,
        }
    }
}

/// A blob of the repository by content: its sha256 and size.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ObjectRef {
    /// Lower-case hex sha256 of the content.
    pub sha256: String,
    /// Size of the content.
    pub bytes: u64,
}

/// A file of a backup: where it belongs and which blob holds it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BackupObject {
    /// Path relative to the storage root, `/`-separated, as in
    /// [`vega_core::Segment::path`].
    pub path: String,
    /// Lower-case hex sha256 of the content.
    pub sha256: String,
    /// Size of the content.
    pub bytes: u64,
}

impl BackupObject {
    /// The blob holding this file.
    pub fn object_ref(&self) -> ObjectRef {
        ObjectRef {
            sha256: self.sha256.clone(),
            bytes: self.bytes,
        }
    }
}

/// What writing a backup cost. The catalog snapshot counts as one object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupStats {
    /// Bytes of every object of the backup (files and catalog snapshot).
    pub bytes_total: u64,
    /// Bytes uploaded by this backup (the manifest itself not counted).
    pub bytes_written: u64,
    /// Bytes already in the repository, so not uploaded again.
    pub bytes_deduplicated: u64,
    /// Objects uploaded by this backup.
    pub objects_written: u64,
    /// Objects already in the repository.
    pub objects_deduplicated: u64,
}

/// A complete backup, as stored in `backups/<id>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupManifest {
    /// Always [`FORMAT`].
    pub format: u32,
    /// `bak_…`.
    pub id: Id,
    /// What the backup covers.
    pub scope: Scope,
    /// The asset of an [`Scope::Asset`] backup.
    #[serde(default)]
    pub asset_id: Option<String>,
    /// Free text given when the backup was started.
    #[serde(default)]
    pub description: Option<String>,
    /// When the backup was started.
    pub created_at: DateTime<Utc>,
    /// When its manifest was written.
    pub finished_at: DateTime<Utc>,
    /// The Vega version that wrote the backup.
    pub vega_version: String,
    /// The catalog snapshot, opaque to this crate.
    #[serde(default)]
    pub catalog: Option<ObjectRef>,
    /// The files of the backup, in the order they were added.
    #[serde(default)]
    pub objects: Vec<BackupObject>,
    /// The newest data the backup holds, as the caller reported it; the
    /// recovery point of the backup.
    #[serde(default)]
    pub newest_data_at: Option<DateTime<Utc>>,
    /// What writing the backup cost.
    pub stats: BackupStats,
}

impl BackupManifest {
    /// Every blob the backup references (files and catalog), once each.
    pub fn blobs(&self) -> impl Iterator<Item = ObjectRef> + '_ {
        let mut seen = HashSet::new();
        self.catalog
            .iter()
            .cloned()
            .chain(self.objects.iter().map(BackupObject::object_ref))
            .filter(move |r| seen.insert(r.sha256.clone()))
    }

    /// Parses the JSON of the manifest stored for `id` and checks it.
    pub(crate) fn parse(id: &str, bytes: &[u8]) -> Result<Self, BackupError> {
        let manifest: BackupManifest =
            serde_json::from_slice(bytes).map_err(|e| BackupError::corrupt(id, e.to_string()))?;
        manifest
            .check()
            .map_err(|message| BackupError::corrupt(id, message))?;
        if manifest.id.as_str() != id {
            return Err(BackupError::corrupt(
                id,
                format!("it names backup '{}'", manifest.id),
            ));
        }
        Ok(manifest)
    }

    /// Whether the fields are consistent: known format, valid digests and
    /// paths, no path twice, an asset id exactly for asset backups.
    fn check(&self) -> Result<(), String> {
        if self.format != FORMAT {
            return Err(format!(
                "format {} is not supported (expected {FORMAT})",
                self.format
            ));
        }
        match (self.scope, &self.asset_id) {
            (Scope::Asset, None) => return Err("an asset backup without asset_id".into()),
            (Scope::Full | Scope::Catalog, Some(_)) => {
                return Err(format!("a {} backup with an asset_id", self.scope.as_str()))
            }
            _ => {}
        }
        if let Some(catalog) = &self.catalog {
            if !is_sha256(&catalog.sha256) {
                return Err(format!("catalog sha256 '{}' is not valid", catalog.sha256));
            }
        }
        let mut paths = HashSet::new();
        for object in &self.objects {
            check_rel_path(&object.path).map_err(|e| format!("object path: {e}"))?;
            if !is_sha256(&object.sha256) {
                return Err(format!(
                    "object '{}' has an invalid sha256 '{}'",
                    object.path, object.sha256
                ));
            }
            if !paths.insert(object.path.as_str()) {
                return Err(format!("object '{}' is listed twice", object.path));
            }
        }
        Ok(())
    }
}

/// Whether `s` is 64 lower-case hex digits.
pub(crate) fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Checks a path relative to the storage root: `/`-separated, not empty,
/// not absolute, no `.`, `..` or empty parts, no backslashes.
pub(crate) fn check_rel_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("empty path".into());
    }
    if path.starts_with('/') {
        return Err(format!("'{path}' is absolute"));
    }
    if path.contains('\\') || path.contains('\0') {
        return Err(format!("'{path}' contains a backslash or NUL"));
    }
    if path
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return Err(format!("'{path}' has an empty, '.' or '..' part"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> BackupManifest {
        let now = Utc::now();
        BackupManifest {
            format: FORMAT,
            id: Id::generate(vega_core::IdKind::Backup),
            scope: Scope::Asset,
            asset_id: Some("ast_1".into()),
            description: None,
            created_at: now,
            finished_at: now,
            vega_version: vega_core::VERSION.into(),
            catalog: None,
            objects: vec![BackupObject {
                path: "ast_1/v1/part-00000.parquet".into(),
                sha256: "a".repeat(64),
                bytes: 3,
            }],
            newest_data_at: None,
            stats: BackupStats::default(),
        }
    }

    #[test]
    fn scope_is_lower_case_json() {
        assert_eq!(serde_json::to_string(&Scope::Full).unwrap(), "\"full\"");
        assert_eq!(Scope::parse("catalog"), Some(Scope::Catalog));
        assert_eq!(Scope::parse("Full"), None);
    }

    #[test]
    fn manifest_round_trips_and_is_checked() {
        let m = sample();
        let json = serde_json::to_vec(&m).unwrap();
        assert_eq!(BackupManifest::parse(m.id.as_str(), &json).unwrap(), m);

        let err = BackupManifest::parse("bak_other", &json).unwrap_err();
        assert!(err.to_string().contains("names backup"), "{err}");

        let mut bad = m.clone();
        bad.objects[0].path = "../etc/passwd".into();
        let err =
            BackupManifest::parse(bad.id.as_str(), &serde_json::to_vec(&bad).unwrap()).unwrap_err();
        assert!(err.to_string().contains("'..'"), "{err}");

        let mut bad = m.clone();
        bad.format = 2;
        let err =
            BackupManifest::parse(bad.id.as_str(), &serde_json::to_vec(&bad).unwrap()).unwrap_err();
        assert!(err.to_string().contains("format 2"), "{err}");

        let err = BackupManifest::parse("bak_x", b"{not json").unwrap_err();
        assert!(err
            .to_string()
            .starts_with("corrupt manifest of backup 'bak_x'"));
    }

    #[test]
    fn rel_paths() {
        assert!(check_rel_path("a/b.parquet").is_ok());
        for bad in ["", "/a", "a//b", "a/./b", "a/../b", "a\\b", "a/"] {
            assert!(check_rel_path(bad).is_err(), "{bad}");
        }
    }
}
