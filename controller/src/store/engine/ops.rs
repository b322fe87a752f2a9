//! What each write does inside the batch transaction: read the current record, decide, write
//! the new record and its audit event.
//!
//! Everything here runs on the writer thread inside one sled transaction per batch. A job that
//! is refused (conflict, not found) writes nothing and does not stop the batch; only a storage
//! failure aborts the whole batch.

use berth_schemas::meta::DEFAULT_NAMESPACE;
use berth_schemas::{API_VERSION, DynamicObject, ResourceKey};
use chrono::Utc;
use sled::transaction::{TransactionalTree, UnabortableTransactionError};

use crate::store::accounts::{
    ApiToken, NewApiToken, NewUser, RefreshFamily, RefreshRotation, RefreshToken, User, UserUpdate,
    check_username,
};
use crate::store::audit::{
    self, AuditEntry, AuditEvent, AuditKey, AuditOutcome, ChainStart, verbs,
};
use crate::store::error::StoreError;
use crate::store::types::{WriteContext, WriteOutcome, WriteResult};
use crate::store::watch::{EventType, WatchEvent};

/// Tree indexes in the transaction view.
pub(crate) const RESOURCES: usize = 0;
pub(crate) const AUDIT: usize = 1;
pub(crate) const META: usize = 2;
pub(crate) const USERS: usize = 3;
pub(crate) const REFRESH: usize = 4;
pub(crate) const FAMILIES: usize = 5;
pub(crate) const TOKENS: usize = 6;
pub(crate) const TOKEN_HASHES: usize = 7;
/// Per resource, the revision of its last spec/labels/annotations write: what a
/// `resourceVersion` precondition is checked against, so that status and finalizer writes in
/// between do not make a spec write conflict.
pub(crate) const SPEC_VERSIONS: usize = 8;
/// Tree names, in index order.
pub(crate) const TREE_NAMES: [&str; 9] = [
    "resources",
    "audit",
    "meta",
    "users",
    "refresh_tokens",
    "refresh_families",
    "api_tokens",
    "api_token_hashes",
    "spec_versions",
];

/// Meta keys.
pub(crate) const META_FORMAT: &[u8] = b"format";
pub(crate) const META_REVISION: &[u8] = b"revision";
pub(crate) const META_AUDIT_HEAD: &[u8] = b"audit_head";
/// Where the kept audit chain starts, once retention removed older events: the oldest kept
/// sequence number and the hash it chains from, with an HMAC under the audit key
/// ([`ChainStart`]).
pub(crate) const META_AUDIT_BASE: &[u8] = b"audit_base";
/// The first keyed audit event's sequence number, with an HMAC under the audit key: written
/// when a store is first opened with a new key. Verification with the key requires it.
pub(crate) const META_AUDIT_KEYED_FROM: &[u8] = b"audit_keyed_from";
/// The store's instance id (a UUID made when the data directory is first created; see
/// [`crate::store::ResourceStore::instance_id`]).
pub(crate) const META_INSTANCE: &[u8] = b"instance";
/// The on-disk format this code writes and reads.
pub(crate) const FORMAT_VERSION: &[u8] = b"berth-store-1";

/// A write request.
#[derive(Debug)]
pub(crate) enum Request {
    Create(DynamicObject),
    Apply(DynamicObject),
    Update(DynamicObject),
    Status(ResourceKey, serde_json::Value),
    Delete(ResourceKey),
    AddFinalizer(ResourceKey, String),
    RemoveFinalizer(ResourceKey, String),
    CreateUser(NewUser),
    UpdateUser(String, UserUpdate),
    DeleteUser(String),
    IssueRefresh {
        username: String,
        token_hash: String,
        expires: chrono::DateTime<Utc>,
        family_id: Option<String>,
    },
    RotateRefresh {
        old_hash: String,
        new_hash: String,
        expires: chrono::DateTime<Utc>,
    },
    RevokeFamily(String),
    RevokeFamilyById(String),
    RevokeUserFamilies(String),
    CreateApiToken(NewApiToken),
    RevokeApiToken(String),
    Append(AuditEntry),
    /// Removes the audit events from the current chain start up to (not including) this
    /// sequence number, which becomes the new start.
    PruneAudit(u64),
}

impl Request {
    /// Whether the job reads a range of a tree (which a transaction cannot do), so it must run
    /// first in its batch, where the committed state is what the transaction sees.
    pub(crate) fn needs_scan(&self) -> bool {
        matches!(self, Request::RevokeUserFamilies(_))
    }
}

/// A write's answer.
#[derive(Debug)]
pub(crate) enum Reply {
    Write(Box<WriteResult>),
    User(User),
    Refresh(RefreshToken),
    Rotation(RefreshRotation),
    Family(Option<RefreshFamily>),
    Count(usize),
    Token(ApiToken),
    Event(Box<AuditEvent>),
}

/// Counters the writer carries from batch to batch.
#[derive(Debug, Clone)]
pub(crate) struct Counters {
    /// The latest revision used.
    pub revision: u64,
    /// The next audit sequence number.
    pub next_seq: u64,
    /// The hash of the last audit event (genesis when none).
    pub head_hash: String,
}

/// A batch in progress: counters as the batch moves them, and the events to publish.
pub(crate) struct Batch<'a> {
    pub trees: &'a [TransactionalTree],
    pub counters: Counters,
    pub events: Vec<WatchEvent>,
    /// What range-reading jobs need, read before the transaction (sled cannot iterate inside
    /// one): the committed refresh families, for a job that runs first in its batch.
    pub families: &'a [RefreshFamily],
    /// The audit chain's key.
    key: Option<&'a AuditKey>,
    start: Counters,
}

/// Why a job stopped: refused (the batch goes on) or a storage failure (the batch aborts).
pub(crate) enum Fail {
    Refused(StoreError),
    Storage(UnabortableTransactionError),
}

impl From<UnabortableTransactionError> for Fail {
    fn from(e: UnabortableTransactionError) -> Self {
        Fail::Storage(e)
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        Fail::Refused(e)
    }
}

type JobResult<T> = Result<T, Fail>;

/// The storage key of a resource: `kind \0 namespace \0 name`.
pub(crate) fn resource_key(key: &ResourceKey) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.namespace.len() + key.name.len() + 12);
    k.extend_from_slice(key.kind.as_str().as_bytes());
    k.push(0);
    k.extend_from_slice(key.namespace.as_bytes());
    k.push(0);
    k.extend_from_slice(key.name.as_bytes());
    k
}

/// The storage key prefix of a kind (and namespace).
pub(crate) fn resource_prefix(kind: berth_schemas::Kind, namespace: Option<&str>) -> Vec<u8> {
    let mut k = kind.as_str().as_bytes().to_vec();
    k.push(0);
    if let Some(ns) = namespace {
        k.extend_from_slice(ns.as_bytes());
        k.push(0);
    }
    k
}

pub(crate) fn check_key(key: &ResourceKey) -> Result<(), StoreError> {
    let invalid = |reason: &str| StoreError::Invalid { reason: format!("{key}: {reason}") };
    if key.name.is_empty() {
        return Err(invalid("metadata.name must not be empty"));
    }
    if key.namespace.is_empty() {
        return Err(invalid("metadata.namespace must not be empty"));
    }
    if key.name.len() > 253 || key.namespace.len() > 253 {
        return Err(invalid("name and namespace must be at most 253 bytes"));
    }
    if key.name.contains('\0') || key.namespace.contains('\0') {
        return Err(invalid("name and namespace must not contain NUL"));
    }
    Ok(())
}

pub(crate) fn decode_object(key: &[u8], value: &[u8]) -> Result<DynamicObject, StoreError> {
    serde_json::from_slice(value).map_err(|source| StoreError::Decode {
        what: format!("resource {}", String::from_utf8_lossy(key).replace('\0', "/")),
        source,
    })
}

fn encode<T: serde::Serialize>(what: &str, value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value)
        .map_err(|e| StoreError::Invalid { reason: format!("cannot encode {what}: {e}") })
}

fn decode<T: serde::de::DeserializeOwned>(what: String, value: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(value).map_err(|source| StoreError::Decode { what, source })
}

impl<'a> Batch<'a> {
    pub(crate) fn new(
        trees: &'a [TransactionalTree],
        counters: &Counters,
        families: &'a [RefreshFamily],
        key: Option<&'a AuditKey>,
    ) -> Self {
        Self {
            trees,
            counters: counters.clone(),
            events: Vec::new(),
            families,
            key,
            start: counters.clone(),
        }
    }

    fn tree(&self, index: usize) -> &TransactionalTree {
        &self.trees[index]
    }

    /// Runs one job. `Ok(Err(_))` is a refusal (nothing written); `Err(_)` aborts the batch.
    pub(crate) fn run(
        &mut self,
        ctx: &WriteContext,
        request: &Request,
    ) -> Result<Result<Reply, StoreError>, UnabortableTransactionError> {
        // A refused job must leave no trace, so undo counter and event changes it made.
        let counters = self.counters.clone();
        let events = self.events.len();
        match self.dispatch(ctx, request) {
            Ok(reply) => Ok(Ok(reply)),
            Err(Fail::Refused(e)) => {
                self.counters = counters;
                self.events.truncate(events);
                Ok(Err(e))
            }
            Err(Fail::Storage(e)) => Err(e),
        }
    }

    /// Writes the counters to the meta tree when the batch moved them.
    pub(crate) fn finish(&self) -> Result<(), UnabortableTransactionError> {
        let meta = self.tree(META);
        if self.counters.revision != self.start.revision {
            meta.insert(META_REVISION, &self.counters.revision.to_be_bytes())?;
        }
        if self.counters.next_seq != self.start.next_seq {
            let mut head = (self.counters.next_seq - 1).to_be_bytes().to_vec();
            head.extend_from_slice(self.counters.head_hash.as_bytes());
            meta.insert(META_AUDIT_HEAD, head)?;
        }
        Ok(())
    }

    fn dispatch(&mut self, ctx: &WriteContext, request: &Request) -> JobResult<Reply> {
        match request {
            Request::Create(o) => self.put(ctx, o, Mode::Create).map(|r| Reply::Write(Box::new(r))),
            Request::Apply(o) => self.put(ctx, o, Mode::Apply).map(|r| Reply::Write(Box::new(r))),
            Request::Update(o) => self.put(ctx, o, Mode::Update).map(|r| Reply::Write(Box::new(r))),
            Request::Status(key, status) => {
                self.status(ctx, key, status).map(|r| Reply::Write(Box::new(r)))
            }
            Request::Delete(key) => self.delete(ctx, key).map(|r| Reply::Write(Box::new(r))),
            Request::AddFinalizer(key, f) => {
                self.add_finalizer(ctx, key, f).map(|r| Reply::Write(Box::new(r)))
            }
            Request::RemoveFinalizer(key, f) => {
                self.remove_finalizer(ctx, key, f).map(|r| Reply::Write(Box::new(r)))
            }
            Request::CreateUser(u) => self.create_user(ctx, u).map(Reply::User),
            Request::UpdateUser(name, u) => self.update_user(ctx, name, u).map(Reply::User),
            Request::DeleteUser(name) => self.delete_user(ctx, name).map(Reply::User),
            Request::IssueRefresh { username, token_hash, expires, family_id } => self
                .issue_refresh(ctx, username, token_hash, *expires, family_id.as_deref())
                .map(Reply::Refresh),
            Request::RotateRefresh { old_hash, new_hash, expires } => {
                self.rotate_refresh(ctx, old_hash, new_hash, *expires).map(Reply::Rotation)
            }
            Request::RevokeFamily(hash) => self.revoke_family(ctx, hash).map(Reply::Family),
            Request::RevokeFamilyById(id) => match self.family(id)? {
                Some(family) => {
                    self.revoke_family_record(ctx, family).map(|f| Reply::Family(Some(f)))
                }
                None => Ok(Reply::Family(None)),
            },
            Request::RevokeUserFamilies(user) => {
                self.revoke_user_families(ctx, user).map(Reply::Count)
            }
            Request::CreateApiToken(t) => self.create_token(ctx, t).map(Reply::Token),
            Request::RevokeApiToken(id) => self.revoke_token(ctx, id).map(Reply::Token),
            Request::Append(entry) => self
                .append_entry(entry.clone())
                .map(|e| Reply::Event(Box::new(e)))
                .map_err(Fail::from),
            Request::PruneAudit(upto) => self.prune_audit(*upto).map(Reply::Count),
        }
    }

    // ---------------------------------------------------------------- audit

    /// Appends an event that is not a resource or account write.
    pub(crate) fn append_entry(
        &mut self,
        entry: AuditEntry,
    ) -> Result<AuditEvent, UnabortableTransactionError> {
        self.append(entry.into_event())
    }

    /// Every audit event goes in here: capped in size, chained, keyed when there is a key.
    fn append(&mut self, mut event: AuditEvent) -> Result<AuditEvent, UnabortableTransactionError> {
        audit::cap(&mut event);
        event.seq = self.counters.next_seq;
        event.time = Utc::now();
        event.prev_hash = self.counters.head_hash.clone();
        // Encoding an audit event (plain strings and numbers) cannot fail; should it ever, the
        // event still goes in with an empty body rather than the write going unaudited.
        let value = audit::encode(&mut event, self.key).unwrap_or_default();
        self.tree(AUDIT).insert(&event.seq.to_be_bytes(), value)?;
        self.counters.head_hash = event.hash.clone();
        self.counters.next_seq += 1;
        Ok(event)
    }

    /// Removes events from the chain start up to `upto` (never the latest event), recording
    /// `upto` and the hash it chains from as the new start. Returns how many went.
    fn prune_audit(&mut self, upto: u64) -> JobResult<usize> {
        let start = match self.tree(META).get(META_AUDIT_BASE)? {
            Some(v) => ChainStart::decode(&v).map_or(0, |(s, _)| s.seq),
            None => 0,
        };
        let last = self.counters.next_seq.checked_sub(1);
        if upto <= start || last.is_none_or(|last| upto > last) {
            return Ok(0);
        }
        let Some(value) = self.tree(AUDIT).get(upto.to_be_bytes())? else {
            return Err(Fail::Refused(StoreError::Invalid {
                reason: format!("audit event {upto} is missing; not pruning"),
            }));
        };
        let prev = match audit::decode(&value, None) {
            Ok((e, _)) => e.prev_hash,
            Err(p) => {
                return Err(Fail::Refused(StoreError::Invalid {
                    reason: format!("audit event {upto}: {p}; not pruning"),
                }));
            }
        };
        let base = ChainStart { seq: upto, prev };
        self.tree(META).insert(META_AUDIT_BASE, base.encode(self.key))?;
        let mut removed = 0;
        for seq in start..upto {
            if self.tree(AUDIT).remove(&seq.to_be_bytes())?.is_some() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn audit_resource(
        &mut self,
        ctx: &WriteContext,
        verb: &str,
        old: Option<&DynamicObject>,
        new: Option<&DynamicObject>,
    ) -> Result<(), UnabortableTransactionError> {
        let any = new.or(old);
        let mut event = AuditEntry::new(ctx.clone(), verb, AuditOutcome::Success).into_event();
        if let Some(o) = any {
            event.kind = Some(o.kind.as_str().to_owned());
            event.namespace = Some(o.metadata.namespace.clone());
            event.name = Some(o.metadata.name.clone());
            event.uid = o.metadata.uid.clone();
        }
        event.resource_version_before = old.and_then(|o| o.metadata.resource_version.clone());
        event.resource_version_after = new.and_then(|o| o.metadata.resource_version.clone());
        event.spec_hash_before = old.map(|o| audit::spec_hash(&o.spec));
        event.spec_hash_after = new.map(|o| audit::spec_hash(&o.spec));
        event.diff = audit::changed_paths(old, new);
        self.append(event)?;
        Ok(())
    }

    fn audit_account(
        &mut self,
        ctx: &WriteContext,
        verb: &str,
        kind: &str,
        name: &str,
        diff: Vec<String>,
    ) -> Result<(), UnabortableTransactionError> {
        let mut event = AuditEntry::new(ctx.clone(), verb, AuditOutcome::Success)
            .target(kind, None, name)
            .into_event();
        event.diff = diff;
        self.append(event)?;
        Ok(())
    }

    // ---------------------------------------------------------------- resources

    fn load(&self, key: &ResourceKey) -> JobResult<Option<DynamicObject>> {
        let k = resource_key(key);
        match self.tree(RESOURCES).get(&k)? {
            Some(v) => Ok(Some(decode_object(&k, &v)?)),
            None => Ok(None),
        }
    }

    fn load_existing(&self, key: &ResourceKey) -> JobResult<DynamicObject> {
        self.load(key)?.ok_or_else(|| Fail::Refused(StoreError::NotFound { key: key.clone() }))
    }

    fn next_revision(&mut self) -> u64 {
        self.counters.revision += 1;
        self.counters.revision
    }

    fn store(&mut self, object: &DynamicObject) -> JobResult<()> {
        let value = encode("resource", object)?;
        self.tree(RESOURCES).insert(resource_key(&object.key()), value)?;
        Ok(())
    }

    /// Records that the spec, labels or annotations of `key` were written at the current
    /// revision.
    fn mark_spec_write(&mut self, key: &ResourceKey) -> JobResult<()> {
        self.tree(SPEC_VERSIONS)
            .insert(resource_key(key), &self.counters.revision.to_be_bytes())?;
        Ok(())
    }

    /// The revision of the last spec, labels or annotations write of `key` (see
    /// [`SPEC_VERSIONS`]).
    fn spec_version(&self, key: &ResourceKey) -> JobResult<Option<u64>> {
        Ok(self
            .tree(SPEC_VERSIONS)
            .get(resource_key(key))?
            .and_then(|v| v.as_ref().try_into().ok().map(u64::from_be_bytes)))
    }

    fn emit(&mut self, event_type: EventType, object: &DynamicObject) {
        self.events.push(WatchEvent {
            revision: self.counters.revision,
            event_type,
            object: object.clone(),
        });
    }

    fn result(
        &self,
        outcome: WriteOutcome,
        old: Option<DynamicObject>,
        object: DynamicObject,
    ) -> WriteResult {
        WriteResult { outcome, old, object, revision: self.counters.revision }
    }

    fn put(
        &mut self,
        ctx: &WriteContext,
        request: &DynamicObject,
        mode: Mode,
    ) -> JobResult<WriteResult> {
        let put = PutRequest::new(request)?;
        let key = put.key.clone();
        let current = self.load(&key)?;
        let spec_rv = match (&current, &put.wanted_rv) {
            (Some(_), Some(_)) => self.spec_version(&key)?,
            _ => None,
        };
        match plan_put(put, current, spec_rv, mode)? {
            PutPlan::Unchanged(old) => {
                let object = old.clone();
                Ok(self.result(WriteOutcome::Unchanged, Some(old), object))
            }
            PutPlan::Create(mut object) => {
                let revision = self.next_revision();
                let meta = &mut object.metadata;
                meta.uid = Some(uuid::Uuid::new_v4().to_string());
                meta.resource_version = Some(revision.to_string());
                meta.creation_timestamp = Some(Utc::now());
                self.store(&object)?;
                self.mark_spec_write(&key)?;
                self.audit_resource(ctx, verbs::CREATE, None, Some(&object))?;
                self.emit(EventType::Added, &object);
                Ok(self.result(WriteOutcome::Created, None, object))
            }
            PutPlan::Update { old, object } => {
                let (old, mut object) = (*old, *object);
                let revision = self.next_revision();
                object.metadata.resource_version = Some(revision.to_string());
                self.store(&object)?;
                self.mark_spec_write(&key)?;
                self.audit_resource(ctx, verbs::UPDATE, Some(&old), Some(&object))?;
                self.emit(EventType::Modified, &object);
                Ok(self.result(WriteOutcome::Configured, Some(old), object))
            }
        }
    }

    fn modify(
        &mut self,
        ctx: &WriteContext,
        verb: &str,
        old: DynamicObject,
        mut object: DynamicObject,
        outcome: WriteOutcome,
    ) -> JobResult<WriteResult> {
        let revision = self.next_revision();
        object.metadata.resource_version = Some(revision.to_string());
        self.store(&object)?;
        self.audit_resource(ctx, verb, Some(&old), Some(&object))?;
        self.emit(EventType::Modified, &object);
        Ok(self.result(outcome, Some(old), object))
    }

    fn remove(
        &mut self,
        ctx: &WriteContext,
        verb: &str,
        old: DynamicObject,
    ) -> JobResult<WriteResult> {
        let revision = self.next_revision();
        self.tree(RESOURCES).remove(resource_key(&old.key()))?;
        self.tree(SPEC_VERSIONS).remove(resource_key(&old.key()))?;
        let mut last = old.clone();
        last.metadata.resource_version = Some(revision.to_string());
        self.audit_resource(ctx, verb, Some(&old), None)?;
        self.emit(EventType::Deleted, &last);
        Ok(self.result(WriteOutcome::Deleted, Some(old), last))
    }

    fn status(
        &mut self,
        ctx: &WriteContext,
        key: &ResourceKey,
        status: &serde_json::Value,
    ) -> JobResult<WriteResult> {
        let old = self.load_existing(key)?;
        if old.status == *status {
            let object = old.clone();
            return Ok(self.result(WriteOutcome::Unchanged, Some(old), object));
        }
        let mut object = old.clone();
        object.status = status.clone();
        self.modify(ctx, verbs::UPDATE_STATUS, old, object, WriteOutcome::Configured)
    }

    fn delete(&mut self, ctx: &WriteContext, key: &ResourceKey) -> JobResult<WriteResult> {
        let old = self.load_existing(key)?;
        if old.metadata.deletion_timestamp.is_some() {
            let object = old.clone();
            return Ok(self.result(WriteOutcome::Unchanged, Some(old), object));
        }
        if old.metadata.finalizers.is_empty() {
            return self.remove(ctx, verbs::DELETE, old);
        }
        let mut object = old.clone();
        object.metadata.deletion_timestamp = Some(Utc::now());
        self.modify(ctx, verbs::DELETE, old, object, WriteOutcome::Terminating)
    }

    fn add_finalizer(
        &mut self,
        ctx: &WriteContext,
        key: &ResourceKey,
        finalizer: &str,
    ) -> JobResult<WriteResult> {
        if finalizer.is_empty() {
            return Err(
                StoreError::Invalid { reason: "finalizer name must not be empty".into() }.into()
            );
        }
        let old = self.load_existing(key)?;
        if old.metadata.finalizers.iter().any(|f| f == finalizer) {
            let object = old.clone();
            return Ok(self.result(WriteOutcome::Unchanged, Some(old), object));
        }
        if old.metadata.deletion_timestamp.is_some() {
            return Err(StoreError::Terminating { key: key.clone() }.into());
        }
        let mut object = old.clone();
        object.metadata.finalizers.push(finalizer.to_owned());
        self.modify(ctx, verbs::ADD_FINALIZER, old, object, WriteOutcome::Configured)
    }

    fn remove_finalizer(
        &mut self,
        ctx: &WriteContext,
        key: &ResourceKey,
        finalizer: &str,
    ) -> JobResult<WriteResult> {
        let old = self.load_existing(key)?;
        if !old.metadata.finalizers.iter().any(|f| f == finalizer) {
            let object = old.clone();
            return Ok(self.result(WriteOutcome::Unchanged, Some(old), object));
        }
        let mut object = old.clone();
        object.metadata.finalizers.retain(|f| f != finalizer);
        if object.metadata.finalizers.is_empty() && object.metadata.deletion_timestamp.is_some() {
            return self.remove(ctx, verbs::REMOVE_FINALIZER, old);
        }
        let outcome = if object.metadata.deletion_timestamp.is_some() {
            WriteOutcome::Terminating
        } else {
            WriteOutcome::Configured
        };
        self.modify(ctx, verbs::REMOVE_FINALIZER, old, object, outcome)
    }

    // ---------------------------------------------------------------- accounts

    fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        tree: usize,
        key: &str,
        what: impl Fn() -> String,
    ) -> JobResult<Option<T>> {
        match self.tree(tree).get(key.as_bytes())? {
            Some(v) => Ok(Some(decode(what(), &v)?)),
            None => Ok(None),
        }
    }

    fn put_json<T: serde::Serialize>(
        &self,
        tree: usize,
        key: &str,
        what: &str,
        value: &T,
    ) -> JobResult<()> {
        let bytes = encode(what, value)?;
        self.tree(tree).insert(key.as_bytes(), bytes)?;
        Ok(())
    }

    fn user(&self, username: &str) -> JobResult<User> {
        self.get_json(USERS, username, || format!("user {username:?}"))?.ok_or_else(|| {
            Fail::Refused(StoreError::AccountNotFound { what: format!("user {username:?}") })
        })
    }

    fn create_user(&mut self, ctx: &WriteContext, new: &NewUser) -> JobResult<User> {
        check_username(&new.username).map_err(|reason| StoreError::Invalid { reason })?;
        if new.password_hash.is_empty() {
            return Err(
                StoreError::Invalid { reason: "password hash must not be empty".into() }.into()
            );
        }
        if self.tree(USERS).get(new.username.as_bytes())?.is_some() {
            return Err(
                StoreError::AccountExists { what: format!("user {:?}", new.username) }.into()
            );
        }
        let now = Utc::now();
        let user = User {
            username: new.username.clone(),
            password_hash: new.password_hash.clone(),
            role: new.role,
            disabled: false,
            created: now,
            updated: now,
        };
        self.put_json(USERS, &user.username, "user", &user)?;
        self.audit_account(
            ctx,
            verbs::USER_CREATE,
            "User",
            &user.username,
            vec![format!("role={}", user.role)],
        )?;
        Ok(user)
    }

    fn update_user(
        &mut self,
        ctx: &WriteContext,
        username: &str,
        update: &UserUpdate,
    ) -> JobResult<User> {
        let mut user = self.user(username)?;
        let mut diff = Vec::new();
        if let Some(hash) = &update.password_hash {
            if hash.is_empty() {
                return Err(StoreError::Invalid {
                    reason: "password hash must not be empty".into(),
                }
                .into());
            }
            user.password_hash = hash.clone();
            diff.push("password".to_owned());
        }
        if let Some(role) = update.role
            && role != user.role
        {
            user.role = role;
            diff.push(format!("role={role}"));
        }
        if let Some(disabled) = update.disabled
            && disabled != user.disabled
        {
            user.disabled = disabled;
            diff.push(format!("disabled={disabled}"));
        }
        if diff.is_empty() {
            return Ok(user);
        }
        user.updated = Utc::now();
        self.put_json(USERS, username, "user", &user)?;
        self.audit_account(ctx, verbs::USER_UPDATE, "User", username, diff)?;
        Ok(user)
    }

    fn delete_user(&mut self, ctx: &WriteContext, username: &str) -> JobResult<User> {
        let user = self.user(username)?;
        self.tree(USERS).remove(username.as_bytes())?;
        self.audit_account(ctx, verbs::USER_DELETE, "User", username, Vec::new())?;
        Ok(user)
    }

    fn family(&self, id: &str) -> JobResult<Option<RefreshFamily>> {
        self.get_json(FAMILIES, id, || format!("refresh family {id:?}"))
    }

    fn issue_refresh(
        &mut self,
        ctx: &WriteContext,
        username: &str,
        token_hash: &str,
        expires: chrono::DateTime<Utc>,
        family_id: Option<&str>,
    ) -> JobResult<RefreshToken> {
        self.user(username)?;
        if token_hash.is_empty() || self.tree(REFRESH).get(token_hash.as_bytes())?.is_some() {
            return Err(StoreError::AccountExists { what: "refresh token".into() }.into());
        }
        let now = Utc::now();
        let family = match family_id {
            Some(id) => self.family(id)?.ok_or_else(|| {
                Fail::Refused(StoreError::AccountNotFound {
                    what: format!("refresh family {id:?}"),
                })
            })?,
            None => {
                let family = RefreshFamily {
                    id: uuid::Uuid::new_v4().to_string(),
                    username: username.to_owned(),
                    created: now,
                    revoked: None,
                };
                self.put_json(FAMILIES, &family.id, "refresh family", &family)?;
                family
            }
        };
        let token = RefreshToken {
            token_hash: token_hash.to_owned(),
            family_id: family.id.clone(),
            username: username.to_owned(),
            issued: now,
            expires,
            rotated: None,
        };
        self.put_json(REFRESH, token_hash, "refresh token", &token)?;
        self.audit_account(ctx, verbs::REFRESH_ISSUE, "RefreshFamily", &family.id, Vec::new())?;
        Ok(token)
    }

    fn rotate_refresh(
        &mut self,
        ctx: &WriteContext,
        old_hash: &str,
        new_hash: &str,
        expires: chrono::DateTime<Utc>,
    ) -> JobResult<RefreshRotation> {
        let Some(mut old) =
            self.get_json::<RefreshToken>(REFRESH, old_hash, || "refresh token".into())?
        else {
            return Ok(RefreshRotation::Unknown);
        };
        let now = Utc::now();
        let Some(mut family) = self.family(&old.family_id)? else {
            return Ok(RefreshRotation::Unknown);
        };
        if family.revoked.is_some() {
            return Ok(RefreshRotation::Revoked);
        }
        if old.rotated.is_some() {
            family.revoked = Some(now);
            self.put_json(FAMILIES, &family.id, "refresh family", &family)?;
            let entry = AuditEntry::new(ctx.clone(), verbs::REFRESH_REUSE, AuditOutcome::Denied)
                .target("RefreshFamily", None, family.id.clone())
                .message(format!(
                    "a rotated refresh token of user {:?} was presented again; family revoked",
                    family.username
                ));
            self.append(entry.into_event())?;
            return Ok(RefreshRotation::ReuseDetected {
                family_id: family.id,
                username: family.username,
            });
        }
        if old.expires <= now {
            return Ok(RefreshRotation::Expired);
        }
        if new_hash.is_empty() || self.tree(REFRESH).get(new_hash.as_bytes())?.is_some() {
            return Err(StoreError::AccountExists { what: "refresh token".into() }.into());
        }
        old.rotated = Some(now);
        self.put_json(REFRESH, old_hash, "refresh token", &old)?;
        let token = RefreshToken {
            token_hash: new_hash.to_owned(),
            family_id: family.id.clone(),
            username: old.username.clone(),
            issued: now,
            expires,
            rotated: None,
        };
        self.put_json(REFRESH, new_hash, "refresh token", &token)?;
        self.audit_account(ctx, verbs::REFRESH_ROTATE, "RefreshFamily", &family.id, Vec::new())?;
        Ok(RefreshRotation::Rotated(token))
    }

    fn revoke_family_record(
        &mut self,
        ctx: &WriteContext,
        mut family: RefreshFamily,
    ) -> JobResult<RefreshFamily> {
        if family.revoked.is_none() {
            family.revoked = Some(Utc::now());
            self.put_json(FAMILIES, &family.id, "refresh family", &family)?;
            self.audit_account(
                ctx,
                verbs::REFRESH_REVOKE,
                "RefreshFamily",
                &family.id,
                Vec::new(),
            )?;
        }
        Ok(family)
    }

    fn revoke_family(
        &mut self,
        ctx: &WriteContext,
        token_hash: &str,
    ) -> JobResult<Option<RefreshFamily>> {
        let Some(token) =
            self.get_json::<RefreshToken>(REFRESH, token_hash, || "refresh token".into())?
        else {
            return Ok(None);
        };
        let Some(family) = self.family(&token.family_id)? else {
            return Ok(None);
        };
        self.revoke_family_record(ctx, family).map(Some)
    }

    fn revoke_user_families(&mut self, ctx: &WriteContext, username: &str) -> JobResult<usize> {
        // This job runs first in its batch, so the families read before the transaction are
        // what the transaction sees.
        let ids: Vec<RefreshFamily> = self
            .families
            .iter()
            .filter(|f| f.username == username && f.revoked.is_none())
            .cloned()
            .collect();
        let n = ids.len();
        for family in ids {
            self.revoke_family_record(ctx, family)?;
        }
        Ok(n)
    }

    fn create_token(&mut self, ctx: &WriteContext, new: &NewApiToken) -> JobResult<ApiToken> {
        self.user(&new.owner)?;
        if new.name.is_empty() || new.name.len() > 128 {
            return Err(
                StoreError::Invalid { reason: "token name must be 1 to 128 bytes".into() }.into()
            );
        }
        if new.token_hash.len() != 64 {
            return Err(
                StoreError::Invalid { reason: "token hash must be a hex SHA-256".into() }.into()
            );
        }
        if self.tree(TOKEN_HASHES).get(new.token_hash.as_bytes())?.is_some() {
            return Err(StoreError::AccountExists { what: "API token".into() }.into());
        }
        let token = ApiToken {
            id: uuid::Uuid::new_v4().to_string(),
            name: new.name.clone(),
            owner: new.owner.clone(),
            role: new.role,
            token_hash: new.token_hash.clone(),
            created: Utc::now(),
            expires: new.expires,
            revoked: None,
        };
        self.put_json(TOKENS, &token.id, "API token", &token)?;
        self.tree(TOKEN_HASHES).insert(token.token_hash.as_bytes(), token.id.as_bytes())?;
        self.audit_account(
            ctx,
            verbs::TOKEN_CREATE,
            "ApiToken",
            &token.id,
            vec![format!("owner={}", token.owner), format!("role={}", token.role)],
        )?;
        Ok(token)
    }

    fn revoke_token(&mut self, ctx: &WriteContext, id: &str) -> JobResult<ApiToken> {
        let mut token: ApiToken =
            self.get_json(TOKENS, id, || format!("API token {id:?}"))?.ok_or_else(|| {
                Fail::Refused(StoreError::AccountNotFound { what: format!("API token {id:?}") })
            })?;
        if token.revoked.is_none() {
            token.revoked = Some(Utc::now());
            self.put_json(TOKENS, id, "API token", &token)?;
            self.audit_account(ctx, verbs::TOKEN_REVOKE, "ApiToken", id, Vec::new())?;
        }
        Ok(token)
    }
}

/// How `put` treats a missing or existing object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Create,
    Apply,
    Update,
}

/// A create, apply or update request, normalized: the default namespace filled in, the key
/// checked and the `resourceVersion` precondition taken out.
#[derive(Debug)]
pub(crate) struct PutRequest {
    pub object: DynamicObject,
    pub key: ResourceKey,
    pub wanted_rv: Option<String>,
}

impl PutRequest {
    pub(crate) fn new(request: &DynamicObject) -> Result<Self, StoreError> {
        let mut object = request.clone();
        if object.metadata.namespace.is_empty() {
            object.metadata.namespace = DEFAULT_NAMESPACE.to_owned();
        }
        let key = object.key();
        check_key(&key)?;
        let wanted_rv = object.metadata.resource_version.take().filter(|rv| !rv.is_empty());
        Ok(Self { object, key, wanted_rv })
    }
}

/// What a put does, decided from the stored state alone (no revision taken yet).
#[derive(Debug)]
pub(crate) enum PutPlan {
    /// Nothing changes; the stored object.
    Unchanged(DynamicObject),
    /// A new object: everything server-set is filled in but `uid`, `resourceVersion` and
    /// `creationTimestamp`, which the write assigns.
    Create(DynamicObject),
    /// The stored object changes to `object` (its `resourceVersion` still the old one).
    Update { old: Box<DynamicObject>, object: Box<DynamicObject> },
}

/// Whether a write naming `expected` as its `resourceVersion` may go ahead: `expected` is the
/// current version, or no spec, labels or annotations write happened since it (`spec_rv`, the
/// revision of the last such write; only status or finalizer writes came after, which the
/// caller's change cannot overwrite).
pub(crate) fn precondition_holds(
    current: &DynamicObject,
    spec_rv: Option<u64>,
    expected: &str,
) -> bool {
    if current.metadata.resource_version.as_deref() == Some(expected) {
        return true;
    }
    let Ok(expected) = expected.parse::<u64>() else {
        return false;
    };
    let current_rv = current.metadata.resource_version.as_deref().and_then(|v| v.parse().ok());
    match (spec_rv, current_rv) {
        (Some(spec_rv), Some(current_rv)) => spec_rv <= expected && expected <= current_rv,
        _ => false,
    }
}

/// Decides a create, apply or update: the one place its rules live, used by the write itself
/// and by a dry run (which reads the same state and writes nothing).
///
/// Server-set metadata in the request (`uid`, `generation`, `creationTimestamp`,
/// `deletionTimestamp`, `finalizers`) and its `status` are ignored: only the controller sets
/// finalizers, through the finalizer calls.
///
/// # Errors
///
/// [`StoreError::AlreadyExists`], [`StoreError::NotFound`], [`StoreError::Invalid`] (a
/// `resourceVersion` on create), [`StoreError::Conflict`], [`StoreError::Terminating`].
pub(crate) fn plan_put(
    put: PutRequest,
    current: Option<DynamicObject>,
    spec_rv: Option<u64>,
    mode: Mode,
) -> Result<PutPlan, StoreError> {
    let PutRequest { object: request, key, wanted_rv } = put;
    match (current, mode) {
        (Some(_), Mode::Create) => Err(StoreError::AlreadyExists { key }),
        (None, Mode::Update) => Err(StoreError::NotFound { key }),
        (None, _) => {
            if let Some(expected) = wanted_rv {
                return Err(if mode == Mode::Create {
                    StoreError::Invalid {
                        reason: format!(
                            "{key}: metadata.resourceVersion must not be set on create"
                        ),
                    }
                } else {
                    StoreError::Conflict { key, expected, actual: None }
                });
            }
            let mut object = DynamicObject {
                api_version: API_VERSION.to_owned(),
                kind: request.kind,
                metadata: request.metadata,
                spec: request.spec,
                status: serde_json::Value::Null,
            };
            let meta = &mut object.metadata;
            meta.uid = None;
            meta.generation = Some(1);
            meta.resource_version = None;
            meta.creation_timestamp = None;
            meta.deletion_timestamp = None;
            meta.finalizers = Vec::new();
            Ok(PutPlan::Create(object))
        }
        (Some(old), _) => {
            if let Some(expected) = wanted_rv
                && !precondition_holds(&old, spec_rv, &expected)
            {
                let actual = old.metadata.resource_version.clone();
                return Err(StoreError::Conflict { key, expected, actual });
            }
            let spec_changed = old.spec != request.spec;
            let meta_changed = old.metadata.labels != request.metadata.labels
                || old.metadata.annotations != request.metadata.annotations;
            if !spec_changed && !meta_changed {
                return Ok(PutPlan::Unchanged(old));
            }
            if old.metadata.deletion_timestamp.is_some() {
                return Err(StoreError::Terminating { key });
            }
            let mut object = old.clone();
            object.metadata.labels = request.metadata.labels;
            object.metadata.annotations = request.metadata.annotations;
            object.spec = request.spec;
            if spec_changed {
                object.metadata.generation = Some(old.metadata.generation.unwrap_or(0) + 1);
            }
            Ok(PutPlan::Update { old: Box::new(old), object: Box::new(object) })
        }
    }
}
