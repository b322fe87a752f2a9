//! The bollard driver against the real Docker Engine and the loopback registries of
//! `scripts/test-env up`. These tests fail (they do not skip) when the environment is missing.

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use berth_controller::docker::{
    BollardDriver, ContainerCreate, ContainerFilter, ContainerState, CredentialStore, Driver,
    DriverError, EventKind, PortPublish, Protocol, PullProgress, RegistryCredentials,
    RestartPolicy,
};
use futures::{StreamExt, TryStreamExt};
use support::{Cleanup, TEST_LABEL, TestEnv, unique_name, within};

/// A long-running busybox container with `init` so that it stops at once on SIGTERM.
fn sleeper(env: &TestEnv, name: &str, extra_labels: &[(&str, &str)]) -> ContainerCreate {
    let mut labels = HashMap::from([(TEST_LABEL.to_owned(), name.to_owned())]);
    labels.extend(extra_labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    ContainerCreate {
        name: name.to_owned(),
        image: env.image.clone(),
        cmd: Some(vec!["sleep".into(), "600".into()]),
        env: vec![("BERTH_TEST".into(), "1".into())],
        labels,
        init: true,
        restart_policy: RestartPolicy::No,
        ..ContainerCreate::default()
    }
}

async fn pull_all(
    driver: &BollardDriver,
    reference: &str,
    credentials: Option<RegistryCredentials>,
) -> Result<Vec<PullProgress>, DriverError> {
    within(
        120,
        &format!("the pull of {reference}"),
        driver.pull_image(reference, credentials).try_collect(),
    )
    .await
}

fn auth_credentials(env: &TestEnv, password: &str) -> RegistryCredentials {
    RegistryCredentials {
        username: env.registry_user.clone(),
        password: password.to_owned(),
        server_address: env.auth_registry.clone(),
    }
}

#[tokio::test]
async fn engine_answers_with_its_version_and_the_negotiated_api() {
    let env = TestEnv::load();
    let driver = env.driver().await;
    let version = within(30, "GET /version", driver.version()).await.expect("version");
    assert!(!version.version.is_empty());
    let parse = |v: &str| -> (u32, u32) {
        let (a, b) = v.split_once('.').unwrap_or((v, "0"));
        (a.parse().unwrap_or(0), b.parse().unwrap_or(0))
    };
    assert!(
        parse(&version.negotiated_api_version) <= parse(&version.api_version),
        "negotiated {} but the Engine speaks {}",
        version.negotiated_api_version,
        version.api_version
    );
}

#[tokio::test]
async fn a_container_is_created_started_inspected_stopped_and_removed() {
    let env = TestEnv::load();
    let driver = env.driver().await;
    let name = unique_name("lifecycle");
    let mut cleanup = Cleanup::new(&driver);
    cleanup.container(name.clone());

    let mut spec = sleeper(&env, &name, &[("app", "web")]);
    spec.ports = vec![PortPublish {
        container_port: 8080,
        protocol: Protocol::Tcp,
        host_ip: Some("127.0.0.1".into()),
        host_port: None,
    }];
    spec.stop_timeout = Some(Duration::from_secs(3));
    let id = within(30, "create", driver.create_container(&spec)).await.expect("create");

    let created = within(30, "inspect", driver.inspect_container(&name))
        .await
        .expect("inspect")
        .expect("the container exists");
    assert_eq!(created.id, id);
    assert_eq!(created.name, name);
    assert_eq!(created.state, ContainerState::Created);
    assert_eq!(created.image, env.image);
    assert!(created.image_id.starts_with("sha256:"), "{}", created.image_id);
    assert_eq!(created.label("app"), Some("web"));
    assert_eq!(created.started_at, None);

    within(30, "start", driver.start_container(&id)).await.expect("start");
    within(30, "start again", driver.start_container(&id)).await.expect("starting twice is fine");
    let running = within(30, "inspect", driver.inspect_container(&id))
        .await
        .expect("inspect")
        .expect("exists");
    assert_eq!(running.state, ContainerState::Running);
    assert!(running.started_at.is_some());
    assert_eq!(running.ports.len(), 1, "{:?}", running.ports);
    assert_eq!(running.ports[0].container_port, 8080);
    assert_eq!(running.ports[0].host_ip, "127.0.0.1");
    assert_ne!(running.ports[0].host_port, 0);

    within(60, "stop", driver.stop_container(&id, Duration::from_secs(5))).await.expect("stop");
    within(60, "stop again", driver.stop_container(&id, Duration::from_secs(5)))
        .await
        .expect("stopping a stopped container is fine");
    let stopped = within(30, "inspect", driver.inspect_container(&id))
        .await
        .expect("inspect")
        .expect("exists");
    assert_eq!(stopped.state, ContainerState::Exited);
    assert!(stopped.finished_at.is_some());
    assert!(stopped.ports.is_empty());

    let err = within(30, "kill", driver.kill_container(&id, None))
        .await
        .expect_err("killing a stopped container fails");
    assert!(matches!(err, DriverError::Conflict { .. }), "{err:?}");

    within(30, "remove", driver.remove_container(&id)).await.expect("remove");
    assert!(within(30, "inspect", driver.inspect_container(&id)).await.expect("inspect").is_none());
    within(30, "remove again", driver.remove_container(&id))
        .await
        .expect("removing a missing container is fine");
}

#[tokio::test]
async fn listing_by_label_returns_exactly_the_matching_containers() {
    let env = TestEnv::load();
    let driver = env.driver().await;
    let run = unique_name("list");
    let mut cleanup = Cleanup::new(&driver);
    let mut ids = HashMap::new();
    for (suffix, role) in [("a", "front"), ("b", "front"), ("c", "back")] {
        let name = format!("{run}-{suffix}");
        cleanup.container(name.clone());
        let spec = sleeper(&env, &name, &[("dev.berth.test-run", &run), ("role", role)]);
        let id = within(30, "create", driver.create_container(&spec)).await.expect("create");
        ids.insert(name, id);
    }
    within(30, "start", driver.start_container(&ids[&format!("{run}-a")])).await.expect("start");

    let front =
        ContainerFilter::all().with_label("dev.berth.test-run", &run).with_label("role", "front");
    let listed = within(30, "list", driver.list_containers(&front)).await.expect("list");
    let names: Vec<&str> = listed.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, [format!("{run}-a"), format!("{run}-b")]);
    assert_eq!(listed[0].state, ContainerState::Running);
    assert_eq!(listed[1].state, ContainerState::Created, "stopped ones are listed too");

    let all = ContainerFilter::all().with_label("dev.berth.test-run", &run);
    assert_eq!(within(30, "list", driver.list_containers(&all)).await.expect("list").len(), 3);
    let none = ContainerFilter::all().with_label("dev.berth.test-run", "no-such-run");
    assert!(within(30, "list", driver.list_containers(&none)).await.expect("list").is_empty());
}

#[tokio::test]
async fn creating_a_second_container_with_a_taken_name_is_name_in_use() {
    let env = TestEnv::load();
    let driver = env.driver().await;
    let name = unique_name("clash");
    let mut cleanup = Cleanup::new(&driver);
    cleanup.container(name.clone());
    within(30, "create", driver.create_container(&sleeper(&env, &name, &[])))
        .await
        .expect("create");
    let err = within(30, "create again", driver.create_container(&sleeper(&env, &name, &[])))
        .await
        .expect_err("the name is taken");
    assert!(matches!(&err, DriverError::NameInUse { name: n } if *n == name), "{err:?}");
    assert!(!err.is_transient());
}

#[tokio::test]
async fn creating_from_an_absent_image_is_not_found() {
    let env = TestEnv::load();
    let driver = env.driver().await;
    let name = unique_name("noimage");
    let mut cleanup = Cleanup::new(&driver);
    cleanup.container(name.clone());
    let spec =
        ContainerCreate { image: "berth-test/absent:never".into(), ..sleeper(&env, &name, &[]) };
    let err = within(30, "create", driver.create_container(&spec)).await.expect_err("no image");
    assert!(err.is_not_found(), "{err:?}");
}

#[tokio::test]
async fn images_are_inspected_and_listed() {
    let env = TestEnv::load();
    let driver = env.driver().await;
    let one = within(30, "inspect image", driver.inspect_image(&env.image))
        .await
        .expect("inspect")
        .expect("the test image is present");
    let two = within(30, "inspect image", driver.inspect_image(&env.image_2))
        .await
        .expect("inspect")
        .expect("the second test image is present");
    assert_ne!(one.id, two.id);
    assert!(one.repo_tags.contains(&env.image), "{:?}", one.repo_tags);
    assert!(
        within(30, "inspect image", driver.inspect_image("berth-test/absent:never"))
            .await
            .expect("inspect")
            .is_none()
    );
    let all = within(30, "list images", driver.list_images()).await.expect("list");
    assert!(all.iter().any(|i| i.id == one.id));
}

#[tokio::test]
async fn pulling_from_the_open_registry_records_its_digest() {
    let env = TestEnv::load();
    let driver = env.driver().await;
    let repository = format!("{}/berth-test/busybox", env.registry);
    let reference = format!("{repository}:1");
    let mut cleanup = Cleanup::new(&driver);
    cleanup.image(reference.clone());
    // Make it a real pull, not a no-op on a present tag.
    within(30, "untag", driver.remove_image(&reference, false)).await.expect("untag");

    let progress = pull_all(&driver, &reference, None).await.expect("pull");
    let digest = progress
        .iter()
        .find_map(|p| p.digest().map(str::to_owned))
        .unwrap_or_else(|| panic!("no Digest line in {progress:?}"));
    let image = within(30, "inspect image", driver.inspect_image(&reference))
        .await
        .expect("inspect")
        .expect("pulled image is present");
    assert_eq!(image.digest_for(&repository), Some(digest.as_str()));
}

#[tokio::test]
async fn pulling_from_the_auth_registry_with_the_right_credentials_works() {
    let env = TestEnv::load();
    let driver = env.driver().await;
    let reference = format!("{}/berth-test/busybox:1", env.auth_registry);
    let mut cleanup = Cleanup::new(&driver);
    cleanup.image(reference.clone());
    within(30, "untag", driver.remove_image(&reference, false)).await.expect("untag");

    let credentials = auth_credentials(&env, &env.registry_password);
    pull_all(&driver, &reference, Some(credentials)).await.expect("pull with credentials");
    assert!(
        within(30, "inspect image", driver.inspect_image(&reference))
            .await
            .expect("inspect")
            .is_some()
    );
}

#[tokio::test]
async fn pulling_from_the_auth_registry_with_a_wrong_password_or_none_is_a_registry_auth_error() {
    let env = TestEnv::load();
    let driver = env.driver().await;
    let reference = format!("{}/berth-test/busybox:1", env.auth_registry);

    let wrong = auth_credentials(&env, "not-the-password");
    let err = pull_all(&driver, &reference, Some(wrong)).await.expect_err("wrong password");
    assert!(matches!(err, DriverError::RegistryAuth { .. }), "{err:?}");
    assert!(!err.is_transient());
    assert!(err.to_string().contains(&reference), "{err}");

    let err = pull_all(&driver, &reference, None).await.expect_err("no credentials");
    assert!(matches!(err, DriverError::RegistryAuth { .. }), "{err:?}");
}

#[tokio::test]
async fn credentials_read_from_a_config_json_pull_from_the_auth_registry() {
    let env = TestEnv::load();
    let driver = env.driver().await;
    let reference = format!("{}/berth-test/busybox:2", env.auth_registry);
    let mut cleanup = Cleanup::new(&driver);
    cleanup.image(reference.clone());
    within(30, "untag", driver.remove_image(&reference, false)).await.expect("untag");

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config.json");
    let auth = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", env.registry_user, env.registry_password))
    };
    let json = format!(r#"{{"auths": {{"http://{}": {{"auth": "{auth}"}}}}}}"#, env.auth_registry);
    std::fs::write(&path, json).expect("write config.json");
    let store = CredentialStore::load(Path::new(&path)).expect("load config.json");
    let credentials = store.for_image(&reference).expect("credentials for the auth registry");

    pull_all(&driver, &reference, Some(credentials)).await.expect("pull");
    let image = within(30, "inspect image", driver.inspect_image(&reference))
        .await
        .expect("inspect")
        .expect("present");
    let two = within(30, "inspect image", driver.inspect_image(&env.image_2))
        .await
        .expect("inspect")
        .expect("present");
    assert_eq!(image.id, two.id, "tag 2 in the registry is berth-test/busybox:2");
}

#[tokio::test]
async fn pulling_a_tag_the_registry_does_not_have_is_image_not_found() {
    let env = TestEnv::load();
    let driver = env.driver().await;
    let reference = format!("{}/berth-test/busybox:no-such-tag", env.registry);
    let err = pull_all(&driver, &reference, None).await.expect_err("missing tag");
    assert!(matches!(err, DriverError::ImageNotFound { .. }), "{err:?}");
    assert!(!err.is_transient());
}

#[tokio::test]
async fn the_event_stream_sees_a_container_start_and_replays_from_since() {
    let env = TestEnv::load();
    let driver = env.driver().await;
    let name = unique_name("events");
    let mut cleanup = Cleanup::new(&driver);
    cleanup.container(name.clone());

    // Ask for events from a moment ago, so that none is missed while the stream connects.
    let before = chrono::Utc::now().timestamp_nanos_opt().expect("a current time") - 1_000_000_000;
    let mut events = driver.events(Some(before));
    let id = within(30, "create", driver.create_container(&sleeper(&env, &name, &[])))
        .await
        .expect("create");
    within(30, "start", driver.start_container(&id)).await.expect("start");

    let start = within(60, "a start event for the test container", async {
        while let Some(event) = events.next().await {
            let event = event.expect("the event stream stays up");
            if event.kind == EventKind::Container && event.id == id && event.action == "start" {
                return event;
            }
        }
        panic!("the event stream ended without a start event");
    })
    .await;
    assert_eq!(start.attributes.get("name").map(String::as_str), Some(name.as_str()));
    assert_eq!(start.attributes.get(TEST_LABEL).map(String::as_str), Some(name.as_str()));
    drop(events);

    // Resubscribing from the start event's time delivers it again.
    let mut replay = driver.events(Some(start.time_nano));
    within(60, "the replayed start event", async {
        while let Some(event) = replay.next().await {
            let event = event.expect("the event stream stays up");
            if event.id == id && event.action == "start" {
                return;
            }
        }
        panic!("the replayed stream ended without the start event");
    })
    .await;
}

/// `docker volume rm` through the CLI on drop (the driver never removes volumes).
struct VolumeCleanup(Vec<String>);

impl Drop for VolumeCleanup {
    fn drop(&mut self) {
        for v in &self.0 {
            let _ = std::process::Command::new("docker").args(["volume", "rm", "-f", v]).output();
        }
    }
}

#[tokio::test]
async fn a_network_mode_listed_as_a_network_never_makes_a_host_mode_container() {
    // Issue 11, hole 1: the first listed network became the network mode, so `networks:
    // [host]` gave host networking. The spec is built directly, as if validation were bypassed.
    let env = TestEnv::load();
    let driver = env.driver().await;
    for mode in ["host", "none", "bridge", "default"] {
        let name = unique_name(&format!("netmode-{mode}"));
        let mut cleanup = Cleanup::new(&driver);
        cleanup.container(name.clone());
        let mut spec = sleeper(&env, &name, &[]);
        spec.networks = vec![mode.to_owned()];
        let created = within(30, "create", driver.create_container(&spec)).await;
        assert!(
            matches!(created, Err(DriverError::Rejected { .. })),
            "networks: [{mode}] must be refused, got {created:?}"
        );
        let made = within(30, "inspect", driver.inspect_container(&name)).await.expect("inspect");
        assert!(made.is_none(), "no container is made for networks: [{mode}]");
    }
}

#[tokio::test]
async fn a_volume_is_created_with_labels_and_inspected_with_its_options() {
    let env = TestEnv::load();
    let driver = env.driver().await;
    let (made, bound) = (unique_name("vol"), unique_name("vol-bind"));
    let _cleanup = VolumeCleanup(vec![made.clone(), bound.clone()]);
    assert_eq!(within(30, "inspect", driver.inspect_volume(&made)).await.expect("inspect"), None);

    let labels = HashMap::from([(TEST_LABEL.to_owned(), made.clone())]);
    let v = within(30, "create", driver.create_volume(&made, &labels)).await.expect("create");
    assert_eq!((v.name.as_str(), v.driver.as_str()), (made.as_str(), "local"));
    let seen = within(30, "inspect", driver.inspect_volume(&made)).await.expect("inspect");
    assert_eq!(seen.map(|v| v.labels), Some(labels));

    let out = std::process::Command::new("docker")
        .args(["volume", "create", "-o", "type=none", "-o", "o=bind", "-o", "device=/etc"])
        .arg(&bound)
        .output()
        .expect("docker volume create runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let seen = within(30, "inspect", driver.inspect_volume(&bound))
        .await
        .expect("inspect")
        .expect("the bind-option volume exists");
    assert_eq!(seen.options.get("device").map(String::as_str), Some("/etc"));
    assert!(seen.labels.is_empty());
}
