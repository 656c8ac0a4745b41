//! Health and metrics (the operations port; `/health*` also answers on the
//! API port for load balancers).
//!
//! - `/health/live`: the process serves; calls nothing.
//! - `/health/ready`: catalog reachable, storage writable, engine answering,
//!   start-up finished, not draining; 503 with `Retry-After` otherwise.
//! - `/health`: the full report, per service with status, response time and
//!   last error.

use std::time::Instant;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::state::AppState;

/// How long `/health` waits for one connection's source to answer.
const CONNECTION_CHECK_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ServiceHealth {
    pub name: String,
    /// `healthy`, `unhealthy` or `disabled`.
    pub status: String,
    pub response_time_ms: f64,
    pub last_error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HealthReport {
    /// `healthy`, `degraded` (a connection is down) or `unhealthy` (a core
    /// service is down, or the node drains).
    pub status: String,
    pub timestamp: String,
    pub uptime_seconds: f64,
    pub version: String,
    pub node_id: String,
    /// The configured node name (`node.name`).
    pub node_name: String,
    pub draining: bool,
    pub services: Vec<ServiceHealth>,
    /// The circuit breakers this node has (by connection name, `trino`,
    /// and the configured services): state and window counts. An open
    /// breaker makes `/health` degraded.
    pub breakers: Vec<crate::breakers::BreakerView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Liveness {
    pub status: String,
}

async fn timed<F, E>(name: &str, check: F) -> ServiceHealth
where
    F: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let started = Instant::now();
    let result = check.await;
    ServiceHealth {
        name: name.to_string(),
        status: if result.is_ok() {
            "healthy"
        } else {
            "unhealthy"
        }
        .to_string(),
        response_time_ms: started.elapsed().as_secs_f64() * 1000.0,
        last_error: result.err().map(|e| e.to_string()),
    }
}

/// The three services readiness depends on.
async fn core_services(state: &AppState) -> Vec<ServiceHealth> {
    let store = state.store.clone();
    let mut services = vec![
        timed("catalog", state.catalog.ping()).await,
        timed("storage", async move {
            tokio::task::spawn_blocking(move || store.check_writable().map_err(|e| e.to_string()))
                .await
                .map_err(|e| e.to_string())?
        })
        .await,
        timed("engine", state.engine.ping()).await,
    ];
    // A node that registers itself is not ready before it is registered.
    if let Some(discovery) = &state.discovery {
        let not_ready = discovery.not_ready();
        services.push(ServiceHealth {
            name: "discovery".into(),
            status: if not_ready.is_none() {
                "healthy"
            } else {
                "unhealthy"
            }
            .into(),
            response_time_ms: 0.0,
            last_error: not_ready,
        });
    }
    services
}

#[utoipa::path(get, path = "/health/live", tag = "health", responses((status = 200, body = Liveness)))]
pub async fn live() -> Json<Liveness> {
    Json(Liveness {
        status: "alive".into(),
    })
}

#[utoipa::path(get, path = "/health/ready", tag = "health",
    responses((status = 200, body = HealthReport), (status = 503, body = HealthReport)))]
pub async fn ready(State(state): State<AppState>) -> Response {
    let services = core_services(&state).await;
    let started = state.started_up.load(std::sync::atomic::Ordering::SeqCst);
    let ok = started && !state.is_draining() && services.iter().all(|s| s.status == "healthy");
    let report = report(&state, services, if ok { "healthy" } else { "unhealthy" });
    respond(ok, report)
}

#[utoipa::path(get, path = "/health", tag = "health",
    responses((status = 200, body = HealthReport), (status = 503, body = HealthReport)))]
pub async fn health(State(state): State<AppState>) -> Response {
    let mut services = core_services(&state).await;
    let core_ok = services.iter().all(|s| s.status == "healthy");
    let mut connections_ok = true;
    match state.catalog.list_connections().await {
        Ok(connections) => {
            for c in connections {
                let name = format!("connection:{}", c.name);
                if !c.enabled {
                    services.push(ServiceHealth {
                        name,
                        status: "disabled".into(),
                        response_time_ms: 0.0,
                        last_error: None,
                    });
                    continue;
                }
                if c.kind == vega_core::ConnectorKind::Mqtt {
                    if let Some(status) = state.mqtt.status(&c.id).await {
                        let up = status.state == vega_connector_mqtt::ConnectionState::Connected;
                        connections_ok &= up;
                        services.push(ServiceHealth {
                            name,
                            status: if up { "healthy" } else { "unhealthy" }.into(),
                            response_time_ms: 0.0,
                            last_error: if up {
                                None
                            } else {
                                Some(format!(
                                    "{} (reconnects: {}): {}",
                                    status.state.as_str(),
                                    status.reconnects,
                                    status
                                        .last_error
                                        .unwrap_or_else(|| "not connected yet".into())
                                ))
                            },
                        });
                        continue;
                    }
                }
                let params = c.params.clone();
                let health = timed(
                    &name,
                    state.connector_call(c.kind, CONNECTION_CHECK_LIMIT, move |conn| {
                        conn.test(&params)
                    }),
                )
                .await;
                connections_ok &= health.status == "healthy";
                services.push(health);
            }
        }
        Err(_) => connections_ok = false,
    }
    let ingest = state.ingest.stats();
    let ingest_ok = ingest.last_flush_error.is_none();
    connections_ok &= ingest_ok;
    services.push(ServiceHealth {
        name: "ingest".into(),
        status: if ingest_ok { "healthy" } else { "unhealthy" }.into(),
        response_time_ms: 0.0,
        last_error: ingest.last_flush_error.map(|e| {
            format!("flushing to segments fails (rows stay buffered and durable in the log): {e}")
        }),
    });
    // A registration that no longer refreshes will expire.
    if let Some(error) = state.discovery.as_ref().and_then(|d| d.refresh_error()) {
        connections_ok = false;
        services.push(ServiceHealth {
            name: "discovery:refresh".into(),
            status: "unhealthy".into(),
            response_time_ms: 0.0,
            last_error: Some(format!(
                "refreshing this node's registration fails; it expires unless a refresh succeeds: {error}"
            )),
        });
    }
    // A breaker that rejects calls means a dependency is failing.
    connections_ok &= state
        .breakers
        .views()
        .iter()
        .all(|b| !matches!(b.state.as_str(), "open" | "forced_open"));
    let started = state.started_up.load(std::sync::atomic::Ordering::SeqCst);
    let ok = core_ok && started && !state.is_draining();
    let status = match (ok, connections_ok) {
        (false, _) => "unhealthy",
        (true, false) => "degraded",
        (true, true) => "healthy",
    };
    respond(ok, report(&state, services, status))
}

fn report(state: &AppState, services: Vec<ServiceHealth>, status: &str) -> HealthReport {
    HealthReport {
        status: status.to_string(),
        timestamp: vega_core::clock::to_catalog_time(state.clock.now()),
        uptime_seconds: state.started.elapsed().as_secs_f64(),
        version: vega_core::VERSION.to_string(),
        node_id: state.node_id.to_string(),
        node_name: state.node_name.clone(),
        draining: state.is_draining(),
        services,
        breakers: state.breakers.views(),
    }
}

fn respond(ok: bool, report: HealthReport) -> Response {
    if ok {
        (StatusCode::OK, Json(report)).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "5")],
            Json(report),
        )
            .into_response()
    }
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "health", responses((status = 200, content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    if let Ok(counts) = state.catalog.count_jobs_by_state().await {
        for (job_state, n) in counts {
            state
                .metrics
                .jobs_by_state
                .get_or_create(&crate::metrics::StateLabels {
                    state: job_state.as_str().to_string(),
                })
                .set(n as i64);
        }
    }
    state.metrics.draining.set(i64::from(state.is_draining()));
    let ingest = state.ingest.stats();
    state
        .metrics
        .ingest_buffer_rows
        .set(ingest.buffer_rows as i64);
    state
        .metrics
        .ingest_buffer_bytes
        .set(ingest.buffer_bytes as i64);
    state.metrics.wal_bytes.set(ingest.wal_bytes as i64);
    for status in state.mqtt.statuses().await {
        use crate::metrics::{ConnectionLabels, MqttMessageLabels};
        let connection = ConnectionLabels {
            connection: status.connection.clone(),
        };
        let up = status.state == vega_connector_mqtt::ConnectionState::Connected;
        state
            .metrics
            .mqtt_connected
            .get_or_create(&connection)
            .set(i64::from(up));
        state
            .metrics
            .mqtt_reconnects
            .get_or_create(&connection)
            .set(status.reconnects as i64);
        for (outcome, n) in [
            ("received", status.received),
            ("stored", status.stored),
            ("duplicate", status.duplicates),
            ("mapping_error", status.mapping_errors),
            ("rejected", status.rejected),
            ("dropped", status.dropped),
        ] {
            state
                .metrics
                .mqtt_messages
                .get_or_create(&MqttMessageLabels {
                    connection: status.connection.clone(),
                    outcome: outcome.into(),
                })
                .set(n as i64);
        }
    }
    if let Ok(assets) = state.catalog.list_assets().await {
        let now = state.clock.now();
        for asset in assets {
            let newest = state
                .catalog
                .list_jobs(vega_catalog::JobFilter {
                    asset_id: Some(asset.id.clone()),
                    state: Some(vega_core::JobState::Succeeded),
                    limit: Some(1),
                })
                .await;
            if let Some(finished) = newest
                .ok()
                .and_then(|j| j.into_iter().next())
                .and_then(|j| j.finished_at)
            {
                let lag = (now - finished).num_milliseconds().max(0) as f64 / 1000.0;
                state
                    .metrics
                    .sync_lag
                    .get_or_create(&crate::metrics::AssetLabels {
                        asset: asset.qualified_name(),
                    })
                    .set(lag);
            }
        }
    }
    let mut out = state.metrics.encode();
    let data_dir = state.data_dir.clone();
    let store = state.store.clone();
    let process = tokio::task::spawn_blocking(move || {
        let mut text = String::new();
        if let (Ok(stats), Ok(memory), Ok(disk)) = (
            vega_telemetry::process::ProcessStats::read(),
            vega_telemetry::process::system_memory(),
            vega_telemetry::process::disk_usage(&data_dir),
        ) {
            let used = store
                .disk_usage()
                .map(|u| u.used_by_root_bytes)
                .unwrap_or(0);
            vega_telemetry::metrics::encode_process_metrics(
                &mut text, &stats, &memory, &disk, used,
            );
        }
        text
    })
    .await
    .unwrap_or_default();
    out.push_str(&process);
    if let Some(pools) = state.catalog.pool_stats() {
        out.push_str(&crate::metrics::encode_pool_metrics(&pools));
    }
    out.push_str(&state.breakers.metrics_text());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}
