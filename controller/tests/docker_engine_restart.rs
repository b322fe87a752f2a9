//! The bollard driver across a restart of the Docker Engine: the same driver value keeps
//! working once the Engine is back, and an event stream open during the restart ends so that
//! the caller resubscribes.
//!
//! This restarts the Engine through `scripts/test-env restart-engine`, so it needs an Engine
//! that `scripts/test-env up` started (as in CI), and every other Engine test running at the same
//! moment sees the outage. It lives in its own test binary so that `cargo test` never runs it
//! alongside the other Engine tests.

mod support;

use std::collections::HashMap;
use std::path::PathBuf;

use berth_controller::docker::{ContainerCreate, Driver, EventKind};
use futures::StreamExt;
use support::{Cleanup, TEST_LABEL, TestEnv, unique_name, within};

fn sleeper(env: &TestEnv, name: &str) -> ContainerCreate {
    ContainerCreate {
        name: name.to_owned(),
        image: env.image.clone(),
        cmd: Some(vec!["sleep".into(), "600".into()]),
        labels: HashMap::from([(TEST_LABEL.to_owned(), name.to_owned())]),
        init: true,
        ..ContainerCreate::default()
    }
}

#[tokio::test]
async fn the_driver_carries_on_after_the_engine_restarts() {
    let env = TestEnv::load();
    let driver = env.driver().await;
    let before = unique_name("restart-before");
    let after = unique_name("restart-after");
    let mut cleanup = Cleanup::new(&driver);
    cleanup.container(before.clone());
    cleanup.container(after.clone());

    // An event stream that is surely connected: it has delivered an event. (The request goes
    // out on the first poll, so ask for events from a moment ago.)
    let since = chrono::Utc::now().timestamp_nanos_opt().expect("a current time") - 1_000_000_000;
    let mut events = driver.events(Some(since));
    let first = within(30, "create", driver.create_container(&sleeper(&env, &before)))
        .await
        .expect("create before the restart");
    within(30, "the create event", async {
        while let Some(event) = events.next().await {
            let event = event.expect("the event stream stays up before the restart");
            if event.kind == EventKind::Container && event.id == first {
                return;
            }
        }
        panic!("the event stream ended before the restart");
    })
    .await;

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/test-env");
    let status = within(
        180,
        "scripts/test-env restart-engine",
        tokio::process::Command::new(&script).arg("restart-engine").status(),
    )
    .await
    .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        status.success(),
        "scripts/test-env restart-engine failed: this test needs an Engine started by \
         `scripts/test-env up`"
    );

    // The stream that was open ends (with or without an error): the caller's cue to resubscribe.
    within(60, "the old event stream to end after the restart", async {
        while let Some(item) = events.next().await {
            if item.is_err() {
                break;
            }
        }
    })
    .await;

    // The same driver works against the restarted Engine.
    within(30, "a ping after the restart", driver.ping()).await.expect("ping after the restart");
    let survivor = within(30, "inspect", driver.inspect_container(&before))
        .await
        .expect("inspect after the restart")
        .expect("containers survive an Engine restart");
    assert_eq!(survivor.id, first);
    let since = chrono::Utc::now().timestamp_nanos_opt().expect("a current time") - 1_000_000_000;
    let mut resubscribed = driver.events(Some(since));
    let id = within(30, "create", driver.create_container(&sleeper(&env, &after)))
        .await
        .expect("create after the restart");
    within(30, "start", driver.start_container(&id)).await.expect("start after the restart");
    within(60, "the start event on the new stream", async {
        while let Some(event) = resubscribed.next().await {
            let event = event.expect("the new event stream stays up");
            if event.id == id && event.action == "start" {
                return;
            }
        }
        panic!("the new event stream ended without the start event");
    })
    .await;
}
