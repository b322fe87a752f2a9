//! Authentication: who is calling, from a Bearer access JWT or API token.

pub mod jwt;

use axum::http::{HeaderMap, Method, header};

use crate::error::ApiError;
use crate::policy::{Action, Role};
use crate::state::AppState;

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
    /// The username.
    pub username: String,
    /// The effective role.
    pub role: Role,
    /// How they authenticated.
    pub credential: Credential,
}

impl Principal {
    /// The key the per-token rate limiter counts against.
    pub fn rate_key(&self) -> String {
        match &self.credential {
            Credential::Session { sid, .. } => format!("session:{sid}"),
            Credential::ApiToken { id } => format!("token:{id}"),
        }
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Authenticates a request from its `Authorization: Bearer` header.
///
/// # Errors
///
/// [`ApiError::Unauthenticated`] for a missing, malformed, expired or revoked credential.
pub async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let token = bearer(headers).ok_or(ApiError::Unauthenticated)?;
    let claims = state.keys().verify(token).map_err(|e| {
        tracing::debug!(error = %crate::error::ErrorChain(&e), "access token refused");
        ApiError::Unauthenticated
    })?;
    Ok(Principal {
        username: claims.sub,
        role: claims.role,
        credential: Credential::Session { sid: claims.sid, jti: claims.jti },
    })
}

/// Records a refused request in the audit log.
pub async fn audit_denied(
    _state: &AppState,
    principal: &Principal,
    method: &Method,
    route: &str,
    action: Action,
) {
    tracing::info!(user = %principal.username, %method, route, action = action.as_str(), "request denied");
}
