//! The change feed of the sled store: ordering, resume, too-old, slow watchers.

mod store_support;

use berth_controller::store::{
    EventType, ListQuery, ResourceStore, WatchError, WatchQuery, WriteContext,
};
use berth_schemas::Kind;
use serde_json::json;
use store_support::{alice, container, key, open, open_with};

#[tokio::test]
async fn every_write_reaches_a_watcher_in_revision_order_with_its_type() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path());
    let list = store.list(&ListQuery::default()).await?;
    let mut watch = store.watch(WatchQuery::after(list.revision))?;

    store.create(&alice(), container("web", "nginx:1")).await?;
    store.add_finalizer(&WriteContext::controller(), &key("web"), "f").await?;
    store.apply(&alice(), container("web", "nginx:2")).await?;
    store.apply(&alice(), container("web", "nginx:2")).await?; // unchanged: no event
    store.update_status(&WriteContext::controller(), &key("web"), json!({"ready": true})).await?;
    store.delete(&alice(), &key("web")).await?;
    store.remove_finalizer(&WriteContext::controller(), &key("web"), "f").await?;

    let mut seen = Vec::new();
    for _ in 0..6 {
        let e = watch.next().await?;
        seen.push((e.revision, e.event_type));
    }
    assert_eq!(
        seen,
        [
            (1, EventType::Added),
            (2, EventType::Modified),
            (3, EventType::Modified),
            (4, EventType::Modified),
            (5, EventType::Modified),
            (6, EventType::Deleted),
        ]
    );
    assert_eq!(watch.try_next(), Ok(None));
    Ok(())
}

#[tokio::test]
async fn a_watch_resumes_from_a_past_revision_in_the_history() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path());
    for i in 0..10 {
        store.create(&alice(), container(&format!("c{i}"), "nginx")).await?;
    }
    let mut watch = store.watch(WatchQuery::after(6))?;
    store.create(&alice(), container("late", "nginx")).await?;
    let mut revisions = Vec::new();
    for _ in 0..5 {
        revisions.push(watch.next().await?.revision);
    }
    assert_eq!(revisions, [7, 8, 9, 10, 11]);
    Ok(())
}

#[tokio::test]
async fn a_revision_older_than_the_history_is_too_old() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open_with(dir.path(), 4, 64);
    for i in 0..10 {
        store.create(&alice(), container(&format!("c{i}"), "nginx")).await?;
    }
    // History holds revisions 7..=10: resuming after 6 works, after 5 does not.
    assert!(store.watch(WatchQuery::after(6)).is_ok());
    assert_eq!(
        store.watch(WatchQuery::after(5)).err(),
        Some(WatchError::TooOld { requested: 5, oldest_resumable: 6 })
    );
    Ok(())
}

#[tokio::test]
async fn after_a_restart_only_the_current_revision_can_be_resumed() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path());
    store.create(&alice(), container("a", "nginx")).await?;
    store.create(&alice(), container("b", "nginx")).await?;
    store.close();
    drop(store);
    let store = open(dir.path());
    assert!(matches!(store.watch(WatchQuery::after(1)), Err(WatchError::TooOld { .. })));
    let mut watch = store.watch(WatchQuery::after(2))?;
    store.create(&alice(), container("c", "nginx")).await?;
    assert_eq!(watch.next().await?.revision, 3);
    Ok(())
}

#[tokio::test]
async fn a_slow_watcher_is_told_to_relist_and_blocks_no_one() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open_with(dir.path(), 1000, 4);
    let mut slow = store.watch(WatchQuery::from_now())?;
    let mut fast = store.watch(WatchQuery::from_now())?;
    let mut fast_seen = Vec::new();
    for i in 0..20 {
        // Every write completes although the slow watcher never reads.
        store.create(&alice(), container(&format!("c{i}"), "nginx")).await?;
        fast_seen.push(fast.next().await?.revision);
    }
    assert_eq!(fast_seen, (1..=20).collect::<Vec<u64>>());
    let mut slow_seen = Vec::new();
    let end = loop {
        match slow.next().await {
            Ok(e) => slow_seen.push(e.revision),
            Err(e) => break e,
        }
    };
    assert_eq!(slow_seen, [1, 2, 3, 4]);
    assert_eq!(end, WatchError::FellBehind);
    Ok(())
}

#[tokio::test]
async fn watches_filter_by_kind_and_namespace() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path());
    let mut images = store.watch(WatchQuery::from_now().kind(Kind::Image))?;
    let mut team_b = store.watch(WatchQuery::from_now().namespace("team-b"))?;
    store.create(&alice(), container("web", "nginx")).await?;
    let mut image = container("nginx", "x");
    image.kind = Kind::Image;
    store.create(&alice(), image).await?;
    let mut other = container("web", "nginx");
    other.metadata.namespace = "team-b".into();
    store.create(&alice(), other).await?;
    assert_eq!(images.next().await?.revision, 2);
    assert_eq!(team_b.next().await?.revision, 3);
    assert_eq!(images.try_next(), Ok(None));
    assert_eq!(team_b.try_next(), Ok(None));
    Ok(())
}

#[tokio::test]
async fn closing_the_store_ends_watches() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path());
    let mut watch = store.watch(WatchQuery::from_now())?;
    store.close();
    assert_eq!(watch.next().await, Err(WatchError::Closed));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_produce_a_gap_free_feed() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path());
    let mut watch = store.watch(WatchQuery::from_now())?;
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..8 {
        let store = store.clone();
        tasks.spawn(async move {
            for i in 0..25 {
                store.create(&alice(), container(&format!("w{w}-{i}"), "nginx")).await?;
            }
            Ok::<_, berth_controller::store::StoreError>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let mut revisions = Vec::new();
    for _ in 0..200 {
        revisions.push(watch.next().await?.revision);
    }
    assert_eq!(revisions, (1..=200).collect::<Vec<u64>>());
    Ok(())
}
