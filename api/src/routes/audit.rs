//! The audit log (admin): `GET /api/v1/audit` with filters and paging,
//! `GET /api/v1/audit/verify` (optionally against an exported head) and `GET /api/v1/audit/head`.

use axum::Json;
use axum::extract::State;
use berth_controller::store::{
    Actor, AuditHead, AuditPage, AuditQuery, ExpectedHead, VerifyReport,
};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;

use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::state::AppState;

/// `GET /api/v1/audit` query; filters combine with AND.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuditParams {
    /// Only events at or after this RFC 3339 time.
    pub since: Option<DateTime<Utc>>,
    /// Only events before this RFC 3339 time.
    pub until: Option<DateTime<Utc>>,
    /// Only this actor (`user:alice`, `token:ID`, `controller`, `sync`, `anonymous`).
    pub actor: Option<String>,
    /// Only this verb (`create`, `login`, `request.denied`, ...).
    pub verb: Option<String>,
    /// Only this kind (`Container`, `User`, ...).
    pub kind: Option<String>,
    /// Only this namespace.
    pub namespace: Option<String>,
    /// Only this name.
    pub name: Option<String>,
    /// The previous page's `nextCursor`.
    pub cursor: Option<u64>,
    /// `asc` (oldest first, the default) or `desc`.
    pub order: Option<String>,
    /// Page size (1-1000, default 100).
    pub limit: Option<usize>,
}

/// `GET /api/v1/audit`.
pub async fn query(
    State(state): State<AppState>,
    ApiQuery(p): ApiQuery<AuditParams>,
) -> Result<Json<AuditPage>, ApiError> {
    let bad = |param: &str, message: String| ApiError::BadRequest {
        message,
        details: json!({ "parameter": param }),
    };
    let actor = match p.actor {
        None => None,
        Some(a) => Some(a.parse::<Actor>().map_err(|e| bad("actor", e.to_string()))?),
    };
    let newest_first = match p.order.as_deref() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(o) => return Err(bad("order", format!("order must be asc or desc, not {o:?}"))),
    };
    let limit = p.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(bad("limit", "limit must be between 1 and 1000".to_owned()));
    }
    let q = AuditQuery {
        since: p.since,
        until: p.until,
        actor,
        verb: p.verb,
        kind: p.kind,
        namespace: p.namespace,
        name: p.name,
        cursor: p.cursor,
        newest_first,
        limit,
    };
    Ok(Json(state.audit().query(&q).await?))
}

/// `GET /api/v1/audit/verify` query.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VerifyParams {
    /// A head exported earlier (`SEQ:HASH`, or the hash alone) that the chain must contain.
    pub expect_head: Option<String>,
}

/// `GET /api/v1/audit/verify`: checks the whole kept hash chain, and with `expectHead` that it
/// contains that head (a report with a `problem` when it does not).
pub async fn verify(
    State(state): State<AppState>,
    ApiQuery(p): ApiQuery<VerifyParams>,
) -> Result<Json<VerifyReport>, ApiError> {
    let expect = match p.expect_head {
        None => None,
        Some(h) => Some(h.parse::<ExpectedHead>().map_err(|message| ApiError::BadRequest {
            message,
            details: json!({ "parameter": "expectHead" }),
        })?),
    };
    Ok(Json(state.audit().verify_expecting(expect).await?))
}

/// `GET /api/v1/audit/head`: the latest event's `{seq, hash}`, to export elsewhere and check
/// later with `verify?expectHead=SEQ:HASH`. 404 while the log is empty.
pub async fn head(State(state): State<AppState>) -> Result<Json<AuditHead>, ApiError> {
    match state.audit().head().await? {
        Some(h) => Ok(Json(h)),
        None => Err(ApiError::NotFound("the audit log is empty".to_owned())),
    }
}
