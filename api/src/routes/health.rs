//! `/healthz`, `/readyz` and `/metrics`.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;

use crate::state::AppState;

/// The answer of `/healthz` and `/readyz`.
#[derive(Debug, Clone, Copy, Serialize, schemars::JsonSchema)]
pub struct Health {
    /// `ok` (`/healthz`), `ready` or `not ready` (`/readyz`).
    pub status: &'static str,
}

/// `GET /healthz`: the process is alive and serving.
pub async fn healthz() -> impl IntoResponse {
    Json(Health { status: "ok" })
}

/// `GET /readyz`: 200 when the controller reports ready (store open, Engine reachable), else 503.
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if state.is_ready() {
        (StatusCode::OK, Json(Health { status: "ready" }))
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(Health { status: "not ready" }))
    }
}

/// `GET /metrics`: Prometheus text exposition format.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics().render())
}
