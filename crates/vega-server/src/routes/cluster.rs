//! `GET /api/v1/cluster/nodes`: the nodes of the cluster (every node that
//! shares this catalog), with their heartbeat age and the leases they hold.

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::routes::views::ErrorBody;
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct LeaseView {
    pub name: String,
    /// The fencing token: grows each time the lease changes hands.
    pub token: u64,
    /// Seconds until it expires unless renewed (negative: expired).
    pub expires_in_seconds: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NodeView {
    pub id: String,
    pub name: String,
    pub roles: Vec<String>,
    pub version: String,
    pub api_url: Option<String>,
    pub started_at: String,
    /// Seconds since its last heartbeat.
    pub heartbeat_age_seconds: f64,
    /// Whether this is the node that answered.
    pub this_node: bool,
    pub leases: Vec<LeaseView>,
}

/// The nodes sharing this catalog, by name.
#[utoipa::path(get, path = "/api/v1/cluster/nodes", tag = "cluster",
    responses((status = 200, body = Vec<NodeView>), (status = 503, body = ErrorBody)))]
pub async fn list_nodes(State(state): State<AppState>) -> Result<Json<Vec<NodeView>>, ApiError> {
    let nodes = state.catalog.list_nodes().await?;
    let leases = state.catalog.list_leases().await?;
    let now = state.clock.now();
    let seconds = |d: chrono::Duration| d.num_milliseconds() as f64 / 1000.0;
    Ok(Json(
        nodes
            .into_iter()
            .map(|n| NodeView {
                this_node: n.id == state.node_id,
                leases: leases
                    .iter()
                    .filter(|l| l.holder == n.id && l.expires_at >= now)
                    .map(|l| LeaseView {
                        name: l.name.clone(),
                        token: l.token,
                        expires_in_seconds: seconds(l.expires_at - now),
                    })
                    .collect(),
                id: n.id.to_string(),
                name: n.name,
                roles: n.roles,
                version: n.version,
                api_url: n.api_url,
                started_at: vega_core::clock::to_catalog_time(n.started_at),
                heartbeat_age_seconds: seconds(now - n.heartbeat_at).max(0.0),
            })
            .collect(),
    ))
}

/// The healthy instances of each service of
/// `service_discovery.discovery.services`, as the provider lists them now.
#[utoipa::path(get, path = "/api/v1/discovery", tag = "cluster",
    responses((status = 200, body = DiscoveryView), (status = 403, body = ErrorBody)))]
pub async fn list_discovered(
    axum::extract::State(state): axum::extract::State<AppState>,
    axum::Extension(principal): axum::Extension<crate::auth::Principal>,
) -> Result<axum::Json<DiscoveryView>, ApiError> {
    principal.require(vega_core::Role::Reader)?;
    let Some(discovery) = &state.discovery else {
        return Ok(axum::Json(DiscoveryView {
            provider: None,
            registered: false,
            services: Vec::new(),
        }));
    };
    Ok(axum::Json(DiscoveryView {
        provider: Some(discovery.provider_name().to_string()),
        registered: discovery.not_ready().is_none(),
        services: discovery.discovered().await,
    }))
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct DiscoveryView {
    /// `static`, `dns`, `etcd` or `consul`; absent without
    /// `service_discovery`.
    pub provider: Option<String>,
    /// Whether this node's own registration succeeded.
    pub registered: bool,
    pub services: Vec<crate::discovery::DiscoveredView>,
}
