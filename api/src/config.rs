//! [`ServeConfig`]: everything `berth serve` needs to know, with the documented defaults.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::ratelimit::RateLimit;

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7480";
/// Default request body limit: 1 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// Configuration for the HTTP server. Holds paths and numbers only, never secrets, so its
/// `Debug` output is safe to log.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Address to listen on (`127.0.0.1:7480`).
    pub listen: SocketAddr,
    /// The data directory (store, signing key).
    pub data_dir: PathBuf,
    /// PEM certificate chain; TLS is on when this and `tls_key` are set.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// The JWT signing key file; `<data_dir>/jwt.key` (generated, 0600) when unset.
    pub signing_key_file: Option<PathBuf>,
    /// The `iss` of access tokens.
    pub issuer: String,
    /// Access token lifetime (15 minutes).
    pub access_token_ttl: Duration,
    /// Refresh token lifetime (7 days).
    pub refresh_token_ttl: Duration,
    /// Absolute lifetime of a login session (7 days): refreshing extends the refresh token,
    /// never the session past this age from its login; then refresh answers 401.
    pub session_max_age: Duration,
    /// Longest API token lifetime a user may ask for (365 days).
    pub max_api_token_ttl: Duration,
    /// Request body limit in bytes (1 MiB).
    pub body_limit: usize,
    /// Time allowed to produce a response head (30 s); streams (watch) are not cut by it.
    pub request_timeout: Duration,
    /// Login attempts per username (10, regaining 10 a minute).
    pub login_per_user: RateLimit,
    /// Login attempts per client address (30, regaining 30 a minute).
    pub login_per_address: RateLimit,
    /// Authenticated requests per token / session (200, regaining 50 a second).
    pub per_token: RateLimit,
    /// GraphQL limits, websocket `Origin` allow-list and keepalive.
    pub graphql: crate::graphql::GraphqlConfig,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7480)),
            data_dir: PathBuf::from("./berth-data"),
            tls_cert: None,
            tls_key: None,
            signing_key_file: None,
            issuer: "berth".to_owned(),
            access_token_ttl: Duration::from_secs(15 * 60),
            refresh_token_ttl: Duration::from_secs(7 * 24 * 3600),
            session_max_age: Duration::from_secs(7 * 24 * 3600),
            max_api_token_ttl: Duration::from_secs(365 * 24 * 3600),
            body_limit: DEFAULT_BODY_LIMIT,
            request_timeout: Duration::from_secs(30),
            login_per_user: RateLimit::per_minute(10, 10),
            login_per_address: RateLimit::per_minute(30, 30),
            per_token: RateLimit { burst: 200, per_second: 50.0 },
            graphql: crate::graphql::GraphqlConfig::default(),
        }
    }
}

impl ServeConfig {
    /// The signing key path in effect.
    pub fn signing_key_path(&self) -> PathBuf {
        self.signing_key_file.clone().unwrap_or_else(|| self.data_dir.join("jwt.key"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_values() {
        let c = ServeConfig::default();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.access_token_ttl, Duration::from_secs(900));
        assert_eq!(c.refresh_token_ttl, Duration::from_secs(604_800));
        assert_eq!(c.session_max_age, Duration::from_secs(604_800));
        assert_eq!(c.body_limit, 1_048_576);
        assert_eq!(c.signing_key_path(), PathBuf::from("./berth-data/jwt.key"));
    }
}
