//! berth's embedded store: resources with revisions and optimistic concurrency, a change feed,
//! a keyed hash-chained audit log and accounts, in one data directory readable by its owner only.
//!
//! Callers use four traits and never see the engine: [`ResourceStore`] (the API server and
//! the reconciler), [`AuditLog`], [`AccountStore`] and [`StoreBackup`] (the API server).
//! [`SledStore`] implements all four on sled; it is a cheap handle to clone and share.
//!
//! # Guarantees
//!
//! - A write that returned `Ok` has been flushed to disk: it survives `kill -9`. Concurrent
//!   writers share flushes (group commit): one writer thread takes every queued write, commits
//!   them in one atomic batch, flushes once, then answers all of them.
//! - A resource write and its audit event are committed in the same atomic batch: never one
//!   without the other.
//! - Every resource write takes the next global revision; `metadata.resourceVersion` is that
//!   revision in decimal. Revisions have no gaps, so a watcher sees every change.
//! - A list is consistent: its items are exactly the state at its `revision`.
//! - After a storage failure (disk full, I/O error) the store refuses further writes and nothing
//!   more is acknowledged; berth should restart.
//!
//! # Layout
//!
//! - [`types`]: write context, outcomes, list queries.
//! - [`watch`]: the change feed.
//! - [`audit`]: audit events, their hash chain, queries.
//! - [`accounts`]: users, refresh-token families, API tokens; password and token hashing.
//! - [`backup`]: consistent snapshots to a file and restore into an empty data directory.
//! - [`datadir`]: the data directory's permissions (0700 / 0600).
//! - [`config`], [`error`].
//! - `engine`: the sled implementation ([`SledStore`]).

pub mod accounts;
pub mod audit;
pub mod backup;
pub mod config;
pub mod datadir;
mod engine;
pub mod error;
pub mod types;
pub mod watch;

use berth_schemas::{DynamicObject, ResourceKey};
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;

pub use accounts::{
    ApiToken, NewApiToken, NewUser, RefreshFamily, RefreshRotation, RefreshToken, Role, User,
    UserUpdate, hash_password, token_hash, verify_password,
};
pub use audit::{
    AuditEntry, AuditEvent, AuditHead, AuditKey, AuditKeyError, AuditOutcome, AuditPage,
    AuditQuery, AuditRetention, ExpectedHead, PruneReport, VerifyReport,
};
pub use config::StoreConfig;
pub use engine::{SledStore, StoreStats};
pub use error::StoreError;
pub use types::{Actor, ListQuery, ObjectList, Source, WriteContext, WriteOutcome, WriteResult};
pub use watch::{EventType, Watch, WatchError, WatchEvent, WatchQuery};

/// Shorthand for store results.
pub type StoreResult<T> = Result<T, StoreError>;

/// Desired state: resources with revisions, optimistic concurrency, finalizers and a change
/// feed.
///
/// Server-set metadata in a request (`uid`, `generation`, `creationTimestamp`,
/// `deletionTimestamp`, `finalizers`) is ignored; `status` in a request is ignored too (use
/// [`update_status`](ResourceStore::update_status)). Finalizers change only through the
/// finalizer calls ([`add_finalizer`](ResourceStore::add_finalizer)), which only the controller
/// makes: a client cannot make a resource that can never be deleted.
pub trait ResourceStore: Send + Sync + std::fmt::Debug {
    /// Creates an object: assigns a uid, `generation: 1`, a new `resourceVersion` and
    /// `creationTimestamp`.
    ///
    /// # Errors
    ///
    /// [`StoreError::AlreadyExists`]; [`StoreError::Invalid`] for an empty name or a request
    /// that names a `resourceVersion`; storage errors.
    fn create(
        &self,
        ctx: &WriteContext,
        object: DynamicObject,
    ) -> BoxFuture<'_, StoreResult<WriteResult>>;

    /// Creates the object or updates it (kubectl apply): `generation` moves only when `spec`
    /// changes; labels and annotations are replaced; a request equal to what is stored writes
    /// nothing and reports [`WriteOutcome::Unchanged`]. When the request names
    /// `metadata.resourceVersion`, it must be the current one, or one that only status and
    /// finalizer writes have moved past (those cannot be overwritten by this write, so they do
    /// not make it conflict).
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] for a stale `resourceVersion` (or one naming an object that
    /// does not exist); [`StoreError::Terminating`] when changing an object being deleted;
    /// storage errors.
    fn apply(
        &self,
        ctx: &WriteContext,
        object: DynamicObject,
    ) -> BoxFuture<'_, StoreResult<WriteResult>>;

    /// What [`apply`](ResourceStore::apply) of `object` would answer now, writing nothing:
    /// the outcome, the stored object and the object as it would be (without the `uid`,
    /// `resourceVersion` and `creationTimestamp` a create would assign). Decided by the same
    /// code as the write, so a dry run and the real apply agree on conflicts (a
    /// `resourceVersion` moved only by status or finalizer writes is accepted by both).
    ///
    /// # Errors
    ///
    /// As `apply`: [`StoreError::Conflict`], [`StoreError::Terminating`],
    /// [`StoreError::Invalid`]; storage errors.
    fn apply_dry_run(&self, object: DynamicObject) -> BoxFuture<'_, StoreResult<WriteResult>>;

    /// As [`apply`](ResourceStore::apply), but the object must exist.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`], and as `apply`.
    fn update(
        &self,
        ctx: &WriteContext,
        object: DynamicObject,
    ) -> BoxFuture<'_, StoreResult<WriteResult>>;

    /// Replaces `status`. Never bumps `generation` and never conflicts with spec writes, but
    /// takes a new `resourceVersion`. An equal status writes nothing.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`]; storage errors.
    fn update_status(
        &self,
        ctx: &WriteContext,
        key: &ResourceKey,
        status: serde_json::Value,
    ) -> BoxFuture<'_, StoreResult<WriteResult>>;

    /// Deletes: with finalizers, sets `deletionTimestamp` ([`WriteOutcome::Terminating`]);
    /// without, removes the object ([`WriteOutcome::Deleted`]). Deleting an object already
    /// terminating is [`WriteOutcome::Unchanged`].
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`]; storage errors.
    fn delete(
        &self,
        ctx: &WriteContext,
        key: &ResourceKey,
    ) -> BoxFuture<'_, StoreResult<WriteResult>>;

    /// Adds a finalizer (no-op when present).
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`]; [`StoreError::Terminating`]; storage errors.
    fn add_finalizer(
        &self,
        ctx: &WriteContext,
        key: &ResourceKey,
        finalizer: &str,
    ) -> BoxFuture<'_, StoreResult<WriteResult>>;

    /// Removes a finalizer (no-op when absent). Removing the last finalizer of an object being
    /// deleted removes the object ([`WriteOutcome::Deleted`]).
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`]; storage errors.
    fn remove_finalizer(
        &self,
        ctx: &WriteContext,
        key: &ResourceKey,
        finalizer: &str,
    ) -> BoxFuture<'_, StoreResult<WriteResult>>;

    /// Reads one object.
    ///
    /// # Errors
    ///
    /// Storage or decode errors (a missing object is `Ok(None)`).
    fn get(&self, key: &ResourceKey) -> BoxFuture<'_, StoreResult<Option<DynamicObject>>>;

    /// Lists objects by kind, namespace and label selector, with the revision they reflect.
    ///
    /// # Errors
    ///
    /// Storage or decode errors.
    fn list(&self, query: &ListQuery) -> BoxFuture<'_, StoreResult<ObjectList>>;

    /// Starts a watch (see [`watch`] for the guarantees).
    ///
    /// # Errors
    ///
    /// [`WatchError::TooOld`] when the revision is older than the kept history;
    /// [`WatchError::Closed`] after shutdown.
    fn watch(&self, query: WatchQuery) -> Result<Watch, WatchError>;

    /// The revision of the latest committed write.
    fn revision(&self) -> u64;

    /// This store's instance id: a UUID made when the data directory was first created, kept
    /// in it and carried by its backups (a restore keeps it). The controller labels the Docker
    /// objects it makes with it and only ever adopts or removes objects carrying its own.
    fn instance_id(&self) -> &str;
}

/// The audit log (see [`audit`]).
pub trait AuditLog: Send + Sync + std::fmt::Debug {
    /// Appends an event that is not a resource mutation (a failed login, a denied request, a
    /// sync error), durably, on the same chain.
    ///
    /// # Errors
    ///
    /// Storage errors.
    fn append(&self, entry: AuditEntry) -> BoxFuture<'_, StoreResult<AuditEvent>>;

    /// One page of events matching `query`.
    ///
    /// # Errors
    ///
    /// Storage errors; [`StoreError::Decode`] for a record that does not decode (run
    /// [`verify`](AuditLog::verify)).
    fn query(&self, query: &AuditQuery) -> BoxFuture<'_, StoreResult<AuditPage>>;

    /// Checks the whole kept chain (from the oldest event retention kept); the report names
    /// the first bad event, and says from which event the chain is keyed.
    ///
    /// # Errors
    ///
    /// Storage errors (a broken chain is a report, not an error).
    fn verify(&self) -> BoxFuture<'_, StoreResult<VerifyReport>>;

    /// As [`verify`](AuditLog::verify), and the chain must contain `expect` (a head exported
    /// earlier): the report has a problem when it does not, which detects a rewrite of history
    /// even by someone holding the audit key.
    ///
    /// # Errors
    ///
    /// Storage errors.
    fn verify_expecting(
        &self,
        expect: Option<ExpectedHead>,
    ) -> BoxFuture<'_, StoreResult<VerifyReport>>;

    /// The latest event's sequence number and hash (`None` for an empty log).
    ///
    /// # Errors
    ///
    /// Storage errors.
    fn head(&self) -> BoxFuture<'_, StoreResult<Option<AuditHead>>>;
}

/// Users, refresh tokens and API tokens (see [`accounts`]). Every change is audited, without
/// secrets.
pub trait AccountStore: Send + Sync + std::fmt::Debug {
    /// Creates a user.
    ///
    /// # Errors
    ///
    /// [`StoreError::AccountExists`]; [`StoreError::Invalid`] for a bad user name; storage
    /// errors.
    fn create_user(&self, ctx: &WriteContext, user: NewUser) -> BoxFuture<'_, StoreResult<User>>;

    /// Reads a user.
    ///
    /// # Errors
    ///
    /// Storage errors (a missing user is `Ok(None)`).
    fn get_user(&self, username: &str) -> BoxFuture<'_, StoreResult<Option<User>>>;

    /// Every user, by name.
    ///
    /// # Errors
    ///
    /// Storage errors.
    fn list_users(&self) -> BoxFuture<'_, StoreResult<Vec<User>>>;

    /// Changes a user's password hash, role or disabled flag.
    ///
    /// # Errors
    ///
    /// [`StoreError::AccountNotFound`]; storage errors.
    fn update_user(
        &self,
        ctx: &WriteContext,
        username: &str,
        update: UserUpdate,
    ) -> BoxFuture<'_, StoreResult<User>>;

    /// Deletes a user (their tokens stay until revoked; the API revokes them).
    ///
    /// # Errors
    ///
    /// [`StoreError::AccountNotFound`]; storage errors.
    fn delete_user(&self, ctx: &WriteContext, username: &str) -> BoxFuture<'_, StoreResult<User>>;

    /// Stores a refresh token: in a new family when `family_id` is `None` (login), else in that
    /// family.
    ///
    /// # Errors
    ///
    /// [`StoreError::AccountNotFound`] for an unknown user or family; storage errors.
    fn issue_refresh_token(
        &self,
        ctx: &WriteContext,
        username: &str,
        token_hash: &str,
        expires: DateTime<Utc>,
        family_id: Option<&str>,
    ) -> BoxFuture<'_, StoreResult<RefreshToken>>;

    /// Exchanges a refresh token for a new one, atomically: a token presented for the second
    /// time revokes its family.
    ///
    /// # Errors
    ///
    /// Storage errors (unknown, expired, revoked and reused tokens are outcomes).
    fn rotate_refresh_token(
        &self,
        ctx: &WriteContext,
        old_hash: &str,
        new_hash: &str,
        expires: DateTime<Utc>,
    ) -> BoxFuture<'_, StoreResult<RefreshRotation>>;

    /// Revokes the family a refresh token belongs to (logout). Returns the family, or `None`
    /// for an unknown token.
    ///
    /// # Errors
    ///
    /// Storage errors.
    fn revoke_refresh_family(
        &self,
        ctx: &WriteContext,
        token_hash: &str,
    ) -> BoxFuture<'_, StoreResult<Option<RefreshFamily>>>;

    /// Revokes a refresh-token family by its id (logout with the access token alone: the
    /// token names its family). Returns the family, or `None` for an unknown id.
    ///
    /// # Errors
    ///
    /// Storage errors.
    fn revoke_refresh_family_by_id(
        &self,
        ctx: &WriteContext,
        id: &str,
    ) -> BoxFuture<'_, StoreResult<Option<RefreshFamily>>>;

    /// One refresh-token family (login session) by id, revoked or not; `Ok(None)` when there
    /// is none. Access tokens name their family, so this is how a revoked session's access
    /// tokens are refused after a restart.
    ///
    /// # Errors
    ///
    /// Storage or decode errors.
    fn get_refresh_family(&self, id: &str) -> BoxFuture<'_, StoreResult<Option<RefreshFamily>>>;

    /// Revokes every refresh-token family of a user; returns how many were revoked.
    ///
    /// # Errors
    ///
    /// Storage errors.
    fn revoke_user_refresh_families(
        &self,
        ctx: &WriteContext,
        username: &str,
    ) -> BoxFuture<'_, StoreResult<usize>>;

    /// Creates an API token (id assigned by the store).
    ///
    /// # Errors
    ///
    /// [`StoreError::AccountNotFound`] for an unknown owner; [`StoreError::AccountExists`]
    /// when the hash is already stored; storage errors.
    fn create_api_token(
        &self,
        ctx: &WriteContext,
        token: NewApiToken,
    ) -> BoxFuture<'_, StoreResult<ApiToken>>;

    /// Finds an API token by the hash of the presented token (active or not: check
    /// [`ApiToken::is_active`]).
    ///
    /// # Errors
    ///
    /// Storage errors.
    fn find_api_token(&self, token_hash: &str) -> BoxFuture<'_, StoreResult<Option<ApiToken>>>;

    /// API tokens, all or one owner's.
    ///
    /// # Errors
    ///
    /// Storage errors.
    fn list_api_tokens(&self, owner: Option<&str>) -> BoxFuture<'_, StoreResult<Vec<ApiToken>>>;

    /// Revokes an API token by id.
    ///
    /// # Errors
    ///
    /// [`StoreError::AccountNotFound`]; storage errors.
    fn revoke_api_token(
        &self,
        ctx: &WriteContext,
        id: &str,
    ) -> BoxFuture<'_, StoreResult<ApiToken>>;
}

/// Online backups: a consistent snapshot of the whole store (resources, audit log, accounts)
/// taken while it serves, in the `berth-backup` format of [`backup`].
pub trait StoreBackup: Send + Sync + std::fmt::Debug {
    /// Writes the snapshot to `sink`. Blocking: call it from a blocking thread.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backup`] when `sink` fails; storage errors.
    fn backup_to(&self, sink: &mut dyn std::io::Write) -> StoreResult<backup::BackupSummary>;
}

impl StoreBackup for SledStore {
    fn backup_to(&self, sink: &mut dyn std::io::Write) -> StoreResult<backup::BackupSummary> {
        SledStore::backup_to(self, sink)
    }
}
