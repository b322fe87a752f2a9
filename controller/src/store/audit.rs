//! The audit log: append-only events, each chained to the previous one by a keyed hash
//! (HMAC-SHA256), so that changing, removing or reordering a stored event shows up in
//! [`verify`](super::AuditLog::verify), even for someone who can rewrite the store's files
//! but does not hold the audit key.
//!
//! # Format
//!
//! Events live in their own tree keyed by the big-endian sequence number (0, 1, 2, ...). A
//! stored value is a 32-byte digest of the event body followed by the body, the event as
//! JSON without its `hash`. The body carries `prevHash`, the hash of the event before (64 zeros
//! for the first), and `scheme`, how the digest is made: `hmac-sha256` (keyed with the
//! [`AuditKey`], kept in a file outside the store) or, when absent, plain SHA-256 (events
//! written before the chain was keyed, or by a store opened without a key). The head (last
//! sequence number and hash) is kept next to the revision, so that cutting events off the end
//! is caught too.
//!
//! # Keyed and unkeyed events
//!
//! Once an event is keyed, every later one must be: an unkeyed event after a keyed one is a
//! rewrite by someone without the key. A store opened with a key whose latest event is
//! unkeyed (an old store) first appends an `audit.keyed` event, so the keyed part of the chain
//! always reaches the head; the unkeyed events before it are protected by the first keyed
//! event's `prevHash`. The key does not protect against its holder: export the head
//! ([`AuditHead`]) elsewhere and check it later ([`ExpectedHead`]).
//!
//! # Retention
//!
//! Old events may be removed from the front ([`AuditRetention`]). The store then records the
//! oldest kept sequence number and the hash it chains from (keyed), and verification starts
//! there.
//!
//! # Size
//!
//! Every event is capped: free text (names, message, diff paths, actor) is cut to
//! [`MAX_EVENT_TEXT`] bytes in all, and the event says `truncated: true`.
//!
//! # Secrets
//!
//! Events never hold values from a spec: only hashes of the whole spec and the *paths* that
//! changed (`spec.env`), never what they changed to. Account events never hold password hashes
//! or token hashes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_schemas::DynamicObject;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::types::{Actor, Source, WriteContext};

/// The `prevHash` of the first event.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The audit key's file name in the data directory, when no other place is given.
pub const AUDIT_KEY_FILE: &str = "audit.key";

/// The most bytes of free text one event may hold (actor, verb, target, uid, message, diff
/// paths together); more is cut and the event marked `truncated`.
pub const MAX_EVENT_TEXT: usize = 4096;

type HmacSha256 = Hmac<Sha256>;

/// The secret that keys the audit chain (HMAC-SHA256). Kept in a file outside the store
/// (`audit.key` in the data directory, or wherever `--audit-key-file` says), never in sled and
/// never in a backup. Its `Debug` output is redacted.
#[derive(Clone)]
pub struct AuditKey {
    secret: Arc<[u8; AuditKey::LEN]>,
    /// Made just now (not read from a file): the store may adopt an unkeyed log with it.
    new: bool,
}

impl PartialEq for AuditKey {
    fn eq(&self, other: &Self) -> bool {
        self.secret == other.secret
    }
}

impl Eq for AuditKey {}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey(<redacted>)")
    }
}

/// Why the audit key could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum AuditKeyError {
    /// The file could not be read or written.
    #[error("cannot use the audit key file {path}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file does not hold a key (64 hex digits).
    #[error("the audit key file {path} does not hold a key (64 hex digits expected)")]
    Malformed {
        /// The key file.
        path: PathBuf,
    },
}

impl AuditKey {
    /// Key length in bytes.
    pub const LEN: usize = 32;

    /// A key from its bytes (an existing key: see [`is_new`](AuditKey::is_new)).
    pub fn from_bytes(bytes: [u8; Self::LEN]) -> Self {
        Self { secret: Arc::new(bytes), new: false }
    }

    /// A new random key.
    pub fn generate() -> Self {
        use rand::RngCore as _;
        let mut bytes = [0u8; Self::LEN];
        rand::rng().fill_bytes(&mut bytes);
        Self { secret: Arc::new(bytes), new: true }
    }

    /// Whether the key was made just now ([`generate`](AuditKey::generate), or
    /// [`load_or_create`](AuditKey::load_or_create) creating its file). Only a new key may
    /// adopt an existing unkeyed log (an old store): an existing key and a log with no record
    /// of being keyed with it means the log was rewritten.
    pub fn is_new(&self) -> bool {
        self.new
    }

    /// Reads the key from `path` (64 hex digits), or creates the file with a new key,
    /// readable by its owner only (0600), when it does not exist. Warns when an existing file
    /// is readable by others.
    ///
    /// # Errors
    ///
    /// [`AuditKeyError`] naming the file.
    pub fn load_or_create(path: &Path) -> Result<Self, AuditKeyError> {
        let io = |source| AuditKeyError::Io { path: path.to_owned(), source };
        match std::fs::read(path) {
            Ok(bytes) => {
                warn_if_readable_by_others(path);
                Self::parse(&bytes).ok_or_else(|| AuditKeyError::Malformed { path: path.into() })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                use std::io::Write as _;
                let key = Self::generate();
                let mut opts = std::fs::OpenOptions::new();
                opts.write(true).create_new(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt as _;
                    opts.mode(0o600);
                }
                match opts.open(path) {
                    Ok(mut f) => {
                        let text = format!("{}\n", hex(key.secret.as_slice()));
                        f.write_all(text.as_bytes()).map_err(io)?;
                        f.sync_all().map_err(io)?;
                        tracing::info!(path = %path.display(), "generated a new audit key");
                        Ok(key)
                    }
                    // Someone else created it between our read and create: use theirs.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        Self::load_or_create(path)
                    }
                    Err(e) => Err(io(e)),
                }
            }
            Err(e) => Err(io(e)),
        }
    }

    /// Reads the key from `path` when the file exists (`Ok(None)` when it does not).
    ///
    /// # Errors
    ///
    /// [`AuditKeyError`] naming the file.
    pub fn load_if_present(path: &Path) -> Result<Option<Self>, AuditKeyError> {
        match std::fs::read(path) {
            Ok(bytes) => Self::parse(&bytes)
                .map(Some)
                .ok_or_else(|| AuditKeyError::Malformed { path: path.into() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(AuditKeyError::Io { path: path.to_owned(), source }),
        }
    }

    fn parse(text: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(text).ok()?.trim();
        if text.len() != Self::LEN * 2 {
            return None;
        }
        let mut bytes = [0u8; Self::LEN];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Self::from_bytes(bytes))
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes keys of any length; ours is 32 bytes.
        <HmacSha256 as Mac>::new_from_slice(self.secret.as_slice())
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
    }

    /// HMAC-SHA256 of `parts` concatenated.
    pub(crate) fn sign(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = self.mac();
        for p in parts {
            mac.update(p);
        }
        mac.finalize().into_bytes().into()
    }

    /// Whether `tag` is the HMAC-SHA256 of `parts` (constant time).
    pub(crate) fn check(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        let mut mac = self.mac();
        for p in parts {
            mac.update(p);
        }
        mac.verify_slice(tag).is_ok()
    }
}

fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{:o}", meta.permissions().mode() & 0o777),
                "the audit key file is readable by other users; make it 0600"
            );
        }
    }
}

/// How an event's digest is made.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum ChainScheme {
    /// Plain SHA-256 of the body: events written before the chain was keyed (the field is
    /// absent in them).
    #[default]
    #[serde(rename = "sha256")]
    Sha256,
    /// HMAC-SHA256 of the body under the [`AuditKey`].
    #[serde(rename = "hmac-sha256")]
    HmacSha256,
}

impl ChainScheme {
    fn is_sha256(&self) -> bool {
        *self == ChainScheme::Sha256
    }
}

/// Which events to keep. Both limits may be set; an event goes when either says so. The latest
/// event is always kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuditRetention {
    /// Remove events older than this.
    pub max_age: Option<std::time::Duration>,
    /// Keep at most this many events (at least 1).
    pub max_events: Option<u64>,
}

impl AuditRetention {
    /// Whether any limit is set.
    pub fn is_enabled(&self) -> bool {
        self.max_age.is_some() || self.max_events.is_some()
    }
}

/// What one retention pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PruneReport {
    /// Events removed.
    pub removed: u64,
    /// The oldest event kept, if any.
    pub oldest_kept: Option<u64>,
}

/// The latest event: publish it elsewhere (a ticket, a log shipper, another host) and check it
/// later with [`ExpectedHead`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AuditHead {
    /// Its sequence number.
    pub seq: u64,
    /// Its hash (hex).
    pub hash: String,
}

impl std::fmt::Display for AuditHead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.seq, self.hash)
    }
}

/// A head exported earlier, which the chain must still contain: `SEQ:HASH`, or the hash alone
/// (then any event may have it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedHead {
    /// Where it must be, when known.
    pub seq: Option<u64>,
    /// Its hash (lowercase hex).
    pub hash: String,
}

impl std::str::FromStr for ExpectedHead {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (seq, hash) = match s.split_once(':') {
            Some((seq, hash)) => (
                Some(seq.parse::<u64>().map_err(|_| {
                    format!("expected head {s:?}: {seq:?} is not a sequence number")
                })?),
                hash,
            ),
            None => (None, s),
        };
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("expected head {s:?}: the hash must be 64 hex digits"));
        }
        Ok(Self { seq, hash: hash.to_ascii_lowercase() })
    }
}

impl std::fmt::Display for ExpectedHead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.seq {
            Some(seq) => write!(f, "{seq}:{}", self.hash),
            None => f.write_str(&self.hash),
        }
    }
}

/// Verbs the store records. Callers appending their own events may use other verbs.
pub mod verbs {
    /// A resource was created.
    pub const CREATE: &str = "create";
    /// A resource's spec, labels or annotations changed.
    pub const UPDATE: &str = "update";
    /// A resource's status changed.
    pub const UPDATE_STATUS: &str = "update-status";
    /// Deletion of a resource was requested (it is gone, or terminating until its finalizers
    /// are removed).
    pub const DELETE: &str = "delete";
    /// A finalizer was added to a resource.
    pub const ADD_FINALIZER: &str = "add-finalizer";
    /// A finalizer was removed from a resource (removing the last one of a terminating
    /// resource removes the resource).
    pub const REMOVE_FINALIZER: &str = "remove-finalizer";
    /// A user was created.
    pub const USER_CREATE: &str = "user.create";
    /// A user's role, password or disabled flag changed.
    pub const USER_UPDATE: &str = "user.update";
    /// A user was deleted.
    pub const USER_DELETE: &str = "user.delete";
    /// A refresh token was issued (login).
    pub const REFRESH_ISSUE: &str = "refresh.issue";
    /// A refresh token was exchanged for a new one.
    pub const REFRESH_ROTATE: &str = "refresh.rotate";
    /// A rotated refresh token was presented again; its family was revoked.
    pub const REFRESH_REUSE: &str = "refresh.reuse";
    /// The chain is keyed (HMAC-SHA256) from this event on: written once, when a store whose
    /// latest event is unkeyed is first opened with an audit key.
    pub const AUDIT_KEYED: &str = "audit.keyed";
    /// A refresh-token family was revoked (logout).
    pub const REFRESH_REVOKE: &str = "refresh.revoke";
    /// An API token was created.
    pub const TOKEN_CREATE: &str = "token.create";
    /// An API token was revoked.
    pub const TOKEN_REVOKE: &str = "token.revoke";
}

/// How the audited action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AuditOutcome {
    /// It was done.
    Success,
    /// It was refused by policy (authorization, rate limit).
    Denied,
    /// It failed (bad credentials, a sync error, ...).
    Failure,
    /// It is about to be done: the controller's *intent* event, written durably before a
    /// mutating Docker call. The event with the result names it in `intentSeq`.
    Pending,
    /// The result was never seen: the controller was stopped (`kill -9`, a crash) between an
    /// intent and its result. Written on the next start, with what is observed then.
    Unknown,
}

impl AuditOutcome {
    /// The lowercase name used in JSON (`success`, `pending`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Success => "success",
            AuditOutcome::Denied => "denied",
            AuditOutcome::Failure => "failure",
            AuditOutcome::Pending => "pending",
            AuditOutcome::Unknown => "unknown",
        }
    }
}

/// One audit event as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    /// Position in the log, from 0, without gaps.
    pub seq: u64,
    /// When it was recorded.
    pub time: DateTime<Utc>,
    /// Who.
    pub actor: Actor,
    /// Through which door.
    pub source: Source,
    /// What was done ([`verbs`], or a caller's own such as `login`).
    pub verb: String,
    /// The kind of what was acted on (`Container`, `User`, `ApiToken`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Its namespace, for namespaced resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Its name (user name, token id, resource name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The resource's uid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// `resourceVersion` before the write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version_before: Option<String>,
    /// `resourceVersion` after the write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version_after: Option<String>,
    /// SHA-256 (hex) of the canonical JSON of the spec before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec_hash_before: Option<String>,
    /// SHA-256 (hex) of the canonical JSON of the spec after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec_hash_after: Option<String>,
    /// The paths that changed (`spec.image`, `metadata.labels`, `status`); never values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diff: Vec<String>,
    /// How it ended.
    pub outcome: AuditOutcome,
    /// A short human note (a reason for a denial or failure). Must not contain secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// For the result of a controller action: the `seq` of its intent event (outcome
    /// `pending`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent_seq: Option<u64>,
    /// Whether free text was cut to fit [`MAX_EVENT_TEXT`].
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// How this event's hash is made (absent: plain SHA-256, an event from before keying).
    #[serde(default, skip_serializing_if = "ChainScheme::is_sha256")]
    pub scheme: ChainScheme,
    /// The hash of the previous event ([`GENESIS_HASH`] for the first).
    pub prev_hash: String,
    /// HMAC-SHA256 (or, for unkeyed events, SHA-256) of this event's stored body, hex. Not
    /// part of the body itself.
    #[serde(default, skip_serializing)]
    pub hash: String,
}

/// An event to append: everything but the sequence number, time and hashes, which the log
/// assigns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Who and through which door.
    pub context: WriteContext,
    /// What was done (`login`, `request.denied`, `sync.error`, ...).
    pub verb: String,
    /// How it ended.
    pub outcome: AuditOutcome,
    /// The kind of what was acted on.
    pub kind: Option<String>,
    /// Its namespace.
    pub namespace: Option<String>,
    /// Its name.
    pub name: Option<String>,
    /// A short note; must not contain secrets.
    pub message: Option<String>,
    /// The `seq` of the intent event this one gives the result of.
    pub intent_seq: Option<u64>,
}

impl AuditEntry {
    /// An entry with no target and no message.
    pub fn new(context: WriteContext, verb: impl Into<String>, outcome: AuditOutcome) -> Self {
        Self {
            context,
            verb: verb.into(),
            outcome,
            kind: None,
            namespace: None,
            name: None,
            message: None,
            intent_seq: None,
        }
    }

    /// Names what was acted on.
    pub fn target(
        mut self,
        kind: impl Into<String>,
        namespace: Option<String>,
        name: impl Into<String>,
    ) -> Self {
        self.kind = Some(kind.into());
        self.namespace = namespace;
        self.name = Some(name.into());
        self
    }

    /// Adds a note (no secrets).
    pub fn message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    /// Names the intent event (outcome `pending`) this event gives the result of.
    pub fn intent(mut self, seq: u64) -> Self {
        self.intent_seq = Some(seq);
        self
    }

    pub(crate) fn into_event(self) -> AuditEvent {
        AuditEvent {
            seq: 0,
            time: Utc::now(),
            actor: self.context.actor,
            source: self.context.source,
            verb: self.verb,
            kind: self.kind,
            namespace: self.namespace,
            name: self.name,
            uid: None,
            resource_version_before: None,
            resource_version_after: None,
            spec_hash_before: None,
            spec_hash_after: None,
            diff: Vec::new(),
            outcome: self.outcome,
            message: self.message,
            intent_seq: self.intent_seq,
            truncated: false,
            scheme: ChainScheme::Sha256,
            prev_hash: String::new(),
            hash: String::new(),
        }
    }
}

/// Which events to return. Filters combine with AND; the default returns the oldest page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only events at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only events before this time.
    pub until: Option<DateTime<Utc>>,
    /// Only this actor.
    pub actor: Option<Actor>,
    /// Only this verb.
    pub verb: Option<String>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only this namespace.
    pub namespace: Option<String>,
    /// Only this name.
    pub name: Option<String>,
    /// Paging cursor: start after this sequence number (before it when `newest_first`). Pass
    /// the previous page's `next_cursor`.
    pub cursor: Option<u64>,
    /// Newest events first.
    pub newest_first: bool,
    /// Page size (capped at 1000; 0 means 100).
    pub limit: usize,
}

impl Default for AuditQuery {
    fn default() -> Self {
        Self {
            since: None,
            until: None,
            actor: None,
            verb: None,
            kind: None,
            namespace: None,
            name: None,
            cursor: None,
            newest_first: false,
            limit: 100,
        }
    }
}

impl AuditQuery {
    /// The effective page size.
    pub fn page_size(&self) -> usize {
        match self.limit {
            0 => 100,
            n => n.min(1000),
        }
    }

    /// Whether `event` passes the filters (the cursor is not checked here).
    pub fn matches(&self, event: &AuditEvent) -> bool {
        self.since.is_none_or(|t| event.time >= t)
            && self.until.is_none_or(|t| event.time < t)
            && self.actor.as_ref().is_none_or(|a| *a == event.actor)
            && self.verb.as_deref().is_none_or(|v| v == event.verb)
            && self.kind.as_deref().is_none_or(|k| Some(k) == event.kind.as_deref())
            && self.namespace.as_deref().is_none_or(|n| Some(n) == event.namespace.as_deref())
            && self.name.as_deref().is_none_or(|n| Some(n) == event.name.as_deref())
    }
}

/// One page of audit events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditPage {
    /// The events, in the order asked for.
    pub events: Vec<AuditEvent>,
    /// Pass as `cursor` for the next page; `None` when there is no more.
    pub next_cursor: Option<u64>,
}

/// The result of checking the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    /// How many events were checked.
    pub events: u64,
    /// The hash of the last good event (publish it elsewhere to anchor the log).
    pub head_hash: String,
    /// The sequence number of the first event that fails a check, if any.
    pub first_bad: Option<u64>,
    /// What is wrong (with that event, or with the expected head).
    pub problem: Option<String>,
    /// The oldest event checked: 0, or the oldest kept by retention (the chain is verified
    /// from the hash recorded for it).
    #[serde(default)]
    pub verified_from: u64,
    /// The sequence number of the last good event.
    #[serde(default)]
    pub head_seq: Option<u64>,
    /// The first keyed (HMAC-SHA256) event checked; events before it are unkeyed SHA-256.
    #[serde(default)]
    pub keyed_from: Option<u64>,
    /// Whether keyed events were checked against the audit key (`false`: the store was opened
    /// without one, so only their links were checked).
    #[serde(default)]
    pub key_checked: bool,
    /// The head the caller expected (`SEQ:HASH` or a hash), found in the chain, when one was
    /// given and found.
    #[serde(default)]
    pub expected_head: Option<String>,
}

impl VerifyReport {
    /// Whether the whole chain checked out (and contains the expected head, when one was
    /// given).
    pub fn is_ok(&self) -> bool {
        self.first_bad.is_none() && self.problem.is_none()
    }
}

/// Lower-case hex of bytes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Encodes an event for storage: `digest(body) ‖ body`, the digest keyed when `key` is given.
/// Sets `event.scheme` and fills in `event.hash`.
pub(crate) fn encode(
    event: &mut AuditEvent,
    key: Option<&AuditKey>,
) -> Result<Vec<u8>, serde_json::Error> {
    event.scheme = if key.is_some() { ChainScheme::HmacSha256 } else { ChainScheme::Sha256 };
    let body = serde_json::to_vec(&*event)?;
    let digest: [u8; 32] = match key {
        Some(k) => k.sign(&[&body]),
        None => Sha256::digest(&body).into(),
    };
    event.hash = hex(&digest);
    let mut value = Vec::with_capacity(32 + body.len());
    value.extend_from_slice(&digest);
    value.extend_from_slice(&body);
    Ok(value)
}

/// Why a stored value is not a valid event.
#[derive(Debug)]
pub(crate) enum DecodeProblem {
    /// Shorter than a hash.
    Truncated,
    /// The stored hash does not match the body.
    HashMismatch,
    /// The keyed hash does not match the body under the audit key.
    MacMismatch,
    /// The body is not an event.
    Json(serde_json::Error),
}

impl std::fmt::Display for DecodeProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeProblem::Truncated => f.write_str("record is truncated"),
            DecodeProblem::HashMismatch => f.write_str("hash does not match the event's content"),
            DecodeProblem::MacMismatch => f.write_str(
                "keyed hash does not match the event's content under the audit key (rewritten \
                 without the key, or a different key is in use)",
            ),
            DecodeProblem::Json(e) => write!(f, "record is not an audit event: {e}"),
        }
    }
}

/// Decodes a stored value and checks its hash: SHA-256 for unkeyed events; for keyed events
/// the HMAC under `key`, or nothing when `key` is `None` (see the returned flag: `true` when a
/// keyed event's MAC was checked).
pub(crate) fn decode(
    value: &[u8],
    key: Option<&AuditKey>,
) -> Result<(AuditEvent, bool), DecodeProblem> {
    if value.len() < 32 {
        return Err(DecodeProblem::Truncated);
    }
    let (digest, body) = value.split_at(32);
    let mut event: AuditEvent = serde_json::from_slice(body).map_err(DecodeProblem::Json)?;
    let checked = match event.scheme {
        ChainScheme::Sha256 => {
            let actual: [u8; 32] = Sha256::digest(body).into();
            if actual != digest {
                return Err(DecodeProblem::HashMismatch);
            }
            false
        }
        ChainScheme::HmacSha256 => match key {
            Some(k) if !k.check(&[body], digest) => return Err(DecodeProblem::MacMismatch),
            Some(_) => true,
            None => false,
        },
    };
    event.hash = hex(digest);
    Ok((event, checked))
}

/// Where the kept chain starts: sequence number 0 and [`GENESIS_HASH`], or, after retention
/// removed older events, the oldest kept one and the hash it chains from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChainStart {
    /// The oldest kept event.
    pub seq: u64,
    /// The `prevHash` it must carry.
    pub prev: String,
}

impl Default for ChainStart {
    fn default() -> Self {
        Self { seq: 0, prev: GENESIS_HASH.to_owned() }
    }
}

const BASE_DOMAIN: &[u8] = b"berth-audit-base\0";

impl ChainStart {
    /// The stored form: `seq (8, big-endian) ‖ prev (64 hex) ‖ [HMAC (32)]`.
    pub(crate) fn encode(&self, key: Option<&AuditKey>) -> Vec<u8> {
        let seq = self.seq.to_be_bytes();
        let mut v = Vec::with_capacity(8 + 64 + 32);
        v.extend_from_slice(&seq);
        v.extend_from_slice(self.prev.as_bytes());
        if let Some(k) = key {
            v.extend_from_slice(&k.sign(&[BASE_DOMAIN, &seq, self.prev.as_bytes()]));
        }
        v
    }

    /// Reads the stored form; the flag says whether it is keyed.
    pub(crate) fn decode(value: &[u8]) -> Option<(Self, bool)> {
        if value.len() != 8 + 64 && value.len() != 8 + 64 + 32 {
            return None;
        }
        let seq = u64::from_be_bytes(value[..8].try_into().ok()?);
        let prev = std::str::from_utf8(&value[8..72]).ok()?.to_owned();
        Some((Self { seq, prev }, value.len() > 72))
    }

    /// Whether a keyed stored form carries a valid HMAC under `key`.
    pub(crate) fn check(value: &[u8], key: &AuditKey) -> bool {
        value.len() == 8 + 64 + 32 && key.check(&[BASE_DOMAIN, &value[..72]], &value[72..])
    }
}

const KEYED_FROM_DOMAIN: &[u8] = b"berth-audit-keyed-from\0";

/// The stored record of the first keyed event: `seq (8, big-endian) ‖ HMAC (32)`.
pub(crate) fn encode_keyed_from(seq: u64, key: &AuditKey) -> Vec<u8> {
    let bytes = seq.to_be_bytes();
    let mut v = bytes.to_vec();
    v.extend_from_slice(&key.sign(&[KEYED_FROM_DOMAIN, &bytes]));
    v
}

/// Reads the record of the first keyed event; with a key, only a record it signed.
pub(crate) fn decode_keyed_from(value: &[u8], key: Option<&AuditKey>) -> Option<u64> {
    if value.len() != 8 + 32 {
        return None;
    }
    let (seq, tag) = value.split_at(8);
    if let Some(k) = key
        && !k.check(&[KEYED_FROM_DOMAIN, seq], tag)
    {
        return None;
    }
    seq.try_into().ok().map(u64::from_be_bytes)
}

/// Walks stored `(seq, value)` pairs in order from `start` and reports the first that breaks
/// the chain. `head` is the recorded `(seq, hash)` of the last event, when one is recorded;
/// `key` checks keyed events (without it only their links are checked); `keyed_from` is the
/// recorded first keyed event (with a key, only a record it signed: every event from there on
/// must be keyed, and a key without such a record fails a non-empty log); `expect` is a head
/// exported earlier that the chain must contain.
pub(crate) fn verify_chain<I, E>(
    records: I,
    start: &ChainStart,
    head: Option<(u64, String)>,
    key: Option<&AuditKey>,
    keyed_from: Option<u64>,
    expect: Option<&ExpectedHead>,
) -> Result<VerifyReport, E>
where
    I: IntoIterator<Item = Result<(u64, Vec<u8>), E>>,
{
    let mut expected_seq = start.seq;
    let mut prev = start.prev.clone();
    let recorded_keyed_from = keyed_from;
    let mut keyed_from: Option<u64> = None;
    // The expected head may be the hash the oldest kept event chains from.
    let mut found = expect.is_some_and(|x| {
        start.seq > 0 && x.hash == start.prev && x.seq.is_none_or(|s| s + 1 == start.seq)
    });
    let mut mismatch: Option<(u64, String)> = None;
    let report = |expected_seq: u64,
                  prev: &str,
                  keyed_from: Option<u64>,
                  first_bad: Option<u64>,
                  problem: Option<String>| VerifyReport {
        events: expected_seq - start.seq,
        head_hash: prev.to_owned(),
        first_bad,
        problem,
        verified_from: start.seq,
        head_seq: expected_seq.checked_sub(1).filter(|s| *s >= start.seq),
        keyed_from: recorded_keyed_from.or(keyed_from),
        key_checked: key.is_some(),
        expected_head: None,
    };
    let bad = |seq: u64, prev: &str, keyed_from: Option<u64>, problem: String| {
        report(seq, prev, keyed_from, Some(seq), Some(problem))
    };
    for record in records {
        let (seq, value) = record?;
        if seq != expected_seq {
            return Ok(bad(
                expected_seq,
                &prev,
                keyed_from,
                format!("event {expected_seq} is missing (next stored is {seq})"),
            ));
        }
        let event = match decode(&value, key) {
            Ok((e, _)) => e,
            Err(problem) => return Ok(bad(seq, &prev, keyed_from, problem.to_string())),
        };
        if event.seq != seq {
            return Ok(bad(
                seq,
                &prev,
                keyed_from,
                format!("event stored at {seq} says it is {}", event.seq),
            ));
        }
        let keyed = event.scheme == ChainScheme::HmacSha256;
        if key.is_some() && recorded_keyed_from.is_none() {
            return Ok(bad(
                seq,
                &prev,
                keyed_from,
                "an audit key is in use but the store has no record, signed with it, of where \
                 the chain became keyed: the log was rewritten, or a different key is in use"
                    .to_owned(),
            ));
        }
        if !keyed && recorded_keyed_from.is_some_and(|k| seq >= k) {
            return Ok(bad(
                seq,
                &prev,
                keyed_from,
                format!(
                    "event is not keyed but the chain is keyed from event {}: it was rewritten \
                     without the audit key",
                    recorded_keyed_from.unwrap_or_default()
                ),
            ));
        }
        if keyed_from.is_some() && !keyed {
            return Ok(bad(
                seq,
                &prev,
                keyed_from,
                "event is not keyed but earlier events are: it was rewritten without the audit key"
                    .to_owned(),
            ));
        }
        if event.prev_hash != prev {
            return Ok(bad(seq, &prev, keyed_from, "previous-hash link does not match".to_owned()));
        }
        if keyed && keyed_from.is_none() {
            keyed_from = Some(seq);
        }
        if let Some(x) = expect {
            match x.seq {
                Some(s) if s == seq => {
                    if x.hash == event.hash {
                        found = true;
                    } else {
                        mismatch = Some((seq, event.hash.clone()));
                    }
                }
                None if x.hash == event.hash => found = true,
                _ => {}
            }
        }
        prev = event.hash;
        expected_seq += 1;
    }
    let last = expected_seq.wrapping_sub(1);
    match head {
        Some((head_seq, head_hash)) if head_seq + 1 != expected_seq || head_hash != prev => {
            return Ok(bad(
                expected_seq.min(head_seq),
                &prev,
                keyed_from,
                format!("log ends at event {last} but the recorded head is event {head_seq}"),
            ));
        }
        None if expected_seq > start.seq => {
            return Ok(bad(
                last,
                &prev,
                keyed_from,
                "events are stored but no head is recorded".to_owned(),
            ));
        }
        _ => {}
    }
    if let Some(k) = recorded_keyed_from
        && key.is_some()
        && expected_seq > start.seq
        && k > last
    {
        return Ok(bad(
            last,
            &prev,
            keyed_from,
            format!(
                "the log ends at event {last} but is keyed from event {k}: keyed events were \
                 removed"
            ),
        ));
    }
    let mut out = report(expected_seq, &prev, keyed_from, None, None);
    if let Some(x) = expect {
        if found {
            out.expected_head = Some(x.to_string());
        } else {
            out.problem = Some(match (x.seq, mismatch) {
                (Some(s), Some((_, actual))) => format!(
                    "event {s} has hash {actual}, not the expected {}: the history up to it was \
                     rewritten",
                    x.hash
                ),
                (Some(s), None) if s < start.seq => format!(
                    "the expected head, event {s}, is older than the oldest kept event \
                     {}: it was removed by retention and cannot be checked",
                    start.seq
                ),
                (Some(s), None) => format!(
                    "the log has no event {s} (it ends at event {last}): events were removed \
                     or the history was rewritten"
                ),
                (None, _) => format!(
                    "no event in the log has the expected hash {}: the history was rewritten",
                    x.hash
                ),
            });
        }
    }
    Ok(out)
}

/// Cuts `s` to at most `max` bytes at a character boundary; says whether it cut.
fn cut(s: &mut String, max: usize) -> bool {
    if s.len() <= max {
        return false;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    true
}

/// Caps an event's free text at [`MAX_EVENT_TEXT`] bytes in all, marking it `truncated`
/// when anything was cut. Short fields (verb, kind, namespace, uid) get small budgets, the
/// name and the actor more, the message what is left; diff paths share what remains.
pub(crate) fn cap(event: &mut AuditEvent) {
    let mut cut_any = false;
    let mut used = 0usize;
    let mut take = |s: &mut String, max: usize, cut_any: &mut bool| {
        *cut_any |= cut(s, max);
        used += s.len();
    };
    match &mut event.actor {
        Actor::User(name) | Actor::ApiToken(name) => take(name, 256, &mut cut_any),
        _ => {}
    }
    take(&mut event.verb, 128, &mut cut_any);
    for (field, max) in [
        (&mut event.kind, 128),
        (&mut event.namespace, 256),
        (&mut event.name, 512),
        (&mut event.uid, 128),
        (&mut event.resource_version_before, 32),
        (&mut event.resource_version_after, 32),
    ] {
        if let Some(s) = field {
            take(s, max, &mut cut_any);
        }
    }
    // Paths: at most 1 KiB together.
    let mut diff_budget = 1024usize;
    let before = event.diff.len();
    let mut kept = Vec::with_capacity(before);
    for mut p in std::mem::take(&mut event.diff) {
        cut_any |= cut(&mut p, 256);
        if p.len() > diff_budget {
            cut_any = true;
            break;
        }
        diff_budget -= p.len();
        used += p.len();
        kept.push(p);
    }
    event.diff = kept;
    if let Some(m) = &mut event.message {
        cut_any |= cut(m, MAX_EVENT_TEXT.saturating_sub(used));
    }
    event.truncated |= cut_any;
}

/// Serializes JSON with object keys sorted, so equal values hash equally whatever the key
/// order of the input.
pub(crate) fn canonical_json(value: &serde_json::Value, out: &mut Vec<u8>) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            out.push(b'{');
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                // Serializing a string to a Vec cannot fail.
                let _ = serde_json::to_writer(&mut *out, k);
                out.push(b':');
                if let Some(v) = map.get(k) {
                    canonical_json(v, out);
                }
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical_json(v, out);
            }
            out.push(b']');
        }
        other => {
            let _ = serde_json::to_writer(&mut *out, other);
        }
    }
}

/// SHA-256 (hex) of the canonical JSON of a spec.
pub fn spec_hash(spec: &serde_json::Value) -> String {
    let mut buf = Vec::new();
    canonical_json(spec, &mut buf);
    hex(&Sha256::digest(&buf))
}

/// The paths that differ between two versions of an object: top-level `spec.*` fields,
/// `metadata.labels`, `metadata.annotations`, `metadata.finalizers`,
/// `metadata.deletionTimestamp` and top-level `status.*` fields. Paths only, never values.
pub fn changed_paths(old: Option<&DynamicObject>, new: Option<&DynamicObject>) -> Vec<String> {
    let (old, new) = match (old, new) {
        (Some(o), Some(n)) => (o, n),
        (None, Some(_)) => return vec!["(created)".to_owned()],
        (Some(_), None) => return vec!["(removed)".to_owned()],
        (None, None) => return Vec::new(),
    };
    let mut paths = Vec::new();
    top_level_changes("spec", &old.spec, &new.spec, &mut paths);
    if old.metadata.labels != new.metadata.labels {
        paths.push("metadata.labels".to_owned());
    }
    if old.metadata.annotations != new.metadata.annotations {
        paths.push("metadata.annotations".to_owned());
    }
    if old.metadata.finalizers != new.metadata.finalizers {
        paths.push("metadata.finalizers".to_owned());
    }
    if old.metadata.deletion_timestamp != new.metadata.deletion_timestamp {
        paths.push("metadata.deletionTimestamp".to_owned());
    }
    top_level_changes("status", &old.status, &new.status, &mut paths);
    paths
}

fn top_level_changes(
    prefix: &str,
    old: &serde_json::Value,
    new: &serde_json::Value,
    out: &mut Vec<String>,
) {
    if old == new {
        return;
    }
    match (old.as_object(), new.as_object()) {
        (Some(o), Some(n)) => {
            let keys: BTreeSet<&String> = o.keys().chain(n.keys()).collect();
            for k in keys {
                if o.get(k) != n.get(k) {
                    out.push(format!("{prefix}.{k}"));
                }
            }
        }
        _ => out.push(prefix.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(seq: u64, prev: &str) -> (AuditEvent, Vec<u8>) {
        let mut e =
            AuditEntry::new(WriteContext::controller(), "test", AuditOutcome::Success).into_event();
        e.seq = seq;
        e.prev_hash = prev.to_owned();
        let bytes = encode(&mut e, None).expect("encode");
        (e, bytes)
    }

    fn chain(n: u64) -> Vec<(u64, Vec<u8>)> {
        let mut prev = GENESIS_HASH.to_owned();
        (0..n)
            .map(|seq| {
                let (e, bytes) = event(seq, &prev);
                prev = e.hash;
                (seq, bytes)
            })
            .collect()
    }

    fn verify(records: &[(u64, Vec<u8>)], head: Option<(u64, String)>) -> VerifyReport {
        let it = records.iter().cloned().map(Ok::<_, ()>);
        verify_chain(it, &ChainStart::default(), head, None, None, None)
            .unwrap_or_else(|()| unreachable!())
    }

    fn head_of(records: &[(u64, Vec<u8>)]) -> Option<(u64, String)> {
        records.last().and_then(|(s, v)| decode(v, None).ok().map(|(e, _)| (*s, e.hash)))
    }

    #[test]
    fn an_intact_chain_verifies() {
        let records = chain(5);
        let report = verify(&records, head_of(&records));
        assert!(report.is_ok(), "{report:?}");
        assert_eq!(report.events, 5);
    }

    #[test]
    fn an_edited_event_is_caught_at_its_index() {
        let mut records = chain(5);
        let body = String::from_utf8_lossy(&records[2].1[32..]).replace("controller", "user:eve");
        records[2].1.truncate(32);
        records[2].1.extend_from_slice(body.as_bytes());
        let head = head_of(&records);
        assert_eq!(verify(&records, head).first_bad, Some(2));
    }

    #[test]
    fn a_rehashed_edit_is_caught_by_the_next_link() {
        let mut records = chain(5);
        let (mut forged, _) = event(2, "forged");
        forged.prev_hash = decode(&records[1].1, None).map(|(e, _)| e.hash).unwrap_or_default();
        forged.verb = "forged".into();
        records[2].1 = encode(&mut forged, None).unwrap_or_default();
        let head = head_of(&records);
        assert_eq!(verify(&records, head).first_bad, Some(3));
    }

    #[test]
    fn a_removed_event_and_a_cut_tail_are_caught() {
        let mut records = chain(5);
        let head = head_of(&records);
        records.remove(1);
        assert_eq!(verify(&records, head.clone()).first_bad, Some(1));

        let mut records = chain(5);
        records.pop();
        assert_eq!(verify(&records, head).first_bad, Some(4));
    }

    #[test]
    fn spec_hashes_ignore_key_order() {
        let a = json!({"image": "nginx", "env": [{"name": "A", "value": "1"}]});
        let b = serde_json::from_str(r#"{"env":[{"value":"1","name":"A"}],"image":"nginx"}"#)
            .unwrap_or_default();
        assert_eq!(spec_hash(&a), spec_hash(&b));
        assert_ne!(spec_hash(&a), spec_hash(&json!({"image": "nginx"})));
    }

    #[test]
    fn the_diff_names_paths_but_never_values() {
        let mut old = DynamicObject {
            api_version: berth_schemas::API_VERSION.into(),
            kind: berth_schemas::Kind::Container,
            metadata: berth_schemas::ObjectMeta::named("web"),
            spec: json!({"image": "nginx", "env": [{"name": "PASSWORD", "value": "hunter2"}]}),
            status: serde_json::Value::Null,
        };
        let mut new = old.clone();
        new.spec["env"][0]["value"] = json!("s3cret");
        new.metadata.labels.insert("app".into(), "web".into());
        let diff = changed_paths(Some(&old), Some(&new));
        assert_eq!(diff, vec!["spec.env".to_owned(), "metadata.labels".to_owned()]);
        assert!(!format!("{diff:?}").contains("s3cret"));
        old.status = json!({"ready": true});
        let mut newer = old.clone();
        newer.status = json!({"ready": false, "message": "pulling"});
        assert_eq!(changed_paths(Some(&old), Some(&newer)), vec!["status.message", "status.ready"]);
    }
}
