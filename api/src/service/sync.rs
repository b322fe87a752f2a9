//! Service: the directory sync's status — what `berth serve --sync-dir DIR` last did, published
//! by the sync loop (in the `berth` binary) on a `tokio::sync::watch` channel and read by
//! `GET /api/v1/sync` and GraphQL. The sync applies through [`super::resources::apply`].

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Whether the newest version of the directory is in force.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    JsonSchema,
    async_graphql::Enum,
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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
    Debug,
    Clone,
    Default,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    JsonSchema,
    async_graphql::SimpleObject,
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
    Debug,
    Clone,
    Default,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    JsonSchema,
    async_graphql::SimpleObject,
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
