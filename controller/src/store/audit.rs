//! The audit log: append-only events, each chained to the previous one by SHA-256, so that
//! changing, removing or reordering a stored event shows up in [`verify`](super::AuditLog::verify).
//!
//! # Format
//!
//! Events live in their own tree keyed by the big-endian sequence number (0, 1, 2, ...). A
//! stored value is the 32-byte SHA-256 of the event body followed by the body, the event as
//! JSON without its `hash`. The body carries `prevHash`, the hash of the event before (64 zeros
//! for the first). The head (last sequence number and hash) is kept next to the revision, so
//! that cutting events off the end is caught too.
//!
//! # Secrets
//!
//! Events never hold values from a spec: only hashes of the whole spec and the *paths* that
//! changed (`spec.env`), never what they changed to. Account events never hold password hashes
//! or token hashes.

use std::collections::BTreeSet;

use berth_schemas::DynamicObject;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::types::{Actor, Source, WriteContext};

/// The `prevHash` of the first event.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

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
    /// A refresh-token family was revoked (logout).
    pub const REFRESH_REVOKE: &str = "refresh.revoke";
    /// An API token was created.
    pub const TOKEN_CREATE: &str = "token.create";
    /// An API token was revoked.
    pub const TOKEN_REVOKE: &str = "token.revoke";
}

/// How the audited action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// The hash of the previous event ([`GENESIS_HASH`] for the first).
    pub prev_hash: String,
    /// SHA-256 (hex) of this event's stored body. Not part of the body itself.
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditPage {
    /// The events, in the order asked for.
    pub events: Vec<AuditEvent>,
    /// Pass as `cursor` for the next page; `None` when there is no more.
    pub next_cursor: Option<u64>,
}

/// The result of checking the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    /// How many events were checked.
    pub events: u64,
    /// The hash of the last good event (publish it elsewhere to anchor the log).
    pub head_hash: String,
    /// The sequence number of the first event that fails a check, if any.
    pub first_bad: Option<u64>,
    /// What is wrong with it.
    pub problem: Option<String>,
}

impl VerifyReport {
    /// Whether the whole chain checked out.
    pub fn is_ok(&self) -> bool {
        self.first_bad.is_none()
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

/// Encodes an event for storage: `sha256(body) ‖ body`. Fills in `event.hash`.
pub(crate) fn encode(event: &mut AuditEvent) -> Result<Vec<u8>, serde_json::Error> {
    let body = serde_json::to_vec(&*event)?;
    let digest: [u8; 32] = Sha256::digest(&body).into();
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
    /// The body is not an event.
    Json(serde_json::Error),
}

impl std::fmt::Display for DecodeProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeProblem::Truncated => f.write_str("record is truncated"),
            DecodeProblem::HashMismatch => f.write_str("hash does not match the event's content"),
            DecodeProblem::Json(e) => write!(f, "record is not an audit event: {e}"),
        }
    }
}

/// Decodes a stored value, checking its own hash.
pub(crate) fn decode(value: &[u8]) -> Result<AuditEvent, DecodeProblem> {
    if value.len() < 32 {
        return Err(DecodeProblem::Truncated);
    }
    let (digest, body) = value.split_at(32);
    let actual: [u8; 32] = Sha256::digest(body).into();
    if actual != digest {
        return Err(DecodeProblem::HashMismatch);
    }
    let mut event: AuditEvent = serde_json::from_slice(body).map_err(DecodeProblem::Json)?;
    event.hash = hex(digest);
    Ok(event)
}

/// Walks stored `(seq, value)` pairs in order and reports the first that breaks the chain.
/// `head` is the recorded `(seq, hash)` of the last event, when one is recorded.
pub(crate) fn verify_chain<I, E>(records: I, head: Option<(u64, String)>) -> Result<VerifyReport, E>
where
    I: IntoIterator<Item = Result<(u64, Vec<u8>), E>>,
{
    let mut expected_seq = 0u64;
    let mut prev = GENESIS_HASH.to_owned();
    let bad = |seq: u64, prev: &str, problem: String| VerifyReport {
        events: seq,
        head_hash: prev.to_owned(),
        first_bad: Some(seq),
        problem: Some(problem),
    };
    for record in records {
        let (seq, value) = record?;
        if seq != expected_seq {
            return Ok(bad(
                expected_seq,
                &prev,
                format!("event {expected_seq} is missing (next stored is {seq})"),
            ));
        }
        let event = match decode(&value) {
            Ok(e) => e,
            Err(problem) => return Ok(bad(seq, &prev, problem.to_string())),
        };
        if event.seq != seq {
            return Ok(bad(seq, &prev, format!("event stored at {seq} says it is {}", event.seq)));
        }
        if event.prev_hash != prev {
            return Ok(bad(seq, &prev, "previous-hash link does not match".to_owned()));
        }
        prev = event.hash;
        expected_seq += 1;
    }
    match head {
        Some((head_seq, head_hash)) if head_seq + 1 != expected_seq || head_hash != prev => {
            Ok(bad(
                expected_seq.min(head_seq),
                &prev,
                format!(
                    "log ends at event {} but the recorded head is event {head_seq}",
                    expected_seq.wrapping_sub(1)
                ),
            ))
        }
        None if expected_seq > 0 => {
            Ok(bad(expected_seq - 1, &prev, "events are stored but no head is recorded".to_owned()))
        }
        _ => Ok(VerifyReport {
            events: expected_seq,
            head_hash: prev,
            first_bad: None,
            problem: None,
        }),
    }
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
        let bytes = encode(&mut e).expect("encode");
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
        verify_chain(it, head).unwrap_or_else(|()| unreachable!())
    }

    fn head_of(records: &[(u64, Vec<u8>)]) -> Option<(u64, String)> {
        records.last().and_then(|(s, v)| decode(v).ok().map(|e| (*s, e.hash)))
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
        forged.prev_hash = decode(&records[1].1).map(|e| e.hash).unwrap_or_default();
        forged.verb = "forged".into();
        records[2].1 = encode(&mut forged).unwrap_or_default();
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
