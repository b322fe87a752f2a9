//! [`SledStore`]: the store on sled, with one writer thread doing group commit.
//!
//! Writes are jobs sent to the writer thread. It takes every job queued (up to
//! `max_batch`), runs them in one multi-tree sled transaction (each resource or account change
//! with its audit event), flushes once, then publishes the watch events and answers every job.
//! Readers go straight to sled; a list holds the batch lock for reading, so it sees a whole
//! number of batches and the revision that goes with them.

mod ops;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use berth_schemas::{DynamicObject, ResourceKey};
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use sled::Transactional;
use tokio::sync::oneshot;

use self::ops::{Batch, Counters, Reply, Request};
pub(crate) use self::ops::{
    FORMAT_VERSION, META_AUDIT_BASE, META_AUDIT_HEAD, META_AUDIT_KEYED_FROM, META_FORMAT,
    META_INSTANCE, META_REVISION, TREE_NAMES,
};
use super::accounts::{
    ApiToken, NewApiToken, NewUser, RefreshFamily, RefreshRotation, RefreshToken, User, UserUpdate,
};
use super::audit::{
    self, AuditEntry, AuditEvent, AuditHead, AuditKey, AuditOutcome, AuditPage, AuditQuery,
    AuditRetention, ChainStart, ExpectedHead, GENESIS_HASH, PruneReport, VerifyReport, verbs,
};
use super::config::StoreConfig;
use super::error::{EngineError, StoreError};
use super::types::{ListQuery, ObjectList, WriteContext, WriteOutcome, WriteResult};
use super::watch::{Watch, WatchError, WatchHub, WatchQuery};
use super::{AccountStore, AuditLog, ResourceStore, StoreResult};

struct Job {
    ctx: WriteContext,
    request: Request,
    reply: oneshot::Sender<StoreResult<Reply>>,
}

/// What readers and the writer share.
pub(crate) struct Core {
    pub(crate) data_dir: PathBuf,
    /// The instance id kept under [`META_INSTANCE`].
    instance_id: String,
    /// The audit chain's key, when there is one.
    pub(crate) audit_key: Option<AuditKey>,
    /// Which audit events a retention pass removes.
    audit_retention: AuditRetention,
    pub(crate) db: sled::Db,
    /// In [`TREE_NAMES`] order.
    pub(crate) trees: Vec<sled::Tree>,
    hub: WatchHub,
    revision: AtomicU64,
    poisoned: AtomicBool,
    /// Held for writing while a batch is applied, for reading by consistent reads.
    pub(crate) batch_lock: RwLock<()>,
    max_batch: usize,
    /// Batches committed (one flush each).
    batches: AtomicU64,
    /// Jobs answered.
    jobs: AtomicU64,
    /// Nanoseconds spent applying batches.
    apply_nanos: AtomicU64,
    /// Nanoseconds spent flushing.
    flush_nanos: AtomicU64,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("data_dir", &self.data_dir)
            .field("revision", &self.revision)
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

struct WriterHandle {
    sender: Mutex<Option<mpsc::Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    core: Arc<Core>,
}

impl WriterHandle {
    fn shutdown(&self) {
        let sender = self.sender.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        drop(sender);
        let thread = self.thread.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Some(t) = thread
            && t.join().is_err()
        {
            tracing::error!(data_dir = %self.core.data_dir.display(), "store writer thread panicked");
        }
        self.core.hub.close();
        if let Err(e) = self.core.db.flush() {
            tracing::error!(error = %e, "final store flush failed");
        }
        // Files the engine made since opening, when the process umask let them be looser.
        if let Err(e) = super::datadir::tighten(&self.core.data_dir) {
            tracing::warn!(data_dir = %self.core.data_dir.display(), error = %e, "cannot tighten the data directory's permissions");
        }
    }
}

impl Drop for WriterHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The sled-backed store. Cheap to clone; all clones share one writer thread. The store closes
/// when the last clone is dropped, or explicitly with [`SledStore::close`].
#[derive(Clone)]
pub struct SledStore {
    core: Arc<Core>,
    writer: Arc<WriterHandle>,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore").field("core", &self.core).finish_non_exhaustive()
    }
}

/// Store counters, for metrics and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreStats {
    /// The latest revision.
    pub revision: u64,
    /// Batches committed since open; each is one flush.
    pub batches: u64,
    /// Writes (resource, account and audit) answered since open.
    pub writes: u64,
    /// Time the writer spent applying batches.
    pub apply_time: std::time::Duration,
    /// Time the writer spent flushing.
    pub flush_time: std::time::Duration,
    /// Watchers connected now.
    pub watchers: usize,
}

fn lock_poisoned<T>(e: std::sync::PoisonError<T>) -> T {
    e.into_inner()
}

impl SledStore {
    /// Opens (or creates) the store in `config.data_dir` and checks it: format marker, every
    /// resource decodes and is not newer than the recorded revision, the audit head matches the
    /// last event (the whole chain with `verify_audit_on_open`).
    ///
    /// The data directory is created 0700 and everything in it is made owner-only: an
    /// existing directory with looser modes is tightened, with a warning naming each path.
    /// With an audit key, an old store whose latest event is unkeyed first gets an
    /// `audit.keyed` event, keyed, so that the keyed chain reaches the head.
    ///
    /// # Errors
    ///
    /// [`StoreError::Open`] when the directory cannot be opened (permissions, locked by another
    /// process); [`StoreError::Corrupt`] when a check fails. Both name the data directory:
    /// berth must refuse to start.
    pub fn open(config: StoreConfig) -> Result<Self, StoreError> {
        let dir = config.data_dir.clone();
        let open_err = |source: EngineError| StoreError::Open { data_dir: dir.clone(), source };
        let corrupt = |detail: String| StoreError::Corrupt { data_dir: dir.clone(), detail };
        super::datadir::create_private(&dir).map_err(|e| open_err(EngineError::new(e)))?;
        for t in super::datadir::tighten(&dir).map_err(|e| open_err(EngineError::new(e)))? {
            tracing::warn!(
                path = %t.path.display(),
                from = format!("{:o}", t.from),
                to = format!("{:o}", t.to),
                "tightened the permissions of the data directory: it was readable by other users"
            );
        }
        let sled_config = sled::Config::new()
            .path(&dir)
            .cache_capacity(config.cache_bytes)
            .flush_every_ms(Some(1000));
        // sled can panic on some damaged files instead of returning an error; a damaged data
        // directory must become an error naming it, not a crash.
        let db = match open_engine(&sled_config) {
            Ok(Ok(db)) => db,
            Ok(Err(sled::Error::Corruption { at, .. })) => {
                return Err(corrupt(format!("the engine found corrupt data at {at:?}")));
            }
            Ok(Err(e)) => return Err(open_err(EngineError::new(e))),
            Err(_) => return Err(corrupt("the engine crashed while reading the files".into())),
        };
        let mut trees = Vec::with_capacity(TREE_NAMES.len());
        for name in TREE_NAMES {
            trees.push(db.open_tree(name).map_err(|e| open_err(EngineError::new(e)))?);
        }
        let storage = |e: sled::Error| open_err(EngineError::new(e));
        let meta = &trees[ops::META];

        match meta.get(META_FORMAT).map_err(storage)? {
            None => {
                let mut empty = true;
                for t in &trees {
                    empty &= t.is_empty();
                }
                if !empty {
                    return Err(corrupt("data is present but the format marker is missing".into()));
                }
                meta.insert(META_FORMAT, FORMAT_VERSION).map_err(storage)?;
                meta.insert(META_REVISION, &0u64.to_be_bytes()).map_err(storage)?;
                db.flush().map_err(storage)?;
            }
            Some(v) if v.as_ref() == FORMAT_VERSION => {}
            Some(v) => {
                return Err(corrupt(format!(
                    "unknown store format {:?}",
                    String::from_utf8_lossy(&v)
                )));
            }
        }

        // The instance id: made once, when the data directory is new (or was made by a build
        // that had none), and carried by backups, so that a restore keeps it.
        let instance_id = match meta.get(META_INSTANCE).map_err(storage)? {
            Some(v) => String::from_utf8(v.to_vec())
                .map_err(|_| corrupt("the instance id record is damaged".into()))?,
            None => {
                let id = uuid::Uuid::new_v4().to_string();
                meta.insert(META_INSTANCE, id.as_bytes()).map_err(storage)?;
                db.flush().map_err(storage)?;
                id
            }
        };

        let revision = match meta.get(META_REVISION).map_err(storage)? {
            Some(v) => u64::from_be_bytes(
                v.as_ref()
                    .try_into()
                    .map_err(|_| corrupt("the revision record is damaged".into()))?,
            ),
            None => return Err(corrupt("the revision record is missing".into())),
        };
        for item in trees[ops::RESOURCES].iter() {
            let (k, v) = item.map_err(storage)?;
            let object = ops::decode_object(&k, &v).map_err(|e| corrupt(format!("{e:#}")))?;
            let rv =
                object.metadata.resource_version.as_deref().and_then(|s| s.parse::<u64>().ok());
            match rv {
                Some(rv) if rv <= revision => {}
                _ => {
                    return Err(corrupt(format!(
                        "resource {} has resourceVersion {:?}, beyond the store revision {revision}",
                        object.key(),
                        object.metadata.resource_version
                    )));
                }
            }
        }

        let head = read_head(meta).map_err(storage)?.map_err(corrupt)?;
        let last = trees[ops::AUDIT].last().map_err(storage)?;
        let counters = match (head, last) {
            (None, None) => Counters { revision, next_seq: 0, head_hash: GENESIS_HASH.to_owned() },
            (Some((seq, hash)), Some((k, v))) => {
                let stored_seq = k.as_ref().try_into().map(u64::from_be_bytes).unwrap_or(u64::MAX);
                let (event, _) = audit::decode(&v, None)
                    .map_err(|p| corrupt(format!("the last audit event ({stored_seq}): {p}")))?;
                if stored_seq != seq || event.seq != seq || event.hash != hash {
                    return Err(corrupt(format!(
                        "the audit head says event {seq} but the log ends at event {stored_seq}"
                    )));
                }
                Counters { revision, next_seq: seq + 1, head_hash: hash }
            }
            (Some((seq, _)), None) => {
                return Err(corrupt(format!(
                    "the audit head says event {seq} but the log is empty"
                )));
            }
            (None, Some(_)) => return Err(corrupt("audit events without a recorded head".into())),
        };
        let counters = key_the_chain(&db, &trees, counters, config.audit_key.as_ref())
            .map_err(storage)?
            .map_err(corrupt)?;
        // What the engine just made, when the process umask let it be looser.
        super::datadir::tighten(&dir).map_err(|e| open_err(EngineError::new(e)))?;

        let core = Arc::new(Core {
            data_dir: dir.clone(),
            instance_id,
            audit_key: config.audit_key.clone(),
            audit_retention: config.audit_retention,
            db,
            trees,
            hub: WatchHub::new(revision, config.watch_history, config.watch_buffer),
            revision: AtomicU64::new(revision),
            poisoned: AtomicBool::new(false),
            batch_lock: RwLock::new(()),
            max_batch: config.max_batch.max(1),
            batches: AtomicU64::new(0),
            jobs: AtomicU64::new(0),
            apply_nanos: AtomicU64::new(0),
            flush_nanos: AtomicU64::new(0),
        });
        if config.verify_audit_on_open {
            let report = core.verify_audit(None)?;
            if let (Some(bad), Some(problem)) = (report.first_bad, report.problem) {
                return Err(corrupt(format!("audit event {bad}: {problem}")));
            }
        }

        let (tx, rx) = mpsc::channel::<Job>();
        let writer_core = core.clone();
        let thread = std::thread::Builder::new()
            .name("berth-store-writer".into())
            .spawn(move || writer_loop(&writer_core, &rx, counters))
            .map_err(|e| open_err(EngineError::new(e)))?;
        let writer = Arc::new(WriterHandle {
            sender: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            core: core.clone(),
        });
        Ok(Self { core, writer })
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.core.data_dir
    }

    /// Stops the writer after the queued writes, flushes, and ends every watch. Later calls
    /// fail with [`StoreError::Closed`]. Dropping the last clone does the same.
    pub fn close(&self) {
        self.writer.shutdown();
    }

    /// Bytes the engine uses on disk.
    ///
    /// # Errors
    ///
    /// Storage errors.
    pub fn size_on_disk(&self) -> StoreResult<u64> {
        self.core.db.size_on_disk().map_err(|e| self.core.storage(e))
    }

    /// Counters for metrics: batches (flushes), writes, time applying and flushing.
    pub fn stats(&self) -> StoreStats {
        let c = &self.core;
        StoreStats {
            revision: c.revision.load(Ordering::Acquire),
            batches: c.batches.load(Ordering::Relaxed),
            writes: c.jobs.load(Ordering::Relaxed),
            apply_time: std::time::Duration::from_nanos(c.apply_nanos.load(Ordering::Relaxed)),
            flush_time: std::time::Duration::from_nanos(c.flush_nanos.load(Ordering::Relaxed)),
            watchers: c.hub.watcher_count(),
        }
    }

    pub(crate) fn core(&self) -> &Arc<Core> {
        &self.core
    }

    fn submit(
        &self,
        ctx: &WriteContext,
        request: Request,
    ) -> BoxFuture<'static, StoreResult<Reply>> {
        let (reply, rx) = oneshot::channel();
        let job = Job { ctx: ctx.clone(), request, reply };
        let sent = if self.core.poisoned.load(Ordering::Acquire) {
            Err(self.core.poisoned_error())
        } else {
            let sender = self.writer.sender.lock().unwrap_or_else(lock_poisoned);
            match sender.as_ref() {
                Some(s) => s.send(job).map_err(|_| StoreError::Closed),
                None => Err(StoreError::Closed),
            }
        };
        Box::pin(async move {
            sent?;
            rx.await.unwrap_or(Err(StoreError::Closed))
        })
    }

    fn write(
        &self,
        ctx: &WriteContext,
        request: Request,
    ) -> BoxFuture<'_, StoreResult<WriteResult>> {
        let fut = self.submit(ctx, request);
        Box::pin(async move {
            match fut.await? {
                Reply::Write(r) => Ok(*r),
                other => Err(unexpected(&other)),
            }
        })
    }

    fn blocking<T, F>(&self, f: F) -> BoxFuture<'static, StoreResult<T>>
    where
        T: Send + 'static,
        F: FnOnce(&Core) -> StoreResult<T> + Send + 'static,
    {
        let core = self.core.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || f(&core)).await.unwrap_or(Err(StoreError::Closed))
        })
    }

    /// Reads one object without an async runtime.
    ///
    /// # Errors
    ///
    /// As [`ResourceStore::get`].
    pub fn get_blocking(&self, key: &ResourceKey) -> StoreResult<Option<DynamicObject>> {
        self.core.get(key)
    }

    /// Lists without an async runtime.
    ///
    /// # Errors
    ///
    /// As [`ResourceStore::list`].
    pub fn list_blocking(&self, query: &ListQuery) -> StoreResult<ObjectList> {
        self.core.list(query)
    }

    /// Verifies the audit chain without an async runtime.
    ///
    /// # Errors
    ///
    /// As [`AuditLog::verify`].
    pub fn verify_audit_blocking(&self) -> StoreResult<VerifyReport> {
        self.core.verify_audit(None)
    }

    /// Removes the oldest audit events that the configured [`AuditRetention`] lets go, in
    /// chunks, each atomic with the new chain start (the oldest kept event and the hash it
    /// chains from, keyed), so that verification starts there. The latest event is always
    /// kept. Does nothing when no retention is configured.
    ///
    /// # Errors
    ///
    /// Storage errors.
    pub async fn prune_audit(&self) -> StoreResult<PruneReport> {
        /// Events removed per batch, so that writers are not held up long.
        const CHUNK: u64 = 2000;
        let retention = self.core.audit_retention;
        let mut report = PruneReport::default();
        if !retention.is_enabled() {
            return Ok(report);
        }
        let now = Utc::now();
        let (start, cut) = self.blocking(move |core| core.retention_cut(&retention, now)).await?;
        let mut at = start;
        while at < cut {
            let upto = cut.min(at.saturating_add(CHUNK));
            let ctx = WriteContext::controller();
            match self.submit(&ctx, Request::PruneAudit(upto)).await? {
                Reply::Count(n) => report.removed += n as u64,
                other => return Err(unexpected(&other)),
            }
            at = upto;
        }
        report.oldest_kept = self.core.audit_head()?.map(|_| cut.max(start));
        if report.removed > 0 {
            tracing::info!(removed = report.removed, oldest_kept = ?report.oldest_kept, "audit retention removed old events");
        }
        Ok(report)
    }

    /// Queries the audit log without an async runtime.
    ///
    /// # Errors
    ///
    /// As [`AuditLog::query`].
    pub fn query_audit_blocking(&self, query: &AuditQuery) -> StoreResult<AuditPage> {
        self.core.query_audit(query)
    }
}

/// Opens sled, turning a panic on damaged files into an error, and waiting briefly for the
/// directory lock: sled's I/O threads can hold it for a moment after the previous handle in this
/// process was dropped. Another process holding it still fails after that.
fn open_engine(config: &sled::Config) -> std::thread::Result<sled::Result<sled::Db>> {
    let mut attempts = 0;
    loop {
        let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| config.open()));
        match opened {
            Ok(Err(sled::Error::Io(ref e)))
                if e.kind() == std::io::ErrorKind::WouldBlock && attempts < 40 =>
            {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            other => return other,
        }
    }
}

pub(crate) fn open_engine_for_restore(config: &sled::Config) -> sled::Result<sled::Db> {
    match open_engine(config) {
        Ok(result) => result,
        Err(_) => Err(sled::Error::Unsupported("the engine crashed while opening".into())),
    }
}

fn unexpected(reply: &Reply) -> StoreError {
    StoreError::Invalid { reason: format!("internal: unexpected reply {reply:?}") }
}

/// Reads the recorded audit head: `Ok(Err(_))` when it is damaged.
fn read_head(meta: &sled::Tree) -> sled::Result<Result<Option<(u64, String)>, String>> {
    Ok(match meta.get(META_AUDIT_HEAD)? {
        None => Ok(None),
        Some(v) if v.len() == 8 + 64 => {
            let (seq, hash) = v.split_at(8);
            let seq = seq.try_into().map(u64::from_be_bytes).unwrap_or(u64::MAX);
            Ok(Some((seq, String::from_utf8_lossy(hash).into_owned())))
        }
        Some(_) => Err("the audit head record is damaged".to_owned()),
    })
}

/// With an audit key and no record of where the chain became keyed: records it (an empty
/// log is keyed from its first event), and, when the key is new, adopts an existing unkeyed log
/// (an old store): appends a keyed `audit.keyed` event, records it as the first keyed event, and
/// keys an unkeyed chain-start record. An existing key never adopts a log: that log was
/// rewritten, or the key belongs elsewhere, and verify reports it. Without a key, warns when
/// the log is keyed. Runs before the writer starts, so nothing else writes.
fn key_the_chain(
    db: &sled::Db,
    trees: &[sled::Tree],
    counters: Counters,
    key: Option<&AuditKey>,
) -> sled::Result<Result<Counters, String>> {
    let last = match trees[ops::AUDIT].last()? {
        Some((_, v)) => match audit::decode(&v, None) {
            Ok((e, _)) => Some(e),
            Err(p) => return Ok(Err(format!("the last audit event: {p}"))),
        },
        None => None,
    };
    let recorded = trees[ops::META].get(META_AUDIT_KEYED_FROM)?;
    let Some(key) = key else {
        if recorded.is_some() {
            tracing::warn!(
                "the audit log is keyed but the store was opened without the audit key: new \
                 events are unkeyed and `berth audit verify` will report them"
            );
        }
        return Ok(Ok(counters));
    };
    if let Some(v) = &recorded {
        if audit::decode_keyed_from(v, Some(key)).is_none() {
            tracing::warn!(
                "the audit log was keyed with a different audit key (another key file?): \
                 `berth audit verify` will report the chain as broken"
            );
        }
        return Ok(Ok(counters));
    }
    if last.is_some() && !key.is_new() {
        tracing::warn!(
            "the audit key file exists but the audit log has no record of being keyed with it: \
             the log may have been rewritten (`berth audit verify` reports it)"
        );
        return Ok(Ok(counters));
    }
    let base = trees[ops::META].get(META_AUDIT_BASE)?;
    let rekey_base = base.as_ref().and_then(|v| ChainStart::decode(v)).filter(|(_, keyed)| !keyed);
    let outcome = trees.transaction(|tx| {
        if let Some((start, _)) = &rekey_base {
            tx[ops::META].insert(META_AUDIT_BASE, start.encode(Some(key)))?;
        }
        let mut batch = Batch::new(tx, &counters, &[], Some(key));
        let keyed_from = batch.counters.next_seq;
        if last.is_some() {
            let entry = AuditEntry::new(
                WriteContext::controller(),
                verbs::AUDIT_KEYED,
                AuditOutcome::Success,
            )
            .message("the audit chain is keyed (HMAC-SHA256) from this event on");
            batch.append_entry(entry)?;
        }
        tx[ops::META].insert(META_AUDIT_KEYED_FROM, audit::encode_keyed_from(keyed_from, key))?;
        batch.finish()?;
        Ok((batch.counters, keyed_from))
    });
    let (counters, keyed_from) = match outcome {
        Ok(c) => c,
        Err(sled::transaction::TransactionError::Storage(e)) => return Err(e),
        Err(sled::transaction::TransactionError::Abort(())) => {
            return Err(sled::Error::Unsupported("transaction aborted".into()));
        }
    };
    db.flush()?;
    if last.is_some() {
        tracing::info!(seq = keyed_from, "the audit chain is keyed from this event on");
    }
    Ok(Ok(counters))
}

impl Core {
    fn storage(&self, e: sled::Error) -> StoreError {
        StoreError::Storage { data_dir: self.data_dir.clone(), source: EngineError::new(e) }
    }

    fn poisoned_error(&self) -> StoreError {
        StoreError::Poisoned { data_dir: self.data_dir.clone() }
    }

    fn check_poisoned(&self) -> StoreResult<()> {
        if self.poisoned.load(Ordering::Acquire) { Err(self.poisoned_error()) } else { Ok(()) }
    }

    fn get(&self, key: &ResourceKey) -> StoreResult<Option<DynamicObject>> {
        self.check_poisoned()?;
        let k = ops::resource_key(key);
        match self.trees[ops::RESOURCES].get(&k).map_err(|e| self.storage(e))? {
            Some(v) => ops::decode_object(&k, &v).map(Some),
            None => Ok(None),
        }
    }

    fn list(&self, query: &ListQuery) -> StoreResult<ObjectList> {
        self.check_poisoned()?;
        let tree = &self.trees[ops::RESOURCES];
        let _batch = self.batch_lock.read().unwrap_or_else(lock_poisoned);
        let revision = self.revision.load(Ordering::Acquire);
        let mut items = Vec::new();
        let mut scan = |iter: sled::Iter| -> StoreResult<()> {
            for item in iter {
                let (k, v) = item.map_err(|e| self.storage(e))?;
                let object = ops::decode_object(&k, &v)?;
                if query.matches(&object) {
                    items.push(object);
                }
            }
            Ok(())
        };
        match query.kind {
            Some(kind) => {
                scan(tree.scan_prefix(ops::resource_prefix(kind, query.namespace.as_deref())))?
            }
            None => scan(tree.iter())?,
        }
        Ok(ObjectList { revision, items })
    }

    /// What an apply of `request` would answer now, from the same decision the write makes
    /// ([`ops::plan_put`]), writing nothing. Read under the batch lock, so the object and its
    /// spec version are from one committed state.
    fn apply_dry_run(&self, request: &DynamicObject) -> StoreResult<WriteResult> {
        self.check_poisoned()?;
        let put = ops::PutRequest::new(request)?;
        let k = ops::resource_key(&put.key);
        let _batch = self.batch_lock.read().unwrap_or_else(lock_poisoned);
        let revision = self.revision.load(Ordering::Acquire);
        let current = match self.trees[ops::RESOURCES].get(&k).map_err(|e| self.storage(e))? {
            Some(v) => Some(ops::decode_object(&k, &v)?),
            None => None,
        };
        let spec_rv = self.trees[ops::SPEC_VERSIONS]
            .get(&k)
            .map_err(|e| self.storage(e))?
            .and_then(|v| v.as_ref().try_into().ok().map(u64::from_be_bytes));
        let (outcome, old, object) = match ops::plan_put(put, current, spec_rv, ops::Mode::Apply)? {
            ops::PutPlan::Unchanged(old) => (WriteOutcome::Unchanged, Some(old.clone()), old),
            ops::PutPlan::Create(object) => (WriteOutcome::Created, None, object),
            ops::PutPlan::Update { old, object } => (WriteOutcome::Configured, Some(*old), *object),
        };
        Ok(WriteResult { outcome, old, object, revision })
    }

    /// The recorded audit head, read under the batch lock so it matches committed events.
    fn audit_head(&self) -> StoreResult<Option<(u64, String)>> {
        let _batch = self.batch_lock.read().unwrap_or_else(lock_poisoned);
        read_head(&self.trees[ops::META])
            .map_err(|e| self.storage(e))?
            .map_err(|detail| StoreError::Corrupt { data_dir: self.data_dir.clone(), detail })
    }

    /// The recorded start of the kept chain and whether its record carries a valid MAC
    /// (`None`: no record, the chain starts at 0).
    fn audit_base(&self) -> StoreResult<Option<(ChainStart, bool)>> {
        let corrupt =
            |detail: String| StoreError::Corrupt { data_dir: self.data_dir.clone(), detail };
        match self.trees[ops::META].get(META_AUDIT_BASE).map_err(|e| self.storage(e))? {
            None => Ok(None),
            Some(v) => {
                let (start, keyed) = ChainStart::decode(&v)
                    .ok_or_else(|| corrupt("the audit chain start record is damaged".into()))?;
                let valid = match &self.audit_key {
                    Some(k) => keyed && ChainStart::check(&v, k),
                    None => true,
                };
                Ok(Some((start, valid)))
            }
        }
    }

    pub(crate) fn verify_audit(&self, expect: Option<&ExpectedHead>) -> StoreResult<VerifyReport> {
        let head = self.audit_head()?;
        let base = self.audit_base()?;
        let start = base.as_ref().map(|(s, _)| s.clone()).unwrap_or_default();
        // Events up to the head never change, so the walk needs no lock; events appended
        // meanwhile are after the head and not looked at.
        let end = head.as_ref().map_or(start.seq, |(seq, _)| seq + 1);
        let records =
            self.trees[ops::AUDIT].range(start.seq.to_be_bytes()..end.to_be_bytes()).map(|item| {
                item.map(|(k, v)| {
                    (k.as_ref().try_into().map(u64::from_be_bytes).unwrap_or(u64::MAX), v.to_vec())
                })
            });
        let keyed_from = self.trees[ops::META]
            .get(META_AUDIT_KEYED_FROM)
            .map_err(|e| self.storage(e))?
            .and_then(|v| audit::decode_keyed_from(&v, self.audit_key.as_ref()));
        let mut report = audit::verify_chain(
            records,
            &start,
            head.clone(),
            self.audit_key.as_ref(),
            keyed_from,
            expect,
        )
        .map_err(|e| self.storage(e))?;
        if let Some((start, false)) = &base
            && report.first_bad.is_none()
        {
            report.first_bad = Some(start.seq);
            report.problem = Some(
                "the record of where the kept chain starts (after retention) is not keyed with \
                 the audit key: older events were removed without the key"
                    .to_owned(),
            );
        }
        // Anything stored beyond the recorded head was written around the store.
        if report.first_bad.is_none() {
            let beyond = self.trees[ops::AUDIT].range(end.to_be_bytes()..).next();
            if let Some(Ok((k, _))) = beyond
                && head == self.audit_head()?
            {
                let seq = k.as_ref().try_into().map(u64::from_be_bytes).unwrap_or(u64::MAX);
                report.first_bad = Some(seq);
                report.problem = Some("event stored beyond the recorded head".to_owned());
            }
        }
        Ok(report)
    }

    /// Where the kept chain starts now, and the first event a retention pass should keep.
    fn retention_cut(
        &self,
        retention: &AuditRetention,
        now: DateTime<Utc>,
    ) -> StoreResult<(u64, u64)> {
        self.check_poisoned()?;
        let start = self.audit_base()?.map_or(0, |(s, _)| s.seq);
        let Some((head, _)) = self.audit_head()? else {
            return Ok((start, start));
        };
        let mut cut = start;
        if let Some(max) = retention.max_events {
            cut = cut.max((head + 1).saturating_sub(max.max(1)));
        }
        if let Some(age) = retention.max_age {
            let oldest = now - chrono::Duration::from_std(age).unwrap_or(chrono::Duration::MAX);
            for item in self.trees[ops::AUDIT].range(cut.to_be_bytes()..=head.to_be_bytes()) {
                let (k, v) = item.map_err(|e| self.storage(e))?;
                let seq = k.as_ref().try_into().map(u64::from_be_bytes).unwrap_or(u64::MAX);
                match audit::decode(&v, None) {
                    Ok((e, _)) if e.time < oldest => cut = seq + 1,
                    // A newer event, or one that does not decode (kept for verify to report).
                    _ => break,
                }
            }
        }
        Ok((start, cut.min(head)))
    }

    fn query_audit(&self, query: &AuditQuery) -> StoreResult<AuditPage> {
        self.check_poisoned()?;
        let tree = &self.trees[ops::AUDIT];
        let limit = query.page_size();
        let iter: Box<dyn Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>> =
            match (query.newest_first, query.cursor) {
                (false, None) => Box::new(tree.iter()),
                (false, Some(c)) => Box::new(tree.range(c.saturating_add(1).to_be_bytes()..)),
                (true, None) => Box::new(tree.iter().rev()),
                (true, Some(c)) => Box::new(tree.range(..c.to_be_bytes()).rev()),
            };
        let mut events = Vec::new();
        let mut more = false;
        for item in iter {
            let (k, v) = item.map_err(|e| self.storage(e))?;
            let (event, _) = audit::decode(&v, None).map_err(|p| StoreError::Corrupt {
                data_dir: self.data_dir.clone(),
                detail: format!(
                    "audit event {}: {p}",
                    k.as_ref().try_into().map(u64::from_be_bytes).unwrap_or(u64::MAX)
                ),
            })?;
            if query.matches(&event) {
                if events.len() == limit {
                    more = true;
                    break;
                }
                events.push(event);
            }
        }
        let next_cursor = if more { events.last().map(|e: &AuditEvent| e.seq) } else { None };
        Ok(AuditPage { events, next_cursor })
    }

    fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        tree: usize,
        key: &[u8],
        what: &str,
    ) -> StoreResult<Option<T>> {
        match self.trees[tree].get(key).map_err(|e| self.storage(e))? {
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|source| StoreError::Decode { what: what.to_owned(), source }),
            None => Ok(None),
        }
    }

    fn all_json<T: serde::de::DeserializeOwned>(
        &self,
        tree: usize,
        what: &str,
    ) -> StoreResult<Vec<T>> {
        let mut out = Vec::new();
        for item in self.trees[tree].iter() {
            let (_, v) = item.map_err(|e| self.storage(e))?;
            out.push(
                serde_json::from_slice(&v)
                    .map_err(|source| StoreError::Decode { what: what.to_owned(), source })?,
            );
        }
        Ok(out)
    }

    /// Applies one batch and makes it durable; answers every job.
    fn commit(&self, jobs: Vec<Job>, counters: &mut Counters) {
        if self.poisoned.load(Ordering::Acquire) {
            for job in jobs {
                let _ = job.reply.send(Err(self.poisoned_error()));
            }
            return;
        }
        let families = match jobs.first().map(|j| j.request.needs_scan()) {
            Some(true) => match self.all_json::<RefreshFamily>(ops::FAMILIES, "refresh family") {
                Ok(f) => f,
                Err(e) => {
                    let mut jobs = jobs.into_iter();
                    if let Some(first) = jobs.next() {
                        let _ = first.reply.send(Err(e));
                    }
                    // The rest did not depend on the scan: run them as their own batch.
                    self.commit(jobs.collect(), counters);
                    return;
                }
            },
            _ => Vec::new(),
        };
        let started = std::time::Instant::now();
        let guard = self.batch_lock.write().unwrap_or_else(lock_poisoned);
        let outcome = self.trees.as_slice().transaction(|trees| {
            let mut batch = Batch::new(trees, counters, &families, self.audit_key.as_ref());
            let mut replies = Vec::with_capacity(jobs.len());
            for job in &jobs {
                replies.push(batch.run(&job.ctx, &job.request)?);
            }
            batch.finish()?;
            Ok((replies, batch.counters, batch.events))
        });
        let (replies, next, events) = match outcome {
            Ok(done) => done,
            Err(e) => {
                drop(guard);
                let e = match e {
                    sled::transaction::TransactionError::Storage(e) => e,
                    sled::transaction::TransactionError::Abort(()) => {
                        sled::Error::Unsupported("transaction aborted".into())
                    }
                };
                self.fail(jobs, &e);
                return;
            }
        };
        self.revision.store(next.revision, Ordering::Release);
        *counters = next;
        drop(guard);
        let applied = std::time::Instant::now();
        if let Err(e) = self.db.flush() {
            self.fail(jobs, &e);
            return;
        }
        let nanos = |d: std::time::Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.apply_nanos.fetch_add(nanos(applied - started), Ordering::Relaxed);
        self.flush_nanos.fetch_add(nanos(applied.elapsed()), Ordering::Relaxed);
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.jobs.fetch_add(jobs.len() as u64, Ordering::Relaxed);
        self.hub.publish(events);
        for (job, reply) in jobs.into_iter().zip(replies) {
            let _ = job.reply.send(reply);
        }
    }

    /// A storage failure: nothing in the batch is acknowledged and the store stops.
    fn fail(&self, jobs: Vec<Job>, e: &sled::Error) {
        self.poisoned.store(true, Ordering::Release);
        tracing::error!(data_dir = %self.data_dir.display(), error = %e, "store write failed; refusing further writes");
        for job in jobs {
            let _ = job.reply.send(Err(self.storage(e.clone())));
        }
        self.hub.close();
    }
}

fn writer_loop(core: &Core, rx: &mpsc::Receiver<Job>, mut counters: Counters) {
    let mut held: Option<Job> = None;
    loop {
        let first = match held.take() {
            Some(job) => job,
            None => match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
        };
        let mut jobs = vec![first];
        while jobs.len() < core.max_batch {
            match rx.try_recv() {
                Ok(job) if job.request.needs_scan() => {
                    held = Some(job);
                    break;
                }
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        core.commit(jobs, &mut counters);
    }
}

impl ResourceStore for SledStore {
    fn create(
        &self,
        ctx: &WriteContext,
        object: DynamicObject,
    ) -> BoxFuture<'_, StoreResult<WriteResult>> {
        self.write(ctx, Request::Create(object))
    }

    fn apply(
        &self,
        ctx: &WriteContext,
        object: DynamicObject,
    ) -> BoxFuture<'_, StoreResult<WriteResult>> {
        self.write(ctx, Request::Apply(object))
    }

    fn update(
        &self,
        ctx: &WriteContext,
        object: DynamicObject,
    ) -> BoxFuture<'_, StoreResult<WriteResult>> {
        self.write(ctx, Request::Update(object))
    }

    fn apply_dry_run(&self, object: DynamicObject) -> BoxFuture<'_, StoreResult<WriteResult>> {
        self.blocking(move |core| core.apply_dry_run(&object))
    }

    fn update_status(
        &self,
        ctx: &WriteContext,
        key: &ResourceKey,
        status: serde_json::Value,
    ) -> BoxFuture<'_, StoreResult<WriteResult>> {
        self.write(ctx, Request::Status(key.clone(), status))
    }

    fn delete(
        &self,
        ctx: &WriteContext,
        key: &ResourceKey,
    ) -> BoxFuture<'_, StoreResult<WriteResult>> {
        self.write(ctx, Request::Delete(key.clone()))
    }

    fn add_finalizer(
        &self,
        ctx: &WriteContext,
        key: &ResourceKey,
        finalizer: &str,
    ) -> BoxFuture<'_, StoreResult<WriteResult>> {
        self.write(ctx, Request::AddFinalizer(key.clone(), finalizer.to_owned()))
    }

    fn remove_finalizer(
        &self,
        ctx: &WriteContext,
        key: &ResourceKey,
        finalizer: &str,
    ) -> BoxFuture<'_, StoreResult<WriteResult>> {
        self.write(ctx, Request::RemoveFinalizer(key.clone(), finalizer.to_owned()))
    }

    fn get(&self, key: &ResourceKey) -> BoxFuture<'_, StoreResult<Option<DynamicObject>>> {
        let key = key.clone();
        self.blocking(move |core| core.get(&key))
    }

    fn list(&self, query: &ListQuery) -> BoxFuture<'_, StoreResult<ObjectList>> {
        let query = query.clone();
        self.blocking(move |core| core.list(&query))
    }

    fn watch(&self, query: WatchQuery) -> Result<Watch, WatchError> {
        self.core.hub.watch(query)
    }

    fn revision(&self) -> u64 {
        self.core.revision.load(Ordering::Acquire)
    }

    fn instance_id(&self) -> &str {
        &self.core.instance_id
    }
}

impl AuditLog for SledStore {
    fn append(&self, entry: AuditEntry) -> BoxFuture<'_, StoreResult<AuditEvent>> {
        let ctx = entry.context.clone();
        let fut = self.submit(&ctx, Request::Append(entry));
        Box::pin(async move {
            match fut.await? {
                Reply::Event(e) => Ok(*e),
                other => Err(unexpected(&other)),
            }
        })
    }

    fn query(&self, query: &AuditQuery) -> BoxFuture<'_, StoreResult<AuditPage>> {
        let query = query.clone();
        self.blocking(move |core| core.query_audit(&query))
    }

    fn verify(&self) -> BoxFuture<'_, StoreResult<VerifyReport>> {
        self.blocking(|core| core.verify_audit(None))
    }

    fn verify_expecting(
        &self,
        expect: Option<ExpectedHead>,
    ) -> BoxFuture<'_, StoreResult<VerifyReport>> {
        self.blocking(move |core| core.verify_audit(expect.as_ref()))
    }

    fn head(&self) -> BoxFuture<'_, StoreResult<Option<AuditHead>>> {
        self.blocking(|core| Ok(core.audit_head()?.map(|(seq, hash)| AuditHead { seq, hash })))
    }
}

macro_rules! expect_reply {
    ($fut:expr, $variant:ident) => {{
        let fut = $fut;
        Box::pin(async move {
            match fut.await? {
                Reply::$variant(v) => Ok(v),
                other => Err(unexpected(&other)),
            }
        })
    }};
}

impl AccountStore for SledStore {
    fn create_user(&self, ctx: &WriteContext, user: NewUser) -> BoxFuture<'_, StoreResult<User>> {
        expect_reply!(self.submit(ctx, Request::CreateUser(user)), User)
    }

    fn get_user(&self, username: &str) -> BoxFuture<'_, StoreResult<Option<User>>> {
        let username = username.to_owned();
        self.blocking(move |core| core.get_json(ops::USERS, username.as_bytes(), "user"))
    }

    fn list_users(&self) -> BoxFuture<'_, StoreResult<Vec<User>>> {
        self.blocking(|core| core.all_json(ops::USERS, "user"))
    }

    fn update_user(
        &self,
        ctx: &WriteContext,
        username: &str,
        update: UserUpdate,
    ) -> BoxFuture<'_, StoreResult<User>> {
        expect_reply!(self.submit(ctx, Request::UpdateUser(username.to_owned(), update)), User)
    }

    fn delete_user(&self, ctx: &WriteContext, username: &str) -> BoxFuture<'_, StoreResult<User>> {
        expect_reply!(self.submit(ctx, Request::DeleteUser(username.to_owned())), User)
    }

    fn issue_refresh_token(
        &self,
        ctx: &WriteContext,
        username: &str,
        token_hash: &str,
        expires: DateTime<Utc>,
        family_id: Option<&str>,
    ) -> BoxFuture<'_, StoreResult<RefreshToken>> {
        let request = Request::IssueRefresh {
            username: username.to_owned(),
            token_hash: token_hash.to_owned(),
            expires,
            family_id: family_id.map(str::to_owned),
        };
        expect_reply!(self.submit(ctx, request), Refresh)
    }

    fn rotate_refresh_token(
        &self,
        ctx: &WriteContext,
        old_hash: &str,
        new_hash: &str,
        expires: DateTime<Utc>,
    ) -> BoxFuture<'_, StoreResult<RefreshRotation>> {
        let request = Request::RotateRefresh {
            old_hash: old_hash.to_owned(),
            new_hash: new_hash.to_owned(),
            expires,
        };
        expect_reply!(self.submit(ctx, request), Rotation)
    }

    fn revoke_refresh_family(
        &self,
        ctx: &WriteContext,
        token_hash: &str,
    ) -> BoxFuture<'_, StoreResult<Option<RefreshFamily>>> {
        expect_reply!(self.submit(ctx, Request::RevokeFamily(token_hash.to_owned())), Family)
    }

    fn revoke_refresh_family_by_id(
        &self,
        ctx: &WriteContext,
        id: &str,
    ) -> BoxFuture<'_, StoreResult<Option<RefreshFamily>>> {
        expect_reply!(self.submit(ctx, Request::RevokeFamilyById(id.to_owned())), Family)
    }

    fn get_refresh_family(&self, id: &str) -> BoxFuture<'_, StoreResult<Option<RefreshFamily>>> {
        let id = id.to_owned();
        self.blocking(move |core| core.get_json(ops::FAMILIES, id.as_bytes(), "refresh family"))
    }

    fn revoke_user_refresh_families(
        &self,
        ctx: &WriteContext,
        username: &str,
    ) -> BoxFuture<'_, StoreResult<usize>> {
        expect_reply!(self.submit(ctx, Request::RevokeUserFamilies(username.to_owned())), Count)
    }

    fn create_api_token(
        &self,
        ctx: &WriteContext,
        token: NewApiToken,
    ) -> BoxFuture<'_, StoreResult<ApiToken>> {
        expect_reply!(self.submit(ctx, Request::CreateApiToken(token)), Token)
    }

    fn find_api_token(&self, token_hash: &str) -> BoxFuture<'_, StoreResult<Option<ApiToken>>> {
        let hash = token_hash.to_owned();
        self.blocking(move |core| {
            let id = match core.trees[ops::TOKEN_HASHES]
                .get(hash.as_bytes())
                .map_err(|e| core.storage(e))?
            {
                Some(id) => id,
                None => return Ok(None),
            };
            core.get_json(ops::TOKENS, &id, "API token")
        })
    }

    fn list_api_tokens(&self, owner: Option<&str>) -> BoxFuture<'_, StoreResult<Vec<ApiToken>>> {
        let owner = owner.map(str::to_owned);
        self.blocking(move |core| {
            let mut tokens: Vec<ApiToken> = core.all_json(ops::TOKENS, "API token")?;
            if let Some(owner) = owner {
                tokens.retain(|t| t.owner == owner);
            }
            Ok(tokens)
        })
    }

    fn revoke_api_token(
        &self,
        ctx: &WriteContext,
        id: &str,
    ) -> BoxFuture<'_, StoreResult<ApiToken>> {
        expect_reply!(self.submit(ctx, Request::RevokeApiToken(id.to_owned())), Token)
    }
}
