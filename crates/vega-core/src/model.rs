//! The objects Vega keeps in its catalog (SPEC §1).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::id::Id;

/// What kind of source a connection reads. New connectors add a variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectorKind {
    /// Local files (CSV, Parquet, JSON, NDJSON) under configured roots.
    File,
    /// A PostgreSQL table or query.
    Postgres,
    /// JSON or CSV over HTTP(S).
    Http,
    /// An InfluxDB 1.x measurement or InfluxQL query.
    Influxdb,
    /// An MQTT broker; its stream assets subscribe to topics.
    Mqtt,
    /// Line-protocol writes to Vega's own write endpoints; its stream
    /// assets (`<bucket>.<measurement>`) are created on first write.
    LineProtocol,
}

impl ConnectorKind {
    /// Every kind, in the order the API documents them.
    pub const ALL: [ConnectorKind; 6] = [
        ConnectorKind::File,
        ConnectorKind::Postgres,
        ConnectorKind::Http,
        ConnectorKind::Influxdb,
        ConnectorKind::Mqtt,
        ConnectorKind::LineProtocol,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ConnectorKind::File => "file",
            ConnectorKind::Postgres => "postgres",
            ConnectorKind::Http => "http",
            ConnectorKind::Influxdb => "influxdb",
            ConnectorKind::Mqtt => "mqtt",
            ConnectorKind::LineProtocol => "line_protocol",
        }
    }

    /// Whether the source pushes data (its assets are `stream` assets fed
    /// by ingest) rather than being read by sync.
    pub fn is_stream(self) -> bool {
        matches!(self, ConnectorKind::Mqtt | ConnectorKind::LineProtocol)
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// A source of data: type, parameters, and whether it may be used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Connection {
    pub id: Id,
    pub name: String,
    pub kind: ConnectorKind,
    /// Connector-specific parameters (for `file`: `{"root": "/data"}`).
    pub params: serde_json::Value,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What is needed to create a connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewConnection {
    pub name: String,
    pub kind: ConnectorKind,
    pub params: serde_json::Value,
}

/// How an asset is kept up to date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    Full,
    Incremental,
    Stream,
}

impl SyncMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncMode::Full => "full",
            SyncMode::Incremental => "incremental",
            SyncMode::Stream => "stream",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "full" => Some(SyncMode::Full),
            "incremental" => Some(SyncMode::Incremental),
            "stream" => Some(SyncMode::Stream),
            _ => None,
        }
    }
}

/// A named dataset `namespace.name` fed from one connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Asset {
    pub id: Id,
    pub namespace: String,
    pub name: String,
    pub connection_id: Id,
    pub sync_mode: SyncMode,
    /// Connector-specific description of what to read (for `file`:
    /// `{"path": "orders.csv", "format": "csv"}`).
    pub source: serde_json::Value,
    /// Checks a new version must pass before it is published.
    pub checks: AssetChecks,
    /// When to sync on its own: an interval (`"15m"`) or a cron expression
    /// (`"0 */5 * * * *"`, with seconds); `None` syncs only when asked.
    #[serde(default)]
    pub schedule: Option<String>,
    /// Where the next incremental sync resumes (a serialized watermark of
    /// the connector); `None` before the first incremental sync.
    #[serde(default)]
    pub watermark: Option<serde_json::Value>,
    /// How long rows are kept, by a time column.
    #[serde(default)]
    pub retention: Option<Retention>,
    /// The version queries read, if any has been published.
    pub active_version: Option<u32>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Asset {
    pub fn qualified_name(&self) -> String {
        format!("{}.{}", self.namespace, self.name)
    }
}

/// What is needed to create an asset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewAsset {
    pub namespace: String,
    pub name: String,
    pub connection_id: Id,
    pub sync_mode: SyncMode,
    pub source: serde_json::Value,
    pub checks: AssetChecks,
    /// See [`Asset::schedule`].
    #[serde(default)]
    pub schedule: Option<String>,
    /// See [`Asset::retention`].
    #[serde(default)]
    pub retention: Option<Retention>,
}

/// Rows whose `column` is older than `period` (e.g. `"30d"`) are removed
/// by the retention job: segments wholly past it are dropped, the one that
/// straddles it is rewritten, and the result is published as a new
/// version (history kept). Rows with a NULL time are kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    pub column: String,
    pub period: String,
}

/// Checks run on a freshly written version before it is published, and by
/// `POST /assets/{id}/validate` on the active version. A full sync
/// publishes only if every check passes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetChecks {
    /// The version must have at least this many rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_rows: Option<u64>,
    /// The version must have at most this many rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rows: Option<u64>,
    /// Columns that must hold no NULL.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_null: Vec<String>,
    /// Sets of columns whose combined values must be unique.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unique: Vec<Vec<String>>,
    /// The newest value of a time column must be recent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freshness: Option<FreshnessCheck>,
    /// The new version must have the active version's schema (same
    /// columns, types and order); a source whose schema changed fails.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub same_schema: bool,
    /// SQL assertions: each is a SELECT over the name `asset` (the new
    /// version's rows) that must return no row, e.g.
    /// `SELECT * FROM asset WHERE amount < 0`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sql: Vec<String>,
}

impl AssetChecks {
    /// Whether any check needs the data itself (beyond the row count).
    pub fn needs_data(&self) -> bool {
        !self.not_null.is_empty()
            || !self.unique.is_empty()
            || self.freshness.is_some()
            || !self.sql.is_empty()
    }
}

/// `max(column)` must be no older than `max_age` (e.g. `"1h"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreshnessCheck {
    pub column: String,
    pub max_age: String,
}

/// One Parquet file of a version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// Path relative to the storage root, `/`-separated.
    pub path: String,
    pub rows: u64,
    pub bytes: u64,
    /// Lower-case hex sha256 of the file's bytes.
    pub sha256: String,
}

/// The manifest of a version: its Arrow schema and its segments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The Arrow schema, in arrow-schema's serde JSON form.
    pub schema: serde_json::Value,
    pub segments: Vec<Segment>,
}

impl Manifest {
    pub fn rows(&self) -> u64 {
        self.segments.iter().map(|s| s.rows).sum()
    }

    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }
}

/// An immutable snapshot of an asset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Version {
    pub asset_id: Id,
    /// 1, 2, 3 … shown to users as `v1`, `v2`, `v3`.
    pub number: u32,
    pub created_at: DateTime<Utc>,
    /// The job that produced it, if any.
    pub job_id: Option<Id>,
    pub manifest: Manifest,
}

impl Version {
    pub fn label(&self) -> String {
        format!("v{}", self.number)
    }
}

/// Parses `v3` (or `3`) into 3.
pub fn parse_version_label(s: &str) -> Option<u32> {
    let digits = s.strip_prefix('v').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|n| *n > 0)
}

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// A sync or retention run of an asset (`params.mode`).
    Sync,
    /// A backup (`params.scope`: full, catalog or asset), taken through the
    /// API or by a schedule (`params.schedule`).
    Backup,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Sync => "sync",
            JobKind::Backup => "backup",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "sync" => Some(JobKind::Sync),
            "backup" => Some(JobKind::Backup),
            _ => None,
        }
    }
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Pending,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(JobState::Pending),
            "running" => Some(JobState::Running),
            "succeeded" => Some(JobState::Succeeded),
            "failed" => Some(JobState::Failed),
            "cancelled" => Some(JobState::Cancelled),
            _ => None,
        }
    }

    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }
}

/// A unit of background work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: Id,
    pub kind: JobKind,
    pub asset_id: Option<Id>,
    pub state: JobState,
    /// Job-specific parameters, e.g. `{"mode": "full"}`.
    pub params: serde_json::Value,
    pub attempts: u32,
    pub rows: u64,
    pub bytes: u64,
    pub error: Option<String>,
    /// The version a successful sync published.
    pub result_version: Option<u32>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The node running the job (`None` for a job started without one).
    #[serde(default)]
    pub owner: Option<Id>,
    /// Until when the owner's hold on the job lasts unless it renews it; a
    /// running job past this is claimed by another node, which fails it as
    /// interrupted and runs it again as a new job.
    #[serde(default)]
    pub lease_expires_at: Option<DateTime<Utc>>,
}

/// What an API key may do. Ordered: each role can do what the ones below it can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Query assets, read metadata.
    Reader,
    /// Reader, plus write data (line protocol ingest).
    Writer,
    /// Writer, plus run the operations of the runbook (sync, rollback,
    /// disable a connection, rate limits, cache).
    Operator,
    /// Everything, including connections, assets and API keys.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Writer => "writer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "reader" => Some(Role::Reader),
            "writer" => Some(Role::Writer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    /// Whether a key with this role may do what `required` allows.
    pub fn allows(self, required: Role) -> bool {
        self >= required
    }
}

/// A stored API key. The secret itself is never stored, only its hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: Id,
    pub name: String,
    pub role: Role,
    /// Lower-case hex sha256 of the full secret token.
    #[serde(skip_serializing)]
    pub secret_hash: String,
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_labels_parse() {
        assert_eq!(parse_version_label("v3"), Some(3));
        assert_eq!(parse_version_label("12"), Some(12));
        assert_eq!(parse_version_label("v0"), None);
        assert_eq!(parse_version_label("v"), None);
        assert_eq!(parse_version_label("v-1"), None);
        assert_eq!(parse_version_label("latest"), None);
    }

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Admin.allows(Role::Operator));
        assert!(Role::Operator.allows(Role::Reader));
        assert!(!Role::Reader.allows(Role::Writer));
        assert!(!Role::Writer.allows(Role::Operator));
    }

    #[test]
    fn manifest_sums_its_segments() {
        let m = Manifest {
            schema: serde_json::json!({}),
            segments: vec![
                Segment {
                    path: "a".into(),
                    rows: 2,
                    bytes: 10,
                    sha256: "x".into(),
                },
                Segment {
                    path: "b".into(),
                    rows: 3,
                    bytes: 5,
                    sha256: "y".into(),
                },
            ],
        };
        assert_eq!(m.rows(), 5);
        assert_eq!(m.bytes(), 15);
    }
}

/// A node of the cluster as the catalog knows it (its latest heartbeat).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub id: Id,
    pub name: String,
    /// What the node does: `api`, `ingest`, `sync`, ...
    pub roles: Vec<String>,
    pub version: String,
    /// Where its API answers, if it says.
    pub api_url: Option<String>,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
}

/// A named lease held by one node until it expires. `token` (the fencing
/// token) grows each time the lease changes hands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub name: String,
    pub holder: Id,
    pub token: u64,
    pub acquired_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}
