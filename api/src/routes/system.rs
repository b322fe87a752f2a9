//! `/api/v1/system/*`: Docker system views (Engine version, info and disk usage, every
//! container and image on the host with whether berth manages it and which resource owns or
//! wants it) and the admin's prune of berth's own leftovers.
//!
//! Thin callers of [`crate::service::system`], which GraphQL uses too; what prune removes is
//! documented there.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::service::system::{self, DiskUsageReport, PruneReport, SystemInfo, SystemVersion};
use crate::state::AppState;

/// `GET /api/v1/system/version`.
pub async fn version(State(state): State<AppState>) -> Result<Json<SystemVersion>, ApiError> {
    Ok(Json(system::version(&state).await?))
}

/// `GET /api/v1/system/containers`: every container on the Engine, `{items}`.
pub async fn containers(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({ "items": system::containers(&state).await? })))
}

/// `GET /api/v1/system/images`: every image on the Engine and the resources that want it (an
/// `Image` naming one of its tags, or a `Container` running it), `{items}`.
pub async fn images(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({ "items": system::images(&state).await? })))
}

/// `GET /api/v1/system/info`: the Engine's host facts and object counts, and berth's own
/// (store size, resources by kind, containers it manages).
pub async fn info(State(state): State<AppState>) -> Result<Json<SystemInfo>, ApiError> {
    Ok(Json(system::info(&state).await?))
}

/// `GET /api/v1/system/df`: disk usage by images, containers, volumes and build cache, each with
/// the share berth manages.
pub async fn df(State(state): State<AppState>) -> Result<Json<DiskUsageReport>, ApiError> {
    Ok(Json(system::disk_usage(&state).await?))
}

/// `POST /api/v1/system/prune` query.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PruneQuery {
    /// Answer what would be removed, removing nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// `POST /api/v1/system/prune` (admin): removes berth's own leftovers, never what a resource
/// wants and never another owner's objects (see [`system::prune`]).
pub async fn prune(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<PruneQuery>,
) -> Result<Json<PruneReport>, ApiError> {
    Ok(Json(system::prune(&state, &principal, q.dry_run).await?))
}
