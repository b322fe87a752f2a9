//! Account records: users (argon2id password hashes), refresh-token families and API tokens.
//!
//! The store keeps records and answers lookups; the API layer decides policy (who may log in,
//! token lifetimes). Tokens are never stored: only their SHA-256 ([`token_hash`]). Password
//! hashing is slow on purpose, so callers hash with [`hash_password`] *before* calling the
//! store, never on its writer thread.

use std::fmt;
use std::str::FromStr;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::audit::hex;

/// What a user or token may do.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read, logs and stats.
    Viewer,
    /// Viewer, plus apply, delete and exec.
    Operator,
    /// Everything, including users and system prune.
    Admin,
}

impl Role {
    /// The lower-case name (`admin`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not `admin`, `operator` or `viewer`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?} (expected admin, operator or viewer)")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Role::Admin),
            "operator" => Ok(Role::Operator),
            "viewer" => Ok(Role::Viewer),
            _ => Err(UnknownRole(s.to_owned())),
        }
    }
}

/// A person who can log in.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// Unique login name.
    pub username: String,
    /// argon2id PHC string (`$argon2id$v=19$...`).
    pub password_hash: String,
    /// What the user may do.
    pub role: Role,
    /// A disabled user cannot log in and their tokens stop working.
    pub disabled: bool,
    /// When the user was created.
    pub created: DateTime<Utc>,
    /// When the record last changed.
    pub updated: DateTime<Utc>,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("username", &self.username)
            .field("password_hash", &"<redacted>")
            .field("role", &self.role)
            .field("disabled", &self.disabled)
            .field("created", &self.created)
            .field("updated", &self.updated)
            .finish()
    }
}

/// A user to create.
#[derive(Clone, PartialEq, Eq)]
pub struct NewUser {
    /// Unique login name (1 to 64 characters, no control characters).
    pub username: String,
    /// From [`hash_password`].
    pub password_hash: String,
    /// What the user may do.
    pub role: Role,
}

impl fmt::Debug for NewUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewUser")
            .field("username", &self.username)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// Changes to a user; `None` leaves a field as it is.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct UserUpdate {
    /// A new hash from [`hash_password`].
    pub password_hash: Option<String>,
    /// A new role.
    pub role: Option<Role>,
    /// Disable or enable.
    pub disabled: Option<bool>,
}

impl fmt::Debug for UserUpdate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserUpdate")
            .field("password_hash", &self.password_hash.as_ref().map(|_| "<redacted>"))
            .field("role", &self.role)
            .field("disabled", &self.disabled)
            .finish()
    }
}

/// A chain of refresh tokens from one login. Presenting a token that was already exchanged
/// revokes the whole family (someone else holds a copy).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefreshFamily {
    /// Random id.
    pub id: String,
    /// The user who logged in.
    pub username: String,
    /// When the family started (login time).
    pub created: DateTime<Utc>,
    /// When it was revoked (logout, reuse, user disabled).
    pub revoked: Option<DateTime<Utc>>,
}

/// One refresh token, stored by hash.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefreshToken {
    /// SHA-256 (hex) of the token, from [`token_hash`].
    pub token_hash: String,
    /// The family it belongs to.
    pub family_id: String,
    /// The user it was issued to.
    pub username: String,
    /// When it was issued.
    pub issued: DateTime<Utc>,
    /// When it stops being accepted.
    pub expires: DateTime<Utc>,
    /// When it was exchanged for a new token (presenting it again is reuse).
    pub rotated: Option<DateTime<Utc>>,
}

impl fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshToken")
            .field("family_id", &self.family_id)
            .field("username", &self.username)
            .field("issued", &self.issued)
            .field("expires", &self.expires)
            .field("rotated", &self.rotated)
            .finish_non_exhaustive()
    }
}

/// What presenting a refresh token led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshRotation {
    /// The token was valid; here is its successor (same family).
    Rotated(RefreshToken),
    /// The token had already been exchanged: the family is now revoked.
    ReuseDetected {
        /// The revoked family.
        family_id: String,
        /// Its user.
        username: String,
    },
    /// The token's family was revoked earlier.
    Revoked,
    /// The token has expired.
    Expired,
    /// No such token.
    Unknown,
}

/// A long-lived token for CI and GitOps, stored by hash.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiToken {
    /// Random id, shown to users and recorded as the audit actor (`token:<id>`).
    pub id: String,
    /// A label chosen by its owner.
    pub name: String,
    /// The user who created it.
    pub owner: String,
    /// What it may do.
    pub role: Role,
    /// SHA-256 (hex) of the token, from [`token_hash`].
    pub token_hash: String,
    /// When it was created.
    pub created: DateTime<Utc>,
    /// When it stops being accepted (`None`: never).
    pub expires: Option<DateTime<Utc>>,
    /// When it was revoked.
    pub revoked: Option<DateTime<Utc>>,
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiToken")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("owner", &self.owner)
            .field("role", &self.role)
            .field("created", &self.created)
            .field("expires", &self.expires)
            .field("revoked", &self.revoked)
            .finish_non_exhaustive()
    }
}

impl ApiToken {
    /// Whether the token is accepted at `now` (not revoked, not expired).
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.revoked.is_none() && self.expires.is_none_or(|e| now < e)
    }
}

/// An API token to create.
#[derive(Clone, PartialEq, Eq)]
pub struct NewApiToken {
    /// A label chosen by its owner.
    pub name: String,
    /// The user who creates it.
    pub owner: String,
    /// What it may do.
    pub role: Role,
    /// SHA-256 (hex) of the token, from [`token_hash`].
    pub token_hash: String,
    /// When it stops being accepted.
    pub expires: Option<DateTime<Utc>>,
}

impl fmt::Debug for NewApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewApiToken")
            .field("name", &self.name)
            .field("owner", &self.owner)
            .field("role", &self.role)
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

/// Password hashing failed (the system random source is unavailable).
#[derive(Debug, thiserror::Error)]
#[error("cannot hash password: {0}")]
pub struct PasswordHashError(String);

/// Hashes a password with argon2id (default parameters, random salt) into a PHC string. Slow
/// by design: call it from `spawn_blocking`.
///
/// # Errors
///
/// [`PasswordHashError`] when no salt can be generated.
pub fn hash_password(password: &str) -> Result<String, PasswordHashError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| PasswordHashError(e.to_string()))
}

/// Whether `password` matches a PHC string from [`hash_password`]. A malformed hash matches
/// nothing. Slow by design: call it from `spawn_blocking`.
pub fn verify_password(password_hash: &str, password: &str) -> bool {
    PasswordHash::new(password_hash)
        .is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
}

/// SHA-256 (hex) of a token: what the store keeps and looks tokens up by.
pub fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

pub(crate) fn check_username(username: &str) -> Result<(), String> {
    if username.is_empty() || username.chars().count() > 64 {
        return Err("user name must be 1 to 64 characters".to_owned());
    }
    if username.chars().any(|c| c.is_control() || c.is_whitespace() || c == ':') {
        return Err("user name must not contain spaces, control characters or ':'".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_verifies_against_its_argon2id_hash_and_nothing_else() {
        let hash = hash_password("correct horse").expect("hash");
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password(&hash, "correct horse"));
        assert!(!verify_password(&hash, "wrong horse"));
        assert!(!verify_password("not a hash", "correct horse"));
    }

    #[test]
    fn debug_output_never_shows_hashes() {
        let user = User {
            username: "alice".into(),
            password_hash: "$argon2id$secret".into(),
            role: Role::Admin,
            disabled: false,
            created: Utc::now(),
            updated: Utc::now(),
        };
        assert!(!format!("{user:?}").contains("secret"));
        let update =
            UserUpdate { password_hash: Some("$argon2id$secret".into()), ..Default::default() };
        assert!(!format!("{update:?}").contains("secret"));
    }

    #[test]
    fn token_hashes_are_stable_hex_sha256() {
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn roles_parse_from_their_names() {
        assert_eq!("operator".parse::<Role>(), Ok(Role::Operator));
        assert!("root".parse::<Role>().is_err());
        assert!(Role::Admin > Role::Operator && Role::Operator > Role::Viewer);
    }
}
