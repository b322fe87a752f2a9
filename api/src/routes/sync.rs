//! `GET /api/v1/sync`: what the server's GitOps directory sync (`berth serve --sync-dir DIR`)
//! last did — the directory, whether its newest version is applied, when, at which Git commit,
//! how many resources of each kind were applied and pruned, and the last problem with the file
//! and line it is in.
//!
//! The sync loop lives in the `berth` binary; it publishes a [`SyncStatus`] on a
//! `tokio::sync::watch` channel whose receiver is given to the state with
//! [`crate::AppState::with_sync_status`]. Without one, the route answers `{"enabled": false}`.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::error::ApiError;
/// The status types live in the service layer; re-exported for callers that render them.
pub use crate::service::sync::{SyncCounts, SyncProblem, SyncState, SyncStatus};
use crate::state::AppState;

/// `GET /api/v1/sync`: `{"enabled": true, ...SyncStatus}`, or `{"enabled": false}` when the
/// server syncs no directory.
pub async fn status(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let Some(rx) = state.sync_status() else {
        return Ok(Json(json!({ "enabled": false })));
    };
    let current = rx.borrow().clone();
    let mut v = serde_json::to_value(&current).map_err(ApiError::internal)?;
    if let Some(map) = v.as_object_mut() {
        map.insert("enabled".to_owned(), Value::Bool(true));
    }
    Ok(Json(v))
}
