//! [`AppState`]: the configuration, keys, store handles ([`Stores`]), login sessions
//! ([`Sessions`]), rate limiters ([`Limiters`]) and metrics every handler shares. Cloning is
//! cheap (one `Arc`).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use berth_controller::docker::Driver;
use berth_controller::store::{AccountStore, AuditLog, ResourceStore, StoreBackup};
use tokio::sync::{OnceCell, broadcast, watch};
use tokio_util::sync::CancellationToken;

use crate::auth::jwt::JwtKeys;
use crate::config::ServeConfig;
use crate::metrics::Metrics;
use crate::ratelimit::RateLimiter;
use crate::service::accounts::AccountChange;

/// How many live login sessions the authentication cache remembers before it starts over.
pub const LIVE_SESSION_CACHE: usize = 10_000;

/// Account changes buffered per listener (websocket connections) before it lags; a lagging
/// listener re-checks its principal, so nothing is missed.
const ACCOUNT_CHANGES_BUFFER: usize = 256;

/// Shared state for the REST and GraphQL handlers: the configuration and keys, and three
/// parts with their own methods: [`Stores`] (the store handles), [`Sessions`] (which login
/// sessions are revoked or known live, and the account-change feed) and [`Limiters`].
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: ServeConfig,
    keys: JwtKeys,
    stores: Stores,
    sessions: Sessions,
    limiters: Limiters,
    metrics: Metrics,
    ready: watch::Receiver<bool>,
    user_admin_lock: tokio::sync::Mutex<()>,
    dummy_hash: OnceCell<String>,
    shutdown: CancellationToken,
    driver: Option<Arc<dyn Driver>>,
    graphql: crate::graphql::Shared,
    sync_status: Option<watch::Receiver<crate::service::sync::SyncStatus>>,
}

/// The store handles: one store (a `SledStore`) seen through its four faces.
#[derive(Debug)]
pub struct Stores {
    resources: Arc<dyn ResourceStore>,
    audit: Arc<dyn AuditLog>,
    accounts: Arc<dyn AccountStore>,
    backup: Arc<dyn StoreBackup>,
}

impl Stores {
    fn new<S>(store: S) -> Self
    where
        S: ResourceStore + AuditLog + AccountStore + StoreBackup + Clone + 'static,
    {
        Self {
            resources: Arc::new(store.clone()),
            audit: Arc::new(store.clone()),
            accounts: Arc::new(store.clone()),
            backup: Arc::new(store),
        }
    }
}

/// Login sessions as this process knows them, and the feed of account changes.
///
/// The store is the truth for sessions (refresh-token families); this caches what it said
/// (bounded) and remembers what this process revoked, so that access tokens already issued
/// stop working at once. [`AccountChange`]s are published by the accounts service
/// ([`crate::service::accounts`]) and heard by every open GraphQL websocket, which re-checks
/// its credential.
#[derive(Debug)]
pub struct Sessions {
    revoked: Mutex<HashSet<String>>,
    live: Mutex<HashSet<String>>,
    by_user: Mutex<HashMap<String, HashSet<String>>>,
    changes: broadcast::Sender<AccountChange>,
}

impl Default for Sessions {
    fn default() -> Self {
        Self {
            revoked: Mutex::default(),
            live: Mutex::default(),
            by_user: Mutex::default(),
            changes: broadcast::channel(ACCOUNT_CHANGES_BUFFER).0,
        }
    }
}

impl Sessions {
    /// Marks a login session (refresh family) revoked for access tokens already issued.
    pub fn revoke(&self, sid: &str) {
        self.revoked.lock().unwrap_or_else(PoisonError::into_inner).insert(sid.to_owned());
    }

    /// Remembers that `sid` is a session of `username` (so that ending all of a user's sessions
    /// reaches access tokens already issued).
    pub fn note(&self, username: &str, sid: &str) {
        self.by_user
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(username.to_owned())
            .or_default()
            .insert(sid.to_owned());
    }

    /// Marks every session of `username` seen by this process revoked.
    pub fn revoke_user(&self, username: &str) {
        let sids = self.by_user.lock().unwrap_or_else(PoisonError::into_inner).remove(username);
        let mut revoked = self.revoked.lock().unwrap_or_else(PoisonError::into_inner);
        revoked.extend(sids.into_iter().flatten());
    }

    /// Whether this process revoked `sid`.
    pub fn revoked_here(&self, sid: &str) -> bool {
        self.revoked.lock().unwrap_or_else(PoisonError::into_inner).contains(sid)
    }

    /// Whether `sid` was found live in the store by this process (and not revoked since: a
    /// revocation by this process is checked first, in [`Sessions::revoked_here`]).
    pub fn known_live(&self, sid: &str) -> bool {
        self.live.lock().unwrap_or_else(PoisonError::into_inner).contains(sid)
    }

    /// Remembers that the store holds `sid` as a live session of `username`. The cache is
    /// bounded by [`LIVE_SESSION_CACHE`]: when full it starts over (the store is the truth).
    pub fn note_live(&self, username: &str, sid: &str) {
        {
            let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
            if live.len() >= LIVE_SESSION_CACHE {
                live.clear();
            }
            live.insert(sid.to_owned());
        }
        self.note(username, sid);
    }

    /// Tells every listener (open websockets) that an account changed. Nobody listening is
    /// fine.
    pub fn publish(&self, change: AccountChange) {
        let _ = self.changes.send(change);
    }

    /// Listens to account changes from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<AccountChange> {
        self.changes.subscribe()
    }
}

/// The rate limiters: login attempts and password checks per user and per address, and
/// requests per session or API token.
#[derive(Debug)]
pub struct Limiters {
    /// Password checks (login, own-password change) per lowercased user name.
    pub password_per_user: RateLimiter<String>,
    /// Password checks (login, own-password change) per client address.
    pub password_per_address: RateLimiter<IpAddr>,
    /// Authenticated requests (REST, GraphQL over HTTP, each websocket operation) per
    /// session or API token.
    pub per_token: RateLimiter<String>,
    /// Login attempts refused by a limiter, counted and audited once per
    /// [`REFUSED_LOGIN_AUDIT_EVERY`] instead of once each.
    refused_logins: Mutex<RefusedLogins>,
}

/// How often (at most) refused login attempts are summarised in one audit event.
pub const REFUSED_LOGIN_AUDIT_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

#[derive(Debug, Default)]
struct RefusedLogins {
    since_last_event: u64,
    last_event: Option<tokio::time::Instant>,
}

impl Limiters {
    fn new(config: &ServeConfig) -> Self {
        Self {
            password_per_user: RateLimiter::new(config.login_per_user),
            password_per_address: RateLimiter::new(config.login_per_address),
            per_token: RateLimiter::new(config.per_token),
            refused_logins: Mutex::default(),
        }
    }

    /// Takes one password check for `username` and (when known) `addr`.
    ///
    /// # Errors
    ///
    /// How long to wait, when either limiter refuses.
    pub fn check_password(
        &self,
        username: &str,
        addr: Option<IpAddr>,
    ) -> Result<(), std::time::Duration> {
        if let Some(ip) = addr {
            self.password_per_address.check(&ip)?;
        }
        self.password_per_user.check(&username.to_lowercase())
    }

    /// Counts one refused login; answers how many were refused since the last summary when a
    /// new summary event is due (at most one per [`REFUSED_LOGIN_AUDIT_EVERY`]).
    pub fn note_refused_login(&self) -> Option<u64> {
        let now = tokio::time::Instant::now();
        let mut r = self.refused_logins.lock().unwrap_or_else(PoisonError::into_inner);
        r.since_last_event += 1;
        let due = r.last_event.is_none_or(|t| now.duration_since(t) >= REFUSED_LOGIN_AUDIT_EVERY);
        if !due {
            return None;
        }
        r.last_event = Some(now);
        Some(std::mem::take(&mut r.since_last_event))
    }
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
                limiters: Limiters::new(&config),
                config,
                keys,
                stores: Stores::new(store),
                sessions: Sessions::default(),
                metrics,
                ready,
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
        self.inner.stores.resources.as_ref()
    }

    /// The audit log.
    pub fn audit(&self) -> &dyn AuditLog {
        self.inner.stores.audit.as_ref()
    }

    /// Users and tokens.
    pub fn accounts(&self) -> &dyn AccountStore {
        self.inner.stores.accounts.as_ref()
    }

    /// Online backups of the whole store (a shared handle: the snapshot runs on a blocking
    /// thread that outlives the handler).
    pub fn backup(&self) -> Arc<dyn StoreBackup> {
        Arc::clone(&self.inner.stores.backup)
    }

    /// The metrics registry (share it with the controller so its series show at `/metrics`).
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Whether the controller reports ready.
    pub fn is_ready(&self) -> bool {
        *self.inner.ready.borrow()
    }

    /// The rate limiters.
    pub fn limiters(&self) -> &Limiters {
        &self.inner.limiters
    }

    /// Requests per session or API token (see [`Limiters::per_token`]).
    pub(crate) fn per_token(&self) -> &RateLimiter<String> {
        &self.inner.limiters.per_token
    }

    /// Login sessions and the account-change feed.
    pub fn sessions(&self) -> &Sessions {
        &self.inner.sessions
    }

    /// Serializes user changes that must not leave berth without an enabled admin.
    pub(crate) fn user_admin_lock(&self) -> &tokio::sync::Mutex<()> {
        &self.inner.user_admin_lock
    }

    /// A hash to verify against when the user does not exist, so that a failed login takes as
    /// long for unknown users as for wrong passwords.
    pub(crate) fn dummy_hash(&self) -> &OnceCell<String> {
        &self.inner.dummy_hash
    }
}
