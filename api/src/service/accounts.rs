//! Service: users, passwords, API tokens and login sessions, written once for REST and GraphQL.
//!
//! Every account write goes through one function here, which checks the caller's role, keeps
//! the last enabled admin (creation, demotion, disabling, deletion are serialized so two
//! concurrent requests cannot both pass the check), lets the store audit the write, ends the
//! sessions the change must end, and publishes an [`AccountChange`] so that open GraphQL
//! websockets re-check their credential at once (see [`crate::state::Sessions`]).
//!
//! The answers are plain structs ([`UserView`], [`MeView`], [`TokenView`], [`CreatedToken`],
//! [`PasswordReset`]) that the REST handlers serialize and GraphQL types wrap.

use std::net::IpAddr;

use berth_controller::store::{ApiToken, NewApiToken, NewUser, User, UserUpdate, token_hash};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::auth::{
    API_TOKEN_PREFIX, Credential, MIN_PASSWORD_LEN, Principal, hash_blocking, new_secret,
};
use crate::error::ApiError;
use crate::policy::{Action, Role, authorize};
use crate::state::AppState;

/// Default API token lifetime: 90 days.
pub const DEFAULT_TOKEN_DAYS: u32 = 90;
/// Longest password accepted, in bytes (hashing cost stays bounded).
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// Longest user name a login may name, in bytes; longer ones are refused with 400 before any
/// hashing or audit.
pub const MAX_USERNAME_BYTES: usize = 256;

/// What changed about an account, as told to every open GraphQL websocket of its user (which
/// then re-checks its credential and closes, or carries on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountChange {
    /// An API token was revoked (one by one, or with its owner's password reset or deletion).
    TokenRevoked {
        /// The token's id.
        id: String,
        /// Its owner.
        owner: String,
    },
    /// A user's role or enabled state changed.
    UserChanged {
        /// The user.
        username: String,
    },
    /// A user was deleted.
    UserDeleted {
        /// The user.
        username: String,
    },
    /// Every login session of a user ended (password changed or reset, user disabled).
    SessionsEnded {
        /// The user.
        username: String,
    },
    /// One login session ended (logout, refresh-token reuse, session too old).
    SessionEnded {
        /// The user.
        username: String,
        /// The session (refresh-token family).
        sid: String,
    },
}

impl AccountChange {
    /// The user whose account changed.
    pub fn username(&self) -> &str {
        match self {
            Self::TokenRevoked { owner: username, .. }
            | Self::UserChanged { username }
            | Self::UserDeleted { username }
            | Self::SessionsEnded { username }
            | Self::SessionEnded { username, .. } => username,
        }
    }

    /// Whether a connection authenticated as `principal` must re-check its credential.
    pub fn concerns(&self, principal: &Principal) -> bool {
        self.username() == principal.username
    }
}

/// A user as the API shows it (never the password hash).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
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

/// The caller as `GET /api/v1/me` and GraphQL `me` show them.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
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

/// An API token as listed (never the secret or its hash).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
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
#[derive(Serialize, Deserialize, schemars::JsonSchema)]
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

/// A change of role or enabled state; `None` leaves it.
#[derive(Debug, Clone, Copy, Default)]
pub struct UserPatch {
    /// A new role.
    pub role: Option<Role>,
    /// Disable (`true`) or enable (`false`).
    pub disabled: Option<bool>,
}

/// What an admin password reset did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PasswordReset {
    /// API tokens of the user revoked by the reset (only with `revokeTokens`).
    pub tokens_revoked: usize,
}

/// Which tokens to list.
#[derive(Debug, Clone, Default)]
pub struct TokenScope {
    /// Every user's tokens (admin).
    pub all: bool,
    /// One user's tokens (admin, unless it is the caller).
    pub owner: Option<String>,
}

fn invalid(field: &str, message: String) -> ApiError {
    ApiError::Invalid { message, details: serde_json::json!({ "field": field }) }
}

/// Checks a new password's length.
///
/// # Errors
///
/// [`ApiError::Invalid`] naming `field` when it is shorter than [`MIN_PASSWORD_LEN`]
/// characters or longer than [`MAX_PASSWORD_BYTES`] bytes.
pub fn check_new_password(field: &str, p: &str) -> Result<(), ApiError> {
    if p.chars().count() < MIN_PASSWORD_LEN {
        return Err(invalid(
            field,
            format!("password must be at least {MIN_PASSWORD_LEN} characters"),
        ));
    }
    if p.len() > MAX_PASSWORD_BYTES {
        return Err(invalid(field, format!("password must be at most {MAX_PASSWORD_BYTES} bytes")));
    }
    Ok(())
}

/// Checks the length of a user name a client sent to log in.
///
/// # Errors
///
/// [`ApiError::BadRequest`] when it is longer than [`MAX_USERNAME_BYTES`] bytes.
pub fn check_login_username(username: &str) -> Result<(), ApiError> {
    if username.len() > MAX_USERNAME_BYTES {
        return Err(ApiError::bad_request(format!(
            "username must be at most {MAX_USERNAME_BYTES} bytes"
        )));
    }
    Ok(())
}

/// At most 64 characters of an attacker-chosen user name, control characters replaced, for
/// the audit log and traces.
pub fn loggable_username(username: &str) -> String {
    const MAX: usize = 64;
    let mut out: String =
        username.chars().take(MAX).map(|c| if c.is_control() { '\u{fffd}' } else { c }).collect();
    if username.chars().nth(MAX).is_some() {
        out.push('…');
    }
    out
}

async fn find(state: &AppState, username: &str) -> Result<User, ApiError> {
    state
        .accounts()
        .get_user(username)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("user {username:?}")))
}

async fn verify_blocking(hash: String, password: String) -> Result<bool, ApiError> {
    tokio::task::spawn_blocking(move || berth_controller::store::verify_password(&hash, &password))
        .await
        .map_err(ApiError::internal)
}

/// The caller.
///
/// # Errors
///
/// Not found when the user went away; store failures.
pub async fn me(state: &AppState, principal: &Principal) -> Result<MeView, ApiError> {
    let user = find(state, &principal.username).await?;
    let (auth_method, token_id) = match &principal.credential {
        Credential::Session { .. } => ("session", None),
        Credential::ApiToken { id } => ("apiToken", Some(id.clone())),
    };
    Ok(MeView {
        user: user.into(),
        effective_role: principal.role,
        auth_method: auth_method.into(),
        token_id,
    })
}

/// Every user (admin).
///
/// # Errors
///
/// Forbidden below admin; store failures.
pub async fn list_users(
    state: &AppState,
    principal: &Principal,
) -> Result<Vec<UserView>, ApiError> {
    authorize(principal.role, Action::ManageUsers)?;
    Ok(state.accounts().list_users().await?.into_iter().map(UserView::from).collect())
}

/// One user (admin).
///
/// # Errors
///
/// Forbidden below admin; not found; store failures.
pub async fn get_user(
    state: &AppState,
    principal: &Principal,
    username: &str,
) -> Result<UserView, ApiError> {
    authorize(principal.role, Action::ManageUsers)?;
    Ok(find(state, username).await?.into())
}

/// Creates a user (admin).
///
/// # Errors
///
/// Forbidden below admin; invalid password; conflict when the name is taken (the store
/// validates the name); store failures.
pub async fn create_user(
    state: &AppState,
    principal: &Principal,
    username: String,
    password: String,
    role: Role,
) -> Result<UserView, ApiError> {
    authorize(principal.role, Action::ManageUsers)?;
    check_new_password("password", &password)?;
    let hash = hash_blocking(password).await?;
    let user = state
        .accounts()
        .create_user(&principal.ctx(), NewUser { username, password_hash: hash, role })
        .await?;
    Ok(user.into())
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

/// Ends every login session of `username`: refresh-token families are revoked in the store,
/// access tokens this process issued stop working at once, and open websockets hear of it.
async fn end_sessions(
    state: &AppState,
    principal: &Principal,
    username: &str,
) -> Result<(), ApiError> {
    state.accounts().revoke_user_refresh_families(&principal.ctx(), username).await?;
    state.sessions().revoke_user(username);
    state.sessions().publish(AccountChange::SessionsEnded { username: username.to_owned() });
    Ok(())
}

/// Revokes every active API token of `username`; answers how many.
async fn revoke_user_tokens(
    state: &AppState,
    principal: &Principal,
    username: &str,
) -> Result<usize, ApiError> {
    let ctx = principal.ctx();
    let mut n = 0;
    for t in state.accounts().list_api_tokens(Some(username)).await? {
        if t.revoked.is_none() {
            state.accounts().revoke_api_token(&ctx, &t.id).await?;
            state.sessions().publish(AccountChange::TokenRevoked { id: t.id, owner: t.owner });
            n += 1;
        }
    }
    Ok(n)
}

/// Changes a user's role or enabled state (admin). Disabling ends the user's sessions; a
/// lowered role reaches their open websockets at once.
///
/// # Errors
///
/// Forbidden below admin; not found; conflict for the last enabled admin; store failures.
pub async fn update_user(
    state: &AppState,
    principal: &Principal,
    username: &str,
    patch: UserPatch,
) -> Result<UserView, ApiError> {
    authorize(principal.role, Action::ManageUsers)?;
    let _guard = state.user_admin_lock().lock().await;
    let target = find(state, username).await?;
    let demotes = patch.role.is_some_and(|r| r != Role::Admin);
    let disables = patch.disabled == Some(true);
    if demotes || disables {
        ensure_not_last_admin(state, &target, if disables { "disable" } else { "demote" }).await?;
    }
    let user = state
        .accounts()
        .update_user(
            &principal.ctx(),
            username,
            UserUpdate { password_hash: None, role: patch.role, disabled: patch.disabled },
        )
        .await?;
    if disables {
        end_sessions(state, principal, username).await?;
    }
    state.sessions().publish(AccountChange::UserChanged { username: username.to_owned() });
    Ok(user.into())
}

/// An admin sets a user's password. The user's login sessions end; with `revoke_tokens` their
/// API tokens are revoked too (off by default: a token is a separate credential, often a CI
/// job's, and a forgotten password is the usual reason for a reset).
///
/// # Errors
///
/// Forbidden below admin; invalid password; not found; store failures.
pub async fn reset_password(
    state: &AppState,
    principal: &Principal,
    username: &str,
    password: String,
    revoke_tokens: bool,
) -> Result<PasswordReset, ApiError> {
    authorize(principal.role, Action::ManageUsers)?;
    check_new_password("password", &password)?;
    find(state, username).await?;
    let hash = hash_blocking(password).await?;
    state
        .accounts()
        .update_user(
            &principal.ctx(),
            username,
            UserUpdate { password_hash: Some(hash), ..UserUpdate::default() },
        )
        .await?;
    end_sessions(state, principal, username).await?;
    let tokens_revoked =
        if revoke_tokens { revoke_user_tokens(state, principal, username).await? } else { 0 };
    Ok(PasswordReset { tokens_revoked })
}

/// A logged-in user changes their own password, giving the current one. Each attempt takes a
/// token from the same per-user and per-address limiters as login (a wrong guess costs an
/// argon2 hash, and a stolen access token must not become a password oracle). Every session
/// of the user ends.
///
/// # Errors
///
/// Forbidden for an API token or a wrong current password; rate limited; invalid new
/// password; store failures.
pub async fn change_own_password(
    state: &AppState,
    principal: &Principal,
    addr: Option<IpAddr>,
    current_password: String,
    new_password: String,
) -> Result<(), ApiError> {
    if let Credential::ApiToken { .. } = principal.credential {
        return Err(ApiError::forbidden("an API token cannot change its owner's password; log in"));
    }
    state
        .limiters()
        .check_password(&principal.username, addr)
        .map_err(|retry_after| ApiError::RateLimited { retry_after })?;
    check_new_password("newPassword", &new_password)?;
    let user = find(state, &principal.username).await?;
    if current_password.len() > MAX_PASSWORD_BYTES
        || !verify_blocking(user.password_hash.clone(), current_password).await?
    {
        return Err(ApiError::forbidden("the current password is wrong"));
    }
    let new_hash = hash_blocking(new_password).await?;
    state
        .accounts()
        .update_user(
            &principal.ctx(),
            &user.username,
            UserUpdate { password_hash: Some(new_hash), ..UserUpdate::default() },
        )
        .await?;
    end_sessions(state, principal, &user.username).await
}

/// Deletes a user (admin); their sessions end and their API tokens are revoked first.
///
/// # Errors
///
/// Forbidden below admin; not found; conflict for the last enabled admin; store failures.
pub async fn delete_user(
    state: &AppState,
    principal: &Principal,
    username: &str,
) -> Result<(), ApiError> {
    authorize(principal.role, Action::ManageUsers)?;
    let _guard = state.user_admin_lock().lock().await;
    let target = find(state, username).await?;
    ensure_not_last_admin(state, &target, "delete").await?;
    end_sessions(state, principal, username).await?;
    revoke_user_tokens(state, principal, username).await?;
    state.accounts().delete_user(&principal.ctx(), username).await?;
    state.sessions().publish(AccountChange::UserDeleted { username: username.to_owned() });
    Ok(())
}

/// Creates an API token for the caller, with at most the caller's role; answers the secret
/// once. An API token cannot mint further tokens.
///
/// # Errors
///
/// Forbidden for an API token or a role above the caller's; invalid name or lifetime; store
/// failures.
pub async fn create_api_token(
    state: &AppState,
    principal: &Principal,
    name: &str,
    role: Option<Role>,
    expires_in_days: Option<u32>,
) -> Result<CreatedToken, ApiError> {
    authorize(principal.role, Action::ManageOwnTokens)?;
    if let Credential::ApiToken { .. } = principal.credential {
        return Err(ApiError::forbidden("an API token cannot create API tokens; log in"));
    }
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(invalid("name", "name must be 1 to 64 printable characters".into()));
    }
    let role = role.unwrap_or(principal.role);
    if role > principal.role {
        return Err(ApiError::Forbidden {
            message: format!("a {} cannot create a token with role {role}", principal.role),
            details: serde_json::json!({ "field": "role", "maxRole": principal.role }),
        });
    }
    let days = expires_in_days.unwrap_or(DEFAULT_TOKEN_DAYS);
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
    Ok(CreatedToken { info: token.into(), token: secret })
}

/// The caller's tokens, or (admin) everyone's or one user's.
///
/// # Errors
///
/// Forbidden when asking for others' tokens below admin; store failures.
pub async fn list_api_tokens(
    state: &AppState,
    principal: &Principal,
    scope: TokenScope,
) -> Result<Vec<TokenView>, ApiError> {
    authorize(principal.role, Action::ManageOwnTokens)?;
    let owner = match (scope.all, scope.owner) {
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
    Ok(tokens.into_iter().map(TokenView::from).collect())
}

/// Revokes one's own token, or (admin) anyone's; open websockets using it close at once.
///
/// # Errors
///
/// Not found (also for someone else's token, below admin: its existence is not revealed);
/// store failures.
pub async fn revoke_api_token(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<TokenView, ApiError> {
    authorize(principal.role, Action::ManageOwnTokens)?;
    let tokens = state.accounts().list_api_tokens(None).await?;
    let not_found = || ApiError::NotFound(format!("API token {id:?}"));
    let token = tokens.into_iter().find(|t| t.id == id).ok_or_else(not_found)?;
    if token.owner != principal.username
        && authorize(principal.role, Action::ManageOthersTokens).is_err()
    {
        return Err(not_found());
    }
    let revoked = state.accounts().revoke_api_token(&principal.ctx(), id).await?;
    state.sessions().publish(AccountChange::TokenRevoked { id: id.to_owned(), owner: token.owner });
    Ok(revoked.into())
}

/// Marks one login session ended in this process and tells its websockets (the caller has
/// revoked it in the store, or the store did: refresh-token reuse).
pub fn session_ended(state: &AppState, username: &str, sid: &str) {
    state.sessions().revoke(sid);
    state.sessions().publish(AccountChange::SessionEnded {
        username: username.to_owned(),
        sid: sid.to_owned(),
    });
}

/// Ends the caller's login session (logout) in the store and in this process; with a refresh
/// token, ends that token's session too (holding it is all the authority needed).
///
/// # Errors
///
/// Store failures.
pub async fn logout(
    state: &AppState,
    principal: &Principal,
    refresh_token: Option<&str>,
) -> Result<(), ApiError> {
    let ctx = principal.ctx();
    if let Credential::Session { sid, .. } = &principal.credential {
        // In the store too, so the session stays ended after a restart (and its refresh
        // tokens stop working even when the client does not send one).
        state.accounts().revoke_refresh_family_by_id(&ctx, sid).await?;
        session_ended(state, &principal.username, sid);
    }
    if let Some(rt) = refresh_token
        && let Some(family) = state.accounts().revoke_refresh_family(&ctx, &token_hash(rt)).await?
    {
        session_ended(state, &family.username, &family.id);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loggable_usernames_are_short_and_free_of_control_characters() {
        assert_eq!(loggable_username("alice"), "alice");
        let long = "x".repeat(1 << 20);
        let l = loggable_username(&long);
        assert_eq!(l.chars().count(), 65);
        assert!(l.ends_with('…'));
        assert_eq!(loggable_username("a\nb\u{1b}[31m"), "a\u{fffd}b\u{fffd}[31m");
    }

    #[test]
    fn login_usernames_over_the_cap_are_refused() {
        assert!(check_login_username(&"a".repeat(MAX_USERNAME_BYTES)).is_ok());
        let e = check_login_username(&"a".repeat(MAX_USERNAME_BYTES + 1)).unwrap_err();
        assert_eq!(e.status(), axum::http::StatusCode::BAD_REQUEST);
    }
}
