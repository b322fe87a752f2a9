//! [`AppState`]: the configuration, keys, store handle, limiters and metrics every handler
//! shares. Cloning is cheap (one `Arc`).

use std::net::IpAddr;
use std::sync::Arc;

use tokio::sync::watch;

use crate::auth::jwt::JwtKeys;
use crate::config::ServeConfig;
use crate::metrics::Metrics;
use crate::ratelimit::RateLimiter;

/// Shared state for the REST (and later GraphQL) handlers.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: ServeConfig,
    keys: JwtKeys,
    metrics: Metrics,
    ready: watch::Receiver<bool>,
    login_per_user: RateLimiter<String>,
    login_per_address: RateLimiter<IpAddr>,
    per_token: RateLimiter<String>,
}

impl AppState {
    /// Builds the state.
    ///
    /// `ready` is the controller's readiness (store open, Docker Engine reachable): `/readyz`
    /// answers 200 while it holds `true` and 503 otherwise.
    pub fn new(
        config: ServeConfig,
        keys: JwtKeys,
        metrics: Metrics,
        ready: watch::Receiver<bool>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                login_per_user: RateLimiter::new(config.login_per_user),
                login_per_address: RateLimiter::new(config.login_per_address),
                per_token: RateLimiter::new(config.per_token),
                config,
                keys,
                metrics,
                ready,
            }),
        }
    }

    /// The server configuration.
    pub fn config(&self) -> &ServeConfig {
        &self.inner.config
    }

    /// The JWT keys.
    pub fn keys(&self) -> &JwtKeys {
        &self.inner.keys
    }

    /// The metrics registry (share it with the controller so its series show at `/metrics`).
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Whether the controller reports ready.
    pub fn is_ready(&self) -> bool {
        *self.inner.ready.borrow()
    }

    pub(crate) fn login_per_user(&self) -> &RateLimiter<String> {
        &self.inner.login_per_user
    }

    pub(crate) fn login_per_address(&self) -> &RateLimiter<IpAddr> {
        &self.inner.login_per_address
    }

    pub(crate) fn per_token(&self) -> &RateLimiter<String> {
        &self.inner.per_token
    }
}
