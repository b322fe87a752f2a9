//! Users: admin CRUD at `/api/v1/users`, and `/api/v1/me` for everyone; thin callers of
//! [`crate::service::accounts`].

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::policy::Role;
use crate::routes::auth::ClientAddr;
use crate::service::accounts::{self, UserPatch};
use crate::state::AppState;

pub use crate::service::accounts::{MeView, UserView};

/// `POST /api/v1/users` body.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// Login name.
    pub username: String,
    /// Initial password (at least 8 characters).
    pub password: String,
    /// `admin`, `operator` or `viewer`.
    pub role: Role,
}

impl std::fmt::Debug for CreateUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateUser")
            .field("username", &self.username)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// `PATCH /api/v1/users/{username}` body.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchUser {
    /// A new role.
    pub role: Option<Role>,
    /// Disable (`true`) or enable (`false`).
    pub disabled: Option<bool>,
}

/// `PUT /api/v1/users/{username}/password` body.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetPassword {
    /// The new password.
    pub password: String,
    /// Also revoke the user's API tokens (default `false`).
    #[serde(default)]
    pub revoke_tokens: bool,
}

/// `PUT /api/v1/me/password` body.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChangeOwnPassword {
    /// The current password.
    pub current_password: String,
    /// The new password.
    pub new_password: String,
}

impl std::fmt::Debug for SetPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetPassword")
            .field("revoke_tokens", &self.revoke_tokens)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ChangeOwnPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeOwnPassword").finish_non_exhaustive()
    }
}

/// `GET /api/v1/me`.
pub async fn me(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<MeView>, ApiError> {
    Ok(Json(accounts::me(&state, &principal).await?))
}

/// `PUT /api/v1/me/password`: needs the current password; limited like login (429 with
/// Retry-After); ends every session of the user.
#[tracing::instrument(skip_all, fields(user = %principal.username))]
pub async fn change_own_password(
    State(state): State<AppState>,
    principal: Principal,
    addr: ClientAddr,
    ApiJson(req): ApiJson<ChangeOwnPassword>,
) -> Result<StatusCode, ApiError> {
    accounts::change_own_password(
        &state,
        &principal,
        addr.0,
        req.current_password,
        req.new_password,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v1/users`.
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Vec<UserView>>, ApiError> {
    Ok(Json(accounts::list_users(&state, &principal).await?))
}

/// `GET /api/v1/users/{username}`.
pub async fn get_one(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(username): ApiPath<String>,
) -> Result<Json<UserView>, ApiError> {
    Ok(Json(accounts::get_user(&state, &principal, &username).await?))
}

/// `POST /api/v1/users`.
#[tracing::instrument(skip_all, fields(actor = %principal.username, user = %req.username))]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(req): ApiJson<CreateUser>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    let user =
        accounts::create_user(&state, &principal, req.username, req.password, req.role).await?;
    Ok((StatusCode::CREATED, Json(user)))
}

/// `PATCH /api/v1/users/{username}`: change role, disable or enable.
#[tracing::instrument(skip_all, fields(actor = %principal.username, user = %username))]
pub async fn update(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(username): ApiPath<String>,
    ApiJson(req): ApiJson<PatchUser>,
) -> Result<Json<UserView>, ApiError> {
    let patch = UserPatch { role: req.role, disabled: req.disabled };
    Ok(Json(accounts::update_user(&state, &principal, &username, patch).await?))
}

/// `PUT /api/v1/users/{username}/password`: an admin sets a new password; the user's sessions
/// end, and with `revokeTokens: true` their API tokens are revoked.
#[tracing::instrument(skip_all, fields(actor = %principal.username, user = %username))]
pub async fn reset_password(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(username): ApiPath<String>,
    ApiJson(req): ApiJson<SetPassword>,
) -> Result<StatusCode, ApiError> {
    accounts::reset_password(&state, &principal, &username, req.password, req.revoke_tokens)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/v1/users/{username}`: also ends their sessions and revokes their API tokens.
#[tracing::instrument(skip_all, fields(actor = %principal.username, user = %username))]
pub async fn remove(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(username): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    accounts::delete_user(&state, &principal, &username).await?;
    Ok(StatusCode::NO_CONTENT)
}
