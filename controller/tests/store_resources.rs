//! Resource semantics of the sled store: creation, optimistic concurrency, generation, status,
//! finalizers, lists and selectors — against real sled on disk.

mod store_support;

use berth_controller::store::{ListQuery, ResourceStore, StoreError, WriteContext, WriteOutcome};
use berth_schemas::Kind;
use berth_schemas::selector::Selector;
use serde_json::json;
use store_support::{alice, container, key, labelled, open};

#[tokio::test]
async fn create_assigns_uid_generation_one_a_fresh_revision_and_a_timestamp() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let store = open(dir.path());
    let before = store.revision();
    let r = store.create(&alice(), container("web", "nginx:1")).await?;
    assert_eq!(r.outcome, WriteOutcome::Created);
    assert!(r.old.is_none());
    let m = &r.object.metadata;
    assert!(m.uid.as_deref().is_some_and(|u| uuid::Uuid::parse_str(u).is_ok()));
    assert_eq!(m.generation, Some(1));
    assert_eq!(m.resource_version, Some((before + 1).to_string()));
    assert_eq!(r.revision, before + 1);
    assert!(m.creation_timestamp.is_some());
    assert_eq!(store.get(&key("web")).await?, Some(r.object));
    Ok(())
}

#[tokio::test]
async fn create_of_an_existing_object_and_update_of_a_missing_one_are_refused() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let store = open(dir.path());
    store.create(&alice(), container("web", "nginx:1")).await?;
    let err = store.create(&alice(), container("web", "nginx:2")).await;
    assert!(matches!(err, Err(StoreError::AlreadyExists { .. })), "{err:?}");
    let err = store.update(&alice(), container("db", "postgres")).await;
    assert!(matches!(err, Err(StoreError::NotFound { .. })), "{err:?}");
    Ok(())
}

#[tokio::test]
async fn an_unchanged_apply_writes_nothing() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path());
    let created = store.apply(&alice(), container("web", "nginx:1")).await?;
    let revision = store.revision();
    let again = store.apply(&alice(), container("web", "nginx:1")).await?;
    assert_eq!(again.outcome, WriteOutcome::Unchanged);
    assert_eq!(again.object, created.object);
    assert_eq!(store.revision(), revision);
    Ok(())
}

#[tokio::test]
async fn generation_moves_only_when_the_spec_changes() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path());
    store.apply(&alice(), container("web", "nginx:1")).await?;

    let mut relabelled = container("web", "nginx:1");
    relabelled.metadata.labels.insert("app".into(), "web".into());
    let r = store.apply(&alice(), relabelled.clone()).await?;
    assert_eq!(r.outcome, WriteOutcome::Configured);
    assert_eq!(r.object.metadata.generation, Some(1));
    assert_eq!(r.object.metadata.labels.get("app").map(String::as_str), Some("web"));

    relabelled.spec = json!({"image": "nginx:2"});
    let r = store.apply(&alice(), relabelled).await?;
    assert_eq!(r.outcome, WriteOutcome::Configured);
    assert_eq!(r.object.metadata.generation, Some(2));
    assert_eq!(r.old.map(|o| o.spec), Some(json!({"image": "nginx:1"})));
    assert_eq!(r.object.metadata.uid, store.get(&key("web")).await?.and_then(|o| o.metadata.uid));
    Ok(())
}

#[tokio::test]
async fn a_stale_resource_version_is_a_conflict_and_the_current_one_is_not() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path());
    let v1 = store.apply(&alice(), container("web", "nginx:1")).await?.object;
    let v2 = store.apply(&alice(), container("web", "nginx:2")).await?.object;

    let mut stale = container("web", "nginx:3");
    stale.metadata.resource_version = v1.metadata.resource_version.clone();
    match store.apply(&alice(), stale).await {
        Err(StoreError::Conflict { expected, actual, .. }) => {
            assert_eq!(Some(expected), v1.metadata.resource_version);
            assert_eq!(actual, v2.metadata.resource_version);
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(store.get(&key("web")).await?.map(|o| o.spec), Some(json!({"image": "nginx:2"})));

    let mut current = container("web", "nginx:3");
    current.metadata.resource_version = v2.metadata.resource_version.clone();
    assert_eq!(store.apply(&alice(), current).await?.outcome, WriteOutcome::Configured);

    let mut missing = container("ghost", "x");
    missing.metadata.resource_version = Some("1".into());
    let err = store.apply(&alice(), missing).await;
    assert!(matches!(err, Err(StoreError::Conflict { actual: None, .. })), "{err:?}");
    Ok(())
}

#[tokio::test]
async fn status_writes_never_bump_generation_and_never_conflict_with_spec_writes()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path());
    let read = store.apply(&alice(), container("web", "nginx:1")).await?.object;

    let status =
        json!({"observedGeneration": 1, "conditions": [{"type": "Ready", "status": "True"}]});
    let r = store.update_status(&WriteContext::controller(), &key("web"), status.clone()).await?;
    assert_eq!(r.outcome, WriteOutcome::Configured);
    assert_eq!(r.object.metadata.generation, Some(1));
    assert_eq!(r.object.status, status);
    assert_ne!(r.object.metadata.resource_version, read.metadata.resource_version);
    let same =
        store.update_status(&WriteContext::controller(), &key("web"), status.clone()).await?;
    assert_eq!(same.outcome, WriteOutcome::Unchanged);

    // A spec write naming the version read before the status write still goes through...
    let mut edit = container("web", "nginx:2");
    edit.metadata.resource_version = read.metadata.resource_version.clone();
    let r = store.apply(&alice(), edit).await?;
    assert_eq!(r.outcome, WriteOutcome::Configured);
    assert_eq!(r.object.metadata.generation, Some(2));
    // ...and keeps the status the controller wrote.
    assert_eq!(r.object.status, status);

    // But a spec write naming a version from before another spec write conflicts.
    let mut stale = container("web", "nginx:3");
    stale.metadata.resource_version = read.metadata.resource_version.clone();
    assert!(matches!(store.apply(&alice(), stale).await, Err(StoreError::Conflict { .. })));

    // Status in an apply request is ignored.
    let mut with_status = container("web", "nginx:2");
    with_status.status = json!({"forged": true});
    assert_eq!(store.apply(&alice(), with_status).await?.outcome, WriteOutcome::Unchanged);
    Ok(())
}

#[tokio::test]
async fn a_dry_run_answers_what_the_apply_answers_and_writes_nothing() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path());
    let dry = store.apply_dry_run(container("web", "nginx:1")).await?;
    assert_eq!(dry.outcome, WriteOutcome::Created);
    assert_eq!(store.get(&key("web")).await?, None);
    let read = store.apply(&alice(), container("web", "nginx:1")).await?.object;
    store.update_status(&WriteContext::controller(), &key("web"), json!({"ready": true})).await?;
    let revision = store.revision();

    // A version moved past only by a status write: both accept it.
    let mut edit = container("web", "nginx:2");
    edit.metadata.resource_version = read.metadata.resource_version.clone();
    let dry = store.apply_dry_run(edit.clone()).await?;
    assert_eq!(dry.outcome, WriteOutcome::Configured);
    assert_eq!(dry.object.metadata.generation, Some(2));
    assert_eq!(store.revision(), revision, "a dry run writes nothing");
    assert_eq!(store.apply(&alice(), edit).await?.outcome, WriteOutcome::Configured);

    // A version from before another spec write: both refuse it.
    let mut stale = container("web", "nginx:3");
    stale.metadata.resource_version = read.metadata.resource_version.clone();
    let dry = store.apply_dry_run(stale.clone()).await;
    assert!(matches!(dry, Err(StoreError::Conflict { .. })), "{dry:?}");
    assert!(matches!(store.apply(&alice(), stale).await, Err(StoreError::Conflict { .. })));
    assert_eq!(
        store.apply_dry_run(container("web", "nginx:2")).await?.outcome,
        WriteOutcome::Unchanged
    );
    Ok(())
}

#[tokio::test]
async fn client_set_finalizers_are_ignored_like_the_other_server_set_fields() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let store = open(dir.path());
    let mut obj = container("web", "nginx:1");
    obj.metadata.finalizers = vec!["example.com/forever".into()];
    let r = store.create(&alice(), obj.clone()).await?;
    assert!(r.object.metadata.finalizers.is_empty(), "{:?}", r.object.metadata.finalizers);
    // Nor can an update add one.
    obj.spec = json!({"image": "nginx:2"});
    let r = store.apply(&alice(), obj).await?;
    assert!(r.object.metadata.finalizers.is_empty(), "{:?}", r.object.metadata.finalizers);
    assert_eq!(store.delete(&alice(), &key("web")).await?.outcome, WriteOutcome::Deleted);
    Ok(())
}

#[tokio::test]
async fn delete_with_finalizers_waits_for_the_last_finalizer() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path());
    let ctl = WriteContext::controller();
    store.create(&alice(), container("web", "nginx:1")).await?;
    store.add_finalizer(&ctl, &key("web"), "berth.dev/docker-cleanup").await?;
    store.add_finalizer(&ctl, &key("web"), "example.com/other").await?;

    let r = store.delete(&alice(), &key("web")).await?;
    assert_eq!(r.outcome, WriteOutcome::Terminating);
    assert!(r.object.metadata.deletion_timestamp.is_some());
    assert_eq!(store.delete(&alice(), &key("web")).await?.outcome, WriteOutcome::Unchanged);

    // A terminating object takes no spec change and no new finalizer, but status still.
    let err = store.apply(&alice(), container("web", "nginx:2")).await;
    assert!(matches!(err, Err(StoreError::Terminating { .. })), "{err:?}");
    let err = store.add_finalizer(&ctl, &key("web"), "late").await;
    assert!(matches!(err, Err(StoreError::Terminating { .. })), "{err:?}");
    store.update_status(&ctl, &key("web"), json!({"phase": "cleaning up"})).await?;

    let r = store.remove_finalizer(&ctl, &key("web"), "example.com/other").await?;
    assert_eq!(r.outcome, WriteOutcome::Terminating);
    assert!(store.get(&key("web")).await?.is_some());
    let r = store.remove_finalizer(&ctl, &key("web"), "berth.dev/docker-cleanup").await?;
    assert_eq!(r.outcome, WriteOutcome::Deleted);
    assert_eq!(r.object.metadata.resource_version, Some(store.revision().to_string()));
    assert_eq!(store.get(&key("web")).await?, None);
    Ok(())
}

#[tokio::test]
async fn delete_without_finalizers_removes_at_once_and_a_new_create_gets_a_new_uid()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path());
    let first = store.create(&alice(), container("web", "nginx:1")).await?.object;
    let r = store.delete(&alice(), &key("web")).await?;
    assert_eq!(r.outcome, WriteOutcome::Deleted);
    assert_eq!(store.get(&key("web")).await?, None);
    let err = store.delete(&alice(), &key("web")).await;
    assert!(matches!(err, Err(StoreError::NotFound { .. })), "{err:?}");
    let second = store.create(&alice(), container("web", "nginx:1")).await?.object;
    assert_ne!(first.metadata.uid, second.metadata.uid);
    assert_eq!(second.metadata.generation, Some(1));
    Ok(())
}

#[tokio::test]
async fn lists_select_by_kind_namespace_and_labels_at_a_revision() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path());
    store.create(&alice(), labelled("web", &[("app", "web"), ("env", "prod")])).await?;
    store.create(&alice(), labelled("api", &[("app", "api"), ("env", "staging")])).await?;
    store.create(&alice(), labelled("old", &[("app", "web"), ("legacy", "yes")])).await?;
    let mut other_ns = labelled("web", &[("app", "web")]);
    other_ns.metadata.namespace = "team-b".into();
    store.create(&alice(), other_ns).await?;
    let mut image = container("nginx", "unused");
    image.kind = Kind::Image;
    image.spec = json!({"reference": "nginx:1"});
    store.create(&alice(), image).await?;

    let names = |l: &berth_controller::store::ObjectList| {
        l.items
            .iter()
            .map(|o| format!("{}/{}", o.metadata.namespace, o.metadata.name))
            .collect::<Vec<_>>()
    };
    let all = store.list(&ListQuery::default()).await?;
    assert_eq!(all.items.len(), 5);
    assert_eq!(all.revision, store.revision());

    let containers = store.list(&ListQuery::kind(Kind::Container)).await?;
    assert_eq!(names(&containers), ["default/api", "default/old", "default/web", "team-b/web"]);

    let default_ns = store.list(&ListQuery::kind(Kind::Container).in_namespace("default")).await?;
    assert_eq!(default_ns.items.len(), 3);

    let any_kind_ns =
        store.list(&ListQuery { namespace: Some("team-b".into()), ..ListQuery::default() }).await?;
    assert_eq!(names(&any_kind_ns), ["team-b/web"]);

    for (selector, expected) in [
        ("app=web", vec!["default/old", "default/web", "team-b/web"]),
        ("app=web,!legacy", vec!["default/web", "team-b/web"]),
        ("env in (prod,staging)", vec!["default/api", "default/web"]),
        ("env notin (prod)", vec!["default/api", "default/old", "team-b/web"]),
        ("app!=web", vec!["default/api"]),
        ("legacy", vec!["default/old"]),
    ] {
        let q = ListQuery::kind(Kind::Container).with_selector(Selector::parse(selector)?);
        assert_eq!(names(&store.list(&q).await?), expected, "{selector}");
    }
    Ok(())
}

#[tokio::test]
async fn bad_keys_are_refused_without_writing() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path());
    for name in ["", "a\0b"] {
        let err = store.create(&alice(), container(name, "x")).await;
        assert!(matches!(err, Err(StoreError::Invalid { .. })), "{name:?}: {err:?}");
    }
    let mut with_rv = container("web", "x");
    with_rv.metadata.resource_version = Some("7".into());
    assert!(matches!(store.create(&alice(), with_rv).await, Err(StoreError::Invalid { .. })));
    assert_eq!(store.revision(), 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_get_distinct_gap_free_revisions() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path());
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..16 {
        let store = store.clone();
        tasks.spawn(async move {
            let mut revisions = Vec::new();
            for i in 0..25 {
                let r = store.create(&alice(), container(&format!("w{w}-{i}"), "nginx")).await?;
                revisions.push(r.revision);
            }
            Ok::<_, StoreError>(revisions)
        });
    }
    let mut all = Vec::new();
    while let Some(done) = tasks.join_next().await {
        all.extend(done??);
    }
    all.sort_unstable();
    assert_eq!(all, (1..=400).collect::<Vec<u64>>());
    Ok(())
}

#[tokio::test]
async fn everything_survives_a_reopen_and_revisions_continue() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path());
    store.create(&alice(), container("web", "nginx:1")).await?;
    store.update_status(&WriteContext::controller(), &key("web"), json!({"ready": true})).await?;
    let before = store.get(&key("web")).await?;
    store.close();
    drop(store);

    let store = open(dir.path());
    assert_eq!(store.revision(), 2);
    assert_eq!(store.get(&key("web")).await?, before);
    let r = store.apply(&alice(), container("db", "postgres")).await?;
    assert_eq!(r.revision, 3);
    Ok(())
}

#[tokio::test]
async fn a_closed_store_refuses_writes() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path());
    store.close();
    let err = store.create(&alice(), container("web", "x")).await;
    assert!(matches!(err, Err(StoreError::Closed)), "{err:?}");
    Ok(())
}
