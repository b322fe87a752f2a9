//! The whole `Controller` (runtime, store feed, Docker events, relist) with the real sled store
//! and the in-memory FakeDriver: readiness with an unreachable Engine, event-driven drift
//! repair, adoption on restart, and quiet steady-state relists.
//!
//! These run on real time: convergence is awaited by polling with a generous timeout, never
//! asserted by timing.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use berth_controller::docker::fake::{FakeDriver, Op};
use berth_controller::docker::{CredentialStore, Driver, ObservedContainer};
use berth_controller::reconcile::{Controller, ControllerConfig};
use berth_controller::runtime::Backoff;
use berth_controller::store::{
    AuditEntry, AuditLog, AuditOutcome, AuditQuery, ResourceStore, SledStore, StoreConfig,
    WriteContext,
};
use berth_schemas::condition::{DEGRADED, find_condition};
use berth_schemas::{API_VERSION, Condition, DynamicObject, Kind, ObjectMeta, ResourceKey};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const IMAGE: &str = "berth-test/busybox:1";
const IMAGE_2: &str = "berth-test/busybox:2";

async fn eventually<T, F, Fut>(what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let poll = async {
        loop {
            if let Some(v) = check().await {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), poll)
        .await
        .with_context(|| format!("timed out waiting for {what}"))
}

struct Run {
    shutdown: CancellationToken,
    handle: JoinHandle<()>,
    ready: watch::Receiver<bool>,
}

fn start(store: &SledStore, fake: &Arc<FakeDriver>, relist_every: Duration) -> Run {
    start_with(store, fake, ControllerConfig { relist_every, ..ControllerConfig::default() })
}

fn start_with(store: &SledStore, fake: &Arc<FakeDriver>, config: ControllerConfig) -> Run {
    let controller = Controller::new(
        Arc::new(store.clone()),
        fake.clone() as Arc<dyn Driver>,
        Arc::new(CredentialStore::empty()),
        config,
    );
    let ready = controller.readiness();
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(controller.run(shutdown.clone()));
    Run { shutdown, handle, ready }
}

impl Run {
    async fn stop(self) -> Result<()> {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.handle)
            .await
            .context("the controller stops after shutdown")??;
        Ok(())
    }
}

async fn apply(store: &SledStore, name: &str, spec: serde_json::Value) -> Result<()> {
    let obj = DynamicObject {
        api_version: API_VERSION.into(),
        kind: Kind::Container,
        metadata: ObjectMeta::named(name),
        spec,
        status: serde_json::Value::Null,
    };
    store.apply(&WriteContext::rest_user("tester"), obj).await?;
    Ok(())
}

fn running(fake: &FakeDriver) -> Vec<ObservedContainer> {
    fake.containers().into_iter().filter(|c| c.is_managed() && c.state.is_up()).collect()
}

async fn degraded(store: &SledStore, name: &str) -> Option<Condition> {
    let key = ResourceKey::new(Kind::Container, "default", name);
    let obj = store.get(&key).await.ok()??;
    let conditions: Vec<Condition> =
        serde_json::from_value(obj.status.get("conditions")?.clone()).ok()?;
    find_condition(&conditions, DEGRADED).cloned()
}

async fn docker_audit_events(store: &SledStore) -> Result<usize> {
    let page = store.query(&AuditQuery { limit: 1000, ..AuditQuery::default() }).await?;
    Ok(page.events.iter().filter(|e| e.verb.starts_with("docker.")).count())
}

#[tokio::test]
async fn an_unreachable_engine_keeps_berth_running_not_ready_and_it_converges_once_reachable()
-> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = SledStore::open(StoreConfig::new(dir.path()))?;
    let fake = Arc::new(FakeDriver::new());
    fake.add_image(IMAGE);
    fake.set_unreachable(true);
    // Reconciles that fail for want of an Engine wait an hour before their retry: only the
    // Engine coming back can make them run again within this test.
    let mut config =
        ControllerConfig { relist_every: Duration::from_secs(3600), ..ControllerConfig::default() };
    config.runtime.backoff = Backoff { initial: Duration::from_secs(3600), ..Backoff::default() };
    let run = start_with(&store, &fake, config);
    apply(&store, "web", json!({"image": IMAGE})).await?;

    let failure = eventually("an EngineUnreachable condition", || async {
        degraded(&store, "web").await.filter(|c| c.reason == "EngineUnreachable")
    })
    .await?;
    assert!(failure.message.contains("next retry at"), "{}", failure.message);
    assert!(!*run.ready.borrow(), "not ready while the Engine cannot be reached");
    assert!(!run.handle.is_finished(), "berth keeps running");

    fake.set_unreachable(false);
    let mut ready = run.ready.clone();
    tokio::time::timeout(Duration::from_secs(60), ready.wait_for(|r| *r))
        .await
        .context("ready once the Engine answers")??;
    let first = eventually("web to run", || async { running(&fake).pop() }).await?;

    // The Engine goes away and comes back (a restart): not ready meanwhile, then the event
    // stream is resubscribed and drift is repaired again.
    fake.set_unreachable(true);
    tokio::time::timeout(Duration::from_secs(60), ready.wait_for(|r| !*r))
        .await
        .context("not ready while the Engine is away")??;
    fake.set_unreachable(false);
    tokio::time::timeout(Duration::from_secs(60), ready.wait_for(|r| *r))
        .await
        .context("ready once the Engine is back")??;
    assert!(fake.simulate_remove(&first.id));
    eventually("web to be recreated after the Engine came back", || async {
        running(&fake).pop().filter(|c| c.id != first.id)
    })
    .await?;
    run.stop().await
}

#[tokio::test]
async fn a_container_removed_behind_berths_back_is_recreated_from_the_event_alone() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = SledStore::open(StoreConfig::new(dir.path()))?;
    let fake = Arc::new(FakeDriver::new());
    fake.add_image(IMAGE);
    // No relist during the test: only the Docker event can bring it back.
    let run = start(&store, &fake, Duration::from_secs(3600));
    apply(&store, "web", json!({"image": IMAGE})).await?;
    let first = eventually("web to run", || async { running(&fake).pop() }).await?;

    assert!(fake.simulate_remove(&first.id));
    let second = eventually("web to be recreated", || async {
        running(&fake).pop().filter(|c| c.id != first.id)
    })
    .await?;
    assert_eq!(second.name, "berth_default_web");

    assert!(fake.simulate_exit(&second.id, 137));
    eventually("web to be started again", || async {
        running(&fake).pop().filter(|c| c.id == second.id)
    })
    .await?;
    run.stop().await
}

#[tokio::test]
async fn steady_state_relists_make_no_mutating_docker_call_and_no_audit_event() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = SledStore::open(StoreConfig::new(dir.path()))?;
    let fake = Arc::new(FakeDriver::new());
    fake.add_image(IMAGE);
    let run = start(&store, &fake, Duration::from_millis(50));
    for name in ["a", "b", "c"] {
        apply(&store, name, json!({"image": IMAGE})).await?;
    }
    eventually("three containers to run", || async { (running(&fake).len() == 3).then_some(()) })
        .await?;
    // Let the passes that follow berth's own actions (their events) settle: wait for a few
    // relists after which nothing changed.
    let mut last = (fake.mutating_calls(), store.revision());
    let mut quiet_polls = 0;
    eventually("the controller to settle", || {
        let now = (fake.mutating_calls(), store.revision());
        let changed = now != last;
        last = now;
        quiet_polls = if changed { 0 } else { quiet_polls + 1 };
        async move { (quiet_polls >= 10).then_some(()) }
    })
    .await?;

    fake.reset_calls();
    let revision = store.revision();
    let audit = docker_audit_events(&store).await?;
    eventually("several relists", || async {
        (fake.count(Op::ListContainers) >= 15).then_some(())
    })
    .await?;
    let mutating: Vec<_> = fake.calls().into_iter().filter(|c| c.op.is_mutating()).collect();
    if !mutating.is_empty() {
        bail!("steady state made mutating calls: {mutating:?}");
    }
    assert_eq!(store.revision(), revision, "steady state writes nothing to the store");
    assert_eq!(docker_audit_events(&store).await?, audit);
    run.stop().await
}

#[tokio::test]
async fn a_restarted_controller_adopts_the_containers_it_made_without_duplicates() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = SledStore::open(StoreConfig::new(dir.path()))?;
    let fake = Arc::new(FakeDriver::new());
    fake.add_image(IMAGE);
    fake.add_image(IMAGE_2);
    let run = start(&store, &fake, Duration::from_secs(3600));
    apply(&store, "a", json!({"image": IMAGE})).await?;
    apply(&store, "b", json!({"image": IMAGE_2})).await?;
    eventually("two containers to run", || async { (running(&fake).len() == 2).then_some(()) })
        .await?;
    run.stop().await?;
    let before: Vec<String> = running(&fake).into_iter().map(|c| c.id).collect();

    fake.reset_calls();
    let run = start(&store, &fake, Duration::from_secs(3600));
    let mut ready = run.ready.clone();
    tokio::time::timeout(Duration::from_secs(30), ready.wait_for(|r| *r))
        .await
        .context("ready after restart")??;
    // Each pass inspects its image: both resources have been reconciled once both were.
    eventually("a pass over both resources after restart", || async {
        let seen: Vec<String> = fake
            .calls()
            .into_iter()
            .filter(|c| c.op == Op::InspectImage)
            .map(|c| c.target)
            .collect();
        (seen.iter().any(|t| t == IMAGE) && seen.iter().any(|t| t == IMAGE_2)).then_some(())
    })
    .await?;
    run.stop().await?;
    let mut after: Vec<String> = running(&fake).into_iter().map(|c| c.id).collect();
    let mut before = before;
    before.sort();
    after.sort();
    assert_eq!(after, before, "the same containers, adopted");
    assert_eq!(fake.count(Op::CreateContainer), 0, "no duplicate was created");
    Ok(())
}

#[tokio::test]
async fn on_start_the_controller_settles_the_intents_a_killed_run_left_open() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = SledStore::open(StoreConfig::new(dir.path()))?;
    let fake = Arc::new(FakeDriver::new());
    fake.add_image(IMAGE);
    // What a run killed between announcing a create and seeing its result leaves: the intent.
    let left = store
        .append(
            AuditEntry::new(
                WriteContext::controller(),
                "docker.container.create",
                AuditOutcome::Pending,
            )
            .target("Container", Some("default".into()), "web")
            .message("create container berth_default_web"),
        )
        .await?;
    apply(&store, "web", json!({"image": IMAGE})).await?;
    let run = start(&store, &fake, Duration::from_secs(3600));
    let settled = eventually("the open intent to be settled", || async {
        let page = store.query(&AuditQuery { limit: 1000, ..AuditQuery::default() }).await.ok()?;
        page.events.into_iter().find(|e| e.intent_seq == Some(left.seq))
    })
    .await?;
    eventually("web to run", || async { (running(&fake).len() == 1).then_some(()) }).await?;
    run.stop().await?;
    assert_eq!(settled.outcome, AuditOutcome::Unknown);
    assert_eq!(settled.verb, "docker.container.create");
    assert!(
        settled.message.as_deref().is_some_and(|m| m.starts_with("unknown-after-restart")),
        "{settled:?}"
    );
    // Exactly one outcome for it, and every intent of this run has its outcome too.
    let page = store.query(&AuditQuery { limit: 1000, ..AuditQuery::default() }).await?;
    let intents: Vec<u64> =
        page.events.iter().filter(|e| e.outcome == AuditOutcome::Pending).map(|e| e.seq).collect();
    for seq in intents {
        let n = page.events.iter().filter(|e| e.intent_seq == Some(seq)).count();
        assert_eq!(n, 1, "intent {seq} has {n} outcomes");
    }
    Ok(())
}

async fn ready_reason(store: &SledStore, name: &str) -> Option<(String, Option<i64>)> {
    let key = ResourceKey::new(Kind::Container, "default", name);
    let obj = store.get(&key).await.ok()??;
    let conditions: Vec<Condition> =
        serde_json::from_value(obj.status.get("conditions")?.clone()).ok()?;
    let ready = find_condition(&conditions, berth_schemas::condition::READY)?;
    Some((ready.reason.clone(), obj.status.get("exitCode").and_then(serde_json::Value::as_i64)))
}

#[tokio::test]
async fn restart_never_a_stop_out_of_band_is_repaired_but_an_exit_of_its_own_is_left_and_reported()
-> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = SledStore::open(StoreConfig::new(dir.path()))?;
    let fake = Arc::new(FakeDriver::new());
    fake.add_image(IMAGE);
    // No relist: the Docker events alone drive it.
    let run = start(&store, &fake, Duration::from_secs(3600));
    apply(&store, "job", json!({"image": IMAGE, "restartPolicy": {"policy": "Never"}})).await?;
    let first = eventually("job to run", || async { running(&fake).pop() }).await?;

    // `docker stop` behind berth's back (kill, die, stop events): drift, repaired.
    let driver: Arc<dyn Driver> = fake.clone();
    driver.stop_container(&first.id, Duration::from_secs(1)).await?;
    let again = eventually("job to be started again after docker stop", || async {
        running(&fake).pop().filter(|c| c.id == first.id)
    })
    .await?;
    // `docker kill` too.
    driver.kill_container(&again.id, None).await?;
    eventually("job to be started again after docker kill", || async {
        running(&fake).pop().filter(|c| c.id == first.id)
    })
    .await?;
    let starts = fake.count(Op::StartContainer);

    // The process exits by itself (a `die` event only): left to the restart policy.
    assert!(fake.simulate_exit(&first.id, 3));
    let reported = eventually("the exit to be reported", || async {
        ready_reason(&store, "job").await.filter(|(r, _)| r == "Exited")
    })
    .await?;
    assert_eq!(reported.1, Some(3), "the exit code is in status");
    assert_eq!(fake.count(Op::StartContainer), starts, "berth did not start it");
    assert!(running(&fake).is_empty());
    run.stop().await?;

    // A restarted berth keeps the decision (the exit happened while no berth watched).
    fake.reset_calls();
    let run = start(&store, &fake, Duration::from_secs(3600));
    let mut ready = run.ready.clone();
    tokio::time::timeout(Duration::from_secs(30), ready.wait_for(|r| *r))
        .await
        .context("ready after restart")??;
    eventually("a pass over job after the restart", || async {
        fake.calls().iter().any(|c| c.op == Op::InspectImage).then_some(())
    })
    .await?;
    run.stop().await?;
    assert_eq!(fake.count(Op::StartContainer), 0, "still not started: {:?}", fake.calls());
    assert_eq!(ready_reason(&store, "job").await.map(|r| r.0).as_deref(), Some("Exited"));
    Ok(())
}
