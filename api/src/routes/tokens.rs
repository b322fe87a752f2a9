//! API tokens at `/api/v1/tokens`: create (shown once), list, revoke; thin callers of
//! [`crate::service::accounts`].
//!
//! Everyone manages their own tokens; listing or revoking someone else's needs
//! [`Action::ManageOthersTokens`](crate::policy::Action::ManageOthersTokens) (admin). A token's
//! role is at most its creator's, and an API token cannot mint further tokens.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::policy::Role;
use crate::service::accounts::{self, TokenScope};
use crate::state::AppState;

pub use crate::service::accounts::{CreatedToken, DEFAULT_TOKEN_DAYS, TokenView};

/// `POST /api/v1/tokens` body.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateToken {
    /// A label (1-64 characters).
    pub name: String,
    /// Its role; the creator's role when omitted, and never above it.
    pub role: Option<Role>,
    /// Lifetime in days (default 90; at most the server's maximum, 365 by default).
    pub expires_in_days: Option<u32>,
}

/// `GET /api/v1/tokens` query.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListTokens {
    /// `true`: every user's tokens (admin).
    #[serde(default)]
    pub all: bool,
    /// One user's tokens (admin, unless it is the caller).
    pub owner: Option<String>,
}

/// `POST /api/v1/tokens`.
#[tracing::instrument(skip_all, fields(user = %principal.username))]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(req): ApiJson<CreateToken>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let t =
        accounts::create_api_token(&state, &principal, &req.name, req.role, req.expires_in_days)
            .await?;
    Ok((StatusCode::CREATED, Json(t)))
}

/// `GET /api/v1/tokens`: the caller's tokens, or (admin) everyone's / one user's.
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<ListTokens>,
) -> Result<Json<Vec<TokenView>>, ApiError> {
    let scope = TokenScope { all: q.all, owner: q.owner };
    Ok(Json(accounts::list_api_tokens(&state, &principal, scope).await?))
}

/// `DELETE /api/v1/tokens/{id}`: revokes one's own token, or (admin) anyone's.
#[tracing::instrument(skip_all, fields(user = %principal.username, token = %id))]
pub async fn revoke(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<TokenView>, ApiError> {
    Ok(Json(accounts::revoke_api_token(&state, &principal, &id).await?))
}
