//! Users: admin CRUD at `/api/v1/users`, and `/api/v1/me` for everyone.
//!
//! The last enabled admin can be neither deleted, demoted nor disabled; changes that could
//! affect it are serialized so two concurrent requests cannot both pass the check.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use berth_controller::store::{User, UserUpdate, verify_password};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::auth::{Credential, MIN_PASSWORD_LEN, Principal, hash_blocking};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::policy::Role;
use crate::state::AppState;

/// A user as the API shows it (never the password hash).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    /// Login name.
    pub username: String,
    /// Role.
    pub role: Role,
    /// Whether the user is disabled.
    pub disabled: bool,
    /// Created at.
    pub created: DateTime<Utc>,
    /// Last changed at.
    pub updated: DateTime<Utc>,
}

impl From<User> for UserView {
    fn from(u: User) -> Self {
        Self {
            username: u.username,
            role: u.role,
            disabled: u.disabled,
            created: u.created,
            updated: u.updated,
        }
    }
}

/// `GET /api/v1/me` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeView {
    /// The user.
    #[serde(flatten)]
    pub user: UserView,
    /// The role this request runs with (an API token may have less than its owner).
    pub effective_role: Role,
    /// `session` or `apiToken`.
    pub auth_method: String,
    /// The API token id, when authenticated by one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
}

/// `POST /api/v1/users` body.
#[derive(Deserialize)]
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
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchUser {
    /// A new role.
    pub role: Option<Role>,
    /// Disable (`true`) or enable (`false`).
    pub disabled: Option<bool>,
}

/// `PUT /api/v1/users/{username}/password` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetPassword {
    /// The new password.
    pub password: String,
}

/// `PUT /api/v1/me/password` body.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChangeOwnPassword {
    /// The current password.
    pub current_password: String,
    /// The new password.
    pub new_password: String,
}

impl std::fmt::Debug for SetPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetPassword").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ChangeOwnPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeOwnPassword").finish_non_exhaustive()
    }
}

fn check_password(p: &str) -> Result<(), ApiError> {
    if p.chars().count() < MIN_PASSWORD_LEN {
        return Err(ApiError::Invalid {
            message: format!("password must be at least {MIN_PASSWORD_LEN} characters"),
            details: serde_json::json!({ "field": "password" }),
        });
    }
    if p.len() > 1024 {
        return Err(ApiError::Invalid {
            message: "password must be at most 1024 bytes".to_owned(),
            details: serde_json::json!({ "field": "password" }),
        });
    }
    Ok(())
}

async fn find(state: &AppState, username: &str) -> Result<User, ApiError> {
    state
        .accounts()
        .get_user(username)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("user {username:?}")))
}

/// `GET /api/v1/me`.
pub async fn me(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<MeView>, ApiError> {
    let user = find(&state, &principal.username).await?;
    let (auth_method, token_id) = match &principal.credential {
        Credential::Session { .. } => ("session", None),
        Credential::ApiToken { id } => ("apiToken", Some(id.clone())),
    };
    Ok(Json(MeView {
        user: user.into(),
        effective_role: principal.role,
        auth_method: auth_method.into(),
        token_id,
    }))
}

/// `PUT /api/v1/me/password`: needs the current password; ends every session of the user.
#[tracing::instrument(skip_all, fields(user = %principal.username))]
pub async fn change_own_password(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(req): ApiJson<ChangeOwnPassword>,
) -> Result<StatusCode, ApiError> {
    if let Credential::ApiToken { .. } = principal.credential {
        return Err(ApiError::forbidden("an API token cannot change its owner's password; log in"));
    }
    check_password(&req.new_password)?;
    let user = find(&state, &principal.username).await?;
    let hash = user.password_hash.clone();
    let current = req.current_password;
    let ok = tokio::task::spawn_blocking(move || verify_password(&hash, &current))
        .await
        .map_err(ApiError::internal)?;
    if !ok {
        return Err(ApiError::forbidden("the current password is wrong"));
    }
    let new_hash = hash_blocking(req.new_password).await?;
    let ctx = principal.ctx();
    state
        .accounts()
        .update_user(
            &ctx,
            &user.username,
            UserUpdate { password_hash: Some(new_hash), ..UserUpdate::default() },
        )
        .await?;
    end_sessions(&state, &principal, &user.username).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Ends every session of `username`: refresh-token families are revoked in the store, and
/// access tokens this process issued stop working at once.
async fn end_sessions(
    state: &AppState,
    principal: &Principal,
    username: &str,
) -> Result<(), ApiError> {
    state.accounts().revoke_user_refresh_families(&principal.ctx(), username).await?;
    state.revoke_user_sessions(username);
    Ok(())
}

/// `GET /api/v1/users`.
pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<UserView>>, ApiError> {
    Ok(Json(state.accounts().list_users().await?.into_iter().map(UserView::from).collect()))
}

/// `GET /api/v1/users/{username}`.
pub async fn get_one(
    State(state): State<AppState>,
    ApiPath(username): ApiPath<String>,
) -> Result<Json<UserView>, ApiError> {
    Ok(Json(find(&state, &username).await?.into()))
}

/// `POST /api/v1/users`.
#[tracing::instrument(skip_all, fields(actor = %principal.username, user = %req.username))]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(req): ApiJson<CreateUser>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    check_password(&req.password)?;
    let hash = hash_blocking(req.password).await?;
    let user = state
        .accounts()
        .create_user(
            &principal.ctx(),
            berth_controller::store::NewUser {
                username: req.username,
                password_hash: hash,
                role: req.role,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(user.into())))
}

fn is_active_admin(u: &User) -> bool {
    u.role == Role::Admin && !u.disabled
}

async fn ensure_not_last_admin(
    state: &AppState,
    target: &User,
    what: &str,
) -> Result<(), ApiError> {
    if !is_active_admin(target) {
        return Ok(());
    }
    let admins = state.accounts().list_users().await?.iter().filter(|u| is_active_admin(u)).count();
    if admins <= 1 {
        return Err(ApiError::Conflict {
            message: format!("cannot {what} {:?}: it is the last enabled admin", target.username),
            details: serde_json::json!({ "reason": "last_admin" }),
        });
    }
    Ok(())
}

/// `PATCH /api/v1/users/{username}`: change role, disable or enable.
#[tracing::instrument(skip_all, fields(actor = %principal.username, user = %username))]
pub async fn update(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(username): ApiPath<String>,
    ApiJson(req): ApiJson<PatchUser>,
) -> Result<Json<UserView>, ApiError> {
    let _guard = state.user_admin_lock().lock().await;
    let target = find(&state, &username).await?;
    let demotes = req.role.is_some_and(|r| r != Role::Admin);
    let disables = req.disabled == Some(true);
    if demotes || disables {
        ensure_not_last_admin(&state, &target, if disables { "disable" } else { "demote" }).await?;
    }
    let user = state
        .accounts()
        .update_user(
            &principal.ctx(),
            &username,
            UserUpdate { password_hash: None, role: req.role, disabled: req.disabled },
        )
        .await?;
    if disables {
        end_sessions(&state, &principal, &username).await?;
    }
    Ok(Json(user.into()))
}

/// `PUT /api/v1/users/{username}/password`: an admin sets a new password; the user's sessions end.
#[tracing::instrument(skip_all, fields(actor = %principal.username, user = %username))]
pub async fn reset_password(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(username): ApiPath<String>,
    ApiJson(req): ApiJson<SetPassword>,
) -> Result<StatusCode, ApiError> {
    check_password(&req.password)?;
    find(&state, &username).await?;
    let hash = hash_blocking(req.password).await?;
    state
        .accounts()
        .update_user(
            &principal.ctx(),
            &username,
            UserUpdate { password_hash: Some(hash), ..UserUpdate::default() },
        )
        .await?;
    end_sessions(&state, &principal, &username).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/v1/users/{username}`: also ends their sessions and revokes their API tokens.
#[tracing::instrument(skip_all, fields(actor = %principal.username, user = %username))]
pub async fn remove(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(username): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let _guard = state.user_admin_lock().lock().await;
    let target = find(&state, &username).await?;
    ensure_not_last_admin(&state, &target, "delete").await?;
    let ctx = principal.ctx();
    end_sessions(&state, &principal, &username).await?;
    for t in state.accounts().list_api_tokens(Some(&username)).await? {
        if t.revoked.is_none() {
            state.accounts().revoke_api_token(&ctx, &t.id).await?;
        }
    }
    state.accounts().delete_user(&ctx, &username).await?;
    Ok(StatusCode::NO_CONTENT)
}
