//! Authentication: who is calling, from a Bearer access JWT or API token; opaque secrets for
//! refresh and API tokens; first-start bootstrap of the `admin` user.
//!
//! Bearer tokens that start with [`API_TOKEN_PREFIX`] are API tokens (looked up by SHA-256);
//! anything else must be an access JWT (see [`jwt`]). Either way the user must still exist and
//! be enabled, and the effective role is the lower of the token's role and the user's role now.

pub mod jwt;

use axum::http::{HeaderMap, Method, header};
use base64::Engine as _;
use berth_controller::store::{
    AccountStore, Actor, AuditEntry, AuditOutcome, NewUser, Source, StoreError, User, WriteContext,
    hash_password, token_hash,
};
use chrono::Utc;
use rand::RngCore as _;

use crate::error::{ApiError, ErrorChain};
use crate::policy::{Action, Role};
use crate::state::AppState;

/// Prefix of every API token (`berth_…`), so that scanners and people can recognise them.
pub const API_TOKEN_PREFIX: &str = "berth_";
/// Prefix of every refresh token.
pub const REFRESH_TOKEN_PREFIX: &str = "berthrt_";

/// A new random secret: 32 bytes, base64url without padding, after `prefix`.
pub fn new_secret(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// How the caller proved who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// An access JWT from a login session (refresh-token family `sid`).
    Session {
        /// The refresh-token family.
        sid: String,
        /// The access token's id.
        jti: String,
    },
    /// An API token.
    ApiToken {
        /// The token's id (not the secret).
        id: String,
    },
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The username (for an API token: its owner).
    pub username: String,
    /// The effective role.
    pub role: Role,
    /// How they authenticated.
    pub credential: Credential,
    /// Which face of the API they came through ([`Source::Rest`] unless the GraphQL transport
    /// says [`Source::Graphql`]); their writes are audited with it.
    pub source: Source,
}

impl Principal {
    /// The key the per-token rate limiter counts against.
    pub fn rate_key(&self) -> String {
        match &self.credential {
            Credential::Session { sid, .. } => format!("session:{sid}"),
            Credential::ApiToken { id } => format!("token:{id}"),
        }
    }

    /// The audit actor: `user:NAME` for sessions, `token:ID` for API tokens.
    pub fn actor(&self) -> Actor {
        match &self.credential {
            Credential::Session { .. } => Actor::User(self.username.clone()),
            Credential::ApiToken { id } => Actor::ApiToken(id.clone()),
        }
    }

    /// The write context for a write by this caller, audited with the face they came through.
    pub fn ctx(&self) -> WriteContext {
        WriteContext::new(self.actor(), self.source)
    }

    /// The same caller, coming through the GraphQL API.
    #[must_use]
    pub fn via_graphql(mut self) -> Self {
        self.source = Source::Graphql;
        self
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, ApiError> {
        parts.extensions.get::<Principal>().cloned().ok_or(ApiError::Unauthenticated)
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

async fn active_user(state: &AppState, username: &str) -> Result<User, ApiError> {
    match state.accounts().get_user(username).await? {
        Some(u) if !u.disabled => Ok(u),
        _ => Err(ApiError::Unauthenticated),
    }
}

/// Authenticates a request from its `Authorization: Bearer` header.
///
/// # Errors
///
/// [`ApiError::Unauthenticated`] for a missing, malformed, expired or revoked credential, or one
/// whose user is gone or disabled; store failures as internal errors.
pub async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let token = bearer(headers).ok_or(ApiError::Unauthenticated)?;
    authenticate_token(state, token).await
}

/// Authenticates a bare token (REST Bearer header, GraphQL `connection_init` payload).
///
/// # Errors
///
/// As [`authenticate`].
pub async fn authenticate_token(state: &AppState, token: &str) -> Result<Principal, ApiError> {
    if token.starts_with(API_TOKEN_PREFIX) {
        let Some(t) = state.accounts().find_api_token(&token_hash(token)).await? else {
            return Err(ApiError::Unauthenticated);
        };
        if !t.is_active(Utc::now()) {
            return Err(ApiError::Unauthenticated);
        }
        let user = active_user(state, &t.owner).await?;
        return Ok(Principal {
            username: user.username,
            role: t.role.min(user.role),
            credential: Credential::ApiToken { id: t.id },
            source: Source::Rest,
        });
    }
    let claims = state.keys().verify(token).map_err(|e| {
        tracing::debug!(error = %ErrorChain(&e), "access token refused");
        ApiError::Unauthenticated
    })?;
    if session_revoked(state, &claims.sid, &claims.sub).await? {
        return Err(ApiError::Unauthenticated);
    }
    let user = active_user(state, &claims.sub).await?;
    Ok(Principal {
        username: user.username,
        role: claims.role.min(user.role),
        credential: Credential::Session { sid: claims.sid, jti: claims.jti },
        source: Source::Rest,
    })
}

/// Whether the login session `sid` of `username` has been revoked (logout, refresh-token reuse,
/// password change, user disabled), or is unknown to the store.
///
/// Revocations by this process are in memory; anything else is read from the store once per
/// session and process, so a session revoked before a restart stays revoked after it. A live
/// session is cached (bounded), so the store is read on the first request of each session only.
async fn session_revoked(state: &AppState, sid: &str, username: &str) -> Result<bool, ApiError> {
    if state.sessions().revoked_here(sid) {
        return Ok(true);
    }
    if state.sessions().known_live(sid) {
        return Ok(false);
    }
    match state.accounts().get_refresh_family(sid).await? {
        Some(f) if f.revoked.is_none() && f.username == username => {
            state.sessions().note_live(username, sid);
            Ok(false)
        }
        _ => Ok(true),
    }
}

/// Records a refused request in the audit log (best effort: a failure is logged).
pub async fn audit_denied(
    state: &AppState,
    principal: &Principal,
    method: &Method,
    route: &str,
    action: Action,
) {
    let entry = AuditEntry::new(principal.ctx(), "request.denied", AuditOutcome::Denied)
        .message(format!("{method} {route}: role {} may not {}", principal.role, action.as_str()));
    if let Err(e) = state.audit().append(entry).await {
        tracing::error!(error = %ErrorChain(&e), "cannot audit a denied request");
    }
}

/// What first start did.
#[derive(Clone, PartialEq, Eq)]
pub struct BootstrapAdmin {
    /// The user created (`admin`).
    pub username: String,
    /// The generated password, when none was given: print it once, then forget it.
    pub generated_password: Option<String>,
}

impl std::fmt::Debug for BootstrapAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootstrapAdmin")
            .field("username", &self.username)
            .field("generated_password", &self.generated_password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Why the first admin could not be created.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// The given password is too short.
    #[error("BERTH_ADMIN_PASSWORD must be at least {MIN_PASSWORD_LEN} characters")]
    WeakPassword,
    /// Hashing the password failed.
    #[error("cannot hash the admin password")]
    Hash(#[source] berth_controller::store::accounts::PasswordHashError),
    /// The hashing task panicked or was cancelled.
    #[error("the password hashing task failed")]
    Join(#[source] tokio::task::JoinError),
    /// The store refused or failed.
    #[error("cannot create the admin user")]
    Store(#[source] StoreError),
}

/// Shortest password berth accepts.
pub const MIN_PASSWORD_LEN: usize = 8;

/// Hashes a password off the async threads.
pub(crate) async fn hash_blocking(password: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)
}

/// On first start (no users at all), creates `admin` with `password` (from
/// `BERTH_ADMIN_PASSWORD`), or with a generated one that is returned so the binary can print it
/// once. Does nothing when any user exists.
///
/// # Errors
///
/// [`BootstrapError`] for a weak given password or a store failure.
pub async fn bootstrap_admin(
    accounts: &dyn AccountStore,
    password: Option<String>,
) -> Result<Option<BootstrapAdmin>, BootstrapError> {
    if !accounts.list_users().await.map_err(BootstrapError::Store)?.is_empty() {
        return Ok(None);
    }
    let (password, generated) = match password {
        Some(p) if p.chars().count() < MIN_PASSWORD_LEN => {
            return Err(BootstrapError::WeakPassword);
        }
        Some(p) => (p, false),
        None => (new_secret("")[..24].to_owned(), true),
    };
    let hashed = {
        let p = password.clone();
        tokio::task::spawn_blocking(move || hash_password(&p))
            .await
            .map_err(BootstrapError::Join)?
            .map_err(BootstrapError::Hash)?
    };
    let ctx = WriteContext::new(Actor::Anonymous, Source::Cli);
    let user = NewUser { username: "admin".to_owned(), password_hash: hashed, role: Role::Admin };
    accounts.create_user(&ctx, user).await.map_err(BootstrapError::Store)?;
    tracing::info!(user = "admin", generated, "created the first admin user");
    Ok(Some(BootstrapAdmin {
        username: "admin".to_owned(),
        generated_password: generated.then_some(password),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_prefixed_random_and_url_safe() {
        let a = new_secret(API_TOKEN_PREFIX);
        let b = new_secret(API_TOKEN_PREFIX);
        assert_ne!(a, b);
        assert!(a.starts_with("berth_"));
        assert_eq!(a.len(), "berth_".len() + 43);
        assert!(
            a["berth_".len()..].chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_required() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "bearer abc".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h), None);
    }

    #[test]
    fn bootstrap_debug_never_shows_the_password() {
        let b = BootstrapAdmin {
            username: "admin".into(),
            generated_password: Some("hunter22".into()),
        };
        assert!(!format!("{b:?}").contains("hunter22"));
    }
}
