//! `POST /api/v1/auth/login`, `/auth/refresh` and `/auth/logout`.

use std::net::{IpAddr, SocketAddr};

use axum::Json;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use berth_controller::store::{
    Actor, AuditEntry, AuditOutcome, RefreshRotation, Source, WriteContext, token_hash,
    verify_password,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::auth::{Principal, REFRESH_TOKEN_PREFIX, new_secret};
use crate::error::{ApiError, ErrorChain};
use crate::extract::{ApiBytes, ApiJson};
use crate::service::accounts;
use crate::state::AppState;

/// The client's address, when the server was started with connection info.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())))
    }
}

/// `POST /api/v1/auth/login` body.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// The user name.
    pub username: String,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRequest").field("username", &self.username).finish_non_exhaustive()
    }
}

/// A token pair.
#[derive(Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenPair {
    /// The access JWT (send as `Authorization: Bearer`).
    pub access_token: String,
    /// The opaque refresh token (exchange at `/auth/refresh`; single use).
    pub refresh_token: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Always `Bearer`.
    pub token_type: String,
}

impl std::fmt::Debug for TokenPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenPair").field("expires_in", &self.expires_in).finish_non_exhaustive()
    }
}

/// `POST /api/v1/auth/refresh` and `/auth/logout` body.
#[derive(Deserialize, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RefreshRequest {
    /// The refresh token.
    pub refresh_token: String,
}

impl std::fmt::Debug for RefreshRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshRequest").finish_non_exhaustive()
    }
}

async fn audit(state: &AppState, entry: AuditEntry) {
    if let Err(e) = state.audit().append(entry).await {
        tracing::error!(error = %ErrorChain(&e), "cannot write an audit event");
    }
}

fn issue_pair(
    state: &AppState,
    username: &str,
    role: crate::Role,
    sid: &str,
    refresh: String,
) -> Result<TokenPair, ApiError> {
    state.sessions().note_live(username, sid);
    let ttl = state.config().access_token_ttl;
    let (access, _) = state.keys().issue(username, role, sid, ttl).map_err(ApiError::internal)?;
    Ok(TokenPair {
        access_token: access,
        refresh_token: refresh,
        expires_in: ttl.as_secs().max(1),
        token_type: "Bearer".into(),
    })
}

/// When a refresh token issued now expires: after the refresh lifetime, and never after the
/// session's absolute end (`session_started` + [`ServeConfig::session_max_age`]).
///
/// [`ServeConfig::session_max_age`]: crate::ServeConfig::session_max_age
fn refresh_expiry(state: &AppState, session_started: DateTime<Utc>) -> DateTime<Utc> {
    let cfg = state.config();
    let ttl =
        chrono::Duration::from_std(cfg.refresh_token_ttl).unwrap_or(chrono::Duration::days(7));
    let max = chrono::Duration::from_std(cfg.session_max_age).unwrap_or(chrono::Duration::days(7));
    (Utc::now() + ttl).min(session_started + max)
}

fn check_address(state: &AppState, addr: ClientAddr) -> Result<(), ApiError> {
    if let Some(ip) = addr.0 {
        state
            .limiters()
            .password_per_address
            .check(&ip)
            .map_err(|retry_after| ApiError::RateLimited { retry_after })?;
    }
    Ok(())
}

/// Counts a login refused by a limiter: a metric always, and one summary audit event per
/// [`REFUSED_LOGIN_AUDIT_EVERY`](crate::state::REFUSED_LOGIN_AUDIT_EVERY) (not one per
/// attempt: they cost the attacker nothing).
async fn note_rate_limited(state: &AppState) {
    state.metrics().inc_counter(
        "berth_login_rate_limited_total",
        "Login attempts refused by a rate limiter.",
        &[],
        1.0,
    );
    if let Some(n) = state.limiters().note_refused_login() {
        let anon = WriteContext::new(Actor::Anonymous, Source::Rest);
        let entry = AuditEntry::new(anon, "login.rate_limited", AuditOutcome::Denied).message(
            format!("{n} login attempt(s) refused by a rate limiter since the last such event"),
        );
        audit(state, entry).await;
    }
}

/// `POST /api/v1/auth/login`: password login; answers an access and a refresh token.
///
/// A user name longer than [`MAX_USERNAME_BYTES`](accounts::MAX_USERNAME_BYTES) is refused
/// with 400 before any hashing or audit; failed logins are audited with a short, sanitized
/// prefix of the name; attempts refused by a limiter are counted, not audited one by one.
#[tracing::instrument(skip_all, fields(user = tracing::field::Empty))]
pub async fn login(
    State(state): State<AppState>,
    addr: ClientAddr,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Json<TokenPair>, ApiError> {
    accounts::check_login_username(&req.username)?;
    let shown = accounts::loggable_username(&req.username);
    tracing::Span::current().record("user", shown.as_str());
    let anon = WriteContext::new(Actor::Anonymous, Source::Rest);
    let failed = |why: &str| {
        AuditEntry::new(anon.clone(), "login", AuditOutcome::Failure)
            .target("User", None, shown.clone())
            .message(why.to_owned())
    };
    if let Err(retry_after) = state.limiters().check_password(&req.username, addr.0) {
        note_rate_limited(&state).await;
        return Err(ApiError::RateLimited { retry_after });
    }
    let user = state.accounts().get_user(&req.username).await?;
    let hash = match &user {
        Some(u) => u.password_hash.clone(),
        None => state
            .dummy_hash()
            .get_or_try_init(|| crate::auth::hash_blocking("not a real password".to_owned()))
            .await?
            .clone(),
    };
    let password = req.password.clone();
    let ok = tokio::task::spawn_blocking(move || verify_password(&hash, &password))
        .await
        .map_err(ApiError::internal)?;
    let user = match user {
        Some(u) if ok && !u.disabled => u,
        Some(u) if ok && u.disabled => {
            audit(&state, failed("user is disabled")).await;
            return Err(ApiError::Unauthenticated);
        }
        _ => {
            audit(&state, failed("wrong user name or password")).await;
            return Err(ApiError::Unauthenticated);
        }
    };
    let refresh = new_secret(REFRESH_TOKEN_PREFIX);
    let ctx = WriteContext::rest_user(&user.username);
    let rt = state
        .accounts()
        .issue_refresh_token(
            &ctx,
            &user.username,
            &token_hash(&refresh),
            refresh_expiry(&state, Utc::now()),
            None,
        )
        .await?;
    Ok(Json(issue_pair(&state, &user.username, user.role, &rt.family_id, refresh)?))
}

/// `POST /api/v1/auth/refresh`: exchanges a refresh token for a new pair. A token presented a
/// second time revokes its whole family (and the access tokens issued from it). A session
/// older than [`ServeConfig::session_max_age`](crate::ServeConfig::session_max_age) cannot be
/// refreshed (401): the user logs in again.
#[tracing::instrument(skip_all)]
pub async fn refresh(
    State(state): State<AppState>,
    addr: ClientAddr,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> Result<Json<TokenPair>, ApiError> {
    check_address(&state, addr)?;
    let anon = WriteContext::new(Actor::Anonymous, Source::Rest);
    let new_refresh = new_secret(REFRESH_TOKEN_PREFIX);
    let rotation = state
        .accounts()
        .rotate_refresh_token(
            &anon,
            &token_hash(&req.refresh_token),
            &token_hash(&new_refresh),
            // A session past its absolute end is refused below, whatever this says.
            refresh_expiry(&state, Utc::now()),
        )
        .await?;
    match rotation {
        RefreshRotation::Rotated(rt) => {
            let started = state
                .accounts()
                .get_refresh_family(&rt.family_id)
                .await?
                .map_or(rt.issued, |f| f.created);
            let max_age = chrono::Duration::from_std(state.config().session_max_age)
                .unwrap_or(chrono::Duration::days(7));
            let user = match state.accounts().get_user(&rt.username).await? {
                Some(u) if !u.disabled && Utc::now() < started + max_age => u,
                _ => {
                    state.accounts().revoke_refresh_family(&anon, &rt.token_hash).await?;
                    accounts::session_ended(&state, &rt.username, &rt.family_id);
                    return Err(ApiError::Unauthenticated);
                }
            };
            Ok(Json(issue_pair(&state, &user.username, user.role, &rt.family_id, new_refresh)?))
        }
        RefreshRotation::ReuseDetected { family_id, username } => {
            tracing::warn!(user = %username, family = %family_id, "refresh token reuse; session revoked");
            accounts::session_ended(&state, &username, &family_id);
            Err(ApiError::Unauthenticated)
        }
        RefreshRotation::Revoked | RefreshRotation::Expired | RefreshRotation::Unknown => {
            Err(ApiError::Unauthenticated)
        }
    }
}

/// `POST /api/v1/auth/logout`: revokes the caller's session (refresh family); the access token
/// and every refresh token of the session stop working. An optional `{refreshToken}` body names
/// the family explicitly.
#[tracing::instrument(skip_all, fields(user = %principal.username))]
pub async fn logout(
    State(state): State<AppState>,
    principal: Principal,
    ApiBytes(body): ApiBytes,
) -> Result<axum::http::StatusCode, ApiError> {
    let body: Option<RefreshRequest> = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        Some(
            serde_json::from_slice(&body)
                .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?,
        )
    };
    accounts::logout(&state, &principal, body.as_ref().map(|b| b.refresh_token.as_str())).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}
