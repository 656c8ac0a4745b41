//! `vega serve --demo`: a small real dataset (see `demo/README.md`) compiled
//! into the binary, written under the data directory and loaded as assets.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use vega_core::{AssetChecks, ConnectorKind, JobState, NewAsset, NewConnection, SyncMode};
use vega_server::RunningServer;

/// The demo files: (file name, namespace, asset name, minimum rows).
const FILES: &[(&str, &[u8], &str, &str, u64)] = &[
    (
        "seattle-weather.csv",
        include_bytes!("../../../demo/data/seattle-weather.csv"),
        "weather",
        "seattle_daily",
        1000,
    ),
    (
        "iowa-electricity.csv",
        include_bytes!("../../../demo/data/iowa-electricity.csv"),
        "energy",
        "iowa_generation",
        10,
    ),
];

const CONNECTION: &str = "demo-files";

/// Writes the demo files to `<data_dir>/demo` and returns that directory.
pub fn write_files(data_dir: &Path) -> std::io::Result<PathBuf> {
    let dir = data_dir.join("demo");
    std::fs::create_dir_all(&dir)?;
    for (name, bytes, ..) in FILES {
        std::fs::write(dir.join(name), bytes)?;
    }
    dir.canonicalize()
}

/// Creates the demo connection and assets if missing and syncs each asset
/// that has no version yet, waiting for the jobs to finish.
pub async fn load(server: &RunningServer) -> Result<(), Box<dyn std::error::Error>> {
    let state = &server.state;
    let dir = state.data_dir.join("demo").canonicalize()?;
    let connection = match state.catalog.get_connection_by_name(CONNECTION).await {
        Ok(c) => c,
        Err(_) => {
            state
                .catalog
                .create_connection(
                    NewConnection {
                        name: CONNECTION.into(),
                        kind: ConnectorKind::File,
                        params: json!({ "root": dir }),
                    },
                    state.clock.now(),
                )
                .await?
        }
    };
    for (file, _, namespace, name, min_rows) in FILES {
        let asset = match state.catalog.get_asset_by_name(namespace, name).await {
            Ok(a) => a,
            Err(_) => {
                state
                    .catalog
                    .create_asset(
                        NewAsset {
                            namespace: namespace.to_string(),
                            name: name.to_string(),
                            connection_id: connection.id.clone(),
                            sync_mode: SyncMode::Full,
                            source: json!({ "path": file, "format": "csv" }),
                            checks: AssetChecks {
                                min_rows: Some(*min_rows),
                                ..AssetChecks::default()
                            },
                            schedule: None,
                            retention: None,
                        },
                        state.clock.now(),
                    )
                    .await?
            }
        };
        if asset.active_version.is_some() {
            continue;
        }
        let job = state.sync.start(&asset.id, SyncMode::Full).await?;
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let job = state.catalog.get_job(&job.id).await?;
            if job.state.is_finished() {
                if job.state != JobState::Succeeded {
                    return Err(format!(
                        "demo sync of {namespace}.{name} failed: {}",
                        job.error.unwrap_or_default()
                    )
                    .into());
                }
                break;
            }
        }
    }
    tracing::info!(
        api = %server.api_addr,
        "demo loaded: try  vega sql \"SELECT weather, count(*) AS days, round(avg(temp_max), 1) AS avg_max FROM weather.seattle_daily GROUP BY weather ORDER BY days DESC\""
    );
    Ok(())
}
