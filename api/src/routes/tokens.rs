//! API tokens at `/api/v1/tokens`: create (shown once), list, revoke.
//!
//! Everyone manages their own tokens; listing or revoking someone else's needs
//! [`Action::ManageOthersTokens`] (admin). A token's role is at most its creator's, and an API
//! token cannot mint further tokens.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use berth_controller::store::{ApiToken, NewApiToken, token_hash};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::auth::{API_TOKEN_PREFIX, Credential, Principal, new_secret};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::policy::{Action, Role, authorize};
use crate::state::AppState;

/// Default API token lifetime: 90 days.
pub const DEFAULT_TOKEN_DAYS: u32 = 90;

/// An API token as listed (never the secret or its hash).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenView {
    /// Id (recorded as `token:<id>` in the audit log).
    pub id: String,
    /// Name chosen by the owner.
    pub name: String,
    /// The user who created it.
    pub owner: String,
    /// Its role.
    pub role: Role,
    /// Created at.
    pub created: DateTime<Utc>,
    /// Expires at.
    pub expires: Option<DateTime<Utc>>,
    /// Revoked at.
    pub revoked: Option<DateTime<Utc>>,
}

impl From<ApiToken> for TokenView {
    fn from(t: ApiToken) -> Self {
        Self {
            id: t.id,
            name: t.name,
            owner: t.owner,
            role: t.role,
            created: t.created,
            expires: t.expires,
            revoked: t.revoked,
        }
    }
}

/// A token just created: the only time `token` is shown.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedToken {
    /// The token's record.
    #[serde(flatten)]
    pub info: TokenView,
    /// The secret, to send as `Authorization: Bearer`. Not retrievable later.
    pub token: String,
}

impl std::fmt::Debug for CreatedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedToken").field("info", &self.info).finish_non_exhaustive()
    }
}

/// `POST /api/v1/tokens` body.
#[derive(Debug, Deserialize)]
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
#[derive(Debug, Default, Deserialize)]
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
    if let Credential::ApiToken { .. } = principal.credential {
        return Err(ApiError::forbidden("an API token cannot create API tokens; log in"));
    }
    let name = req.name.trim();
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(ApiError::Invalid {
            message: "name must be 1 to 64 printable characters".into(),
            details: serde_json::json!({ "field": "name" }),
        });
    }
    let role = req.role.unwrap_or(principal.role);
    if role > principal.role {
        return Err(ApiError::Forbidden {
            message: format!("a {} cannot create a token with role {role}", principal.role),
            details: serde_json::json!({ "field": "role", "maxRole": principal.role }),
        });
    }
    let days = req.expires_in_days.unwrap_or(DEFAULT_TOKEN_DAYS);
    let max_days = state.config().max_api_token_ttl.as_secs() / 86_400;
    if days == 0 || u64::from(days) > max_days {
        return Err(ApiError::Invalid {
            message: format!("expiresInDays must be between 1 and {max_days}"),
            details: serde_json::json!({ "field": "expiresInDays", "max": max_days }),
        });
    }
    let secret = new_secret(API_TOKEN_PREFIX);
    let token = state
        .accounts()
        .create_api_token(
            &principal.ctx(),
            NewApiToken {
                name: name.to_owned(),
                owner: principal.username.clone(),
                role,
                token_hash: token_hash(&secret),
                expires: Some(Utc::now() + chrono::Duration::days(i64::from(days))),
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(CreatedToken { info: token.into(), token: secret })))
}

/// `GET /api/v1/tokens`: the caller's tokens, or (admin) everyone's / one user's.
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<ListTokens>,
) -> Result<Json<Vec<TokenView>>, ApiError> {
    let owner = match (q.all, q.owner) {
        (true, _) => {
            authorize(principal.role, Action::ManageOthersTokens)?;
            None
        }
        (false, Some(o)) if o != principal.username => {
            authorize(principal.role, Action::ManageOthersTokens)?;
            Some(o)
        }
        _ => Some(principal.username.clone()),
    };
    let tokens = state.accounts().list_api_tokens(owner.as_deref()).await?;
    Ok(Json(tokens.into_iter().map(TokenView::from).collect()))
}

/// `DELETE /api/v1/tokens/{id}`: revokes one's own token, or (admin) anyone's.
#[tracing::instrument(skip_all, fields(user = %principal.username, token = %id))]
pub async fn revoke(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<TokenView>, ApiError> {
    let tokens = state.accounts().list_api_tokens(None).await?;
    let not_found = || ApiError::NotFound(format!("API token {id:?}"));
    let token = tokens.into_iter().find(|t| t.id == id).ok_or_else(not_found)?;
    if token.owner != principal.username
        && authorize(principal.role, Action::ManageOthersTokens).is_err()
    {
        // Do not reveal that someone else's token exists.
        return Err(not_found());
    }
    Ok(Json(state.accounts().revoke_api_token(&principal.ctx(), &id).await?.into()))
}
