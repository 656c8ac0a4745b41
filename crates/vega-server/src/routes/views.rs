//! The JSON shapes of API responses, separate from the domain types so the
//! API can stay stable while the internals move.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use vega_core::{ApiKey, Asset, Connection, Job, Version};

#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionView {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[schema(value_type = Object)]
    pub params: Value,
    pub enabled: bool,
    pub created_at: String,
    pub updated_at: String,
}

impl From<Connection> for ConnectionView {
    fn from(c: Connection) -> Self {
        Self {
            id: c.id.to_string(),
            name: c.name,
            kind: c.kind.as_str().to_string(),
            params: c.params,
            enabled: c.enabled,
            created_at: vega_core::clock::to_catalog_time(c.created_at),
            updated_at: vega_core::clock::to_catalog_time(c.updated_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AssetView {
    pub id: String,
    pub namespace: String,
    pub name: String,
    /// `namespace.name`, as used in SQL.
    pub qualified_name: String,
    pub connection_id: String,
    pub sync_mode: String,
    #[schema(value_type = Object)]
    pub source: Value,
    #[schema(value_type = Object)]
    pub checks: Value,
    pub schedule: Option<String>,
    /// `{"column", "period"}`: rows older than the period are removed.
    #[schema(value_type = Option<Object>)]
    pub retention: Option<Value>,
    /// Where the next incremental sync resumes.
    #[schema(value_type = Option<Object>)]
    pub watermark: Option<Value>,
    /// `v3`, or null before the first publish.
    pub active_version: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<Asset> for AssetView {
    fn from(a: Asset) -> Self {
        Self {
            qualified_name: a.qualified_name(),
            id: a.id.to_string(),
            namespace: a.namespace,
            name: a.name,
            connection_id: a.connection_id.to_string(),
            sync_mode: a.sync_mode.as_str().to_string(),
            source: a.source,
            checks: serde_json::to_value(&a.checks).unwrap_or(Value::Null),
            schedule: a.schedule,
            retention: a.retention.and_then(|r| serde_json::to_value(r).ok()),
            watermark: a.watermark,
            active_version: a.active_version.map(|n| format!("v{n}")),
            created_at: vega_core::clock::to_catalog_time(a.created_at),
            updated_at: vega_core::clock::to_catalog_time(a.updated_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SegmentView {
    pub path: String,
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VersionView {
    /// `v1`, `v2`, …
    pub version: String,
    pub active: bool,
    pub rows: u64,
    pub bytes: u64,
    pub created_at: String,
    pub job_id: Option<String>,
    #[schema(value_type = Object)]
    pub schema: Value,
    pub segments: Vec<SegmentView>,
}

impl VersionView {
    pub fn new(v: Version, active: Option<u32>) -> Self {
        Self {
            version: v.label(),
            active: active == Some(v.number),
            rows: v.manifest.rows(),
            bytes: v.manifest.bytes(),
            created_at: vega_core::clock::to_catalog_time(v.created_at),
            job_id: v.job_id.map(|j| j.to_string()),
            schema: v.manifest.schema,
            segments: v
                .manifest
                .segments
                .into_iter()
                .map(|s| SegmentView {
                    path: s.path,
                    rows: s.rows,
                    bytes: s.bytes,
                    sha256: s.sha256,
                })
                .collect(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobView {
    pub id: String,
    pub kind: String,
    pub asset_id: Option<String>,
    pub state: String,
    #[schema(value_type = Object)]
    pub params: Value,
    pub attempts: u32,
    pub rows: u64,
    pub bytes: u64,
    pub error: Option<String>,
    pub result_version: Option<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// The node running the job (`node_…`).
    pub node_id: Option<String>,
    /// Until when that node's hold on the job lasts unless renewed.
    pub lease_expires_at: Option<String>,
}

impl From<Job> for JobView {
    fn from(j: Job) -> Self {
        use vega_core::clock::to_catalog_time;
        Self {
            id: j.id.to_string(),
            kind: j.kind.as_str().to_string(),
            asset_id: j.asset_id.map(|a| a.to_string()),
            state: j.state.as_str().to_string(),
            params: j.params,
            attempts: j.attempts,
            rows: j.rows,
            bytes: j.bytes,
            error: j.error,
            result_version: j.result_version.map(|n| format!("v{n}")),
            created_at: to_catalog_time(j.created_at),
            started_at: j.started_at.map(to_catalog_time),
            finished_at: j.finished_at.map(to_catalog_time),
            node_id: j.owner.map(|o| o.to_string()),
            lease_expires_at: j.lease_expires_at.map(to_catalog_time),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyView {
    pub id: String,
    pub name: String,
    pub role: String,
    pub created_at: String,
}

impl From<ApiKey> for ApiKeyView {
    fn from(k: ApiKey) -> Self {
        Self {
            id: k.id.to_string(),
            name: k.name,
            role: k.role.as_str().to_string(),
            created_at: vega_core::clock::to_catalog_time(k.created_at),
        }
    }
}

/// The standard error body.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    #[schema(value_type = Object)]
    pub details: Value,
}
