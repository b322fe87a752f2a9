//! `GET /api/v1/sync`: what the server's GitOps directory sync (`berth serve --sync-dir DIR`)
//! last did — the directory, whether its newest version is applied, when, at which Git commit,
//! how many resources of each kind were applied and pruned, and the last problem with the file
//! and line it is in.
//!
//! The sync loop lives in the `berth` binary; it publishes a [`SyncStatus`] on a
//! `tokio::sync::watch` channel whose receiver is given to the state with
//! [`crate::AppState::with_sync_status`]. Without one, the route answers `{"enabled": false}`.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::state::AppState;

/// Whether the newest version of the directory is in force.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, async_graphql::Enum,
)]
#[serde(rename_all = "lowercase")]
#[graphql(rename_items = "lowercase")]
pub enum SyncState {
    /// Nothing tried yet (the server is starting).
    #[default]
    Pending,
    /// The newest version of the directory is applied.
    Ok,
    /// The newest version could not be applied; the last good set stays in force.
    Error,
}

impl SyncState {
    /// `pending`, `ok` or `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Ok => "ok",
            Self::Error => "error",
        }
    }
}

/// What the last applied set did to the resources of one kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncCounts {
    /// Resources of the set (created + configured + unchanged).
    pub applied: usize,
    /// New resources.
    pub created: usize,
    /// Changed resources.
    pub configured: usize,
    /// Resources that were already as the directory says.
    pub unchanged: usize,
    /// Resources that left the directory and were deleted.
    pub pruned: usize,
}

/// Why the newest version of the directory is not applied.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, async_graphql::SimpleObject,
)]
#[serde(rename_all = "camelCase")]
pub struct SyncProblem {
    /// One line: how many problems and the first.
    pub message: String,
    /// The file of the first problem, when it is in a file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Its 1-based line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// Its 1-based column.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<u64>,
    /// Every problem (`file:line:col: path: message`), at most 20.
    pub problems: Vec<String>,
    /// When it was found.
    pub at: DateTime<Utc>,
    /// The Git commit of the directory then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

/// What the directory sync last did.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, async_graphql::SimpleObject,
)]
#[serde(rename_all = "camelCase")]
pub struct SyncStatus {
    /// The synced directory (absolute).
    pub directory: String,
    /// The sync source's name (the `berth.dev/sync-source` label value).
    pub source: String,
    /// Whether the newest version of the directory is in force.
    pub state: SyncState,
    /// When a set was last applied successfully (or found already applied).
    pub last_applied_at: Option<DateTime<Utc>>,
    /// When the directory was last read.
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// The Git commit of the directory the applied set matches (`HEAD`), when it is a Git work
    /// tree.
    pub commit: Option<String>,
    /// How many resources the applied set has.
    pub resources: usize,
    /// Per kind (`Container`, `Image`): what the last apply did
    /// (`{"Container": {applied, created, configured, unchanged, pruned}}`).
    pub counts: BTreeMap<String, SyncCounts>,
    /// Why the newest version is not applied (`state` is `error`).
    pub last_error: Option<SyncProblem>,
}

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
