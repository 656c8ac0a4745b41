//! Portable catalog snapshots, for backups and disaster recovery: every
//! piece of durable user state of a catalog as one value that serializes to
//! JSON ([`CatalogSnapshot`]), written by [`Catalog::export_snapshot`] and
//! restored by [`Catalog::import_snapshot`]. A snapshot taken from one
//! backend imports into the other (SQLite ↔ PostgreSQL).
//!
//! [`Catalog::export_snapshot`]: crate::Catalog::export_snapshot
//! [`Catalog::import_snapshot`]: crate::Catalog::import_snapshot

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use vega_core::{ApiKey, Asset, Connection, Id, Role, Version};

use crate::{CatalogError, Result, MIGRATIONS};

/// The snapshot format this build writes and the only one it reads.
pub const SNAPSHOT_FORMAT: u32 = 1;

/// The highest migration this build knows: the newest `schema_version` it
/// imports.
pub(crate) fn known_schema_version() -> i64 {
    MIGRATIONS.last().map(|m| m.version).unwrap_or(0)
}

fn refused(message: impl Into<String>) -> CatalogError {
    CatalogError::Snapshot {
        message: message.into(),
    }
}

/// The durable user state of a catalog at one point in time, portable
/// between backends and releases (JSON through serde).
///
/// It holds the connections (with their parameters and whether they are
/// enabled), the assets (source, checks, schedule, watermark, retention,
/// active version), every version of every asset with its manifest (schema
/// and segments in order), the settings, and the API keys *with* the hash
/// of their secret (never the secret itself), so that restored keys keep
/// working. Ids, times, version numbers and active pointers are kept as
/// they are: an import into an empty catalog gives back an equal catalog.
///
/// It deliberately leaves out what describes running work rather than
/// user state: jobs (a version's `job_id` is kept, as the informative
/// reference it always is), nodes and their heartbeats, leases, and the
/// migration bookkeeping (`schema_migrations`, `schema_breaking`) — the
/// importing catalog has its own. Segment files are not in it either: a
/// snapshot names them (path, rows, bytes, sha256); storage keeps them.
///
/// Lists are ordered for a stable comparison: connections, assets and API
/// keys by id, versions by asset id then number, settings by key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogSnapshot {
    /// [`SNAPSHOT_FORMAT`]; a snapshot of another format is refused.
    pub format: u32,
    /// The catalog's schema (its highest applied migration) when exported;
    /// a build whose migrations end before it refuses the snapshot.
    pub schema_version: i64,
    /// When the snapshot was taken.
    pub exported_at: DateTime<Utc>,
    /// Every connection, enabled or not, with its parameters.
    pub connections: Vec<Connection>,
    /// Every asset, with its watermark, schedule, retention and active
    /// version.
    pub assets: Vec<Asset>,
    /// Every version of every asset, with its manifest.
    pub versions: Vec<Version>,
    /// Every runtime setting.
    pub settings: Vec<SettingSnapshot>,
    /// Every API key, with the hash of its secret.
    pub api_keys: Vec<ApiKeySnapshot>,
}

/// One runtime setting of a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SettingSnapshot {
    /// The setting's name.
    pub key: String,
    /// Its value, as stored.
    pub value: serde_json::Value,
    /// When it was last written.
    pub updated_at: DateTime<Utc>,
}

/// One API key of a snapshot. Unlike [`ApiKey`], whose hash is never
/// serialized (it must not reach API responses), this serializes
/// `secret_hash`: a restored key has to match the secrets already handed
/// out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeySnapshot {
    /// The key's id (`key_…`).
    pub id: Id,
    /// Its unique name.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// Lower-case hex sha256 of the key's secret.
    pub secret_hash: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

impl From<ApiKey> for ApiKeySnapshot {
    fn from(key: ApiKey) -> Self {
        ApiKeySnapshot {
            id: key.id,
            name: key.name,
            role: key.role,
            secret_hash: key.secret_hash,
            created_at: key.created_at,
        }
    }
}

impl From<ApiKeySnapshot> for ApiKey {
    fn from(key: ApiKeySnapshot) -> Self {
        ApiKey {
            id: key.id,
            name: key.name,
            role: key.role,
            secret_hash: key.secret_hash,
            created_at: key.created_at,
        }
    }
}

/// The part of a snapshot about one asset ([`CatalogSnapshot::asset`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssetSnapshot {
    /// The asset as the snapshot holds it.
    pub asset: Asset,
    /// The connection the asset reads from.
    pub connection: Connection,
    /// The asset's versions, oldest first.
    pub versions: Vec<Version>,
}

impl CatalogSnapshot {
    /// The ids of the snapshot's assets, in the snapshot's order.
    pub fn asset_ids(&self) -> Vec<Id> {
        self.assets.iter().map(|a| a.id.clone()).collect()
    }

    /// The asset `id` with its connection and its versions (oldest first);
    /// `None` when the snapshot holds no such asset (or, in an invalid
    /// snapshot, not its connection).
    pub fn asset(&self, id: &Id) -> Option<AssetSnapshot> {
        let asset = self.assets.iter().find(|a| &a.id == id)?;
        let connection = self
            .connections
            .iter()
            .find(|c| c.id == asset.connection_id)?;
        let mut versions: Vec<Version> = self
            .versions
            .iter()
            .filter(|v| &v.asset_id == id)
            .cloned()
            .collect();
        versions.sort_by_key(|v| v.number);
        Some(AssetSnapshot {
            asset: asset.clone(),
            connection: connection.clone(),
            versions,
        })
    }

    /// The snapshot as (pretty-printed) JSON.
    pub fn to_json(&self) -> Result<Vec<u8>> {
        serde_json::to_vec_pretty(self).map_err(|e| refused(format!("cannot encode JSON: {e}")))
    }

    /// Reads a snapshot from JSON. The format and schema version are checked
    /// first ([`CatalogSnapshot::check_compatible`]), so a snapshot of
    /// another format is refused as such rather than as malformed JSON.
    pub fn from_json(json: &[u8]) -> Result<Self> {
        /// The fields that say whether the rest can be read.
        #[derive(Deserialize)]
        struct Head {
            format: Option<u32>,
            schema_version: Option<i64>,
        }
        let head: Head = serde_json::from_slice(json)
            .map_err(|e| refused(format!("not a catalog snapshot: {e}")))?;
        let format = head
            .format
            .ok_or_else(|| refused("not a catalog snapshot: no 'format' field"))?;
        check_format(format)?;
        if let Some(version) = head.schema_version {
            check_schema_version(version)?;
        }
        serde_json::from_slice(json).map_err(|e| refused(format!("not a catalog snapshot: {e}")))
    }

    /// Refuses a snapshot this build cannot import as it is: a format other
    /// than [`SNAPSHOT_FORMAT`], or a schema version newer than this build's
    /// migrations (its rows may carry what this build would drop).
    pub fn check_compatible(&self) -> Result<()> {
        check_format(self.format)?;
        check_schema_version(self.schema_version)
    }

    /// Checks everything [`Catalog::import_snapshot`] needs before it writes
    /// anything: [`CatalogSnapshot::check_compatible`], no id, name or key
    /// twice, every asset's connection in the snapshot, every version's
    /// asset in the snapshot, every active version among the asset's
    /// versions, version numbers from 1, segment sizes that fit the
    /// catalog. The first problem is the error.
    ///
    /// [`Catalog::import_snapshot`]: crate::Catalog::import_snapshot
    pub fn validate(&self) -> Result<()> {
        self.check_compatible()?;

        let mut connection_ids = HashSet::new();
        let mut connection_names = HashSet::new();
        for c in &self.connections {
            if c.id.as_str().is_empty() {
                return Err(refused(format!("connection '{}' has an empty id", c.name)));
            }
            if !connection_ids.insert(&c.id) {
                return Err(refused(format!("connection id {} appears twice", c.id)));
            }
            if !connection_names.insert(c.name.as_str()) {
                return Err(refused(format!(
                    "connection name '{}' appears twice",
                    c.name
                )));
            }
        }

        let mut asset_ids = HashSet::new();
        let mut asset_names = HashSet::new();
        for a in &self.assets {
            let name = a.qualified_name();
            if a.id.as_str().is_empty() {
                return Err(refused(format!("asset '{name}' has an empty id")));
            }
            if !asset_ids.insert(&a.id) {
                return Err(refused(format!("asset id {} appears twice", a.id)));
            }
            if !asset_names.insert((a.namespace.as_str(), a.name.as_str())) {
                return Err(refused(format!("asset name '{name}' appears twice")));
            }
            if !connection_ids.contains(&a.connection_id) {
                return Err(refused(format!(
                    "asset '{name}' ({}) uses connection {}, which the snapshot does not hold",
                    a.id, a.connection_id
                )));
            }
        }

        let mut versions = HashSet::new();
        for v in &self.versions {
            if !asset_ids.contains(&v.asset_id) {
                return Err(refused(format!(
                    "version v{} belongs to asset {}, which the snapshot does not hold",
                    v.number, v.asset_id
                )));
            }
            if v.number == 0 {
                return Err(refused(format!(
                    "asset {} has a version numbered 0; numbers start at 1",
                    v.asset_id
                )));
            }
            if !versions.insert((&v.asset_id, v.number)) {
                return Err(refused(format!(
                    "version v{} of asset {} appears twice",
                    v.number, v.asset_id
                )));
            }
            for s in &v.manifest.segments {
                if i64::try_from(s.rows).is_err() || i64::try_from(s.bytes).is_err() {
                    return Err(refused(format!(
                        "segment {} of asset {} v{}: rows or bytes too large",
                        s.path, v.asset_id, v.number
                    )));
                }
            }
        }
        for a in &self.assets {
            if let Some(number) = a.active_version {
                if !versions.contains(&(&a.id, number)) {
                    return Err(refused(format!(
                        "asset '{}' ({}) has active version v{number}, which the snapshot does \
                         not hold",
                        a.qualified_name(),
                        a.id
                    )));
                }
            }
        }

        let mut setting_keys = HashSet::new();
        for s in &self.settings {
            if !setting_keys.insert(s.key.as_str()) {
                return Err(refused(format!("setting '{}' appears twice", s.key)));
            }
        }

        let (mut key_ids, mut key_names, mut key_hashes) =
            (HashSet::new(), HashSet::new(), HashSet::new());
        for k in &self.api_keys {
            if k.id.as_str().is_empty() {
                return Err(refused(format!("API key '{}' has an empty id", k.name)));
            }
            if !key_ids.insert(&k.id) {
                return Err(refused(format!("API key id {} appears twice", k.id)));
            }
            if !key_names.insert(k.name.as_str()) {
                return Err(refused(format!("API key name '{}' appears twice", k.name)));
            }
            // The hash itself is never named.
            if !key_hashes.insert(k.secret_hash.as_str()) {
                return Err(refused(format!(
                    "API key '{}' has the same secret as another key of the snapshot",
                    k.name
                )));
            }
        }
        Ok(())
    }

    /// Puts every list in the snapshot's order (see [`CatalogSnapshot`]).
    pub(crate) fn sort(&mut self) {
        self.connections.sort_by(|a, b| a.id.cmp(&b.id));
        self.assets.sort_by(|a, b| a.id.cmp(&b.id));
        self.versions
            .sort_by(|a, b| (&a.asset_id, a.number).cmp(&(&b.asset_id, b.number)));
        self.settings.sort_by(|a, b| a.key.cmp(&b.key));
        self.api_keys.sort_by(|a, b| a.id.cmp(&b.id));
    }
}

fn check_format(format: u32) -> Result<()> {
    if format == SNAPSHOT_FORMAT {
        return Ok(());
    }
    Err(refused(format!(
        "snapshot format {format} is unknown; this build reads format {SNAPSHOT_FORMAT}"
    )))
}

fn check_schema_version(version: i64) -> Result<()> {
    let known = known_schema_version();
    if version > known {
        return Err(refused(format!(
            "the snapshot's schema version is {version}, newer than this build's migrations \
             (up to {known}); import it with a newer Vega"
        )));
    }
    if version < 1 {
        return Err(refused(format!(
            "the snapshot's schema version {version} is not a migration (they start at 1)"
        )));
    }
    Ok(())
}
