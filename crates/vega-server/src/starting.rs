//! The operations port while the node starts. It opens first, before the
//! catalog is reached: `/health/live` answers 200, `/health/ready` and
//! `/health` answer 503 with the reason start-up waits (say, the catalog
//! cannot be reached yet and is retried with backoff), so an orchestrator
//! sees a live node that is not ready rather than a crash loop. Once the
//! node is started, the full operations router takes the port over.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What start-up is doing now, for the 503 answers.
#[derive(Clone, Default)]
pub struct StartingState {
    reason: Arc<Mutex<String>>,
    node: String,
}

impl StartingState {
    pub fn set(&self, reason: impl Into<String>) {
        *self.reason.lock().unwrap_or_else(|e| e.into_inner()) = reason.into();
    }

    fn get(&self) -> String {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// The operations port during start-up; stops when dropped.
pub struct StartingServer {
    pub state: StartingState,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl StartingServer {
    pub fn spawn(listener: TcpListener, node: &str) -> Self {
        let state = StartingState {
            reason: Arc::new(Mutex::new("starting".into())),
            node: node.to_string(),
        };
        let app = Router::new()
            .route("/health/live", get(live))
            .route("/health/ready", get(not_ready))
            .route("/health", get(not_ready))
            .fallback(not_ready)
            .with_state(state.clone());
        let (stop, mut rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    while !*rx.borrow() {
                        if rx.changed().await.is_err() {
                            return;
                        }
                    }
                })
                .await
        });
        Self {
            state,
            stop,
            task: Some(task),
        }
    }

    /// Stops accepting; in-flight answers finish.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for StartingServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn live() -> Response {
    Json(json!({ "status": "alive" })).into_response()
}

async fn not_ready(State(state): State<StartingState>) -> Response {
    let body = json!({
        "status": "unhealthy",
        "starting": true,
        "reason": state.get(),
        "node": state.node,
        "version": vega_core::VERSION,
    });
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "5")],
        Json(body),
    )
        .into_response()
}
