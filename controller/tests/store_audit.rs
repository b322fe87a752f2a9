//! The audit log of the sled store: one event per mutation in the same batch, the hash chain,
//! tamper detection, queries and paging, and no secrets.

mod store_support;

use berth_controller::store::SledStore;
use berth_controller::store::audit::verbs;
use berth_controller::store::{
    Actor, AuditEntry, AuditLog, AuditOutcome, AuditQuery, ResourceStore, Source, StoreConfig,
    StoreError, WriteContext,
};
use serde_json::json;
use store_support::{alice, container, key, open};

#[tokio::test]
async fn every_mutation_writes_exactly_one_event_with_its_details() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path());
    let created = store.create(&alice(), container("web", "nginx:1")).await?.object;
    let updated = store.apply(&alice(), container("web", "nginx:2")).await?.object;
    store.apply(&alice(), container("web", "nginx:2")).await?; // unchanged
    let mut stale = container("web", "nginx:3");
    stale.metadata.resource_version = Some("1".into());
    assert!(store.apply(&alice(), stale).await.is_err()); // refused
    store.update_status(&WriteContext::controller(), &key("web"), json!({"ready": true})).await?;
    store.delete(&alice(), &key("web")).await?;

    let page = store.query(&AuditQuery::default()).await?;
    let verbs: Vec<&str> = page.events.iter().map(|e| e.verb.as_str()).collect();
    assert_eq!(verbs, [verbs::CREATE, verbs::UPDATE, verbs::UPDATE_STATUS, verbs::DELETE]);
    assert_eq!(page.events.iter().map(|e| e.seq).collect::<Vec<_>>(), [0, 1, 2, 3]);

    let update = &page.events[1];
    assert_eq!(update.actor, Actor::User("alice".into()));
    assert_eq!(update.source, Source::Rest);
    assert_eq!(update.kind.as_deref(), Some("Container"));
    assert_eq!(update.namespace.as_deref(), Some("default"));
    assert_eq!(update.name.as_deref(), Some("web"));
    assert_eq!(update.uid, created.metadata.uid);
    assert_eq!(update.resource_version_before, created.metadata.resource_version);
    assert_eq!(update.resource_version_after, updated.metadata.resource_version);
    assert_ne!(update.spec_hash_before, update.spec_hash_after);
    assert_eq!(update.diff, ["spec.image"]);
    assert_eq!(update.outcome, AuditOutcome::Success);
    assert_eq!(update.prev_hash, page.events[0].hash);

    let status = &page.events[2];
    assert_eq!(status.actor, Actor::Controller);
    assert_eq!(status.spec_hash_before, status.spec_hash_after);
    assert_eq!(status.diff, ["status"]);
    assert!(store.verify().await?.is_ok());
    Ok(())
}

#[tokio::test]
async fn secret_values_never_reach_the_log() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path());
    let mut obj = container("db", "postgres");
    obj.spec =
        json!({"image": "postgres", "env": [{"name": "PGPASSWORD", "value": "first-s3cret"}]});
    store.create(&alice(), obj.clone()).await?;
    obj.spec["env"][0]["value"] = json!("second-s3cret");
    store.apply(&alice(), obj).await?;
    let page = store.query(&AuditQuery::default()).await?;
    assert_eq!(page.events[1].diff, ["spec.env"]);
    store.close();
    drop(store);

    let db = store_support::raw_sled(dir.path())?;
    let audit = db.open_tree("audit")?;
    assert_eq!(audit.len(), 2);
    for item in audit.iter() {
        let (_, value) = item?;
        let text = String::from_utf8_lossy(&value);
        assert!(!text.contains("s3cret"), "secret in audit record: {text}");
    }
    Ok(())
}

#[tokio::test]
async fn appended_events_share_the_chain_and_the_chain_verifies() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path());
    store.create(&alice(), container("web", "nginx")).await?;
    let entry = AuditEntry::new(
        WriteContext::new(Actor::Anonymous, Source::Rest),
        "login",
        AuditOutcome::Failure,
    )
    .target("User", None, "mallory")
    .message("bad password");
    let event = store.append(entry).await?;
    assert_eq!(event.seq, 1);
    let report = store.verify().await?;
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.events, 2);
    assert_eq!(report.head_hash, event.hash);
    Ok(())
}

/// Rewrites the JSON body of audit event `seq` in a closed store, keeping its stored hash.
fn tamper(dir: &std::path::Path, seq: u64, from: &str, to: &str) -> anyhow::Result<()> {
    let db = store_support::raw_sled(dir)?;
    let audit = db.open_tree("audit")?;
    let value = audit.get(seq.to_be_bytes())?.ok_or_else(|| anyhow::anyhow!("no event {seq}"))?;
    let (hash, body) = value.split_at(32);
    let body = String::from_utf8_lossy(body).replace(from, to);
    anyhow::ensure!(body.contains(to), "nothing to replace in event {seq}");
    let mut forged = hash.to_vec();
    forged.extend_from_slice(body.as_bytes());
    audit.insert(seq.to_be_bytes(), forged)?;
    db.flush()?;
    Ok(())
}

#[tokio::test]
async fn a_tampered_event_is_caught_at_its_index() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path());
    for i in 0..6 {
        store.create(&alice(), container(&format!("c{i}"), "nginx")).await?;
    }
    store.close();
    drop(store);
    tamper(dir.path(), 3, "user:alice", "user:bobby")?;

    let store = open(dir.path());
    let report = store.verify().await?;
    assert_eq!(report.first_bad, Some(3), "{report:?}");
    assert_eq!(report.events, 3);
    Ok(())
}

#[tokio::test]
async fn a_tampered_last_event_stops_the_store_from_opening() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path());
    for i in 0..3 {
        store.create(&alice(), container(&format!("c{i}"), "nginx")).await?;
    }
    store.close();
    drop(store);
    tamper(dir.path(), 2, "user:alice", "user:bobby")?;
    match SledStore::open(StoreConfig::new(dir.path())) {
        Err(e @ StoreError::Corrupt { .. }) => {
            assert!(e.to_string().contains(&dir.path().display().to_string()), "{e}");
        }
        other => panic!("expected a corrupt store, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn a_full_verify_on_open_refuses_a_tampered_chain() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path());
    for i in 0..3 {
        store.create(&alice(), container(&format!("c{i}"), "nginx")).await?;
    }
    store.close();
    drop(store);
    tamper(dir.path(), 0, "user:alice", "user:bobby")?;
    assert!(SledStore::open(StoreConfig::new(dir.path())).is_ok());
    let mut config = StoreConfig::new(dir.path());
    config.verify_audit_on_open = true;
    let err = SledStore::open(config).err();
    assert!(
        matches!(err, Some(StoreError::Corrupt { ref detail, .. }) if detail.contains("audit event 0")),
        "{err:?}"
    );
    Ok(())
}

#[tokio::test]
async fn queries_filter_by_actor_verb_resource_and_time_and_page_by_cursor() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path());
    let bob = WriteContext::rest_user("bob");
    for i in 0..5 {
        store.create(&alice(), container(&format!("a{i}"), "nginx")).await?;
        store.create(&bob, container(&format!("b{i}"), "nginx")).await?;
    }
    let middle = chrono::Utc::now();
    store.delete(&bob, &key("a0")).await?;
    store.update_status(&WriteContext::controller(), &key("a1"), json!({"ready": true})).await?;

    let by_bob = store
        .query(&AuditQuery { actor: Some(Actor::User("bob".into())), ..Default::default() })
        .await?;
    assert_eq!(by_bob.events.len(), 6);
    let deletes =
        store.query(&AuditQuery { verb: Some("delete".into()), ..Default::default() }).await?;
    assert_eq!(deletes.events.iter().map(|e| e.name.as_deref()).collect::<Vec<_>>(), [Some("a0")]);
    let about_a1 = store
        .query(&AuditQuery {
            kind: Some("Container".into()),
            name: Some("a1".into()),
            ..Default::default()
        })
        .await?;
    assert_eq!(about_a1.events.len(), 2);
    let recent = store.query(&AuditQuery { since: Some(middle), ..Default::default() }).await?;
    assert_eq!(recent.events.len(), 2);
    let early = store.query(&AuditQuery { until: Some(middle), ..Default::default() }).await?;
    assert_eq!(early.events.len(), 10);

    // Page through everything, oldest first, three at a time.
    let mut seqs = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.query(&AuditQuery { cursor, limit: 3, ..Default::default() }).await?;
        seqs.extend(page.events.iter().map(|e| e.seq));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seqs, (0..12).collect::<Vec<u64>>());

    // Newest first, filtered, two at a time.
    let q = AuditQuery {
        actor: Some(Actor::User("alice".into())),
        newest_first: true,
        limit: 2,
        ..Default::default()
    };
    let first = store.query(&q).await?;
    assert_eq!(
        first.events.iter().map(|e| e.name.as_deref()).collect::<Vec<_>>(),
        [Some("a4"), Some("a3")]
    );
    let second = store.query(&AuditQuery { cursor: first.next_cursor, ..q }).await?;
    assert_eq!(
        second.events.iter().map(|e| e.name.as_deref()).collect::<Vec<_>>(),
        [Some("a2"), Some("a1")]
    );
    Ok(())
}
