//! Access tokens: short-lived HS256 JWTs signed with a key kept in the data directory.
//!
//! The algorithm is pinned on the server: a token whose header names any other algorithm
//! (including `none` and the RS/ES families) is refused. `exp`, `iat`, `iss`, `aud`, `sub`,
//! `role`, `jti` and `sid` are all required.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};

use crate::policy::Role;

/// The one algorithm berth signs and accepts.
pub const ALGORITHM: Algorithm = Algorithm::HS256;
/// The `aud` every access token carries.
pub const AUDIENCE: &str = "berth-api";
/// Bytes of key material generated on first start.
const KEY_LEN: usize = 32;

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The username.
    pub sub: String,
    /// The role at the time of issue (the server uses the lower of this and the user's role now).
    pub role: Role,
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Issued at, seconds since the epoch.
    pub iat: u64,
    /// Unique token id.
    pub jti: String,
    /// The refresh-token family (login session) this token belongs to; logout revokes it.
    pub sid: String,
}

/// Why the signing key could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading, creating or writing the key file failed.
    #[error("signing key file {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file holds fewer than 32 bytes of key material.
    #[error("signing key file {path} holds {len} bytes; at least {KEY_LEN} are required")]
    TooShort {
        /// The file.
        path: PathBuf,
        /// How many bytes it held.
        len: usize,
    },
}

/// The signing and verification keys, with the pinned validation rules.
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKeys")
            .field("algorithm", &ALGORITHM)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// Why an access token was refused (never shown to the client, which just sees 401).
#[derive(Debug, thiserror::Error)]
#[error("access token rejected")]
pub struct InvalidToken(#[source] pub jsonwebtoken::errors::Error);

impl JwtKeys {
    /// Keys from raw secret bytes.
    pub fn from_secret(secret: &[u8], issuer: impl Into<String>) -> Self {
        let issuer = issuer.into();
        let mut validation = Validation::new(ALGORITHM);
        validation.algorithms = vec![ALGORITHM];
        validation.leeway = 0;
        validation.validate_exp = true;
        validation.validate_aud = true;
        validation.set_audience(&[AUDIENCE]);
        validation.set_issuer(&[issuer.as_str()]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            issuer,
        }
    }

    /// Loads the key from `path`, creating it with 32 random bytes (mode 0600) when missing.
    ///
    /// # Errors
    ///
    /// [`KeyError`] when the file cannot be read or created, or holds too little key material.
    pub fn load_or_create(path: &Path, issuer: impl Into<String>) -> Result<Self, KeyError> {
        let io = |source| KeyError::Io { path: path.to_owned(), source };
        match std::fs::read(path) {
            Ok(bytes) => {
                let secret = trim_ascii_newline(&bytes);
                if secret.len() < KEY_LEN {
                    return Err(KeyError::TooShort { path: path.to_owned(), len: secret.len() });
                }
                warn_if_readable_by_others(path);
                Ok(Self::from_secret(secret, issuer))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut secret = [0u8; KEY_LEN];
                rand::rng().fill_bytes(&mut secret);
                let mut opts = std::fs::OpenOptions::new();
                opts.write(true).create_new(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt as _;
                    opts.mode(0o600);
                }
                match opts.open(path) {
                    Ok(mut f) => {
                        f.write_all(&secret).map_err(io)?;
                        f.sync_all().map_err(io)?;
                        tracing::info!(path = %path.display(), "generated a new token signing key");
                        Ok(Self::from_secret(&secret, issuer))
                    }
                    // Someone else created it between our read and create: use theirs.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        Self::load_or_create(path, issuer)
                    }
                    Err(e) => Err(io(e)),
                }
            }
            Err(e) => Err(io(e)),
        }
    }

    /// The issuer (`iss`) this server signs with.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Signs an access token for `sub` with `role`, valid for `ttl`.
    ///
    /// # Errors
    ///
    /// Only if signing fails, which for HMAC keys does not happen in practice.
    pub fn issue(
        &self,
        sub: &str,
        role: Role,
        sid: &str,
        ttl: Duration,
    ) -> Result<(String, Claims), jsonwebtoken::errors::Error> {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims {
            sub: sub.to_owned(),
            role,
            iss: self.issuer.clone(),
            aud: AUDIENCE.to_owned(),
            iat: now,
            exp: now + ttl.as_secs().max(1),
            jti: uuid::Uuid::new_v4().to_string(),
            sid: sid.to_owned(),
        };
        let token = jsonwebtoken::encode(&Header::new(ALGORITHM), &claims, &self.encoding)?;
        Ok((token, claims))
    }

    /// Verifies signature, algorithm, expiry, issuer and audience, and that every claim is there.
    ///
    /// # Errors
    ///
    /// [`InvalidToken`] for any token that is not exactly what this server issued and still valid.
    pub fn verify(&self, token: &str) -> Result<Claims, InvalidToken> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(InvalidToken)?;
        if data.header.alg != ALGORITHM || data.claims.iat > data.claims.exp {
            return Err(InvalidToken(jsonwebtoken::errors::ErrorKind::InvalidToken.into()));
        }
        Ok(data.claims)
    }
}

fn trim_ascii_newline(b: &[u8]) -> &[u8] {
    let mut end = b.len();
    while end > 0 && matches!(b[end - 1], b'\n' | b'\r') {
        end -= 1;
    }
    &b[..end]
}

fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(path = %path.display(), "signing key file is readable by group or others; chmod 600 it");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_issued_token_verifies_and_carries_every_claim() {
        let keys = JwtKeys::from_secret(&[7u8; 32], "berth");
        let (tok, claims) =
            keys.issue("alice", Role::Operator, "fam1", Duration::from_secs(60)).unwrap();
        let got = keys.verify(&tok).unwrap();
        assert_eq!(got, claims);
        assert_eq!(got.aud, AUDIENCE);
        assert_eq!(got.exp - got.iat, 60);
    }

    #[test]
    fn a_token_from_another_key_is_refused() {
        let a = JwtKeys::from_secret(&[1u8; 32], "berth");
        let b = JwtKeys::from_secret(&[2u8; 32], "berth");
        let (tok, _) = a.issue("alice", Role::Admin, "f", Duration::from_secs(60)).unwrap();
        assert!(b.verify(&tok).is_err());
    }

    #[test]
    fn a_generated_key_file_is_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwt.key");
        let a = JwtKeys::load_or_create(&path, "berth").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let b = JwtKeys::load_or_create(&path, "berth").unwrap();
        let (tok, _) = a.issue("alice", Role::Viewer, "f", Duration::from_secs(60)).unwrap();
        assert!(b.verify(&tok).is_ok());
    }

    #[test]
    fn a_short_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwt.key");
        std::fs::write(&path, b"short").unwrap();
        assert!(matches!(JwtKeys::load_or_create(&path, "berth"), Err(KeyError::TooShort { .. })));
    }
}
