//! The keyed audit chain on a real sled store on disk (issue 11, holes 15 and 5): a rewrite by
//! someone without the audit key is caught, a head exported earlier catches a rewrite by the
//! key's holder, old unkeyed stores keep verifying, retention keeps the chain verifiable from
//! the oldest kept event, and no event is larger than the cap.

mod store_support;

use std::path::{Path, PathBuf};

use berth_controller::store::SledStore;
use berth_controller::store::audit::{AUDIT_KEY_FILE, MAX_EVENT_TEXT, verbs};
use berth_controller::store::{
    Actor, AuditEntry, AuditKey, AuditLog, AuditOutcome, AuditQuery, AuditRetention, ExpectedHead,
    ResourceStore, Source, StoreConfig, WriteContext,
};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use store_support::{alice, container, raw_sled, waiting_for_the_lock};

/// A key file outside the data directory (as `--audit-key-file`), and the store's directory.
struct Dirs {
    _tmp: tempfile::TempDir,
    data: PathBuf,
    key_file: PathBuf,
}

fn dirs() -> Dirs {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let key_file = tmp.path().join(AUDIT_KEY_FILE);
    Dirs { data, key_file, _tmp: tmp }
}

fn open_keyed(d: &Dirs, retention: AuditRetention) -> SledStore {
    let key = AuditKey::load_or_create(&d.key_file).expect("audit key");
    let mut config = StoreConfig::new(&d.data);
    config.audit_key = Some(key);
    config.audit_retention = retention;
    waiting_for_the_lock(|| SledStore::open(config.clone())).expect("open keyed store")
}

fn open_unkeyed(dir: &Path) -> SledStore {
    waiting_for_the_lock(|| SledStore::open(StoreConfig::new(dir))).expect("open store")
}

async fn write_events(store: &SledStore, prefix: &str, n: usize) {
    for i in 0..n {
        store.create(&alice(), container(&format!("{prefix}{i}"), "nginx")).await.expect("create");
    }
}

fn close(store: SledStore) {
    store.close();
    drop(store);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// How a forger makes an event's digest.
enum Forger {
    /// Without the key: plain SHA-256, the event marked unkeyed (as the chain was before).
    Unkeyed,
    /// Without the key, leaving the event marked keyed: SHA-256 where the HMAC should be.
    UnkeyedKeepingTheScheme,
    /// With the key (read from its file): HMAC-SHA256, as the store does.
    Keyed(Vec<u8>),
}

/// Rewrites a closed store's audit log from event `from` on, as an attacker who can write the
/// files would: replaces `edit.0` by `edit.1` in event `from`, recomputes the digest of it and
/// of every later event with their `prevHash` links, and rewrites the recorded head.
fn forge(dir: &Path, from: u64, edit: (&str, &str), forger: &Forger) {
    let db = raw_sled(dir).expect("raw sled");
    let audit = db.open_tree("audit").expect("audit tree");
    let meta = db.open_tree("meta").expect("meta tree");
    let mut prev: Option<String> = None;
    let mut last = None;
    for item in audit.range(from.to_be_bytes()..) {
        let (k, v) = item.expect("read");
        let seq = u64::from_be_bytes(k.as_ref().try_into().expect("key"));
        let mut body: serde_json::Value = serde_json::from_slice(&v[32..]).expect("json");
        if seq == from {
            let text = body.to_string().replace(edit.0, edit.1);
            assert!(text.contains(edit.1), "nothing to edit in event {seq}");
            body = serde_json::from_str(&text).expect("json");
        }
        if let Some(p) = &prev {
            body["prevHash"] = p.clone().into();
        }
        let obj = body.as_object_mut().expect("object");
        let digest: Vec<u8> = match forger {
            Forger::Unkeyed => {
                obj.remove("scheme");
                Sha256::digest(serde_json::to_vec(&body).expect("json")).to_vec()
            }
            Forger::UnkeyedKeepingTheScheme => {
                Sha256::digest(serde_json::to_vec(&body).expect("json")).to_vec()
            }
            Forger::Keyed(key) => {
                let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("hmac key");
                mac.update(&serde_json::to_vec(&body).expect("json"));
                mac.finalize().into_bytes().to_vec()
            }
        };
        let mut value = digest.clone();
        value.extend_from_slice(&serde_json::to_vec(&body).expect("json"));
        audit.insert(k, value).expect("write");
        prev = Some(hex(&digest));
        last = Some((seq, hex(&digest)));
    }
    let (seq, hash) = last.expect("events to forge");
    let mut head = seq.to_be_bytes().to_vec();
    head.extend_from_slice(hash.as_bytes());
    meta.insert("audit_head", head).expect("head");
    db.flush().expect("flush");
}

fn key_bytes(key_file: &Path) -> Vec<u8> {
    let text = std::fs::read_to_string(key_file).expect("key file");
    let text = text.trim();
    (0..text.len() / 2).map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap()).collect()
}

#[tokio::test]
async fn an_unkeyed_chain_can_be_recomputed_by_anyone_which_is_why_it_is_keyed() {
    // The store as it was before keying: a forger rewrites an event and recomputes the
    // SHA-256 chain, and verify cannot tell.
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = open_unkeyed(tmp.path());
    write_events(&store, "c", 6).await;
    close(store);
    forge(tmp.path(), 3, ("user:alice", "user:bobby"), &Forger::Unkeyed);
    let store = open_unkeyed(tmp.path());
    let report = store.verify().await.expect("verify");
    assert!(report.is_ok(), "an unkeyed chain cannot catch a recomputed rewrite: {report:?}");
    assert_eq!(report.keyed_from, None);
}

#[tokio::test]
async fn rewriting_an_event_and_recomputing_unkeyed_hashes_is_caught_with_the_key() {
    for forger in [Forger::Unkeyed, Forger::UnkeyedKeepingTheScheme] {
        let d = dirs();
        let store = open_keyed(&d, AuditRetention::default());
        write_events(&store, "c", 6).await;
        let report = store.verify().await.expect("verify");
        assert!(report.is_ok(), "{report:?}");
        assert_eq!((report.keyed_from, report.key_checked, report.events), (Some(0), true, 6));
        close(store);

        forge(&d.data, 3, ("user:alice", "user:bobby"), &forger);
        // The store still opens (the forged head is consistent), but verify fails at the
        // rewritten event.
        let store = open_keyed(&d, AuditRetention::default());
        let report = store.verify().await.expect("verify");
        assert_eq!(report.first_bad, Some(3), "{report:?}");
        assert!(!report.is_ok());
        assert_eq!(report.events, 3, "events 0..3 still check out: {report:?}");
        close(store);
    }
}

#[tokio::test]
async fn a_whole_log_rewritten_unkeyed_is_caught_by_an_existing_key() {
    let d = dirs();
    let store = open_keyed(&d, AuditRetention::default());
    write_events(&store, "c", 4).await;
    close(store);
    // Everything from event 0 rewritten unkeyed, and the record of keying removed: it looks
    // like an old store, but the key file is not new, so it is not adopted.
    forge(&d.data, 0, ("user:alice", "user:bobby"), &Forger::Unkeyed);
    {
        let db = raw_sled(&d.data).expect("raw sled");
        db.open_tree("meta").expect("meta").remove("audit_keyed_from").expect("remove");
        db.flush().expect("flush");
    }
    let store = open_keyed(&d, AuditRetention::default());
    let report = store.verify().await.expect("verify");
    assert_eq!(report.first_bad, Some(0), "{report:?}");
    assert!(report.problem.as_deref().unwrap_or("").contains("no record"), "{report:?}");
    // No adoption event was written.
    let page = store.query(&AuditQuery::default()).await.expect("query");
    assert!(page.events.iter().all(|e| e.verb != verbs::AUDIT_KEYED));
}

#[tokio::test]
async fn an_expected_head_from_before_a_rewrite_by_the_key_holder_fails_verify() {
    let d = dirs();
    let store = open_keyed(&d, AuditRetention::default());
    write_events(&store, "c", 5).await;
    let head = store.head().await.expect("head").expect("a head");
    assert_eq!(head.seq, 4);
    let exported: ExpectedHead = head.to_string().parse().expect("SEQ:HASH parses");
    let report = store.verify_expecting(Some(exported.clone())).await.expect("verify");
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.expected_head.as_deref(), Some(head.to_string().as_str()));
    write_events(&store, "later", 2).await;
    let report = store.verify_expecting(Some(exported.clone())).await.expect("verify");
    assert!(report.is_ok(), "an older head is still in the chain: {report:?}");
    close(store);

    // Someone holding the key rewrites event 2 and re-signs everything after it.
    forge(&d.data, 2, ("user:alice", "user:bobby"), &Forger::Keyed(key_bytes(&d.key_file)));
    let store = open_keyed(&d, AuditRetention::default());
    assert!(store.verify().await.expect("verify").is_ok(), "the key holder's rewrite verifies");
    let report = store.verify_expecting(Some(exported.clone())).await.expect("verify");
    assert!(!report.is_ok(), "{report:?}");
    assert!(report.problem.as_deref().unwrap_or("").contains("event 4 has hash"), "{report:?}");
    let hash_only: ExpectedHead = head.hash.parse().expect("a hash alone parses");
    let report = store.verify_expecting(Some(hash_only)).await.expect("verify");
    assert!(!report.is_ok(), "{report:?}");
    let beyond = ExpectedHead { seq: Some(99), hash: head.hash.clone() };
    let report = store.verify_expecting(Some(beyond)).await.expect("verify");
    assert!(report.problem.as_deref().unwrap_or("").contains("no event 99"), "{report:?}");
}

#[tokio::test]
async fn an_old_unkeyed_store_keeps_verifying_and_is_keyed_from_an_adoption_event() {
    let d = dirs();
    let store = open_unkeyed(&d.data);
    write_events(&store, "old", 3).await;
    close(store);

    let store = open_keyed(&d, AuditRetention::default());
    let page = store.query(&AuditQuery::default()).await.expect("query");
    assert_eq!(page.events.len(), 4);
    assert_eq!(page.events[3].verb, verbs::AUDIT_KEYED);
    write_events(&store, "new", 2).await;
    let report = store.verify().await.expect("verify");
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.keyed_from, Some(3), "{report:?}");
    assert_eq!(report.events, 6);
    close(store);

    // Reopening with the (now existing) key adopts nothing more.
    let store = open_keyed(&d, AuditRetention::default());
    assert!(store.verify().await.expect("verify").is_ok());
    assert_eq!(store.query(&AuditQuery::default()).await.expect("query").events.len(), 6);
    close(store);

    // An unkeyed event before the switch-over, rewritten and recomputed up to it, breaks the
    // first keyed event's link.
    {
        let db = raw_sled(&d.data).expect("raw sled");
        let audit = db.open_tree("audit").expect("audit");
        let v = audit.get(1u64.to_be_bytes()).expect("get").expect("event 1");
        let body = String::from_utf8_lossy(&v[32..]).replace("user:alice", "user:bobby");
        let mut forged = Sha256::digest(body.as_bytes()).to_vec();
        let new_hash = hex(&forged);
        forged.extend_from_slice(body.as_bytes());
        audit.insert(1u64.to_be_bytes(), forged).expect("write");
        let v = audit.get(2u64.to_be_bytes()).expect("get").expect("event 2");
        let mut body: serde_json::Value = serde_json::from_slice(&v[32..]).expect("json");
        body["prevHash"] = new_hash.into();
        let bytes = serde_json::to_vec(&body).expect("json");
        let mut forged = Sha256::digest(&bytes).to_vec();
        forged.extend_from_slice(&bytes);
        audit.insert(2u64.to_be_bytes(), forged).expect("write");
        db.flush().expect("flush");
    }
    let store = open_keyed(&d, AuditRetention::default());
    let report = store.verify().await.expect("verify");
    assert_eq!(report.first_bad, Some(3), "{report:?}");
}

#[tokio::test]
async fn retention_keeps_the_newest_events_and_verify_starts_from_the_oldest_kept() {
    let d = dirs();
    let retention = AuditRetention { max_age: None, max_events: Some(4) };
    let store = open_keyed(&d, retention);
    write_events(&store, "c", 10).await;
    let before = store.head().await.expect("head").expect("head");
    let pruned = store.prune_audit().await.expect("prune");
    assert_eq!((pruned.removed, pruned.oldest_kept), (6, Some(6)));
    let report = store.verify().await.expect("verify");
    assert!(report.is_ok(), "{report:?}");
    assert_eq!((report.verified_from, report.events), (6, 4), "{report:?}");
    let page = store.query(&AuditQuery::default()).await.expect("query");
    assert_eq!(page.events.iter().map(|e| e.seq).collect::<Vec<_>>(), [6, 7, 8, 9]);
    assert_eq!(store.head().await.expect("head"), Some(before));
    // Nothing more to do; new events are chained on as before.
    assert_eq!(store.prune_audit().await.expect("prune").removed, 0);
    write_events(&store, "d", 2).await;
    assert_eq!(store.prune_audit().await.expect("prune").removed, 2);
    // A head exported before retention removed it cannot be checked, and says so.
    let old = ExpectedHead { seq: Some(2), hash: "0".repeat(64) };
    let report = store.verify_expecting(Some(old)).await.expect("verify");
    assert!(report.problem.as_deref().unwrap_or("").contains("retention"), "{report:?}");
    close(store);

    // Reopened from disk, the chain still verifies from the oldest kept event.
    let store = open_keyed(&d, retention);
    let report = store.verify().await.expect("verify");
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.verified_from, 8);
    close(store);

    // Removing the oldest kept event and moving the start without the key is caught.
    {
        let db = raw_sled(&d.data).expect("raw sled");
        let audit = db.open_tree("audit").expect("audit");
        let meta = db.open_tree("meta").expect("meta");
        let v = audit.get(8u64.to_be_bytes()).expect("get").expect("event 8");
        let hash = hex(&v[..32]);
        audit.remove(8u64.to_be_bytes()).expect("remove");
        let mut base = 9u64.to_be_bytes().to_vec();
        base.extend_from_slice(hash.as_bytes());
        meta.insert("audit_base", base).expect("base");
        db.flush().expect("flush");
    }
    let store = open_keyed(&d, retention);
    let report = store.verify().await.expect("verify");
    assert!(!report.is_ok(), "{report:?}");
    assert!(report.problem.as_deref().unwrap_or("").contains("without the key"), "{report:?}");
}

#[tokio::test]
async fn retention_by_age_keeps_at_least_the_latest_event() {
    let d = dirs();
    let retention = AuditRetention { max_age: Some(std::time::Duration::ZERO), max_events: None };
    let store = open_keyed(&d, retention);
    write_events(&store, "c", 5).await;
    let pruned = store.prune_audit().await.expect("prune");
    assert_eq!((pruned.removed, pruned.oldest_kept), (4, Some(4)));
    let report = store.verify().await.expect("verify");
    assert!(report.is_ok(), "{report:?}");
    assert_eq!((report.verified_from, report.events), (4, 1));
}

#[tokio::test]
async fn a_huge_event_is_cut_to_the_cap_and_marked_truncated() {
    let d = dirs();
    let store = open_keyed(&d, AuditRetention::default());
    let huge = "x".repeat(1024 * 1024);
    let ctx = WriteContext::new(Actor::User(huge.clone()), Source::Rest);
    let entry = AuditEntry::new(ctx, "login", AuditOutcome::Failure)
        .target("User", Some(huge.clone()), huge.clone())
        .message(format!("é{huge}"));
    let event = store.append(entry).await.expect("append");
    assert!(event.truncated);
    let text = event.actor.to_string().len()
        + event.namespace.as_deref().map_or(0, str::len)
        + event.name.as_deref().map_or(0, str::len)
        + event.message.as_deref().map_or(0, str::len);
    assert!(text <= MAX_EVENT_TEXT + 8, "{text} bytes of text kept");
    let stored = store.query(&AuditQuery::default()).await.expect("query");
    let stored = stored.events.last().expect("the event");
    assert!(stored.truncated);
    assert!(serde_json::to_vec(stored).expect("json").len() < 2 * MAX_EVENT_TEXT);
    // A small event is left alone.
    let small = store
        .append(AuditEntry::new(alice(), "login", AuditOutcome::Success).message("ok"))
        .await
        .expect("append");
    assert!(!small.truncated);
    assert!(store.verify().await.expect("verify").is_ok());
}

#[cfg(unix)]
#[tokio::test]
async fn the_store_leaves_nothing_readable_by_others_and_tightens_a_loose_directory() {
    use std::os::unix::fs::PermissionsExt as _;
    fn loose(dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("read dir") {
            let path = entry.expect("entry").path();
            let meta = std::fs::symlink_metadata(&path).expect("meta");
            if meta.permissions().mode() & 0o077 != 0 {
                out.push(format!("{} {:o}", path.display(), meta.permissions().mode()));
            }
            if meta.is_dir() {
                loose(&path, out);
            }
        }
    }
    let d = dirs();
    let store = open_keyed(&d, AuditRetention::default());
    write_events(&store, "c", 3).await;
    close(store);
    let mode = std::fs::metadata(&d.data).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    let mut found = Vec::new();
    loose(&d.data, &mut found);
    assert!(found.is_empty(), "readable by others: {found:?}");
    let key_mode = std::fs::metadata(&d.key_file).expect("key").permissions().mode() & 0o777;
    assert_eq!(key_mode, 0o600);

    // Loosen it as an older berth left it; opening tightens everything again.
    std::fs::set_permissions(&d.data, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let conf = d.data.join("conf");
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let store = open_keyed(&d, AuditRetention::default());
    close(store);
    let mut found = Vec::new();
    loose(&d.data, &mut found);
    assert!(found.is_empty(), "readable by others: {found:?}");
    assert_eq!(std::fs::metadata(&d.data).expect("meta").permissions().mode() & 0o777, 0o700);
}
