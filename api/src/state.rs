//! [`AppState`]: the configuration, keys, store handles, limiters and metrics every handler
//! shares. Cloning is cheap (one `Arc`).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use berth_controller::docker::Driver;
use berth_controller::store::{AccountStore, AuditLog, ResourceStore, StoreBackup};
use tokio::sync::{OnceCell, watch};
use tokio_util::sync::CancellationToken;

use crate::auth::jwt::JwtKeys;
use crate::config::ServeConfig;
use crate::metrics::Metrics;
use crate::ratelimit::RateLimiter;

/// How many live login sessions the authentication cache remembers before it starts over.
pub const LIVE_SESSION_CACHE: usize = 10_000;

/// Shared state for the REST (and later GraphQL) handlers.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: ServeConfig,
    keys: JwtKeys,
    resources: Arc<dyn ResourceStore>,
    audit: Arc<dyn AuditLog>,
    accounts: Arc<dyn AccountStore>,
    backup: Arc<dyn StoreBackup>,
    metrics: Metrics,
    ready: watch::Receiver<bool>,
    login_per_user: RateLimiter<String>,
    login_per_address: RateLimiter<IpAddr>,
    per_token: RateLimiter<String>,
    revoked_sessions: Mutex<HashSet<String>>,
    live_sessions: Mutex<HashSet<String>>,
    user_sessions: Mutex<HashMap<String, HashSet<String>>>,
    user_admin_lock: tokio::sync::Mutex<()>,
    dummy_hash: OnceCell<String>,
    shutdown: CancellationToken,
    driver: Option<Arc<dyn Driver>>,
    graphql: crate::graphql::Shared,
    sync_status: Option<watch::Receiver<crate::service::sync::SyncStatus>>,
}

impl AppState {
    /// Builds the state over one store that serves resources, audit, accounts and backups (a
    /// `SledStore`).
    ///
    /// `ready` is the controller's readiness (store open, Docker Engine reachable): `/readyz`
    /// answers 200 while it holds `true` and 503 otherwise.
    pub fn new<S>(
        config: ServeConfig,
        keys: JwtKeys,
        store: S,
        metrics: Metrics,
        ready: watch::Receiver<bool>,
    ) -> Self
    where
        S: ResourceStore + AuditLog + AccountStore + StoreBackup + Clone + 'static,
    {
        Self {
            inner: Arc::new(Inner {
                login_per_user: RateLimiter::new(config.login_per_user),
                login_per_address: RateLimiter::new(config.login_per_address),
                per_token: RateLimiter::new(config.per_token),
                config,
                keys,
                resources: Arc::new(store.clone()),
                audit: Arc::new(store.clone()),
                accounts: Arc::new(store.clone()),
                backup: Arc::new(store),
                metrics,
                ready,
                revoked_sessions: Mutex::new(HashSet::new()),
                live_sessions: Mutex::new(HashSet::new()),
                user_sessions: Mutex::new(HashMap::new()),
                user_admin_lock: tokio::sync::Mutex::new(()),
                dummy_hash: OnceCell::new(),
                shutdown: CancellationToken::new(),
                driver: None,
                graphql: crate::graphql::Shared::default(),
                sync_status: None,
            }),
        }
    }

    /// Cancelled when the server shuts down: long-lived streams (watch) end on it so that a
    /// graceful shutdown can drain.
    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    /// Adds the Docker Engine driver (for the `/api/v1/system` routes). Call before cloning.
    #[must_use]
    pub fn with_driver(mut self, driver: Arc<dyn Driver>) -> Self {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => inner.driver = Some(driver),
            None => {
                tracing::error!("AppState::with_driver called after the state was shared; ignored")
            }
        }
        self
    }

    /// Adds the directory sync's status (for `GET /api/v1/sync`; `berth serve --sync-dir`).
    /// Call before cloning.
    #[must_use]
    pub fn with_sync_status(
        mut self,
        status: watch::Receiver<crate::service::sync::SyncStatus>,
    ) -> Self {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => inner.sync_status = Some(status),
            None => tracing::error!(
                "AppState::with_sync_status called after the state was shared; ignored"
            ),
        }
        self
    }

    /// The directory sync's status, when the server syncs a directory.
    pub fn sync_status(&self) -> Option<&watch::Receiver<crate::service::sync::SyncStatus>> {
        self.inner.sync_status.as_ref()
    }

    /// The Docker Engine driver, when one was given.
    pub fn driver(&self) -> Option<&dyn Driver> {
        self.inner.driver.as_deref()
    }

    /// The Docker Engine driver as a shared handle (GraphQL streams outlive the request).
    pub(crate) fn driver_arc(&self) -> Option<Arc<dyn Driver>> {
        self.inner.driver.clone()
    }

    /// GraphQL's shared streams (log and stats fan-out, exec sessions, subscription counts).
    pub(crate) fn graphql(&self) -> &crate::graphql::Shared {
        &self.inner.graphql
    }

    /// The server configuration.
    pub fn config(&self) -> &ServeConfig {
        &self.inner.config
    }

    /// The JWT keys.
    pub fn keys(&self) -> &JwtKeys {
        &self.inner.keys
    }

    /// The resource store.
    pub fn resources(&self) -> &dyn ResourceStore {
        self.inner.resources.as_ref()
    }

    /// The audit log.
    pub fn audit(&self) -> &dyn AuditLog {
        self.inner.audit.as_ref()
    }

    /// Users and tokens.
    pub fn accounts(&self) -> &dyn AccountStore {
        self.inner.accounts.as_ref()
    }

    /// Online backups of the whole store (a shared handle: the snapshot runs on a blocking
    /// thread that outlives the handler).
    pub fn backup(&self) -> Arc<dyn StoreBackup> {
        Arc::clone(&self.inner.backup)
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

    /// Marks a login session (refresh family) revoked for access tokens already issued.
    pub(crate) fn revoke_session(&self, sid: &str) {
        self.inner
            .revoked_sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(sid.to_owned());
    }

    /// Remembers that `sid` is a session of `username` (so that ending all of a user's sessions
    /// reaches access tokens already issued).
    pub(crate) fn note_session(&self, username: &str, sid: &str) {
        self.inner
            .user_sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(username.to_owned())
            .or_default()
            .insert(sid.to_owned());
    }

    /// Marks every session of `username` seen by this process revoked.
    pub(crate) fn revoke_user_sessions(&self, username: &str) {
        let sids = self
            .inner
            .user_sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(username);
        let mut revoked =
            self.inner.revoked_sessions.lock().unwrap_or_else(PoisonError::into_inner);
        revoked.extend(sids.into_iter().flatten());
    }

    /// Serializes user changes that must not leave berth without an enabled admin.
    pub(crate) fn user_admin_lock(&self) -> &tokio::sync::Mutex<()> {
        &self.inner.user_admin_lock
    }

    pub(crate) fn session_revoked_here(&self, sid: &str) -> bool {
        self.inner.revoked_sessions.lock().unwrap_or_else(PoisonError::into_inner).contains(sid)
    }

    /// Whether `sid` was found live in the store by this process (and not revoked since: a
    /// revocation by this process is checked first, in [`session_revoked_here`]).
    pub(crate) fn session_known_live(&self, sid: &str) -> bool {
        self.inner.live_sessions.lock().unwrap_or_else(PoisonError::into_inner).contains(sid)
    }

    /// Remembers that the store holds `sid` as a live session of `username`. The cache is
    /// bounded by [`LIVE_SESSION_CACHE`]: when full it starts over (the store is the truth).
    pub(crate) fn note_live_session(&self, username: &str, sid: &str) {
        {
            let mut live = self.inner.live_sessions.lock().unwrap_or_else(PoisonError::into_inner);
            if live.len() >= LIVE_SESSION_CACHE {
                live.clear();
            }
            live.insert(sid.to_owned());
        }
        self.note_session(username, sid);
    }

    /// A hash to verify against when the user does not exist, so that a failed login takes as
    /// long for unknown users as for wrong passwords.
    pub(crate) fn dummy_hash(&self) -> &OnceCell<String> {
        &self.inner.dummy_hash
    }
}
